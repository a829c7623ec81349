//! openraft's durable log ([`RaftLogStorage`]) over our segmented [`Wal`].
//!
//! Files in the store's directory (disk formats are contracts: only ever extended):
//! - the WAL's segments and `wal.meta` (see [`super::wal`]); each record's payload is one
//!   openraft entry encoded with bincode's serde API, standard config;
//! - `raft-state`: vote, committed log id and purged log id, replaced whole (temp file,
//!   fsync, rename, fsync dir): `magic "SRAFTSTA" | version: u32 LE | len: u32 LE |
//!   bincode((vote, committed, purged)) | crc32 of all bytes before it: u32 LE`. The
//!   purged log id lives here because openraft needs its term after a restart, and the
//!   WAL only knows indexes.
//!
//! Durability follows Redis's appendfsync ([`FsyncPolicy`]). An append is written by the
//! caller (into the page cache) and is readable at once; under `always` the fsync runs on
//! the store's flusher thread, which covers every append queued meanwhile with one fsync
//! (group commit) and only then fires their `IOFlushed` callbacks, so the Raft core goes
//! on replicating while the local disk flushes. The vote is fsynced before `save_vote`
//! returns, whatever the policy, and (under `always`) only after every earlier append is
//! durable: openraft reads a completed later write as proof the earlier ones completed.
//!
//! Locks, always taken in this order: `hard_lock` (one raft-state writer at a time),
//! `sync_lock` (one log fsync at a time, so "nothing left to sync" really means durable),
//! `inner` (WAL, entry cache, ids). `inner` is never held across an fsync of the log, so
//! replication readers ([`LogReader`], on other tasks) do not wait for the disk; it is
//! held across truncate and purge, which are rare.

use super::latency::LatencyHistogram;
use super::wal::{Wal, WalOptions};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{LogIdOf, VoteOf};
use openraft::{OptionalSend, RaftTypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::{self, Debug};
use std::fs::{self, File};
use std::io::{self, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The file holding vote, committed and purged log ids.
pub const STATE_FILE: &str = "raft-state";
const STATE_MAGIC: &[u8; 8] = b"SRAFTSTA";
const STATE_VERSION: u32 = 1;
/// How often `everysec` syncs the log, and lazily saved committed ids reach the disk.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// When appended entries are forced to disk; Redis's `appendfsync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fdatasync before an append is reported flushed (group commit batches the fsyncs).
    #[default]
    Always,
    /// Report appends flushed at once; a background thread fdatasyncs once a second when
    /// there is unsynced data. A crash loses at most about a second of appends.
    EverySec,
    /// Never fdatasync the log; the OS writes it back when it likes.
    No,
}

impl FsyncPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySec => "everysec",
            FsyncPolicy::No => "no",
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FsyncPolicy {
    type Err = String;

    /// Case-insensitive, as Redis reads `appendfsync`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Ok(FsyncPolicy::Always),
            "everysec" => Ok(FsyncPolicy::EverySec),
            "no" => Ok(FsyncPolicy::No),
            _ => Err(format!(
                "invalid fsync policy '{s}' (expected always, everysec or no)"
            )),
        }
    }
}

/// Tunables of a [`RaftLogStore`].
#[derive(Clone, Debug)]
pub struct LogStoreOptions {
    pub policy: FsyncPolicy,
    /// WAL segment size; purge frees disk a whole segment at a time.
    pub segment_size: u64,
    /// The entry cache keeps at most this many of the newest entries...
    pub cache_entries: usize,
    /// ...and at most this many bytes of them (encoded size). 0 disables the cache.
    pub cache_bytes: usize,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            policy: FsyncPolicy::Always,
            segment_size: WalOptions::default().segment_size,
            cache_entries: 100_000,
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Log figures for INFO; see [`RaftLogStore::stats_handle`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    /// fdatasyncs of the log (each may cover many appends).
    pub fsync_count: u64,
    pub fsync_p50_us: u64,
    pub fsync_p99_us: u64,
    pub fsync_p999_us: u64,
    /// Bytes of WAL records on disk.
    pub bytes_on_disk: u64,
    pub cached_entries: u64,
    pub cached_bytes: u64,
}

/// Counters shared with [`LogStatsHandle`]s; updated under the store's lock, read without.
#[derive(Default)]
struct Counters {
    /// Index + 1; 0 for none.
    first: AtomicU64,
    last: AtomicU64,
    disk_bytes: AtomicU64,
    cached_entries: AtomicU64,
    cached_bytes: AtomicU64,
    fsyncs: AtomicU64,
    fsync_us: LatencyHistogram,
}

/// Reads a store's [`LogStats`] from any thread, after the store moved into openraft.
#[derive(Clone)]
pub struct LogStatsHandle(Arc<Counters>);

impl LogStatsHandle {
    pub fn get(&self) -> LogStats {
        let c = &self.0;
        let index = |a: &AtomicU64| a.load(Ordering::Relaxed).checked_sub(1);
        LogStats {
            first_index: index(&c.first),
            last_index: index(&c.last),
            fsync_count: c.fsyncs.load(Ordering::Relaxed),
            fsync_p50_us: c.fsync_us.percentile(0.5),
            fsync_p99_us: c.fsync_us.percentile(0.99),
            fsync_p999_us: c.fsync_us.percentile(0.999),
            bytes_on_disk: c.disk_bytes.load(Ordering::Relaxed),
            cached_entries: c.cached_entries.load(Ordering::Relaxed),
            cached_bytes: c.cached_bytes.load(Ordering::Relaxed),
        }
    }
}

/// What `raft-state` holds.
struct HardState<C: RaftTypeConfig> {
    vote: Option<VoteOf<C>>,
    committed: Option<LogIdOf<C>>,
    purged: Option<LogIdOf<C>>,
}

impl<C: RaftTypeConfig> Default for HardState<C> {
    fn default() -> Self {
        HardState {
            vote: None,
            committed: None,
            purged: None,
        }
    }
}

impl<C: RaftTypeConfig> Clone for HardState<C> {
    fn clone(&self) -> Self {
        HardState {
            vote: self.vote.clone(),
            committed: self.committed.clone(),
            purged: self.purged.clone(),
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

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn encode_state<C: RaftTypeConfig>(hard: &HardState<C>) -> io::Result<Vec<u8>> {
    let payload = encode(&(&hard.vote, &hard.committed, &hard.purged))?;
    let len = u32::try_from(payload.len()).map_err(|_| invalid_data("raft-state too large"))?;
    let mut buf = Vec::with_capacity(payload.len() + 20);
    buf.extend_from_slice(STATE_MAGIC);
    buf.extend_from_slice(&STATE_VERSION.to_le_bytes());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&payload);
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    Ok(buf)
}

/// Reads `raft-state`; a missing file is a fresh store. The file is replaced by rename,
/// so a bad one is real corruption, never a torn write, and is an error.
fn read_state<C: RaftTypeConfig>(dir: &Path) -> io::Result<HardState<C>> {
    let buf = match fs::read(dir.join(STATE_FILE)) {
        Ok(buf) => buf,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HardState::default()),
        Err(e) => return Err(e),
    };
    let bad = |why: &str| invalid_data(format!("corrupt {STATE_FILE}: {why}"));
    if buf.len() < 20 || &buf[0..8] != STATE_MAGIC {
        return Err(bad("bad magic or length"));
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
        return Err(bad("checksum mismatch"));
    }
    let version = u32::from_le_bytes(body[8..12].try_into().unwrap());
    if version != STATE_VERSION {
        return Err(bad(&format!("unknown version {version}")));
    }
    let len = u32::from_le_bytes(body[12..16].try_into().unwrap()) as usize;
    if body.len() != 16 + len {
        return Err(bad("length mismatch"));
    }
    let (vote, committed, purged) = decode(&body[16..], STATE_FILE)?;
    Ok(HardState {
        vote,
        committed,
        purged,
    })
}

fn write_state<C: RaftTypeConfig>(dir: &Path, hard: &HardState<C>) -> io::Result<()> {
    let buf = encode_state(hard)?;
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(&buf)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(STATE_FILE))?;
    sync_dir(dir)
}

/// Runs blocking file work (fsyncs) from async code without stalling the other tasks of
/// a multi-threaded tokio worker; elsewhere (current-thread runtime, plain threads) it
/// just runs.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// io::Error is not Clone; a flush result goes to many callbacks.
fn copy_result(r: &io::Result<()>) -> io::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
}

struct Cached<C: RaftTypeConfig> {
    entry: C::Entry,
    bytes: usize,
}

/// Everything behind the store's main lock.
struct Inner<C: RaftTypeConfig> {
    wal: Wal,
    /// The newest entries: contiguous, ending at the WAL's last entry.
    cache: VecDeque<Cached<C>>,
    cache_bytes: usize,
    /// Log id of the WAL's last entry; None when it holds none.
    last: Option<LogIdOf<C>>,
    /// Vote and purged exactly as on disk; `committed` may be newer than the disk (saved
    /// lazily) while `committed_gen != committed_saved_gen`.
    hard: HardState<C>,
    committed_gen: u64,
    committed_saved_gen: u64,
}

impl<C: RaftTypeConfig> Inner<C>
where
    C::Entry: Clone,
{
    fn cache_first(&self) -> Option<u64> {
        self.cache.front().map(|c| c.entry.index())
    }

    fn evict(&mut self, opts: &LogStoreOptions) {
        while self.cache.len() > opts.cache_entries || self.cache_bytes > opts.cache_bytes {
            match self.cache.pop_front() {
                Some(c) => self.cache_bytes -= c.bytes,
                None => break,
            }
        }
    }

    fn pop_cache_back_from(&mut self, index: u64) {
        while self.cache.back().is_some_and(|c| c.entry.index() >= index) {
            let c = self.cache.pop_back().expect("checked non-empty");
            self.cache_bytes -= c.bytes;
        }
    }

    fn pop_cache_front_upto(&mut self, index: u64) {
        while self.cache.front().is_some_and(|c| c.entry.index() <= index) {
            let c = self.cache.pop_front().expect("checked non-empty");
            self.cache_bytes -= c.bytes;
        }
    }

    fn decode_at(&self, index: u64, payload: &[u8]) -> io::Result<C::Entry> {
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
    /// from the WAL.
    fn entries(&self, from: u64, to: u64) -> io::Result<Vec<C::Entry>> {
        let cache_from = self.cache_first().unwrap_or(to + 1);
        let mut out = Vec::with_capacity((to - from + 1) as usize);
        if from < cache_from {
            let disk_to = to.min(cache_from - 1);
            for (index, payload) in (from..).zip(self.wal.read_range(from, disk_to)?) {
                out.push(self.decode_at(index, &payload)?);
            }
        }
        for index in from.max(cache_from)..=to {
            out.push(self.cache[(index - cache_from) as usize].entry.clone());
        }
        Ok(out)
    }

    fn log_id_at(&self, index: u64) -> io::Result<LogIdOf<C>> {
        Ok(self.entries(index, index)?.remove(0).log_id())
    }

    /// The part of `range` the log holds (purged entries and the future clipped off).
    fn clip(&self, range: &impl RangeBounds<u64>) -> Option<(u64, u64)> {
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
        let from = from.max(self.wal.first_index()?);
        let to = to.min(self.wal.last_index()?);
        (from <= to).then_some((from, to))
    }

    fn publish(&self, c: &Counters) {
        let index = |i: Option<u64>| i.map_or(0, |i| i + 1);
        c.first
            .store(index(self.wal.first_index()), Ordering::Relaxed);
        c.last
            .store(index(self.wal.last_index()), Ordering::Relaxed);
        c.disk_bytes.store(self.wal.disk_bytes(), Ordering::Relaxed);
        c.cached_entries
            .store(self.cache.len() as u64, Ordering::Relaxed);
        c.cached_bytes
            .store(self.cache_bytes as u64, Ordering::Relaxed);
    }
}

struct Shared<C: RaftTypeConfig> {
    dir: PathBuf,
    opts: LogStoreOptions,
    hard_lock: Mutex<()>,
    sync_lock: Mutex<()>,
    inner: Mutex<Inner<C>>,
    counters: Arc<Counters>,
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
        lock(&self.inner, "state")
    }

    /// Makes every append so far durable with one fsync pass.
    fn sync_log(&self) -> io::Result<()> {
        let _one_at_a_time = lock(&self.sync_lock, "sync")?;
        let pending = self.inner()?.wal.take_unsynced()?;
        if pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let result = pending.run();
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.counters.fsync_us.record(us);
        if let Err(e) = &result {
            self.inner()?.wal.poison(e.to_string());
        }
        result
    }

    /// Durably rewrites `raft-state` with `change` applied to the current hard state;
    /// the in-memory vote and purged id change only once the file is in place.
    fn write_hard(&self, change: impl FnOnce(&mut HardState<C>)) -> io::Result<()> {
        let _one_writer = lock(&self.hard_lock, "raft-state")?;
        let (mut next, gen) = {
            let inner = self.inner()?;
            (inner.hard.clone(), inner.committed_gen)
        };
        change(&mut next);
        write_state(&self.dir, &next)?;
        let mut inner = self.inner()?;
        inner.hard.vote = next.vote;
        inner.hard.purged = next.purged;
        // Committed may have moved on while we wrote; then it is still owed to the disk.
        inner.committed_saved_gen = inner.committed_saved_gen.max(gen);
        Ok(())
    }

    fn save_committed_if_dirty(&self) -> io::Result<()> {
        let dirty = {
            let inner = self.inner()?;
            inner.committed_gen != inner.committed_saved_gen
        };
        if dirty {
            self.write_hard(|_| {})?;
        }
        Ok(())
    }
}

enum Flush<C: RaftTypeConfig> {
    /// Fire this callback once everything appended so far is durable.
    Durable(IOFlushed<C>),
    Stop,
}

/// The flusher thread: group commit under `always`, the once-a-second log sync under
/// `everysec`, and the lazy save of the committed log id under every policy.
fn run_flusher<C: RaftTypeConfig>(shared: Arc<Shared<C>>, rx: mpsc::Receiver<Flush<C>>)
where
    C::Entry: Clone,
{
    let mut next_tick = Instant::now() + FLUSH_INTERVAL;
    loop {
        let mut waiting = Vec::new();
        let mut stop = false;
        match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(Flush::Durable(cb)) => waiting.push(cb),
            Ok(Flush::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => stop = true,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        // Group commit: one fsync covers every append queued by now.
        while !stop {
            match rx.try_recv() {
                Ok(Flush::Durable(cb)) => waiting.push(cb),
                Ok(Flush::Stop) | Err(mpsc::TryRecvError::Disconnected) => stop = true,
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        let due = Instant::now() >= next_tick;
        if !waiting.is_empty() || (due && shared.opts.policy == FsyncPolicy::EverySec) {
            let result = shared.sync_log();
            if let Err(e) = &result {
                tracing::error!(dir = %shared.dir.display(), error = %e, "raft log: fsync failed");
            }
            for cb in waiting {
                cb.io_completed(copy_result(&result));
            }
        }
        if due {
            if let Err(e) = shared.save_committed_if_dirty() {
                tracing::error!(dir = %shared.dir.display(), error = %e, "raft log: saving committed log id failed");
            }
            next_tick = Instant::now() + FLUSH_INTERVAL;
        }
        if stop {
            return;
        }
    }
}

struct Flusher<C: RaftTypeConfig> {
    tx: mpsc::Sender<Flush<C>>,
    thread: JoinHandle<()>,
}

/// openraft's log storage for one Raft group, in its own directory. Owns a flusher
/// thread, stopped (after a final sync of log and committed id, whatever the policy, as
/// Redis does at shutdown) by [`RaftLogStore::close`] or on drop.
pub struct RaftLogStore<C: RaftTypeConfig>
where
    C::Entry: Clone,
{
    shared: Arc<Shared<C>>,
    flusher: Option<Flusher<C>>,
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

impl<C: RaftTypeConfig> RaftLogStore<C>
where
    C::Entry: Clone,
{
    /// Opens (creating if needed) the log in `dir` with default options.
    pub fn open(dir: &Path, policy: FsyncPolicy) -> io::Result<Self> {
        Self::open_with(
            dir,
            LogStoreOptions {
                policy,
                ..LogStoreOptions::default()
            },
        )
    }

    pub fn open_with(dir: &Path, opts: LogStoreOptions) -> io::Result<Self> {
        let mut wal = Wal::open(
            dir,
            WalOptions {
                segment_size: opts.segment_size,
                sync: false,
            },
        )?;
        let hard: HardState<C> = read_state(dir)?;
        // raft-state is written before the WAL purges, so it may be ahead (a purge cut
        // short by a crash: finish it) but never behind.
        let state_purged = hard.purged.as_ref().map(|p| p.index());
        if state_purged > wal.purged_index() {
            wal.purge_to(state_purged.expect("greater than something"))?;
        } else if wal.purged_index() > state_purged {
            return Err(invalid_data(format!(
                "wal.meta is purged to {:?} but {STATE_FILE} only to {state_purged:?}",
                wal.purged_index()
            )));
        }
        let mut inner = Inner {
            wal,
            cache: VecDeque::new(),
            cache_bytes: 0,
            last: None,
            hard,
            committed_gen: 0,
            committed_saved_gen: 0,
        };
        if let Some(last) = inner.wal.last_index() {
            inner.last = Some(inner.log_id_at(last)?);
        }
        let counters = Arc::new(Counters::default());
        inner.publish(&counters);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            opts,
            hard_lock: Mutex::new(()),
            sync_lock: Mutex::new(()),
            inner: Mutex::new(inner),
            counters,
        });
        let (tx, rx) = mpsc::channel();
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || run_flusher(for_thread, rx))?;
        Ok(RaftLogStore {
            shared,
            flusher: Some(Flusher { tx, thread }),
        })
    }

    pub fn policy(&self) -> FsyncPolicy {
        self.shared.opts.policy
    }

    pub fn reader(&self) -> LogReader<C> {
        LogReader {
            shared: Arc::clone(&self.shared),
        }
    }

    pub fn stats_handle(&self) -> LogStatsHandle {
        LogStatsHandle(Arc::clone(&self.shared.counters))
    }

    pub fn stats(&self) -> LogStats {
        self.stats_handle().get()
    }

    /// Stops the flusher and makes log and committed id durable, reporting any error
    /// (drop does the same but can only log it).
    pub fn close(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        if let Some(f) = self.flusher.take() {
            // A send error means the thread is gone already; join reports nothing useful.
            let _ = f.tx.send(Flush::Stop);
            let _ = f.thread.join();
        }
        self.shared.sync_log()?;
        self.shared.save_committed_if_dirty()
    }

    /// Encodes and writes a batch: readable on return, durable per the policy.
    fn write_entries(&self, entries: Vec<C::Entry>) -> io::Result<()> {
        let Some(last) = entries.last().map(|e| e.log_id()) else {
            return Ok(());
        };
        let payloads = entries.iter().map(encode).collect::<io::Result<Vec<_>>>()?;
        let records: Vec<(u64, &[u8])> = entries
            .iter()
            .zip(&payloads)
            .map(|(e, p)| (e.index(), p.as_slice()))
            .collect();
        let mut inner = self.shared.inner()?;
        inner.wal.append(&records)?;
        inner.last = Some(last);
        for (entry, payload) in entries.into_iter().zip(&payloads) {
            inner.cache_bytes += payload.len();
            inner.cache.push_back(Cached {
                entry,
                bytes: payload.len(),
            });
        }
        inner.evict(&self.shared.opts);
        inner.publish(&self.shared.counters);
        Ok(())
    }
}

impl<C: RaftTypeConfig> Drop for RaftLogStore<C>
where
    C::Entry: Clone,
{
    fn drop(&mut self) {
        if self.flusher.is_some() {
            if let Err(e) = self.shutdown() {
                tracing::error!(dir = %self.shared.dir.display(), error = %e, "raft log: final sync on close failed");
            }
        }
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
        match inner.clip(&range) {
            Some((from, to)) => inner.entries(from, to),
            None => Ok(Vec::new()),
        }
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.shared.inner()?.hard.vote.clone())
    }
}

impl<C: RaftTypeConfig> RaftLogStorage<C> for RaftLogStore<C>
where
    C::Entry: Clone,
{
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let inner = self.shared.inner()?;
        let purged = inner.hard.purged.clone();
        Ok(LogState {
            last_log_id: inner.last.clone().or_else(|| purged.clone()),
            last_purged_log_id: purged,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let shared = &self.shared;
        blocking(|| {
            if shared.opts.policy == FsyncPolicy::Always {
                // Writes complete in order: appends before this vote are durable first.
                shared.sync_log()?;
            }
            shared.write_hard(|h| h.vote = Some(vote.clone()))
        })
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        {
            let mut inner = self.shared.inner()?;
            if inner.hard.committed == committed {
                return Ok(());
            }
            inner.hard.committed = committed;
            inner.committed_gen += 1;
        }
        // A lost committed id only means re-applying less after a restart (the node
        // learns the commit point from the leader; shardis runs openraft with leader
        // restore off, so a restarted leader never serves from it). So under every
        // policy it reaches the disk within a second, from the flusher: writing it here
        // (a file write and two fsyncs) stalled the Raft core once per commit.
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.shared.inner()?.hard.committed.clone())
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
        if self.shared.opts.policy != FsyncPolicy::Always {
            callback.io_completed(Ok(()));
            return Ok(());
        }
        let unsent = match &self.flusher {
            Some(f) => match f.tx.send(Flush::Durable(callback)) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(Flush::Durable(cb))) => cb,
                Err(mpsc::SendError(Flush::Stop)) => return Ok(()),
            },
            None => callback,
        };
        // No flusher (it died): flush here rather than leave the callback hanging.
        let result = blocking(|| self.shared.sync_log());
        unsent.io_completed(copy_result(&result));
        result
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.as_ref().map_or(0, |l| l.index() + 1);
        let shared = &self.shared;
        blocking(|| {
            let mut inner = shared.inner()?;
            if let Some(p) = &inner.hard.purged {
                if from <= p.index() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("truncate from {from} at or below the purged log id {p}"),
                    ));
                }
            }
            inner.wal.truncate_from(from)?;
            inner.pop_cache_back_from(from);
            inner.last = match inner.wal.last_index() {
                Some(i) => Some(inner.log_id_at(i)?),
                None => None,
            };
            inner.publish(&shared.counters);
            Ok(())
        })
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let upto = log_id.index();
        let shared = &self.shared;
        blocking(|| {
            let behind = shared
                .inner()?
                .hard
                .purged
                .as_ref()
                .is_some_and(|p| p.index() >= upto);
            if behind {
                return Ok(());
            }
            // raft-state first: after a crash, open finishes the WAL's part.
            shared.write_hard(|h| h.purged = Some(log_id.clone()))?;
            let mut inner = shared.inner()?;
            inner.wal.purge_to(upto)?;
            inner.pop_cache_front_upto(upto);
            if inner.last.as_ref().is_some_and(|l| l.index() <= upto) {
                inner.last = None;
            }
            inner.publish(&shared.counters);
            Ok(())
        })
    }
}

/// openraft's storage conformance suite run against [`RaftLogStore`]; generic over the
/// state machine so the keyspace state machine can run the same suite.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;
    use openraft::storage::RaftStateMachine;
    use openraft::testing::log::{StoreBuilder, Suite};
    use openraft::{ErrorSubject, ErrorVerb, StorageError};

    /// Builds a [`RaftLogStore`] in a fresh temp dir (the guard removes it) next to a
    /// state machine from `make_sm`.
    pub(crate) struct TempLogStoreBuilder<F> {
        pub(crate) policy: FsyncPolicy,
        pub(crate) make_sm: F,
    }

    impl<C, SM, F> StoreBuilder<C, RaftLogStore<C>, SM, tempfile::TempDir> for TempLogStoreBuilder<F>
    where
        C: RaftTypeConfig,
        C::Entry: Clone,
        SM: RaftStateMachine<C>,
        F: Fn() -> SM + Send + Sync,
    {
        async fn build(&self) -> Result<(tempfile::TempDir, RaftLogStore<C>, SM), StorageError<C>> {
            let io = |e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e);
            let dir = tempfile::Builder::new()
                .prefix("shardis-raftlog-")
                .tempdir()
                .map_err(io)?;
            let store = RaftLogStore::open(dir.path(), self.policy).map_err(io)?;
            Ok((dir, store, (self.make_sm)()))
        }
    }

    pub(crate) async fn run_suite<C, SM, F>(
        policy: FsyncPolicy,
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
        Suite::test_all(TempLogStoreBuilder { policy, make_sm }).await
    }
}

#[cfg(test)]
mod tests {
    use super::conformance::run_suite;
    use super::*;
    use futures_util::{Stream, TryStreamExt};
    use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
    use openraft::type_config::alias::{EntryOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
    use openraft::type_config::TypeConfigExt;
    use openraft::{EntryPayload, StoredMembership, Vote};
    use serde::Deserialize;
    use std::sync::atomic::AtomicBool;

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
        run_suite(FsyncPolicy::Always, SumMachine::default)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn conformance_suite_everysec() {
        run_suite(FsyncPolicy::EverySec, SumMachine::default)
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_suite_no_on_multi_thread_runtime() {
        run_suite(FsyncPolicy::No, SumMachine::default)
            .await
            .unwrap();
    }

    const DEADLINE: Duration = Duration::from_secs(10);

    fn lid(term: u64, index: u64) -> LogIdOf<C> {
        openraft::testing::log_id::<C>(term, 1, index)
    }

    fn entry(term: u64, index: u64) -> EntryOf<C> {
        openraft::Entry {
            log_id: lid(term, index),
            payload: EntryPayload::Normal(Add(index)),
        }
    }

    fn entries(term: u64, from: u64, to: u64) -> Vec<EntryOf<C>> {
        (from..=to).map(|i| entry(term, i)).collect()
    }

    fn tmpdir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("shardis-raftlog-")
            .tempdir()
            .unwrap()
    }

    fn open(dir: &Path, policy: FsyncPolicy) -> RaftLogStore<C> {
        RaftLogStore::open(dir, policy).unwrap()
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

    /// Record start offsets in a segment file (the WAL format: 16-byte header + payload).
    fn record_offsets(path: &Path) -> Vec<u64> {
        let data = fs::read(path).unwrap();
        let mut offsets = Vec::new();
        let mut pos = 0usize;
        while pos + 16 <= data.len() {
            offsets.push(pos as u64);
            pos += 16 + u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        }
        offsets
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let segs: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        assert_eq!(segs.len(), 1, "{segs:?}");
        segs[0].clone()
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
        assert!(stats.bytes_on_disk > 0);
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
        let offsets = record_offsets(&seg);
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
        let offsets = record_offsets(&seg);
        let mut data = fs::read(&seg).unwrap();
        data[offsets[4] as usize + 16] ^= 0x20; // first payload byte of entry 5
        fs::write(&seg, &data).unwrap();

        let mut store = open(tmp.path(), FsyncPolicy::Always);
        assert_eq!(state(&mut store).await, (None, Some(lid(1, 4))));
        assert_eq!(read(&mut store, ..).await, entries(1, 1, 4));
    }

    #[tokio::test]
    async fn corrupt_raft_state_refuses_to_open() {
        let tmp = tmpdir();
        let mut store = open(tmp.path(), FsyncPolicy::Always);
        store.save_vote(&Vote::new(7, 1)).await.unwrap();
        store.close().unwrap();
        let path = tmp.path().join(STATE_FILE);
        let mut data = fs::read(&path).unwrap();
        data[20] ^= 0x01;
        fs::write(&path, &data).unwrap();
        let err = RaftLogStore::<C>::open(tmp.path(), FsyncPolicy::Always)
            .err()
            .expect("a corrupt vote must not be ignored");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    async fn truncate_then_append(opts: LogStoreOptions) {
        let tmp = tmpdir();
        let mut store = RaftLogStore::<C>::open_with(tmp.path(), opts.clone()).unwrap();
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

        let mut store = RaftLogStore::<C>::open_with(tmp.path(), opts).unwrap();
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
            segment_size: 64, // a few entries per segment, so purge deletes files
            cache_entries: 3,
            ..LogStoreOptions::default()
        };
        let mut store = RaftLogStore::<C>::open_with(tmp.path(), opts.clone()).unwrap();
        for i in 0..=10 {
            append(&mut store, entries(1, i, i)).await.unwrap();
        }
        let bytes_before = store.stats().bytes_on_disk;
        store.purge(lid(1, 4)).await.unwrap();
        assert!(store.stats().bytes_on_disk < bytes_before);
        store.close().unwrap();

        let mut store = RaftLogStore::<C>::open_with(tmp.path(), opts.clone()).unwrap();
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

        let mut store = RaftLogStore::<C>::open_with(tmp.path(), opts).unwrap();
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
    async fn purge_cut_short_by_a_crash_is_finished_on_open() {
        let tmp = tmpdir();
        let mut store = open(tmp.path(), FsyncPolicy::Always);
        append(&mut store, entries(1, 0, 10)).await.unwrap();
        // The raft-state write of a purge, without the WAL's part.
        store
            .shared
            .write_hard(|h| h.purged = Some(lid(1, 5)))
            .unwrap();
        store.close().unwrap();
        let mut store = open(tmp.path(), FsyncPolicy::Always);
        assert_eq!(state(&mut store).await, (Some(lid(1, 5)), Some(lid(1, 10))));
        assert_eq!(read(&mut store, ..).await, entries(1, 6, 10));
        assert_eq!(store.stats().first_index, Some(6));
    }

    #[tokio::test]
    async fn everysec_and_no_persist_on_clean_close() {
        for policy in [FsyncPolicy::EverySec, FsyncPolicy::No] {
            let tmp = tmpdir();
            let mut store = open(tmp.path(), policy);
            append(&mut store, entries(1, 0, 5)).await.unwrap();
            store.save_committed(Some(lid(1, 3))).await.unwrap();
            drop(store); // not close(): drop must flush too

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
        for i in 0..5 {
            append(&mut store, entries(1, i, i)).await.unwrap();
            assert!(
                !store.shared.inner().unwrap().wal.has_unsynced(),
                "after {i}"
            );
        }
        let stats = store.stats();
        assert!((1..=5).contains(&stats.fsync_count), "{stats:?}");
        assert!(stats.fsync_p50_us > 0 && stats.fsync_p50_us <= stats.fsync_p999_us);
    }

    #[tokio::test]
    async fn everysec_syncs_and_saves_committed_in_the_background() {
        let tmp = tmpdir();
        let mut store = open(tmp.path(), FsyncPolicy::EverySec);
        append(&mut store, entries(1, 0, 3)).await.unwrap();
        store.save_committed(Some(lid(1, 2))).await.unwrap();
        assert!(store.shared.inner().unwrap().wal.has_unsynced());
        let stats = store.stats_handle();
        wait_until("a background fsync", || stats.get().fsync_count >= 1).await;
        let dir = tmp.path().to_path_buf();
        wait_until("the committed log id on disk", || {
            read_state::<C>(&dir).unwrap().committed == Some(lid(1, 2))
        })
        .await;
        // Nothing new: no more fsyncs.
        let n = stats.get().fsync_count;
        tokio::time::sleep(FLUSH_INTERVAL * 2).await;
        assert_eq!(stats.get().fsync_count, n);
    }

    #[tokio::test]
    async fn no_policy_never_fsyncs_the_log_while_open() {
        let tmp = tmpdir();
        let mut store = open(tmp.path(), FsyncPolicy::No);
        append(&mut store, entries(1, 0, 3)).await.unwrap();
        tokio::time::sleep(FLUSH_INTERVAL + Duration::from_millis(300)).await;
        assert_eq!(store.stats().fsync_count, 0);
        assert!(store.shared.inner().unwrap().wal.has_unsynced());
    }

    #[tokio::test]
    async fn cache_is_bounded_and_reads_fall_back_to_disk() {
        let tmp = tmpdir();
        let opts = LogStoreOptions {
            cache_entries: 8,
            ..LogStoreOptions::default()
        };
        let mut store = RaftLogStore::<C>::open_with(tmp.path(), opts).unwrap();
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
        let mut store = RaftLogStore::<C>::open_with(tmp.path(), opts).unwrap();
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
        let mut store = RaftLogStore::<C>::open_with(tmp.path(), opts).unwrap();
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
