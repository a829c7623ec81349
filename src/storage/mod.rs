//! Durable Raft log and snapshot files; the only module that touches files.
//!
//! - `log_engine`: the node's one write-ahead log shared by all its Raft groups: group
//!   commit across groups, hard state and checkpoints in the log, segment deletion,
//!   appendfsync-style durability policies, fsync metrics.
//! - `wal`: that log's disk format: records, checkpoints, segment files, the scan that
//!   finds a torn tail.
//! - `raft_log`: openraft's `RaftLogStorage` for one group, a handle on the engine, with
//!   an entry cache for replication reads.
//! - `latency`: the lock-free latency histogram behind the fsync metrics.
//! - `snapshots`: the snapshot files of a group, written temp + fsync + rename.

pub mod latency;
pub mod log_engine;
pub mod raft_log;
pub mod snapshots;
pub mod wal;

pub use log_engine::{EngineStats, FsyncPolicy, LogEngine, LogStoreOptions};
pub use raft_log::{LogReader, LogStats, LogStatsHandle, RaftLogStore};
pub use snapshots::SnapshotDir;
