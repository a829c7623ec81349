//! `SHARDIS <subcommand>`: cluster administration over RESP, answered by any node
//! (what `shardis admin` sends). Changes go through the meta group; the node leading a
//! migration's source shard drives it (`reshard`).
//!
//! - `STATUS`: JSON: the map (nodes, shards with replicas, leaders and slot ranges,
//!   migrations) as this node sees it, with its hosted replicas' keys and Raft state.
//! - `PROGRESS`: JSON: the migrations this node drives (or drove lately).
//! - `RESHARD start end shard`: moves slots `start..=end` to `shard`; the migration id.
//! - `MOVE count from to`: moves the last `count` slots of shard `from` to `to`.
//! - `SPLIT shard`: a new shard taking the upper half of `shard`'s largest range.
//! - `WHOAMI`: this node's id, client and peer addresses (`add-node` asks a new node).
//! - `JOIN id client peer`: adds a node to the map (membership does the rest).
//! - `REMOVENODE id`: drains a node (replicas and leaderships go elsewhere), after
//!   which it leaves the map and stops.
//! - `REBALANCE`: every shard's replicas to their placement on the active nodes.
//! - `FAILOVER shard [node]`: hands the shard's leadership (run on its leader).

use super::Node;
use crate::reshard;
use crate::resp::Reply;
use crate::router;
use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use proto::map::ClusterMap;
use serde_json::json;
use std::sync::Arc;

fn num<T: std::str::FromStr>(args: &[Bytes], i: usize, what: &str) -> Result<T, String> {
    let a = args.get(i).ok_or_else(|| format!("ERR missing {what}"))?;
    std::str::from_utf8(a)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("ERR invalid {what} '{}'", String::from_utf8_lossy(a)))
}

fn arity(args: &[Bytes], n: usize, sub: &str) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "ERR wrong number of arguments for 'shardis|{sub}' command"
        ));
    }
    Ok(())
}

pub async fn run(node: Arc<Node>, args: Vec<Bytes>) -> Reply {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let r = match sub.as_str() {
        "status" => arity(&args, 2, &sub).map(|_| Reply::bulk_string(status(&node).to_string())),
        "progress" => arity(&args, 2, &sub).map(|_| {
            let p = node
                .resharder
                .get()
                .map(|r| r.progress())
                .unwrap_or_default();
            Reply::bulk_string(serde_json::to_string(&p).unwrap_or_default())
        }),
        "reshard" => reshard(&node, &args).await,
        "move" => move_count(&node, &args).await,
        "split" => split(&node, &args).await,
        "whoami" => arity(&args, 2, &sub).map(|_| {
            let me = node.meta.current().nodes.get(&node.id).cloned();
            Reply::bulk_string(
                json!({
                    "id": node.id,
                    "client": me.as_ref().map(|a| a.client.clone()).unwrap_or_else(|| node.me.client.clone()),
                    "peer": me.map(|a| a.peer).unwrap_or_else(|| node.me.peer.clone()),
                    "member": node.meta.current().nodes.contains_key(&node.id),
                })
                .to_string(),
            )
        }),
        "join" => join(&node, &args).await,
        "removenode" => remove_node(&node, &args).await,
        "rebalance" => rebalance(&node, &args).await,
        "failover" => failover(&node, &args).await,
        _ => Err(format!(
            "ERR unknown subcommand '{}'. Try STATUS, PROGRESS, RESHARD, MOVE, SPLIT, WHOAMI, JOIN, REMOVENODE, REBALANCE, FAILOVER.",
            String::from_utf8_lossy(&args[1])
        )),
    };
    r.unwrap_or_else(|e| Reply::Error(e.into()))
}

fn status(node: &Arc<Node>) -> serde_json::Value {
    let view = node.view();
    let map = &view.map;
    let table = node.server.table();
    let shards: Vec<serde_json::Value> = map
        .shards
        .iter()
        .map(|(id, replicas)| {
            let ranges: Vec<String> = map
                .ranges_of(*id)
                .map(|r| format!("{}-{}", r.start, r.end))
                .collect();
            let slots: u32 = map
                .ranges_of(*id)
                .map(|r| r.end as u32 - r.start as u32 + 1)
                .sum();
            let mut s = json!({
                "id": id,
                "replicas": replicas,
                "leader": view.leaders.get(id).copied().flatten(),
                "ranges": ranges,
                "slots": slots,
            });
            if let Some(h) = table.hosted.get(id) {
                let st = h.shard.lock();
                s["keys_here"] = json!(st.ks.len());
                s["applied_here"] = json!(st.raft_applied.as_ref().map(|l| l.index));
                drop(st);
                if let Some(r) = &h.replica {
                    let m = r.raft.metrics().borrow_watched().clone();
                    if let Some(rep) = &m.replication {
                        let last = m.last_log_index.unwrap_or(0);
                        let lag: serde_json::Map<String, serde_json::Value> = rep
                            .iter()
                            .map(|(n, l)| {
                                let at = l.as_ref().map(|l| l.index).unwrap_or(0);
                                (n.to_string(), json!(last.saturating_sub(at)))
                            })
                            .collect();
                        s["replication_lag"] = serde_json::Value::Object(lag);
                    }
                }
            }
            s
        })
        .collect();
    let nodes: Vec<serde_json::Value> = map
        .nodes
        .iter()
        .map(|(id, a)| json!({"id": id, "client": a.client, "peer": a.peer}))
        .collect();
    let migrations: Vec<serde_json::Value> = map
        .migrations
        .iter()
        .map(|m| {
            json!({
                "id": m.id, "start": m.start, "end": m.end, "from": m.from, "to": m.to,
                "attempt": m.attempt, "phase": m.phase.name(),
            })
        })
        .collect();
    json!({
        "node": node.id,
        "epoch": map.epoch,
        "nodes": nodes,
        "shards": shards,
        "migrations": migrations,
        "leaving": map.leaving,
        "placement_targets": map
            .targets
            .iter()
            .map(|(s, t)| (s.to_string(), json!(t)))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
        "all_slots_served": view.all_slots_served(),
        // Replicas sit on their placement (nothing to move, nothing moving).
        "balanced": map.targets.is_empty()
            && super::membership::plan_targets(map, node.config.replicas.max(1) as usize).is_empty(),
        "auto_rebalance": node.server.config().auto_rebalance,
    })
}

async fn change(
    node: &Arc<Node>,
    f: impl Fn(&ClusterMap) -> Result<Option<ClusterMap>, String>,
) -> Result<Arc<ClusterMap>, String> {
    node.meta.update(f).await.map_err(|e| {
        if e.starts_with("ERR ") {
            e
        } else {
            format!("ERR {e}")
        }
    })
}

/// The id of the migration a changed map added.
fn added(map: &ClusterMap, before: u64) -> Reply {
    match map.migrations.iter().find(|m| m.id > before) {
        Some(m) => Reply::Int(m.id as i64),
        None => Reply::error("ERR the migration was not recorded"),
    }
}

async fn reshard(node: &Arc<Node>, args: &[Bytes]) -> Result<Reply, String> {
    arity(args, 5, "reshard")?;
    let start: u16 = num(args, 2, "start slot")?;
    let end: u16 = num(args, 3, "end slot")?;
    let to: u64 = num(args, 4, "shard")?;
    let before = node.meta.current().epoch;
    let map = change(node, |m| reshard::plan_move(m, start, end, to).map(Some)).await?;
    Ok(added(&map, before))
}

async fn move_count(node: &Arc<Node>, args: &[Bytes]) -> Result<Reply, String> {
    arity(args, 5, "move")?;
    let count: u32 = num(args, 2, "count")?;
    let from: u64 = num(args, 3, "shard")?;
    let to: u64 = num(args, 4, "shard")?;
    let before = node.meta.current().epoch;
    let map = change(node, |m| {
        let (start, end) = reshard::last_slots(m, from, count)?;
        reshard::plan_move(m, start, end, to).map(Some)
    })
    .await?;
    Ok(added(&map, before))
}

async fn split(node: &Arc<Node>, args: &[Bytes]) -> Result<Reply, String> {
    arity(args, 3, "split")?;
    let shard: u64 = num(args, 2, "shard")?;
    let before = node.meta.current().epoch;
    let map = change(node, |m| {
        let r = m
            .shards
            .get(&shard)
            .map(|r| r.len())
            .ok_or_else(|| format!("ERR unknown shard {shard}"))?;
        let new_id = m.shards.keys().max().copied().unwrap_or(0) + 1;
        let replicas = router::place(new_id, m.nodes.keys().copied(), r.max(1));
        reshard::plan_split(m, shard, replicas).map(|(next, _)| Some(next))
    })
    .await?;
    Ok(added(&map, before))
}

async fn join(node: &Arc<Node>, args: &[Bytes]) -> Result<Reply, String> {
    arity(args, 5, "join")?;
    let id: u64 = num(args, 2, "node id")?;
    let text = |i: usize| String::from_utf8_lossy(&args[i]).into_owned();
    let addr = proto::NodeAddr {
        client: text(3),
        peer: text(4),
    };
    if id == 0 {
        return Err("ERR node id 0 is reserved".into());
    }
    change(node, |m| {
        match m.nodes.get(&id) {
            Some(a) if *a == addr => return Ok(None),
            Some(a) => {
                return Err(format!(
                    "ERR node id {id} is taken by {} (peer {})",
                    a.client, a.peer
                ))
            }
            None => {}
        }
        if let Some((other, _)) = m
            .nodes
            .iter()
            .find(|(_, a)| a.client == addr.client || a.peer == addr.peer)
        {
            return Err(format!(
                "ERR node {other} already has one of those addresses"
            ));
        }
        let mut next = m.clone();
        next.nodes.insert(id, addr.clone());
        Ok(Some(next))
    })
    .await?;
    Ok(Reply::ok())
}

async fn remove_node(node: &Arc<Node>, args: &[Bytes]) -> Result<Reply, String> {
    arity(args, 3, "removenode")?;
    let id: u64 = num(args, 2, "node id")?;
    change(node, |m| {
        if !m.nodes.contains_key(&id) {
            return Err(format!("ERR unknown node {id}"));
        }
        if m.leaving.contains(&id) {
            return Ok(None);
        }
        let mut next = m.clone();
        next.leaving.insert(id);
        let left = super::membership::active(&next).len();
        let r = m.shards.values().map(|r| r.len()).max().unwrap_or(1);
        if left < r.min(3) {
            return Err(format!(
                "ERR removing node {id} would leave {left} nodes for shards of {r} replicas"
            ));
        }
        Ok(Some(next))
    })
    .await?;
    Ok(Reply::ok())
}

async fn rebalance(node: &Arc<Node>, args: &[Bytes]) -> Result<Reply, String> {
    arity(args, 2, "rebalance")?;
    let r = node.config.replicas.max(1) as usize;
    let map = change(node, |m| {
        let plan = super::membership::plan_targets(m, r);
        let mut next = m.clone();
        let mut changed = false;
        for (s, t) in plan {
            if !m.targets.contains_key(&s) {
                next.targets.insert(s, t);
                changed = true;
            }
        }
        Ok(changed.then_some(next))
    })
    .await?;
    Ok(Reply::Int(map.targets.len() as i64))
}

async fn failover(node: &Arc<Node>, args: &[Bytes]) -> Result<Reply, String> {
    if args.len() != 3 && args.len() != 4 {
        return Err("ERR wrong number of arguments for 'shardis|failover' command".into());
    }
    let shard: u64 = num(args, 2, "shard")?;
    let to: Option<u64> = if args.len() == 4 {
        Some(num(args, 3, "node id")?)
    } else {
        None
    };
    let replica = node
        .groups
        .lock()
        .unwrap()
        .get(&shard)
        .cloned()
        .filter(|_| shard != 0)
        .ok_or_else(|| format!("ERR shard {shard} has no replica on this node"))?;
    if !replica.is_leader() {
        let l = replica
            .leader()
            .map(|(id, a)| format!("node {id} at {}", a.client));
        return Err(format!(
            "ERR this node does not lead shard {shard}; its leader is {}",
            l.unwrap_or_else(|| "unknown".into())
        ));
    }
    let moved = match to {
        Some(n) if n == node.id => return Ok(Reply::ok()),
        Some(n) => {
            replica
                .transfer_to(n, std::time::Duration::from_secs(3))
                .await
        }
        None => {
            replica
                .transfer_leadership(std::time::Duration::from_secs(3))
                .await
        }
    };
    if moved {
        Ok(Reply::ok())
    } else {
        Err(format!(
            "ERR leadership of shard {shard} did not move within 3 s"
        ))
    }
}
