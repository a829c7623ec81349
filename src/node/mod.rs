//! A cluster node: wiring and lifecycle of the meta group and the shard replicas the
//! cluster map places on this process.
//!
//! Startup order: data directory, client and peer listeners, server, transport, the
//! meta group (its state machine loads the newest snapshot, then Raft), cluster
//! creation on a first start (the lowest id of `initial-cluster` initializes the meta
//! group and stores the first map), then, for every map the meta group applies, the
//! replicas placed here (state machine, log, Raft; the first replica in placement
//! order initializes a new shard's group); clients are served last. Shutdown is the
//! reverse: leaderships handed over (SIGTERM), clients closed, Raft groups stopped.

mod admin;
mod membership;

use crate::meta::{Meta, MAX_VOTERS, META_GROUP};
use crate::reshard::Resharder;
use crate::resp::Reply;
use crate::router::{self, ClusterView};
use crate::server::route::{ClusterHooks, ForwardError, Hosted, ShardTable};
use crate::server::{self, config::Config, Server};
use crate::shard::net::NetFactory;
use crate::shard::raft::{Raft, ShardSm};
use crate::shard::replica::{PeerHandler, ReadMode, Replica, ReplicaConfig};
use crate::shard::Shard;
use crate::storage::{LogEngine, LogStoreOptions, SnapshotDir};
use crate::transport::{CallError, Responder, Transport, TransportConfig};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use openraft::async_runtime::WatchReceiver;
use proto::map::ClusterMap;
use proto::raft_msg::{self, kind, ForwardCommands, LeaderHints, Publish};
use proto::NodeAddr;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::net::TcpListener;

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// How often a node tells the others which shards it leads.
const HINT_INTERVAL: Duration = Duration::from_millis(500);
/// How often the shared log is checked for segments idle groups keep alive.
const UNPIN_INTERVAL: Duration = Duration::from_secs(10);
/// Log size above which groups pinning the oldest segment are asked to snapshot.
const LOG_SOFT_LIMIT: u64 = 512 * 1024 * 1024;
/// How often a node checks that its leaderships sit where the balance wants them.
const BALANCE_INTERVAL: Duration = Duration::from_secs(1);
/// How far behind the leader's applied index a node may be to be handed a leadership.
const APPLIED_SLACK: u64 = 64;

/// One cluster node's shared state.
pub struct Node {
    id: u64,
    /// Where this node is reached, as it advertises.
    me: NodeAddr,
    config: Config,
    server: Arc<Server>,
    transport: Arc<Transport>,
    handler: Arc<PeerHandler>,
    raft_config: Arc<openraft::Config>,
    /// The node's one Raft log: every group's entries and hard state, one fsync per
    /// batch across groups.
    log: Arc<LogEngine>,
    dir: PathBuf,
    meta: Arc<Meta>,
    /// Replicas running here, by group (the meta group included).
    groups: Mutex<BTreeMap<u64, Arc<Replica>>>,
    /// Shard leaders other nodes reported: shard to (term, node).
    hints: Mutex<HashMap<u64, (u64, u64)>>,
    /// Nodes that said they are shutting down.
    draining: Mutex<BTreeSet<u64>>,
    /// This node is shutting down.
    stopping: AtomicBool,
    /// Drives the slot migrations whose source shard this node leads.
    resharder: OnceLock<Arc<Resharder>>,
    /// This node has been in a map: leaving every later map means it was removed.
    was_member: AtomicBool,
    /// A map without this node is being checked against the cluster's current one.
    confirming_removal: AtomicBool,
    /// Paces the catch-up of replicas this node's shard leaders are adding
    /// (`rebalance-rate`; membership).
    pace: Arc<crate::shard::net::CatchUpPace>,
}

/// Runs a node: a single in-memory server without `node-id`, a cluster node with.
pub async fn run(config: Config) -> io::Result<()> {
    if config.node_id == 0 {
        return server::run(config).await;
    }
    let node_id = config.node_id;
    let host = config
        .bind
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1".into());
    let client_listener = TcpListener::bind((host.as_str(), config.port)).await?;
    let peer_listener = TcpListener::bind((host.as_str(), config.peer_port)).await?;
    let port = client_listener.local_addr()?.port();
    let peer_port = peer_listener.local_addr()?.port();
    let me = NodeAddr {
        peer: if config.peer_advertise_addr.is_empty() {
            format!("{host}:{peer_port}")
        } else {
            config.peer_advertise_addr.clone()
        },
        client: if config.advertise_addr.is_empty() {
            format!("{host}:{port}")
        } else {
            config.advertise_addr.clone()
        },
    };
    tracing::info!(node_id, client = %me.client, peer = %me.peer, "starting cluster node");
    let dir = PathBuf::from(&config.dir);
    std::fs::create_dir_all(&dir)?;
    let log = LogEngine::open(
        &dir.join("raft-log"),
        LogStoreOptions {
            policy: config.appendfsync.parse().map_err(other)?,
            ..LogStoreOptions::default()
        },
    )?;

    let server = Server::new(config.clone(), port);
    let handler = PeerHandler::new();
    let transport = Transport::new(
        TransportConfig {
            node_id,
            secret: (!config.cluster_secret.is_empty()).then(|| config.cluster_secret.clone()),
            ..TransportConfig::default()
        },
        handler.clone(),
    );
    let _peer_task = transport.serve(peer_listener);

    let et = config.election_timeout;
    let raft_config = openraft::Config {
        cluster_name: "shardis".into(),
        election_timeout_min: et,
        election_timeout_max: et * 2,
        heartbeat_interval: config.heartbeat_interval.min(et / 3).max(1),
        enable_pre_vote: Some(true),
        // Send new entries to followers as soon as they are written locally, so the
        // leader's fsync and the followers' run in parallel.
        broadcast_submitted_on_append: Some(true),
        // A restarted leader goes through an election: its state machine is rebuilt
        // from snapshot + log, and the committed index on disk may be a second old.
        enable_leader_restore: Some(false),
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_entries),
        max_in_snapshot_log_to_keep: 1000.min(config.snapshot_entries),
        install_snapshot_timeout: 10_000,
        // Entries per AppendEntries (openraft's default is 300). An entry may be a
        // merged batch of up to 4 MB, and a node encodes and applies on the thread
        // that serves its clients: a follower catching up on big entries got requests
        // of over 100 MB, each a long stall (and pacing could not spread them).
        max_payload_entries: 32,
        ..Default::default()
    }
    .validate()
    .map_err(other)?;

    let meta = Meta::new(server.new_shard());
    let node = Arc::new(Node {
        id: node_id,
        me: me.clone(),
        config: config.clone(),
        server: server.clone(),
        transport: transport.clone(),
        handler: handler.clone(),
        raft_config: Arc::new(raft_config),
        log,
        dir,
        meta: meta.clone(),
        groups: Mutex::new(BTreeMap::new()),
        hints: Mutex::new(HashMap::new()),
        draining: Mutex::new(BTreeSet::new()),
        stopping: AtomicBool::new(false),
        resharder: OnceLock::new(),
        was_member: AtomicBool::new(false),
        confirming_removal: AtomicBool::new(false),
        pace: Default::default(),
    });
    let weak = Arc::downgrade(&node);
    handler.set_on_node(Box::new(move |from, kind, body, respond| {
        match weak.upgrade() {
            Some(n) => n.node_request(from, kind, body, respond),
            None => respond.send(Err("node stopping".into())),
        }
    }));
    server.enter_cluster(Arc::new(Hooks(Arc::downgrade(&node))));

    // The meta group first: it says which shards live here.
    let meta_weak = Arc::downgrade(&meta);
    let meta_replica = node
        .start_group(
            META_GROUP,
            meta.shard.clone(),
            Arc::new(move |st| {
                if let Some(m) = meta_weak.upgrade() {
                    m.applied(st)
                }
            }),
        )
        .await?;
    meta.attach(meta_replica.clone());

    let initial = if config.initial_cluster.is_empty() {
        None
    } else {
        Some(router::parse_initial_cluster(&config.initial_cluster).map_err(other)?)
    };
    if let Some(nodes) = &initial {
        for (id, addr) in nodes {
            if *id != node_id {
                transport.set_peer(*id, addr.peer.clone());
            }
        }
    }
    if !meta_replica.raft.is_initialized().await.map_err(other)? {
        match &initial {
            Some(nodes) if nodes.keys().next() == Some(&node_id) => {
                tokio::spawn(node.clone().create_cluster(nodes.clone()));
            }
            Some(_) => tracing::info!("waiting for the lowest-id member to create the cluster"),
            None => tracing::warn!(
                "this node has no cluster yet: start every initial member with the same --initial-cluster"
            ),
        }
    }
    let resharder = {
        let (p, l) = (Arc::downgrade(&node), Arc::downgrade(&node));
        Resharder::new(
            meta.clone(),
            Arc::new(move |shard, op| {
                let n = p.upgrade();
                Box::pin(async move {
                    match n {
                        Some(n) => n.propose_to(shard, op).await,
                        None => Err("node stopping".into()),
                    }
                })
            }),
            Arc::new(move |shard| {
                l.upgrade()
                    .and_then(|n| n.groups.lock().unwrap().get(&shard).cloned())
            }),
        )
    };
    let _ = node.resharder.set(resharder.clone());
    tokio::spawn(resharder.run());
    tokio::spawn(node.clone().follow_map());
    tokio::spawn(node.clone().membership());
    if !config.join.is_empty() && !meta_replica.raft.is_initialized().await.map_err(other)? {
        tokio::spawn(node.clone().join(config.join.clone(), me.clone()));
    }
    tokio::spawn(node.clone().send_hints());
    tokio::spawn(node.clone().balance_leaders());
    tokio::spawn(node.clone().unpin_log());

    let result = server::serve(server.clone(), vec![client_listener]).await;
    node.stop().await;
    transport.shutdown();
    result
}

impl Node {
    /// Starts one Raft group's replica on this node (its state from its directory).
    async fn start_group(
        self: &Arc<Self>,
        group: u64,
        shard: Arc<Shard>,
        after_apply: crate::shard::raft::Hook,
    ) -> io::Result<Arc<Replica>> {
        let dir = self.dir.join(if group == META_GROUP {
            "meta".to_string()
        } else {
            format!("shard-{group}")
        });
        std::fs::create_dir_all(&dir)?;
        let sm = ShardSm::open(
            shard,
            SnapshotDir::open(dir.join("snapshots"))?,
            after_apply,
        )?;
        let log = self
            .log
            .open_group::<crate::shard::raft::TypeConfig>(group)?;
        let log_stats = log.stats_handle();
        let raft = Raft::new(
            self.id,
            self.raft_config.clone(),
            NetFactory {
                transport: self.transport.clone(),
                group,
                node_id: self.id,
                pace: self.pace.clone(),
            },
            log,
            sm.clone(),
        )
        .await
        .map_err(other)?;
        let et = self.config.election_timeout;
        let replica = Replica::new(
            raft,
            sm,
            self.transport.clone(),
            ReplicaConfig {
                node_id: self.id,
                group,
                read_mode: if planted_stale_read() {
                    ReadMode::PlantedStaleRead
                } else if self.config.read_mode == "lease" {
                    ReadMode::Lease
                } else {
                    ReadMode::ReadIndex
                },
                write_timeout: Duration::from_millis((et * 10).max(2000)),
                leader_wait: Duration::from_millis((et * 4).max(500)),
            },
            log_stats,
        );
        self.handler.attach(replica.clone());
        self.groups.lock().unwrap().insert(group, replica.clone());
        Ok(replica)
    }

    /// First start of the lowest-id initial member: initializes the meta group with up
    /// to five voters, stores the first map, and adds the other members as learners.
    async fn create_cluster(self: Arc<Self>, nodes: BTreeMap<u64, NodeAddr>) {
        let Some(meta) = self.meta.replica().cloned() else {
            return;
        };
        let voters: BTreeMap<u64, NodeAddr> = nodes
            .iter()
            .take(MAX_VOTERS)
            .map(|(id, a)| (*id, a.clone()))
            .collect();
        tracing::info!(members = nodes.len(), "creating the cluster");
        if let Err(e) = meta.raft.initialize(voters.clone()).await {
            tracing::warn!(error = %e, "meta group initialize");
        }
        let shards = if self.config.shards == 0 {
            2 * nodes.len() as u64
        } else {
            self.config.shards
        };
        let map = router::initial_map(nodes.clone(), shards, self.config.replicas as usize);
        loop {
            match self.meta.create(&map).await {
                Ok(created) => {
                    tracing::info!(created, shards, "cluster map stored");
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "storing the first map, retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        for (id, addr) in nodes.iter().filter(|(id, _)| !voters.contains_key(id)) {
            loop {
                match meta.raft.add_learner(*id, addr.clone(), false).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::debug!(node = id, error = %e, "adding a meta learner, retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    }

    /// Follows the meta group's map: starts the replicas placed here and installs each
    /// new routing table.
    async fn follow_map(self: Arc<Self>) {
        let mut rx = self.meta.subscribe();
        loop {
            let map = rx.borrow_and_update().clone();
            if map.epoch > 0 {
                if let Err(e) = self.apply_map(map).await {
                    tracing::error!(error = %e, "applying the cluster map");
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    async fn apply_map(self: &Arc<Self>, map: Arc<ClusterMap>) -> io::Result<()> {
        for (id, addr) in &map.nodes {
            if *id != self.id {
                self.transport.set_peer(*id, addr.peer.clone());
            }
        }
        let mut hosted: BTreeMap<u64, Arc<Hosted>> = self
            .server
            .table()
            .hosted
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (shard, replicas) in &map.shards {
            if !replicas.contains(&self.id) || hosted.contains_key(shard) {
                continue;
            }
            let state = self.server.new_shard();
            let weak = Arc::downgrade(&self.server);
            let replica = self
                .start_group(
                    *shard,
                    state.clone(),
                    Arc::new(move |st| {
                        if let Some(s) = weak.upgrade() {
                            s.after_write(st)
                        }
                    }),
                )
                .await?;
            if replicas.first() == Some(&self.id)
                && !replica.raft.is_initialized().await.map_err(other)?
            {
                let members: BTreeMap<u64, NodeAddr> = replicas
                    .iter()
                    .filter_map(|n| map.nodes.get(n).map(|a| (*n, a.clone())))
                    .collect();
                tracing::info!(shard, ?replicas, "initializing a new shard");
                if let Err(e) = replica.raft.initialize(members).await {
                    tracing::warn!(shard, error = %e, "shard initialize");
                }
            }
            hosted.insert(
                *shard,
                Arc::new(Hosted {
                    id: *shard,
                    shard: state,
                    replica: Some(replica),
                }),
            );
        }
        // Replicas the map moved away: stop their groups and drop their state.
        let moved: Vec<u64> = hosted
            .keys()
            .copied()
            .filter(|s| !map.shards.get(s).is_some_and(|r| r.contains(&self.id)))
            .collect();
        let mut stopped = Vec::new();
        for s in moved {
            hosted.remove(&s);
            if let Some(r) = self.groups.lock().unwrap().remove(&s) {
                stopped.push((s, r));
            }
        }
        self.server.set_table(ShardTable {
            map: map.clone(),
            hosted,
        });
        for (s, r) in stopped {
            tracing::info!(shard = s, "the replica moved away: stopping it");
            self.handler.detach(s);
            let _ = r.raft.shutdown().await;
            drop(r);
            let _ = std::fs::remove_dir_all(self.dir.join(format!("shard-{s}")));
            // Its entries in the node's shared log go too: they would pin segments
            // for good, and a replica moving back later would find a purge point its
            // deleted state machine is behind.
            if let Err(e) = self.log.drop_group(s) {
                tracing::warn!(shard = s, error = %e, "dropping the replica's log");
            }
        }
        // Removed from the cluster (drained): stop serving, once confirmed.
        if map.nodes.contains_key(&self.id) {
            self.was_member.store(true, Ordering::SeqCst);
        } else if self.was_member.load(Ordering::SeqCst)
            && !self.confirming_removal.swap(true, Ordering::SeqCst)
        {
            let others: Vec<String> = map.nodes.values().map(|a| a.client.clone()).collect();
            tokio::spawn(self.clone().confirm_removal(map.epoch, others));
        }
        Ok(())
    }

    /// A map without this node, after maps with it: shuts the node down if the
    /// cluster's current map agrees. A node added again under its old id replays the
    /// meta log from the start, its earlier removal included (found by the chaos
    /// suite: a re-joined node exited on that old map), so the map being applied may
    /// be history: the node asks the others for theirs (any at `epoch` or later
    /// decides), and shuts down without an answer only after ten tries.
    async fn confirm_removal(self: Arc<Self>, epoch: u64, others: Vec<String>) {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.meta.current().nodes.contains_key(&self.id) {
                tracing::info!(epoch, "a map without this node was history: staying");
                self.confirming_removal.store(false, Ordering::SeqCst);
                return;
            }
            let mut answers = Vec::new();
            for addr in &others {
                answers.extend(current_members(addr).await);
            }
            match membership::removal_verdict(self.id, epoch, &answers) {
                Some(true) => {
                    tracing::info!(epoch, "a map without this node was history: staying");
                    self.confirming_removal.store(false, Ordering::SeqCst);
                    return;
                }
                Some(false) => {
                    tracing::warn!("this node was removed from the cluster: shutting down");
                    self.server.shutdown();
                    return;
                }
                None => {}
            }
        }
        tracing::warn!(
            "this node was removed from the cluster (no other node answered): shutting down"
        );
        self.server.shutdown();
    }

    /// A node started with `--join` and no cluster yet: asks the given node (and then
    /// the nodes it names) to add it, until it has a map.
    async fn join(self: Arc<Self>, via: String, me: NodeAddr) {
        let args = [
            "SHARDIS".to_string(),
            "JOIN".into(),
            self.id.to_string(),
            me.client.clone(),
            me.peer.clone(),
        ];
        loop {
            if self.meta.current().nodes.contains_key(&self.id) {
                tracing::info!("joined the cluster");
                return;
            }
            match crate::admin::call_async(&via, &args).await {
                Ok(r) => tracing::info!(via = %via, answer = %r, "asked to join"),
                Err(e) => tracing::warn!(via = %via, error = %e, "joining, retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Tells the other nodes, every [`HINT_INTERVAL`], which shards this node leads.
    async fn send_hints(self: Arc<Self>) {
        loop {
            tokio::time::sleep(HINT_INTERVAL).await;
            self.broadcast_hints();
        }
    }

    fn broadcast_hints(&self) {
        let leads: Vec<(u64, u64)> = self
            .server
            .hosted()
            .iter()
            .filter_map(|h| {
                let r = h.replica.as_ref()?;
                r.is_leader()
                    .then(|| (h.id, r.raft.metrics().borrow_watched().current_term))
            })
            .collect();
        let draining = self.stopping.load(Ordering::SeqCst);
        let body = raft_msg::encode(&LeaderHints { leads, draining });
        self.send_to_others(kind::LEADER_HINTS, body, HINT_INTERVAL);
    }

    /// Sends a node-wide message to every other node in the map (fire and forget; one
    /// connection per peer keeps a sender's messages in order).
    fn send_to_others(&self, k: u16, body: Bytes, timeout: Duration) {
        let map = self.server.table().map.clone();
        for id in map.nodes.keys().filter(|id| **id != self.id) {
            let (t, id, body) = (self.transport.clone(), *id, body.clone());
            tokio::spawn(async move {
                if let Err(e) = t.call(id, META_GROUP, k, body, timeout).await {
                    tracing::debug!(peer = id, kind = k, error = ?e, "node message not delivered");
                }
            });
        }
    }

    /// Leader balancing: every [`BALANCE_INTERVAL`], each shard this node leads but
    /// that should be led elsewhere ([`router::preferred_leaders`]) is handed to its
    /// preferred node, if that node is connected, not draining, caught up, and answers
    /// that it has applied about as far as this one (a node replaying a backlog after
    /// a restart matches the log long before it can serve). A node coming back from a
    /// restart so gets its share of leaderships back.
    async fn balance_leaders(self: Arc<Self>) {
        loop {
            tokio::time::sleep(BALANCE_INTERVAL).await;
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let table = self.server.table();
            // With auto-rebalance off, leaderships stay where operators put them
            // (`shardis admin failover`), except off nodes being drained.
            if !self.server.config().auto_rebalance && !table.map.leaving.contains(&self.id) {
                continue;
            }
            let preferred = router::preferred_leaders(&table.map);
            let live: BTreeSet<u64> = self.transport.connected_peers().into_iter().collect();
            let draining = self.draining.lock().unwrap().clone();
            for h in table.hosted.values() {
                let Some(r) = &h.replica else { continue };
                let Some(&want) = preferred.get(&h.id) else {
                    continue;
                };
                if want == self.id
                    || !r.is_leader()
                    || !live.contains(&want)
                    || draining.contains(&want)
                    || !r.caught_up(want, 0)
                    || !r
                        .applied_near(want, APPLIED_SLACK, Duration::from_millis(200))
                        .await
                {
                    continue;
                }
                r.transfer_to(want, Duration::from_secs(1)).await;
            }
        }
    }

    /// The shared log's segments go once no group has live entries in them; a group
    /// that rarely snapshots (an idle shard) would keep old segments forever. Every
    /// [`UNPIN_INTERVAL`], while the log is over [`LOG_SOFT_LIMIT`], the groups holding
    /// the oldest segment are asked for a snapshot, after which they purge.
    async fn unpin_log(self: Arc<Self>) {
        loop {
            tokio::time::sleep(UNPIN_INTERVAL).await;
            for g in self.log.groups_pinning_oldest(LOG_SOFT_LIMIT) {
                let replica = self.groups.lock().unwrap().get(&g).cloned();
                if let Some(r) = replica {
                    tracing::info!(group = g, "snapshot to release the oldest log segment");
                    let _ = r.raft.trigger().snapshot().await;
                }
            }
        }
    }

    /// Requests for the node rather than one group.
    fn node_request(self: Arc<Self>, from: u64, k: u16, body: Bytes, respond: Responder) {
        match k {
            kind::PUBLISH => match raft_msg::decode::<Publish>(&body) {
                Err(e) => respond.send(Err(e)),
                Ok(p) => {
                    let kind = if p.shard_channel {
                        crate::server::pubsub::Kind::Shard
                    } else {
                        crate::server::pubsub::Kind::Channel
                    };
                    self.server.pubsub.publish(kind, &p.channel, &p.message);
                    respond.send(Ok(Bytes::new()));
                }
            },
            kind::LEADER_HINTS => match raft_msg::decode::<LeaderHints>(&body) {
                Err(e) => respond.send(Err(e)),
                Ok(h) => {
                    {
                        let mut d = self.draining.lock().unwrap();
                        if h.draining {
                            d.insert(from);
                        } else {
                            d.remove(&from);
                        }
                    }
                    let mut hints = self.hints.lock().unwrap();
                    for (shard, term) in h.leads {
                        let e = hints.entry(shard).or_insert((0, 0));
                        if term >= e.0 {
                            *e = (term, from);
                        }
                    }
                    respond.send(Ok(Bytes::new()));
                }
            },
            kind::FORWARD_COMMANDS => match raft_msg::decode::<ForwardCommands>(&body) {
                Err(e) => respond.send(Err(e)),
                Ok(f) => {
                    let server = self.server.clone();
                    tokio::spawn(async move {
                        let replies =
                            server::exec::run_forwarded(&server, f.shard, f.cmds, f.resp3).await;
                        respond.send(Ok(raft_msg::encode(&replies)));
                    });
                }
            },
            other => respond.send(Err(format!("unknown node request kind {other}"))),
        }
    }

    /// The leader this node believes `shard` has.
    fn leader_of(&self, shard: u64) -> Option<u64> {
        if let Some(r) = self.groups.lock().unwrap().get(&shard) {
            return r.leader().map(|(id, _)| id);
        }
        self.hints.lock().unwrap().get(&shard).map(|(_, n)| *n)
    }

    fn view(&self) -> ClusterView {
        let table = self.server.table();
        let leaders = table
            .map
            .shards
            .keys()
            .map(|s| (*s, self.leader_of(*s)))
            .collect();
        ClusterView {
            map: table.map.clone(),
            my_id: self.id,
            leaders,
        }
    }

    /// Sends commands to a node hosting `shard`: its believed leader first, then its
    /// other replicas, while attempts are known not to have been delivered.
    async fn forward(
        self: Arc<Self>,
        shard: u64,
        cmds: Vec<Vec<Bytes>>,
        resp3: bool,
    ) -> Result<Vec<Reply>, ForwardError> {
        let map = self.server.table().map.clone();
        let mut targets: Vec<u64> = Vec::new();
        if let Some(l) = self.leader_of(shard) {
            targets.push(l);
        }
        for n in map.shards.get(&shard).into_iter().flatten() {
            if !targets.contains(n) && *n != self.id {
                targets.push(*n);
            }
        }
        if targets.is_empty() {
            return Err(ForwardError::NotSent(format!(
                "shard {shard} has no replicas"
            )));
        }
        let body = raft_msg::encode(&ForwardCommands { shard, resp3, cmds });
        let timeout = Duration::from_millis((self.config.election_timeout * 20).max(10_000));
        let mut last = String::new();
        for node in targets {
            match self
                .transport
                .call(node, shard, kind::FORWARD_COMMANDS, body.clone(), timeout)
                .await
            {
                Ok(answer) => {
                    return raft_msg::decode::<Vec<Reply>>(&answer).map_err(ForwardError::Uncertain)
                }
                Err(CallError::Unreachable(e)) | Err(CallError::Refused(e)) => last = e,
                Err(CallError::Remote(e)) => last = e,
                Err(e) => return Err(ForwardError::Uncertain(format!("{e:?}"))),
            }
        }
        Err(ForwardError::NotSent(last))
    }

    /// Proposes an operation to `shard`'s log: through the local replica if there is
    /// one (it forwards to its leader), else to the shard's leader on another node.
    async fn propose_to(self: Arc<Self>, shard: u64, op: proto::Op) -> Result<Vec<Reply>, String> {
        let local = self.groups.lock().unwrap().get(&shard).cloned();
        if let Some(r) = local {
            return r.write(op).await.map_err(|e| format!("{:?}", e.reply()));
        }
        let map = self.server.table().map.clone();
        let mut targets: Vec<u64> = self.leader_of(shard).into_iter().collect();
        for n in map.shards.get(&shard).into_iter().flatten() {
            if !targets.contains(n) {
                targets.push(*n);
            }
        }
        let timeout = Duration::from_millis((self.config.election_timeout * 10).max(2000));
        let body = raft_msg::encode(&vec![raft_msg::ForwardWrite {
            request_id: (self.id << 40) ^ (crate::shard::now_ms() & ((1 << 40) - 1)),
            op,
        }]);
        let mut last = format!("shard {shard} has no replicas");
        let mut i = 0;
        while i < targets.len() && i < 8 {
            let node = targets[i];
            i += 1;
            let out = self
                .transport
                .call(node, shard, kind::FORWARD_WRITE, body.clone(), timeout)
                .await;
            let outcome = match out.map(|b| raft_msg::decode::<Vec<raft_msg::ForwardOutcome>>(&b)) {
                Ok(Ok(mut o)) if o.len() == 1 => o.pop().unwrap(),
                Ok(_) => return Err("bad answer from the leader".into()),
                Err(CallError::Unreachable(e)) | Err(CallError::Refused(e)) => {
                    last = e;
                    continue;
                }
                Err(e) => return Err(format!("outcome unknown: {e:?}")),
            };
            match outcome {
                raft_msg::ForwardOutcome::Applied(b) => {
                    return raft_msg::decode::<crate::shard::raft::Applied>(&b).map(|a| a.0)
                }
                raft_msg::ForwardOutcome::NotLeader(hint) => {
                    last = format!("node {node} does not lead shard {shard}");
                    if let Some((l, _)) = hint {
                        if !targets[i..].contains(&l) {
                            targets.insert(i, l);
                        }
                    }
                }
                raft_msg::ForwardOutcome::Unknown(e) => {
                    return Err(format!("outcome unknown: {e}"))
                }
            }
        }
        Err(last)
    }

    /// Hands every leadership held here to another replica; the number moved. Tells
    /// the others first that this node is draining, so no balancer hands any back.
    async fn hand_over(self: Arc<Self>) -> usize {
        self.stopping.store(true, Ordering::SeqCst);
        self.broadcast_hints();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let replicas: Vec<Arc<Replica>> = self.groups.lock().unwrap().values().cloned().collect();
        let moves = replicas
            .iter()
            .filter(|r| r.is_leader())
            .map(|r| r.transfer_leadership(Duration::from_secs(2)));
        futures_util::future::join_all(moves)
            .await
            .into_iter()
            .filter(|m| *m)
            .count()
    }

    async fn stop(&self) {
        let replicas: Vec<Arc<Replica>> = self.groups.lock().unwrap().values().cloned().collect();
        for r in replicas {
            let _ = r.raft.shutdown().await;
        }
        if let Err(e) = self.log.close() {
            tracing::error!(error = %e, "closing the raft log");
        }
    }

    fn publish(&self, msg: Publish) {
        let body = raft_msg::encode(&msg);
        self.send_to_others(kind::PUBLISH, body, Duration::from_secs(1));
    }
}

/// The epoch and node ids of the map a node at `addr` (client address) has now.
async fn current_members(addr: &str) -> Option<(u64, Vec<u64>)> {
    let addr = addr.to_string();
    tokio::task::spawn_blocking(move || {
        let mut c = crate::admin::Conn::connect(&addr).ok()?;
        let crate::admin::Answer::Bulk(b) = c.call(&["SHARDIS", "STATUS"]).ok()? else {
            return None;
        };
        let s: serde_json::Value = serde_json::from_slice(&b).ok()?;
        let nodes = s["nodes"]
            .as_array()?
            .iter()
            .filter_map(|n| n["id"].as_u64())
            .collect();
        Some((s["epoch"].as_u64()?, nodes))
    })
    .await
    .ok()
    .flatten()
}

/// The server's window on the node (weak: the node owns the server).
struct Hooks(Weak<Node>);

impl ClusterHooks for Hooks {
    fn admin(&self, args: Vec<Bytes>) -> BoxFuture<'static, Reply> {
        let node = self.0.upgrade();
        Box::pin(async move {
            match node {
                Some(n) => admin::run(n, args).await,
                None => Reply::error("ERR node stopping"),
            }
        })
    }

    fn view(&self) -> ClusterView {
        self.0.upgrade().map(|n| n.view()).unwrap_or_default()
    }

    fn publish(&self, msg: Publish) {
        if let Some(n) = self.0.upgrade() {
            n.publish(msg)
        }
    }

    fn forward(
        &self,
        shard: u64,
        cmds: Vec<Vec<Bytes>>,
        resp3: bool,
    ) -> BoxFuture<'static, Result<Vec<Reply>, ForwardError>> {
        let node = self.0.upgrade();
        Box::pin(async move {
            match node {
                Some(n) => n.forward(shard, cmds, resp3).await,
                None => Err(ForwardError::NotSent("node stopping".into())),
            }
        })
    }

    fn meta_status(&self) -> Vec<(String, String)> {
        self.0
            .upgrade()
            .and_then(|n| n.meta.replica().map(|r| r.status()))
            .unwrap_or_default()
    }

    fn hand_over(&self) -> BoxFuture<'static, usize> {
        let node = self.0.upgrade();
        Box::pin(async move {
            match node {
                Some(n) => n.hand_over().await,
                None => 0,
            }
        })
    }
}

/// The chaos suite's planted bug (jepsen/README.md): `SHARDIS_PLANTED_BUG=stale-read`
/// makes every replica serve reads without a read barrier, so a deposed leader or a
/// lagging follower answers from stale state. Deliberately not a setting.
fn planted_stale_read() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        let on = std::env::var("SHARDIS_PLANTED_BUG").is_ok_and(|v| v == "stale-read");
        if on {
            tracing::warn!(
                "PLANTED BUG ON: reads skip the read barrier (SHARDIS_PLANTED_BUG=stale-read)"
            );
        }
        on
    })
}
