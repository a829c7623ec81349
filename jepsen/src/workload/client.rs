//! Client processes: each invokes one operation at a time against some node, with a
//! deadline, and records the invocation and its completion. As in Jepsen, an
//! operation whose outcome is unknown (a timeout, a lost connection, an `UNKNOWN`
//! error) ends `info` and retires its process; the next process takes its place with
//! a new number (old + concurrency).

use super::{Done, Invocation, Workload};
use crate::history::{Kind, Op};
use crate::rng::Rng;
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The nodes, and which of them host each slot's shard.
pub struct Topology {
    pub nodes: Vec<(u64, SocketAddr)>,
    /// Per slot, the client nodes hosting its shard (refreshed when replicas move).
    slot_hosts: std::sync::RwLock<Arc<Vec<Vec<u64>>>>,
}

impl Topology {
    /// Reads CLUSTER SLOTS from the first node that answers.
    pub async fn discover(nodes: Vec<(u64, SocketAddr)>) -> Result<Topology, String> {
        let slot_hosts = learn(&nodes).await?;
        Ok(Topology {
            nodes,
            slot_hosts: std::sync::RwLock::new(Arc::new(slot_hosts)),
        })
    }

    /// Learns the slot map again (replicas moved: a node no longer hosts a shard the
    /// workload pinned to it). Keeps the old map if no node gives a whole one.
    pub async fn refresh(&self) {
        if let Ok(m) = learn(&self.nodes).await {
            *self.slot_hosts.write().unwrap() = Arc::new(m);
        }
    }

    pub fn hosts(&self, key: &str) -> Vec<u64> {
        let m = self.slot_hosts.read().unwrap().clone();
        m[proto::slot::key_slot(key.as_bytes()) as usize].clone()
    }

    pub fn addr(&self, node: u64) -> SocketAddr {
        self.nodes
            .iter()
            .find(|(id, _)| *id == node)
            .expect("node")
            .1
    }
}

/// Per slot, which of `nodes` host its shard (CLUSTER SLOTS from the first node
/// that answers with every slot served).
async fn learn(nodes: &[(u64, SocketAddr)]) -> Result<Vec<Vec<u64>>, String> {
    let by_port: HashMap<u16, u64> = nodes.iter().map(|(id, a)| (a.port(), *id)).collect();
    let mut last = String::from("no node");
    for (_, addr) in nodes.iter() {
        let mut conn = match connect(*addr, Duration::from_secs(2)).await {
            Ok(c) => c,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let reply: redis::RedisResult<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await;
        let ranges = match reply {
            Ok(redis::Value::Array(r)) => r,
            Ok(other) => {
                last = format!("CLUSTER SLOTS: {other:?}");
                continue;
            }
            Err(e) => {
                last = format!("CLUSTER SLOTS: {e}");
                continue;
            }
        };
        let mut slot_hosts = vec![Vec::new(); proto::SLOTS as usize];
        for range in ranges {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let (Some(lo), Some(hi)) = (super::int(&parts[0]), super::int(&parts[1])) else {
                continue;
            };
            let hosts: Vec<u64> = parts[2..]
                .iter()
                .filter_map(|n| match n {
                    redis::Value::Array(f) => super::int(f.get(1)?),
                    _ => None,
                })
                .filter_map(|port| by_port.get(&(port as u16)).copied())
                .collect();
            for slot in lo..=hi {
                slot_hosts[slot as usize] = hosts.clone();
            }
        }
        if slot_hosts.iter().any(Vec::is_empty) {
            last = "CLUSTER SLOTS leaves slots unserved".into();
            continue;
        }
        return Ok(slot_hosts);
    }
    Err(format!("cannot learn the slot map: {last}"))
}

pub async fn connect(addr: SocketAddr, within: Duration) -> Result<MultiplexedConnection, String> {
    let client = redis::Client::open(format!("redis://{addr}/")).map_err(|e| e.to_string())?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(within)
        .set_response_timeout(within);
    match tokio::time::timeout(
        within,
        client.get_multiplexed_async_connection_with_config(&cfg),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("connect to {addr}: {e}")),
        Err(_) => Err(format!("connect to {addr}: timed out")),
    }
}

/// One workload's history, in order.
pub struct Recorder {
    origin: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Recorder {
    pub fn new(origin: Instant) -> Recorder {
        Recorder {
            origin,
            ops: Mutex::new(Vec::new()),
        }
    }

    pub fn record(
        &self,
        kind: Kind,
        process: u64,
        f: &str,
        value: Value,
        node: Option<u64>,
        error: Option<String>,
    ) {
        let mut ops = self.ops.lock().unwrap();
        let index = ops.len();
        let time = self.origin.elapsed().as_nanos() as u64;
        ops.push(Op {
            index,
            kind,
            process,
            f: f.into(),
            value,
            time,
            node,
            error,
        });
    }

    pub fn take(&self) -> Vec<Op> {
        std::mem::take(&mut self.ops.lock().unwrap())
    }
}

#[derive(Clone)]
pub struct ClientOpts {
    pub concurrency: u64,
    /// Operations per second, over all of the workload's processes.
    pub rate: f64,
    pub op_timeout: Duration,
    /// The first process number (workloads get disjoint ranges).
    pub first_process: u64,
}

/// How a finished operation is recorded, and whether its process goes on.
fn classify(
    inv: &Invocation,
    r: Result<redis::RedisResult<Done>, ()>,
) -> (Kind, Value, Option<String>, bool) {
    match r {
        Ok(Ok(Done::Ok(v))) => (Kind::Ok, v, None, true),
        Ok(Ok(Done::Fail(why))) => (Kind::Fail, inv.value.clone(), Some(why), true),
        Ok(Err(e)) => {
            let text = e.to_string();
            match e.code() {
                // The server says the write may or may not have been applied.
                Some("UNKNOWN") if !inv.read_only => {
                    (Kind::Info, inv.value.clone(), Some(text), false)
                }
                // Any other server error is definite: nothing was applied.
                Some(_) => (Kind::Fail, inv.value.clone(), Some(text), true),
                // The connection failed: a read simply failed, a write is unknown.
                None if inv.read_only => (Kind::Fail, inv.value.clone(), Some(text), false),
                None => (Kind::Info, inv.value.clone(), Some(text), false),
            }
        }
        Err(()) if inv.read_only => (
            Kind::Fail,
            inv.value.clone(),
            Some("timed out".into()),
            false,
        ),
        Err(()) => (
            Kind::Info,
            inv.value.clone(),
            Some("timed out".into()),
            false,
        ),
    }
}

/// Runs `concurrency` processes until `until` or `stop`.
pub async fn run(
    workload: Arc<dyn Workload>,
    topo: Arc<Topology>,
    rec: Arc<Recorder>,
    opts: ClientOpts,
    until: Instant,
    stop: Arc<AtomicBool>,
    mut rng: Rng,
) {
    let mut tasks = Vec::new();
    for slot in 0..opts.concurrency {
        let (w, topo, rec, opts, stop) = (
            workload.clone(),
            topo.clone(),
            rec.clone(),
            opts.clone(),
            stop.clone(),
        );
        let mut rng = rng.fork(slot);
        tasks.push(tokio::spawn(async move {
            let mut process = opts.first_process + slot;
            let mut conns: HashMap<u64, MultiplexedConnection> = HashMap::new();
            // Mean pause between one process's operations, for the total rate.
            let pause_ms = (opts.concurrency as f64 * 1000.0 / opts.rate.max(0.001)) as u64;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(rng.range(0, 2 * pause_ms))).await;
                if Instant::now() >= until {
                    break;
                }
                let inv = w.next(&mut rng);
                let node = if w.needs_host() {
                    *rng.pick(&topo.hosts(&inv.key))
                } else {
                    rng.pick(&topo.nodes).0
                };
                rec.record(
                    Kind::Invoke,
                    process,
                    inv.f,
                    inv.value.clone(),
                    Some(node),
                    None,
                );
                let result = tokio::time::timeout(opts.op_timeout, async {
                    let conn = match conns.entry(node) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        // Not connected: nothing was sent, so the operation failed.
                        std::collections::hash_map::Entry::Vacant(e) => {
                            match connect(topo.addr(node), opts.op_timeout / 2).await {
                                Ok(c) => e.insert(c),
                                Err(why) => return Ok(Done::Fail(why)),
                            }
                        }
                    };
                    w.run(conn, &inv).await
                })
                .await
                .map_err(|_| ());
                let (kind, value, error, keep) = classify(&inv, result);
                // The key's shard left the node the workload pinned it to.
                if error
                    .as_deref()
                    .is_some_and(|e| e.contains("has no replica on this node"))
                {
                    topo.refresh().await;
                }
                rec.record(kind, process, inv.f, value, Some(node), error);
                if !keep {
                    // The connection's state is unknown: drop it.
                    conns.remove(&node);
                }
                if kind == Kind::Info {
                    process += opts.concurrency;
                    conns.clear();
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// After the heal: reads every final key, trying each node in turn until one answers
/// or `within` runs out. Recorded as `read` operations of their own processes.
pub async fn final_reads(
    workload: &dyn Workload,
    topo: &Topology,
    rec: &Recorder,
    first_process: u64,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    for (i, key) in workload.final_keys().iter().enumerate() {
        let process = first_process + i as u64;
        let mut attempt = 0usize;
        loop {
            let (node, addr) = topo.nodes[attempt % topo.nodes.len()];
            attempt += 1;
            rec.record(
                Kind::Invoke,
                process,
                "read",
                serde_json::json!([key, null]),
                Some(node),
                None,
            );
            let r = async {
                let mut c = connect(addr, Duration::from_secs(5)).await?;
                tokio::time::timeout(Duration::from_secs(5), workload.final_read(&mut c, key))
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .map_err(|e| e.to_string())
            }
            .await;
            match r {
                Ok(v) => {
                    rec.record(Kind::Ok, process, "read", v, Some(node), None);
                    break;
                }
                Err(e) => {
                    rec.record(
                        Kind::Fail,
                        process,
                        "read",
                        serde_json::json!([key, null]),
                        Some(node),
                        Some(e.clone()),
                    );
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "final read of {key} failed until the deadline: {e}"
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    Ok(())
}
