//! shardis: a Redis-compatible data tier. See README.md for the map from concepts
//! to files; ../shared/DESIGN.md for the layers (lower layers never import higher).

pub mod admin;
pub mod cmd;
pub mod keyspace;
pub mod meta;
pub mod node;
pub mod reshard;
pub mod resp;
pub mod router;
pub mod server;
pub mod shard;
pub mod storage;
pub mod transport;
