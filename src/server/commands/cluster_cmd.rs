//! CLUSTER INFO | SLOTS | SHARDS | NODES | MYID | MYSHARDID | KEYSLOT |
//! COUNTKEYSINSLOT | GETKEYSINSLOT | HELP, and ASKING: Redis Cluster's view of a
//! shardis cluster, in Redis 7's reply shapes, so that cluster-aware clients discover
//! and route as they do against Redis.
//!
//! The formatting functions are pure, over a [`ClusterView`] (and a keyspace for the
//! slot commands); [`run`] only fetches their inputs.
//!
//! How our model maps onto Redis Cluster's:
//! - A Redis master with its replicas is a shard (one Raft group). The shard's master
//!   is its Raft leader; while the leader is unknown (an election), the first replica
//!   in placement order stands in, so every range always names a node to try.
//! - CLUSTER SLOTS / SHARDS: per slot range (adjacent ranges of one shard merged) /
//!   per shard: the master first, then the shard's other replicas.
//! - CLUSTER NODES has one line per node, while a node may hold replicas of several
//!   shards. A node that is the master of at least one shard is a `master` listing the
//!   slots of the shards it masters; a node that masters none is a `slave` of the
//!   master of the first shard (by id) it replicates; a node holding no replica is a
//!   master without slots.
//! - Epochs: the map epoch is the current epoch, this node's epoch and every node's
//!   config epoch. Node health is not in the map yet: every node is `connected`,
//!   ping/pong times are 0, `cluster_slots_fail` is 0 and the slots of a shard without
//!   a known leader count as `pfail` (possibly failing, as during an election).
//! - Names: a node is `node_name(id)`, its id as 40 hex digits (clients require 40
//!   characters); a shard is `shard_name(id)`. `ip:port` is the node's client address,
//!   the `@cport` its peer port.
//!
//! Without a cluster (a single in-memory node) every subcommand answers
//! `ERR This instance has cluster support disabled`, as Redis without cluster-enabled
//! does (Redis refuses KEYSLOT and HELP there too).

use super::super::client::ClientState;
use super::super::Server;
use crate::cmd::args;
use crate::cmd::error::{self, CmdError};
use crate::keyspace::Keyspace;
use crate::resp::Reply;
use crate::router::ClusterView;
use bytes::Bytes;
use proto::{key_slot, SLOTS};

/// A node's name in CLUSTER replies: its id as 40 lowercase hex digits.
pub fn node_name(id: u64) -> String {
    format!("{id:040x}")
}

/// A shard's name (CLUSTER MYSHARDID): its id as 40 lowercase hex digits.
pub fn shard_name(id: u64) -> String {
    format!("{id:040x}")
}

/// CLUSTER <sub> ...; `sub` is the full name (`cluster|info`).
pub fn run(server: &Server, sub: &str, a: &[Bytes]) -> Reply {
    let Some(view) = server.cluster_view() else {
        return CmdError::ClusterDisabled.reply();
    };
    match sub {
        "cluster|info" => Reply::Verbatim("txt", Bytes::from(info(&view))),
        "cluster|slots" => slots(&view),
        "cluster|shards" => shards(&view),
        "cluster|nodes" => Reply::Verbatim("txt", Bytes::from(nodes(&view))),
        "cluster|myid" => Reply::bulk_string(node_name(view.my_id)),
        "cluster|myshardid" => Reply::bulk_string(shard_name(my_shard(&view).unwrap_or(0))),
        "cluster|keyslot" => Reply::Int(key_slot(&a[2]) as i64),
        // Node-local, as in Redis Cluster: the keys of the replica this node hosts for
        // the slot's shard (none when it hosts no replica of it).
        "cluster|countkeysinslot" => match slot_shard(server, &a[2]) {
            Some(shard) => count_keys_in_slot(&shard.lock().ks, &a[2]),
            None => count_keys_in_slot(&Keyspace::default(), &a[2]),
        },
        "cluster|getkeysinslot" => match slot_shard(server, &a[2]) {
            Some(shard) => get_keys_in_slot(&shard.lock().ks, &a[2], &a[3]),
            None => get_keys_in_slot(&Keyspace::default(), &a[2], &a[3]),
        },
        "cluster|help" => error::help("cluster", HELP),
        _ => error::unknown_subcommand("cluster", &a[1]),
    }
}

/// ASKING: the next command may use a slot this node is importing.
pub fn asking(server: &Server, c: &mut ClientState) -> Reply {
    if server.cluster_view().is_none() {
        return CmdError::ClusterDisabled.reply();
    }
    c.asking = true;
    Reply::ok()
}

const HELP: &[&str] = &[
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot>.",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored by current node in a slot.",
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MYID",
    "    Return the node id.",
    "MYSHARDID",
    "    Return the node's shard id.",
    "NODES",
    "    Return cluster configuration seen by node. Output format:",
    "    <id> <ip:port@cport> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "SLOTS",
    "    Return information about slots range mappings. Each range is made of:",
    "    start, end, master and replicas IP addresses, ports and ids",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
];

/// The node answering for `shard`: its leader, else its first replica.
fn master_of(view: &ClusterView, shard: u64) -> Option<u64> {
    view.leader_of(shard)
        .or_else(|| view.map.shards.get(&shard)?.first().copied())
}

/// A shard's nodes, master first, then the other replicas in placement order.
fn shard_nodes(view: &ClusterView, shard: u64) -> Vec<u64> {
    let master = master_of(view, shard);
    let mut out: Vec<u64> = master.into_iter().collect();
    if let Some(replicas) = view.map.shards.get(&shard) {
        out.extend(replicas.iter().filter(|&&n| Some(n) != master));
    }
    out
}

/// Slot ranges in map order, adjacent ranges of one shard merged.
fn merged_ranges(view: &ClusterView) -> Vec<(u16, u16, u64)> {
    let mut out: Vec<(u16, u16, u64)> = Vec::new();
    for r in &view.map.ranges {
        match out.last_mut() {
            Some(last) if last.2 == r.shard && last.1 as u32 + 1 == r.start as u32 => {
                last.1 = r.end
            }
            _ => out.push((r.start, r.end, r.shard)),
        }
    }
    out
}

/// Host and port of a `host:port` address (brackets of an IPv6 host removed).
fn host_port(addr: &str) -> (&str, u16) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse().unwrap_or(0),
        ),
        None => (addr, 0),
    }
}

fn client_addr(view: &ClusterView, node: u64) -> (&str, u16) {
    view.map
        .nodes
        .get(&node)
        .map_or(("", 0), |a| host_port(&a.client))
}

/// The shard this node masters first, else the first it replicates (by shard id).
fn my_shard(view: &ClusterView) -> Option<u64> {
    let shards = &view.map.shards;
    shards
        .keys()
        .copied()
        .find(|&s| master_of(view, s) == Some(view.my_id))
        .or_else(|| {
            shards
                .iter()
                .find(|(_, r)| r.contains(&view.my_id))
                .map(|(&s, _)| s)
        })
}

/// CLUSTER INFO's text, fields in Redis 7's order.
pub fn info(view: &ClusterView) -> String {
    let (mut assigned, mut ok) = (0u32, 0u32);
    for r in &view.map.ranges {
        let n = r.end as u32 - r.start as u32 + 1;
        assigned += n;
        if view.leader_of(r.shard).is_some() {
            ok += n;
        }
    }
    let size = view
        .map
        .shards
        .keys()
        .filter(|&&s| view.map.ranges.iter().any(|r| r.shard == s))
        .count();
    let state = if view.all_slots_served() {
        "ok"
    } else {
        "fail"
    };
    let epoch = view.map.epoch;
    let fields: [(&str, String); 12] = [
        ("cluster_state", state.into()),
        ("cluster_slots_assigned", assigned.to_string()),
        ("cluster_slots_ok", ok.to_string()),
        ("cluster_slots_pfail", (assigned - ok).to_string()),
        ("cluster_slots_fail", "0".into()),
        ("cluster_known_nodes", view.map.nodes.len().to_string()),
        ("cluster_size", size.to_string()),
        ("cluster_current_epoch", epoch.to_string()),
        ("cluster_my_epoch", epoch.to_string()),
        // Redis lists per-type message counters only when non-zero.
        ("cluster_stats_messages_sent", "0".into()),
        ("cluster_stats_messages_received", "0".into()),
        ("total_cluster_links_buffer_limit_exceeded", "0".into()),
    ];
    let mut out = String::new();
    for (k, v) in &fields {
        out.push_str(k);
        out.push(':');
        out.push_str(v);
        out.push_str("\r\n");
    }
    out
}

/// CLUSTER SLOTS: `[start, end, master, replica...]` per range, each node as
/// `[host, port, id, {}]` (Redis 7.0's metadata map, empty without hostnames).
pub fn slots(view: &ClusterView) -> Reply {
    let node = |n: u64| {
        let (host, port) = client_addr(view, n);
        Reply::Array(vec![
            Reply::bulk_string(host.to_string()),
            Reply::Int(port as i64),
            Reply::bulk_string(node_name(n)),
            Reply::Map(Vec::new()),
        ])
    };
    Reply::Array(
        merged_ranges(view)
            .into_iter()
            .map(|(start, end, shard)| {
                let mut entry = vec![Reply::Int(start as i64), Reply::Int(end as i64)];
                entry.extend(shard_nodes(view, shard).into_iter().map(node));
                Reply::Array(entry)
            })
            .collect(),
    )
}

/// CLUSTER SHARDS: per shard (by id), `slots` as flat start/end pairs and `nodes`
/// (master first) with Redis 7's fields.
pub fn shards(view: &ClusterView) -> Reply {
    let field = |k: &'static str, v: Reply| (Reply::bulk(k), v);
    let out = view.map.shards.keys().map(|&shard| {
        let slots = merged_ranges(view)
            .into_iter()
            .filter(|r| r.2 == shard)
            .flat_map(|(s, e, _)| [Reply::Int(s as i64), Reply::Int(e as i64)])
            .collect();
        let master = master_of(view, shard);
        let nodes = shard_nodes(view, shard)
            .into_iter()
            .map(|n| {
                let (host, port) = client_addr(view, n);
                let role = if Some(n) == master {
                    "master"
                } else {
                    "replica"
                };
                Reply::Map(vec![
                    field("id", Reply::bulk_string(node_name(n))),
                    field("port", Reply::Int(port as i64)),
                    field("ip", Reply::bulk_string(host.to_string())),
                    field("endpoint", Reply::bulk_string(host.to_string())),
                    field("role", Reply::bulk(role)),
                    field("replication-offset", Reply::Int(0)),
                    field("health", Reply::bulk("online")),
                ])
            })
            .collect();
        Reply::Map(vec![
            field("slots", Reply::Array(slots)),
            field("nodes", Reply::Array(nodes)),
        ])
    });
    Reply::Array(out.collect())
}

/// CLUSTER NODES: one line per node (by id), see the module doc for the mapping.
pub fn nodes(view: &ClusterView) -> String {
    let map = &view.map;
    let mut out = String::new();
    for (&id, addr) in &map.nodes {
        let (host, port) = host_port(&addr.client);
        let (_, cport) = host_port(&addr.peer);
        let mastered: Vec<u64> = map
            .shards
            .keys()
            .copied()
            .filter(|&s| master_of(view, s) == Some(id))
            .collect();
        let replica_of = map
            .shards
            .iter()
            .find(|(_, r)| r.contains(&id))
            .and_then(|(&s, _)| master_of(view, s))
            .filter(|_| mastered.is_empty());
        let myself = if id == view.my_id { "myself," } else { "" };
        let (role, master) = match replica_of {
            Some(m) => ("slave", node_name(m)),
            None => ("master", "-".to_string()),
        };
        out.push_str(&format!(
            "{} {host}:{port}@{cport} {myself}{role} {master} 0 0 {} connected",
            node_name(id),
            map.epoch
        ));
        let mut owned: Vec<(u16, u16)> = Vec::new();
        for (s, e, _) in merged_ranges(view)
            .into_iter()
            .filter(|r| mastered.contains(&r.2))
        {
            match owned.last_mut() {
                Some(last) if last.1 as u32 + 1 == s as u32 => last.1 = e,
                _ => owned.push((s, e)),
            }
        }
        for (s, e) in owned {
            if s == e {
                out.push_str(&format!(" {s}"));
            } else {
                out.push_str(&format!(" {s}-{e}"));
            }
        }
        out.push('\n');
    }
    out
}

/// A slot argument as Redis reads it: any integer parses, the range is checked after.
/// The hosted shard state owning the slot argument, if it is a valid slot.
fn slot_shard(server: &Server, a: &[u8]) -> Option<std::sync::Arc<crate::shard::Shard>> {
    let slot = slot_arg(a).ok().flatten()?;
    match crate::server::route::slot_target(&server.table(), slot) {
        crate::server::route::Target::Local(h) => Some(h.shard.clone()),
        _ => None,
    }
}

fn slot_arg(a: &[u8]) -> Result<Option<u16>, CmdError> {
    let n = args::int(a)?;
    Ok((0..SLOTS as i64).contains(&n).then_some(n as u16))
}

/// CLUSTER COUNTKEYSINSLOT slot
pub fn count_keys_in_slot(ks: &Keyspace, slot: &[u8]) -> Reply {
    match slot_arg(slot) {
        Ok(Some(s)) => Reply::Int(ks.count_in_slot(s) as i64),
        Ok(None) => CmdError::InvalidSlot.reply(),
        Err(e) => e.reply(),
    }
}

/// CLUSTER GETKEYSINSLOT slot count
pub fn get_keys_in_slot(ks: &Keyspace, slot: &[u8], count: &[u8]) -> Reply {
    let (slot, count) = match (slot_arg(slot), args::int(count)) {
        (Err(e), _) | (_, Err(e)) => return e.reply(),
        (Ok(Some(s)), Ok(n)) if n >= 0 => (s, n as usize),
        _ => return CmdError::InvalidSlotOrCount.reply(),
    };
    Reply::Array(
        ks.keys_in_slot(slot, count)
            .into_iter()
            .map(|k| Reply::Bulk(Bytes::from(k.into_vec())))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::Value;
    use crate::resp::{encode, Protocol};
    use proto::map::{ClusterMap, SlotRange};
    use proto::NodeAddr;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// Three nodes; shard 1 (0-8191) on 1,3 led by 1; shard 2 (8192-16383) on 2 led by 2.
    /// The shape of the three-node redis-server cluster these replies were taken from.
    fn view(my_id: u64, leaders: &[(u64, Option<u64>)]) -> ClusterView {
        let mut map = ClusterMap {
            epoch: 2,
            ..Default::default()
        };
        for n in 1..=3u64 {
            map.nodes.insert(
                n,
                NodeAddr {
                    peer: format!("127.0.0.1:{}", 40000 + n),
                    client: format!("127.0.0.1:{}", 30000 + n),
                },
            );
        }
        map.shards.insert(1, vec![1, 3]);
        map.shards.insert(2, vec![2]);
        map.ranges = vec![
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
        ClusterView {
            map: Arc::new(map),
            my_id,
            leaders: leaders.iter().copied().collect::<BTreeMap<_, _>>(),
        }
    }

    fn served() -> ClusterView {
        view(1, &[(1, Some(1)), (2, Some(2))])
    }

    fn wire(r: &Reply, p: Protocol) -> String {
        let mut out = bytes::BytesMut::new();
        encode(r, p, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn id(n: u64) -> String {
        node_name(n)
    }

    #[test]
    fn names_are_forty_hex_digits() {
        assert_eq!(node_name(1), format!("{}1", "0".repeat(39)));
        assert_eq!(node_name(u64::MAX).len(), 40);
        assert_eq!(node_name(0xabc), format!("{}abc", "0".repeat(37)));
    }

    #[test]
    fn info_matches_redis_fields_and_order() {
        assert_eq!(
            info(&served()),
            "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n\
             cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:3\r\n\
             cluster_size:2\r\ncluster_current_epoch:2\r\ncluster_my_epoch:2\r\n\
             cluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n\
             total_cluster_links_buffer_limit_exceeded:0\r\n"
        );
        // A shard without a known leader: its slots are pfail and the cluster fails.
        let text = info(&view(1, &[(1, Some(1)), (2, None)]));
        assert!(text.starts_with("cluster_state:fail\r\n"), "{text}");
        assert!(text.contains("cluster_slots_ok:8192\r\ncluster_slots_pfail:8192\r\n"));
        // Uncovered slots: not assigned, and the cluster fails.
        let mut v = served();
        Arc::make_mut(&mut v.map).ranges.pop();
        let text = info(&v);
        assert!(text.starts_with("cluster_state:fail\r\ncluster_slots_assigned:8192\r\n"));
        assert!(text.contains("cluster_size:1\r\n"));
    }

    #[test]
    fn slots_wire_format_matches_redis() {
        // Byte for byte what redis-server 7.0.15 sent for the same layout, ids aside.
        let node = |n: u64, meta: &str| {
            format!(
                "*4\r\n$9\r\n127.0.0.1\r\n:{}\r\n$40\r\n{}\r\n{meta}",
                30000 + n,
                id(n)
            )
        };
        let want = |meta: &str| {
            format!(
                "*2\r\n*4\r\n:0\r\n:8191\r\n{}{}*3\r\n:8192\r\n:16383\r\n{}",
                node(1, meta),
                node(3, meta),
                node(2, meta)
            )
        };
        assert_eq!(wire(&slots(&served()), Protocol::Resp2), want("*0\r\n"));
        assert_eq!(wire(&slots(&served()), Protocol::Resp3), want("%0\r\n"));
    }

    #[test]
    fn slots_with_a_leader_change_or_unknown_leader() {
        let r = wire(
            &slots(&view(1, &[(1, Some(3)), (2, None)])),
            Protocol::Resp2,
        );
        // Shard 1 led by node 3: node 3 first. Shard 2 without a leader: first replica.
        let p3 = r.find(&id(3)).unwrap();
        let p1 = r.find(&id(1)).unwrap();
        assert!(p3 < p1, "{r}");
        assert!(r.contains(&id(2)));
        // Adjacent ranges of one shard are one entry.
        let mut v = served();
        let m = Arc::make_mut(&mut v.map);
        m.ranges = vec![
            SlotRange {
                start: 0,
                end: 99,
                shard: 1,
            },
            SlotRange {
                start: 100,
                end: 8191,
                shard: 1,
            },
            SlotRange {
                start: 8192,
                end: 16383,
                shard: 2,
            },
        ];
        let Reply::Array(entries) = slots(&v) else {
            panic!()
        };
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn shards_wire_format_matches_redis() {
        let node = |n: u64, role: &str, resp3: bool| {
            format!(
                "{}$2\r\nid\r\n$40\r\n{}\r\n$4\r\nport\r\n:{}\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n\
                 $8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n${}\r\n{role}\r\n\
                 $18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n",
                if resp3 { "%7\r\n" } else { "*14\r\n" },
                id(n),
                30000 + n,
                role.len()
            )
        };
        for resp3 in [false, true] {
            let shard = if resp3 { "%2\r\n" } else { "*4\r\n" };
            let want = format!(
                "*2\r\n{shard}$5\r\nslots\r\n*2\r\n:0\r\n:8191\r\n$5\r\nnodes\r\n*2\r\n{}{}\
                 {shard}$5\r\nslots\r\n*2\r\n:8192\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n{}",
                node(1, "master", resp3),
                node(3, "replica", resp3),
                node(2, "master", resp3)
            );
            let p = if resp3 {
                Protocol::Resp3
            } else {
                Protocol::Resp2
            };
            assert_eq!(wire(&shards(&served()), p), want);
        }
    }

    #[test]
    fn nodes_lines_match_redis_format() {
        assert_eq!(
            nodes(&served()),
            format!(
                "{} 127.0.0.1:30001@40001 myself,master - 0 0 2 connected 0-8191\n\
                 {} 127.0.0.1:30002@40002 master - 0 0 2 connected 8192-16383\n\
                 {} 127.0.0.1:30003@40003 slave {} 0 0 2 connected\n",
                id(1),
                id(2),
                id(3),
                id(1)
            )
        );
        // Node 3 leads both shards: a master of both ranges, merged; 1 and 2 replicate.
        let mut v = served();
        Arc::make_mut(&mut v.map).shards.insert(2, vec![2, 3]);
        v.leaders = [(1, Some(3)), (2, Some(3))].into_iter().collect();
        v.my_id = 2;
        let text2 = nodes(&v);
        assert!(text2.contains(&format!(
            "{} 127.0.0.1:30003@40003 master - 0 0 2 connected 0-16383\n",
            id(3)
        )));
        assert!(text2.contains(&format!(
            "{} 127.0.0.1:30002@40002 myself,slave {} 0 0 2 connected\n",
            id(2),
            id(3)
        )));
        // A single-slot range prints as one number; a node with no replica is a
        // master without slots.
        let mut v = served();
        let m = Arc::make_mut(&mut v.map);
        m.ranges[0].end = 0;
        m.ranges[1].start = 1;
        m.nodes.insert(
            9,
            NodeAddr {
                peer: "10.0.0.9:17009".into(),
                client: "10.0.0.9:7009".into(),
            },
        );
        let text = nodes(&v);
        assert!(
            text.contains("myself,master - 0 0 2 connected 0\n"),
            "{text}"
        );
        assert!(text.ends_with(&format!(
            "{} 10.0.0.9:7009@17009 master - 0 0 2 connected\n",
            id(9)
        )));
    }

    #[test]
    fn my_shard_prefers_a_shard_this_node_leads() {
        assert_eq!(my_shard(&served()), Some(1));
        assert_eq!(my_shard(&view(3, &[(1, Some(1))])), Some(1));
        assert_eq!(my_shard(&view(9, &[])), None);
    }

    #[test]
    fn slot_commands_count_and_list_with_redis_errors() {
        let mut ks = Keyspace::new();
        for i in 0..5 {
            ks.set(format!("{{t}}{i}").as_bytes(), Value::Str(vec![]), 0);
        }
        let slot = key_slot(b"t").to_string();
        let s = slot.as_bytes();
        assert_eq!(count_keys_in_slot(&ks, s), Reply::Int(5));
        assert_eq!(count_keys_in_slot(&ks, b"0"), Reply::Int(0));
        let Reply::Array(keys) = get_keys_in_slot(&ks, s, b"3") else {
            panic!()
        };
        assert_eq!(keys.len(), 3);
        assert_eq!(get_keys_in_slot(&ks, s, b"0"), Reply::Array(vec![]));
        let err = |t: &str| Reply::error(t.to_string());
        for bad in [&b"-1"[..], b"16384"] {
            assert_eq!(count_keys_in_slot(&ks, bad), err("ERR Invalid slot"));
            assert_eq!(
                get_keys_in_slot(&ks, bad, b"1"),
                err("ERR Invalid slot or number of keys")
            );
        }
        assert_eq!(
            get_keys_in_slot(&ks, s, b"-1"),
            err("ERR Invalid slot or number of keys")
        );
        let not_int = err("ERR value is not an integer or out of range");
        assert_eq!(count_keys_in_slot(&ks, b"abc"), not_int);
        assert_eq!(get_keys_in_slot(&ks, b"x", b"1"), not_int);
        assert_eq!(get_keys_in_slot(&ks, b"1", b"x"), not_int);
        assert_eq!(get_keys_in_slot(&ks, b"-1", b"x"), not_int);
    }
}
