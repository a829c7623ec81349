//! `jepsen run ...` runs the chaos suite against a fresh cluster; `jepsen check DIR`
//! checks a run directory's histories again. Exit codes: 0 valid, 1 invalid,
//! 2 unknown, 3 harness error.

use clap::{Parser, Subcommand};
use jepsen::checker::Outcome;
use jepsen::history::{read_jsonl, FaultSpan, Op};
use jepsen::run::{self, RunOpts};
use jepsen::workload::{self, Workload};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "jepsen",
    about = "shardis chaos suite: faults, workloads, linearizability"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Start a fresh cluster, run workloads under faults, heal, check.
    Run {
        #[arg(long, default_value_t = 5)]
        nodes: u64,
        #[arg(long, default_value_t = 3)]
        shards: u64,
        #[arg(long, default_value_t = 3)]
        replicas: u64,
        /// Seconds of workload under faults.
        #[arg(long, default_value_t = 60)]
        time: u64,
        /// Faults, comma-separated: kill, pause, partition, clock, latency; or none.
        #[arg(long, default_value = "kill,pause,partition")]
        nemesis: String,
        /// Mean seconds a fault is held, and between faults.
        #[arg(long, default_value_t = 5.0)]
        nemesis_interval: f64,
        /// Workloads, comma-separated: register, set, list-append, ttl.
        #[arg(long, default_value = "register,set")]
        workload: String,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Client processes per workload.
        #[arg(long, default_value_t = 5)]
        concurrency: u64,
        /// Operations per second per workload.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds before an operation's outcome is taken as unknown.
        #[arg(long, default_value_t = 5.0)]
        op_timeout: f64,
        /// Seconds to wait after the heal before the final reads.
        #[arg(long, default_value_t = 5.0)]
        quiet: f64,
        /// Seconds the linearizability search may take before it says unknown.
        #[arg(long, default_value_t = 60.0)]
        check_budget: f64,
        /// The run directory (default target/jepsen/<time>-seed<seed>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The shardis binary (default: build and use target/release/shardis).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Start the nodes with a planted bug the suite must catch: stale-read.
        #[arg(long)]
        planted_bug: Option<String>,
        /// Keep the nodes' data directories.
        #[arg(long)]
        keep_data: bool,
        /// Extra node settings, after `--`: `-- --election-timeout 500`.
        #[arg(last = true)]
        settings: Vec<String>,
    },
    /// Check a run directory's histories again, print the verdicts, redraw the plot.
    Check {
        dir: PathBuf,
        #[arg(long, default_value_t = 60.0)]
        check_budget: f64,
    },
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty() && *x != "none")
        .map(String::from)
        .collect()
}

fn exit_code(o: Outcome) -> i32 {
    match o {
        Outcome::Valid => 0,
        Outcome::Invalid => 1,
        Outcome::Unknown => 2,
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run {
            nodes,
            shards,
            replicas,
            time,
            nemesis,
            nemesis_interval,
            workload,
            seed,
            concurrency,
            rate,
            op_timeout,
            quiet,
            check_budget,
            dir,
            binary,
            planted_bug,
            keep_data,
            settings,
        } => {
            run::install_signal_handlers();
            let opts = RunOpts {
                nodes,
                shards,
                replicas: replicas.min(nodes),
                time: Duration::from_secs(time),
                nemesis: list(&nemesis),
                nemesis_interval: Duration::from_secs_f64(nemesis_interval),
                workloads: list(&workload),
                seed,
                concurrency,
                rate,
                op_timeout: Duration::from_secs_f64(op_timeout),
                quiet: Duration::from_secs_f64(quiet),
                dir,
                binary,
                planted_bug,
                check_budget: Duration::from_secs_f64(check_budget),
                keep_data,
                settings,
            };
            match run::run(opts) {
                Ok((outcome, dir)) => {
                    println!(
                        "verdict: {outcome:?} ({})",
                        dir.join("verdict.json").display()
                    );
                    exit_code(outcome)
                }
                Err(e) => {
                    eprintln!("harness error: {e}");
                    3
                }
            }
        }
        Command::Check { dir, check_budget } => match check_dir(&dir, check_budget) {
            Ok(o) => {
                println!("verdict: {o:?}");
                exit_code(o)
            }
            Err(e) => {
                eprintln!("harness error: {e}");
                3
            }
        },
    };
    std::process::exit(code);
}

fn check_dir(dir: &std::path::Path, budget: f64) -> Result<Outcome, String> {
    let mut histories: Vec<(Arc<dyn Workload>, Vec<Op>)> = Vec::new();
    for name in workload::NAMES {
        let path = dir.join(format!("history-{name}.jsonl"));
        if path.exists() {
            let w: Arc<dyn Workload> = Arc::from(workload::by_name(name).expect("workload"));
            histories.push((w, read_jsonl(&path).map_err(|e| e.to_string())?));
        }
    }
    if histories.is_empty() {
        return Err(format!("no history-*.jsonl in {}", dir.display()));
    }
    let faults: Vec<FaultSpan> =
        read_jsonl(&dir.join("faults.jsonl")).map_err(|e| e.to_string())?;
    let mut all: Vec<Op> = histories
        .iter()
        .flat_map(|(_, h)| h.iter().cloned())
        .collect();
    all.sort_by_key(|o| o.time);
    let svg = jepsen::plot::latency_svg(&all, &faults, &dir.display().to_string());
    std::fs::write(dir.join("latency.svg"), svg).map_err(|e| e.to_string())?;
    let (outcome, checks) = run::check_all(&histories, &[], None, Duration::from_secs_f64(budget));
    for v in checks {
        println!("{:>12}: {:?}: {}", v.checker, v.outcome, v.explanation);
    }
    Ok(outcome)
}
