//! A cluster node: wiring and lifecycle of one replicated shard on this process.
//!
//! Startup order: data directory, client and peer listeners, server (owning the
//! shard's state), state machine (loads the newest snapshot), Raft log, transport,
//! Raft, then bootstrap or join on a first start; clients are served last. Shutdown is
//! the reverse: leadership handed over (SIGTERM), clients closed, Raft stopped.

use crate::server::{self, config::Config, Server};
use crate::shard::net::NetFactory;
use crate::shard::raft::{Raft, ShardSm};
use crate::shard::replica::{PeerHandler, ReadMode, Replica, ReplicaConfig};
use crate::storage::{FsyncPolicy, RaftLogStore, SnapshotDir};
use crate::transport::{Transport, TransportConfig};
use proto::raft_msg::{self, kind, JoinOutcome, JoinRequest};
use proto::NodeAddr;
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The group id of the one shard this issue runs (many come with sharding).
pub const GROUP: u64 = 0;

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Runs a node: a single in-memory server without `node-id`, a replicated shard with.
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
    let dir = PathBuf::from(&config.dir).join(format!("shard-{GROUP}"));
    std::fs::create_dir_all(&dir)?;
    let policy: FsyncPolicy = config.appendfsync.parse().map_err(other)?;

    let server = Server::new(config.clone(), port);
    let weak = Arc::downgrade(&server);
    let sm = ShardSm::open(
        server.shard.clone(),
        SnapshotDir::open(dir.join("snapshots"))?,
        Arc::new(move |st| {
            if let Some(s) = weak.upgrade() {
                s.after_write(st)
            }
        }),
    )?;
    let log = RaftLogStore::open(&dir.join("log"), policy)?;
    let log_stats = log.stats_handle();
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
        ..Default::default()
    }
    .validate()
    .map_err(other)?;
    let raft = Raft::new(
        node_id,
        Arc::new(raft_config),
        NetFactory {
            transport: transport.clone(),
            group: GROUP,
            node_id,
        },
        log,
        sm.clone(),
    )
    .await
    .map_err(other)?;
    let replica = Replica::new(
        raft.clone(),
        sm,
        transport.clone(),
        ReplicaConfig {
            node_id,
            group: GROUP,
            read_mode: if config.read_mode == "lease" {
                ReadMode::Lease
            } else {
                ReadMode::ReadIndex
            },
            redirect: config.follower_mode == "redirect",
            write_timeout: Duration::from_millis((et * 10).max(2000)),
            leader_wait: Duration::from_millis((et * 4).max(500)),
        },
        log_stats,
    );
    handler.attach(replica.clone());
    let weak = Arc::downgrade(&server);
    handler.set_on_publish(move |p| {
        if let Some(s) = weak.upgrade() {
            let kind = if p.shard_channel {
                crate::server::pubsub::Kind::Shard
            } else {
                crate::server::pubsub::Kind::Channel
            };
            s.pubsub.publish(kind, &p.channel, &p.message);
        }
    });
    server.set_replica(replica.clone());

    if !raft.is_initialized().await.map_err(other)? {
        if config.bootstrap {
            tracing::info!("bootstrapping a new cluster");
            raft.initialize(BTreeMap::from([(node_id, me.clone())]))
                .await
                .map_err(other)?;
        } else if !config.join.is_empty() {
            tokio::spawn(join(
                transport.clone(),
                config.join.clone(),
                node_id,
                me.clone(),
            ));
        } else {
            tracing::warn!(
                "this node has no cluster yet: start it with --bootstrap or --join host:peerport"
            );
        }
    }

    let result = server::serve(server.clone(), vec![client_listener]).await;
    let _ = raft.shutdown().await;
    transport.shutdown();
    result
}

/// Asks a member to add us, following "not the leader" answers, until admitted.
async fn join(transport: Arc<Transport>, seed: String, node_id: u64, me: NodeAddr) {
    let req = raft_msg::encode(&JoinRequest { node_id, addr: me });
    let mut target = seed.clone();
    loop {
        match transport
            .call_addr(
                &target,
                GROUP,
                kind::JOIN,
                req.clone(),
                Duration::from_secs(60),
            )
            .await
        {
            Ok((_, body)) => match raft_msg::decode::<JoinOutcome>(&body) {
                Ok(JoinOutcome::Joined) => {
                    tracing::info!(via = %target, "joined the cluster");
                    return;
                }
                Ok(JoinOutcome::NotLeader(Some((_, leader)))) => target = leader.peer,
                Ok(JoinOutcome::NotLeader(None)) => target = seed.clone(),
                Ok(JoinOutcome::Failed(e)) => tracing::warn!(error = %e, "join refused, retrying"),
                Err(e) => tracing::warn!(error = %e, "bad join answer"),
            },
            Err(e) => {
                tracing::debug!(error = ?e, via = %target, "join attempt failed");
                target = seed.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
