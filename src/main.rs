//! shardis command line.

use clap::{Parser, Subcommand};
use shardis::keyspace::memory::CountingAlloc;
use shardis::server::config::Config;
use std::path::PathBuf;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: CountingAlloc<tikv_jemallocator::Jemalloc> =
    CountingAlloc(tikv_jemallocator::Jemalloc);

#[derive(Parser)]
#[command(name = "shardis", version, about = "A Redis-compatible data tier")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node serving RESP.
    ///
    /// Settings use redis.conf names, in a file (--config) and/or as flags that
    /// override it: `shardis server --port 7000 --maxmemory 100mb`.
    Server {
        /// A redis.conf-style file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Any setting as `--name value...`, e.g. `--maxmemory-policy allkeys-lru`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "--NAME VALUE"
        )]
        settings: Vec<String>,
    },
    /// Administer a running cluster through any of its nodes.
    Admin {
        /// A node's client address.
        #[arg(long, default_value = "127.0.0.1:7001")]
        node: String,
        /// Machine-readable output (one JSON document).
        #[arg(long, global = true)]
        json: bool,
        /// Start a long operation and return without following its progress.
        #[arg(long, global = true)]
        no_wait: bool,
        /// Give up following a long operation after this many seconds (it goes on).
        #[arg(long, global = true, default_value_t = 3600)]
        timeout: u64,
        #[command(subcommand)]
        action: AdminAction,
    },
}

#[derive(Subcommand)]
enum AdminAction {
    /// Nodes, shards (replicas, leader, slot ranges, keys, replication lag) and
    /// migrations in flight.
    Status,
    /// Move slots to a shard: `--slots A-B --to SHARD`, or `--count N --from S --to SHARD`
    /// (the last N slots of shard S).
    Reshard {
        #[arg(long, value_name = "A-B")]
        slots: Option<String>,
        #[arg(long)]
        count: Option<u32>,
        #[arg(long)]
        from: Option<u64>,
        #[arg(long)]
        to: u64,
    },
    /// A new shard takes the upper half of SHARD's largest slot range.
    Split { shard: u64 },
    /// Add a started node (its client address; it needs --node-id) to the cluster;
    /// replicas move to it (auto-rebalance) and the command waits for that.
    AddNode { addr: String },
    /// Drain a node (its replicas and leaderships move away), then remove it; it stops.
    RemoveNode { id: u64 },
    /// Move shard replicas to their placement on the active nodes, and wait.
    Rebalance,
    /// Hand a shard's leadership to another replica (`--to NODE`, or the most caught up).
    Failover {
        shard: u64,
        #[arg(long)]
        to: Option<u64>,
    },
}

fn admin_action(a: AdminAction) -> Result<shardis::admin::Action, String> {
    use shardis::admin::Action;
    Ok(match a {
        AdminAction::Status => Action::Status,
        AdminAction::Split { shard } => Action::Split { shard },
        AdminAction::AddNode { addr } => Action::AddNode { addr },
        AdminAction::RemoveNode { id } => Action::RemoveNode { id },
        AdminAction::Rebalance => Action::Rebalance,
        AdminAction::Failover { shard, to } => Action::Failover { shard, to },
        AdminAction::Reshard {
            slots: Some(r),
            count: None,
            from: None,
            to,
        } => {
            let (a, b) = r.split_once('-').unwrap_or((&r, &r));
            let parse = |x: &str| {
                x.trim()
                    .parse::<u16>()
                    .map_err(|_| format!("--slots: bad slot '{x}'"))
            };
            Action::Reshard {
                start: parse(a)?,
                end: parse(b)?,
                to,
            }
        }
        AdminAction::Reshard {
            slots: None,
            count: Some(count),
            from: Some(from),
            to,
        } => Action::Move { count, from, to },
        AdminAction::Reshard { .. } => {
            return Err(
                "reshard takes either --slots A-B --to SHARD or --count N --from SHARD --to SHARD"
                    .into(),
            )
        }
    })
}

fn build_config(file: Option<PathBuf>, settings: &[String]) -> Result<Config, String> {
    let mut config = Config::default();
    if let Some(path) = file {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        config.load_file(&text)?;
    }
    let mut i = 0;
    while i < settings.len() {
        let name = settings[i]
            .strip_prefix("--")
            .ok_or_else(|| format!("expected --name, got '{}'", settings[i]))?;
        let mut values = Vec::new();
        i += 1;
        while i < settings.len() && !settings[i].starts_with("--") {
            values.push(settings[i].clone());
            i += 1;
        }
        config
            .set(name, &values.join(" "), true)
            .map_err(|e| format!("--{name}: {e}"))?;
    }
    Ok(config)
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Admin {
            node,
            json,
            no_wait,
            timeout,
            action,
        } => {
            let action = match admin_action(action) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("shardis admin: {e}");
                    std::process::exit(2);
                }
            };
            let o = shardis::admin::Options {
                node,
                json,
                no_wait,
                timeout: std::time::Duration::from_secs(timeout),
            };
            if let Err(f) = shardis::admin::run(action, &o) {
                if json {
                    println!("{}", serde_json::json!({"error": f.message()}));
                }
                eprintln!("shardis admin: {}", f.message());
                std::process::exit(f.exit_code());
            }
        }
        Command::Server { config, settings } => {
            let config = match build_config(config, &settings) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("shardis: {e}");
                    std::process::exit(1);
                }
            };
            let filter = match config.loglevel.as_str() {
                "debug" => "debug",
                "verbose" => "info",
                "warning" => "warn",
                "nothing" => "off",
                _ => "info",
            };
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| filter.into()),
                )
                .with_writer(std::io::stderr)
                // Colours only on a terminal: node logs usually go to files.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            // One serving thread (the default) runs on a current-thread runtime: no
            // cross-thread wake-ups or work stealing, like Redis's single event loop.
            let mut builder = if config.io_threads <= 1 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(config.io_threads as usize);
                b
            };
            let rt = builder.enable_all().build().expect("tokio runtime");
            if let Err(e) = rt.block_on(shardis::node::run(config)) {
                tracing::error!(error = %e, "server failed");
                std::process::exit(1);
            }
        }
    }
}
