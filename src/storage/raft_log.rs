//! openraft's durable log ([`RaftLogStorage`]) for one Raft group, as a handle on the
//! node's shared [`LogEngine`] (format, durability and group commit are described
//! there). Entries are encoded with bincode's serde API, standard config; so are the
//! vote and the committed and purged log ids the engine stores as bytes.
//!
//! Durability follows Redis's appendfsync ([`FsyncPolicy`]). An append is written by the
//! caller (into the page cache) and is readable at once; under `always` its `IOFlushed`
//! callback fires from the engine's flusher after the fsync pass that covers it, so the
//! Raft core goes on replicating while the disk flushes. `save_vote` returns once its
//! record is durable, whatever the policy, and records are durable in the order they
//! were written: openraft reads a completed later write as proof the earlier ones
//! completed.
//!
//! The handle keeps an entry cache of the group's newest entries (replication reads
//! them without touching the disk) behind its own lock, taken before the engine's.
//! Replication readers ([`LogReader`], on other tasks) never wait for an fsync.

use super::log_engine::{EngineCounters, FsyncPolicy, GroupCounters, LogEngine, LogStoreOptions};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{LogIdOf, VoteOf};
use openraft::{OptionalSend, RaftTypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

/// Log figures for INFO; see [`RaftLogStore::stats_handle`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    /// fsync passes of the node's log (shared by every group; each may cover many
    /// appends of many groups).
    pub fsync_count: u64,
    pub fsync_p50_us: u64,
    pub fsync_p99_us: u64,
    pub fsync_p999_us: u64,
    /// Bytes of the node's log on disk (every group's).
    pub bytes_on_disk: u64,
    /// Bytes of this group's live entry records.
    pub group_bytes: u64,
    pub cached_entries: u64,
    pub cached_bytes: u64,
}

/// Reads a group's [`LogStats`] from any thread, after its store moved into openraft.
#[derive(Clone)]
pub struct LogStatsHandle {
    group: Arc<GroupCounters>,
    engine: Arc<EngineCounters>,
}

impl LogStatsHandle {
    pub fn get(&self) -> LogStats {
        let (g, e) = (&self.group, &self.engine);
        let index = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).checked_sub(1);
        LogStats {
            first_index: index(&g.first),
            last_index: index(&g.last),
            fsync_count: e.fsyncs.load(Ordering::Relaxed),
            fsync_p50_us: e.fsync_us.percentile(0.5),
            fsync_p99_us: e.fsync_us.percentile(0.99),
            fsync_p999_us: e.fsync_us.percentile(0.999),
            bytes_on_disk: e.disk_bytes.load(Ordering::Relaxed),
            group_bytes: g.bytes.load(Ordering::Relaxed),
            cached_entries: g.cached_entries.load(Ordering::Relaxed),
            cached_bytes: g.cached_bytes.load(Ordering::Relaxed),
        }
    }
}

fn invalid_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("encode: {e}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> io::Result<T> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map_err(|e| invalid_data(format!("decode {what}: {e}")))?;
    if used != bytes.len() {
        return Err(invalid_data(format!(
            "decode {what}: {} trailing bytes",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// Runs blocking file work (truncate and purge: rare, and able to roll a segment) from
/// async code without stalling the other tasks of a multi-threaded tokio worker;
/// elsewhere (current-thread runtime, plain threads) it just runs.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

struct Cached<C: RaftTypeConfig> {
    entry: C::Entry,
    bytes: usize,
}

/// Everything behind a handle's lock.
struct Inner<C: RaftTypeConfig> {
    /// The newest entries: contiguous, ending at the group's last entry.
    cache: VecDeque<Cached<C>>,
    cache_bytes: usize,
    /// The group's live entries in the engine.
    first: Option<u64>,
    last_index: Option<u64>,
    /// Log id of the last entry; None when the group holds none.
    last: Option<LogIdOf<C>>,
    /// Durable.
    vote: Option<VoteOf<C>>,
    /// The newest (the engine writes it lazily).
    committed: Option<LogIdOf<C>>,
    purged: Option<LogIdOf<C>>,
}

struct Shared<C: RaftTypeConfig> {
    engine: Arc<LogEngine>,
    group: u64,
    inner: Mutex<Inner<C>>,
    counters: Arc<GroupCounters>,
}

fn lock<'a, T>(m: &'a Mutex<T>, what: &str) -> io::Result<MutexGuard<'a, T>> {
    // A panic mid-update may have left the log half-changed; refuse to go on with it.
    m.lock()
        .map_err(|_| io::Error::other(format!("raft log {what} lock poisoned by a panic")))
}

impl<C: RaftTypeConfig> Shared<C>
where
    C::Entry: Clone,
{
    fn inner(&self) -> io::Result<MutexGuard<'_, Inner<C>>> {
        lock(&self.inner, "group")
    }

    fn opts(&self) -> &LogStoreOptions {
        self.engine.core().opts()
    }

    fn publish_cache(&self, inner: &Inner<C>) {
        let c = &self.counters;
        c.cached_entries
            .store(inner.cache.len() as u64, Ordering::Relaxed);
        c.cached_bytes
            .store(inner.cache_bytes as u64, Ordering::Relaxed);
    }

    fn decode_at(index: u64, payload: &[u8]) -> io::Result<C::Entry> {
        let entry: C::Entry = decode(payload, "log entry")?;
        if entry.index() != index {
            return Err(invalid_data(format!(
                "log entry at index {index} says it is {}",
                entry.index()
            )));
        }
        Ok(entry)
    }

    /// Entries of `from..=to`, both inside the log: newest from the cache, older ones
    /// from the engine.
    fn entries(&self, inner: &Inner<C>, from: u64, to: u64) -> io::Result<Vec<C::Entry>> {
        let cache_from = inner.cache.front().map_or(to + 1, |c| c.entry.index());
        let mut out = Vec::with_capacity((to - from + 1) as usize);
        if from < cache_from {
            let disk_to = to.min(cache_from - 1);
            let stored = self.engine.core().read(self.group, from, disk_to)?;
            for (index, payload) in (from..).zip(stored) {
                out.push(Self::decode_at(index, &payload)?);
            }
        }
        for index in from.max(cache_from)..=to {
            out.push(inner.cache[(index - cache_from) as usize].entry.clone());
        }
        Ok(out)
    }

    /// The part of `range` the log holds (purged entries and the future clipped off).
    fn clip(inner: &Inner<C>, range: &impl RangeBounds<u64>) -> Option<(u64, u64)> {
        let from = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&e) => e,
            Bound::Excluded(&e) => e.checked_sub(1)?,
            Bound::Unbounded => u64::MAX,
        };
        let from = from.max(inner.first?);
        let to = to.min(inner.last_index?);
        (from <= to).then_some((from, to))
    }
}

/// openraft's log storage for one Raft group of a [`LogEngine`]. At most one per group
/// at a time; dropping it frees the group for [`LogEngine::open_group`] again (its data
/// stays in the engine, which syncs it on close).
pub struct RaftLogStore<C: RaftTypeConfig>
where
    C::Entry: Clone,
{
    shared: Arc<Shared<C>>,
}

/// A cheap, cloneable reader of a [`RaftLogStore`], usable while it appends.
pub struct LogReader<C: RaftTypeConfig>
where
    C::Entry: Clone,
{
    shared: Arc<Shared<C>>,
}

impl<C: RaftTypeConfig> Clone for LogReader<C>
where
    C::Entry: Clone,
{
    fn clone(&self) -> Self {
        LogReader {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl LogEngine {
    /// The store of one group (empty if the log holds nothing of it). At most one live
    /// handle per group: a second open fails with `AlreadyExists` until the first drops.
    pub fn open_group<C>(self: &Arc<Self>, group: u64) -> io::Result<RaftLogStore<C>>
    where
        C: RaftTypeConfig,
        C::Entry: Clone,
    {
        let view = self.core().claim(group)?;
        let release = |e: io::Error| {
            self.core().release(group);
            e
        };
        let opt = |bytes: Option<Vec<u8>>, what| match bytes {
            Some(b) => decode(&b, what),
            None => Ok(None),
        };
        let vote: Option<VoteOf<C>> = match view.vote {
            Some(b) => Some(decode(&b, "vote").map_err(release)?),
            None => None,
        };
        let committed: Option<LogIdOf<C>> = opt(view.committed, "committed").map_err(release)?;
        let purged: Option<LogIdOf<C>> = match view.purged {
            Some(b) => Some(decode(&b, "purged log id").map_err(release)?),
            None => None,
        };
        let mut inner = Inner {
            cache: VecDeque::new(),
            cache_bytes: 0,
            first: view.first,
            last_index: view.last,
            last: None,
            vote,
            committed,
            purged,
        };
        let shared = Arc::new(Shared {
            engine: Arc::clone(self),
            group,
            inner: Mutex::new(Inner {
                cache: VecDeque::new(),
                cache_bytes: 0,
                first: None,
                last_index: None,
                last: None,
                vote: None,
                committed: None,
                purged: None,
            }),
            counters: view.counters,
        });
        if let Some(last) = view.last {
            let entry: C::Entry = shared
                .entries(&inner, last, last)
                .map_err(release)?
                .remove(0);
            inner.last = Some(entry.log_id());
        }
        *shared.inner().map_err(release)? = inner;
        Ok(RaftLogStore { shared })
    }
}

impl<C: RaftTypeConfig> RaftLogStore<C>
where
    C::Entry: Clone,
{
    pub fn group(&self) -> u64 {
        self.shared.group
    }

    pub fn engine(&self) -> &Arc<LogEngine> {
        &self.shared.engine
    }

    pub fn policy(&self) -> FsyncPolicy {
        self.shared.opts().policy
    }

    pub fn reader(&self) -> LogReader<C> {
        LogReader {
            shared: Arc::clone(&self.shared),
        }
    }

    pub fn stats_handle(&self) -> LogStatsHandle {
        LogStatsHandle {
            group: Arc::clone(&self.shared.counters),
            engine: Arc::clone(self.shared.engine.core().counters()),
        }
    }

    pub fn stats(&self) -> LogStats {
        self.stats_handle().get()
    }

    /// Writes this group's committed id if owed and syncs the engine, reporting any
    /// error; then frees the group.
    pub fn close(self) -> io::Result<()> {
        let core = self.shared.engine.core();
        core.write_committed(self.shared.group)?;
        core.sync()
    }

    /// Encodes and writes a batch: readable on return, durable per the policy.
    fn write_entries(&self, entries: Vec<C::Entry>) -> io::Result<()> {
        let Some(first) = entries.first().map(|e| e.index()) else {
            return Ok(());
        };
        if let Some((k, e)) = (first..)
            .zip(&entries)
            .enumerate()
            .find(|(_, (i, e))| e.index() != *i)
            .map(|(k, (_, e))| (k, e))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "append: entry {k} of the batch has index {}, expected {}",
                    e.index(),
                    first + k as u64
                ),
            ));
        }
        let last = entries.last().map(|e| e.log_id());
        let payloads = entries.iter().map(encode).collect::<io::Result<Vec<_>>>()?;
        let shared = &self.shared;
        let mut inner = shared.inner()?;
        // Into the page cache; once per segment (64 MiB by default) this also rolls to
        // a new segment, three fsyncs on this task.
        shared
            .engine
            .core()
            .append(shared.group, first, &payloads)?;
        inner.first.get_or_insert(first);
        inner.last_index = Some(first + entries.len() as u64 - 1);
        inner.last = last;
        for (entry, payload) in entries.into_iter().zip(&payloads) {
            inner.cache_bytes += payload.len();
            inner.cache.push_back(Cached {
                entry,
                bytes: payload.len(),
            });
        }
        let opts = shared.opts();
        while inner.cache.len() > opts.cache_entries || inner.cache_bytes > opts.cache_bytes {
            match inner.cache.pop_front() {
                Some(c) => inner.cache_bytes -= c.bytes,
                None => break,
            }
        }
        shared.publish_cache(&inner);
        Ok(())
    }
}

impl<C: RaftTypeConfig> Drop for RaftLogStore<C>
where
    C::Entry: Clone,
{
    fn drop(&mut self) {
        self.shared.engine.core().release(self.shared.group);
    }
}

impl<C: RaftTypeConfig> RaftLogReader<C> for LogReader<C>
where
    C::Entry: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        let inner = self.shared.inner()?;
        match Shared::clip(&inner, &range) {
            Some((from, to)) => self.shared.entries(&inner, from, to),
            None => Ok(Vec::new()),
        }
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.shared.inner()?.vote.clone())
    }
}

impl<C: RaftTypeConfig> RaftLogStorage<C> for RaftLogStore<C>
where
    C::Entry: Clone,
{
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let inner = self.shared.inner()?;
        let purged = inner.purged.clone();
        Ok(LogState {
            last_log_id: inner.last.clone().or_else(|| purged.clone()),
            last_purged_log_id: purged,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let bytes = encode(vote)?;
        let core = self.shared.engine.core();
        core.write_vote(self.shared.group, &bytes)?;
        // Rides the group commit; records become durable in order, so every append
        // before the vote is durable with it.
        core.wait_durable().await?;
        self.shared.inner()?.vote = Some(vote.clone());
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        {
            let mut inner = self.shared.inner()?;
            if inner.committed == committed {
                return Ok(());
            }
            inner.committed.clone_from(&committed);
        }
        // A lost committed id only means re-applying less after a restart (the node
        // learns the commit point from the leader; shardis runs openraft with leader
        // restore off, so a restarted leader never serves from it). So under every
        // policy the engine writes it lazily, within about a second: a write and fsync
        // per commit stalled the Raft core.
        let bytes = encode(&committed)?;
        self.shared
            .engine
            .core()
            .set_committed(self.shared.group, bytes)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.shared.inner()?.committed.clone())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        if let Err(e) = self.write_entries(entries.into_iter().collect()) {
            callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
        if self.policy() != FsyncPolicy::Always {
            callback.io_completed(Ok(()));
            return Ok(());
        }
        let core = self.shared.engine.core();
        // Completed by the flusher after the fsync pass that covers this append (or
        // here, with a sync of our own, when the engine is closing).
        core.on_durable(Box::new(move |r| callback.io_completed(r)));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.as_ref().map_or(0, |l| l.index() + 1);
        let shared = &self.shared;
        let mut inner = shared.inner()?;
        if let Some(p) = &inner.purged {
            if from <= p.index() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("truncate from {from} at or below the purged log id {p}"),
                ));
            }
        }
        blocking(|| shared.engine.core().truncate(shared.group, from))?;
        while inner.cache.back().is_some_and(|c| c.entry.index() >= from) {
            let c = inner.cache.pop_back().expect("checked non-empty");
            inner.cache_bytes -= c.bytes;
        }
        if inner.last_index.is_some_and(|l| l >= from) {
            let first = inner.first.expect("a last has a first");
            if from > first {
                inner.last_index = Some(from - 1);
                let entry = shared.entries(&inner, from - 1, from - 1)?.remove(0);
                inner.last = Some(entry.log_id());
            } else {
                (inner.first, inner.last_index, inner.last) = (None, None, None);
            }
        }
        shared.publish_cache(&inner);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let upto = log_id.index();
        let shared = &self.shared;
        let mut inner = shared.inner()?;
        if inner.purged.as_ref().is_some_and(|p| p.index() >= upto) {
            return Ok(());
        }
        let bytes = encode(&log_id)?;
        blocking(|| shared.engine.core().purge(shared.group, upto, &bytes))?;
        inner.purged = Some(log_id);
        while inner.cache.front().is_some_and(|c| c.entry.index() <= upto) {
            let c = inner.cache.pop_front().expect("checked non-empty");
            inner.cache_bytes -= c.bytes;
        }
        match (inner.first, inner.last_index) {
            (Some(_), Some(last)) if last <= upto => {
                (inner.first, inner.last_index, inner.last) = (None, None, None);
            }
            (Some(first), Some(_)) if first <= upto => inner.first = Some(upto + 1),
            _ => {}
        }
        shared.publish_cache(&inner);
        Ok(())
    }
}

/// openraft's storage conformance suite run against a group of a fresh [`LogEngine`];
/// generic over the state machine so the keyspace state machine can run the same suite.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;
    use openraft::storage::RaftStateMachine;
    use openraft::testing::log::{StoreBuilder, Suite};
    use openraft::type_config::TypeConfigExt;
    use openraft::vote::{RaftLeaderId, RaftVote};
    use openraft::{ErrorSubject, ErrorVerb, StorageError};

    /// The suite's group; the busy neighbour is [`NEIGHBOUR`].
    pub(crate) const SUITE_GROUP: u64 = 7;
    pub(crate) const NEIGHBOUR: u64 = 8;

    /// What a built store needs kept alive: the neighbour's writer, the engine, the
    /// temp dir (dropped in this order: the engine's last sync before the dir goes).
    pub(crate) struct Guard {
        neighbour: Option<tokio::task::JoinHandle<()>>,
        engine: Arc<LogEngine>,
        _dir: tempfile::TempDir,
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(task) = self.neighbour.take() {
                // Finished before it was stopped: it failed a check (or panicked).
                let failed = task.is_finished();
                task.abort();
                if failed && !std::thread::panicking() {
                    panic!("the neighbour group's writer stopped early: its log went wrong");
                }
            }
            let _ = self.engine.close();
        }
    }

    /// Builds a group store ([`SUITE_GROUP`]) in a fresh engine in a temp dir next to a
    /// state machine from `make_sm`; with `busy_neighbour`, another group of the same
    /// engine gets entries, a vote and a purge first and keeps appending (and checking
    /// what it reads back) while the suite runs.
    pub(crate) struct TempLogStoreBuilder<F> {
        pub(crate) policy: FsyncPolicy,
        pub(crate) busy_neighbour: bool,
        pub(crate) make_sm: F,
    }

    async fn neighbour_append<C>(store: &mut RaftLogStore<C>, from: u64, to: u64)
    where
        C: RaftTypeConfig,
        C::Entry: Clone,
        C::Term: From<u64>,
        C::NodeId: From<u64>,
    {
        let batch: Vec<C::Entry> = (from..=to)
            .map(|i| openraft::testing::blank_ent::<C>(1, 1.into(), i))
            .collect();
        let (tx, rx) = C::oneshot();
        store
            .append(batch, IOFlushed::signal(tx))
            .await
            .expect("neighbour append");
        tokio::time::timeout(std::time::Duration::from_secs(10), rx)
            .await
            .expect("neighbour flushed in time")
            .expect("callback fired")
            .expect("neighbour flush ok");
    }

    /// Appends, votes and purges on the neighbour, then appends one entry at a time,
    /// reading back its newest ones, until aborted.
    async fn run_neighbour<C>(mut store: RaftLogStore<C>)
    where
        C: RaftTypeConfig,
        C::Entry: Clone,
        C::Term: From<u64>,
        C::NodeId: From<u64>,
    {
        neighbour_append(&mut store, 1, 20).await;
        let vote = VoteOf::<C>::from_leader_id(C::LeaderId::new(5.into(), 1.into()), false);
        store.save_vote(&vote).await.expect("neighbour vote");
        store
            .purge(openraft::testing::log_id::<C>(1, 1.into(), 10))
            .await
            .expect("neighbour purge");
        let mut reader = store.get_log_reader().await;
        for i in 21.. {
            neighbour_append(&mut store, i, i).await;
            let got = reader
                .try_get_log_entries(i - 3..=i)
                .await
                .expect("neighbour read");
            let got: Vec<u64> = got.iter().map(|e| e.index()).collect();
            assert_eq!(
                got,
                (i - 3..=i).collect::<Vec<_>>(),
                "neighbour reads its own entries"
            );
            let read = reader.read_vote().await.expect("neighbour vote read");
            assert_eq!(read.as_ref(), Some(&vote), "neighbour's vote");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    impl<C, SM, F> StoreBuilder<C, RaftLogStore<C>, SM, Guard> for TempLogStoreBuilder<F>
    where
        C: RaftTypeConfig,
        C::Entry: Clone,
        C::Term: From<u64>,
        C::NodeId: From<u64>,
        SM: RaftStateMachine<C>,
        F: Fn() -> SM + Send + Sync,
    {
        async fn build(&self) -> Result<(Guard, RaftLogStore<C>, SM), StorageError<C>> {
            let io = |e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e);
            let dir = tempfile::Builder::new()
                .prefix("shardis-raftlog-")
                .tempdir()
                .map_err(io)?;
            let engine = LogEngine::open(
                dir.path(),
                LogStoreOptions {
                    policy: self.policy,
                    // Small segments, so rolls, checkpoints and deletions happen.
                    segment_size: 4096,
                    ..LogStoreOptions::default()
                },
            )
            .map_err(io)?;
            let neighbour = if self.busy_neighbour {
                let store = engine.open_group::<C>(NEIGHBOUR).map_err(io)?;
                Some(tokio::spawn(run_neighbour(store)))
            } else {
                None
            };
            let store = engine.open_group(SUITE_GROUP).map_err(io)?;
            let guard = Guard {
                neighbour,
                engine,
                _dir: dir,
            };
            Ok((guard, store, (self.make_sm)()))
        }
    }

    pub(crate) async fn run_suite<C, SM, F>(
        policy: FsyncPolicy,
        busy_neighbour: bool,
        make_sm: F,
    ) -> Result<(), StorageError<C>>
    where
        C: RaftTypeConfig,
        C::Entry: Clone,
        C::D: Debug,
        C::R: Debug,
        C::Term: From<u64>,
        C::NodeId: From<u64>,
        C::Node: Default,
        SM: RaftStateMachine<C>,
        F: Fn() -> SM + Send + Sync,
    {
        Suite::test_all(TempLogStoreBuilder {
            policy,
            busy_neighbour,
            make_sm,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::conformance::run_suite;
    use super::*;
    use crate::storage::log_engine::FLUSH_INTERVAL;
    use crate::storage::wal::{self, Kind};
    use futures_util::{Stream, TryStreamExt};
    use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
    use openraft::type_config::alias::{EntryOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
    use openraft::type_config::TypeConfigExt;
    use openraft::{EntryPayload, StoredMembership, Vote};
    use serde::Deserialize;
    use std::fmt;
    use std::fs::{self, File};
    use std::path::Path;
    use std::path::PathBuf;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Add(pub u64);

    impl fmt::Display for Add {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "add {}", self.0)
        }
    }

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Sum(pub u64);

    openraft::declare_raft_types!(
        pub TestConfig:
            D = Add,
            R = Sum,
    );

    type C = TestConfig;

    #[derive(Default)]
    struct SmState {
        applied: Option<LogIdOf<C>>,
        membership: StoredMembershipOf<C>,
        sum: u64,
        snapshot: Option<(SnapshotMetaOf<C>, Vec<u8>)>,
    }

    /// A minimal state machine: sums the `Add`s, snapshots the sum.
    #[derive(Clone, Default)]
    struct SumMachine(Arc<Mutex<SmState>>);

    impl RaftSnapshotBuilder<C> for SumMachine {
        type SnapshotData = Vec<u8>;

        async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Vec<u8>>, io::Error> {
            let mut st = self.0.lock().unwrap();
            let data = encode(&st.sum)?;
            let meta = SnapshotMetaOf::<C> {
                last_log_id: st.applied,
                last_membership: st.membership.clone(),
            };
            st.snapshot = Some((meta.clone(), data.clone()));
            Ok(SnapshotOf::<C, Vec<u8>> {
                meta,
                snapshot: data,
            })
        }
    }

    impl RaftStateMachine<C> for SumMachine {
        type SnapshotData = Vec<u8>;
        type SnapshotBuilder = Self;

        async fn applied_state(
            &mut self,
        ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
            let st = self.0.lock().unwrap();
            Ok((st.applied, st.membership.clone()))
        }

        async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
        where
            Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
        {
            while let Some((entry, responder)) = entries.try_next().await? {
                let sum = {
                    let mut st = self.0.lock().unwrap();
                    st.applied = Some(entry.log_id);
                    match &entry.payload {
                        EntryPayload::Blank => {}
                        EntryPayload::Normal(Add(n)) => st.sum += n,
                        EntryPayload::Membership(m) => {
                            st.membership = StoredMembership::new(Some(entry.log_id), m.clone())
                        }
                    }
                    st.sum
                };
                if let Some(r) = responder {
                    r.send(Sum(sum));
                }
            }
            Ok(())
        }

        async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
            self.clone()
        }

        async fn install_snapshot(
            &mut self,
            meta: &SnapshotMetaOf<C>,
            snapshot: Vec<u8>,
        ) -> Result<(), io::Error> {
            let sum: u64 = decode(&snapshot, "snapshot")?;
            let mut st = self.0.lock().unwrap();
            st.sum = sum;
            st.applied = meta.last_log_id;
            st.membership = meta.last_membership.clone();
            st.snapshot = Some((meta.clone(), snapshot));
            Ok(())
        }

        async fn get_current_snapshot(
            &mut self,
        ) -> Result<Option<SnapshotOf<C, Vec<u8>>>, io::Error> {
            let st = self.0.lock().unwrap();
            Ok(st
                .snapshot
                .as_ref()
                .map(|(meta, data)| SnapshotOf::<C, Vec<u8>> {
                    meta: meta.clone(),
                    snapshot: data.clone(),
                }))
        }
    }

    #[tokio::test]
    async fn conformance_suite_always() {
        run_suite(FsyncPolicy::Always, false, SumMachine::default)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn conformance_suite_everysec() {
        run_suite(FsyncPolicy::EverySec, false, SumMachine::default)
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_suite_no_on_multi_thread_runtime() {
        run_suite(FsyncPolicy::No, false, SumMachine::default)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn conformance_suite_always_next_to_a_busy_group() {
        run_suite(FsyncPolicy::Always, true, SumMachine::default)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn conformance_suite_everysec_next_to_a_busy_group() {
        run_suite(FsyncPolicy::EverySec, true, SumMachine::default)
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_suite_no_next_to_a_busy_group() {
        run_suite(FsyncPolicy::No, true, SumMachine::default)
            .await
            .unwrap();
    }

    const DEADLINE: Duration = Duration::from_secs(10);

    fn lid(term: u64, index: u64) -> LogIdOf<C> {
        openraft::testing::log_id::<C>(term, 1, index)
    }

    /// An entry whose payload also names its group, so a mix-up cannot pass.
    fn gentry(group: u64, term: u64, index: u64) -> EntryOf<C> {
        openraft::Entry {
            log_id: lid(term, index),
            payload: EntryPayload::Normal(Add(group * 1_000_000 + index)),
        }
    }

    fn entry(term: u64, index: u64) -> EntryOf<C> {
        gentry(0, term, index)
    }

    fn entries(term: u64, from: u64, to: u64) -> Vec<EntryOf<C>> {
        (from..=to).map(|i| entry(term, i)).collect()
    }

    fn gentries(group: u64, term: u64, from: u64, to: u64) -> Vec<EntryOf<C>> {
        (from..=to).map(|i| gentry(group, term, i)).collect()
    }

    fn tmpdir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("shardis-raftlog-")
            .tempdir()
            .unwrap()
    }

    fn opts(policy: FsyncPolicy) -> LogStoreOptions {
        LogStoreOptions {
            policy,
            ..LogStoreOptions::default()
        }
    }

    /// Group 0 of an engine of its own (dropping the store closes the engine).
    fn open_with(dir: &Path, opts: LogStoreOptions) -> RaftLogStore<C> {
        LogEngine::open(dir, opts).unwrap().open_group(0).unwrap()
    }

    fn open(dir: &Path, policy: FsyncPolicy) -> RaftLogStore<C> {
        open_with(dir, opts(policy))
    }

    /// Appends and waits (with a deadline) for the IOFlushed callback.
    async fn append(store: &mut RaftLogStore<C>, batch: Vec<EntryOf<C>>) -> io::Result<()> {
        let (tx, rx) = C::oneshot();
        store.append(batch, IOFlushed::signal(tx)).await?;
        tokio::time::timeout(DEADLINE, rx)
            .await
            .expect("IOFlushed callback within the deadline")
            .expect("callback fired, not dropped")
    }

    async fn read(
        store: &mut RaftLogStore<C>,
        range: impl RangeBounds<u64> + Clone + Debug + Send,
    ) -> Vec<EntryOf<C>> {
        store
            .get_log_reader()
            .await
            .try_get_log_entries(range)
            .await
            .unwrap()
    }

    async fn state(store: &mut RaftLogStore<C>) -> (Option<LogIdOf<C>>, Option<LogIdOf<C>>) {
        let st = store.get_log_state().await.unwrap();
        (st.last_purged_log_id, st.last_log_id)
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut segs: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        segs.sort();
        segs
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let segs = segment_files(dir);
        assert_eq!(segs.len(), 1, "{segs:?}");
        segs[0].clone()
    }

    /// (kind, group, offset, body) of every record of a segment file.
    fn records(path: &Path) -> Vec<(Kind, u64, u64, Vec<u8>)> {
        let data = fs::read(path).unwrap();
        let found = wal::scan(&data);
        assert!(found.problem.is_none(), "{:?}", found.problem);
        found
            .records
            .iter()
            .map(|f| {
                (
                    f.record.kind,
                    f.record.group,
                    f.offset,
                    f.record.body.to_vec(),
                )
            })
            .collect()
    }

    /// Start offsets of a segment's entry records.
    fn entry_offsets(path: &Path) -> Vec<u64> {
        records(path)
            .into_iter()
            .filter(|r| r.0 == Kind::Entry)
            .map(|r| r.2)
            .collect()
    }

    /// Polls `cond` every 20 ms until it holds or the deadline passes.
    async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn restart_recovers_vote_committed_purged_and_entries() {
        let tmp = tmpdir();
        let mut store = open(tmp.path(), FsyncPolicy::Always);
        append(&mut store, entries(1, 0, 10)).await.unwrap();
        append(&mut store, entries(2, 11, 20)).await.unwrap();
        store.save_vote(&Vote::new(3, 1)).await.unwrap();
        store.save_committed(Some(lid(2, 15))).await.unwrap();
        store.purge(lid(1, 5)).await.unwrap();
        store.close().unwrap();

        let mut store = open(tmp.path(), FsyncPolicy::Always);
        assert_eq!(
            store.get_log_reader().await.read_vote().await.unwrap(),
            Some(Vote::new(3, 1))
        );
        assert_eq!(store.read_committed().await.unwrap(), Some(lid(2, 15)));
        assert_eq!(state(&mut store).await, (Some(lid(1, 5)), Some(lid(2, 20))));
        let mut want = entries(1, 6, 10);
        want.extend(entries(2, 11, 20));
        assert_eq!(read(&mut store, ..).await, want);
        assert_eq!(read(&mut store, 0..=5).await, vec![]);
        let stats = store.stats();
        assert_eq!((stats.first_index, stats.last_index), (Some(6), Some(20)));
        assert!(stats.bytes_on_disk > 0 && stats.group_bytes > 0);
        assert_eq!(store.engine().groups(), vec![0]);
    }

    #[tokio::test]
    async fn torn_tail_loses_entries_from_the_tear_on() {
        let tmp = tmpdir();
        let mut store = open(tmp.path(), FsyncPolicy::Always);
        for i in 1..=10 {
            append(&mut store, entries(1, i, i)).await.unwrap();
        }
        store.close().unwrap();
        let seg = only_segment(tmp.path());
        let offsets = entry_offsets(&seg);
        assert_eq!(offsets.len(), 10);
        // A crash in the middle of writing entry 7 (and nothing after it reached the disk).
        File::options()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(offsets[6] + 10)
            .unwrap();

        let mut store = open(tmp.path(), FsyncPolicy::Always);
        assert_eq!(state(&mut store).await, (None, Some(lid(1, 6))));
        assert_eq!(read(&mut store, ..).await, entries(1, 1, 6));
        append(&mut store, entries(2, 7, 8)).await.unwrap();
        store.close().unwrap();
        let mut store = open(tmp.path(), FsyncPolicy::Always);
        let mut want = entries(1, 1, 6);
        want.extend(entries(2, 7, 8));
        assert_eq!(read(&mut store, ..).await, want);
    }

    #[tokio::test]
    async fn bad_checksum_cuts_the_log_there() {
        let tmp = tmpdir();
        let mut store = open(tmp.path(), FsyncPolicy::Always);
        append(&mut store, entries(1, 1, 10)).await.unwrap();
        store.close().unwrap();
        let seg = only_segment(tmp.path());
        let offsets = entry_offsets(&seg);
        let mut data = fs::read(&seg).unwrap();
        data[offsets[4] as usize + wal::HEADER + 8] ^= 0x20; // first entry byte of entry 5
        fs::write(&seg, &data).unwrap();

        let mut store = open(tmp.path(), FsyncPolicy::Always);
        assert_eq!(state(&mut store).await, (None, Some(lid(1, 4))));
        assert_eq!(read(&mut store, ..).await, entries(1, 1, 4));
    }

    #[tokio::test]
    async fn bit_rot_after_open_is_an_error_not_an_entry() {
        let tmp = tmpdir();
        let mut store = open_with(
            tmp.path(),
            LogStoreOptions {
                cache_entries: 0,
                ..LogStoreOptions::default()
            },
        );
        append(&mut store, entries(1, 1, 5)).await.unwrap();
        let seg = only_segment(tmp.path());
        let offsets = entry_offsets(&seg);
        let mut data = fs::read(&seg).unwrap();
        data[offsets[2] as usize + wal::HEADER + 8] ^= 0x01;
        fs::write(&seg, &data).unwrap();
        let mut reader = store.get_log_reader().await;
        assert_eq!(
            reader.try_get_log_entries(1..3).await.unwrap(),
            entries(1, 1, 2)
        );
        let err = reader.try_get_log_entries(1..=5).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            reader.try_get_log_entries(4..=5).await.unwrap(),
            entries(1, 4, 5)
        );
    }

    #[tokio::test]
    async fn a_bad_record_before_the_last_segment_refuses_to_open() {
        let tmp = tmpdir();
        let small = LogStoreOptions {
            segment_size: 256,
            ..LogStoreOptions::default()
        };
        let mut store = open_with(tmp.path(), small.clone());
        for i in 1..=30 {
            append(&mut store, entries(1, i, i)).await.unwrap();
        }
        store.close().unwrap();
        let segs = segment_files(tmp.path());
        assert!(segs.len() >= 3, "{segs:?}");
        let offsets = entry_offsets(&segs[0]);
        let mut data = fs::read(&segs[0]).unwrap();
        data[offsets[0] as usize + wal::HEADER] ^= 0x01;
        fs::write(&segs[0], &data).unwrap();
        let err = LogEngine::open(tmp.path(), small)
            .expect_err("corruption in the middle of the log must not be cut or skipped");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn an_old_per_group_log_directory_is_refused() {
        let tmp = tmpdir();
        fs::write(tmp.path().join("raft-state"), b"SRAFTSTA").unwrap();
        let err = LogEngine::open(tmp.path(), LogStoreOptions::default())
            .expect_err("an old log must not be silently ignored");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn one_engine_per_directory_and_one_handle_per_group() {
        let tmp = tmpdir();
        let engine = LogEngine::open(tmp.path(), LogStoreOptions::default()).unwrap();
        let err = LogEngine::open(tmp.path(), LogStoreOptions::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let store = engine.open_group::<C>(3).unwrap();
        let err = engine.open_group::<C>(3).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        drop(store);
        let _store = engine.open_group::<C>(3).unwrap();
        // A group that never wrote has no state.
        assert_eq!(engine.groups(), Vec::<u64>::new());
    }

    async fn truncate_then_append(opts: LogStoreOptions) {
        let tmp = tmpdir();
        let mut store = open_with(tmp.path(), opts.clone());
        append(&mut store, entries(1, 0, 10)).await.unwrap();
        store.truncate_after(Some(lid(1, 5))).await.unwrap();
        assert_eq!(state(&mut store).await, (None, Some(lid(1, 5))));
        assert_eq!(read(&mut store, ..).await, entries(1, 0, 5));
        append(&mut store, entries(2, 6, 8)).await.unwrap();
        let mut want = entries(1, 0, 5);
        want.extend(entries(2, 6, 8));
        assert_eq!(read(&mut store, ..).await, want);
        assert_eq!(read(&mut store, 4..7).await, want[4..7].to_vec());
        store.close().unwrap();

        let mut store = open_with(tmp.path(), opts);
        assert_eq!(read(&mut store, ..).await, want);
        assert_eq!(state(&mut store).await, (None, Some(lid(2, 8))));
        store.truncate_after(None).await.unwrap();
        assert_eq!(state(&mut store).await, (None, None));
        append(&mut store, entries(3, 0, 1)).await.unwrap();
        assert_eq!(read(&mut store, ..).await, entries(3, 0, 1));
    }

    #[tokio::test]
    async fn truncate_after_then_append() {
        truncate_then_append(LogStoreOptions::default()).await;
    }

    #[tokio::test]
    async fn truncate_after_then_append_without_cache() {
        truncate_then_append(LogStoreOptions {
            cache_entries: 0,
            ..LogStoreOptions::default()
        })
        .await;
    }

    #[tokio::test]
    async fn purge_then_restart() {
        let tmp = tmpdir();
        let opts = LogStoreOptions {
            segment_size: 128, // a few entries per segment, so purge deletes files
            cache_entries: 3,
            ..LogStoreOptions::default()
        };
        let mut store = open_with(tmp.path(), opts.clone());
        for i in 0..=10 {
            append(&mut store, entries(1, i, i)).await.unwrap();
        }
        let bytes_before = store.stats().bytes_on_disk;
        let segments_before = segment_files(tmp.path()).len();
        store.purge(lid(1, 4)).await.unwrap();
        // Segments go once the purge record is durable.
        store.engine().sync().unwrap();
        assert!(store.stats().bytes_on_disk < bytes_before);
        assert!(segment_files(tmp.path()).len() < segments_before);
        store.close().unwrap();

        let mut store = open_with(tmp.path(), opts.clone());
        assert_eq!(state(&mut store).await, (Some(lid(1, 4)), Some(lid(1, 10))));
        assert_eq!(read(&mut store, ..).await, entries(1, 5, 10));
        // Truncating purged entries is refused, not silently done.
        assert!(store.truncate_after(Some(lid(1, 3))).await.is_err());
        // Purge past the end (a snapshot newer than the log): the log is empty, and its
        // last log id is the purged one, term included, across a restart.
        store.purge(lid(2, 20)).await.unwrap();
        assert_eq!(
            state(&mut store).await,
            (Some(lid(2, 20)), Some(lid(2, 20)))
        );
        assert_eq!(store.stats().first_index, None);
        store.close().unwrap();

        let mut store = open_with(tmp.path(), opts);
        assert_eq!(
            state(&mut store).await,
            (Some(lid(2, 20)), Some(lid(2, 20)))
        );
        assert_eq!(read(&mut store, ..).await, vec![]);
        assert!(append(&mut store, entries(2, 30, 30)).await.is_err());
        append(&mut store, entries(2, 21, 22)).await.unwrap();
        assert_eq!(
            state(&mut store).await,
            (Some(lid(2, 20)), Some(lid(2, 22)))
        );
        assert_eq!(read(&mut store, ..).await, entries(2, 21, 22));
    }

    #[tokio::test]
    async fn everysec_and_no_persist_on_clean_close() {
        for policy in [FsyncPolicy::EverySec, FsyncPolicy::No] {
            let tmp = tmpdir();
            let mut store = open(tmp.path(), policy);
            append(&mut store, entries(1, 0, 5)).await.unwrap();
            store.save_committed(Some(lid(1, 3))).await.unwrap();
            drop(store); // not close(): dropping the last handle closes the engine

            let mut store = open(tmp.path(), FsyncPolicy::Always);
            assert_eq!(read(&mut store, ..).await, entries(1, 0, 5), "{policy}");
            assert_eq!(
                store.read_committed().await.unwrap(),
                Some(lid(1, 3)),
                "{policy}"
            );
        }
    }

    #[tokio::test]
    async fn always_is_durable_before_the_callback() {
        let tmp = tmpdir();
        let mut store = open(tmp.path(), FsyncPolicy::Always);
        let opened = store.stats().fsync_count; // the first segment's creation
        for i in 0..5 {
            append(&mut store, entries(1, i, i)).await.unwrap();
            assert!(!store.engine().core().has_unsynced(), "after {i}");
        }
        let stats = store.stats();
        assert!(
            (opened + 1..=opened + 5).contains(&stats.fsync_count),
            "{stats:?}"
        );
        assert!(stats.fsync_p50_us > 0 && stats.fsync_p50_us <= stats.fsync_p999_us);
    }

    #[tokio::test]
    async fn votes_are_durable_under_every_policy() {
        for policy in [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No] {
            let tmp = tmpdir();
            let mut store = open(tmp.path(), policy);
            append(&mut store, entries(1, 0, 2)).await.unwrap();
            store.save_vote(&Vote::new(4, 2)).await.unwrap();
            // Durable on return: the vote record and the appends before it.
            assert!(!store.engine().core().has_unsynced(), "{policy}");
            let seg = only_segment(tmp.path());
            let votes: Vec<_> = records(&seg)
                .into_iter()
                .filter(|r| r.0 == Kind::Vote)
                .collect();
            assert_eq!(votes.len(), 1, "{policy}");
            assert_eq!(
                decode::<VoteOf<C>>(&votes[0].3, "vote").unwrap(),
                Vote::new(4, 2)
            );
        }
    }

    #[tokio::test]
    async fn everysec_syncs_and_saves_committed_in_the_background_then_idles() {
        let tmp = tmpdir();
        let mut store = open(tmp.path(), FsyncPolicy::EverySec);
        let stats = store.stats_handle();
        let opened = stats.get().fsync_count;
        append(&mut store, entries(1, 0, 3)).await.unwrap();
        store.save_committed(Some(lid(1, 2))).await.unwrap();
        assert!(store.engine().core().has_unsynced());
        wait_until("a background fsync", || stats.get().fsync_count > opened).await;
        let seg = only_segment(tmp.path());
        let want = encode(&Some(lid(1, 2))).unwrap();
        wait_until("the committed log id on disk", || {
            records(&seg)
                .iter()
                .any(|r| r.0 == Kind::Committed && r.3 == want)
        })
        .await;
        wait_until("everything synced", || {
            !store.engine().core().has_unsynced()
        })
        .await;
        // Nothing new: no more fsyncs, and the flusher stops ticking.
        let ticks = &store.engine().core().counters().ticks;
        tokio::time::sleep(FLUSH_INTERVAL + Duration::from_millis(200)).await;
        let (n, t) = (stats.get().fsync_count, ticks.load(Ordering::Relaxed));
        tokio::time::sleep(FLUSH_INTERVAL * 2).await;
        assert_eq!(stats.get().fsync_count, n);
        assert_eq!(ticks.load(Ordering::Relaxed), t, "an idle flusher sleeps");
    }

    #[tokio::test]
    async fn no_policy_never_fsyncs_appends_while_open() {
        let tmp = tmpdir();
        let mut store = open(tmp.path(), FsyncPolicy::No);
        let opened = store.stats().fsync_count;
        append(&mut store, entries(1, 0, 3)).await.unwrap();
        store.save_committed(Some(lid(1, 2))).await.unwrap();
        tokio::time::sleep(FLUSH_INTERVAL + Duration::from_millis(300)).await;
        assert_eq!(store.stats().fsync_count, opened);
        assert!(store.engine().core().has_unsynced());
    }

    #[tokio::test]
    async fn cache_is_bounded_and_reads_fall_back_to_disk() {
        let tmp = tmpdir();
        let opts = LogStoreOptions {
            cache_entries: 8,
            ..LogStoreOptions::default()
        };
        let mut store = open_with(tmp.path(), opts);
        for i in (1..=100).step_by(10) {
            append(&mut store, entries(1, i, i + 9)).await.unwrap();
        }
        let stats = store.stats();
        assert_eq!(stats.cached_entries, 8);
        assert!(stats.cached_bytes > 0);
        assert_eq!(read(&mut store, ..).await, entries(1, 1, 100));
        assert_eq!(read(&mut store, 90..95).await, entries(1, 90, 94));
        store.truncate_after(Some(lid(1, 96))).await.unwrap();
        assert_eq!(store.stats().cached_entries, 4);
        store.purge(lid(1, 95)).await.unwrap();
        assert_eq!(store.stats().cached_entries, 1);
        assert_eq!(read(&mut store, ..).await, entries(1, 96, 96));

        let tmp = tmpdir();
        let opts = LogStoreOptions {
            cache_bytes: 100,
            ..LogStoreOptions::default()
        };
        let mut store = open_with(tmp.path(), opts);
        append(&mut store, entries(1, 1, 50)).await.unwrap();
        let stats = store.stats();
        assert!(
            stats.cached_bytes <= 100 && stats.cached_entries < 50,
            "{stats:?}"
        );
        assert_eq!(read(&mut store, ..).await, entries(1, 1, 50));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_run_concurrently_with_appends() {
        let tmp = tmpdir();
        let opts = LogStoreOptions {
            cache_entries: 16,
            segment_size: 4096,
            ..LogStoreOptions::default()
        };
        let mut store = open_with(tmp.path(), opts);
        append(&mut store, entries(1, 1, 1)).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for r in 0..2u64 {
            let mut reader = store.get_log_reader().await;
            let stop = Arc::clone(&stop);
            readers.push(tokio::spawn(async move {
                let mut reads = 0u64;
                let mut from = 1;
                while !stop.load(Ordering::Relaxed) {
                    let got = reader.try_get_log_entries(from..from + 40).await.unwrap();
                    assert!(!got.is_empty(), "entry {from} was appended before");
                    for (k, e) in got.iter().enumerate() {
                        assert_eq!(*e, entry(1, from + k as u64));
                    }
                    // Jump around what exists so far: cache and disk, old and new.
                    let last = got.last().unwrap().index();
                    from = 1 + (from * (7 + r) + got.len() as u64) % last;
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            }));
        }
        for i in (2..=2000).step_by(20) {
            append(&mut store, entries(1, i, i + 19)).await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            let reads = tokio::time::timeout(DEADLINE, r).await.unwrap().unwrap();
            assert!(reads > 0);
        }
        assert_eq!(read(&mut store, ..).await, entries(1, 1, 2001));
    }

    #[tokio::test]
    async fn poisoned_engine_refuses_writes_and_keeps_what_it_had() {
        let tmp = tmpdir();
        let mut store = open(tmp.path(), FsyncPolicy::Always);
        append(&mut store, entries(1, 1, 3)).await.unwrap();
        store.engine().core().poison("injected fsync failure");
        assert!(append(&mut store, entries(1, 4, 4)).await.is_err());
        assert!(store.save_vote(&Vote::new(1, 1)).await.is_err());
        assert!(store.truncate_after(Some(lid(1, 1))).await.is_err());
        assert!(store.purge(lid(1, 2)).await.is_err());
        assert!(store.engine().sync().is_err());
        assert_eq!(read(&mut store, ..).await, entries(1, 1, 3));
        drop(store);
        let mut store = open(tmp.path(), FsyncPolicy::Always);
        assert_eq!(read(&mut store, ..).await, entries(1, 1, 3));
        assert_eq!(
            store.get_log_reader().await.read_vote().await.unwrap(),
            None
        );
    }

    /// What a test expects of one group.
    #[derive(Clone, Debug, Default, PartialEq)]
    struct Expect {
        entries: Vec<EntryOf<C>>,
        vote: Option<VoteOf<C>>,
        committed: Option<LogIdOf<C>>,
        purged: Option<LogIdOf<C>>,
    }

    async fn must_hold(store: &mut RaftLogStore<C>, want: &Expect) {
        let g = store.group();
        assert_eq!(read(store, ..).await, want.entries, "group {g} entries");
        let mut reader = store.get_log_reader().await;
        assert_eq!(
            reader.read_vote().await.unwrap(),
            want.vote,
            "group {g} vote"
        );
        assert_eq!(
            store.read_committed().await.unwrap(),
            want.committed,
            "group {g} committed"
        );
        let (purged, last) = state(store).await;
        assert_eq!(purged, want.purged, "group {g} purged");
        let want_last = want.entries.last().map(|e| e.log_id).or(want.purged);
        assert_eq!(last, want_last, "group {g} last log id");
    }

    #[tokio::test]
    async fn groups_keep_their_own_log_and_hard_state_across_restart() {
        let tmp = tmpdir();
        let opts = LogStoreOptions {
            segment_size: 1024, // rolls (and checkpoints) along the way
            cache_entries: 4,   // reads go to disk too
            ..LogStoreOptions::default()
        };
        let engine = LogEngine::open(tmp.path(), opts.clone()).unwrap();
        let groups = [1u64, 2, 3, 40];
        let mut stores: Vec<RaftLogStore<C>> = groups
            .iter()
            .map(|&g| engine.open_group(g).unwrap())
            .collect();
        let mut want: Vec<Expect> = vec![Expect::default(); groups.len()];
        let mut next = vec![1u64; groups.len()];
        // Interleaved batches of different sizes.
        for round in 0..30u64 {
            for (k, store) in stores.iter_mut().enumerate() {
                let g = groups[k];
                let n = 1 + (round + k as u64) % 4;
                let batch = gentries(g, 1, next[k], next[k] + n - 1);
                append(store, batch.clone()).await.unwrap();
                want[k].entries.extend(batch);
                next[k] += n;
            }
            if round == 10 {
                for (k, store) in stores.iter_mut().enumerate() {
                    let v = Vote::new(2 + k as u64, 1);
                    store.save_vote(&v).await.unwrap();
                    want[k].vote = Some(v);
                }
            }
        }
        // Group 1: truncate its tail and append a new term; group 2: purge; group 3:
        // both; group 40: committed only.
        stores[0].truncate_after(Some(lid(1, 50))).await.unwrap();
        want[0].entries.truncate(50);
        let batch = gentries(1, 2, 51, 55);
        append(&mut stores[0], batch.clone()).await.unwrap();
        want[0].entries.extend(batch);
        stores[1].purge(lid(1, 30)).await.unwrap();
        want[1].entries.retain(|e| e.log_id.index > 30);
        want[1].purged = Some(lid(1, 30));
        stores[2].purge(lid(1, 20)).await.unwrap();
        stores[2].truncate_after(Some(lid(1, 40))).await.unwrap();
        want[2]
            .entries
            .retain(|e| (21..=40).contains(&e.log_id.index));
        want[2].purged = Some(lid(1, 20));
        for (k, store) in stores.iter_mut().enumerate() {
            let c = want[k].entries.get(5).map(|e| e.log_id);
            store.save_committed(c).await.unwrap();
            want[k].committed = c;
        }
        // One more vote after everything, in the last segment.
        stores[3].save_vote(&Vote::new(9, 3)).await.unwrap();
        want[3].vote = Some(Vote::new(9, 3));
        for (k, store) in stores.iter_mut().enumerate() {
            must_hold(store, &want[k]).await;
        }
        assert!(segment_files(tmp.path()).len() >= 3);
        drop(stores);
        engine.close().unwrap();
        drop(engine);

        let engine = LogEngine::open(tmp.path(), opts).unwrap();
        assert_eq!(engine.groups(), groups.to_vec());
        for (k, &g) in groups.iter().enumerate() {
            let mut store = engine.open_group::<C>(g).unwrap();
            must_hold(&mut store, &want[k]).await;
        }
        let mut fresh = engine.open_group::<C>(99).unwrap();
        must_hold(&mut fresh, &Expect::default()).await;
    }

    #[tokio::test]
    async fn segments_go_once_every_group_purged_past_them_and_not_before() {
        let tmp = tmpdir();
        let opts = LogStoreOptions {
            segment_size: 512,
            ..LogStoreOptions::default()
        };
        let engine = LogEngine::open(tmp.path(), opts.clone()).unwrap();
        let mut stores: Vec<RaftLogStore<C>> = [1u64, 2, 3]
            .iter()
            .map(|&g| engine.open_group(g).unwrap())
            .collect();
        // Group 3 votes early: its vote record sits in a segment that will go.
        stores[2].save_vote(&Vote::new(7, 3)).await.unwrap();
        for i in 1..=40 {
            for (k, store) in stores.iter_mut().enumerate() {
                append(store, gentries(k as u64 + 1, 1, i, i))
                    .await
                    .unwrap();
            }
        }
        let first_segments = segment_files(tmp.path());
        assert!(first_segments.len() >= 4, "{first_segments:?}");
        assert_eq!(engine.groups_pinning_oldest(u64::MAX), Vec::<u64>::new());
        assert_eq!(engine.groups_pinning_oldest(0), vec![1, 2, 3]);

        // Groups 1 and 2 purge everything; group 3 (never purging) pins every segment.
        stores[0].purge(lid(1, 40)).await.unwrap();
        stores[1].purge(lid(1, 40)).await.unwrap();
        engine.sync().unwrap();
        let now = segment_files(tmp.path());
        assert!(
            first_segments.iter().all(|s| now.contains(s)),
            "a segment with live entries of group 3 went: {now:?}"
        );
        assert_eq!(engine.groups_pinning_oldest(0), vec![3]);
        let stats = engine.stats();
        assert_eq!(stats.segments, now.len() as u64);

        // Group 3 purges half: the segments holding only older entries go, once the
        // purge is durable.
        stores[2].purge(lid(1, 20)).await.unwrap();
        engine.sync().unwrap();
        let left = segment_files(tmp.path());
        assert!(left.len() < now.len(), "{left:?}");
        assert_eq!(left.last(), now.last());
        assert!(!left.contains(&first_segments[0]));
        assert!(left.contains(first_segments.last().unwrap()));
        assert!(engine.stats().disk_bytes < stats.disk_bytes);
        assert_eq!(engine.groups_pinning_oldest(0), vec![3]);

        // Everything purged: only the segment being written is left.
        stores[2].purge(lid(1, 40)).await.unwrap();
        engine.sync().unwrap();
        assert_eq!(segment_files(tmp.path()).len(), 1);
        assert_eq!(engine.groups_pinning_oldest(0), Vec::<u64>::new());
        drop(stores);
        engine.close().unwrap();
        drop(engine);

        // The hard state of deleted segments lives on in the checkpoints.
        let engine = LogEngine::open(tmp.path(), opts).unwrap();
        assert_eq!(engine.groups(), vec![1, 2, 3]);
        for g in 1..=3u64 {
            let mut store = engine.open_group::<C>(g).unwrap();
            let want = Expect {
                vote: (g == 3).then(|| Vote::new(7, 3)),
                purged: Some(lid(1, 40)),
                ..Expect::default()
            };
            must_hold(&mut store, &want).await;
        }
    }

    #[tokio::test]
    async fn a_dropped_group_is_forgotten_for_good_and_frees_its_segments() {
        let tmp = tmpdir();
        let opts = || LogStoreOptions {
            segment_size: 256,
            policy: FsyncPolicy::No,
            ..LogStoreOptions::default()
        };
        {
            let engine = LogEngine::open(tmp.path(), opts()).unwrap();
            let mut a = engine.open_group::<C>(1).unwrap();
            let mut b = engine.open_group::<C>(2).unwrap();
            for i in 1..=20 {
                append(&mut a, gentries(1, 1, i, i)).await.unwrap();
                append(&mut b, gentries(2, 1, i, i)).await.unwrap();
            }
            b.purge(lid(1, 5)).await.unwrap();
            drop(b);
            // Group 2's replica left the node.
            engine.drop_group(2).unwrap();
            assert_eq!(engine.groups(), vec![1]);
            // Once group 1 purges too, nothing lives in the old segments.
            a.purge(lid(1, 20)).await.unwrap();
            wait_until("the old segments deleted", || {
                segment_files(tmp.path()).len() == 1
            })
            .await;
            assert_eq!(read(&mut a, 21..).await, vec![]);
            drop(a);
            engine.close().unwrap();
        }
        // After a restart the group is still gone, and a new replica of it starts
        // from an empty log (no purge point above its empty state machine).
        let engine = LogEngine::open(tmp.path(), opts()).unwrap();
        assert_eq!(engine.groups(), vec![1]);
        let mut b = engine.open_group::<C>(2).unwrap();
        assert_eq!(state(&mut b).await, (None, None));
        append(&mut b, gentries(2, 3, 1, 2)).await.unwrap();
        assert_eq!(read(&mut b, ..).await, gentries(2, 3, 1, 2));
    }

    #[tokio::test]
    async fn dead_segments_are_deleted_in_the_background() {
        let tmp = tmpdir();
        let engine = LogEngine::open(
            tmp.path(),
            LogStoreOptions {
                segment_size: 256,
                policy: FsyncPolicy::No,
                ..LogStoreOptions::default()
            },
        )
        .unwrap();
        let mut store = engine.open_group::<C>(1).unwrap();
        for i in 1..=20 {
            append(&mut store, entries(1, i, i)).await.unwrap();
        }
        assert!(segment_files(tmp.path()).len() >= 3);
        store.purge(lid(1, 20)).await.unwrap();
        // No append follows: the flusher's tick makes the purge durable and deletes.
        wait_until("dead segments deleted", || {
            segment_files(tmp.path()).len() == 1
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_covers_many_groups_with_one_fsync() {
        const GROUPS: u64 = 8;
        const APPENDS: u64 = 60;
        let tmp = tmpdir();
        let engine = LogEngine::open(tmp.path(), LogStoreOptions::default()).unwrap();
        let before = engine.stats().fsync_count;
        let mut tasks = Vec::new();
        for g in 1..=GROUPS {
            let mut store = engine.open_group::<C>(g).unwrap();
            tasks.push(tokio::spawn(async move {
                for i in 1..=APPENDS {
                    append(&mut store, gentries(g, 1, i, i)).await.unwrap();
                }
                store
            }));
        }
        let mut stores = Vec::new();
        for t in tasks {
            stores.push(
                tokio::time::timeout(DEADLINE * 3, t)
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        let fsyncs = engine.stats().fsync_count - before;
        let appends = GROUPS * APPENDS;
        println!(
            "group commit: {appends} appends of {GROUPS} groups, {fsyncs} fsyncs, {:.2} appends per fsync",
            appends as f64 / fsyncs as f64
        );
        assert!(fsyncs < appends, "{fsyncs} fsyncs for {appends} appends");
        for (k, store) in stores.iter_mut().enumerate() {
            let g = k as u64 + 1;
            assert_eq!(read(store, ..).await, gentries(g, 1, 1, APPENDS));
        }
    }

    #[tokio::test]
    async fn a_crash_keeps_every_group_up_to_the_tear() {
        let tmp = tmpdir();
        let opts = LogStoreOptions {
            segment_size: 2048,
            ..LogStoreOptions::default()
        };
        let engine = LogEngine::open(tmp.path(), opts.clone()).unwrap();
        let mut stores: Vec<RaftLogStore<C>> = [1u64, 2, 3]
            .iter()
            .map(|&g| engine.open_group(g).unwrap())
            .collect();
        for i in 1..=30 {
            for (k, store) in stores.iter_mut().enumerate() {
                append(store, gentries(k as u64 + 1, 1, i, i))
                    .await
                    .unwrap();
            }
        }
        stores[1].save_vote(&Vote::new(5, 2)).await.unwrap();
        for (k, store) in stores.iter_mut().enumerate() {
            append(store, gentries(k as u64 + 1, 1, 31, 31))
                .await
                .unwrap();
        }
        drop(stores);
        engine.close().unwrap();
        drop(engine);
        let segs = segment_files(tmp.path());
        assert!(segs.len() >= 2, "{segs:?}");
        let last_seg = segs.last().unwrap().clone();
        let recs = records(&last_seg);
        // Tear the last record (group 3's entry 31) in the middle.
        let (kind, group, offset, body) = recs.last().unwrap().clone();
        assert_eq!((kind, group), (Kind::Entry, 3));
        File::options()
            .write(true)
            .open(&last_seg)
            .unwrap()
            .set_len(offset + (wal::HEADER + body.len()) as u64 / 2)
            .unwrap();

        let check = |torn: bool| {
            let engine = LogEngine::open(tmp.path(), opts.clone()).unwrap();
            async move {
                for g in 1..=3u64 {
                    let mut store = engine.open_group::<C>(g).unwrap();
                    let last = if g == 3 && torn { 30 } else { 31 };
                    let want = Expect {
                        entries: gentries(g, 1, 1, last),
                        vote: (g == 2).then(|| Vote::new(5, 2)),
                        ..Expect::default()
                    };
                    must_hold(&mut store, &want).await;
                }
            }
        };
        check(true).await;
        // A zero-filled tail (the file grew, its data never landed) is cut as well.
        let len = fs::metadata(&last_seg).unwrap().len();
        let mut f = File::options().append(true).open(&last_seg).unwrap();
        std::io::Write::write_all(&mut f, &[0u8; 100]).unwrap();
        drop(f);
        check(true).await;
        assert_eq!(fs::metadata(&last_seg).unwrap().len(), len);
    }

    #[tokio::test]
    async fn a_roll_cut_short_by_a_crash_is_undone() {
        let tmp = tmpdir();
        let opts = LogStoreOptions::default();
        let mut store = open_with(tmp.path(), opts.clone());
        append(&mut store, entries(1, 1, 5)).await.unwrap();
        store.save_vote(&Vote::new(2, 1)).await.unwrap();
        drop(store);
        // The next segment was created, its checkpoint never landed.
        let seg = only_segment(tmp.path());
        let next = wal::segment_path(tmp.path(), 2);
        fs::write(&next, [0u8; 40]).unwrap();
        assert_ne!(seg, next);
        let mut store = open_with(tmp.path(), opts);
        assert_eq!(segment_files(tmp.path()), vec![seg]);
        must_hold(
            &mut store,
            &Expect {
                entries: entries(1, 1, 5),
                vote: Some(Vote::new(2, 1)),
                ..Expect::default()
            },
        )
        .await;
        append(&mut store, entries(1, 6, 6)).await.unwrap();
    }

    #[test]
    fn fsync_policy_reads_and_prints_like_redis() {
        for p in [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No] {
            assert_eq!(p.to_string().parse::<FsyncPolicy>(), Ok(p));
        }
        assert_eq!("EverySec".parse::<FsyncPolicy>(), Ok(FsyncPolicy::EverySec));
        assert_eq!(FsyncPolicy::EverySec.to_string(), "everysec");
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
        assert!("".parse::<FsyncPolicy>().is_err());
    }
}
