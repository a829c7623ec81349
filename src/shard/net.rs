//! openraft's network (v2) over the peer transport: one [`PeerNet`] per (group,
//! target), all of them sharing the node's one connection per peer. Snapshots go as a
//! stream of bounded chunks read from the snapshot file.

use super::raft::{SnapFile, Snapshot, TypeConfig, Vote};
use crate::transport::{CallError, Transport};
use bytes::Bytes;
use openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use proto::raft_msg::{self, kind, SnapshotChunk};
use std::future::Future;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes per snapshot chunk: bounded memory on both ends, whatever the snapshot size.
pub const SNAPSHOT_CHUNK: usize = 1024 * 1024;

#[derive(Debug)]
struct Msg(String);
impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Msg {}

pub struct NetFactory {
    pub transport: Arc<Transport>,
    pub group: u64,
    pub node_id: u64,
    pub pace: Arc<CatchUpPace>,
}

/// Paces what a leader sends a replica it is adding (a replica move's catch-up): at
/// most `rate` bytes a second, so moving replicas does not crowd out the clients of
/// the nodes involved (they share their serving thread with replication). Shared by
/// a node's groups; the membership code marks the (group, node) pairs to pace.
#[derive(Default)]
pub struct CatchUpPace {
    /// Bytes a second; 0: unpaced.
    pub rate: AtomicU64,
    paced: std::sync::Mutex<std::collections::HashSet<(u64, u64)>>,
}

impl CatchUpPace {
    /// Paces `group`'s replication to `node` until [`CatchUpPace::stop`].
    pub fn start(&self, group: u64, node: u64) {
        self.paced.lock().unwrap().insert((group, node));
    }

    pub fn stop(&self, group: u64, node: u64) {
        self.paced.lock().unwrap().remove(&(group, node));
    }

    /// The pace for `group`'s replication to `node`: bytes a second, 0 if unpaced.
    fn rate(&self, group: u64, node: u64) -> u64 {
        let rate = self.rate.load(Ordering::Relaxed);
        if rate == 0 || !self.paced.lock().unwrap().contains(&(group, node)) {
            return 0;
        }
        rate
    }
}

/// When the next paced send may go: a send of `bytes` at `rate` bytes a second takes
/// its share of time after the previous one's (or now, if that is later).
pub fn next_send(prev: Option<Instant>, now: Instant, bytes: usize, rate: u64) -> Instant {
    let start = prev.map_or(now, |p| p.max(now));
    start + Duration::from_secs_f64(bytes as f64 / rate as f64)
}

impl RaftNetworkFactory<TypeConfig> for NetFactory {
    type Network = PeerNet;

    async fn new_client(&mut self, target: u64, node: &proto::NodeAddr) -> PeerNet {
        self.transport.set_peer(target, node.peer.clone());
        PeerNet {
            transport: self.transport.clone(),
            target,
            group: self.group,
            node_id: self.node_id,
            pace: self.pace.clone(),
            next_send: None,
        }
    }
}

pub struct PeerNet {
    transport: Arc<Transport>,
    target: u64,
    group: u64,
    node_id: u64,
    pace: Arc<CatchUpPace>,
    /// When the next paced append may be sent.
    next_send: Option<Instant>,
}

static TRANSFERS: AtomicU64 = AtomicU64::new(1);

/// The time an AppendEntries may take. openraft asks for its heartbeat interval (50 ms)
/// for every append, which a batch of big entries (migration chunks of 256 KB, large
/// values; up to 300 entries a batch) cannot meet: the RPC timed out, was sent again,
/// timed out again, and the follower never caught up (found by the reshard test: a
/// shard stuck with its commit index behind for good). Heartbeats keep openraft's
/// timeout; an append with entries gets half a second plus a millisecond per 16 KB.
pub fn append_timeout(asked: Duration, heartbeat: bool, bytes: usize) -> Duration {
    if heartbeat {
        return asked;
    }
    asked.max(Duration::from_millis(500 + (bytes / 16_384) as u64))
}

impl PeerNet {
    async fn call<Req, Resp>(
        &self,
        kind: u16,
        action: RPCTypes,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
    {
        self.call_body(kind, action, raft_msg::encode(req), timeout)
            .await
    }

    async fn call_body<Resp>(
        &self,
        kind: u16,
        action: RPCTypes,
        body: bytes::Bytes,
        timeout: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Resp: serde::de::DeserializeOwned,
    {
        let out = self
            .transport
            .call(self.target, self.group, kind, body, timeout)
            .await
            .map_err(|e| self.rpc_error(e, action, timeout))?;
        raft_msg::decode::<Result<Resp, String>>(&out)
            .and_then(|r| r)
            .map_err(|e| RPCError::Network(NetworkError::new(&Msg(e))))
    }

    fn rpc_error(&self, e: CallError, action: RPCTypes, timeout: Duration) -> RPCError<TypeConfig> {
        match e {
            CallError::Timeout => RPCError::Timeout(Timeout {
                action,
                id: self.node_id,
                target: self.target,
                timeout,
            }),
            CallError::Unreachable(m) | CallError::Refused(m) => {
                RPCError::Unreachable(Unreachable::new(&Msg(m)))
            }
            CallError::Closed => {
                RPCError::Unreachable(Unreachable::new(&Msg("connection closed".into())))
            }
            CallError::Remote(m) => RPCError::Network(NetworkError::new(&Msg(m))),
        }
    }
}

fn streaming(e: RPCError<TypeConfig>) -> StreamingError<TypeConfig> {
    match e {
        RPCError::Timeout(t) => StreamingError::Timeout(t),
        RPCError::Unreachable(u) => StreamingError::Unreachable(u),
        RPCError::Network(n) => StreamingError::Network(n),
        RPCError::RemoteError(r) => StreamingError::Network(NetworkError::new(&Msg(r.to_string()))),
    }
}

impl RaftNetworkV2<TypeConfig> for PeerNet {
    type SnapshotData = SnapFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let rate = if rpc.entries.is_empty() {
            0
        } else {
            self.pace.rate(self.group, self.target)
        };
        if rate > 0 {
            if let Some(t) = self.next_send {
                tokio::time::sleep_until(t.into()).await;
            }
        }
        let body = raft_msg::encode(&rpc);
        if rate > 0 {
            self.next_send = Some(next_send(self.next_send, Instant::now(), body.len(), rate));
        }
        self.call_body(
            kind::APPEND,
            RPCTypes::AppendEntries,
            body.clone(),
            append_timeout(option.hard_ttl(), rpc.entries.is_empty(), body.len()),
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(kind::VOTE, RPCTypes::Vote, &rpc, option.hard_ttl())
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(kind::PRE_VOTE, RPCTypes::Vote, &rpc, option.hard_ttl())
            .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            kind::TRANSFER_LEADER,
            RPCTypes::TransferLeader,
            &req,
            option.hard_ttl(),
        )
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let transfer = (self.node_id << 40) ^ TRANSFERS.fetch_add(1, Ordering::Relaxed);
        let chunk_timeout = option.hard_ttl().max(Duration::from_secs(5));
        let send = async {
            let mut file = snapshot.snapshot.file;
            let mut offset = 0u64;
            let mut buf = vec![0u8; SNAPSHOT_CHUNK];
            let rate = self.pace.rate(self.group, self.target);
            loop {
                if rate > 0 {
                    if let Some(t) = self.next_send {
                        tokio::time::sleep_until(t.into()).await;
                    }
                    self.next_send = Some(next_send(
                        self.next_send,
                        Instant::now(),
                        SNAPSHOT_CHUNK,
                        rate,
                    ));
                }
                let n = read_full(&mut file, &mut buf).map_err(|e| {
                    StreamingError::Network(NetworkError::new(&Msg(format!(
                        "reading snapshot: {e}"
                    ))))
                })?;
                let last = n < buf.len();
                let chunk = SnapshotChunk {
                    transfer,
                    offset,
                    data: Bytes::copy_from_slice(&buf[..n]),
                    last: last.then(|| raft_msg::encode(&(vote.clone(), snapshot.meta.clone()))),
                };
                offset += n as u64;
                if last {
                    return self
                        .call::<_, SnapshotResponse<TypeConfig>>(
                            kind::SNAPSHOT_CHUNK,
                            RPCTypes::InstallSnapshot,
                            &chunk,
                            chunk_timeout * 4,
                        )
                        .await
                        .map_err(streaming);
                }
                self.call::<_, ()>(
                    kind::SNAPSHOT_CHUNK,
                    RPCTypes::InstallSnapshot,
                    &chunk,
                    chunk_timeout,
                )
                .await
                .map_err(streaming)?;
            }
        };
        tokio::select! {
            r = send => r,
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }
}

/// Fills `buf` unless the file ends first; returns the bytes read.
fn read_full(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod append_timeout_tests {
    use super::append_timeout;
    use std::time::Duration;

    #[test]
    fn appends_get_time_for_their_size_heartbeats_do_not() {
        let ms = Duration::from_millis;
        assert_eq!(append_timeout(ms(50), true, 10 << 20), ms(50));
        assert_eq!(append_timeout(ms(50), false, 100), ms(500));
        assert_eq!(append_timeout(ms(50), false, 75 << 20), ms(500 + 4800));
        assert_eq!(append_timeout(ms(9000), false, 100), ms(9000));
    }
}

#[cfg(test)]
mod pace_tests {
    use super::*;

    #[test]
    fn paced_sends_take_their_share_of_time() {
        let now = Instant::now();
        let mb = 1024 * 1024;
        // 1 MB at 8 MB/s: the next send 125 ms later.
        let t1 = next_send(None, now, mb, 8 * mb as u64);
        assert_eq!(t1 - now, Duration::from_millis(125));
        // Sent on time: the shares add up.
        let t2 = next_send(Some(t1), t1, 2 * mb, 8 * mb as u64);
        assert_eq!(t2 - now, Duration::from_millis(375));
        // Sent late (the link was idle): no credit saved up for a burst.
        let late = now + Duration::from_secs(2);
        assert_eq!(
            next_send(Some(t2), late, mb, 8 * mb as u64) - late,
            Duration::from_millis(125)
        );
    }

    #[test]
    fn only_marked_replicas_are_paced() {
        let pace = CatchUpPace::default();
        pace.rate.store(1000, Ordering::Relaxed);
        assert_eq!(pace.rate(1, 4), 0);
        pace.start(1, 4);
        assert_eq!(pace.rate(1, 4), 1000);
        assert_eq!(pace.rate(2, 4), 0);
        pace.rate.store(0, Ordering::Relaxed);
        assert_eq!(pace.rate(1, 4), 0);
        pace.rate.store(1000, Ordering::Relaxed);
        pace.stop(1, 4);
        assert_eq!(pace.rate(1, 4), 0);
    }
}
