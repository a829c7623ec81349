//! One run: a fresh cluster behind the fault proxy, the workloads' clients, the fault
//! schedule, heal, quiet period, final reads, checks, and the run directory:
//!
//! - `history-<workload>.jsonl`: every operation (Jepsen's fields)
//! - `faults.jsonl`: the fault timeline
//! - `latency.svg`: latency of every operation over time, faults shaded
//! - `verdict.json`: each checker's verdict and the run's
//! - `n<id>.log`: the nodes' logs (their data directories are removed unless
//!   `--keep-data`)

use crate::checker::{Outcome, Verdict};
use crate::cluster::{free_ports, Cluster, ClusterOpts};
use crate::history::{write_jsonl, FaultSpan, Op};
use crate::nemesis::schedule::Schedule;
use crate::nemesis::{self, Ctx};
use crate::proxy::Proxy;
use crate::rng::Rng;
use crate::workload::client::{self, ClientOpts, Recorder, Topology};
use crate::workload::{self, Workload};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM: the run stops early and cleans up.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

pub fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

#[derive(Clone, Debug)]
pub struct RunOpts {
    pub nodes: u64,
    pub shards: u64,
    pub replicas: u64,
    pub time: Duration,
    pub nemesis: Vec<String>,
    pub nemesis_interval: Duration,
    pub workloads: Vec<String>,
    pub seed: u64,
    pub concurrency: u64,
    pub rate: f64,
    pub op_timeout: Duration,
    pub quiet: Duration,
    pub dir: Option<PathBuf>,
    pub binary: Option<PathBuf>,
    pub planted_bug: Option<String>,
    pub check_budget: Duration,
    pub keep_data: bool,
    pub settings: Vec<String>,
}

#[derive(Serialize)]
pub struct RunVerdict {
    pub outcome: Outcome,
    pub seed: u64,
    pub nodes: u64,
    pub shards: u64,
    pub time_s: f64,
    pub nemesis: Vec<String>,
    pub planted_bug: Option<String>,
    pub faults: usize,
    pub crashes: Vec<String>,
    pub ops: usize,
    pub checks: Vec<Verdict>,
}

/// The workspace root (jepsen/..).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn build_release() -> Result<PathBuf, String> {
    let root = workspace();
    eprintln!("building the release shardis binary (cargo build --release --bin shardis)");
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .args(["build", "--release", "-p", "shardis", "--bin", "shardis"])
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release failed: {status}"));
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    Ok(target.join("release/shardis"))
}

/// Checks each workload's history and combines the verdicts with the crashes and the
/// replica problems the cluster ended with ([`crate::cluster::Cluster::replica_problems`]).
pub fn check_all(
    histories: &[(Arc<dyn Workload>, Vec<Op>)],
    crashes: &[String],
    replicas: Option<&[String]>,
    budget: Duration,
) -> (Outcome, Vec<Verdict>) {
    let mut checks: Vec<Verdict> = histories.iter().map(|(w, h)| w.check(h, budget)).collect();
    match replicas {
        // Re-checking a run directory: the cluster is gone.
        None => {}
        Some([]) => checks.push(Verdict {
            checker: "replicas".into(),
            outcome: Outcome::Valid,
            explanation: "every shard's Raft voters are its map replicas, no move pending".into(),
            stats: Vec::new(),
        }),
        Some(problems) => checks.push(Verdict {
            checker: "replicas".into(),
            outcome: Outcome::Invalid,
            explanation: format!(
                "the cluster ended with shards whose voters are not their replicas: {}",
                problems.join("; ")
            ),
            stats: vec![("shards".into(), problems.len() as u64)],
        }),
    }
    if !crashes.is_empty() {
        checks.push(Verdict {
            checker: "crashes".into(),
            outcome: Outcome::Invalid,
            explanation: format!("nodes exited on their own: {}", crashes.join("; ")),
            stats: vec![("crashes".into(), crashes.len() as u64)],
        });
    }
    let outcome = checks
        .iter()
        .map(|v| v.outcome)
        .max()
        .unwrap_or(Outcome::Unknown);
    (outcome, checks)
}

pub fn run(opts: RunOpts) -> Result<(Outcome, PathBuf), String> {
    let workloads: Vec<Arc<dyn Workload>> = opts
        .workloads
        .iter()
        .map(|n| {
            workload::by_name(n)
                .map(Arc::from)
                .ok_or_else(|| format!("no workload {n} (have {})", workload::NAMES.join(", ")))
        })
        .collect::<Result<_, _>>()?;
    let faults = opts
        .nemesis
        .iter()
        .map(|n| {
            nemesis::by_name(n)
                .ok_or_else(|| format!("no nemesis {n} (have {})", nemesis::NAMES.join(", ")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let faketime = opts.nemesis.iter().any(|n| n == "clock");
    if faketime && !Path::new(crate::cluster::LIBFAKETIME).exists() {
        return Err(format!(
            "the clock nemesis needs libfaketime ({}): apt-get install faketime",
            crate::cluster::LIBFAKETIME
        ));
    }
    let binary = match &opts.binary {
        Some(b) => b.clone(),
        None => build_release()?,
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dir = opts.dir.clone().unwrap_or_else(|| {
        workspace()
            .join("target/jepsen")
            .join(format!("{stamp}-seed{}", opts.seed))
    });
    if dir.exists() {
        return Err(format!(
            "{} exists: a run needs a new directory",
            dir.display()
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    eprintln!("run directory: {}", dir.display());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // The member fault adds nodes: one spare beyond the initial ones.
    let spares = u64::from(opts.nemesis.iter().any(|f| f == "member"));
    let n = (opts.nodes + spares) as usize;
    let ports = free_ports(3 * n).map_err(|e| format!("free ports: {e}"))?;
    let copts = ClusterOpts {
        binary,
        root: dir.clone(),
        nodes: opts.nodes,
        shards: opts.shards,
        replicas: opts.replicas,
        faketime,
        settings: opts.settings.clone(),
        env: opts
            .planted_bug
            .iter()
            .map(|b| ("SHARDIS_PLANTED_BUG".to_string(), b.clone()))
            .collect(),
        spares,
    };
    let specs = Cluster::specs(&copts, &ports[..2 * n], &ports[2 * n..]);
    let proxy = rt
        .block_on(Proxy::start(
            &specs
                .iter()
                .map(|s| (s.id, s.peer_proxy, s.peer))
                .collect::<Vec<_>>(),
        ))
        .map_err(|e| format!("proxy: {e}"))?;
    let result = (|| -> Result<(Outcome, PathBuf), String> {
        let mut cluster = Cluster::start(copts, specs.clone(), Duration::from_secs(60))?;
        eprintln!(
            "cluster up: {} nodes, {} shards, client ports {}",
            opts.nodes,
            opts.shards,
            specs
                .iter()
                .map(|s| s.client.port().to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let topo = Arc::new(
            rt.block_on(Topology::discover(
                specs
                    .iter()
                    .filter(|s| s.id <= opts.nodes)
                    .map(|s| (s.id, s.client))
                    .collect::<Vec<(u64, SocketAddr)>>(),
            ))?,
        );

        let mut rng = Rng::new(opts.seed);
        let origin = Instant::now();
        let until = origin + opts.time;
        let stop = Arc::new(AtomicBool::new(false));
        let recorders: Vec<Arc<Recorder>> = workloads
            .iter()
            .map(|_| Arc::new(Recorder::new(origin)))
            .collect();
        let clients: Vec<_> = workloads
            .iter()
            .zip(&recorders)
            .enumerate()
            .map(|(i, (w, rec))| {
                rt.spawn(client::run(
                    w.clone(),
                    topo.clone(),
                    rec.clone(),
                    ClientOpts {
                        concurrency: opts.concurrency,
                        rate: opts.rate,
                        op_timeout: opts.op_timeout,
                        first_process: i as u64 * 1_000_000,
                    },
                    until,
                    stop.clone(),
                    rng.fork(100 + i as u64),
                ))
            })
            .collect();

        let mut schedule = Schedule {
            faults,
            interval: opts.nemesis_interval,
        };
        let mut nemesis_rng = rng.fork(1);
        let timeline = {
            let mut ctx = Ctx {
                cluster: &mut cluster,
                net: &proxy,
                rng: &mut nemesis_rng,
            };
            schedule.run(&mut ctx, origin, until, &INTERRUPTED)
        };
        if INTERRUPTED.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
        }
        // Heal everything, then let the clients finish their last operations.
        let heal_at = origin.elapsed().as_nanos() as u64;
        eprintln!(
            "[{:7.2}s] healing: network, paused and dead nodes, clocks",
            heal_at as f64 / 1e9
        );
        proxy.heal();
        proxy.clear_delays();
        cluster.heal()?;
        for c in clients {
            rt.block_on(c).map_err(|e| format!("client task: {e}"))?;
        }
        if INTERRUPTED.load(Ordering::Relaxed) {
            return Err("interrupted".into());
        }
        cluster.wait_ready(Duration::from_secs(60))?;
        eprintln!("healed; quiet for {:?}", opts.quiet);
        std::thread::sleep(opts.quiet);
        for (i, (w, rec)) in workloads.iter().zip(&recorders).enumerate() {
            rt.block_on(client::final_reads(
                w.as_ref(),
                &topo,
                rec,
                i as u64 * 1_000_000 + 900_000,
                Duration::from_secs(60),
            ))?;
        }
        let replicas = cluster.replica_problems(Duration::from_secs(60));
        let mut crashes: Vec<String> = timeline
            .crashes
            .iter()
            .map(|(id, status, at)| format!("node {id} at {:.2}s: {status}", *at as f64 / 1e9))
            .collect();
        crashes.extend(
            cluster
                .crashed()
                .into_iter()
                .map(|(id, status)| format!("node {id} after the heal: {status}")),
        );
        cluster.stop(Duration::from_secs(10));
        let histories: Vec<(Arc<dyn Workload>, Vec<Op>)> = workloads
            .iter()
            .cloned()
            .zip(recorders.iter().map(|r| r.take()))
            .collect();
        write_outputs(
            &dir,
            &opts,
            &histories,
            &timeline.spans,
            &crashes,
            &replicas,
        )
        .map(|o| (o, dir.clone()))
        .inspect(|_| {
            if !opts.keep_data {
                for d in cluster.data_dirs() {
                    let _ = std::fs::remove_dir_all(d);
                }
            }
        })
    })();
    proxy.shutdown();
    result
}

fn write_outputs(
    dir: &Path,
    opts: &RunOpts,
    histories: &[(Arc<dyn Workload>, Vec<Op>)],
    spans: &[FaultSpan],
    crashes: &[String],
    replicas: &[String],
) -> Result<Outcome, String> {
    let io = |e: std::io::Error| e.to_string();
    for (w, h) in histories {
        write_jsonl(&dir.join(format!("history-{}.jsonl", w.name())), h).map_err(io)?;
    }
    write_jsonl(&dir.join("faults.jsonl"), spans).map_err(io)?;
    let mut all: Vec<Op> = histories
        .iter()
        .flat_map(|(_, h)| h.iter().cloned())
        .collect();
    all.sort_by_key(|o| o.time);
    let title = format!(
        "shardis: {} nodes, {} shards, {} / {}, seed {}",
        opts.nodes,
        opts.shards,
        opts.workloads.join(","),
        opts.nemesis.join(","),
        opts.seed
    );
    std::fs::write(
        dir.join("latency.svg"),
        crate::plot::latency_svg(&all, spans, &title),
    )
    .map_err(io)?;
    eprintln!("checking {} operations", all.len());
    let (outcome, checks) = check_all(histories, crashes, Some(replicas), opts.check_budget);
    let verdict = RunVerdict {
        outcome,
        seed: opts.seed,
        nodes: opts.nodes,
        shards: opts.shards,
        time_s: opts.time.as_secs_f64(),
        nemesis: opts.nemesis.clone(),
        planted_bug: opts.planted_bug.clone(),
        faults: spans.len(),
        crashes: crashes.to_vec(),
        ops: all.len(),
        checks,
    };
    let text = serde_json::to_string_pretty(&verdict).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("verdict.json"), &text).map_err(io)?;
    for v in &verdict.checks {
        eprintln!("{:>12}: {:?}: {}", v.checker, v.outcome, v.explanation);
        if !v.stats.is_empty() {
            eprintln!(
                "{:>12}  {}",
                "",
                v.stats
                    .iter()
                    .map(|(k, n)| format!("{k}={n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
    Ok(outcome)
}
