//! `shardis admin`: the operator's client. It talks RESP to any node (`SHARDIS ...`,
//! see node/admin.rs), prints results for people or, with `--json`, for scripts, and
//! follows long operations (a slot move) with progress until they finish. Exit codes:
//! 0 done, 1 the cluster refused or failed the operation, 2 it could not be reached.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One command to `addr` from async code (a joining node): its reply, as text.
pub async fn call_async(addr: &str, args: &[String]) -> Result<String, String> {
    let (addr, args) = (addr.to_string(), args.to_vec());
    tokio::task::spawn_blocking(move || {
        let mut c = Conn::connect(&addr)?;
        let refs: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
        match c.call(&refs)? {
            Answer::Error(e) => Err(e),
            other => Ok(format!("{other:?}")),
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A reply as far as the admin client needs one.
#[derive(Debug)]
pub enum Answer {
    Ok(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Error(String),
    Array(Vec<Answer>),
}

pub struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    pub fn connect(addr: &str) -> Result<Conn, String> {
        let sa = std::net::ToSocketAddrs::to_socket_addrs(addr)
            .map_err(|e| format!("bad address {addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("bad address {addr}"))?;
        let s = TcpStream::connect_timeout(&sa, Duration::from_secs(5))
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let w = s.try_clone().map_err(|e| e.to_string())?;
        Ok(Conn {
            r: BufReader::new(s),
            w,
        })
    }

    pub fn call(&mut self, args: &[&str]) -> Result<Answer, String> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.w.write_all(&out).map_err(|e| e.to_string())?;
        self.read()
    }

    fn line(&mut self) -> Result<String, String> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) => Err("the node closed the connection".into()),
            Ok(_) => Ok(l.trim_end_matches(['\r', '\n']).to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn read(&mut self) -> Result<Answer, String> {
        let l = self.line()?;
        let (t, rest) = l.split_at(1.min(l.len()));
        let n = || {
            rest.parse::<i64>()
                .map_err(|_| format!("bad reply line '{l}'"))
        };
        Ok(match t {
            "+" => Answer::Ok(rest.to_string()),
            "-" => Answer::Error(rest.to_string()),
            ":" => Answer::Int(n()?),
            "$" => {
                let len = n()?;
                if len < 0 {
                    return Ok(Answer::Nil);
                }
                let mut buf = vec![0u8; len as usize + 2];
                std::io::Read::read_exact(&mut self.r, &mut buf).map_err(|e| e.to_string())?;
                buf.truncate(len as usize);
                Answer::Bulk(buf)
            }
            "*" => {
                let len = n()?;
                let mut v = Vec::new();
                for _ in 0..len.max(0) {
                    v.push(self.read()?);
                }
                Answer::Array(v)
            }
            _ => return Err(format!("unexpected reply '{l}'")),
        })
    }

    fn json(&mut self, args: &[&str]) -> Result<serde_json::Value, Failure> {
        match self.call(args).map_err(Failure::Unreachable)? {
            Answer::Bulk(b) => {
                serde_json::from_slice(&b).map_err(|e| Failure::Refused(e.to_string()))
            }
            Answer::Error(e) => Err(Failure::Refused(e)),
            other => Err(Failure::Refused(format!("unexpected answer {other:?}"))),
        }
    }
}

pub enum Failure {
    /// The node could not be reached or talked to (exit 2).
    Unreachable(String),
    /// The cluster answered with an error (exit 1).
    Refused(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Unreachable(_) => 2,
            Failure::Refused(_) => 1,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Unreachable(m) | Failure::Refused(m) => m,
        }
    }
}

/// What `shardis admin` was asked to do.
pub enum Action {
    Status,
    Reshard { start: u16, end: u16, to: u64 },
    Move { count: u32, from: u64, to: u64 },
    Split { shard: u64 },
    AddNode { addr: String },
    RemoveNode { id: u64 },
    Rebalance,
    Failover { shard: u64, to: Option<u64> },
}

pub struct Options {
    pub node: String,
    pub json: bool,
    /// Start the operation and return without following it.
    pub no_wait: bool,
    pub timeout: Duration,
}

pub fn run(action: Action, o: &Options) -> Result<(), Failure> {
    let mut c = Conn::connect(&o.node).map_err(Failure::Unreachable)?;
    let id = match action {
        Action::Status => {
            let s = c.json(&["SHARDIS", "STATUS"])?;
            if o.json {
                println!("{s}");
            } else {
                print_status(&s);
            }
            return Ok(());
        }
        Action::Reshard { start, end, to } => start_migration(
            &mut c,
            &[
                "SHARDIS",
                "RESHARD",
                &start.to_string(),
                &end.to_string(),
                &to.to_string(),
            ],
        )?,
        Action::Move { count, from, to } => start_migration(
            &mut c,
            &[
                "SHARDIS",
                "MOVE",
                &count.to_string(),
                &from.to_string(),
                &to.to_string(),
            ],
        )?,
        Action::Split { shard } => {
            start_migration(&mut c, &["SHARDIS", "SPLIT", &shard.to_string()])?
        }
        Action::AddNode { addr } => return add_node(&mut c, &addr, o),
        Action::RemoveNode { id } => {
            expect_ok(c.call(&["SHARDIS", "REMOVENODE", &id.to_string()]))?;
            return wait_membership(&mut c, o, &format!("node {id} drained and removed"), |s| {
                !s["nodes"]
                    .as_array()
                    .is_some_and(|n| n.iter().any(|n| n["id"].as_u64() == Some(id)))
            });
        }
        Action::Rebalance => {
            expect_int(c.call(&["SHARDIS", "REBALANCE"]))?;
            return wait_membership(&mut c, o, "replicas on their placement", |s| {
                s["balanced"].as_bool() == Some(true)
            });
        }
        Action::Failover { shard, to } => return failover(&mut c, shard, to, o),
    };
    if o.no_wait {
        if o.json {
            println!(
                "{}",
                serde_json::json!({"migration": id, "state": "started"})
            );
        } else {
            println!("migration {id} started");
        }
        return Ok(());
    }
    follow(&mut c, id, o)
}

fn expect_ok(r: Result<Answer, String>) -> Result<(), Failure> {
    match r.map_err(Failure::Unreachable)? {
        Answer::Ok(_) => Ok(()),
        Answer::Error(e) => Err(Failure::Refused(e)),
        other => Err(Failure::Refused(format!("unexpected answer {other:?}"))),
    }
}

fn expect_int(r: Result<Answer, String>) -> Result<i64, Failure> {
    match r.map_err(Failure::Unreachable)? {
        Answer::Int(n) => Ok(n),
        Answer::Error(e) => Err(Failure::Refused(e)),
        other => Err(Failure::Refused(format!("unexpected answer {other:?}"))),
    }
}

/// Follows a membership change until `done(status)`, printing the replica moves
/// still to make.
fn wait_membership(
    c: &mut Conn,
    o: &Options,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<(), Failure> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let s = c.json(&["SHARDIS", "STATUS"])?;
        if o.no_wait || done(&s) {
            let secs = start.elapsed().as_secs_f64();
            let state = if o.no_wait { "started" } else { "done" };
            if o.json {
                println!(
                    "{}",
                    serde_json::json!({"state": state, "seconds": secs, "what": what})
                );
            } else if o.no_wait {
                println!("started: {what}");
            } else {
                println!("done in {secs:.1} s: {what}");
            }
            return Ok(());
        }
        if start.elapsed() > o.timeout {
            return Err(Failure::Refused(format!(
                "not done after {:?}: {what}; it goes on in the cluster: see `shardis admin status`",
                o.timeout
            )));
        }
        if !o.json {
            let pending = s["placement_targets"]
                .as_object()
                .map(|t| t.len())
                .unwrap_or(0);
            let line = format!("waiting for: {what} ({pending} shards still moving replicas)");
            if line != last {
                eprintln!("{line}");
                last = line;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn add_node(c: &mut Conn, addr: &str, o: &Options) -> Result<(), Failure> {
    let mut new = Conn::connect(addr).map_err(Failure::Unreachable)?;
    let me = new.json(&["SHARDIS", "WHOAMI"])?;
    let id = me["id"]
        .as_u64()
        .ok_or_else(|| Failure::Refused("the new node has no id".into()))?;
    if !me["member"].as_bool().unwrap_or(false) {
        let client = me["client"].as_str().unwrap_or_default().to_string();
        let peer = me["peer"].as_str().unwrap_or_default().to_string();
        expect_ok(c.call(&["SHARDIS", "JOIN", &id.to_string(), &client, &peer]))?;
    }
    let joined = |s: &serde_json::Value| {
        s["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["id"].as_u64() == Some(id)))
    };
    let s = c.json(&["SHARDIS", "STATUS"])?;
    if s["auto_rebalance"].as_bool() == Some(false) {
        // Nothing moves on its own: report the join; `rebalance` moves replicas.
        let what =
            format!("node {id} joined (auto-rebalance is off: run `shardis admin rebalance`)");
        return wait_membership(c, o, &what, joined);
    }
    wait_membership(
        c,
        o,
        &format!("node {id} joined and replicas balanced"),
        |s| joined(s) && s["balanced"].as_bool() == Some(true),
    )
}

fn failover(c: &mut Conn, shard: u64, to: Option<u64>, o: &Options) -> Result<(), Failure> {
    let s = c.json(&["SHARDIS", "STATUS"])?;
    let entry = s["shards"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"].as_u64() == Some(shard)).cloned())
        .ok_or_else(|| Failure::Refused(format!("ERR unknown shard {shard}")))?;
    let leader = entry["leader"]
        .as_u64()
        .ok_or_else(|| Failure::Refused(format!("shard {shard} has no leader now; retry")))?;
    let addr = s["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["id"].as_u64() == Some(leader)))
        .and_then(|n| n["client"].as_str())
        .ok_or_else(|| Failure::Refused(format!("leader node {leader} has no address")))?
        .to_string();
    let mut l = Conn::connect(&addr).map_err(Failure::Unreachable)?;
    let (shard_s, to_s) = (shard.to_string(), to.map(|t| t.to_string()));
    let mut args = vec!["SHARDIS", "FAILOVER", shard_s.as_str()];
    if let Some(t) = &to_s {
        args.push(t);
    }
    expect_ok(l.call(&args))?;
    if o.json {
        println!(
            "{}",
            serde_json::json!({"shard": shard, "from": leader, "to": to, "state": "done"})
        );
    } else {
        println!("shard {shard}: leadership moved off node {leader}");
    }
    Ok(())
}

fn start_migration(c: &mut Conn, args: &[&str]) -> Result<u64, Failure> {
    match c.call(args).map_err(Failure::Unreachable)? {
        Answer::Int(id) => Ok(id as u64),
        Answer::Error(e) => Err(Failure::Refused(e)),
        other => Err(Failure::Refused(format!("unexpected answer {other:?}"))),
    }
}

/// Progress of migration `id` from whichever node drives it.
fn progress_of(status: &serde_json::Value, id: u64) -> Option<serde_json::Value> {
    for n in status["nodes"].as_array()? {
        let Some(addr) = n["client"].as_str() else {
            continue;
        };
        let Ok(mut c) = Conn::connect(addr) else {
            continue;
        };
        let Ok(p) = c.json(&["SHARDIS", "PROGRESS"]) else {
            continue;
        };
        if let Some(x) = p.as_array()?.iter().find(|x| x["id"].as_u64() == Some(id)) {
            return Some(x.clone());
        }
    }
    None
}

/// Follows a migration until it leaves the map, printing progress.
fn follow(c: &mut Conn, id: u64, o: &Options) -> Result<(), Failure> {
    let start = Instant::now();
    let mut last_line = String::new();
    loop {
        let s = c.json(&["SHARDIS", "STATUS"])?;
        let m = s["migrations"]
            .as_array()
            .and_then(|a| a.iter().find(|m| m["id"].as_u64() == Some(id)).cloned());
        let p = progress_of(&s, id);
        let Some(m) = m else {
            let elapsed = start.elapsed().as_secs_f64();
            if o.json {
                let mut out =
                    serde_json::json!({"migration": id, "state": "done", "seconds": elapsed});
                if let Some(p) = p {
                    out["keys_moved"] = p["keys_copied"].clone();
                    out["pause_us"] = p["pause_us"].clone();
                }
                println!("{out}");
            } else {
                let extra = p
                    .map(|p| {
                        format!(
                            ", {} keys, longest write pause {:.1} ms",
                            p["keys_copied"].as_u64().unwrap_or(0),
                            p["pause_us"].as_u64().unwrap_or(0) as f64 / 1000.0
                        )
                    })
                    .unwrap_or_default();
                println!("migration {id} done in {elapsed:.1} s{extra}");
            }
            return Ok(());
        };
        if start.elapsed() > o.timeout {
            return Err(Failure::Refused(format!(
                "migration {id} still in phase {} after {:?} (attempt {}); it goes on in the cluster: see `shardis admin status`",
                m["phase"], o.timeout, m["attempt"]
            )));
        }
        if !o.json {
            let line = match &p {
                Some(p) => {
                    let (done, total) = (
                        p["keys_copied"].as_u64().unwrap_or(0),
                        p["keys_total"].as_u64().unwrap_or(0),
                    );
                    let secs = (crate::shard::now_ms()
                        .saturating_sub(p["started_ms"].as_u64().unwrap_or(0)))
                        as f64
                        / 1000.0;
                    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
                    let eta = if rate > 0.0 && total > done {
                        format!("{:.0} s", (total - done) as f64 / rate)
                    } else {
                        "-".into()
                    };
                    format!(
                        "migration {id}: {} {done}/{total} keys, {rate:.0} keys/s, ETA {eta} (attempt {})",
                        p["phase"].as_str().unwrap_or("?"),
                        p["attempt"]
                    )
                }
                None => format!(
                    "migration {id}: {} (attempt {})",
                    m["phase"].as_str().unwrap_or("?"),
                    m["attempt"]
                ),
            };
            if line != last_line {
                eprintln!("{line}");
                last_line = line;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn print_status(s: &serde_json::Value) {
    println!(
        "cluster epoch {}  (answered by node {}; all slots served: {})",
        s["epoch"], s["node"], s["all_slots_served"]
    );
    println!("nodes:");
    for n in s["nodes"].as_array().into_iter().flatten() {
        println!(
            "  {:>3}  client {}  peer {}",
            n["id"],
            n["client"].as_str().unwrap_or("?"),
            n["peer"].as_str().unwrap_or("?")
        );
    }
    println!("shards:");
    for sh in s["shards"].as_array().into_iter().flatten() {
        let ranges: Vec<&str> = sh["ranges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str())
            .collect();
        let lag = sh
            .get("replication_lag")
            .map(|l| format!("  lag {l}"))
            .unwrap_or_default();
        println!(
            "  {:>3}  leader {}  replicas {}  {} slots [{}]  keys {}{lag}",
            sh["id"],
            sh["leader"],
            sh["replicas"],
            sh["slots"],
            ranges.join(" "),
            sh.get("keys_here")
                .map(|k| k.to_string())
                .unwrap_or_else(|| "-".into()),
        );
    }
    let migrations = s["migrations"].as_array().cloned().unwrap_or_default();
    if migrations.is_empty() {
        println!("migrations: none");
    } else {
        println!("migrations:");
        for m in migrations {
            println!(
                "  {:>3}  slots {}-{}  shard {} -> {}  {} (attempt {})",
                m["id"],
                m["start"],
                m["end"],
                m["from"],
                m["to"],
                m["phase"].as_str().unwrap_or("?"),
                m["attempt"]
            );
        }
    }
}
