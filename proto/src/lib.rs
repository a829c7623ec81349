//! Contracts between shardis nodes and between a node and its disk.
//!
//! Everything here is versioned and only ever extended: old encodings must keep
//! decoding (see the tests at the bottom of each module).

pub mod entry;
pub mod map;
pub mod node;
pub mod peer;
pub mod raft_msg;
pub mod slot;

pub use entry::{Edit, Item, MigrateOp, Op, Piece, WriteEntry};
pub use node::NodeAddr;
pub use slot::{key_slot, SLOTS};
