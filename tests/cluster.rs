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
        let base =
            std::env::temp_dir().join(format!("shardis-cluster-{name}-{}", std::process::id()));
        let mut extra: Vec<&str> = extra.to_vec();
        if !extra.contains(&"--shards") {
            extra.extend(["--shards", "1"]);
        }
        'attempt: for _ in 0..5 {
            let _ = std::fs::remove_dir_all(&base);
            let mut nodes: Vec<Node> = (1..=n).map(|i| Node::new(i, &base, &extra)).collect();
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
                let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                    i += 1;
                    continue;
                };
                drop(s);
                let mut c = RawConn::connect(port);
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
