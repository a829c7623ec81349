//! The node's Raft log: one write-ahead log shared by every Raft group of the node (shard
//! replicas, the meta group), with group commit across groups. Each group reads and
//! writes it through its own [`RaftLogStore`](super::RaftLogStore) handle
//! ([`LogEngine::open_group`]); this module is type-agnostic and sees entries, votes and
//! log ids as bytes.
//!
//! **Records** (format in [`super::wal`]) carry their group: one `ENTRY` record per
//! entry (a batch is still one write and rides one fsync; a torn batch keeps a prefix,
//! which Raft allows), `TRUNCATE` (from an index), `PURGE` (up to a log id), `VOTE` and
//! `COMMITTED`. One CRC per record covers header and body. On open, a torn, corrupt or
//! zero-filled tail of the LAST segment is cut (and logged); a bad record anywhere else
//! is an error, never skipped: segments are fsynced before the next one gets data, so
//! only the last can be torn by a crash.
//!
//! **Hard state lives in the log.** A vote is a `VOTE` record, made durable before
//! `save_vote` returns under every policy by riding the group commit (one fdatasync may
//! carry votes of several groups and their entries). `PURGE` and `TRUNCATE` ride the
//! next fsync (losing one in a crash only brings back entries Raft deletes again).
//! The committed log id is written lazily: by the flusher about once a second when a
//! group's changed, and on close. Replay applies records in order, per group.
//!
//! **Checkpoints.** When a segment fills, the next starts with a `CHECKPOINT` of every
//! group's hard state (vote, committed, purged log id, index of its last entry); the
//! roll fsyncs the old segment, the checkpoint and the directory before anything else
//! goes in. Replaying a checkpoint sets each group's hard state and drops entries it says
//! are gone (above `last`, at or below `purged`), so older segments are needed only for
//! the entries they hold.
//!
//! **Segment deletion.** Every group keeps an in-memory index from log index to
//! (segment, offset, length) of its live (unpurged, untruncated) entries, and every
//! segment a count of live entries. A segment other than the one being written whose
//! count drops to zero is dead: it is deleted after the fsync that covers the record
//! that killed it (so a crash cannot bring back a hole), and a later segment's checkpoint
//! (durable since its roll) covers its hard state. A group that never purges pins the
//! segments of its oldest entries; [`LogEngine::groups_pinning_oldest`] names the groups
//! to ask for a snapshot.
//!
//! **Group commit.** One flusher thread per engine. Under `always`, an append queues its
//! callback; the flusher takes everything queued, fdatasyncs every segment written
//! since the last pass (one fsync whatever the number of groups), then completes the
//! callbacks in order. `everysec` syncs once a second when there is unsynced data; `no`
//! never syncs the log while open (votes, rolls and close still do).
//!
//! **Idle.** The flusher blocks on its channel without a timeout unless something is
//! owed to a tick (a dirty committed id, unsynced data under `everysec`, a dead segment
//! waiting for its fsync); writers arm the tick when they create such work.
//!
//! Locks: `sync_lock` (one fsync pass at a time, so "nothing left to sync" means
//! durable) before `state`. `state` is never held across the fsync of a pass (only
//! across a segment roll, once per segment), so appends of other groups and readers do
//! not wait for the disk. Group handles take their own lock before `state`.

use super::latency::LatencyHistogram;
use super::wal::{self, invalid_data, sync_dir, Body, Found, GroupCheckpoint, Kind};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often `everysec` syncs the log and dirty committed ids are written.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Held (flock) while an engine has the directory open.
const LOCK_FILE: &str = "LOCK";
/// Records of one group closer than this in a segment are read with one pread.
const READ_GAP: u64 = 16 * 1024;

/// When appended entries are forced to disk; Redis's `appendfsync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fdatasync before an append is reported flushed (group commit batches the fsyncs).
    #[default]
    Always,
    /// Report appends flushed at once; the flusher fdatasyncs once a second when there
    /// is unsynced data. A crash loses at most about a second of appends.
    EverySec,
    /// Never fdatasync the log for appends; the OS writes it back when it likes.
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

/// Tunables of a [`LogEngine`] and of the group handles it opens.
#[derive(Clone, Debug)]
pub struct LogStoreOptions {
    pub policy: FsyncPolicy,
    /// Start a new segment once the current one would grow past this many bytes; purge
    /// frees disk a whole segment at a time.
    pub segment_size: u64,
    /// Each group's entry cache keeps at most this many of its newest entries...
    pub cache_entries: usize,
    /// ...and at most this many bytes of them (encoded size). 0 disables the cache.
    pub cache_bytes: usize,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            policy: FsyncPolicy::Always,
            segment_size: 64 * 1024 * 1024,
            cache_entries: 100_000,
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Engine-wide figures (INFO, metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// fsync passes (each may cover many appends of many groups).
    pub fsync_count: u64,
    pub fsync_p50_us: u64,
    pub fsync_p99_us: u64,
    pub fsync_p999_us: u64,
    /// Bytes of records in the segment files.
    pub disk_bytes: u64,
    pub segments: u64,
    /// Groups with any state in the log.
    pub groups: u64,
}

#[derive(Default)]
pub(crate) struct EngineCounters {
    pub fsyncs: AtomicU64,
    pub fsync_us: LatencyHistogram,
    pub disk_bytes: AtomicU64,
    pub segments: AtomicU64,
    /// Flusher wake-ups that found a tick due (tests check idleness with it).
    pub ticks: AtomicU64,
}

/// One group's figures, shared with its handle's [`super::LogStatsHandle`]s.
#[derive(Default)]
pub(crate) struct GroupCounters {
    /// Index + 1; 0 for none.
    pub first: AtomicU64,
    pub last: AtomicU64,
    /// Bytes of the group's live entry records.
    pub bytes: AtomicU64,
    /// Kept by the handle.
    pub cached_entries: AtomicU64,
    pub cached_bytes: AtomicU64,
}

/// Called once the writes before it are durable (or failed to be).
pub(crate) type Callback = Box<dyn FnOnce(io::Result<()>) + Send>;

enum Flush {
    Durable(Callback),
    /// Something is owed to a tick.
    Wake,
    Stop,
}

/// Where a record ends in the stream: (segment, offset). Ordered like the stream.
type Pos = (u64, u64);

#[derive(Clone, Copy, Debug)]
struct Loc {
    seg: u64,
    offset: u64,
    len: u64,
}

struct Segment {
    path: PathBuf,
    file: Arc<File>,
    len: u64,
    /// Length of the checkpoint at its head.
    head: u64,
    /// Live entries of all groups in it.
    live: u64,
    /// Set when the last live entry went: the stream position an fsync must pass
    /// before the file may be deleted.
    dead_at: Option<Pos>,
    unsynced: bool,
}

#[derive(Default)]
struct GroupState {
    vote: Option<Vec<u8>>,
    /// The newest committed id (written to disk lazily).
    committed: Option<Vec<u8>>,
    purged: Option<(u64, Vec<u8>)>,
    /// Index of `locs[0]`.
    first: u64,
    locs: VecDeque<Loc>,
    bytes: u64,
    /// A handle is open on it.
    open: bool,
    counters: Arc<GroupCounters>,
}

impl GroupState {
    fn last(&self) -> Option<u64> {
        (!self.locs.is_empty()).then(|| self.first + self.locs.len() as u64 - 1)
    }

    fn first_index(&self) -> Option<u64> {
        (!self.locs.is_empty()).then_some(self.first)
    }

    fn has_state(&self) -> bool {
        self.vote.is_some()
            || self.committed.is_some()
            || self.purged.is_some()
            || !self.locs.is_empty()
    }

    /// The index the next entry must carry, if anything constrains it.
    fn next_index(&self) -> Option<u64> {
        match self.last() {
            Some(last) => Some(last + 1),
            None => self.purged.as_ref().map(|(p, _)| p + 1),
        }
    }

    fn checkpoint(&self, group: u64) -> GroupCheckpoint {
        GroupCheckpoint {
            group,
            vote: self.vote.clone(),
            committed: self.committed.clone(),
            purged: self.purged.clone(),
            last: self.last(),
        }
    }

    fn publish(&self) {
        let c = &self.counters;
        let index = |i: Option<u64>| i.map_or(0, |i| i + 1);
        c.first.store(index(self.first_index()), Ordering::Relaxed);
        c.last.store(index(self.last()), Ordering::Relaxed);
        c.bytes.store(self.bytes, Ordering::Relaxed);
    }
}

fn lock<'a, T>(m: &'a Mutex<T>, what: &str) -> io::Result<MutexGuard<'a, T>> {
    // A panic mid-update may have left the log half-changed; refuse to go on with it.
    m.lock()
        .map_err(|_| io::Error::other(format!("log engine {what} lock poisoned by a panic")))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// io::Error is not Clone; one flush result goes to many callbacks.
pub(crate) fn copy_result(r: &io::Result<()>) -> io::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
}

struct State {
    dir: PathBuf,
    opts: LogStoreOptions,
    segments: BTreeMap<u64, Segment>,
    groups: BTreeMap<u64, GroupState>,
    /// Groups whose committed id changed since it was last written.
    dirty_committed: BTreeSet<u64>,
    /// Everything up to here is durable.
    synced: Pos,
    dir_unsynced: bool,
    /// Set by a failed write or fsync; every later write or sync fails with it (after a
    /// failed fsync the kernel may have dropped the dirty pages, so a later fsync could
    /// succeed without the data ever reaching the disk).
    poisoned: Option<String>,
    closed: bool,
    /// The flusher owes a tick (or has been woken to schedule one).
    armed: bool,
    counters: Arc<EngineCounters>,
}

impl State {
    fn active_seq(&self) -> u64 {
        *self.segments.keys().next_back().expect("an active segment")
    }

    fn write_pos(&self) -> Pos {
        let seq = self.active_seq();
        (seq, self.segments[&seq].len)
    }

    fn check_poisoned(&self) -> io::Result<()> {
        match &self.poisoned {
            Some(why) => Err(io::Error::other(format!("raft log failed earlier: {why}"))),
            None => Ok(()),
        }
    }

    fn check_writable(&self) -> io::Result<()> {
        self.check_poisoned()?;
        if self.closed {
            return Err(io::Error::other("raft log engine is closed"));
        }
        Ok(())
    }

    fn poison(&mut self, why: String) {
        tracing::error!(dir = %self.dir.display(), %why, "raft log: write or fsync failed; refusing further writes");
        self.poisoned.get_or_insert(why);
    }

    fn publish_disk(&self) {
        let bytes = self.segments.values().map(|s| s.len).sum();
        self.counters.disk_bytes.store(bytes, Ordering::Relaxed);
        self.counters
            .segments
            .store(self.segments.len() as u64, Ordering::Relaxed);
    }

    /// Returns true when the flusher must be woken to schedule a tick.
    fn arm(&mut self) -> bool {
        !std::mem::replace(&mut self.armed, true)
    }

    fn has_unsynced(&self) -> bool {
        self.dir_unsynced || self.segments.values().any(|s| s.unsynced)
    }

    fn dead_pending(&self) -> bool {
        self.segments.values().any(|s| s.dead_at.is_some())
    }

    /// Creates segment `seq` headed by a checkpoint of every group, durable (file and
    /// directory entry) before it is used.
    fn new_segment(&mut self, seq: u64) -> io::Result<()> {
        let started = Instant::now();
        let groups: Vec<GroupCheckpoint> = self
            .groups
            .iter()
            .filter(|(_, g)| g.has_state())
            .map(|(&id, g)| g.checkpoint(id))
            .collect();
        let mut buf = Vec::new();
        let head = wal::encode_record(
            &mut buf,
            Kind::Checkpoint,
            0,
            &[&wal::encode_checkpoint(seq, &groups)],
        )?;
        let path = wal::segment_path(&self.dir, seq);
        let result = (|| -> io::Result<File> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            file.write_all_at(&buf, 0)?;
            file.sync_data()?;
            sync_dir(&self.dir)?;
            Ok(file)
        })();
        let file = result.inspect_err(|e| self.poison(format!("starting segment {seq}: {e}")))?;
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.counters.fsync_us.record(micros(started.elapsed()));
        self.segments.insert(
            seq,
            Segment {
                path,
                file: Arc::new(file),
                len: head,
                head,
                live: 0,
                dead_at: None,
                unsynced: false,
            },
        );
        // The checkpoint carries every committed id: none is owed any more.
        self.dirty_committed.clear();
        self.dir_unsynced = false;
        self.synced = self.synced.max((seq, head));
        self.publish_disk();
        Ok(())
    }

    /// Starts the next segment. The old one is fsynced first: only the last segment may
    /// ever hold a torn record.
    fn roll(&mut self) -> io::Result<()> {
        let old_seq = self.active_seq();
        let old = self.segments.get_mut(&old_seq).expect("active segment");
        if let Err(e) = old.file.sync_data() {
            self.poison(format!("fsync of segment {old_seq}: {e}"));
            return Err(e);
        }
        old.unsynced = false;
        self.new_segment(old_seq + 1)?;
        let pos = self.write_pos();
        let old = self.segments.get_mut(&old_seq).expect("old segment");
        if old.live == 0 {
            old.dead_at = Some(pos);
        }
        Ok(())
    }

    /// Writes records at the end of the log (rolling to a new segment first if they
    /// would overflow this one); returns where they start.
    fn write(&mut self, buf: &[u8]) -> io::Result<(u64, u64)> {
        let seq = self.active_seq();
        let seg = &self.segments[&seq];
        if seg.len > seg.head && seg.len + buf.len() as u64 > self.opts.segment_size {
            self.roll()?;
        }
        let seq = self.active_seq();
        let seg = self.segments.get_mut(&seq).expect("active segment");
        let at = seg.len;
        if let Err(e) = seg.file.write_all_at(buf, at) {
            // Part of it may be on disk behind the valid records; refuse to write more
            // after it rather than leave garbage in the middle of a segment.
            self.poison(format!("write to segment {seq}: {e}"));
            return Err(e);
        }
        seg.len += buf.len() as u64;
        seg.unsynced = true;
        self.publish_disk();
        Ok((seq, at))
    }

    /// Entries at these locations stopped being live.
    fn kill(&mut self, locs: impl IntoIterator<Item = Loc>) -> bool {
        let active = self.active_seq();
        let pos = self.write_pos();
        let mut died = false;
        for loc in locs {
            let seg = self
                .segments
                .get_mut(&loc.seg)
                .expect("segment of a live entry");
            seg.live -= 1;
            if seg.live == 0 && loc.seg != active {
                seg.dead_at = Some(pos);
                died = true;
            }
        }
        died
    }

    /// Deletes the dead segments whose killing records are durable.
    fn delete_dead(&mut self) -> io::Result<()> {
        let active = self.active_seq();
        let synced = self.synced;
        let doomed: Vec<u64> = self
            .segments
            .iter()
            .filter(|(&seq, s)| seq != active && s.dead_at.is_some_and(|d| d <= synced))
            .map(|(&seq, _)| seq)
            .collect();
        for seq in doomed {
            let seg = self.segments.remove(&seq).expect("listed");
            fs::remove_file(&seg.path)?;
            // A crash before the directory is synced may bring the file back; replay
            // then finds only records that later checkpoints and records supersede.
            self.dir_unsynced = true;
        }
        self.publish_disk();
        Ok(())
    }

    /// Writes a `COMMITTED` record for every group whose committed id changed.
    fn write_dirty_committed(&mut self) -> io::Result<bool> {
        if self.dirty_committed.is_empty() {
            return Ok(false);
        }
        self.check_poisoned()?;
        let mut buf = Vec::new();
        for group in std::mem::take(&mut self.dirty_committed) {
            if let Some(c) = self.groups.get(&group).and_then(|g| g.committed.as_ref()) {
                wal::encode_record(&mut buf, Kind::Committed, group, &[c])?;
            }
        }
        self.write(&buf)?;
        Ok(true)
    }

    fn group(&mut self, group: u64) -> &mut GroupState {
        self.groups.entry(group).or_default()
    }
}

/// The engine's shared core; the flusher thread holds it too.
pub(crate) struct Core {
    dir: PathBuf,
    opts: LogStoreOptions,
    sync_lock: Mutex<()>,
    state: Mutex<State>,
    counters: Arc<EngineCounters>,
    tx: mpsc::Sender<Flush>,
    /// The directory lock, held while the engine lives.
    _lock: File,
}

/// What a group handle starts from.
pub(crate) struct GroupView {
    pub vote: Option<Vec<u8>>,
    pub committed: Option<Vec<u8>>,
    pub purged: Option<Vec<u8>>,
    pub first: Option<u64>,
    pub last: Option<u64>,
    pub counters: Arc<GroupCounters>,
}

impl Core {
    fn state(&self) -> io::Result<MutexGuard<'_, State>> {
        lock(&self.state, "state")
    }

    pub(crate) fn opts(&self) -> &LogStoreOptions {
        &self.opts
    }

    pub(crate) fn counters(&self) -> &Arc<EngineCounters> {
        &self.counters
    }

    fn wake(&self) {
        // An error means the flusher is gone (closed): nothing to wake.
        let _ = self.tx.send(Flush::Wake);
    }

    /// Marks `group` as having a live handle and returns its state.
    pub(crate) fn claim(&self, group: u64) -> io::Result<GroupView> {
        let mut st = self.state()?;
        st.check_writable()?;
        let g = st.group(group);
        if g.open {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("raft log of group {group} is already open"),
            ));
        }
        g.open = true;
        g.publish();
        Ok(GroupView {
            vote: g.vote.clone(),
            committed: g.committed.clone(),
            purged: g.purged.as_ref().map(|(_, id)| id.clone()),
            first: g.first_index(),
            last: g.last(),
            counters: Arc::clone(&g.counters),
        })
    }

    pub(crate) fn release(&self, group: u64) {
        if let Ok(mut st) = self.state() {
            if let Some(g) = st.groups.get_mut(&group) {
                g.open = false;
            }
        }
    }

    /// Writes entries `first..` (one record each, one write); readable on return,
    /// durable after the next sync pass.
    pub(crate) fn append(&self, group: u64, first: u64, entries: &[Vec<u8>]) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut st = self.state()?;
        st.check_writable()?;
        if let Some(next) = st.group(group).next_index() {
            if first != next {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("group {group}: append at {first}, expected {next}"),
                ));
            }
        }
        let mut buf = Vec::with_capacity(entries.iter().map(|e| e.len() + 25).sum());
        let mut lens = Vec::with_capacity(entries.len());
        for (index, entry) in (first..).zip(entries) {
            lens.push(wal::encode_record(
                &mut buf,
                Kind::Entry,
                group,
                &[&index.to_le_bytes(), entry],
            )?);
        }
        let (seq, mut offset) = st.write(&buf)?;
        st.segments.get_mut(&seq).expect("written").live += entries.len() as u64;
        let g = st.group(group);
        if g.locs.is_empty() {
            g.first = first;
        }
        for len in lens {
            g.locs.push_back(Loc {
                seg: seq,
                offset,
                len,
            });
            g.bytes += len;
            offset += len;
        }
        g.publish();
        if self.opts.policy == FsyncPolicy::EverySec && st.arm() {
            drop(st);
            self.wake();
        }
        Ok(())
    }

    /// Deletes the group's entries >= `from`.
    pub(crate) fn truncate(&self, group: u64, from: u64) -> io::Result<()> {
        let mut st = self.state()?;
        st.check_writable()?;
        let g = st.group(group);
        if g.last().is_none_or(|last| last < from) {
            return Ok(());
        }
        let mut buf = Vec::new();
        wal::encode_record(&mut buf, Kind::Truncate, group, &[&from.to_le_bytes()])?;
        st.write(&buf)?;
        let g = st.group(group);
        let keep = from.saturating_sub(g.first) as usize;
        let gone: Vec<Loc> = g.locs.drain(keep..).collect();
        g.bytes -= gone.iter().map(|l| l.len).sum::<u64>();
        g.publish();
        let died = st.kill(gone);
        if died && st.arm() {
            drop(st);
            self.wake();
        }
        Ok(())
    }

    /// Forgets the group's entries <= `upto` and records `log_id` as purged.
    pub(crate) fn purge(&self, group: u64, upto: u64, log_id: &[u8]) -> io::Result<()> {
        let mut st = self.state()?;
        st.check_writable()?;
        if st
            .group(group)
            .purged
            .as_ref()
            .is_some_and(|(p, _)| *p >= upto)
        {
            return Ok(());
        }
        let mut buf = Vec::new();
        wal::encode_record(&mut buf, Kind::Purge, group, &[&upto.to_le_bytes(), log_id])?;
        st.write(&buf)?;
        let g = st.group(group);
        g.purged = Some((upto, log_id.to_vec()));
        let n = match g.last() {
            Some(_) if upto >= g.first => ((upto - g.first + 1) as usize).min(g.locs.len()),
            _ => 0,
        };
        let gone: Vec<Loc> = g.locs.drain(..n).collect();
        g.first += n as u64;
        g.bytes -= gone.iter().map(|l| l.len).sum::<u64>();
        g.publish();
        let died = st.kill(gone);
        if died && st.arm() {
            drop(st);
            self.wake();
        }
        Ok(())
    }

    /// Forgets `group` (its replica left the node): a `DROP` record, then its
    /// entries die (their segments go once nothing else lives in them) and its vote,
    /// commit and purge point are gone, on replay too. Its Raft must be stopped; a
    /// later `claim` starts it afresh.
    pub(crate) fn drop_group(&self, group: u64) -> io::Result<()> {
        let mut st = self.state()?;
        st.check_writable()?;
        if !st.groups.contains_key(&group) {
            return Ok(());
        }
        let mut buf = Vec::new();
        wal::encode_record(&mut buf, Kind::Drop, group, &[])?;
        st.write(&buf)?;
        let g = st.groups.remove(&group).expect("checked above");
        let died = st.kill(g.locs);
        if died && st.arm() {
            drop(st);
            self.wake();
        }
        Ok(())
    }

    /// Writes a `VOTE` record; the caller waits for it with [`Core::wait_durable`].
    pub(crate) fn write_vote(&self, group: u64, vote: &[u8]) -> io::Result<()> {
        let mut st = self.state()?;
        st.check_writable()?;
        let mut buf = Vec::new();
        wal::encode_record(&mut buf, Kind::Vote, group, &[vote])?;
        st.write(&buf)?;
        st.group(group).vote = Some(vote.to_vec());
        Ok(())
    }

    /// Remembers the committed id; the flusher writes it within about a second.
    pub(crate) fn set_committed(&self, group: u64, committed: Vec<u8>) -> io::Result<()> {
        let mut st = self.state()?;
        st.check_writable()?;
        st.group(group).committed = Some(committed);
        st.dirty_committed.insert(group);
        if st.arm() {
            drop(st);
            self.wake();
        }
        Ok(())
    }

    /// The stored entries `from..=to` of `group` (all must be live).
    pub(crate) fn read(&self, group: u64, from: u64, to: u64) -> io::Result<Vec<Vec<u8>>> {
        if from > to {
            return Ok(Vec::new());
        }
        let mut reads: Vec<Pread> = Vec::new();
        {
            let st = self.state()?;
            let g = st.groups.get(&group);
            let live = g.and_then(|g| Some((g.first_index()?, g.last()?)));
            let Some(((first, last), g)) = live.zip(g) else {
                return Err(missing(group, from));
            };
            if from < first || to > last {
                return Err(missing(group, if from < first { from } else { to }));
            }
            for index in from..=to {
                let loc = g.locs[(index - first) as usize];
                match reads.last_mut() {
                    Some(r)
                        if r.seg == loc.seg
                            && loc.offset >= r.end
                            && loc.offset - r.end <= READ_GAP =>
                    {
                        r.end = loc.offset + loc.len;
                        r.records.push((index, loc.offset, loc.len));
                    }
                    _ => reads.push(Pread {
                        file: Arc::clone(&st.segments[&loc.seg].file),
                        seg: loc.seg,
                        start: loc.offset,
                        end: loc.offset + loc.len,
                        records: vec![(index, loc.offset, loc.len)],
                    }),
                }
            }
        }
        let mut out = Vec::with_capacity((to - from + 1) as usize);
        for Pread {
            file,
            seg: seq,
            start,
            end,
            records,
        } in reads
        {
            let mut data = vec![0u8; (end - start) as usize];
            file.read_exact_at(&mut data, start)?;
            for (index, offset, len) in records {
                let at = (offset - start) as usize;
                // Bit rot after open must surface as an error, never as a wrong entry.
                let bad = |why: String| {
                    invalid_data(format!(
                        "raft log: group {group} index {index} (segment {seq} offset {offset}): {why}"
                    ))
                };
                let r = wal::decode_record(&data[at..at + len as usize]).map_err(bad)?;
                let mut body = Body(r.body);
                let stored = body.u64()?;
                if r.kind != Kind::Entry || r.group != group || stored != index {
                    return Err(bad(format!(
                        "found {:?} of group {} index {stored}",
                        r.kind, r.group
                    )));
                }
                out.push(body.rest().to_vec());
            }
        }
        Ok(out)
    }

    /// Calls `cb` once everything written so far is durable.
    pub(crate) fn on_durable(&self, cb: Callback) {
        let unsent = match self.state() {
            // Sent under the state lock: close() marks the engine closed under it before
            // stopping the flusher, so a request is either queued before the stop (and
            // served) or sees `closed` (and syncs here).
            Ok(st) if !st.closed => match self.tx.send(Flush::Durable(cb)) {
                Ok(()) => return,
                Err(mpsc::SendError(Flush::Durable(cb))) => cb,
                Err(_) => unreachable!("sent a Durable"),
            },
            _ => cb,
        };
        unsent(self.sync());
    }

    /// Waits until everything written so far is durable (riding the group commit).
    pub(crate) async fn wait_durable(&self) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.on_durable(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        rx.await
            .unwrap_or_else(|_| Err(io::Error::other("raft log flusher dropped a request")))
    }

    /// One fsync pass over everything written so far; then deletes the dead segments it
    /// made deletable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let _one_at_a_time = lock(&self.sync_lock, "sync")?;
        let (files, dir, pos) = {
            let mut st = self.state()?;
            st.check_poisoned()?;
            let mut files = Vec::new();
            for seg in st.segments.values_mut().filter(|s| s.unsynced) {
                seg.unsynced = false;
                files.push(Arc::clone(&seg.file));
            }
            let dir = std::mem::take(&mut st.dir_unsynced);
            (files, dir, st.write_pos())
        };
        if !files.is_empty() || dir {
            let started = Instant::now();
            let result = (|| -> io::Result<()> {
                for f in &files {
                    f.sync_data()?;
                }
                if dir {
                    sync_dir(&self.dir)?;
                }
                Ok(())
            })();
            self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.counters.fsync_us.record(micros(started.elapsed()));
            if let Err(e) = result {
                self.state()?.poison(e.to_string());
                return Err(e);
            }
        }
        let mut st = self.state()?;
        st.synced = st.synced.max(pos);
        st.delete_dead()
    }

    /// Writes this group's committed id if it is owed (then a sync makes it durable).
    pub(crate) fn write_committed(&self, group: u64) -> io::Result<()> {
        let mut st = self.state()?;
        if st.dirty_committed.remove(&group) {
            st.check_writable()?;
            if let Some(c) = st.groups.get(&group).and_then(|g| g.committed.clone()) {
                let mut buf = Vec::new();
                wal::encode_record(&mut buf, Kind::Committed, group, &[&c])?;
                st.write(&buf)?;
            }
        }
        Ok(())
    }

    /// A due tick's work: dirty committed ids written; whether a sync pass is owed.
    fn tick(&self) -> io::Result<bool> {
        let mut st = self.state()?;
        let wrote = st.write_dirty_committed()?;
        let for_policy = match self.opts.policy {
            FsyncPolicy::Always => wrote || st.has_unsynced(),
            FsyncPolicy::EverySec => st.has_unsynced(),
            FsyncPolicy::No => false,
        };
        Ok(for_policy || st.dead_pending())
    }

    /// Disarms the tick when nothing is owed to it.
    fn disarm_if_idle(&self) -> bool {
        let Ok(mut st) = self.state() else {
            return true;
        };
        let idle = st.dirty_committed.is_empty()
            && !st.dead_pending()
            && !(self.opts.policy == FsyncPolicy::EverySec && st.has_unsynced());
        if idle {
            st.armed = false;
        }
        idle
    }

    fn armed(&self) -> bool {
        self.state().map(|st| st.armed).unwrap_or(false)
    }
}

/// One pread of a segment: records of one group close enough to read together.
struct Pread {
    file: Arc<File>,
    seg: u64,
    start: u64,
    end: u64,
    /// (index, offset, length) of each record.
    records: Vec<(u64, u64, u64)>,
}

fn missing(group: u64, index: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("raft log: group {group} has no entry {index}"),
    )
}

/// The flusher thread: group commit, the `everysec` sync and the lazy committed ids.
fn run_flusher(core: Arc<Core>, rx: mpsc::Receiver<Flush>) {
    let mut next_tick: Option<Instant> = None;
    loop {
        let mut waiting: Vec<Callback> = Vec::new();
        let mut stop = false;
        let first = match next_tick {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())),
        };
        let mut next = match first {
            Ok(msg) => Some(msg),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        // Group commit: one pass covers every request queued by now (up to a stop).
        while let Some(msg) = next.take() {
            match msg {
                Flush::Durable(cb) => waiting.push(cb),
                Flush::Wake => {}
                Flush::Stop => {
                    stop = true;
                    break;
                }
            }
            next = rx.try_recv().ok();
        }
        let now = Instant::now();
        if next_tick.is_none() && core.armed() {
            next_tick = Some(now + FLUSH_INTERVAL);
        }
        let due = next_tick.is_some_and(|t| now >= t);
        let mut sync = !waiting.is_empty();
        if due {
            core.counters.ticks.fetch_add(1, Ordering::Relaxed);
            match core.tick() {
                Ok(owed) => sync |= owed,
                Err(e) => {
                    tracing::error!(dir = %core.dir.display(), error = %e, "raft log: writing committed ids failed")
                }
            }
        }
        if sync {
            let result = core.sync();
            if let Err(e) = &result {
                tracing::error!(dir = %core.dir.display(), error = %e, "raft log: fsync failed");
            }
            for cb in waiting {
                cb(copy_result(&result));
            }
        }
        if due {
            next_tick = (!core.disarm_if_idle()).then(|| Instant::now() + FLUSH_INTERVAL);
        }
        if stop {
            return;
        }
    }
}

/// A group as replay rebuilds it: entries may have gaps until the end (segments whose
/// entries all died later are gone).
#[derive(Default)]
struct ReplayGroup {
    vote: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    purged: Option<(u64, Vec<u8>)>,
    entries: BTreeMap<u64, Loc>,
}

impl ReplayGroup {
    fn purge(&mut self, upto: u64, id: Vec<u8>) {
        self.entries = self.entries.split_off(&(upto.saturating_add(1)));
        if upto == u64::MAX {
            self.entries.clear();
        }
        self.purged = Some((upto, id));
    }
}

#[derive(Default)]
struct Replay {
    groups: BTreeMap<u64, ReplayGroup>,
}

impl Replay {
    fn apply(&mut self, seq: u64, found: &Found<'_>) -> io::Result<()> {
        let r = &found.record;
        let at = || format!("segment {seq} offset {}", found.offset);
        let bad = |why: String| invalid_data(format!("raft log: {}: {why}", at()));
        let mut body = Body(r.body);
        match r.kind {
            Kind::Checkpoint => {
                let (named, list) = wal::decode_checkpoint(r.body)?;
                if named != seq || found.offset != 0 {
                    return Err(bad(format!("checkpoint of segment {named} out of place")));
                }
                let mut groups = BTreeMap::new();
                for cp in list {
                    let mut g = self.groups.remove(&cp.group).unwrap_or_default();
                    g.vote = cp.vote;
                    g.committed = cp.committed;
                    match cp.purged {
                        Some((upto, id)) => g.purge(upto, id),
                        None => g.purged = None,
                    }
                    match cp.last {
                        Some(last) => drop(g.entries.split_off(&(last.saturating_add(1)))),
                        None => g.entries.clear(),
                    }
                    groups.insert(cp.group, g);
                }
                // A group the checkpoint leaves out had no state then.
                self.groups = groups;
            }
            Kind::Entry => {
                let index = body.u64()?;
                let g = self.groups.entry(r.group).or_default();
                if g.purged.as_ref().is_some_and(|(p, _)| *p >= index) {
                    return Err(bad(format!(
                        "group {} entry {index} at or below its purge point",
                        r.group
                    )));
                }
                if g.entries.range(index..).next().is_some() {
                    return Err(bad(format!(
                        "group {} entry {index} overwrites entries without a truncate",
                        r.group
                    )));
                }
                g.entries.insert(
                    index,
                    Loc {
                        seg: seq,
                        offset: found.offset,
                        len: r.len(),
                    },
                );
            }
            Kind::Truncate => {
                let from = body.u64()?;
                body.end()?;
                drop(
                    self.groups
                        .entry(r.group)
                        .or_default()
                        .entries
                        .split_off(&from),
                );
            }
            Kind::Purge => {
                let upto = body.u64()?;
                let id = body.rest().to_vec();
                self.groups.entry(r.group).or_default().purge(upto, id);
            }
            Kind::Vote => self.groups.entry(r.group).or_default().vote = Some(r.body.to_vec()),
            Kind::Committed => {
                self.groups.entry(r.group).or_default().committed = Some(r.body.to_vec())
            }
            Kind::Drop => {
                body.end()?;
                self.groups.remove(&r.group);
            }
        }
        Ok(())
    }

    /// The groups, each checked to hold a contiguous run of entries.
    fn finish(self) -> io::Result<BTreeMap<u64, GroupState>> {
        let mut out = BTreeMap::new();
        for (id, g) in self.groups {
            let first = g.entries.keys().next().copied().unwrap_or(0);
            let mut locs = VecDeque::with_capacity(g.entries.len());
            for (k, (&index, &loc)) in g.entries.iter().enumerate() {
                if index != first + k as u64 {
                    return Err(invalid_data(format!(
                        "raft log: group {id} misses entries {}..{index} (a segment lost?)",
                        first + k as u64
                    )));
                }
                locs.push_back(loc);
            }
            let state = GroupState {
                vote: g.vote,
                committed: g.committed,
                purged: g.purged,
                first,
                bytes: locs.iter().map(|l| l.len).sum(),
                locs,
                open: false,
                counters: Arc::default(),
            };
            state.publish();
            out.insert(id, state);
        }
        Ok(out)
    }
}

/// The node's Raft log: one WAL in one directory for every Raft group of the node.
/// Stopped (after a final sync of everything, whatever the policy, as Redis does at
/// shutdown) by [`LogEngine::close`] or when the last `Arc` of it drops (group handles
/// and their readers hold one).
pub struct LogEngine {
    core: Arc<Core>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl LogEngine {
    /// Opens (creating if needed) the log in `dir`, recovering every group from it.
    pub fn open(dir: &Path, opts: LogStoreOptions) -> io::Result<Arc<LogEngine>> {
        if !dir.is_dir() {
            fs::create_dir_all(dir)?;
            // The new directory's own entry must be durable before anything in it is.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        lock_file.try_lock().map_err(|e| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "raft log {} is in use by another engine: {e}",
                    dir.display()
                ),
            )
        })?;
        let mut seqs = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == "raft-state" || name == "wal.meta" || name.starts_with("wal-") {
                return Err(invalid_data(format!(
                    "{} holds a per-group raft log of an older version ({name}); it is not read by this one",
                    dir.display()
                )));
            }
            if let Some(seq) = wal::parse_segment_name(name) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();

        let mut replay = Replay::default();
        let mut segments = BTreeMap::new();
        for (i, &seq) in seqs.iter().enumerate() {
            let last = i + 1 == seqs.len();
            let path = wal::segment_path(dir, seq);
            let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
            let mut data = Vec::new();
            file.read_to_end(&mut data)?;
            let found = wal::scan(&data);
            if let Some(problem) = &found.problem {
                if !last {
                    return Err(invalid_data(format!(
                        "raft log: {} is corrupt at byte {} ({problem}), and it is not the last segment",
                        path.display(),
                        found.valid
                    )));
                }
                tracing::warn!(
                    path = %path.display(),
                    at = found.valid,
                    cut_bytes = data.len() as u64 - found.valid,
                    %problem,
                    "raft log: cutting torn or corrupt tail"
                );
                file.set_len(found.valid)?;
                file.sync_all()?;
            }
            let Some(head) = found.records.first() else {
                if !last {
                    return Err(invalid_data(format!(
                        "raft log: {} holds no checkpoint",
                        path.display()
                    )));
                }
                // A roll cut short by a crash: the segment never got past its head.
                drop(file);
                fs::remove_file(&path)?;
                sync_dir(dir)?;
                continue;
            };
            if head.record.kind != Kind::Checkpoint {
                return Err(invalid_data(format!(
                    "raft log: {} does not start with a checkpoint",
                    path.display()
                )));
            }
            for record in &found.records {
                replay.apply(seq, record)?;
            }
            segments.insert(
                seq,
                Segment {
                    path,
                    file: Arc::new(file),
                    len: found.valid,
                    head: head.record.len(),
                    live: 0,
                    dead_at: None,
                    // Read back from the page cache, maybe never written out: the first
                    // pass syncs it before any dead segment goes.
                    unsynced: last,
                },
            );
        }
        let groups = replay.finish()?;
        for g in groups.values() {
            for loc in &g.locs {
                segments.get_mut(&loc.seg).expect("replayed segment").live += 1;
            }
        }
        let counters = Arc::new(EngineCounters::default());
        let mut state = State {
            dir: dir.to_path_buf(),
            opts: opts.clone(),
            segments,
            groups,
            dirty_committed: BTreeSet::new(),
            synced: (0, 0),
            dir_unsynced: false,
            poisoned: None,
            closed: false,
            armed: false,
            counters: Arc::clone(&counters),
        };
        match state.segments.keys().next_back() {
            None => state.new_segment(seqs.last().map_or(1, |s| s + 1))?,
            Some(_) => {
                let pos = state.write_pos();
                let active = state.active_seq();
                for (&seq, seg) in state.segments.iter_mut() {
                    if seq != active && seg.live == 0 {
                        seg.dead_at = Some(pos);
                    }
                }
            }
        }
        state.publish_disk();
        let any_dead = state.dead_pending();
        let (tx, rx) = mpsc::channel();
        let core = Arc::new(Core {
            dir: dir.to_path_buf(),
            opts,
            sync_lock: Mutex::new(()),
            state: Mutex::new(state),
            counters,
            tx,
            _lock: lock_file,
        });
        if any_dead {
            core.sync()?;
        }
        let for_thread = Arc::clone(&core);
        let thread = std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || run_flusher(for_thread, rx))?;
        Ok(Arc::new(LogEngine {
            core,
            flusher: Mutex::new(Some(thread)),
        }))
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    pub fn dir(&self) -> &Path {
        &self.core.dir
    }

    pub fn policy(&self) -> FsyncPolicy {
        self.core.opts.policy
    }

    /// Forgets a group whose replica left this node (see `Core::drop_group`).
    pub fn drop_group(&self, group: u64) -> io::Result<()> {
        self.core.drop_group(group)
    }

    /// Groups with any state in the log (for a node restarting).
    pub fn groups(&self) -> Vec<u64> {
        match self.core.state() {
            Ok(st) => st
                .groups
                .iter()
                .filter(|(_, g)| g.has_state())
                .map(|(&id, _)| id)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn stats(&self) -> EngineStats {
        let c = &self.core.counters;
        EngineStats {
            fsync_count: c.fsyncs.load(Ordering::Relaxed),
            fsync_p50_us: c.fsync_us.percentile(0.5),
            fsync_p99_us: c.fsync_us.percentile(0.99),
            fsync_p999_us: c.fsync_us.percentile(0.999),
            disk_bytes: c.disk_bytes.load(Ordering::Relaxed),
            segments: c.segments.load(Ordering::Relaxed),
            groups: self.groups().len() as u64,
        }
    }

    /// When the log holds more than `max_bytes`: the groups whose live entries keep its
    /// oldest segment from being deleted. The node asks them to snapshot (so they purge).
    pub fn groups_pinning_oldest(&self, max_bytes: u64) -> Vec<u64> {
        let Ok(st) = self.core.state() else {
            return Vec::new();
        };
        let total: u64 = st.segments.values().map(|s| s.len).sum();
        if total <= max_bytes {
            return Vec::new();
        }
        let active = st.active_seq();
        let Some(oldest) = st
            .segments
            .iter()
            .find(|(&seq, s)| seq != active && s.live > 0)
            .map(|(&seq, _)| seq)
        else {
            return Vec::new();
        };
        st.groups
            .iter()
            .filter(|(_, g)| g.locs.front().is_some_and(|l| l.seg == oldest))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Makes everything written so far durable now (one fsync pass), whatever the policy.
    pub fn sync(&self) -> io::Result<()> {
        self.core.sync()
    }

    /// Stops the flusher, writes owed committed ids and syncs everything; later writes
    /// fail. Idempotent.
    pub fn close(&self) -> io::Result<()> {
        {
            let mut st = self.core.state()?;
            if st.closed {
                return Ok(());
            }
            st.closed = true;
        }
        if let Some(thread) = lock(&self.flusher, "flusher")?.take() {
            // A send error means the thread is gone already; join reports nothing useful.
            let _ = self.core.tx.send(Flush::Stop);
            let _ = thread.join();
        }
        self.core.state()?.write_dirty_committed()?;
        self.core.sync()
    }
}

impl Drop for LogEngine {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(dir = %self.core.dir.display(), error = %e, "raft log: final sync on close failed");
        }
    }
}

impl fmt::Debug for LogEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogEngine")
            .field("dir", &self.core.dir)
            .field("policy", &self.core.opts.policy)
            .finish()
    }
}

#[cfg(test)]
impl Core {
    pub(crate) fn has_unsynced(&self) -> bool {
        self.state().unwrap().has_unsynced()
    }

    /// What a failed fsync does.
    pub(crate) fn poison(&self, why: &str) {
        self.state().unwrap().poison(why.into());
    }
}
