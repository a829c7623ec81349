//! Where a command runs: the shards this node hosts, the cluster map, and the target
//! of each command (a hosted shard, a shard on other nodes, every shard, or an error).
//!
//! A single in-memory node hosts one shard owning every slot and never hashes keys. A
//! cluster node hosts the replicas the map places on it; the node layer swaps in a new
//! table whenever the map changes or a replica comes up.

use crate::cmd::CommandSpec;
use crate::resp::Reply;
use crate::router::{self, ClusterView, RouteError};
use crate::shard::replica::Replica;
use crate::shard::Shard;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use proto::map::{ClusterMap, SlotRange};
use proto::raft_msg::Publish;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A shard replica on this node.
pub struct Hosted {
    pub id: u64,
    pub shard: Arc<Shard>,
    /// The shard's Raft replica; `None` on a single in-memory node.
    pub replica: Option<Arc<Replica>>,
}

/// The node's routing state: the map it routes by and the replicas it hosts.
#[derive(Clone, Default)]
pub struct ShardTable {
    pub map: Arc<ClusterMap>,
    pub hosted: BTreeMap<u64, Arc<Hosted>>,
}

impl ShardTable {
    /// One shard (id 1) owning every slot: the single in-memory node.
    pub fn single(shard: Arc<Shard>) -> ShardTable {
        let map = ClusterMap {
            epoch: 0,
            nodes: BTreeMap::new(),
            shards: BTreeMap::from([(1, Vec::new())]),
            ranges: vec![SlotRange {
                start: 0,
                end: proto::SLOTS - 1,
                shard: 1,
            }],
            ..Default::default()
        };
        ShardTable {
            map: Arc::new(map),
            hosted: BTreeMap::from([(
                1,
                Arc::new(Hosted {
                    id: 1,
                    shard,
                    replica: None,
                }),
            )]),
        }
    }
}

/// Where one command goes.
#[derive(Clone)]
pub enum Target {
    /// No keys.
    Keyless,
    /// A shard this node hosts.
    Local(Arc<Hosted>),
    /// A shard this node does not host.
    Remote { shard: u64, slot: u16 },
    /// Keys in more than one slot.
    CrossSlot,
    /// No shard owns the slot (or the node has no map yet).
    Unserved,
}

/// Why a forwarded request failed.
#[derive(Debug, Clone)]
pub enum ForwardError {
    /// Never delivered: nothing ran; retryable.
    NotSent(String),
    /// Delivered (or maybe): writes in it may or may not have been applied.
    Uncertain(String),
}

impl ForwardError {
    pub fn reply(&self, writes: bool) -> Reply {
        match self {
            ForwardError::Uncertain(why) if writes => {
                crate::shard::replica::ReplicaError::Unknown(why.clone()).reply()
            }
            ForwardError::NotSent(why) | ForwardError::Uncertain(why) => {
                Reply::Error(format!("CLUSTERDOWN shard unreachable: {why}").into())
            }
        }
    }
}

/// What the node layer provides to a cluster-mode server.
pub trait ClusterHooks: Send + Sync {
    /// The map, this node's id and the shard leaders it knows of.
    fn view(&self) -> ClusterView;
    /// Sends a message published here to every other node.
    fn publish(&self, msg: Publish);
    /// Runs `cmds` (in order, as one client would, in RESP3 if `resp3`) on a node
    /// hosting `shard`; their replies.
    fn forward(
        &self,
        shard: u64,
        cmds: Vec<Vec<Bytes>>,
        resp3: bool,
    ) -> BoxFuture<'static, Result<Vec<Reply>, ForwardError>>;
    /// The meta group replica's status (INFO raft's `shard0` line); empty when the
    /// node runs none.
    fn meta_status(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Hands this node's leaderships to other replicas (graceful shutdown); the number
    /// moved.
    fn hand_over(&self) -> BoxFuture<'static, usize>;
    /// `SHARDIS ...`: cluster administration (status, resharding); the answer.
    fn admin(&self, args: Vec<Bytes>) -> BoxFuture<'static, Reply>;
}

/// The target of a command by its keys.
pub fn target(table: &ShardTable, cluster: bool, spec: &CommandSpec, args: &[Bytes]) -> Target {
    if !cluster {
        return table
            .hosted
            .values()
            .next()
            .map_or(Target::Unserved, |h| Target::Local(h.clone()));
    }
    match router::command_slot(spec, args) {
        Err(RouteError::CrossSlot) => Target::CrossSlot,
        Ok(None) => Target::Keyless,
        Ok(Some(slot)) => slot_target(table, slot),
    }
}

/// The target for one slot.
pub fn slot_target(table: &ShardTable, slot: u16) -> Target {
    match table.map.shard_of(slot) {
        None => Target::Unserved,
        Some(shard) => match table.hosted.get(&shard) {
            Some(h) => Target::Local(h.clone()),
            None => Target::Remote { shard, slot },
        },
    }
}
