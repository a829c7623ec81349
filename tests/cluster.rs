//! Three real shardis node processes on loopback forming one replicated shard:
//! replication, forwarding, kill -9 of the leader, expiry across failover, restart of
//! every node, snapshot catch-up, SIGTERM leadership transfer and a kill -9 crash loop
//! under a concurrent writer.
//!
//! Each test owns its processes (killed on drop) and data directories (removed on
//! success). Every wait has a deadline and says what it waited for.

mod common;

use common::{free_port, Frame, RawConn};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shardis");

struct Node {
    id: u64,
    port: u16,
    peer_port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    output: Arc<Mutex<Vec<u8>>>,
    /// Answered PING once: its ports are now part of the cluster's membership.
    started: bool,
}

impl Node {
    fn new(id: u64, base: &std::path::Path, extra: &[&str]) -> Node {
        Node {
            id,
            port: free_port(),
            peer_port: free_port(),
            dir: base.join(format!("n{id}")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            child: None,
            output: Arc::new(Mutex::new(Vec::new())),
            started: false,
        }
    }

    /// Starts the node and waits until it answers PING. A port taken by another
    /// process meanwhile (free_port's race) on a first start is `Err`: the caller
    /// picks new ports for the whole cluster.
    fn start(&mut self, how: &[String]) {
        if let Err(out) = self.try_start(how) {
            panic!("node {}: port in use on a restart:\n{out}", self.id);
        }
    }

    fn try_start(&mut self, how: &[String]) -> Result<(), String> {
        assert!(self.child.is_none(), "node {} already running", self.id);
        let mut c = Command::new(BIN);
        c.args(["server", "--node-id", &self.id.to_string()])
            .args(["--port", &self.port.to_string()])
            .args(["--peer-port", &self.peer_port.to_string()])
            .args(["--dir", self.dir.to_str().unwrap()])
            .args(&self.extra)
            .args(how)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn shardis");
        pipe(child.stdout.take().unwrap(), self.output.clone());
        pipe(child.stderr.take().unwrap(), self.output.clone());
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let exited = self.child.as_mut().unwrap().try_wait().ok().flatten();
            if let Some(status) = exited {
                self.child = None;
                let out = self.output();
                if !self.started && out.to_ascii_lowercase().contains("in use") {
                    return Err(out);
                }
                panic!("node {} exited ({status}) during startup:\n{out}", self.id);
            }
            if self.try_conn().is_some() {
                self.started = true;
                return Ok(());
            }
            assert!(
                Instant::now() < end,
                "timed out after 10s waiting for node {} to answer PING:\n{}",
                self.id,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `id=host:port@peerport`, as --initial-cluster lists members.
    fn member(&self) -> String {
        format!("{}=127.0.0.1:{}@{}", self.id, self.port, self.peer_port)
    }

    fn try_conn(&self) -> Option<RawConn> {
        let s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        drop(s);
        let mut c = RawConn::connect(self.port);
        (c.cmd(&["PING"]) == Frame::Simple(b"PONG".to_vec())).then_some(c)
    }

    fn conn(&self) -> RawConn {
        RawConn::connect(self.port)
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    fn term(&mut self) {
        if let Some(mut c) = self.child.take() {
            let st = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .expect("kill");
            assert!(st.success());
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(st)) = c.try_wait() {
                    assert!(st.success(), "node {} exited with {st}", self.id);
                    return;
                }
                assert!(
                    Instant::now() < end,
                    "node {} did not exit within 10 s of SIGTERM",
                    self.id
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// INFO raft's line for shard 1 as `raft_<field>` entries (`raft_role`, ...).
    fn info_raft(&self) -> Option<std::collections::HashMap<String, String>> {
        self.shard_info(1)
    }

    /// INFO raft's line for one shard as `raft_<field>` entries.
    fn shard_info(&self, shard: u64) -> Option<std::collections::HashMap<String, String>> {
        let mut c = self.try_conn()?;
        let Frame::Bulk(text) = c.cmd(&["INFO", "raft"]) else {
            return None;
        };
        let text = String::from_utf8_lossy(&text).into_owned();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("shard{shard}:")))?
            .trim()
            .to_string();
        Some(
            line.split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (format!("raft_{k}"), v.to_string()))
                .collect(),
        )
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn pipe(mut from: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
}

/// Cluster tests run two at a time on a 2-core machine; the heavy ones (100k keys
/// moving under load with leaders killed) run alone, since a starved node looks dead
/// to its peers and the test would measure the machine, not the cluster.
static GATE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    GATE.write().unwrap_or_else(|e| e.into_inner())
}

fn wait_for(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}

struct Cluster {
    base: PathBuf,
    nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `n` nodes forming one cluster (`--initial-cluster`, `--shards 1` unless
    /// `extra` says otherwise); returns once every node agrees on shard 1's leader
    /// and voters.
    fn start(name: &str, n: u64, extra: &[&str]) -> Cluster {
        Cluster::start_env(name, n, extra, &[])
    }

    /// As `start`, with environment variables for every node.
    fn start_env(name: &str, n: u64, extra: &[&str], env: &[(&str, &str)]) -> Cluster {
        let base =
            std::env::temp_dir().join(format!("shardis-cluster-{name}-{}", std::process::id()));
        let mut extra: Vec<&str> = extra.to_vec();
        if !extra.contains(&"--shards") {
            extra.extend(["--shards", "1"]);
        }
        'attempt: for _ in 0..5 {
            let _ = std::fs::remove_dir_all(&base);
            let mut nodes: Vec<Node> = (1..=n).map(|i| Node::new(i, &base, &extra)).collect();
            for node in nodes.iter_mut() {
                node.env = env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
            }
            let members: Vec<String> = nodes.iter().map(|n| n.member()).collect();
            let how = vec!["--initial-cluster".to_string(), members.join(",")];
            for node in nodes.iter_mut() {
                if node.try_start(&how).is_err() {
                    continue 'attempt; // new ports for everyone
                }
            }
            let c = Cluster { base, nodes };
            let want: Vec<String> = (1..=n.min(3)).map(|i| i.to_string()).collect();
            if n <= 3 {
                c.wait_stable(&want.join("|"));
            }
            return c;
        }
        panic!("no free ports for a {n}-node cluster after 5 attempts");
    }

    /// Waits until every running node sees the same leader and the voter list.
    fn wait_stable(&self, voters: &str) -> usize {
        let mut leader = 0;
        wait_for(
            &format!("every running node to agree on a leader with voters {voters}"),
            Duration::from_secs(20),
            || {
                let infos: Vec<_> = self
                    .nodes
                    .iter()
                    .filter(|n| n.child.is_some())
                    .map(|n| n.info_raft())
                    .collect();
                let Some(Some(first)) = infos.first() else {
                    return false;
                };
                let l = first.get("raft_leader_id").cloned().unwrap_or_default();
                let ok = infos.iter().all(|i| {
                    i.as_ref().is_some_and(|i| {
                        i.get("raft_leader_id") == Some(&l)
                            && l != "-1"
                            && i.get("raft_voters").map(|v| v.as_str()) == Some(voters)
                    })
                });
                if ok {
                    leader = l.parse::<usize>().unwrap();
                }
                ok
            },
        );
        self.nodes
            .iter()
            .position(|n| n.id as usize == leader)
            .unwrap()
    }

    fn leader(&self) -> usize {
        let mut found = None;
        wait_for("a leader", Duration::from_secs(10), || {
            found = self.nodes.iter().position(|n| {
                n.child.is_some() && n.info_raft().is_some_and(|i| i["raft_role"] == "leader")
            });
            found.is_some()
        });
        found.unwrap()
    }

    fn dump_outputs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- node {} ---\n{}", n.id, n.output()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill9();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.base);
        } else {
            eprintln!("{}", self.dump_outputs());
        }
    }
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(s.as_bytes().to_vec())
}

fn ok() -> Frame {
    Frame::Simple(b"OK".to_vec())
}

/// Retries a write through `node` until it is acknowledged (leader elections answer
/// CLUSTERDOWN), up to a deadline. Panics on any other error.
fn write_until_ok(node: &Node, args: &[&str], deadline: Duration) -> Frame {
    let end = Instant::now() + deadline;
    loop {
        let mut c = node.conn();
        let r = c.cmd(args);
        match &r {
            Frame::Error(e) if e.starts_with(b"CLUSTERDOWN") && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Frame::Error(e) => panic!(
                "{args:?} on node {}: {}",
                node.id,
                String::from_utf8_lossy(e)
            ),
            _ => return r,
        }
    }
}

#[test]
fn replication_forwarding_failover_and_expiry() {
    let _gate = shared();
    let mut cl = Cluster::start("failover", 3, &[]);
    let l = cl.leader();
    let f = (l + 1) % 3;
    // Writes through the leader and (forwarded) through a follower.
    for i in 0..100 {
        let via = if i % 2 == 0 { l } else { f };
        assert_eq!(
            cl.nodes[via]
                .conn()
                .cmd(&["SET", &format!("k{i}"), &format!("v{i}")]),
            ok()
        );
    }
    let mut c = cl.nodes[f].conn();
    assert_eq!(c.cmd(&["INCRBY", "counter", "5"]), Frame::Int(5));
    assert_eq!(
        c.cmd(&["GET", "k99"]),
        bulk("v99"),
        "a follower reads its own forwarded write"
    );
    // WATCH on a follower: a write through the leader in between aborts the EXEC
    // (checked in apply, at the EXEC's place in the log); an untouched key commits.
    let mut w = cl.nodes[f].conn();
    assert_eq!(w.cmd(&["WATCH", "wk"]), ok());
    assert_eq!(cl.nodes[l].conn().cmd(&["SET", "wk", "theirs"]), ok());
    assert_eq!(w.cmd(&["MULTI"]), ok());
    assert_eq!(
        w.cmd(&["SET", "wk", "mine"]),
        Frame::Simple(b"QUEUED".to_vec())
    );
    assert_eq!(w.cmd(&["EXEC"]), Frame::NilArray);
    assert_eq!(w.cmd(&["GET", "wk"]), bulk("theirs"));
    assert_eq!(w.cmd(&["WATCH", "k1"]), ok());
    assert_eq!(w.cmd(&["MULTI"]), ok());
    assert_eq!(
        w.cmd(&["INCR", "counter"]),
        Frame::Simple(b"QUEUED".to_vec())
    );
    assert_eq!(w.cmd(&["EXEC"]), Frame::Array(vec![Frame::Int(6)]));
    assert_eq!(w.cmd(&["DEL", "wk"]), Frame::Int(1));
    // A key that expires while the leader is down: it must stay expired.
    let short_set = Instant::now();
    assert_eq!(c.cmd(&["SET", "short", "x", "PX", "1500"]), ok());
    // Every node holds every key (READONLY reads a follower's own state).
    for n in &cl.nodes {
        let mut c = n.conn();
        assert_eq!(c.cmd(&["READONLY"]), ok());
        wait_for(
            &format!("node {} to apply every write", n.id),
            Duration::from_secs(10),
            || c.cmd(&["GET", "short"]) == bulk("x"),
        );
        assert_eq!(c.cmd(&["GET", "k42"]), bulk("v42"));
        assert_eq!(c.cmd(&["GET", "counter"]), bulk("6"));
    }
    // kill -9 the leader: a new one takes writes, nothing acknowledged is lost.
    let killed_at = Instant::now();
    cl.nodes[l].kill9();
    write_until_ok(
        &cl.nodes[f],
        &["SET", "after", "failover"],
        Duration::from_secs(10),
    );
    let took = killed_at.elapsed();
    eprintln!("failover: first write acknowledged {took:?} after kill -9");
    let l2 = cl.leader();
    assert_ne!(l2, l);
    let mut c = cl.nodes[l2].conn();
    for i in 0..100 {
        assert_eq!(c.cmd(&["GET", &format!("k{i}")]), bulk(&format!("v{i}")));
    }
    assert_eq!(c.cmd(&["GET", "counter"]), bulk("6"));
    std::thread::sleep(Duration::from_millis(1600).saturating_sub(short_set.elapsed()));
    assert_eq!(
        c.cmd(&["GET", "short"]),
        Frame::NilBulk,
        "an expired key stays expired after failover"
    );
    assert_eq!(c.cmd(&["EXISTS", "short"]), Frame::Int(0));
    // The new leader's active expiry deletes it through the log: gone everywhere.
    for n in cl.nodes.iter().filter(|n| n.child.is_some()) {
        let mut c = n.conn();
        c.cmd(&["READONLY"]);
        wait_for(
            &format!("node {} to drop the expired key", n.id),
            Duration::from_secs(10),
            || c.cmd(&["DBSIZE"]) == Frame::Int(102),
        );
    }
    // The old leader comes back as a follower and catches up.
    cl.nodes[l].start(&[]);
    let mut c = cl.nodes[l].conn();
    c.cmd(&["READONLY"]);
    wait_for(
        "the restarted node to catch up",
        Duration::from_secs(10),
        || c.cmd(&["GET", "after"]) == bulk("failover"),
    );
}

#[test]
fn full_restart_and_snapshot_catch_up() {
    let _gate = shared();
    let mut cl = Cluster::start("restart", 3, &["--snapshot-entries", "200"]);
    let l = cl.leader();
    // A follower is down while the log grows past several snapshots and is purged.
    let down = (l + 1) % 3;
    cl.nodes[down].kill9();
    let mut c = cl.nodes[l].conn();
    for i in 0..1500 {
        assert_eq!(
            c.cmd(&["RPUSH", &format!("list{}", i % 10), &i.to_string()]),
            Frame::Int(i / 10 + 1)
        );
    }
    wait_for(
        "the leader to purge its log past the start",
        Duration::from_secs(10),
        || {
            cl.nodes[l]
                .info_raft()
                .is_some_and(|i| i["raft_first_log_index"].parse::<i64>().unwrap_or(0) > 100)
        },
    );
    cl.nodes[down].start(&[]);
    let mut c = cl.nodes[down].conn();
    c.cmd(&["READONLY"]);
    wait_for(
        "the lagging node to catch up by snapshot",
        Duration::from_secs(20),
        || c.cmd(&["LLEN", "list3"]) == Frame::Int(150),
    );
    assert!(
        cl.nodes[down].output().contains("snapshot installed"),
        "the lagging node caught up by snapshot"
    );
    // Stop every node, start them all again: everything is back.
    for n in &mut cl.nodes {
        n.term();
    }
    for n in &mut cl.nodes {
        n.start(&[]);
    }
    cl.wait_stable("1|2|3");
    let l = cl.leader();
    let mut c = cl.nodes[l].conn();
    for k in 0..10 {
        assert_eq!(c.cmd(&["LLEN", &format!("list{k}")]), Frame::Int(150));
    }
    assert_eq!(c.cmd(&["LINDEX", "list7", "-1"]), bulk("1497"));
}

#[test]
fn sigterm_hands_leadership_over() {
    let _gate = shared();
    let mut cl = Cluster::start("sigterm", 3, &["--election-timeout", "2000"]);
    let l = cl.leader();
    let f = (l + 1) % 3;
    assert_eq!(cl.nodes[l].conn().cmd(&["SET", "a", "1"]), ok());
    let t = Instant::now();
    cl.nodes[l].term();
    // With a 2 s election timeout, a write within 1.5 s proves a handover, not an
    // election after a timeout.
    write_until_ok(&cl.nodes[f], &["SET", "b", "2"], Duration::from_secs(10));
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "write resumed only {took:?} after SIGTERM"
    );
    assert_eq!(cl.nodes[f].conn().cmd(&["GET", "a"]), bulk("1"));
}

#[test]
fn redirect_mode_and_pubsub_across_nodes() {
    let _gate = shared();
    let cl = Cluster::start("redirect", 3, &["--follower-mode", "redirect"]);
    let l = cl.leader();
    let f = (l + 1) % 3;
    let r = cl.nodes[f].conn().cmd(&["SET", "k", "v"]);
    assert_eq!(
        r,
        Frame::Error(
            format!(
                "MOVED {} 127.0.0.1:{}",
                proto::key_slot(b"k"),
                cl.nodes[l].port
            )
            .into_bytes()
        )
    );
    assert_eq!(cl.nodes[l].conn().cmd(&["SET", "k", "v"]), ok());
    // PUBLISH on one node reaches subscribers on the others (the count is this node's).
    let mut sub = cl.nodes[f].conn();
    assert_eq!(
        sub.cmd(&["SUBSCRIBE", "news"]),
        Frame::Array(vec![bulk("subscribe"), bulk("news"), Frame::Int(1)])
    );
    assert_eq!(
        cl.nodes[l].conn().cmd(&["PUBLISH", "news", "hello"]),
        Frame::Int(0)
    );
    assert_eq!(
        sub.read(),
        Frame::Array(vec![bulk("message"), bulk("news"), bulk("hello")])
    );
}

/// kill -9 a node (the leader every other round) under a concurrent writer, restart
/// it, repeat; every acknowledged write must survive.
#[test]
fn crash_loop_keeps_every_acknowledged_write() {
    let _gate = shared();
    let iterations: usize = std::env::var("SHARDIS_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut cl = Cluster::start("crashloop", 3, &[]);
    let ports: Vec<u16> = cl.nodes.iter().map(|n| n.port).collect();
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            let mut unknown = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 1_000_000 {
                let port = ports[(i % 3) as usize];
                // The node may be dead, or die between a probe and the connect.
                let Some(mut c) = RawConn::try_connect(port) else {
                    i += 1;
                    continue;
                };
                for _ in 0..50 {
                    match c.try_cmd(&["SADD", "acked", &i.to_string()]) {
                        Some(Frame::Int(_)) => acked.lock().unwrap().push(i),
                        Some(Frame::Error(e)) if e.starts_with(b"UNKNOWN") => unknown += 1,
                        Some(Frame::Error(e)) if e.starts_with(b"CLUSTERDOWN") => {}
                        Some(other) => panic!("unexpected answer {other:?}"),
                        None => break, // the node died under us
                    }
                    i += 1;
                }
            }
            unknown
        })
    };
    for round in 0..iterations {
        let victim = if round % 2 == 0 {
            cl.leader()
        } else {
            (cl.leader() + 1 + round % 2) % 3
        };
        std::thread::sleep(Duration::from_millis(150));
        cl.nodes[victim].kill9();
        std::thread::sleep(Duration::from_millis(100));
        cl.nodes[victim].start(&[]);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let unknown = writer.join().expect("writer thread");
    cl.wait_stable("1|2|3");
    let l = cl.leader();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > iterations * 5,
        "the writer made progress: {} acknowledged",
        acked.len()
    );
    let mut c = cl.nodes[l].conn();
    let Frame::Array(members) = c.cmd(&["SMEMBERS", "acked"]) else {
        panic!("SMEMBERS failed");
    };
    let have: std::collections::HashSet<Vec<u8>> = members
        .into_iter()
        .map(|m| match m {
            Frame::Bulk(b) => b,
            other => panic!("{other:?}"),
        })
        .collect();
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|i| !have.contains(i.to_string().as_bytes()))
        .collect();
    eprintln!(
        "crash loop: {iterations} kills, {} acknowledged, {unknown} unknown outcomes, {} lost",
        acked.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

// ---- Sharded clusters: many shards, routing, fan-out, redirects, failover ----

/// One key per slot: `key[slot]` hashes to `slot`.
fn key_per_slot() -> Vec<String> {
    let mut keys = vec![String::new(); 16384];
    let mut left = 16384;
    let mut i = 0u64;
    while left > 0 {
        let k = format!("key:{i}");
        let s = proto::key_slot(k.as_bytes()) as usize;
        if keys[s].is_empty() {
            keys[s] = k;
            left -= 1;
        }
        i += 1;
    }
    keys
}

impl Cluster {
    /// Waits until shards 1..=shards all have a leader known to every replica, and
    /// returns each shard's leader (node id).
    fn wait_all_led(&self, shards: u64) -> std::collections::BTreeMap<u64, u64> {
        let mut leaders = std::collections::BTreeMap::new();
        wait_for(
            &format!("all {shards} shards to have a leader every replica agrees on"),
            Duration::from_secs(30),
            || {
                leaders.clear();
                for n in self.nodes.iter().filter(|n| n.child.is_some()) {
                    for s in 1..=shards {
                        let Some(i) = n.shard_info(s) else { continue };
                        let l: u64 = match i.get("raft_leader_id").and_then(|v| v.parse().ok()) {
                            Some(l) => l,
                            None => return false,
                        };
                        if *leaders.entry(s).or_insert(l) != l {
                            return false;
                        }
                    }
                }
                leaders.len() as u64 == shards
            },
        );
        leaders
    }

    fn node(&self, id: u64) -> &Node {
        self.nodes.iter().find(|n| n.id == id).expect("node id")
    }
}

/// Sends every command, then reads every reply (one pipeline).
fn pipeline(c: &mut RawConn, cmds: &[Vec<String>]) -> Vec<Frame> {
    for chunk in cmds.chunks(512) {
        for cmd in chunk {
            c.send(cmd);
        }
    }
    cmds.iter().map(|_| c.read()).collect()
}

#[test]
fn three_nodes_six_shards_serve_every_slot_through_any_node() {
    let _gate = shared();
    let cl = Cluster::start("sharded3", 3, &["--shards", "6"]);
    // Leaderships are balanced: two per node.
    wait_for("two leaderships per node", Duration::from_secs(15), || {
        let leaders = cl.wait_all_led(6);
        let mut per = std::collections::BTreeMap::new();
        for l in leaders.values() {
            *per.entry(*l).or_insert(0) += 1;
        }
        per.values().all(|&n| n == 2) && per.len() == 3
    });
    // CLUSTER SLOTS on every node: every slot served exactly once, each range by its
    // shard's leader with the two other replicas after it.
    let leaders = cl.wait_all_led(6);
    let leader_ports: std::collections::BTreeSet<i64> = leaders
        .values()
        .map(|id| cl.node(*id).port as i64)
        .collect();
    for n in &cl.nodes {
        let Frame::Array(ranges) = n.conn().cmd(&["CLUSTER", "SLOTS"]) else {
            panic!("CLUSTER SLOTS on node {}", n.id)
        };
        let mut covered = vec![0u8; 16384];
        for r in &ranges {
            let Frame::Array(parts) = r else {
                panic!("a range")
            };
            let (Frame::Int(a), Frame::Int(b)) = (&parts[0], &parts[1]) else {
                panic!("range bounds")
            };
            for slot in *a..=*b {
                covered[slot as usize] += 1;
            }
            assert_eq!(parts.len(), 5, "master and two replicas: {parts:?}");
            let Frame::Array(master) = &parts[2] else {
                panic!("master")
            };
            let Frame::Int(port) = master[1] else {
                panic!("port")
            };
            assert!(leader_ports.contains(&port), "range {a}-{b} names a leader");
        }
        assert!(covered.iter().all(|&c| c == 1), "every slot exactly once");
    }
    // Every slot is writable and readable through every node (plain client: forwarded
    // or run where the shard's leader is).
    let keys = key_per_slot();
    for (i, n) in cl.nodes.iter().enumerate() {
        let mut c = n.conn();
        let sets: Vec<Vec<String>> = keys
            .iter()
            .enumerate()
            .filter(|(s, _)| s % 3 == i)
            .map(|(_, k)| vec!["SET".into(), k.clone(), format!("v{k}")])
            .collect();
        for r in pipeline(&mut c, &sets) {
            assert_eq!(r, ok(), "SET through node {}", n.id);
        }
    }
    for n in &cl.nodes {
        let mut c = n.conn();
        let gets: Vec<Vec<String>> = keys.iter().map(|k| vec!["GET".into(), k.clone()]).collect();
        for (k, r) in keys.iter().zip(pipeline(&mut c, &gets)) {
            assert_eq!(r, bulk(&format!("v{k}")), "GET {k} through node {}", n.id);
        }
        // Cluster-wide commands cover every shard.
        assert_eq!(
            c.cmd(&["DBSIZE"]),
            Frame::Int(16384),
            "DBSIZE on node {}",
            n.id
        );
        let Frame::Array(all) = c.cmd(&["KEYS", "key:*"]) else {
            panic!("KEYS")
        };
        assert_eq!(all.len(), 16384);
    }
    // A full SCAN returns every key exactly once here (nothing changes meanwhile).
    let mut c = cl.nodes[1].conn();
    let (mut cursor, mut seen) = ("0".to_string(), std::collections::HashSet::new());
    let mut rounds = 0;
    loop {
        let Frame::Array(parts) = c.cmd(&["SCAN", &cursor, "COUNT", "1000"]) else {
            panic!("SCAN")
        };
        let Frame::Bulk(next) = &parts[0] else {
            panic!("cursor")
        };
        let Frame::Array(ks) = &parts[1] else {
            panic!("keys")
        };
        for k in ks {
            let Frame::Bulk(k) = k else { panic!("key") };
            assert!(seen.insert(k.clone()), "SCAN returned a key twice");
        }
        cursor = String::from_utf8(next.clone()).unwrap();
        rounds += 1;
        assert!(rounds < 1000, "SCAN did not finish");
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 16384);
    // Fan-out across slots (forward mode), not atomic across shards.
    let (a, b) = (&keys[1], &keys[16000]);
    assert_eq!(c.cmd(&["MSET", a, "1", b, "2"]), ok());
    assert_eq!(
        c.cmd(&["MGET", a, b, "nokey"]),
        Frame::Array(vec![bulk("1"), bulk("2"), Frame::NilBulk])
    );
    assert_eq!(c.cmd(&["EXISTS", a, b, a]), Frame::Int(3));
    assert_eq!(c.cmd(&["TOUCH", a, b]), Frame::Int(2));
    assert_eq!(c.cmd(&["DEL", a, b]), Frame::Int(2));
    assert_eq!(c.cmd(&["UNLINK", &keys[2], &keys[3]]), Frame::Int(2));
    // Atomic multi-key commands need one slot; hash tags give one.
    let cross = Frame::Error(b"CROSSSLOT Keys in request don't hash to the same slot".to_vec());
    assert_eq!(c.cmd(&["RENAME", &keys[5], &keys[6]]), cross);
    assert_eq!(c.cmd(&["SADD", "{u1}a", "x", "y"]), Frame::Int(2));
    assert_eq!(c.cmd(&["SADD", "{u1}b", "y", "z"]), Frame::Int(2));
    assert_eq!(
        c.cmd(&["SINTERSTORE", "{u1}c", "{u1}a", "{u1}b"]),
        Frame::Int(1)
    );
    assert_eq!(c.cmd(&["SMOVE", "{u1}a", "{u1}c", "x"]), Frame::Int(1));
    assert_eq!(c.cmd(&["SINTERSTORE", "c", "{u1}a", "{u1}b"]), cross);
    // A transaction is one slot's: a second slot fails the block.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["INCR", "{u2}n"]), Frame::Simple(b"QUEUED".to_vec()));
    assert_eq!(c.cmd(&["INCR", "{u3}n"]), cross);
    assert_eq!(
        c.cmd(&["EXEC"]),
        Frame::Error(b"EXECABORT Transaction discarded because of previous errors.".to_vec())
    );
    assert_eq!(c.cmd(&["MULTI"]), ok());
    c.cmd(&["INCR", "{u2}n"]);
    c.cmd(&["EXPIRE", "{u2}n", "100"]);
    assert_eq!(
        c.cmd(&["EXEC"]),
        Frame::Array(vec![Frame::Int(1), Frame::Int(1)])
    );
    // FLUSHALL empties every shard.
    assert_eq!(c.cmd(&["FLUSHALL"]), ok());
    assert_eq!(cl.nodes[2].conn().cmd(&["DBSIZE"]), Frame::Int(0));
}

#[test]
fn redirect_mode_moves_to_each_shards_leader() {
    let _gate = shared();
    let cl = Cluster::start(
        "moved",
        3,
        &["--shards", "4", "--follower-mode", "redirect"],
    );
    let keys = key_per_slot();
    // Shard ranges split the slots evenly in order: shard s owns the s-th quarter.
    let shard_of = |slot: usize| (slot / 4096) as u64 + 1;
    for n in &cl.nodes {
        let mut c = n.conn();
        for slot in (0..16384).step_by(97) {
            // Leaderships may still be moving to their balanced places: the answer
            // must match the leaders as they are when it is given.
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                let leaders = cl.wait_all_led(4);
                let leader = cl.node(leaders[&shard_of(slot)]);
                let r = c.cmd(&["SET", &keys[slot], "v"]);
                let want = if leader.id == n.id {
                    ok()
                } else {
                    Frame::Error(format!("MOVED {slot} 127.0.0.1:{}", leader.port).into_bytes())
                };
                if r == want {
                    break;
                }
                assert!(
                    Instant::now() < end,
                    "slot {slot} through node {}: {r:?}, want {want:?}",
                    n.id
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // Cross-slot commands are refused in redirect mode.
        assert_eq!(
            c.cmd(&["MGET", &keys[0], &keys[9000]]),
            Frame::Error(b"CROSSSLOT Keys in request don't hash to the same slot".to_vec())
        );
    }
}

#[test]
fn five_nodes_forward_to_unhosted_shards_and_survive_a_leader_kill() {
    let _gate = shared();
    let mut cl = Cluster::start("sharded5", 5, &["--shards", "5"]);
    let leaders = cl.wait_all_led(5);
    let keys = key_per_slot();
    let shard_of = |slot: usize| (slot * 5 / 16384) as u64 + 1;
    // Each node hosts 3 of the 5 shards; through every node, every shard answers.
    for n in &cl.nodes {
        let mut c = n.conn();
        for slot in (0..16384).step_by(41) {
            let k = &keys[slot];
            assert_eq!(
                c.cmd(&["SET", k, &format!("{}", n.id)]),
                ok(),
                "slot {slot} via {}",
                n.id
            );
            assert_eq!(c.cmd(&["GET", k]), bulk(&format!("{}", n.id)));
        }
        assert_eq!(c.cmd(&["MULTI"]), ok());
        c.cmd(&["SET", "{t}x", "1"]);
        c.cmd(&["INCR", "{t}x"]);
        assert_eq!(c.cmd(&["EXEC"]), Frame::Array(vec![ok(), Frame::Int(2)]));
    }
    // A blocking pop through a node that hosts no replica of the key's shard: it
    // waits (in slices, on a node that does) and gets the element pushed meanwhile.
    let (n1, unhosted) = cl
        .nodes
        .iter()
        .find_map(|n| {
            (1..=5u64)
                .find(|s| n.shard_info(*s).is_none())
                .map(|s| (n, s))
        })
        .expect("a node without a replica of some shard");
    let qkey = keys[((unhosted as usize - 1) * 16384 / 5) + 3].clone();
    let port1 = n1.port;
    let popper = {
        let qkey = qkey.clone();
        std::thread::spawn(move || RawConn::connect(port1).cmd(&["BRPOP", &qkey, "20"]))
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        cl.nodes[1].conn().cmd(&["LPUSH", &qkey, "job"]),
        Frame::Int(1)
    );
    assert_eq!(
        popper.join().expect("popper"),
        Frame::Array(vec![bulk(&qkey), bulk("job")])
    );
    assert_eq!(n1.conn().cmd(&["BLPOP", &qkey, "0.2"]), Frame::NilArray);

    // Kill the node leading the most shards while writers on another node write keys
    // of every shard: the victim's shards fail over, the others never stop.
    let mut per = std::collections::BTreeMap::new();
    for (s, l) in &leaders {
        per.entry(*l).or_insert_with(Vec::new).push(*s);
    }
    let (victim, led) = per
        .iter()
        .max_by_key(|(_, v)| v.len())
        .map(|(n, v)| (*n, v.clone()))
        .unwrap();
    let survivor = cl.nodes.iter().find(|n| n.id != victim).unwrap();
    let port = survivor.port;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let unaffected_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..2usize {
        let (stop, acked, errors, keys, led) = (
            stop.clone(),
            acked.clone(),
            unaffected_errors.clone(),
            keys.clone(),
            led.clone(),
        );
        writers.push(std::thread::spawn(move || {
            let mut c = RawConn::connect(port);
            let mut i = 0usize;
            let end = Instant::now() + Duration::from_secs(30);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < end {
                let slot = (i * 131 + w * 7919) % 16384;
                let (k, v) = (keys[slot].clone(), format!("w{w}-{i}"));
                match c.try_cmd(&["SET", &k, &v]) {
                    Some(Frame::Simple(_)) => acked.lock().unwrap().push((k, v)),
                    Some(Frame::Error(e)) => {
                        if !led.contains(&shard_of(slot)) {
                            errors
                                .lock()
                                .unwrap()
                                .push(String::from_utf8_lossy(&e).into_owned());
                        }
                    }
                    other => panic!("writer: {other:?}"),
                }
                i += 1;
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let vi = cl.nodes.iter().position(|n| n.id == victim).unwrap();
    cl.nodes[vi].kill9();
    // The victim's shards get new leaders.
    let survivor_node = cl.nodes.iter().find(|n| n.id != victim).unwrap();
    for s in &led {
        let k = &keys[((*s as usize - 1) * 16384 / 5) + 10];
        write_until_ok(survivor_node, &["SET", k, "after"], Duration::from_secs(10));
    }
    let failover = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.join().expect("writer");
    }
    let errors = unaffected_errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "shards the victim did not lead stopped serving: {errors:?}"
    );
    // No acknowledged write is lost: the last acknowledged value of each key is there.
    let mut last = std::collections::HashMap::new();
    for (k, v) in acked.lock().unwrap().iter() {
        last.insert(k.clone(), v.clone());
    }
    assert!(
        last.len() > 50,
        "too few acknowledged writes: {}",
        last.len()
    );
    let mut c = survivor_node.conn();
    for (k, v) in &last {
        let got = c.cmd(&["GET", k]);
        // A later write of "after" by the failover probe may have replaced it.
        assert!(
            got == bulk(v) || got == bulk("after"),
            "{k}: {got:?}, acknowledged {v}"
        );
    }
    eprintln!(
        "killed node {victim} leading shards {led:?}; failover of all took {failover:?}; {} keys checked",
        last.len()
    );
}

/// The `redis` crate's cluster client (it routes by CLUSTER SLOTS and follows MOVED)
/// against both routing modes.
#[test]
fn redis_crate_cluster_client_reads_and_writes_every_slot() {
    let _gate = shared();
    use redis::Commands;
    for mode in ["forward", "redirect"] {
        let cl = Cluster::start(
            &format!("rscluster-{mode}"),
            3,
            &["--shards", "3", "--follower-mode", mode],
        );
        cl.wait_all_led(3);
        wait_for(
            "cluster_state:ok on every node",
            Duration::from_secs(20),
            || {
                cl.nodes.iter().all(|n| {
                    matches!(n.conn().cmd(&["CLUSTER", "INFO"]),
                    Frame::Bulk(b) if String::from_utf8_lossy(&b).contains("cluster_state:ok"))
                })
            },
        );
        let urls: Vec<String> = cl
            .nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect();
        let client = redis::cluster::ClusterClient::new(urls).expect("cluster client");
        let mut con = client.get_connection().expect("cluster connection");
        let keys = key_per_slot();
        for slot in (0..16384).step_by(61) {
            let k = &keys[slot];
            let () = con
                .set(k, slot)
                .unwrap_or_else(|e| panic!("{mode}: SET {k}: {e}"));
            let v: usize = con
                .get(k)
                .unwrap_or_else(|e| panic!("{mode}: GET {k}: {e}"));
            assert_eq!(v, slot);
        }
        // Multi-key commands with a hash tag go to one shard.
        let () = con
            .mset(&[("{h}a", "1"), ("{h}b", "2")])
            .expect("MSET with a hash tag");
        let v: Vec<String> = con.mget(&["{h}a", "{h}b"]).expect("MGET");
        assert_eq!(v, ["1", "2"]);
    }
}

// ---- Online resharding ----

fn admin_json(node: &Node) -> Option<serde_json::Value> {
    let mut c = node.try_conn()?;
    match c.cmd(&["SHARDIS", "STATUS"]) {
        Frame::Bulk(b) => serde_json::from_slice(&b).ok(),
        _ => None,
    }
}

/// Keys hashing into slots `lo..=hi`, `n` of them, named `prefix{i}`.
fn keys_in(prefix: &str, lo: u16, hi: u16, n: usize) -> Vec<String> {
    (0u64..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| (lo..=hi).contains(&proto::key_slot(k.as_bytes())))
        .take(n)
        .collect()
}

/// Errors a client may see while slots move and leaders die: all retryable, none a
/// wrong answer.
fn retryable(e: &[u8]) -> bool {
    [&b"CLUSTERDOWN"[..], b"TRYAGAIN", b"UNKNOWN", b"LOADING"]
        .iter()
        .any(|p| e.starts_with(p))
}

/// A writer and a reader running against the cluster while it changes.
struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Acknowledged writes and right reads so far.
    progress: Arc<(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)>,
    writer: std::thread::JoinHandle<WriterOutcome>,
    reader: std::thread::JoinHandle<(u64, Vec<String>)>,
}

/// Per written key: the last acknowledged value, and values written after it whose
/// outcome is unknown.
type WriteState = Vec<(Option<u64>, Vec<u64>)>;
type WriterOutcome = (
    WriteState,
    u64,
    u64,
    Vec<String>,
    std::collections::BTreeMap<String, u64>,
);

fn pick(ports: &Arc<Mutex<Vec<u16>>>, i: u64) -> u16 {
    let p = ports.lock().unwrap();
    p[(i as usize) % p.len()]
}

impl Load {
    /// Writer: `wkeys` in turn, each write a new value, through the nodes of `ports`
    /// (which the test may change). Reader: `loaded` keys, which must read `v-KEY`.
    fn start(ports: Arc<Mutex<Vec<u16>>>, loaded: Vec<String>, wkeys: Vec<String>) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let progress = Arc::new((
            std::sync::atomic::AtomicU64::new(0),
            std::sync::atomic::AtomicU64::new(0),
        ));
        let writer = {
            let (stop, ports, progress) = (stop.clone(), ports.clone(), progress.clone());
            std::thread::spawn(move || {
                let mut state: WriteState = vec![(None, Vec::new()); wkeys.len()];
                let mut bad: Vec<String> = Vec::new();
                let (mut i, mut acked, mut errors) = (0u64, 0u64, 0u64);
                let mut kinds = std::collections::BTreeMap::<String, u64>::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 2_000_000 {
                    let port = pick(&ports, i / 100);
                    let Some(mut c) = RawConn::try_connect(port) else {
                        i += 100;
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    for _ in 0..100 {
                        let k = (i % wkeys.len() as u64) as usize;
                        match c.try_cmd(&["SET", &wkeys[k], &i.to_string()]) {
                            Some(Frame::Simple(_)) => {
                                state[k] = (Some(i), Vec::new());
                                acked += 1;
                                progress
                                    .0
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            Some(Frame::Error(e)) if retryable(&e) => {
                                errors += 1;
                                let kind =
                                    String::from_utf8_lossy(&e[..e.len().min(40)]).into_owned();
                                *kinds.entry(kind).or_insert(0) += 1;
                                if e.starts_with(b"UNKNOWN") {
                                    state[k].1.push(i);
                                }
                            }
                            Some(other) => bad.push(format!("SET {} -> {other:?}", wkeys[k])),
                            None => {
                                state[k].1.push(i);
                                break;
                            }
                        }
                        i += 1;
                    }
                }
                (state, acked, errors, bad, kinds)
            })
        };
        let reader = {
            let (stop, ports, progress) = (stop.clone(), ports.clone(), progress.clone());
            std::thread::spawn(move || {
                let (mut reads, mut bad) = (0u64, Vec::<String>::new());
                let mut i = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 5_000_000 {
                    let port = pick(&ports, (i / 200) as u64);
                    let Some(mut c) = RawConn::try_connect(port) else {
                        i += 200;
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    for _ in 0..200 {
                        let k = &loaded[(i * 7919) % loaded.len()];
                        match c.try_cmd(&["GET", k]) {
                            Some(Frame::Bulk(v)) if v == format!("v-{k}").as_bytes() => {
                                reads += 1;
                                progress
                                    .1
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            Some(Frame::Error(e)) if retryable(&e) => {}
                            Some(other) => bad.push(format!("GET {k} -> {other:?}")),
                            None => break,
                        }
                        i += 1;
                    }
                }
                (reads, bad)
            })
        };
        Load {
            stop,
            progress,
            writer,
            reader,
        }
    }

    /// Stops both; asserts they saw only right answers and retryable errors and made
    /// progress; the writer's state.
    fn stop(self, what: &str) -> WriteState {
        // Progress, in operations rather than time: the cluster took writes and
        // served reads after the changes.
        let (w0, r0) = (
            self.progress.0.load(std::sync::atomic::Ordering::Relaxed),
            self.progress.1.load(std::sync::atomic::Ordering::Relaxed),
        );
        wait_for(
            "the writer and the reader to get 200 more answers each",
            Duration::from_secs(60),
            || {
                self.progress.0.load(std::sync::atomic::Ordering::Relaxed) >= w0 + 200
                    && self.progress.1.load(std::sync::atomic::Ordering::Relaxed) >= r0 + 200
            },
        );
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (state, acked, errors, wbad, kinds) = self.writer.join().expect("writer");
        let (reads, rbad) = self.reader.join().expect("reader");
        eprintln!("{what}: writer {acked} acknowledged, {errors} retryable errors {kinds:?}; reader {reads} good reads");
        assert!(
            wbad.is_empty(),
            "the writer saw non-retryable answers: {:?}",
            &wbad[..wbad.len().min(10)]
        );
        assert!(
            rbad.is_empty(),
            "the reader saw wrong answers: {:?}",
            &rbad[..rbad.len().min(10)]
        );
        state
    }
}

/// Sets every key to `v-KEY` through `node`, again while a leadership moves
/// (retryable errors), up to a deadline.
fn preload(node: &Node, keys: &[String]) {
    let mut c = node.conn();
    let end = Instant::now() + Duration::from_secs(60);
    for chunk in keys.chunks(5000) {
        let mut todo: Vec<&String> = chunk.iter().collect();
        while !todo.is_empty() {
            let cmds: Vec<Vec<String>> = todo
                .iter()
                .map(|k| vec!["SET".into(), k.to_string(), format!("v-{k}")])
                .collect();
            let replies = pipeline(&mut c, &cmds);
            let mut again = Vec::new();
            for (k, r) in todo.iter().zip(replies) {
                match r {
                    Frame::Simple(_) => {}
                    Frame::Error(e) if retryable(&e) && Instant::now() < end => again.push(*k),
                    other => panic!("preload SET {k}: {other:?}"),
                }
            }
            if !again.is_empty() {
                std::thread::sleep(Duration::from_millis(100));
            }
            todo = again;
        }
    }
}

/// Every preloaded key reads its value, and every written key its last acknowledged
/// value (or a later one whose outcome was unknown).
fn verify_reads(c: &mut RawConn, loaded: &[String], wkeys: &[String], state: &WriteState) {
    // A leadership may still move: retryable answers are asked again.
    let get = |c: &mut RawConn, k: &str| -> Frame {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            match c.cmd(&["GET", k]) {
                Frame::Error(e) if retryable(&e) && Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                r => return r,
            }
        }
    };
    // Every preloaded key, through one node.
    for chunk in loaded.chunks(5000) {
        let cmds: Vec<Vec<String>> = chunk
            .iter()
            .map(|k| vec!["GET".into(), k.clone()])
            .collect();
        for (k, r) in chunk.iter().zip(pipeline(c, &cmds)) {
            let r = match r {
                Frame::Error(e) if retryable(&e) => get(c, k),
                r => r,
            };
            assert_eq!(r, bulk(&format!("v-{k}")), "preloaded key {k}");
        }
    }
    // Every acknowledged write, with its last value (or a later one whose outcome was
    // unknown).
    for (k, (last, maybe)) in wkeys.iter().zip(state) {
        let r = get(c, k);
        let got: Option<u64> = match &r {
            Frame::Bulk(v) => Some(String::from_utf8_lossy(v).parse().unwrap()),
            Frame::NilBulk => None,
            other => panic!("GET {k}: {other:?}"),
        };
        let fine = got == *last || got.is_some_and(|g| maybe.contains(&g));
        assert!(
            fine,
            "{k}: read {got:?}, last acknowledged {last:?}, unknown after it {maybe:?}"
        );
    }
}

/// A range holding over 100k keys moves in three migrations while a writer and a
/// reader use it, and during each one a different leader is killed -9 mid-copy: the
/// source shard's, the target shard's, the meta group's; then a shard splits. Every acknowledged write
/// reads back with its last value, every preloaded key with its value, the per-shard
/// key counts sum to DBSIZE, and clients only ever saw retryable errors.
#[test]
fn reshard_under_load_survives_leader_kills() {
    let _gate = exclusive();
    let mut cl = Cluster::start("reshard", 3, &["--shards", "3"]);
    cl.wait_all_led(3);
    let ports: Vec<u16> = cl.nodes.iter().map(|n| n.port).collect();
    // Shard 1 owns 0-5461 (three equal ranges).
    let loaded = keys_in("k", 0, 5461, 105_000);
    preload(&cl.nodes[0], &loaded);
    let wkeys = keys_in("w", 0, 5461, 300);
    let load = Load::start(
        Arc::new(Mutex::new(ports.clone())),
        loaded.clone(),
        wkeys.clone(),
    );
    // Three moves, a different leader killed mid-copy in each.
    let moves: [(u16, u16, u64, &str); 3] = [
        (0, 1999, 2, "source"),
        (2000, 3999, 3, "target"),
        (4000, 5461, 2, "meta"),
    ];
    for (start, end, to, victim_role) in moves {
        let leaders = cl.wait_all_led(3);
        let meta_leader: u64 = cl.nodes[0]
            .shard_info(0)
            .and_then(|i| i.get("raft_leader_id").and_then(|v| v.parse().ok()))
            .expect("meta leader");
        let victim = match victim_role {
            "source" => leaders[&1],
            "target" => leaders[&to],
            _ => meta_leader,
        };
        let r = cl.nodes[0].conn().cmd(&[
            "SHARDIS",
            "RESHARD",
            &start.to_string(),
            &end.to_string(),
            &to.to_string(),
        ]);
        assert!(
            matches!(r, Frame::Int(_)),
            "RESHARD {start}-{end} to {to}: {r:?}"
        );
        // Kill once the copy is under way (the driver claimed its first attempt).
        wait_for(
            "the migration's first attempt",
            Duration::from_secs(20),
            || {
                admin_json(&cl.nodes[0]).is_some_and(|s| {
                    s["migrations"]
                        .as_array()
                        .is_some_and(|m| m.iter().any(|m| m["attempt"].as_u64() >= Some(1)))
                })
            },
        );
        std::thread::sleep(Duration::from_millis(150));
        let vi = cl.nodes.iter().position(|n| n.id == victim).unwrap();
        cl.nodes[vi].kill9();
        std::thread::sleep(Duration::from_millis(300));
        cl.nodes[vi].start(&[]);
        wait_for(
            &format!("the move of {start}-{end} to shard {to} to finish (killed the {victim_role} leader, node {victim})"),
            Duration::from_secs(90),
            || {
                cl.nodes.iter().all(|n| {
                    admin_json(n).is_some_and(|s| {
                        s["migrations"].as_array().is_some_and(|m| m.is_empty())
                            && (start..=end).step_by(97).all(|slot| {
                                s["shards"].as_array().unwrap().iter().any(|sh| {
                                    sh["id"].as_u64() == Some(to)
                                        && sh["ranges"].as_array().unwrap().iter().any(|r| {
                                            let (a, b) = r.as_str().unwrap().split_once('-').unwrap();
                                            a.parse::<u16>().unwrap() <= slot && slot <= b.parse::<u16>().unwrap()
                                        })
                                })
                            })
                    })
                })
            },
        );
    }
    // Split: shard 2 (now 0-1999 and 4000-10922) gives the upper half of its largest
    // range to a new shard 4, still under load.
    let r = cl.nodes[1].conn().cmd(&["SHARDIS", "SPLIT", "2"]);
    assert!(matches!(r, Frame::Int(_)), "SPLIT 2: {r:?}");
    wait_for(
        "the split into shard 4 to finish",
        Duration::from_secs(90),
        || {
            cl.nodes.iter().all(|n| {
                admin_json(n).is_some_and(|s| {
                    s["migrations"].as_array().is_some_and(|m| m.is_empty())
                        && s["shards"].as_array().unwrap().iter().any(|sh| {
                            sh["id"].as_u64() == Some(4) && sh["slots"].as_u64().unwrap_or(0) > 0
                        })
                })
            })
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let state = load.stop("reshard");
    cl.wait_all_led(4);
    let mut c = cl.nodes[1].conn();
    verify_reads(&mut c, &loaded, &wkeys, &state);
    // Nothing duplicated or orphaned: per-slot counts (each slot's owner) sum to
    // DBSIZE, and so do the keys each shard holds.
    let Frame::Int(dbsize) = c.cmd(&["DBSIZE"]) else {
        panic!("DBSIZE")
    };
    let counts: Vec<Vec<String>> = (0..16384)
        .map(|s| vec!["CLUSTER".into(), "COUNTKEYSINSLOT".into(), s.to_string()])
        .collect();
    let per_slot: i64 = pipeline(&mut c, &counts)
        .into_iter()
        .map(|f| match f {
            Frame::Int(n) => n,
            other => panic!("COUNTKEYSINSLOT: {other:?}"),
        })
        .sum();
    assert_eq!(per_slot, dbsize, "per-slot key counts vs DBSIZE");
    assert!(dbsize as usize >= loaded.len());
    wait_for(
        "every replica of every shard to hold DBSIZE keys in all",
        Duration::from_secs(20),
        || {
            cl.nodes.iter().all(|n| {
                admin_json(n).is_some_and(|s| {
                    s["shards"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|sh| sh["keys_here"].as_i64().unwrap_or(-1))
                        .sum::<i64>()
                        == dbsize
                })
            })
        },
    );
}

/// A fourth node joins (`--join`) a loaded 3-node cluster and takes replicas by
/// learner catch-up and a joint-consensus change, then a founding node is drained and
/// removed (it exits), all under a writer and a reader.
#[test]
fn add_node_then_remove_node_under_load() {
    let _gate = exclusive();
    let mut cl = Cluster::start("member", 3, &["--shards", "3"]);
    cl.wait_all_led(3);
    let ports = Arc::new(Mutex::new(
        cl.nodes.iter().map(|n| n.port).collect::<Vec<u16>>(),
    ));
    let loaded = keys_in("k", 0, 16383, 30_000);
    preload(&cl.nodes[0], &loaded);
    let wkeys = keys_in("w", 0, 16383, 300);
    let load = Load::start(ports.clone(), loaded.clone(), wkeys.clone());
    std::thread::sleep(Duration::from_millis(500));
    // Join.
    let mut n4 = Node::new(4, &cl.base, &["--shards", "3"]);
    let via = format!("127.0.0.1:{}", cl.nodes[0].port);
    n4.start(&["--join".to_string(), via]);
    cl.nodes.push(n4);
    ports.lock().unwrap().push(cl.nodes[3].port);
    let placed = |s: &serde_json::Value| {
        s["nodes"].as_array().is_some_and(|n| n.len() == 4)
            && s["placement_targets"]
                .as_object()
                .is_some_and(|t| t.is_empty())
            && s["shards"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|sh| sh["replicas"].as_array().unwrap().contains(&4.into()))
            })
    };
    wait_for(
        "node 4 to join and take its replicas",
        Duration::from_secs(90),
        || admin_json(&cl.nodes[0]).is_some_and(|s| placed(&s)),
    );
    // Node 4 serves its replicas: it holds keys.
    wait_for(
        "node 4's replicas to catch up",
        Duration::from_secs(30),
        || {
            admin_json(&cl.nodes[3]).is_some_and(|s| {
                s["shards"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|sh| sh["keys_here"].as_u64())
                    .sum::<u64>()
                    > 0
            })
        },
    );
    // Drain node 2: it leaves the map and exits.
    let r = cl.nodes[0].conn().cmd(&["SHARDIS", "REMOVENODE", "2"]);
    assert_eq!(r, ok(), "REMOVENODE 2");
    ports.lock().unwrap().retain(|p| *p != cl.nodes[1].port);
    wait_for(
        "node 2 to be drained and removed",
        Duration::from_secs(90),
        || {
            admin_json(&cl.nodes[0]).is_some_and(|s| {
                s["nodes"]
                    .as_array()
                    .is_some_and(|n| n.iter().all(|n| n["id"].as_u64() != Some(2)))
                    && s["shards"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|sh| !sh["replicas"].as_array().unwrap().contains(&2.into()))
            })
        },
    );
    let exited = cl.nodes[1].child.as_mut().unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if exited.try_wait().ok().flatten().is_some() {
            break;
        }
        assert!(
            Instant::now() < end,
            "node 2 did not exit after its removal"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cl.nodes[1].child = None;
    std::thread::sleep(Duration::from_millis(500));
    let state = load.stop("membership");
    let mut c = cl.nodes[3].conn();
    verify_reads(&mut c, &loaded, &wkeys, &state);
    let Frame::Int(dbsize) = c.cmd(&["DBSIZE"]) else {
        panic!("DBSIZE")
    };
    let written = wkeys
        .iter()
        .filter(|k| !matches!(c.cmd(&["GET", k.as_str()]), Frame::NilBulk))
        .count();
    assert_eq!(
        dbsize as usize,
        loaded.len() + written,
        "DBSIZE: nothing lost or duplicated"
    );
    // Every shard still has three replicas, none on node 2, and the meta group's
    // voters are the three remaining nodes.
    let s = admin_json(&cl.nodes[0]).unwrap();
    for sh in s["shards"].as_array().unwrap() {
        assert_eq!(sh["replicas"].as_array().unwrap().len(), 3, "{sh}");
        // ...and the group's Raft voters are exactly those three (a move must never
        // take a voter out with none coming in).
        let id = sh["id"].as_u64().expect("shard id");
        let mut want: Vec<u64> = sh["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect();
        want.sort();
        let want: Vec<String> = want.iter().map(|n| n.to_string()).collect();
        let info = cl.nodes[0].shard_info(id).expect("shard info");
        assert_eq!(info["raft_voters"], want.join("|"), "shard {id}'s voters");
    }
    let meta = cl.nodes[0].shard_info(0).expect("meta info");
    assert_eq!(
        meta["raft_voters"], "1|3|4",
        "meta voters after the removal"
    );
    // Node 2 comes back under its old id, its data wiped, with --join, and must stay.
    // It replays the meta log from the start, its own removal included. The chaos
    // suite caught a re-joined node exiting on that old map; whether the replay
    // pauses on it is timing (here it usually does not), so this checks the outcome
    // and `removal_verdict`'s unit test checks the decision.
    std::fs::remove_dir_all(&cl.nodes[1].dir).expect("wipe node 2");
    let via = format!("127.0.0.1:{}", cl.nodes[0].port);
    cl.nodes[1].start(&["--join".to_string(), via]);
    wait_for(
        "node 2 to join again and take replicas",
        Duration::from_secs(90),
        || {
            admin_json(&cl.nodes[0]).is_some_and(|s| {
                s["placement_targets"]
                    .as_object()
                    .is_some_and(|t| t.is_empty())
                    && s["shards"].as_array().is_some_and(|a| {
                        a.iter()
                            .any(|sh| sh["replicas"].as_array().unwrap().contains(&2.into()))
                    })
            })
        },
    );
    let status = cl.nodes[1].child.as_mut().unwrap().try_wait().unwrap();
    assert!(
        status.is_none(),
        "node 2 exited ({status:?}) after joining again:\n{}",
        cl.nodes[1].output()
    );
    assert!(
        cl.nodes[1].try_conn().is_some(),
        "node 2 answers after joining again"
    );
}

/// The shard owning `slot` in a SHARDIS STATUS document.
fn owner(s: &serde_json::Value, slot: u16) -> Option<u64> {
    s["shards"].as_array()?.iter().find_map(|sh| {
        let owns = sh["ranges"].as_array()?.iter().any(|r| {
            r.as_str()
                .and_then(|r| r.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
                .is_some_and(|(a, b)| a <= slot && slot <= b)
        });
        owns.then(|| sh["id"].as_u64()).flatten()
    })
}

/// Kill -9 inside the short phases: each migration is held 1.5 s with its source
/// fenced (cutover) and again after the flip before the target serves (cleanup), by
/// the nodes' test hook; a leader dies in each hold. A dead source leader during the
/// cutover means a new attempt (its begin lifts the fence); a dead leader during the
/// cleanup means the next driver resumes from the flipped map. Nothing is lost.
#[test]
fn reshard_survives_leader_kills_at_cutover_and_cleanup() {
    let _gate = exclusive();
    let mut cl = Cluster::start_env(
        "reshard-phases",
        3,
        &["--shards", "3"],
        &[("SHARDIS_TEST_MIGRATION_HOLD_MS", "1500")],
    );
    cl.wait_all_led(3);
    let ports: Vec<u16> = cl.nodes.iter().map(|n| n.port).collect();
    let loaded = keys_in("k", 0, 5461, 20_000);
    preload(&cl.nodes[0], &loaded);
    let wkeys = keys_in("w", 0, 5461, 200);
    let load = Load::start(Arc::new(Mutex::new(ports)), loaded.clone(), wkeys.clone());
    let cases: [(u16, u16, u64, &str, &str); 4] = [
        (0, 999, 2, "cutover", "source"),
        (1000, 1999, 3, "cutover", "target"),
        (2000, 2999, 2, "cleanup", "source"),
        (3000, 3999, 3, "cleanup", "meta"),
    ];
    for (start, end, to, phase, role) in cases {
        let leaders = cl.wait_all_led(3);
        let meta_leader: u64 = cl.nodes[0]
            .shard_info(0)
            .and_then(|i| i.get("raft_leader_id").and_then(|v| v.parse().ok()))
            .expect("meta leader");
        let victim = match role {
            "source" => leaders[&1],
            "target" => leaders[&to],
            _ => meta_leader,
        };
        let r = cl.nodes[0].conn().cmd(&[
            "SHARDIS",
            "RESHARD",
            &start.to_string(),
            &end.to_string(),
            &to.to_string(),
        ]);
        assert!(matches!(r, Frame::Int(_)), "RESHARD {start}-{end}: {r:?}");
        // The driver reports the phase it holds in (SHARDIS PROGRESS on its node).
        wait_for(
            &format!("migration of {start}-{end} to hold in {phase}"),
            Duration::from_secs(30),
            || {
                cl.nodes.iter().any(|n| {
                    let Some(mut c) = n.try_conn() else {
                        return false;
                    };
                    match c.cmd(&["SHARDIS", "PROGRESS"]) {
                        Frame::Bulk(b) => serde_json::from_slice::<serde_json::Value>(&b)
                            .ok()
                            .and_then(|p| p.as_array().cloned())
                            .is_some_and(|p| p.iter().any(|m| m["phase"] == phase)),
                        _ => false,
                    }
                })
            },
        );
        let vi = cl.nodes.iter().position(|n| n.id == victim).unwrap();
        cl.nodes[vi].kill9();
        std::thread::sleep(Duration::from_millis(300));
        cl.nodes[vi].start(&[]);
        wait_for(
            &format!("the move of {start}-{end} to finish (killed the {role} leader, node {victim}, in {phase})"),
            Duration::from_secs(90),
            || {
                admin_json(&cl.nodes[0]).is_some_and(|s| {
                    s["migrations"].as_array().is_some_and(|m| m.is_empty())
                        && owner(&s, start) == Some(to)
                        && owner(&s, end) == Some(to)
                })
            },
        );
    }
    let state = load.stop("reshard-phases");
    cl.wait_all_led(3);
    let mut c = cl.nodes[1].conn();
    verify_reads(&mut c, &loaded, &wkeys, &state);
    let Frame::Int(dbsize) = c.cmd(&["DBSIZE"]) else {
        panic!("DBSIZE")
    };
    wait_for(
        "every node's shard replicas to hold DBSIZE keys in all",
        Duration::from_secs(20),
        || {
            cl.nodes.iter().all(|n| {
                admin_json(n).is_some_and(|s| {
                    s["shards"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|sh| sh["keys_here"].as_i64().unwrap_or(-1))
                        .sum::<i64>()
                        == dbsize
                })
            })
        },
    );
}

/// Plain (forward-mode) clients see no refusal while leaderships move and a slot
/// range is migrated under them: writes, MULTI/EXEC and reads through one node are
/// answered as if nothing happened (the node retries `-CLUSTERDOWN` of an election
/// and `-TRYAGAIN` of a fence for them, transactions as a whole), and a consumer
/// blocked on a queue whose slot moves gets the job pushed afterwards.
#[test]
fn plain_clients_see_no_refusals_during_failovers_and_a_move() {
    let _gate = exclusive();
    let cl = Cluster::start_env(
        "no-refusals",
        3,
        &["--shards", "3"],
        &[("SHARDIS_TEST_MIGRATION_HOLD_MS", "1000")],
    );
    cl.wait_all_led(3);
    let port = cl.nodes[0].port;
    // Keys in the range that moves (shard 1's slots 0-999).
    let wkeys = keys_in("p", 0, 999, 40);
    let counter = keys_in("ctr", 0, 999, 1).remove(0);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = |stop: &Arc<std::sync::atomic::AtomicBool>| {
        !stop.load(std::sync::atomic::Ordering::Relaxed)
    };
    let writer = {
        let (stop, wkeys) = (stop.clone(), wkeys.clone());
        std::thread::spawn(move || {
            let mut c = RawConn::connect(port);
            let (mut last, mut errors) = (vec![None; wkeys.len()], Vec::new());
            let mut i = 0u64;
            while running(&stop) && i < 1_000_000 {
                let k = (i as usize) % wkeys.len();
                match c.cmd(&["SET", &wkeys[k], &i.to_string()]) {
                    Frame::Simple(_) => last[k] = Some(i),
                    other => errors.push(format!("SET {} -> {other:?}", wkeys[k])),
                }
                i += 1;
            }
            (last, errors)
        })
    };
    let transactions = {
        let (stop, counter) = (stop.clone(), counter.clone());
        std::thread::spawn(move || {
            let mut c = RawConn::connect(port);
            let (mut done, mut errors) = (0u64, Vec::new());
            while running(&stop) && done < 1_000_000 {
                assert_eq!(c.cmd(&["MULTI"]), ok());
                assert_eq!(
                    c.cmd(&["INCR", &counter]),
                    Frame::Simple(b"QUEUED".to_vec())
                );
                match c.cmd(&["EXEC"]) {
                    Frame::Array(r) if r == [Frame::Int(done as i64 + 1)] => done += 1,
                    other => {
                        errors.push(format!("EXEC #{} -> {other:?}", done + 1));
                        break;
                    }
                }
            }
            (done, errors)
        })
    };
    let reader = {
        let (stop, wkeys) = (stop.clone(), wkeys.clone());
        std::thread::spawn(move || {
            let mut c = RawConn::connect(port);
            let (mut reads, mut errors) = (0u64, Vec::new());
            while running(&stop) && reads < 5_000_000 {
                let k = &wkeys[(reads as usize * 7) % wkeys.len()];
                match c.cmd(&["GET", k]) {
                    Frame::Bulk(_) | Frame::NilBulk => {}
                    other => errors.push(format!("GET {k} -> {other:?}")),
                }
                reads += 1;
            }
            (reads, errors)
        })
    };
    // A consumer blocked on a queue in the range that moves (as a job queue's worker
    // waits): it must get the job pushed after the move, where the queue lives then.
    let queue = keys_in("queue", 0, 999, 1).remove(0);
    let consumer = {
        let queue = queue.clone();
        std::thread::spawn(move || RawConn::connect(port).cmd(&["BRPOP", &queue, "60"]))
    };
    // Every shard's leadership moves twice, then shard 1's slots 0-999 move to shard
    // 2 (the fence held for a second at cutover), then the leaderships move again.
    let failovers = |rounds: usize| {
        for _ in 0..rounds {
            for shard in 1..=3u64 {
                // On the shard's leader (which the leader balancer may move meanwhile).
                let mut last = Frame::Null;
                wait_for(
                    &format!("SHARDIS FAILOVER {shard} to succeed on its leader"),
                    Duration::from_secs(20),
                    || {
                        let leader = cl.wait_all_led(3)[&shard];
                        last = cl.node(leader).conn().cmd(&[
                            "SHARDIS",
                            "FAILOVER",
                            &shard.to_string(),
                        ]);
                        last == ok()
                    },
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    failovers(2);
    let r = cl.nodes[1]
        .conn()
        .cmd(&["SHARDIS", "RESHARD", "0", "999", "2"]);
    assert!(matches!(r, Frame::Int(_)), "RESHARD 0-999 to 2: {r:?}");
    wait_for(
        "slots 0-999 to move to shard 2",
        Duration::from_secs(60),
        || {
            admin_json(&cl.nodes[1]).is_some_and(|s| {
                s["migrations"].as_array().is_some_and(|m| m.is_empty())
                    && owner(&s, 0) == Some(2)
                    && owner(&s, 999) == Some(2)
            })
        },
    );
    failovers(1);
    assert_eq!(
        cl.nodes[2].conn().cmd(&["LPUSH", &queue, "job"]),
        Frame::Int(1),
        "LPUSH {queue} (the consumer must not have popped anything yet)"
    );
    assert_eq!(
        consumer.join().expect("consumer"),
        Frame::Array(vec![bulk(&queue), bulk("job")]),
        "the consumer blocked on {queue} while its slot moved"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (last, werrors) = writer.join().expect("writer");
    let (done, terrors) = transactions.join().expect("transactions");
    let (reads, rerrors) = reader.join().expect("reader");
    eprintln!(
        "no-refusals: {} keys written, {done} transactions, {reads} reads",
        last.len()
    );
    assert!(werrors.is_empty(), "the writer saw errors: {werrors:?}");
    assert!(terrors.is_empty(), "transactions saw errors: {terrors:?}");
    assert!(rerrors.is_empty(), "the reader saw errors: {rerrors:?}");
    assert!(
        done > 0 && reads > 0,
        "no progress: {done} transactions, {reads} reads"
    );
    let mut c = cl.nodes[2].conn();
    assert_eq!(c.cmd(&["GET", &counter]), bulk(&done.to_string()));
    for (k, v) in wkeys.iter().zip(&last) {
        let want = v.map_or(Frame::NilBulk, |v| bulk(&v.to_string()));
        assert_eq!(c.cmd(&["GET", k]), want, "last acknowledged value of {k}");
    }
}

/// A 1M-element list, and a hash, a sorted set and a set of 100k elements each, move
/// to another shard in pieces while a writer keeps writing other keys of their slot
/// and adds to the big ones every 50 ms, before, during and after the move (a changed
/// big value goes as its edits, not whole again). Every element arrives, in order,
/// and the writer saw no error.
#[test]
fn big_collections_move_in_pieces_under_writes() {
    let _gate = exclusive();
    let cl = Cluster::start("big-values", 3, &["--shards", "3"]);
    cl.wait_all_led(3);
    let tag = keys_in("big", 0, 99, 1).remove(0);
    let slot = proto::key_slot(tag.as_bytes());
    let (list, hash, zset, set) = (
        format!("{{{tag}}}list"),
        format!("{{{tag}}}hash"),
        format!("{{{tag}}}zset"),
        format!("{{{tag}}}set"),
    );
    const LIST: usize = 1_000_000;
    const OTHERS: usize = 100_000;
    let mut c = cl.nodes[0].conn();
    let batch = 10_000;
    let mut cmds: Vec<Vec<String>> = Vec::new();
    for lo in (0..LIST).step_by(batch) {
        let mut cmd = vec!["RPUSH".to_string(), list.clone()];
        cmd.extend((lo..lo + batch).map(|i| format!("e{i}")));
        cmds.push(cmd);
    }
    for lo in (0..OTHERS).step_by(batch) {
        let mut h = vec!["HSET".to_string(), hash.clone()];
        let mut z = vec!["ZADD".to_string(), zset.clone()];
        let mut s = vec!["SADD".to_string(), set.clone()];
        for i in lo..lo + batch {
            h.extend([format!("f{i}"), format!("v{i}")]);
            z.extend([i.to_string(), format!("m{i}")]);
            s.push(format!("s{i}"));
        }
        cmds.extend([h, z, s]);
    }
    for r in pipeline(&mut c, &cmds) {
        assert!(matches!(r, Frame::Int(_)), "loading: {r:?}");
    }
    // The writer adds to all four while they move (through another node).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, port, tag) = (stop.clone(), cl.nodes[1].port, tag.clone());
        let keys = [list.clone(), hash.clone(), zset.clone(), set.clone()];
        std::thread::spawn(move || {
            let mut c = RawConn::connect(port);
            let (mut n, mut small, mut errors) = (0usize, 0usize, Vec::new());
            let mut next_big = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && small < 1_000_000 {
                let k = format!("{{{tag}}}small{}", small % 1000);
                match c.cmd(&["SET", &k, &small.to_string()]) {
                    Frame::Simple(_) => {}
                    other => errors.push(format!("SET {k} -> {other:?}")),
                }
                small += 1;
                if Instant::now() < next_big {
                    continue;
                }
                next_big = Instant::now() + Duration::from_millis(50);
                let w = format!("w{n}");
                let cmds = [
                    vec!["RPUSH", &keys[0], &w],
                    vec!["HSET", &keys[1], &w, "x"],
                    vec!["ZADD", &keys[2], "-1", &w],
                    vec!["SADD", &keys[3], &w],
                ];
                for cmd in cmds {
                    match c.cmd(&cmd) {
                        Frame::Int(_) => {}
                        other => errors.push(format!("{cmd:?} -> {other:?}")),
                    }
                }
                n += 1;
            }
            (n, small, errors)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let r = cl.nodes[0].conn().cmd(&[
        "SHARDIS",
        "RESHARD",
        &slot.to_string(),
        &slot.to_string(),
        "2",
    ]);
    assert!(matches!(r, Frame::Int(_)), "RESHARD {slot} to 2: {r:?}");
    wait_for(
        &format!("slot {slot} (four big keys) to move to shard 2"),
        Duration::from_secs(120),
        || {
            admin_json(&cl.nodes[0]).is_some_and(|s| {
                s["migrations"].as_array().is_some_and(|m| m.is_empty())
                    && owner(&s, slot) == Some(2)
            })
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (written, small, errors) = writer.join().expect("writer");
    assert!(errors.is_empty(), "the writer saw errors: {errors:?}");
    let pauses: Vec<String> = cl
        .nodes
        .iter()
        .filter_map(|n| match n.conn().cmd(&["SHARDIS", "PROGRESS"]) {
            Frame::Bulk(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        })
        .collect();
    eprintln!(
        "big-values: {small} small-key writes, {written} big-key writes; progress {pauses:?}"
    );
    assert!(written > 0, "the writer made no progress");
    // Everything, read from the target through a third node.
    let mut c = cl.nodes[2].conn();
    for i in small.saturating_sub(1000)..small {
        let k = format!("{{{tag}}}small{}", i % 1000);
        assert_eq!(c.cmd(&["GET", &k]), bulk(&i.to_string()), "{k}");
    }
    let Frame::Array(got) = c.cmd(&["LRANGE", &list, "0", "-1"]) else {
        panic!("LRANGE {list}")
    };
    let want: Vec<Frame> = (0..LIST)
        .map(|i| bulk(&format!("e{i}")))
        .chain((0..written).map(|i| bulk(&format!("w{i}"))))
        .collect();
    assert_eq!(got.len(), want.len(), "LLEN {list}");
    assert!(
        got == want,
        "{list} arrived with different elements or order"
    );
    let total = (OTHERS + written) as i64;
    assert_eq!(c.cmd(&["HLEN", &hash]), Frame::Int(total));
    assert_eq!(c.cmd(&["ZCARD", &zset]), Frame::Int(total));
    assert_eq!(c.cmd(&["SCARD", &set]), Frame::Int(total));
    for i in (0..OTHERS).step_by(9_973).chain([OTHERS - 1]) {
        assert_eq!(
            c.cmd(&["HGET", &hash, &format!("f{i}")]),
            bulk(&format!("v{i}"))
        );
        assert_eq!(
            c.cmd(&["ZSCORE", &zset, &format!("m{i}")]),
            bulk(&i.to_string())
        );
        assert_eq!(c.cmd(&["SISMEMBER", &set, &format!("s{i}")]), Frame::Int(1));
    }
    for i in 0..written {
        assert_eq!(c.cmd(&["HGET", &hash, &format!("w{i}")]), bulk("x"));
    }
    // The sorted set's order survived: the writer's members (score -1) first.
    let Frame::Array(head) = c.cmd(&["ZRANGE", &zset, "0", "0"]) else {
        panic!("ZRANGE")
    };
    assert_eq!(head, [bulk("w0")]);
    let Frame::Array(tail) = c.cmd(&["ZRANGE", &zset, "-1", "-1"]) else {
        panic!("ZRANGE")
    };
    assert_eq!(tail, [bulk(&format!("m{}", OTHERS - 1))]);
}
