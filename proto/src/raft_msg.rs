//! Requests the shard layer sends over the peer transport: the request kinds and the
//! bodies that are ours (Raft RPC bodies are openraft's own messages, bincode-encoded;
//! the transport's handshake version covers both).

use crate::entry::Op;
use crate::node::NodeAddr;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Request kinds (the transport's `kind`).
pub mod kind {
    pub const APPEND: u16 = 1;
    pub const VOTE: u16 = 2;
    pub const PRE_VOTE: u16 = 3;
    pub const TRANSFER_LEADER: u16 = 4;
    pub const SNAPSHOT_CHUNK: u16 = 5;
    /// Writes a follower forwards to its leader: a `Vec<ForwardWrite>`, proposed in
    /// order; the answer is a `Vec<ForwardOutcome>`, one per write.
    pub const FORWARD_WRITE: u16 = 10;
    /// A follower asks the leader for a read index (linearizable follower reads).
    pub const READ_INDEX: u16 = 11;
    /// A new node asks to be added to the group.
    pub const JOIN: u16 = 12;
    /// A message published on one node, for the subscribers of the others.
    pub const PUBLISH: u16 = 13;
    /// Client commands for a shard the sending node does not host: a
    /// `ForwardCommands`; the answer is the replies, encoded by the server layer.
    pub const FORWARD_COMMANDS: u16 = 14;
    /// A node tells the others which shards it leads: `LeaderHints`, no answer body.
    pub const LEADER_HINTS: u16 = 15;
    /// A leader asks a replica how far it has applied the group's log (before handing
    /// it leadership): no body; the answer is a `u64` log index (0: nothing yet). A
    /// node that does not know the kind answers an error, which reads as "not ready".
    pub const APPLIED: u16 = 16;
}

/// Commands a node runs for a client of another node, in order, as that client would
/// (`resp3`: the client's protocol), against its replica of `shard`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForwardCommands {
    pub shard: u64,
    pub resp3: bool,
    pub cmds: Vec<Vec<Bytes>>,
}

/// The shards a node leads, with the Raft term of each leadership (a receiver keeps
/// the hint with the highest term per shard).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaderHints {
    pub leads: Vec<(u64, u64)>,
    /// The node is shutting down: hand it no leadership.
    pub draining: bool,
}

/// PUBLISH (or SPUBLISH, `shard_channel`) relayed to the other nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Publish {
    pub shard_channel: bool,
    pub channel: Bytes,
    pub message: Bytes,
}

/// A write forwarded to the leader. `request_id` is unique per sending node and
/// connection attempt; a forward whose delivery is uncertain is never resent, so an
/// operation applies at most once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForwardWrite {
    pub request_id: u64,
    pub op: Op,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ForwardOutcome {
    /// Applied; the replies, encoded by the shard layer.
    Applied(Bytes),
    /// Not applied: the receiver is not the leader (it names one if it knows it).
    NotLeader(Option<(u64, NodeAddr)>),
    /// Proposed, but leadership was lost before the outcome was known.
    Unknown(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReadIndexOutcome {
    /// Reads are linearizable once the state has applied this log index.
    Index(u64),
    NotLeader(Option<(u64, NodeAddr)>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node_id: u64,
    pub addr: NodeAddr,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JoinOutcome {
    /// The node is a voter now.
    Joined,
    NotLeader(Option<(u64, NodeAddr)>),
    Failed(String),
}

/// One piece of a snapshot streamed to a follower; `last` carries the encoded vote and
/// snapshot meta and asks the receiver to install what it got.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub transfer: u64,
    pub offset: u64,
    pub data: Bytes,
    pub last: Option<Bytes>,
}

pub fn encode<T: Serialize>(t: &T) -> Bytes {
    Bytes::from(
        bincode::serde::encode_to_vec(t, bincode::config::standard())
            .expect("encoding into a Vec cannot fail"),
    )
}

pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    bincode::serde::decode_from_slice(b, bincode::config::standard())
        .map(|(t, _)| t)
        .map_err(|e| format!("bad message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_stable() {
        let f = ForwardWrite {
            request_id: 7,
            op: Op::EvictKeys(vec![Bytes::from_static(b"k")]),
        };
        assert_eq!(&encode(&f)[..], &[7, 2, 1, 1, b'k']);
        assert_eq!(decode::<ForwardWrite>(&encode(&f)).unwrap(), f);
        let r = ReadIndexOutcome::Index(300);
        assert_eq!(&encode(&r)[..], &[0, 251, 44, 1]);
        assert!(decode::<JoinRequest>(&[1]).is_err());
    }
}
