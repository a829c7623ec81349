//! Durable Raft log and snapshot files; the only module that touches files.
//!
//! - `wal`: a segmented append-only log of opaque entries indexed by Raft log index,
//!   with group commit (one fsync per append call) and torn-tail recovery.
//! - `raft_log`: openraft's `RaftLogStorage` over the WAL: entries, vote, committed and
//!   purged log ids, appendfsync-style durability policies, an entry cache for
//!   replication reads, fsync metrics.
//! - `latency`: the lock-free latency histogram behind the fsync metrics.
//! - `snapshots`: the snapshot files of a group, written temp + fsync + rename.

pub mod latency;
pub mod raft_log;
pub mod snapshots;
pub mod wal;

pub use raft_log::{
    FsyncPolicy, LogReader, LogStats, LogStatsHandle, LogStoreOptions, RaftLogStore,
};
pub use snapshots::SnapshotDir;
pub use wal::{Wal, WalOptions};
