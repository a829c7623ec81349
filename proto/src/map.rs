//! The cluster map: which nodes exist, which shards (Raft groups) there are, where
//! each shard's replicas live, and which slot ranges each shard owns, under an epoch
//! that grows with every change. The meta group replicates it; every node caches the
//! newest committed one and routes from it. A contract between nodes: only extended.

use crate::node::NodeAddr;
use crate::slot::SLOTS;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMap {
    /// Grows with every change; requests and migrations are fenced on it.
    pub epoch: u64,
    pub nodes: BTreeMap<u64, NodeAddr>,
    /// Shard id (its Raft group id, never 0: 0 is the meta group) to its replicas, in
    /// placement order.
    pub shards: BTreeMap<u64, Vec<u64>>,
    /// Sorted, non-overlapping, covering ranges of slots and the shard owning each.
    pub ranges: Vec<SlotRange>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRange {
    /// First and last slot, inclusive.
    pub start: u16,
    pub end: u16,
    pub shard: u64,
}

impl ClusterMap {
    /// The shard owning `slot`, if any range covers it.
    pub fn shard_of(&self, slot: u16) -> Option<u64> {
        let i = self.ranges.partition_point(|r| r.end < slot);
        self.ranges
            .get(i)
            .filter(|r| r.start <= slot)
            .map(|r| r.shard)
    }

    /// Checks the invariants: ranges sorted, disjoint, within 0..16384, owned by known
    /// shards; every shard's replicas are known, distinct nodes.
    pub fn validate(&self) -> Result<(), String> {
        let mut next = 0u32;
        for r in &self.ranges {
            if r.start > r.end || (r.end as u32) >= SLOTS as u32 {
                return Err(format!("bad slot range {}-{}", r.start, r.end));
            }
            if (r.start as u32) < next {
                return Err(format!(
                    "slot range {}-{} overlaps or is out of order",
                    r.start, r.end
                ));
            }
            if !self.shards.contains_key(&r.shard) {
                return Err(format!(
                    "slot range {}-{} owned by unknown shard {}",
                    r.start, r.end, r.shard
                ));
            }
            next = r.end as u32 + 1;
        }
        for (id, replicas) in &self.shards {
            if *id == 0 {
                return Err("shard id 0 is the meta group".into());
            }
            for (i, n) in replicas.iter().enumerate() {
                if !self.nodes.contains_key(n) {
                    return Err(format!("shard {id} placed on unknown node {n}"));
                }
                if replicas[..i].contains(n) {
                    return Err(format!("shard {id} has two replicas on node {n}"));
                }
            }
        }
        Ok(())
    }

    /// Whether every slot is owned by some shard.
    pub fn covers_all_slots(&self) -> bool {
        let mut next = 0u32;
        for r in &self.ranges {
            if r.start as u32 != next {
                return false;
            }
            next = r.end as u32 + 1;
        }
        next == SLOTS as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ClusterMap {
        let mut m = ClusterMap {
            epoch: 3,
            ..Default::default()
        };
        for n in 1..=3 {
            m.nodes.insert(
                n,
                NodeAddr {
                    peer: format!("127.0.0.1:1700{n}"),
                    client: format!("127.0.0.1:700{n}"),
                },
            );
        }
        m.shards.insert(1, vec![1, 2, 3]);
        m.shards.insert(2, vec![2, 3, 1]);
        m.ranges = vec![
            SlotRange {
                start: 0,
                end: 8191,
                shard: 1,
            },
            SlotRange {
                start: 8192,
                end: 16383,
                shard: 2,
            },
        ];
        m
    }

    #[test]
    fn lookup_validation_and_coverage() {
        let m = map();
        m.validate().unwrap();
        assert!(m.covers_all_slots());
        assert_eq!(m.shard_of(0), Some(1));
        assert_eq!(m.shard_of(8191), Some(1));
        assert_eq!(m.shard_of(8192), Some(2));
        assert_eq!(m.shard_of(16383), Some(2));
        let mut gap = m.clone();
        gap.ranges[1].start = 9000;
        gap.validate().unwrap();
        assert!(!gap.covers_all_slots());
        assert_eq!(gap.shard_of(8500), None);
        let mut bad = m.clone();
        bad.ranges[1].start = 8000;
        assert!(bad.validate().unwrap_err().contains("overlaps"));
        let mut twice = m.clone();
        twice.shards.insert(2, vec![2, 2, 1]);
        assert!(twice.validate().unwrap_err().contains("two replicas"));
    }

    #[test]
    fn encoding_is_stable() {
        let mut m = ClusterMap {
            epoch: 1,
            ..Default::default()
        };
        m.nodes.insert(
            1,
            NodeAddr {
                peer: "p".into(),
                client: "c".into(),
            },
        );
        m.shards.insert(1, vec![1]);
        m.ranges.push(SlotRange {
            start: 0,
            end: 16383,
            shard: 1,
        });
        let bytes = bincode::serde::encode_to_vec(&m, bincode::config::standard()).unwrap();
        // epoch, 1 node (id, peer, client), 1 shard (id, [1]), 1 range (0, 16383 as a
        // 3-byte varint, shard 1).
        assert_eq!(
            bytes,
            vec![1, 1, 1, 1, b'p', 1, b'c', 1, 1, 1, 1, 1, 0, 251, 255, 63, 1]
        );
    }
}
