//! One replica of a replicated shard: how a node writes (propose on the leader, forward
//! from a follower; redirecting clients is the server's choice), how it reads linearizably (ReadIndex or
//! lease on the leader, a read index fetched from the leader on a follower), and how it
//! answers its peers (Raft RPCs, forwarded writes, read indexes, joins, snapshot
//! chunks).

use super::raft::{Applied, Logged, Raft, ShardSm, SnapFile, Snapshot, TypeConfig, Vote};
use super::Shard;
use crate::resp::Reply;
use crate::storage::LogStatsHandle;
use crate::transport::{CallError, Handler, Responder, Transport};
use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::error::ClientWriteError;
use openraft::raft::{ClientWriteResponse, ReadPolicy};
use proto::raft_msg::{self, kind, ForwardOutcome, ForwardWrite, ReadIndexOutcome, SnapshotChunk};
use proto::{NodeAddr, Op};
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How reads are made linearizable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// A heartbeat round to a quorum per read batch (Raft's ReadIndex). No clock
    /// assumption.
    ReadIndex,
    /// The leader serves reads while its lease (renewed by acknowledged heartbeats) lasts;
    /// assumes clocks on the nodes run at about the same rate (bounded drift within the
    /// election timeout).
    Lease,
    /// A PLANTED BUG, for the chaos suite to prove it catches stale reads: reads are
    /// served from local state with no barrier at all. Only reachable through the
    /// environment variable `SHARDIS_PLANTED_BUG=stale-read` (see `node`), never a setting.
    PlantedStaleRead,
}

#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub node_id: u64,
    pub group: u64,
    pub read_mode: ReadMode,
    /// How long a write may wait for its commit before its outcome is reported unknown.
    pub write_timeout: Duration,
    /// How long a request waits for a leader to be elected before `-CLUSTERDOWN`.
    pub leader_wait: Duration,
}

/// Why a write or read did not complete.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicaError {
    /// No leader (an election is running, or no quorum): retryable, nothing applied.
    NoLeader,
    /// The write was proposed but leadership was lost (or time ran out) before its
    /// outcome was known: it may or may not have been applied.
    Unknown(String),
}

pub const UNKNOWN_PREFIX: &str = "UNKNOWN";

impl ReplicaError {
    pub fn reply(&self) -> Reply {
        match self {
            ReplicaError::NoLeader => {
                Reply::error("CLUSTERDOWN The cluster is down: no leader for this shard, retry later")
            }
            ReplicaError::Unknown(why) => Reply::Error(
                format!("{UNKNOWN_PREFIX} outcome unknown, the write may or may not have been applied: {why}")
                    .into(),
            ),
        }
    }
}

/// A proposed write waiting for its result.
pub struct PendingWrite {
    rx: oneshot::Receiver<Result<Vec<Reply>, ReplicaError>>,
}

impl PendingWrite {
    pub async fn wait(self) -> Result<Vec<Reply>, ReplicaError> {
        self.rx
            .await
            .unwrap_or_else(|_| Err(ReplicaError::Unknown("the shard stopped".into())))
    }
}

pub struct Replica {
    pub raft: Raft,
    pub sm: ShardSm,
    pub shard: Arc<Shard>,
    pub transport: Arc<Transport>,
    pub cfg: ReplicaConfig,
    log_stats: LogStatsHandle,
    forward_ids: AtomicU64,
    /// Operations waiting for the proposer (see [`Replica::enqueue`]).
    queue: Mutex<Vec<Queued>>,
    queued: tokio::sync::Notify,
    /// A follower's writes waiting for the forwarder.
    fwd_queue: Mutex<Vec<Queued>>,
    fwd_queued: tokio::sync::Notify,
}

type ReplyTx = oneshot::Sender<Result<Vec<Reply>, ReplicaError>>;

struct Queued {
    op: Op,
    tx: ReplyTx,
}

/// A waiter that takes every reply of its entry (an operation not merged with others).
const ALL: usize = usize::MAX;
/// Bounds of one merged entry.
const MERGE_MAX_COMMANDS: usize = 4096;
const MERGE_MAX_BYTES: usize = 4 << 20;

/// Groups queued operations into entries, in order: runs of plain command batches
/// (`Op::Exec`) merge into one `Op::Exec` (each waiter gets its own commands' replies);
/// anything else is an entry of its own.
fn merge(items: Vec<Queued>) -> Vec<(Op, Vec<(usize, ReplyTx)>)> {
    let mut out: Vec<(Op, Vec<(usize, ReplyTx)>)> = Vec::new();
    let mut bytes = 0usize;
    for Queued { op, tx } in items {
        match op {
            Op::Exec(cmds) => {
                let size: usize = cmds.iter().flatten().map(|a| a.len() + 16).sum();
                let n = cmds.len();
                // An Exec group's waiters are never ALL (only unmerged ops are).
                if let Some((Op::Exec(group), waiters)) = out.last_mut() {
                    if group.len() + n <= MERGE_MAX_COMMANDS && bytes + size <= MERGE_MAX_BYTES {
                        group.extend(cmds);
                        waiters.push((n, tx));
                        bytes += size;
                        continue;
                    }
                }
                bytes = size;
                out.push((Op::Exec(cmds), vec![(n, tx)]));
            }
            other => out.push((other, vec![(ALL, tx)])),
        }
    }
    out
}

type WriteResult = Result<ClientWriteResponse<TypeConfig>, ClientWriteError<TypeConfig>>;

impl Replica {
    pub fn new(
        raft: Raft,
        sm: ShardSm,
        transport: Arc<Transport>,
        cfg: ReplicaConfig,
        log_stats: LogStatsHandle,
    ) -> Arc<Replica> {
        let replica = Arc::new(Replica {
            log_stats,
            queue: Mutex::new(Vec::new()),
            queued: tokio::sync::Notify::new(),
            fwd_queue: Mutex::new(Vec::new()),
            fwd_queued: tokio::sync::Notify::new(),
            shard: sm.shard().clone(),
            raft,
            sm,
            transport,
            cfg,
            forward_ids: AtomicU64::new(1),
        });
        tokio::spawn(replica.clone().proposer());
        tokio::spawn(replica.clone().forwarder());
        replica
    }

    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// The leader as last seen: id and addresses.
    pub fn leader(&self) -> Option<(u64, NodeAddr)> {
        let m = self.raft.metrics().borrow_watched().clone();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// `INFO raft` fields: role, leader, term, log and apply positions, snapshot,
    /// fsync figures.
    pub fn status(&self) -> Vec<(String, String)> {
        let m = self.raft.metrics().borrow_watched().clone();
        let log = self.log_stats.get();
        let leader = self.leader();
        let opt = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
        let role = match m.state {
            openraft::ServerState::Leader => "leader",
            openraft::ServerState::Candidate => "candidate",
            openraft::ServerState::Learner => "learner",
            _ => "follower",
        };
        let members: Vec<String> = m
            .membership_config
            .membership()
            .voter_ids()
            .map(|v| v.to_string())
            .collect();
        vec![
            ("raft_node_id".into(), self.cfg.node_id.to_string()),
            ("raft_role".into(), role.into()),
            ("raft_leader_id".into(), opt(leader.as_ref().map(|l| l.0))),
            (
                "raft_leader_addr".into(),
                leader.map(|l| l.1.client).unwrap_or_default(),
            ),
            ("raft_term".into(), m.current_term.to_string()),
            ("raft_voters".into(), members.join("|")),
            (
                "raft_commit_index".into(),
                opt(m.local_committed.as_ref().map(|l| l.index)),
            ),
            (
                "raft_applied_index".into(),
                opt(m.last_applied.as_ref().map(|l| l.index)),
            ),
            ("raft_last_log_index".into(), opt(m.last_log_index)),
            ("raft_first_log_index".into(), opt(log.first_index)),
            ("raft_log_bytes".into(), log.group_bytes.to_string()),
            ("raft_node_log_bytes".into(), log.bytes_on_disk.to_string()),
            (
                "raft_last_snapshot_index".into(),
                opt(m.snapshot.as_ref().map(|l| l.index)),
            ),
            (
                "raft_purged_index".into(),
                opt(m.purged.as_ref().map(|l| l.index)),
            ),
            ("raft_fsync_count".into(), log.fsync_count.to_string()),
            ("raft_fsync_p50_us".into(), log.fsync_p50_us.to_string()),
            ("raft_fsync_p99_us".into(), log.fsync_p99_us.to_string()),
            ("raft_fsync_p999_us".into(), log.fsync_p999_us.to_string()),
            (
                "raft_read_mode".into(),
                format!("{:?}", self.cfg.read_mode).to_ascii_lowercase(),
            ),
        ]
    }

    /// Waits (up to `leader_wait`) until some node is leader.
    async fn wait_leader(&self) -> Option<(u64, NodeAddr)> {
        let deadline = Instant::now() + self.cfg.leader_wait;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Queues an operation for the log. The returned wait yields apply's replies for
    /// this operation. Operations queued one after another are applied in that order.
    ///
    /// Submissions queue up while the proposer is busy or until the other tasks of the
    /// current scheduling round have run (as Redis batches one event-loop iteration),
    /// then consecutive command batches — pipelined commands, other clients' commands,
    /// MULTI blocks — become one log entry, stamped with one time and seed and applied
    /// atomically in queue order. Fewer, bigger entries: one Raft round and one fsync
    /// per batch instead of per command.
    ///
    /// On a follower the operation queues for the forwarder instead, which sends what
    /// queued up to the leader in one request.
    pub fn enqueue(&self, op: Op) -> PendingWrite {
        let (tx, rx) = oneshot::channel();
        if self.is_leader() {
            self.queue.lock().unwrap().push(Queued { op, tx });
            self.queued.notify_one();
        } else {
            self.fwd_queue.lock().unwrap().push(Queued { op, tx });
            self.fwd_queued.notify_one();
        }
        PendingWrite { rx }
    }

    /// The forwarder of a follower: sends what queued up as one batch to the leader,
    /// waits for its outcomes, and meanwhile the next batch queues up. A batch is never
    /// resent once it may have arrived, so a forwarded write applies at most once.
    async fn forwarder(self: Arc<Replica>) {
        loop {
            self.fwd_queued.notified().await;
            tokio::task::yield_now().await;
            loop {
                let items = std::mem::take(&mut *self.fwd_queue.lock().unwrap());
                if items.is_empty() {
                    break;
                }
                self.forward_batch(items).await;
            }
        }
    }

    async fn forward_batch(&self, items: Vec<Queued>) {
        let fail = |items: Vec<Queued>, e: ReplicaError| {
            for q in items {
                let _ = q.tx.send(Err(e.clone()));
            }
        };
        let Some((leader, _)) = self.wait_leader().await else {
            return fail(items, ReplicaError::NoLeader);
        };
        if leader == self.cfg.node_id {
            // We became the leader meanwhile: propose them here, still in order.
            self.queue.lock().unwrap().extend(items);
            self.queued.notify_one();
            return;
        }
        let (ops, txs): (Vec<ForwardWrite>, Vec<ReplyTx>) = items
            .into_iter()
            .map(|q| {
                let id =
                    (self.cfg.node_id << 40) ^ self.forward_ids.fetch_add(1, Ordering::Relaxed);
                (
                    ForwardWrite {
                        request_id: id,
                        op: q.op,
                    },
                    q.tx,
                )
            })
            .unzip();
        let out = self
            .transport
            .call(
                leader,
                self.cfg.group,
                kind::FORWARD_WRITE,
                raft_msg::encode(&ops),
                self.cfg.write_timeout,
            )
            .await;
        let outcomes = match out.map(|b| raft_msg::decode::<Vec<ForwardOutcome>>(&b)) {
            Ok(Ok(o)) if o.len() == txs.len() => o,
            Ok(Ok(_)) | Ok(Err(_)) => {
                let e = ReplicaError::Unknown("bad answer from the leader".into());
                return txs.into_iter().for_each(|t| drop(t.send(Err(e.clone()))));
            }
            Err(CallError::Unreachable(_)) | Err(CallError::Refused(_)) => {
                return txs
                    .into_iter()
                    .for_each(|t| drop(t.send(Err(ReplicaError::NoLeader))));
            }
            Err(e) => {
                let e = ReplicaError::Unknown(format!("lost contact with the leader ({e:?})"));
                return txs.into_iter().for_each(|t| drop(t.send(Err(e.clone()))));
            }
        };
        for (o, tx) in outcomes.into_iter().zip(txs) {
            let r = match o {
                ForwardOutcome::Applied(replies) => raft_msg::decode::<Applied>(&replies)
                    .map(|a| a.0)
                    .map_err(ReplicaError::Unknown),
                ForwardOutcome::NotLeader(_) => Err(ReplicaError::NoLeader),
                ForwardOutcome::Unknown(why) => Err(ReplicaError::Unknown(why)),
            };
            let _ = tx.send(r);
        }
    }

    /// The proposer: drains the queue, merges consecutive command batches into one
    /// entry, proposes each entry in queue order and routes the replies back.
    async fn proposer(self: Arc<Replica>) {
        loop {
            self.queued.notified().await;
            // Let the connections that are ready this round add their commands first.
            tokio::task::yield_now().await;
            loop {
                let items = std::mem::take(&mut *self.queue.lock().unwrap());
                if items.is_empty() {
                    break;
                }
                for (op, waiters) in merge(items) {
                    self.propose(op, waiters).await;
                }
            }
        }
    }

    async fn propose(&self, op: Op, waiters: Vec<(usize, ReplyTx)>) {
        let entry = self.shard.lock().stamp(op);
        let (responder, rx) =
            openraft::impls::ProgressResponder::<TypeConfig, WriteResult>::complete_only();
        if self
            .raft
            .write(Logged(entry))
            .responder(responder)
            .await
            .is_err()
        {
            for (_, tx) in waiters {
                let _ = tx.send(Err(ReplicaError::NoLeader));
            }
            return;
        }
        let timeout = self.cfg.write_timeout;
        tokio::spawn(async move {
            let r = match tokio::time::timeout(timeout, rx).await {
                Err(_) => Err(ReplicaError::Unknown(
                    "timed out waiting for the commit".into(),
                )),
                Ok(Err(_)) => Err(ReplicaError::Unknown(
                    "the leader stopped before the commit".into(),
                )),
                Ok(Ok(Ok(resp))) => Ok(resp.data.0),
                // Refused before it was appended: nothing happened.
                Ok(Ok(Err(ClientWriteError::ForwardToLeader(_)))) => Err(ReplicaError::NoLeader),
                Ok(Ok(Err(e))) => Err(ReplicaError::Unknown(format!("leadership changed ({e})"))),
            };
            match r {
                Err(e) => {
                    for (_, tx) in waiters {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
                Ok(replies) => {
                    let mut replies = replies.into_iter();
                    for (n, tx) in waiters {
                        let mine: Vec<Reply> = if n == ALL {
                            replies.by_ref().collect()
                        } else {
                            replies.by_ref().take(n).collect()
                        };
                        let _ = tx.send(Ok(mine));
                    }
                }
            }
        });
    }

    /// Writes an operation wherever this node stands: proposes it as the leader,
    /// forwards it to the leader as a follower.
    pub async fn write(&self, op: Op) -> Result<Vec<Reply>, ReplicaError> {
        self.enqueue(op).wait().await
    }

    /// openraft's read policy for this replica's read mode.
    fn read_policy(&self) -> ReadPolicy {
        match self.cfg.read_mode {
            ReadMode::ReadIndex | ReadMode::PlantedStaleRead => ReadPolicy::ReadIndex,
            ReadMode::Lease => ReadPolicy::LeaseRead,
        }
    }

    /// Makes the local state fit for a linearizable read: on return, everything
    /// committed before the call has been applied here.
    pub async fn read_barrier(&self) -> Result<(), ReplicaError> {
        if self.cfg.read_mode == ReadMode::PlantedStaleRead {
            return Ok(());
        }
        let index = if self.is_leader() {
            match self.raft.ensure_linearizable(self.read_policy()).await {
                Ok(_) => return Ok(()),
                Err(_) => return Err(ReplicaError::NoLeader),
            }
        } else {
            let Some((leader, _)) = self.wait_leader().await else {
                return Err(ReplicaError::NoLeader);
            };
            if leader == self.cfg.node_id {
                return Box::pin(self.read_barrier()).await;
            }
            let out = self
                .transport
                .call(
                    leader,
                    self.cfg.group,
                    kind::READ_INDEX,
                    Bytes::new(),
                    self.cfg.leader_wait,
                )
                .await
                .map_err(|_| ReplicaError::NoLeader)?;
            match raft_msg::decode::<ReadIndexOutcome>(&out) {
                Ok(ReadIndexOutcome::Index(i)) => i,
                _ => return Err(ReplicaError::NoLeader),
            }
        };
        self.raft
            .wait(Some(self.cfg.write_timeout))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map(|_| ())
            .map_err(|_| ReplicaError::NoLeader)
    }

    /// Hands leadership to the most caught-up other voter and waits (up to `wait`) for
    /// the change. Returns whether leadership moved.
    pub async fn transfer_leadership(&self, wait: Duration) -> bool {
        if !self.is_leader() {
            return true;
        }
        let m = self.raft.metrics().borrow_watched().clone();
        let Some(repl) = m.replication.as_ref() else {
            return false;
        };
        let voters: BTreeSet<u64> = m.membership_config.membership().voter_ids().collect();
        // Only a follower we are connected to can take over (a stopped one would just
        // let the wait run out).
        let live: BTreeSet<u64> = self.transport.connected_peers().into_iter().collect();
        let target = repl
            .iter()
            .filter(|(id, _)| **id != self.cfg.node_id && voters.contains(id) && live.contains(id))
            .max_by_key(|(_, matched)| matched.as_ref().map(|l| l.index))
            .map(|(id, _)| *id);
        let Some(target) = target else {
            return false;
        };
        self.transfer_to(target, wait).await
    }

    /// Hands leadership to `target` and waits (up to `wait`) for the change.
    pub async fn transfer_to(&self, target: u64, wait: Duration) -> bool {
        tracing::info!(
            group = self.cfg.group,
            to = target,
            "transferring leadership"
        );
        if self.raft.trigger().transfer_leader(target).await.is_err() {
            return false;
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let l = self.raft.metrics().borrow_watched().current_leader;
            if l.is_some_and(|l| l != self.cfg.node_id) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// Whether `node` answers within `wait` and has applied the log up to within
    /// `slack` entries of what this replica has applied: a replica whose log matches
    /// may still be replaying a backlog, and as leader it would stall the shard.
    pub async fn applied_near(&self, node: u64, slack: u64, wait: Duration) -> bool {
        let mine = self
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .clone()
            .map_or(0, |l| l.index);
        match self
            .transport
            .call(node, self.cfg.group, kind::APPLIED, Bytes::new(), wait)
            .await
        {
            Ok(b) => raft_msg::decode::<u64>(&b).is_ok_and(|theirs| theirs + slack >= mine),
            Err(_) => false,
        }
    }

    /// Whether `node` is a voter that has replicated everything up to the leader's
    /// last log index but `slack` (known on the leader only).
    pub fn caught_up(&self, node: u64, slack: u64) -> bool {
        let m = self.raft.metrics().borrow_watched().clone();
        let last = m.last_log_index.unwrap_or(0);
        let voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == node);
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&node).cloned().flatten())
            .map_or(0, |l| l.index);
        voter && matched + slack >= last
    }
}

/// A request for the node as a whole rather than one group (published messages,
/// commands forwarded from other nodes, leader hints), handed to the node layer.
pub type NodeRequest = Box<dyn Fn(u64, u16, Bytes, Responder) + Send + Sync>;

/// Answers peers: Raft RPCs for each group this node hosts, forwarded writes (proposed
/// in arrival order), read indexes and snapshot chunks; node-wide requests go to the
/// node's hook.
pub struct PeerHandler {
    replicas: RwLock<HashMap<u64, Arc<Replica>>>,
    on_node: OnceLock<NodeRequest>,
    incoming: Mutex<HashMap<(u64, u64, u64), Incoming>>,
}

struct Incoming {
    path: PathBuf,
    file: File,
    next: u64,
}

fn reply<T: serde::Serialize>(r: Responder, v: &T) {
    r.send(Ok(raft_msg::encode(v)));
}

impl PeerHandler {
    pub fn new() -> Arc<PeerHandler> {
        Arc::new(PeerHandler {
            replicas: RwLock::new(HashMap::new()),
            on_node: OnceLock::new(),
            incoming: Mutex::new(HashMap::new()),
        })
    }

    /// Where node-wide requests go: `(from, kind, body, respond)`.
    pub fn set_on_node(&self, f: NodeRequest) {
        let _ = self.on_node.set(f);
    }

    /// Routes a group's requests to its replica once its Raft is up.
    pub fn attach(&self, replica: Arc<Replica>) {
        self.replicas
            .write()
            .unwrap()
            .insert(replica.cfg.group, replica);
    }

    /// Stops routing a group's requests here.
    pub fn detach(&self, group: u64) {
        self.replicas.write().unwrap().remove(&group);
    }

    fn snapshot_chunk(
        &self,
        replica: Arc<Replica>,
        from: u64,
        c: SnapshotChunk,
        respond: Responder,
    ) {
        let key = (from, replica.cfg.group, c.transfer);
        let step = || -> Result<Option<(PathBuf, File)>, String> {
            let mut map = self.incoming.lock().unwrap();
            if c.offset == 0 {
                let (path, file) = replica
                    .sm
                    .snapshot_dir()
                    .create_temp()
                    .map_err(|e| e.to_string())?;
                map.insert(
                    key,
                    Incoming {
                        path,
                        file,
                        next: 0,
                    },
                );
            }
            let inc = map
                .get_mut(&key)
                .ok_or("snapshot chunk for an unknown transfer")?;
            if inc.next != c.offset {
                map.remove(&key);
                return Err("snapshot chunk out of order".into());
            }
            inc.file.write_all(&c.data).map_err(|e| e.to_string())?;
            inc.next += c.data.len() as u64;
            if c.last.is_some() {
                let inc = map.remove(&key).expect("present");
                inc.file.sync_all().map_err(|e| e.to_string())?;
                return Ok(Some((inc.path, inc.file)));
            }
            Ok(None)
        };
        match step() {
            Err(e) => respond.send(Err(e)),
            Ok(None) => reply(respond, &Ok::<(), String>(())),
            Ok(Some((path, _))) => {
                let Some(last) = c.last else { unreachable!() };
                tokio::spawn(async move {
                    let out = async {
                        let (vote, meta): (Vote, super::raft::SnapshotMeta) =
                            raft_msg::decode(&last)?;
                        let snapshot = Snapshot {
                            meta,
                            snapshot: SnapFile::open(path).map_err(|e| e.to_string())?,
                        };
                        replica
                            .raft
                            .install_full_snapshot(vote, snapshot)
                            .await
                            .map_err(|e| e.to_string())
                    }
                    .await;
                    reply(respond, &out);
                });
            }
        }
    }
}

impl Handler for PeerHandler {
    fn handle(&self, from: u64, group: u64, kind: u16, body: Bytes, respond: Responder) {
        if matches!(
            kind,
            kind::PUBLISH | kind::FORWARD_COMMANDS | kind::LEADER_HINTS
        ) {
            match self.on_node.get() {
                Some(f) => f(from, kind, body, respond),
                None => respond.send(Err("node starting".into())),
            }
            return;
        }
        let Some(replica) = self.replicas.read().unwrap().get(&group).cloned() else {
            respond.send(Err(format!("group {group} is not on this node")));
            return;
        };
        macro_rules! rpc {
            ($method:ident) => {{
                match raft_msg::decode(&body) {
                    Err(e) => respond.send(Err(e)),
                    Ok(req) => {
                        tokio::spawn(async move {
                            let r = replica.raft.$method(req).await.map_err(|e| e.to_string());
                            reply(respond, &r);
                        });
                    }
                }
            }};
        }
        match kind {
            kind::APPEND => rpc!(append_entries),
            kind::VOTE => rpc!(vote),
            kind::PRE_VOTE => rpc!(pre_vote),
            kind::TRANSFER_LEADER => rpc!(handle_transfer_leader),
            kind::SNAPSHOT_CHUNK => match raft_msg::decode::<SnapshotChunk>(&body) {
                Err(e) => respond.send(Err(e)),
                Ok(c) => self.snapshot_chunk(replica, from, c, respond),
            },
            kind::FORWARD_WRITE => match raft_msg::decode::<Vec<ForwardWrite>>(&body) {
                Err(e) => respond.send(Err(e)),
                Ok(reqs) => {
                    if !replica.is_leader() {
                        let not = ForwardOutcome::NotLeader(replica.leader());
                        reply(respond, &vec![not; reqs.len()]);
                        return;
                    }
                    // Queued here, on the connection's reader, so forwarded writes keep
                    // their arrival order.
                    replica.shard.lock().refresh_clock();
                    let pending: Vec<PendingWrite> =
                        reqs.into_iter().map(|r| replica.enqueue(r.op)).collect();
                    tokio::spawn(async move {
                        let mut out = Vec::with_capacity(pending.len());
                        for p in pending {
                            out.push(match p.wait().await {
                                Ok(replies) => {
                                    ForwardOutcome::Applied(raft_msg::encode(&Applied(replies)))
                                }
                                Err(ReplicaError::Unknown(why)) => ForwardOutcome::Unknown(why),
                                Err(_) => ForwardOutcome::NotLeader(None),
                            });
                        }
                        reply(respond, &out);
                    });
                }
            },
            kind::APPLIED => {
                let applied = replica.raft.metrics().borrow_watched().last_applied.clone();
                reply(respond, &applied.map_or(0u64, |l| l.index));
            }
            kind::READ_INDEX => {
                tokio::spawn(async move {
                    let out = if !replica.is_leader() {
                        ReadIndexOutcome::NotLeader(replica.leader())
                    } else {
                        match replica.raft.get_read_log_id(replica.read_policy()).await {
                            Ok((read, _)) => ReadIndexOutcome::Index(read.index()),
                            Err(_) => ReadIndexOutcome::NotLeader(replica.leader()),
                        }
                    };
                    reply(respond, &out);
                });
            }
            other => respond.send(Err(format!("unknown request kind {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::testing::argv;

    fn q(op: Op) -> (Queued, oneshot::Receiver<Result<Vec<Reply>, ReplicaError>>) {
        let (tx, rx) = oneshot::channel();
        (Queued { op, tx }, rx)
    }

    #[test]
    fn merge_keeps_order_and_groups_only_consecutive_command_batches() {
        let exec = |n: usize| {
            Op::Exec(
                (0..n)
                    .map(|i| argv(&["SET", &format!("k{i}"), "v"]))
                    .collect(),
            )
        };
        let ops = vec![
            exec(1),
            exec(3),
            Op::ExpireKeys(vec![bytes::Bytes::from_static(b"x")]),
            exec(2),
            Op::ExecWatched {
                watched: vec![],
                cmds: vec![argv(&["INCR", "c"])],
            },
            exec(1),
        ];
        let items: Vec<Queued> = ops.into_iter().map(|op| q(op).0).collect();
        let groups = merge(items);
        let shape: Vec<(String, Vec<usize>)> = groups
            .iter()
            .map(|(op, w)| {
                let kind = match op {
                    Op::Exec(c) => format!("exec{}", c.len()),
                    Op::ExpireKeys(_) => "expire".into(),
                    Op::ExecWatched { .. } => "watched".into(),
                    Op::EvictKeys(_) => "evict".into(),
                    Op::Migrate(_) => "migrate".into(),
                };
                (kind, w.iter().map(|(n, _)| *n).collect())
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("exec4".to_string(), vec![1, 3]),
                ("expire".to_string(), vec![ALL]),
                ("exec2".to_string(), vec![2]),
                ("watched".to_string(), vec![ALL]),
                ("exec1".to_string(), vec![1]),
            ]
        );
        // A merged entry never exceeds its bound.
        let big: Vec<Queued> = (0..3)
            .map(|_| q(exec(MERGE_MAX_COMMANDS / 2 + 1)).0)
            .collect();
        assert_eq!(merge(big).len(), 3);
    }
}
