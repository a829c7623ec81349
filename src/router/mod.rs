//! Pure routing decisions from a cluster map snapshot (layer 3): which slot a command
//! touches, which shard owns it, where a shard's replicas go.
//!
//! - Key to slot: `proto::key_slot` (Redis Cluster's CRC16 with hash tags).
//! - Slot to shard: the map's slot ranges.
//! - Shard replicas to nodes: rendezvous (highest random weight) hashing over the live
//!   nodes, so adding or removing one node moves about R/N of the replicas and never
//!   puts two replicas of a shard on one node.

use crate::cmd::CommandSpec;
use bytes::Bytes;
use proto::map::{ClusterMap, SlotRange};
use proto::{key_slot, NodeAddr, SLOTS};
use std::collections::BTreeMap;

/// Why a command cannot be routed to a single shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Keys in different slots (`-CROSSSLOT`).
    CrossSlot,
}

/// The one slot every key of a command hashes to; `None` for a command without keys.
pub fn command_slot(spec: &CommandSpec, args: &[Bytes]) -> Result<Option<u16>, RouteError> {
    let positions = spec.key_positions(args).unwrap_or_default();
    let mut slot = None;
    for i in positions {
        let s = key_slot(&args[i]);
        match slot {
            None => slot = Some(s),
            Some(prev) if prev != s => return Err(RouteError::CrossSlot),
            Some(_) => {}
        }
    }
    Ok(slot)
}

/// A stable 64-bit mix (SplitMix64's finalizer): the same on every node and build.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `r` nodes a shard's replicas go to: the nodes with the highest weight for
/// this shard (rendezvous hashing), best first. Fewer if there are fewer nodes.
pub fn place(shard: u64, nodes: impl IntoIterator<Item = u64>, r: usize) -> Vec<u64> {
    let mut scored: Vec<(u64, u64)> = nodes
        .into_iter()
        .map(|n| (mix(mix(shard) ^ n), n))
        .collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.dedup_by_key(|(_, n)| *n);
    scored.into_iter().take(r).map(|(_, n)| n).collect()
}

/// A new cluster's map: `shards` shards (ids 1..=shards) splitting the slots into
/// equal contiguous ranges, each placed on `r` nodes.
pub fn initial_map(nodes: BTreeMap<u64, NodeAddr>, shards: u64, r: usize) -> ClusterMap {
    let shards = shards.clamp(1, SLOTS as u64);
    let ids: Vec<u64> = nodes.keys().copied().collect();
    let mut map = ClusterMap {
        epoch: 1,
        nodes,
        ..Default::default()
    };
    let per = SLOTS as u64 / shards;
    let extra = SLOTS as u64 % shards;
    let mut start = 0u64;
    for s in 1..=shards {
        let len = per + u64::from(s <= extra);
        map.shards.insert(s, place(s, ids.iter().copied(), r));
        map.ranges.push(SlotRange {
            start: start as u16,
            end: (start + len - 1) as u16,
            shard: s,
        });
        start += len;
    }
    map
}

/// The node each shard's leadership should sit on: shards in id order, each to the
/// replica with the fewest shards so far (placement order breaks ties), so every node
/// leads about S/N shards. Deterministic: every node computes the same.
pub fn preferred_leaders(map: &ClusterMap) -> BTreeMap<u64, u64> {
    let mut load: BTreeMap<u64, usize> = BTreeMap::new();
    let mut out = BTreeMap::new();
    // Nodes being drained lead nothing (unless a shard has no other replica).
    let staying = |replicas: &[u64]| -> Vec<u64> {
        let s: Vec<u64> = replicas
            .iter()
            .copied()
            .filter(|n| !map.leaving.contains(n))
            .collect();
        if s.is_empty() {
            replicas.to_vec()
        } else {
            s
        }
    };
    for (shard, replicas) in &map.shards {
        let replicas = staying(replicas);
        let best = replicas
            .iter()
            .enumerate()
            .min_by_key(|(i, n)| (load.get(n).copied().unwrap_or(0), *i))
            .map(|(_, n)| *n);
        if let Some(n) = best {
            *load.entry(n).or_default() += 1;
            out.insert(*shard, n);
        }
    }
    // Then move single leaderships from a node with two more than another replica of
    // the shard, until none can move (each move lowers the spread, so this ends).
    loop {
        let step = out.iter().find_map(|(shard, leader)| {
            let l = load[leader];
            staying(&map.shards[shard])
                .into_iter()
                .find(|n| load.get(n).copied().unwrap_or(0) + 1 < l)
                .map(|n| (*shard, *leader, n))
        });
        let Some((shard, from, to)) = step else { break };
        *load.get_mut(&from).expect("leads") -= 1;
        *load.entry(to).or_default() += 1;
        out.insert(shard, to);
    }
    out
}

/// Parses an initial member list, `id=host:port@peerport,...` (Redis's
/// `ip:port@cport` notation): node ids to their client and peer addresses.
pub fn parse_initial_cluster(text: &str) -> Result<BTreeMap<u64, NodeAddr>, String> {
    let mut nodes = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("'{item}' is not id=host:port@peerport"))?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|&i| i > 0)
            .ok_or_else(|| format!("bad node id in '{item}'"))?;
        let (client, peer_port) = addr
            .rsplit_once('@')
            .ok_or_else(|| format!("'{item}' has no @peerport"))?;
        let (host, port) = client
            .rsplit_once(':')
            .ok_or_else(|| format!("'{item}' has no :port"))?;
        for p in [port, peer_port] {
            p.parse::<u16>()
                .map_err(|_| format!("bad port '{p}' in '{item}'"))?;
        }
        let addr = NodeAddr {
            client: client.to_string(),
            peer: format!("{host}:{peer_port}"),
        };
        if nodes.insert(id, addr).is_some() {
            return Err(format!("node id {id} listed twice"));
        }
    }
    if nodes.is_empty() {
        return Err("no members".into());
    }
    Ok(nodes)
}

/// What a node knows of the cluster at one moment: the newest committed map, its own
/// id, and the leader it believes each shard has (`None` while unknown, e.g. during an
/// election). CLUSTER SLOTS/SHARDS/NODES/INFO and MOVED are answered from it.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub map: std::sync::Arc<ClusterMap>,
    pub my_id: u64,
    pub leaders: BTreeMap<u64, Option<u64>>,
}

impl ClusterView {
    /// The node believed to lead `shard`.
    pub fn leader_of(&self, shard: u64) -> Option<u64> {
        self.leaders.get(&shard).copied().flatten()
    }

    /// Whether every slot belongs to a shard with a known leader (`cluster_state:ok`).
    pub fn all_slots_served(&self) -> bool {
        self.map.covers_all_slots()
            && self
                .map
                .ranges
                .iter()
                .all(|r| self.leader_of(r.shard).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::{lookup, testing::argv};

    fn nodes(n: u64) -> BTreeMap<u64, NodeAddr> {
        (1..=n)
            .map(|i| {
                (
                    i,
                    NodeAddr {
                        peer: format!("127.0.0.1:{}", 17000 + i),
                        client: format!("127.0.0.1:{}", 7000 + i),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn slots_of_commands_and_crossslot() {
        let slot = |a: &[&str]| {
            let args = argv(a);
            command_slot(lookup(&args[0]).unwrap(), &args)
        };
        assert_eq!(slot(&["GET", "foo"]), Ok(Some(12182)));
        assert_eq!(slot(&["PING"]), Ok(None));
        assert_eq!(
            slot(&["MSET", "{u1}a", "1", "{u1}b", "2"]),
            Ok(Some(key_slot(b"u1")))
        );
        assert_eq!(slot(&["MGET", "foo", "bar"]), Err(RouteError::CrossSlot));
        assert_eq!(
            slot(&["SMOVE", "{t}a", "{t}b", "m"]),
            Ok(Some(key_slot(b"t")))
        );
        assert_eq!(slot(&["SINTERSTORE", "d", "a"]), Err(RouteError::CrossSlot));
    }

    #[test]
    fn placement_is_distinct_deterministic_and_moves_little() {
        let five: Vec<u64> = (1..=5).collect();
        for shard in 1..=64 {
            let p = place(shard, five.iter().copied(), 3);
            assert_eq!(p.len(), 3);
            let mut d = p.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 3, "replicas of shard {shard} on distinct nodes");
            assert_eq!(
                p,
                place(shard, five.iter().rev().copied(), 3),
                "order of nodes does not matter"
            );
        }
        assert_eq!(place(1, [1, 2], 3).len(), 2, "fewer nodes than replicas");
        // Adding a sixth node moves about R/N of the replicas: those it takes over.
        let six: Vec<u64> = (1..=6).collect();
        let (mut moved, total) = (0, 256 * 3);
        for shard in 1..=256 {
            let before = place(shard, five.iter().copied(), 3);
            let after = place(shard, six.iter().copied(), 3);
            moved += after.iter().filter(|n| !before.contains(n)).count();
            assert!(
                after.iter().all(|n| before.contains(n) || *n == 6),
                "only the new node gains replicas"
            );
        }
        let share = moved as f64 / total as f64;
        assert!(
            (0.08..0.28).contains(&share),
            "moved {share:.2} of the replicas, expected about 1/6"
        );
    }

    #[test]
    fn preferred_leaders_are_balanced_replicas() {
        for (n, s) in [(3, 3), (3, 6), (5, 10), (5, 16), (4, 7)] {
            let m = initial_map(nodes(n), s, 3);
            let p = preferred_leaders(&m);
            assert_eq!(p.len() as u64, s);
            let mut per: BTreeMap<u64, u64> = BTreeMap::new();
            for (shard, node) in &p {
                assert!(m.shards[shard].contains(node), "a replica leads");
                *per.entry(*node).or_default() += 1;
            }
            let (lo, hi) = (
                per.values().min().copied().unwrap_or(0),
                per.values().max().copied().unwrap_or(0),
            );
            assert!(
                hi - lo <= 1 || (per.len() as u64) < n,
                "{n} nodes, {s} shards: {per:?}"
            );
        }
    }

    #[test]
    fn initial_cluster_lists_parse() {
        let n = parse_initial_cluster("1=127.0.0.1:7001@17001, 2=127.0.0.1:7002@17002").unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(n[&2].client, "127.0.0.1:7002");
        assert_eq!(n[&2].peer, "127.0.0.1:17002");
        for bad in [
            "",
            "1=127.0.0.1:7001",
            "x=h:1@2",
            "0=h:1@2",
            "1=h:1@2,1=h:3@4",
            "1=h:99999@1",
        ] {
            assert!(parse_initial_cluster(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn initial_map_covers_every_slot_once() {
        for (n, s) in [(1, 1), (3, 3), (3, 8), (5, 16), (3, 7)] {
            let m = initial_map(nodes(n), s, 3);
            m.validate().unwrap();
            assert!(m.covers_all_slots(), "{n} nodes, {s} shards");
            assert_eq!(m.shards.len() as u64, s);
            let sizes: Vec<u32> = m
                .ranges
                .iter()
                .map(|r| (r.end - r.start) as u32 + 1)
                .collect();
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "even split"
            );
            assert!(m.shards.values().all(|r| r.len() == 3.min(n as usize)));
        }
    }
}
