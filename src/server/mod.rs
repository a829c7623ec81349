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
pub mod exec;
pub mod pubsub;
pub mod route;
pub mod slowlog;
pub mod stats;
pub mod waiters;

use crate::router::ClusterView;
use crate::shard::replica::Replica;
use crate::shard::{Clock, Shard, ShardSettings, ShardState};
use client::Clients;
use config::Config;
use route::{ClusterHooks, Hosted, ShardTable, Target};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use waiters::Waiters;

/// Settings read on every command, kept out of the config lock.
#[derive(Default)]
pub struct HotSettings {
    pub maxmemory: AtomicU64,
    pub slowlog_slower_than: AtomicI64,
    /// `follower-mode redirect`: answer MOVED instead of forwarding.
    pub redirect: AtomicBool,
}

pub struct Server {
    /// The shard's clock, refreshed by each connection per read batch and by cron.
    pub clock: Clock,
    pub config: RwLock<Config>,
    pub hot: HotSettings,
    /// The shards this node hosts and the map it routes by.
    table: RwLock<Arc<ShardTable>>,
    /// Set in cluster mode: shards are replicated, the map comes from the meta group.
    cluster: OnceLock<Arc<dyn ClusterHooks>>,
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
        let single = Arc::new(Shard::with(clock.clone(), |_| {
            crate::keyspace::memory::used_memory()
        }));
        let server = Arc::new(Server {
            table: RwLock::new(Arc::new(ShardTable::single(single))),
            cluster: OnceLock::new(),
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

    /// Cluster mode: the node's hooks; None on a single in-memory node.
    pub fn cluster(&self) -> Option<&Arc<dyn ClusterHooks>> {
        self.cluster.get()
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// Switches to cluster mode: no shard until the node installs a table.
    pub fn enter_cluster(&self, hooks: Arc<dyn ClusterHooks>) {
        let _ = self.cluster.set(hooks);
        self.set_table(ShardTable::default());
    }

    /// What this node knows of the cluster; None on a single in-memory node.
    pub fn cluster_view(&self) -> Option<ClusterView> {
        self.cluster.get().map(|c| c.view())
    }

    /// The current routing table.
    pub fn table(&self) -> Arc<ShardTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_table(&self, t: ShardTable) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(t);
    }

    /// The shards this node hosts.
    pub fn hosted(&self) -> Vec<Arc<Hosted>> {
        self.table().hosted.values().cloned().collect()
    }

    /// The hosted shard of a slot-less lookup: the single node's shard, or (cluster
    /// mode) the hosted shard owning `key`.
    pub fn shard_of_key(&self, key: &[u8]) -> Option<Arc<Hosted>> {
        let table = self.table();
        if !self.is_cluster() {
            return table.hosted.values().next().cloned();
        }
        match route::slot_target(&table, proto::key_slot(key)) {
            Target::Local(h) => Some(h),
            _ => None,
        }
    }

    /// Where a command goes.
    pub fn target(&self, spec: &crate::cmd::CommandSpec, args: &[bytes::Bytes]) -> Target {
        route::target(&self.table(), self.is_cluster(), spec, args)
    }

    /// A new shard state on this server's clock with its settings applied.
    pub fn new_shard(&self) -> Arc<Shard> {
        let shard = Arc::new(Shard::with(self.clock.clone(), |_| {
            crate::keyspace::memory::used_memory()
        }));
        self.configure(&shard);
        shard
    }

    pub fn config(&self) -> std::sync::RwLockReadGuard<'_, Config> {
        self.config.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Pushes settings the shard depends on after a config change.
    pub fn apply_config(&self) {
        let c = self.config().clone();
        self.hot.maxmemory.store(c.maxmemory, Ordering::Relaxed);
        self.hot
            .redirect
            .store(c.follower_mode == "redirect", Ordering::Relaxed);
        self.hot
            .slowlog_slower_than
            .store(c.slowlog_log_slower_than, Ordering::Relaxed);
        for h in self.hosted() {
            self.configure(&h.shard);
        }
    }

    fn configure(&self, shard: &Shard) {
        let c = self.config().clone();
        let mut st = shard.lock();
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
                if self.is_cluster() {
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
            if let Some(c) = server.cluster() {
                // Hand leaderships over first, so writes resume elsewhere at once
                // instead of after an election timeout.
                let moved = c.hand_over().await;
                tracing::info!(moved, "leaderships handed over before exit");
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
        for h in server.hosted() {
            match &h.replica {
                // Replicated: only the leader expires and evicts, by proposing keys.
                Some(replica) => {
                    if replica.is_leader() {
                        replicated_expiry(&h.shard, replica, period / 4).await;
                        for _ in 0..16 {
                            let victims = h.shard.lock().choose_victims(64);
                            if victims.is_empty()
                                || replica.write(proto::Op::EvictKeys(victims)).await.is_err()
                            {
                                break;
                            }
                        }
                    }
                }
                None => {
                    let s = h.shard.clone();
                    // Active expiry: at most 25% of the cycle's time, as Redis.
                    let deleted =
                        tokio::task::spawn_blocking(move || s.active_expire_cycle(period / 4))
                            .await
                            .unwrap_or(0);
                    if deleted > 0 {
                        let mut st = h.shard.lock();
                        server.after_write(&mut st);
                    }
                }
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
async fn replicated_expiry(shard: &Shard, replica: &Replica, budget: Duration) {
    let start = Instant::now();
    loop {
        let (expired, sample) = shard.lock().expired_sample();
        let n = expired.len();
        if n > 0 && replica.write(proto::Op::ExpireKeys(expired)).await.is_err() {
            return;
        }
        if sample == 0 || n * 100 / sample <= 10 || start.elapsed() >= budget {
            return;
        }
    }
}
