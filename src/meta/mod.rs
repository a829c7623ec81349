//! The meta group (layer 2): the Raft group, id 0, that holds the cluster map.
//!
//! It is a replicated shard like any other (the same log, state machine, snapshots and
//! write path) whose keyspace holds one key, [`MAP_KEY`], the encoded
//! [`ClusterMap`]. Changes are compare-and-set entries (EXEC guarded by the digest of
//! the map the change was computed from, checked in apply), so two proposers can never
//! both move the map from one epoch; the first map is a `SET NX`. Every node runs the
//! group (voters on up to five nodes, learners elsewhere) and publishes each newly
//! applied map to its routing through a watch channel.
//!
//! No client command reaches this keyspace: slots map to shards 1 and up only.

use crate::cmd::{self, ReadCtx};
use crate::resp::Reply;
use crate::shard::replica::Replica;
use crate::shard::{Shard, ShardState};
use bytes::Bytes;
use proto::map::ClusterMap;
use proto::Op;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The meta group's Raft group id.
pub const META_GROUP: u64 = 0;
/// The key holding the encoded map.
pub const MAP_KEY: &[u8] = b"cluster-map";

/// Voters of the meta group at most; other nodes follow it as learners.
pub const MAX_VOTERS: usize = 5;

pub struct Meta {
    pub shard: Arc<Shard>,
    replica: OnceLock<Arc<Replica>>,
    tx: watch::Sender<Arc<ClusterMap>>,
    /// The encoded map last published, to publish only changes.
    last: Mutex<Option<Bytes>>,
}

/// How long [`Meta::update`] keeps trying before it gives up.
const UPDATE_DEADLINE: Duration = Duration::from_secs(15);

/// The map stored in a meta keyspace, encoded, if any.
fn stored(st: &ShardState) -> Option<Bytes> {
    let get = cmd::lookup(b"get").expect("GET exists");
    let args = [Bytes::from_static(b"GET"), Bytes::from_static(MAP_KEY)];
    match cmd::execute_read(&st.ks, &mut ReadCtx::new(st.now()), get, &args) {
        Reply::Bulk(b) => Some(b),
        _ => None,
    }
}

impl Meta {
    pub fn new(shard: Arc<Shard>) -> Arc<Meta> {
        let (tx, _) = watch::channel(Arc::new(ClusterMap::default()));
        Arc::new(Meta {
            shard,
            replica: OnceLock::new(),
            tx,
            last: Mutex::new(None),
        })
    }

    pub fn attach(&self, replica: Arc<Replica>) {
        let _ = self.replica.set(replica);
    }

    pub fn replica(&self) -> Option<&Arc<Replica>> {
        self.replica.get()
    }

    /// Called after every applied entry (under the shard lock): publishes the map if
    /// it changed.
    pub fn applied(&self, st: &ShardState) {
        let Some(bytes) = stored(st) else { return };
        let mut last = self.last.lock().unwrap();
        if last.as_ref() == Some(&bytes) {
            return;
        }
        match ClusterMap::decode(&bytes) {
            Ok(map) => {
                tracing::info!(
                    epoch = map.epoch,
                    shards = map.shards.len(),
                    "cluster map applied"
                );
                *last = Some(bytes);
                self.tx.send_replace(Arc::new(map));
            }
            Err(e) => tracing::error!(error = %e, "undecodable cluster map in the meta group"),
        }
    }

    /// The newest applied map (epoch 0 and empty before the cluster is created).
    pub fn current(&self) -> Arc<ClusterMap> {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterMap>> {
        self.tx.subscribe()
    }

    /// Stores the first map (run on any member; forwarded to the meta leader). True if
    /// this call created it, false if a map was there already.
    pub async fn create(&self, map: &ClusterMap) -> Result<bool, String> {
        map.validate()?;
        let replica = self.replica.get().ok_or("meta group not started")?;
        let set = vec![
            Bytes::from_static(b"SET"),
            Bytes::from_static(MAP_KEY),
            proto::raft_msg::encode(map),
            Bytes::from_static(b"NX"),
        ];
        match replica.write(Op::Exec(vec![set])).await {
            Ok(mut r) => Ok(matches!(r.pop(), Some(Reply::Simple(_)))),
            Err(e) => Err(format!("{:?}", e.reply())),
        }
    }

    /// Changes the map: `change` computes the next map from the current one (`None`:
    /// nothing to do, e.g. a retry finds its change already made), and the result is
    /// stored with the epoch bumped, guarded by the digest of the map it was computed
    /// from (a compare-and-set in apply: two changers never both move one epoch). On a
    /// lost race or an unknown outcome it reads the map again and retries, so `change`
    /// must be safe to re-run. Returns the map as stored (or found).
    pub async fn update<F>(&self, change: F) -> Result<Arc<ClusterMap>, String>
    where
        F: Fn(&ClusterMap) -> Result<Option<ClusterMap>, String>,
    {
        let replica = self.replica.get().ok_or("meta group not started")?.clone();
        let deadline = Instant::now() + UPDATE_DEADLINE;
        let mut last_err = String::from("no attempt");
        while Instant::now() < deadline {
            // The newest committed map, applied here.
            if let Err(e) = replica.read_barrier().await {
                last_err = format!("{:?}", e.reply());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let (current, digest) = {
                let st = self.shard.lock();
                let now = st.now();
                let current = match stored(&st) {
                    Some(b) => ClusterMap::decode(&b)?,
                    None => return Err("the cluster has no map yet".into()),
                };
                (current, st.ks.digest(MAP_KEY, now))
            };
            let Some(mut next) = change(&current)? else {
                return Ok(Arc::new(current));
            };
            next.epoch = current.epoch + 1;
            next.validate()?;
            let set = vec![
                Bytes::from_static(b"SET"),
                Bytes::from_static(MAP_KEY),
                proto::raft_msg::encode(&next),
            ];
            let op = Op::ExecWatched {
                watched: vec![(Bytes::from_static(MAP_KEY), digest)],
                cmds: vec![set],
            };
            match replica.write(op).await {
                Ok(r) if !r.is_empty() => return Ok(Arc::new(next)),
                // Someone else changed the map first: compute again from theirs.
                Ok(_) => last_err = "the map changed meanwhile".into(),
                Err(e) => {
                    last_err = format!("{:?}", e.reply());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Err(format!("could not change the cluster map: {last_err}"))
    }
}
