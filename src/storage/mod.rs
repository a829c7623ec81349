//! Durable Raft log and snapshot files; the only module that touches files.
//!
//! - `wal`: a segmented append-only log of opaque entries indexed by Raft log index,
//!   with group commit (one fsync per append call) and torn-tail recovery.
//! - `snapshots`: the snapshot files of a group, written temp + fsync + rename.

pub mod snapshots;
pub mod wal;

pub use snapshots::SnapshotDir;
pub use wal::{Wal, WalOptions};
