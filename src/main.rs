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
