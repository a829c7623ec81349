//! The cluster map: which nodes exist, which shards (Raft groups) there are, where
//! each shard's replicas live, and which slot ranges each shard owns, under an epoch
//! that grows with every change. The meta group replicates it; every node caches the
//! newest committed one and routes from it. A contract between nodes: only extended.

use crate::node::NodeAddr;
use crate::slot::SLOTS;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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
    /// Slot migrations in flight (added in map version 2, as the two fields after it;
    /// absent from version-1 encodings, which [`ClusterMap::decode`] still reads).
    pub migrations: Vec<Migration>,
    /// Nodes being drained (`remove-node`): their replicas and leaderships move away,
    /// then they leave `nodes`.
    pub leaving: BTreeSet<u64>,
    /// Where shards' replicas should go (rebalancing, draining): each shard's leader
    /// moves its replicas there one at a time, then the entry goes.
    pub targets: BTreeMap<u64, Vec<u64>>,
}

/// The version-1 encoding of the map: everything but the migrations.
#[derive(Deserialize)]
struct ClusterMapV1 {
    epoch: u64,
    nodes: BTreeMap<u64, NodeAddr>,
    shards: BTreeMap<u64, Vec<u64>>,
    ranges: Vec<SlotRange>,
}

/// One slot range moving from one shard to another (DESIGN.md, online resharding).
/// The range stays owned by `from` in `ranges` until the cutover flips it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// Unique in the cluster's history (the epoch that created it).
    pub id: u64,
    pub start: u16,
    pub end: u16,
    pub from: u64,
    pub to: u64,
    /// Bumped by every driver that (re)starts the copy: entries of older attempts are
    /// ignored by both shards, so a deposed driver cannot interfere.
    pub attempt: u64,
    pub phase: Phase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Keys are being copied; `from` serves the range.
    Copying,
    /// Ownership flipped (`ranges` says `to`): the target is told to serve and the
    /// source deletes its copy; then the migration leaves the map.
    Flipped,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Copying => "copying",
            Phase::Flipped => "cleanup",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRange {
    /// First and last slot, inclusive.
    pub start: u16,
    pub end: u16,
    pub shard: u64,
}

impl ClusterMap {
    /// Decodes a stored map, of either version.
    pub fn decode(b: &[u8]) -> Result<ClusterMap, String> {
        let cfg = bincode::config::standard();
        match bincode::serde::decode_from_slice::<ClusterMap, _>(b, cfg) {
            Ok((m, n)) if n == b.len() => Ok(m),
            _ => bincode::serde::decode_from_slice::<ClusterMapV1, _>(b, cfg)
                .map_err(|e| format!("bad cluster map: {e}"))
                .and_then(|(m, n)| {
                    if n != b.len() {
                        return Err("bad cluster map: trailing bytes".into());
                    }
                    Ok(ClusterMap {
                        epoch: m.epoch,
                        nodes: m.nodes,
                        shards: m.shards,
                        ranges: m.ranges,
                        ..Default::default()
                    })
                }),
        }
    }

    /// The migration moving `slot`, if any.
    pub fn migration_of(&self, slot: u16) -> Option<&Migration> {
        self.migrations
            .iter()
            .find(|m| m.start <= slot && slot <= m.end)
    }

    /// The slot ranges `shard` owns.
    pub fn ranges_of(&self, shard: u64) -> impl Iterator<Item = &SlotRange> {
        self.ranges.iter().filter(move |r| r.shard == shard)
    }

    /// Hands `start..=end` (inside ranges owned by one shard) to `to`, splitting and
    /// merging ranges so they stay sorted, disjoint and maximal.
    pub fn assign(&mut self, start: u16, end: u16, to: u64) {
        let mut out: Vec<SlotRange> = Vec::with_capacity(self.ranges.len() + 2);
        for r in &self.ranges {
            if r.end < start || r.start > end {
                out.push(*r);
                continue;
            }
            if r.start < start {
                out.push(SlotRange {
                    start: r.start,
                    end: start - 1,
                    shard: r.shard,
                });
            }
            if r.end > end {
                out.push(SlotRange {
                    start: end + 1,
                    end: r.end,
                    shard: r.shard,
                });
            }
        }
        out.push(SlotRange {
            start,
            end,
            shard: to,
        });
        out.sort_by_key(|r| r.start);
        let mut merged: Vec<SlotRange> = Vec::with_capacity(out.len());
        for r in out {
            match merged.last_mut() {
                Some(l) if l.shard == r.shard && l.end as u32 + 1 == r.start as u32 => {
                    l.end = r.end
                }
                _ => merged.push(r),
            }
        }
        self.ranges = merged;
    }
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
        for (i, m) in self.migrations.iter().enumerate() {
            if m.start > m.end || (m.end as u32) >= SLOTS as u32 || m.from == m.to {
                return Err(format!("bad migration {} of {}-{}", m.id, m.start, m.end));
            }
            if !self.shards.contains_key(&m.to) {
                return Err(format!("migration {} to unknown shard {}", m.id, m.to));
            }
            let owner = if m.phase == Phase::Copying {
                m.from
            } else {
                m.to
            };
            for s in [m.start, m.end] {
                if self.shard_of(s) != Some(owner) {
                    return Err(format!(
                        "migration {} of {}-{}: slot {s} is not owned by shard {owner}",
                        m.id, m.start, m.end
                    ));
                }
            }
            if self
                .ranges_covering(m.start, m.end)
                .any(|r| r.shard != owner)
            {
                return Err(format!("migration {} spans shards", m.id));
            }
            for o in &self.migrations[..i] {
                if o.start <= m.end && m.start <= o.end {
                    return Err(format!("migrations {} and {} overlap", o.id, m.id));
                }
                if [o.from, o.to].iter().any(|s| *s == m.from || *s == m.to) {
                    return Err(format!("migrations {} and {} share a shard", o.id, m.id));
                }
            }
        }
        if let Some(n) = self.leaving.iter().find(|n| !self.nodes.contains_key(n)) {
            return Err(format!("unknown node {n} is leaving"));
        }
        for (id, target) in &self.targets {
            if !self.shards.contains_key(id) {
                return Err(format!("placement target for unknown shard {id}"));
            }
            for (i, n) in target.iter().enumerate() {
                if !self.nodes.contains_key(n) || target[..i].contains(n) {
                    return Err(format!("bad placement target for shard {id}: {target:?}"));
                }
            }
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

    fn ranges_covering(&self, start: u16, end: u16) -> impl Iterator<Item = &SlotRange> {
        self.ranges
            .iter()
            .filter(move |r| r.start <= end && start <= r.end)
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
        // 3-byte varint, shard 1), then (version 2) no migrations, none leaving, no
        // placement targets.
        let v1 = vec![1, 1, 1, 1, b'p', 1, b'c', 1, 1, 1, 1, 1, 0, 251, 255, 63, 1];
        let mut v2 = v1.clone();
        v2.extend([0, 0, 0]);
        assert_eq!(bytes, v2);
        // A version-1 map (stored before migrations existed) still decodes.
        assert_eq!(ClusterMap::decode(&v1).unwrap(), m);
        assert_eq!(ClusterMap::decode(&v2).unwrap(), m);
        assert!(ClusterMap::decode(&v2[..5]).is_err());
        m.migrations.push(Migration {
            id: 9,
            start: 0,
            end: 10,
            from: 1,
            to: 2,
            attempt: 1,
            phase: Phase::Copying,
        });
        let v3 = bincode::serde::encode_to_vec(&m, bincode::config::standard()).unwrap();
        assert_eq!(&v3[v1.len()..], &[1, 9, 0, 10, 1, 2, 1, 0, 0, 0]);
        assert_eq!(ClusterMap::decode(&v3).unwrap(), m);
    }

    #[test]
    fn assign_splits_and_merges_ranges() {
        let mut m = map();
        m.assign(100, 199, 2);
        m.validate().unwrap();
        assert!(m.covers_all_slots());
        assert_eq!(m.ranges.len(), 4);
        assert_eq!(m.shard_of(99), Some(1));
        assert_eq!(m.shard_of(100), Some(2));
        assert_eq!(m.shard_of(199), Some(2));
        assert_eq!(m.shard_of(200), Some(1));
        m.assign(100, 199, 1);
        assert_eq!(m, map());
        // The top of shard 1's range merges with shard 2's.
        m.assign(8000, 8191, 2);
        assert_eq!(m.ranges.len(), 2);
        assert_eq!(m.ranges[1].start, 8000);
        assert_eq!(m.ranges_of(2).count(), 1);
    }

    #[test]
    fn migrations_are_validated() {
        let mut m = map();
        let mig = Migration {
            id: 4,
            start: 0,
            end: 99,
            from: 1,
            to: 2,
            attempt: 0,
            phase: Phase::Copying,
        };
        m.migrations.push(mig.clone());
        m.validate().unwrap();
        assert_eq!(m.migration_of(50).map(|x| x.id), Some(4));
        assert_eq!(m.migration_of(100), None);
        let mut wrong_owner = m.clone();
        wrong_owner.migrations[0].from = 2;
        wrong_owner.migrations[0].to = 1;
        assert!(wrong_owner.validate().unwrap_err().contains("not owned"));
        let mut flipped = m.clone();
        flipped.migrations[0].phase = Phase::Flipped;
        assert!(flipped.validate().is_err());
        flipped.assign(0, 99, 2);
        flipped.validate().unwrap();
        let mut spans = m.clone();
        spans.assign(50, 60, 2);
        assert!(spans.validate().unwrap_err().contains("spans"));
        let mut two = m.clone();
        two.migrations.push(Migration {
            id: 5,
            start: 200,
            end: 300,
            ..mig
        });
        assert!(two.validate().unwrap_err().contains("share a shard"));
    }
}
