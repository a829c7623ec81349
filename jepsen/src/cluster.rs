//! The cluster under test: real `shardis` release processes on loopback, each with its
//! own data directory, log file and clock file, and peer addresses that point at the
//! fault proxy (`proxy.rs`) instead of the nodes' real peer ports.
//!
//! Everything here is synchronous and runs on the harness's main thread, which lives
//! for the whole run: the nodes get `PR_SET_PDEATHSIG`, so they die with the harness
//! even when it is killed with SIGKILL.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// libfaketime's multithreaded build (Debian package faketime).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// 1-based.
    pub id: u64,
    pub client: SocketAddr,
    /// Where the node listens for peers.
    pub peer: SocketAddr,
    /// Where the other nodes are told it listens: its proxy listener.
    pub peer_proxy: SocketAddr,
    pub dir: PathBuf,
    pub log: PathBuf,
    /// libfaketime's offset for this node ("+0", "-2.5"), re-read every second.
    pub clock_file: PathBuf,
}

#[derive(Clone, Debug)]
pub struct ClusterOpts {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub nodes: u64,
    pub shards: u64,
    pub replicas: u64,
    /// Run every node under libfaketime (needed by the clock fault).
    pub faketime: bool,
    /// Extra `--name value` settings for every node.
    pub settings: Vec<String>,
    /// Extra environment for every node (the planted bug).
    pub env: Vec<(String, String)>,
    /// Nodes laid out beyond `nodes` that start outside the cluster (the member
    /// fault adds them with `--join`).
    pub spares: u64,
}

struct Proc {
    spec: NodeSpec,
    child: Option<Child>,
    paused: bool,
    starts: u32,
    /// In the cluster (an initial member, or added); false for spares and removed
    /// nodes.
    member: bool,
    /// Started with `--join` (added after the start) rather than `--initial-cluster`.
    joined: bool,
    /// Being removed: it exits on its own once drained, which is no crash.
    leaving: bool,
}

pub struct Cluster {
    opts: ClusterOpts,
    procs: BTreeMap<u64, Proc>,
}

/// Free loopback ports, held open until all are chosen so none repeats.
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

impl Cluster {
    /// Lays out the nodes; `peer_proxy` gives each node's proxy address.
    pub fn specs(opts: &ClusterOpts, ports: &[u16], proxy_ports: &[u16]) -> Vec<NodeSpec> {
        (1..=opts.nodes + opts.spares)
            .map(|id| {
                let i = (id - 1) as usize;
                let dir = opts.root.join(format!("n{id}"));
                NodeSpec {
                    id,
                    client: SocketAddr::from(([127, 0, 0, 1], ports[2 * i])),
                    peer: SocketAddr::from(([127, 0, 0, 1], ports[2 * i + 1])),
                    peer_proxy: SocketAddr::from(([127, 0, 0, 1], proxy_ports[i])),
                    log: opts.root.join(format!("n{id}.log")),
                    clock_file: opts.root.join(format!("n{id}.clock")),
                    dir,
                }
            })
            .collect()
    }

    /// Starts every node and waits (up to `ready`) until each says `cluster_state:ok`
    /// and every shard has a leader.
    pub fn start(
        opts: ClusterOpts,
        specs: Vec<NodeSpec>,
        ready: Duration,
    ) -> Result<Cluster, String> {
        let initial = opts.nodes;
        let mut cluster = Cluster {
            opts,
            procs: specs
                .into_iter()
                .map(|spec| {
                    (
                        spec.id,
                        Proc {
                            member: spec.id <= initial,
                            spec,
                            child: None,
                            paused: false,
                            starts: 0,
                            joined: false,
                            leaving: false,
                        },
                    )
                })
                .collect(),
        };
        for id in cluster.all_ids() {
            let p = &cluster.procs[&id];
            std::fs::create_dir_all(&p.spec.dir)
                .map_err(|e| format!("{}: {e}", p.spec.dir.display()))?;
            std::fs::write(&p.spec.clock_file, "+0\n").map_err(|e| e.to_string())?;
        }
        for id in cluster.ids() {
            cluster.start_node(id)?;
        }
        cluster.wait_ready(ready)?;
        Ok(cluster)
    }

    /// The cluster's members (initial or added, not removed).
    pub fn ids(&self) -> Vec<u64> {
        self.procs
            .values()
            .filter(|p| p.member)
            .map(|p| p.spec.id)
            .collect()
    }

    /// Every node laid out, spares and removed ones included.
    pub fn all_ids(&self) -> Vec<u64> {
        self.procs.keys().copied().collect()
    }

    /// Laid-out nodes outside the cluster now (spares, removed nodes).
    pub fn outsiders(&self) -> Vec<u64> {
        self.procs
            .values()
            .filter(|p| !p.member && p.child.is_none())
            .map(|p| p.spec.id)
            .collect()
    }

    /// Asks the cluster (through `via`) to drain and remove node `id`; it exits once
    /// drained.
    pub fn remove(&mut self, id: u64, via: u64) -> Result<(), String> {
        let addr = self.spec(via).client;
        command(
            addr,
            &["SHARDIS", "REMOVENODE", &id.to_string()],
            Duration::from_secs(20),
        )?;
        let p = self.procs.get_mut(&id).ok_or(format!("no node {id}"))?;
        p.member = false;
        p.leaving = true;
        Ok(())
    }

    /// Adds node `id` (a spare or a removed node, its data wiped) with `--join`.
    pub fn add(&mut self, id: u64) -> Result<(), String> {
        let p = self.procs.get_mut(&id).ok_or(format!("no node {id}"))?;
        if p.child.is_some() {
            return Err(format!("node {id} is still running"));
        }
        let _ = std::fs::remove_dir_all(&p.spec.dir);
        std::fs::create_dir_all(&p.spec.dir).map_err(|e| e.to_string())?;
        p.member = true;
        p.joined = true;
        p.leaving = false;
        self.start_node(id)
    }

    pub fn spec(&self, id: u64) -> &NodeSpec {
        &self.procs[&id].spec
    }

    pub fn shards(&self) -> u64 {
        self.opts.shards
    }

    fn initial_cluster(&self) -> String {
        self.procs
            .values()
            .filter(|p| p.spec.id <= self.opts.nodes)
            .map(|p| {
                format!(
                    "{}=127.0.0.1:{}@{}",
                    p.spec.id,
                    p.spec.client.port(),
                    p.spec.peer_proxy.port()
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts (or restarts) node `id` with the same flags and data directory.
    pub fn start_node(&mut self, id: u64) -> Result<(), String> {
        let initial = self.initial_cluster();
        let opts = self.opts.clone();
        // A node added later joins through a running member.
        let via = self
            .procs
            .values()
            .find(|p| p.member && p.child.is_some() && !p.paused && p.spec.id != id)
            .map(|p| p.spec.client.to_string());
        let p = self.procs.get_mut(&id).ok_or(format!("no node {id}"))?;
        let how: Vec<String> = if p.joined {
            vec![
                "--join".into(),
                via.ok_or("no running member to join through")?,
            ]
        } else {
            vec!["--initial-cluster".into(), initial]
        };
        if p.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.spec.log)
            .map_err(|e| format!("{}: {e}", p.spec.log.display()))?;
        let mut cmd = Command::new(&opts.binary);
        cmd.arg("server")
            .args(["--node-id", &id.to_string()])
            .args(["--port", &p.spec.client.port().to_string()])
            .args(["--peer-port", &p.spec.peer.port().to_string()])
            .args(["--peer-advertise-addr", &p.spec.peer_proxy.to_string()])
            .args(["--dir", &p.spec.dir.display().to_string()])
            .args(&how)
            .args(["--shards", &opts.shards.to_string()])
            .args(["--replicas", &opts.replicas.to_string()])
            .args(&opts.settings)
            .env(
                "RUST_LOG",
                std::env::var("SHARDIS_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        if opts.faketime {
            cmd.env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME_TIMESTAMP_FILE", &p.spec.clock_file)
                .env("FAKETIME_CACHE_DURATION", "1")
                // Only the wall clock is skewed, as `date -s` would; timers and
                // Raft's elections run on the monotonic clock, which no NTP steps.
                .env("DONT_FAKE_MONOTONIC", "1");
        }
        // SAFETY: prctl and setpgid are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // Own process group: a Ctrl-C on the terminal reaches only the harness,
                // which then stops the nodes itself.
                libc::setpgid(0, 0);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", opts.binary.display()))?;
        p.child = Some(child);
        p.paused = false;
        p.starts += 1;
        Ok(())
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.procs[&id].child.is_some()
    }

    pub fn is_paused(&self, id: u64) -> bool {
        self.procs[&id].paused
    }

    /// kill -9, and reaps it.
    pub fn kill(&mut self, id: u64) {
        let p = self.procs.get_mut(&id).expect("node");
        if let Some(mut child) = p.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        p.paused = false;
    }

    fn signal(&mut self, id: u64, sig: libc::c_int) -> bool {
        let p = self.procs.get_mut(&id).expect("node");
        match &p.child {
            Some(child) => {
                // SAFETY: plain kill(2) on our own child's pid.
                unsafe { libc::kill(child.id() as libc::pid_t, sig) == 0 }
            }
            None => false,
        }
    }

    pub fn pause(&mut self, id: u64) {
        if self.signal(id, libc::SIGSTOP) {
            self.procs.get_mut(&id).unwrap().paused = true;
        }
    }

    pub fn resume(&mut self, id: u64) {
        self.signal(id, libc::SIGCONT);
        self.procs.get_mut(&id).unwrap().paused = false;
    }

    /// Sets node `id`'s wall clock offset in seconds (read by libfaketime within 1 s).
    pub fn set_clock(&self, id: u64, offset_s: f64) -> Result<(), String> {
        let spec = &self.procs[&id].spec;
        std::fs::write(&spec.clock_file, format!("{offset_s:+.3}\n")).map_err(|e| e.to_string())
    }

    /// Nodes that died on their own (not killed by us): reaped, with their status.
    pub fn crashed(&mut self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for p in self.procs.values_mut() {
            if let Some(child) = p.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    // A removed node exits once drained: that is no crash.
                    if !p.leaving {
                        out.push((p.spec.id, status.to_string()));
                    }
                    p.child = None;
                }
            }
        }
        out
    }

    /// Who leads each shard, as the nodes say (a node's claim to lead counts); shards
    /// with no leader are absent. Paused and dead nodes are skipped.
    pub fn leaders(&self) -> BTreeMap<u64, u64> {
        let mut out = BTreeMap::new();
        for p in self.procs.values() {
            if p.child.is_none() || p.paused {
                continue;
            }
            let Ok(info) = command(p.spec.client, &["INFO", "raft"], Duration::from_millis(500))
            else {
                continue;
            };
            for (shard, fields) in raft_lines(&info) {
                if fields.get("role").map(String::as_str) == Some("leader") && shard != 0 {
                    out.insert(shard, p.spec.id);
                }
            }
        }
        out
    }

    /// Waits until every running node answers `cluster_state:ok` and every shard has
    /// a leader.
    pub fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        loop {
            if let Some((id, status)) = self.crashed().into_iter().next() {
                return Err(format!(
                    "node {id} exited ({status}) while waiting for the cluster; see {}",
                    self.procs[&id].spec.log.display()
                ));
            }
            let mut ok = true;
            for p in self
                .procs
                .values()
                .filter(|p| p.child.is_some() && !p.paused)
            {
                match command(
                    p.spec.client,
                    &["CLUSTER", "INFO"],
                    Duration::from_millis(500),
                ) {
                    Ok(text) if text.contains("cluster_state:ok") => {}
                    Ok(_) => {
                        ok = false;
                        last = format!("node {} says cluster_state is not ok", p.spec.id);
                    }
                    Err(e) => {
                        ok = false;
                        last = format!("node {}: {e}", p.spec.id);
                    }
                }
            }
            let leaders = self.leaders();
            // Splits add shards: at least the initial ones each have a leader.
            if ok && leaders.len() as u64 >= self.opts.shards {
                return Ok(());
            }
            if ok {
                last = format!(
                    "{} of {} shards have a leader",
                    leaders.len(),
                    self.opts.shards
                );
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the cluster was not ready within {within:?}: {last}"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// After the heal: waits (up to `within`) until no replica move is pending and
    /// every shard's Raft voters (on its leader) are the map's replicas; what is still
    /// wrong then (empty: all well). A shard with fewer voters than replicas is one
    /// crash from losing acknowledged writes, which the histories need not show.
    pub fn replica_problems(&self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let problems = self.replica_state();
            if problems.is_empty() || Instant::now() >= deadline {
                return problems;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn replica_state(&self) -> Vec<String> {
        let t = Duration::from_millis(1000);
        let running: Vec<&Proc> = self
            .procs
            .values()
            .filter(|p| p.child.is_some() && !p.paused)
            .collect();
        let Some(status) = running
            .iter()
            .find_map(|p| command(p.spec.client, &["SHARDIS", "STATUS"], t).ok())
        else {
            return vec!["no node answered SHARDIS STATUS".into()];
        };
        let s: serde_json::Value = match serde_json::from_str(&status) {
            Ok(s) => s,
            Err(e) => return vec![format!("SHARDIS STATUS is not JSON: {e}")],
        };
        if s["placement_targets"]
            .as_object()
            .is_some_and(|t| !t.is_empty())
        {
            return vec![format!(
                "replica moves still pending: {}",
                s["placement_targets"]
            )];
        }
        // Each shard's voters, from the node leading it.
        let mut voters: BTreeMap<u64, String> = BTreeMap::new();
        for p in &running {
            let Ok(info) = command(p.spec.client, &["INFO", "raft"], t) else {
                continue;
            };
            for (shard, f) in raft_lines(&info) {
                if shard != 0 && f.get("role").map(String::as_str) == Some("leader") {
                    if let Some(v) = f.get("voters") {
                        voters.insert(shard, v.clone());
                    }
                }
            }
        }
        let mut out = Vec::new();
        for sh in s["shards"].as_array().into_iter().flatten() {
            let id = sh["id"].as_u64().unwrap_or(0);
            let mut want: Vec<u64> = sh["replicas"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_u64())
                .collect();
            want.sort();
            let want = want
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join("|");
            match voters.get(&id) {
                Some(v) if *v == want => {}
                Some(v) => out.push(format!("shard {id}: Raft voters {v}, map replicas {want}")),
                None => out.push(format!("shard {id}: no leader reported its voters")),
            }
        }
        out
    }

    /// Every node back: paused ones continued, dead ones restarted, clocks reset.
    pub fn heal(&mut self) -> Result<(), String> {
        for id in self.all_ids() {
            if self.is_paused(id) {
                self.resume(id);
            }
            self.set_clock(id, 0.0)?;
            if self.procs[&id].member && !self.is_running(id) {
                self.start_node(id)?;
            }
        }
        Ok(())
    }

    /// SIGTERM every node (after SIGCONT), then SIGKILL whatever is left after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        for id in self.all_ids() {
            if self.is_paused(id) {
                self.resume(id);
            }
            self.signal(id, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        for p in self.procs.values_mut() {
            if let Some(mut child) = p.child.take() {
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if Instant::now() >= deadline => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            }
        }
    }

    pub fn data_dirs(&self) -> Vec<&Path> {
        self.procs.values().map(|p| p.spec.dir.as_path()).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.procs.values_mut() {
            if let Some(mut child) = p.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `shardN:k=v,...` lines of `INFO raft`, by shard.
pub fn raft_lines(info: &str) -> Vec<(u64, BTreeMap<String, String>)> {
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.trim_end().split_once(':')?;
            let shard = name.strip_prefix("shard")?.parse().ok()?;
            let fields = rest
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Some((shard, fields))
        })
        .collect()
}

/// One command over a fresh connection; a bulk or simple string reply as text.
pub fn command(addr: SocketAddr, args: &[&str], timeout: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(reply) = parse_reply(&buf)? {
            return Ok(reply);
        }
        if Instant::now() >= deadline {
            return Err("no complete reply in time".into());
        }
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_reply(buf: &[u8]) -> Result<Option<String>, String> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[1..end]).to_string();
    match buf.first() {
        Some(b'+') => Ok(Some(head)),
        Some(b'-') => Err(head),
        Some(b'$') => {
            let len: i64 = head
                .parse()
                .map_err(|_| format!("bad bulk length {head}"))?;
            if len < 0 {
                return Ok(Some(String::new()));
            }
            let start = end + 2;
            let stop = start + len as usize;
            if buf.len() < stop + 2 {
                return Ok(None);
            }
            Ok(Some(String::from_utf8_lossy(&buf[start..stop]).to_string()))
        }
        Some(b':') => Ok(Some(head)),
        _ => Err("unexpected reply type".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_raft_lines() {
        let info = "# Raft\r\nraft_shards:2\r\nshard0:role=follower,term=3\r\nshard2:role=leader,term=4,leader_id=1\r\n";
        let lines = raft_lines(info);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].0, 2);
        assert_eq!(lines[1].1["role"], "leader");
        assert_eq!(lines[1].1["leader_id"], "1");
    }

    #[test]
    fn parses_replies() {
        assert_eq!(parse_reply(b"+OK\r\n").unwrap(), Some("OK".into()));
        assert_eq!(parse_reply(b"$3\r\nab").unwrap(), None);
        assert_eq!(parse_reply(b"$3\r\nabc\r\n").unwrap(), Some("abc".into()));
        assert_eq!(parse_reply(b"-ERR x\r\n").unwrap_err(), "ERR x");
        assert_eq!(parse_reply(b":5\r\n").unwrap(), Some("5".into()));
    }
}
