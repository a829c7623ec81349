//! The RESP server: listener, connections, pipelining, MULTI/EXEC and WATCH, blocking
//! pops, pub/sub, and the server-side commands (CLIENT, CONFIG, INFO, ...).
//!
//! Startup order: config, shard, listener, background tasks (cron). Shutdown is the
//! reverse: stop accepting, signal connections, stop cron.

pub mod client;
pub mod commands;
pub mod config;
mod connection;
mod dispatch;
pub mod pubsub;
pub mod slowlog;
pub mod stats;
pub mod waiters;

use crate::router::ClusterView;
use crate::shard::replica::Replica;
use crate::shard::{Clock, Shard, ShardSettings, ShardState};
use client::Clients;
use config::Config;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use waiters::Waiters;

/// Produces the node's current [`ClusterView`].
pub type ClusterViewFn = Box<dyn Fn() -> ClusterView + Send + Sync>;

/// Settings read on every command, kept out of the config lock.
#[derive(Default)]
pub struct HotSettings {
    pub maxmemory: AtomicU64,
    pub slowlog_slower_than: AtomicI64,
}

pub struct Server {
    /// The shard's clock, refreshed by each connection per read batch and by cron.
    pub clock: Clock,
    pub config: RwLock<Config>,
    pub hot: HotSettings,
    pub shard: Arc<Shard>,
    /// Set in cluster mode: the shard is replicated and writes go through Raft.
    replica: OnceLock<Arc<Replica>>,
    /// Set in cluster mode: what this node knows of the cluster (CLUSTER commands).
    cluster_view_fn: OnceLock<ClusterViewFn>,
    pub waiters: Mutex<Waiters>,
    pub clients: Clients,
    pub pubsub: pubsub::PubSub,
    pub stats: stats::Stats,
    pub slowlog: Mutex<slowlog::SlowLog>,
    pub started: Instant,
    pub run_id: String,
    pub tcp_port: u16,
    shutdown_tx: watch::Sender<bool>,
    shutting_down: AtomicBool,
}

impl Server {
    pub fn new(config: Config, tcp_port: u16) -> Arc<Server> {
        let clock = Clock::cached();
        let (shutdown_tx, _) = watch::channel(false);
        let server = Arc::new(Server {
            shard: Arc::new(Shard::with(clock.clone(), |_| {
                crate::keyspace::memory::used_memory()
            })),
            replica: OnceLock::new(),
            cluster_view_fn: OnceLock::new(),
            clock,
            waiters: Mutex::new(Waiters::default()),
            clients: Clients::default(),
            pubsub: pubsub::PubSub::default(),
            stats: stats::Stats::default(),
            slowlog: Mutex::new(slowlog::SlowLog::default()),
            started: Instant::now(),
            run_id: run_id(),
            tcp_port,
            config: RwLock::new(config),
            hot: HotSettings::default(),
            shutdown_tx,
            shutting_down: AtomicBool::new(false),
        });
        server.apply_config();
        server
    }

    /// The shard's replica in cluster mode; None on a single in-memory node.
    pub fn replica(&self) -> Option<&Arc<Replica>> {
        self.replica.get()
    }

    pub fn set_replica(&self, r: Arc<Replica>) {
        let _ = self.replica.set(r);
    }

    /// Installs the source of [`Server::cluster_view`] (cluster mode; set once).
    pub fn set_cluster_view_fn(&self, f: ClusterViewFn) {
        let _ = self.cluster_view_fn.set(f);
    }

    /// What this node knows of the cluster now; None on a single in-memory node,
    /// where CLUSTER answers as Redis without cluster support.
    pub fn cluster_view(&self) -> Option<ClusterView> {
        self.cluster_view_fn.get().map(|f| f())
    }

    pub fn config(&self) -> std::sync::RwLockReadGuard<'_, Config> {
        self.config.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Pushes settings the shard depends on after a config change.
    pub fn apply_config(&self) {
        let c = self.config().clone();
        self.hot.maxmemory.store(c.maxmemory, Ordering::Relaxed);
        self.hot
            .slowlog_slower_than
            .store(c.slowlog_log_slower_than, Ordering::Relaxed);
        let mut st = self.shard.lock();
        let mut s: ShardSettings = st.settings();
        s.maxmemory = c.maxmemory;
        s.policy = c.maxmemory_policy;
        s.samples = c.maxmemory_samples;
        s.access.lfu = c.maxmemory_policy.is_lfu();
        s.access.lfu_log_factor = c.lfu_log_factor;
        s.access.lfu_decay_time = c.lfu_decay_time;
        s.limits.max_string_len = c.proto_max_bulk_len as usize;
        st.set_settings(s);
    }

    /// Processes keys changed by the last write(s): marks WATCHers and serves blocked
    /// clients in the order they blocked. Serving a client is itself a write that may
    /// change more keys (BLMOVE), so this runs until nothing changes.
    pub fn after_write(&self, st: &mut ShardState) {
        loop {
            let dirty = st.ks.take_dirty();
            if dirty.is_empty() {
                return;
            }
            let mut w = self.waiters.lock().unwrap();
            let mut seen: Vec<&[u8]> = Vec::new();
            for key in &dirty {
                if seen.contains(&&key[..]) {
                    continue;
                }
                seen.push(key);
                let tickets = w.changed(key);
                if self.replica().is_some() {
                    // Replicated: a wake-up is a retry. The woken client proposes its pop
                    // through the log like any write (never applied here on the side).
                    for ticket in tickets {
                        if let Some(b) = w.unblock(&mut st.ks, ticket) {
                            let _ = b.reply.send(None);
                        }
                    }
                    continue;
                }
                for ticket in tickets {
                    let Some(argv) = w.argv_of(ticket) else {
                        continue;
                    };
                    let waits_for = blocked_type(&argv[0]);
                    let reply = st.write(vec![argv]).pop().expect("one reply per command");
                    if dispatch::is_empty_pop(&reply) {
                        break; // nothing left for the next in line either
                    }
                    // As Redis, a key of another type than the client waits for leaves
                    // it blocked; on a key of its type an error (BLMOVE to a
                    // destination of another type) is its answer, and the next in
                    // line is still served.
                    if reply.is_error()
                        && st.ks.peek(&key[..], st.now()).map(|e| e.value.type_name())
                            != Some(waits_for)
                    {
                        continue;
                    }
                    if let Some(b) = w.unblock(&mut st.ks, ticket) {
                        let _ = b.reply.send(Some(reply));
                    }
                }
            }
        }
    }

    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let _ = self.shutdown_tx.send(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }
}

/// The type of value a blocked command pops from: BZPOPMIN, BZPOPMAX and BZMPOP wait
/// for sorted sets, the list pops for lists.
fn blocked_type(name: &[u8]) -> &'static str {
    if name.len() > 2 && name[..2].eq_ignore_ascii_case(b"bz") {
        "zset"
    } else {
        "list"
    }
}

fn run_id() -> String {
    let mut r = crate::keyspace::rng::Rng::new(crate::keyspace::rng::Rng::local_seed());
    (0..40)
        .map(|_| char::from_digit(r.below(16) as u32, 16).unwrap())
        .collect()
}

/// Binds the configured addresses and serves until SHUTDOWN or a signal.
pub async fn run(config: Config) -> std::io::Result<()> {
    let mut listeners = Vec::new();
    for addr in &config.bind {
        let l = TcpListener::bind((addr.as_str(), config.port)).await?;
        tracing::info!(address = %l.local_addr()?, "listening");
        listeners.push(l);
    }
    let port = listeners
        .first()
        .map(|l| l.local_addr().map(|a| a.port()))
        .transpose()?
        .unwrap_or(config.port);
    let server = Server::new(config, port);
    serve(server, listeners).await
}

/// Serves on already-bound listeners.
pub async fn serve(server: Arc<Server>, listeners: Vec<TcpListener>) -> std::io::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        tasks.spawn(accept_loop(server.clone(), l));
    }
    tasks.spawn(cron(server.clone()));
    let mut shutdown = server.shutdown_signal();
    tokio::select! {
        _ = shutdown.wait_for(|&s| s) => {}
        _ = signal() => {
            tracing::info!("signal received, shutting down");
            if let Some(replica) = server.replica() {
                // Hand leadership over first, so writes resume elsewhere at once
                // instead of after an election timeout.
                let moved = replica.transfer_leadership(Duration::from_secs(2)).await;
                tracing::info!(moved, "leadership handed over before exit");
            }
            server.shutdown();
        }
    }
    tasks.abort_all();
    // Connections see the shutdown signal and close; give them a moment to flush.
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.clients.count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!("shardis is now ready to exit, bye bye...");
    Ok(())
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn accept_loop(server: Arc<Server>, listener: TcpListener) {
    loop {
        let (socket, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        server
            .stats
            .connections_received
            .fetch_add(1, Ordering::Relaxed);
        let _ = socket.set_nodelay(true);
        tokio::spawn(connection::handle(server.clone(), socket, addr));
    }
}

/// Background work at `hz`: active expiry and idle-client timeouts.
async fn cron(server: Arc<Server>) {
    loop {
        let hz = server.config().hz.clamp(1, 500);
        let period = Duration::from_millis(1000 / hz as u64);
        tokio::time::sleep(period).await;
        server.clock.refresh();
        if let Some(replica) = server.replica().cloned() {
            // Replicated: only the leader expires and evicts, by proposing the keys.
            if replica.is_leader() {
                replicated_expiry(&server, &replica, period / 4).await;
                for _ in 0..16 {
                    let victims = server.shard.lock().choose_victims(64);
                    if victims.is_empty()
                        || replica.write(proto::Op::EvictKeys(victims)).await.is_err()
                    {
                        break;
                    }
                }
            }
        } else {
            let s = server.clone();
            // Active expiry: at most 25% of the cycle's time, as Redis.
            let deleted =
                tokio::task::spawn_blocking(move || s.shard.active_expire_cycle(period / 4))
                    .await
                    .unwrap_or(0);
            if deleted > 0 {
                let mut st = server.shard.lock();
                server.after_write(&mut st);
            }
        }
        let timeout = server.config().timeout;
        if timeout > 0 {
            for c in server.clients.all() {
                let idle = c
                    .info
                    .lock()
                    .unwrap()
                    .last_interaction
                    .unwrap_or(c.created)
                    .elapsed();
                let exempt = {
                    let i = c.info.lock().unwrap();
                    i.blocked || i.sub + i.psub + i.ssub > 0
                };
                if !exempt && idle.as_secs() > timeout {
                    c.kill();
                }
            }
        }
    }
}

/// The leader's active-expire cycle: the same sampling as a single node, each round's
/// expired keys proposed as one entry.
async fn replicated_expiry(server: &Server, replica: &Replica, budget: Duration) {
    let start = Instant::now();
    loop {
        let (expired, sample) = server.shard.lock().expired_sample();
        let n = expired.len();
        if n > 0 && replica.write(proto::Op::ExpireKeys(expired)).await.is_err() {
            return;
        }
        if sample == 0 || n * 100 / sample <= 10 || start.elapsed() >= budget {
            return;
        }
    }
}
