//! Peer transport: a generic request/response layer between nodes, multiplexing any
//! number of groups (Raft shards, the meta group, admin) over ONE TCP connection per
//! pair of nodes. It knows nothing of Raft: a request is (group, kind, body) and a
//! response is `Result<Bytes, String>`; the frames are in `proto::peer`.
//!
//! - `mod.rs`: the address book, dialing and backoff, the one-connection rule, calls.
//! - `conn.rs`: one connection's pending calls, writer task (batches every queued
//!   frame into one vectored write) and reader task (dispatch in arrival order,
//!   keepalive).
//! - `handshake.rs`: the socket side of the handshake (challenge, hello, verdict).
//!
//! # One connection per pair, and the dial race
//!
//! Either node may dial; the connection is then used in both directions. When a new
//! connection to node X completes its handshake, the accepting side decides (the
//! dialer always adopts what the acceptor kept, so both ends agree):
//! - no connection to X and no dial to X in progress: accept;
//! - a dial to X in progress (both dialed at once): the dial of the LOWER node id wins;
//!   the higher node's dial is refused with `RefuseCode::Duplicate` before any request
//!   was sent on it, and the callers waiting on that dial wait (up to
//!   `connect_timeout`) for the winning connection to arrive and then use it. No call
//!   is ever sent on the losing connection, so none is lost.
//! - already connected to X: a new dial from X means X lost the old connection (or X
//!   restarted: its incarnation differs), so the new one replaces it; the old one's
//!   pending calls fail with `Closed`. The one exception is an old connection that
//!   this node dialed while it has the lower id and X's incarnation is unchanged:
//!   then X's dial raced ours and is refused as a duplicate, as above.
//!
//! # Failures
//!
//! `CallError` says whether a request may have reached the peer
//! (`maybe_delivered`). A lost connection (EOF, reset, 3x `keepalive` of silence)
//! fails all its pending calls at once with `Closed`; the next call dials again. A
//! failed dial puts the peer into exponential backoff (`backoff_min..backoff_max`,
//! reset by a successful handshake), during which calls fail fast with `Unreachable`.
//!
//! # Lifecycle
//!
//! `serve` owns the accept loop; every connection owns a reader and a writer task
//! that end when it closes. `shutdown` (also run on drop) stops the accept loop,
//! closes every connection and fails pending calls with `Closed`.

mod conn;
mod handshake;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use conn::{outgoing, Conn, ConnMeta, ConnTasks, Outbox};
use handshake::{DialError, Established, Me};
use proto::peer::{
    request_frame_len, response_frame_len, verify_auth, Challenge, Frame, Hello, RefuseCode,
    DEFAULT_MAX_FRAME, NONCE_LEN, PEER_PROTOCOL_VERSION,
};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{timeout, timeout_at, Instant};

#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub node_id: u64,
    /// The cluster secret. When set, peers must prove they know it (HMAC
    /// challenge-response); it is never sent.
    pub secret: Option<String>,
    /// Empty: not checked. Otherwise a peer with a different non-empty id is refused.
    pub cluster_id: String,
    /// Bounds the TCP connect and the handshake together, on both sides.
    pub connect_timeout: Duration,
    /// Ping when nothing was received for this long; close after 3x.
    pub keepalive: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Largest frame accepted (and sent): a bigger incoming frame closes the
    /// connection; a bigger request fails with `Unreachable` without being sent.
    pub max_frame: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            node_id: 0,
            secret: None,
            cluster_id: String::new(),
            connect_timeout: Duration::from_millis(500),
            keepalive: Duration::from_secs(1),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

pub trait Handler: Send + Sync + 'static {
    /// Called on the connection's reader task, in the order requests arrived on that
    /// connection; must not block. Answer now or later via the responder (it may be
    /// moved into a spawned task).
    fn handle(&self, from: u64, group: u64, kind: u16, body: Bytes, respond: Responder);
}

impl<F> Handler for F
where
    F: Fn(u64, u64, u16, Bytes, Responder) + Send + Sync + 'static,
{
    fn handle(&self, from: u64, group: u64, kind: u16, body: Bytes, respond: Responder) {
        self(from, group, kind, body, respond)
    }
}

/// The way back to the caller of one request. Dropping it unanswered answers
/// `Err("dropped")`, so a caller never waits for a response nobody will send.
pub struct Responder {
    out: Option<Outbox>,
    id: u64,
    max_frame: usize,
}

impl Responder {
    fn new(out: Outbox, id: u64, max_frame: usize) -> Responder {
        Responder {
            out: Some(out),
            id,
            max_frame,
        }
    }

    pub fn send(mut self, result: Result<Bytes, String>) {
        self.respond(result);
    }

    fn respond(&mut self, result: Result<Bytes, String>) {
        let Some(out) = self.out.take() else { return };
        let len = response_frame_len(&result);
        let result = if len > self.max_frame {
            Err(format!(
                "response of {len} bytes exceeds max_frame {}",
                self.max_frame
            ))
        } else {
            result
        };
        // The connection may be gone; then so is the caller's pending call.
        let _ = out.send(outgoing(&Frame::Response {
            id: self.id,
            result,
        }));
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.respond(Err("dropped".into()));
    }
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Responder({})", self.id)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// Never sent: no address, connect failed, or in backoff.
    Unreachable(String),
    /// Sent, no answer in time: outcome unknown.
    Timeout,
    /// Connection lost after sending: outcome unknown.
    Closed,
    /// The handler answered Err.
    Remote(String),
    /// Handshake refused.
    Refused(String),
}

impl CallError {
    /// Whether the handler may have seen the request (so a retry may repeat it).
    pub fn maybe_delivered(&self) -> bool {
        matches!(
            self,
            CallError::Timeout | CallError::Closed | CallError::Remote(_)
        )
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "peer unreachable: {e}"),
            CallError::Timeout => write!(f, "peer call timed out (outcome unknown)"),
            CallError::Closed => write!(f, "peer connection lost (outcome unknown)"),
            CallError::Remote(e) => write!(f, "peer answered an error: {e}"),
            CallError::Refused(e) => write!(f, "peer refused the handshake: {e}"),
        }
    }
}

impl std::error::Error for CallError {}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Handshakes this node completed as the dialer (one-off calls included).
    pub connections_opened: u64,
    /// Handshakes this node completed as the acceptor.
    pub connections_accepted: u64,
    /// Connections open now (registered and one-off).
    pub connections_live: usize,
    pub calls: u64,
    pub timeouts: u64,
    /// Inbound handshakes this node refused (version, secret, cluster, node id).
    pub refused: u64,
    /// Our handshakes a peer refused (dial races excluded).
    pub refused_by_peer: u64,
    /// Dials that failed to connect or to complete a handshake.
    pub connect_failures: u64,
    /// Simultaneous dials resolved by keeping one connection.
    pub dial_races: u64,
    /// Calls waiting for a response now.
    pub pending_calls: usize,
}

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    accepted: AtomicU64,
    calls: AtomicU64,
    timeouts: AtomicU64,
    refused: AtomicU64,
    refused_by_peer: AtomicU64,
    connect_failures: AtomicU64,
    dial_races: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Clone)]
enum DialOutcome {
    Connected,
    /// Refused as a duplicate: the peer's own connection is on its way.
    RaceLost,
    /// The address changed while dialing: dial again.
    Retry,
    Failed(CallError),
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
    last_error: String,
}

impl Backoff {
    fn fail(&mut self, min: Duration, max: Duration, error: String) {
        let delay = min.saturating_mul(1 << self.failures.min(20)).min(max);
        self.failures = self.failures.saturating_add(1);
        self.until = Some(Instant::now() + delay);
        self.last_error = error;
    }

    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.until.filter(|u| *u > now).map(|u| u - now)
    }
}

struct Peer {
    addr: Option<String>,
    conn: Option<Arc<Conn>>,
    /// The dial in progress: its id and where its outcome will be published.
    dial: Option<(u64, watch::Receiver<Option<DialOutcome>>)>,
    /// After losing a dial race: wait until then for the peer's connection.
    race_until: Option<Instant>,
    backoff: Backoff,
    /// Bumped whenever a connection is registered for this peer.
    registered: watch::Sender<u64>,
}

impl Peer {
    fn new() -> Peer {
        Peer {
            addr: None,
            conn: None,
            dial: None,
            race_until: None,
            backoff: Backoff::default(),
            registered: watch::channel(0).0,
        }
    }

    fn live_conn(&self) -> Option<&Arc<Conn>> {
        self.conn.as_ref().filter(|c| !c.is_closed())
    }
}

#[derive(Default)]
struct State {
    shut: bool,
    peers: HashMap<u64, Peer>,
    /// Every open connection, registered or one-off, by connection id.
    conns: HashMap<u64, Arc<Conn>>,
}

pub struct Transport {
    cfg: TransportConfig,
    handler: Arc<dyn Handler>,
    /// Random per instance: lets a peer tell our restart from a lost connection.
    incarnation: u64,
    me: Weak<Transport>,
    state: Mutex<State>,
    ids: AtomicU64,
    counters: Counters,
    shutdown: watch::Sender<bool>,
}

impl Transport {
    pub fn new(cfg: TransportConfig, handler: Arc<dyn Handler>) -> Arc<Transport> {
        let incarnation = getrandom::u64().expect("the OS random source is available");
        Arc::new_cyclic(|me| Transport {
            cfg,
            handler,
            incarnation,
            me: me.clone(),
            state: Mutex::new(State::default()),
            ids: AtomicU64::new(1),
            counters: Counters::default(),
            shutdown: watch::channel(false).0,
        })
    }

    /// Runs the accept loop on `listener` until `shutdown` (or drop).
    pub fn serve(self: &Arc<Self>, listener: TcpListener) -> JoinHandle<()> {
        let me = Arc::downgrade(self);
        let mut stop = self.shutdown.subscribe();
        let node = self.cfg.node_id;
        if let Ok(a) = listener.local_addr() {
            tracing::info!(node, address = %a, "peer port listening");
        }
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    r = listener.accept() => r,
                    // Err: the transport was dropped.
                    _ = stop.wait_for(|s| *s) => break,
                };
                match accepted {
                    Ok((stream, from)) => {
                        let Some(t) = me.upgrade() else { break };
                        tokio::spawn(t.accept(stream, from));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: do not spin.
                        tracing::warn!(node, "peer accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        })
    }

    /// Sets node's address. A connection we dialed to a different address is closed.
    pub fn set_peer(&self, node: u64, addr: String) {
        let mut st = self.lock();
        let peer = st.peers.entry(node).or_insert_with(Peer::new);
        if peer.addr.as_deref() == Some(addr.as_str()) {
            return;
        }
        peer.addr = Some(addr);
        peer.backoff = Backoff::default();
        let stale = peer
            .conn
            .as_ref()
            .is_some_and(|c| c.addr.is_some() && c.addr != peer.addr);
        if stale {
            let old = peer.conn.take().expect("checked above");
            st.conns.remove(&old.id);
            old.close();
            tracing::info!(
                peer = node,
                "peer address changed; closed the old connection"
            );
        }
    }

    /// Forgets node's address and closes its connection.
    pub fn remove_peer(&self, node: u64) {
        let mut st = self.lock();
        if let Some(conn) = st.peers.remove(&node).and_then(|p| p.conn) {
            st.conns.remove(&conn.id);
            conn.close();
            tracing::info!(peer = node, "peer removed; closed its connection");
        }
    }

    pub async fn call(
        &self,
        node: u64,
        group: u64,
        kind: u16,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        bump(&self.counters.calls);
        self.check_request_size(body.len())?;
        let deadline = Instant::now() + timeout;
        loop {
            let conn = match timeout_at(deadline, self.connection(node)).await {
                Ok(conn) => conn?,
                Err(_) => {
                    return Err(CallError::Unreachable(format!(
                        "no connection to node {node} within the call's timeout"
                    )))
                }
            };
            match conn.start_call(group, kind, body.clone()) {
                Some((id, rx)) => return self.finish_call(&conn, id, rx, deadline).await,
                // Closed before the request was queued: never sent, safe to try again.
                None => continue,
            }
        }
    }

    /// One-off call to an address whose node id we do not know yet (bootstrap /
    /// join): its own short-lived connection, which the peer does not take as ours.
    pub async fn call_addr(
        &self,
        addr: &str,
        group: u64,
        kind: u16,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(u64, Bytes), CallError> {
        bump(&self.counters.calls);
        self.check_request_size(body.len())?;
        let deadline = Instant::now() + timeout;
        let connect_by = deadline.min(Instant::now() + self.cfg.connect_timeout);
        let est = match timeout_at(
            connect_by,
            handshake::dial(addr, &self.me_hello(), None, true),
        )
        .await
        {
            Ok(Ok(est)) => est,
            Ok(Err(DialError::Failed(e))) => {
                bump(&self.counters.connect_failures);
                return Err(CallError::Unreachable(e));
            }
            Ok(Err(DialError::Refused { code, reason })) => {
                bump(&self.counters.refused_by_peer);
                tracing::warn!(%addr, ?code, "peer refused our handshake: {reason}");
                return Err(CallError::Refused(reason));
            }
            Err(_) => {
                bump(&self.counters.connect_failures);
                return Err(CallError::Unreachable(format!(
                    "connect to {addr} timed out"
                )));
            }
        };
        let peer = est.peer;
        let conn = {
            let mut st = self.lock();
            if st.shut {
                return Err(CallError::Unreachable("transport is shut down".into()));
            }
            self.install(&mut st, est, Some(addr.to_string()), true, None)
        };
        bump(&self.counters.opened);
        // Closes the connection however this call ends (answered, timed out, dropped).
        let _close = CloseOnDrop(self, conn.clone());
        match conn.start_call(group, kind, body) {
            Some((id, rx)) => self
                .finish_call(&conn, id, rx, deadline)
                .await
                .map(|b| (peer, b)),
            None => Err(CallError::Unreachable(format!(
                "connection to {addr} closed before the request was sent"
            ))),
        }
    }

    /// Nodes with an open connection, ascending.
    pub fn connected_peers(&self) -> Vec<u64> {
        let st = self.lock();
        let mut v: Vec<u64> = st
            .peers
            .iter()
            .filter(|(_, p)| p.live_conn().is_some())
            .map(|(n, _)| *n)
            .collect();
        v.sort_unstable();
        v
    }

    pub fn stats(&self) -> TransportStats {
        let (live, pending) = {
            let st = self.lock();
            let pending = st.conns.values().map(|c| c.pending_calls()).sum();
            (st.conns.len(), pending)
        };
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TransportStats {
            connections_opened: get(&c.opened),
            connections_accepted: get(&c.accepted),
            connections_live: live,
            calls: get(&c.calls),
            timeouts: get(&c.timeouts),
            refused: get(&c.refused),
            refused_by_peer: get(&c.refused_by_peer),
            connect_failures: get(&c.connect_failures),
            dial_races: get(&c.dial_races),
            pending_calls: pending,
        }
    }

    /// Stops accepting, closes every connection and fails pending calls with
    /// `Closed`. Later calls fail with `Unreachable`.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
        let conns: Vec<Arc<Conn>> = {
            let mut st = self.lock();
            if st.shut {
                return;
            }
            st.shut = true;
            for p in st.peers.values_mut() {
                p.conn = None;
            }
            st.conns.drain().map(|(_, c)| c).collect()
        };
        for c in &conns {
            c.close();
        }
        tracing::info!(
            node = self.cfg.node_id,
            connections = conns.len(),
            "peer transport shut down"
        );
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn me_hello(&self) -> Me<'_> {
        Me {
            node_id: self.cfg.node_id,
            incarnation: self.incarnation,
            cluster_id: &self.cfg.cluster_id,
            secret: self.cfg.secret.as_deref(),
        }
    }

    fn check_request_size(&self, body_len: usize) -> Result<(), CallError> {
        let len = request_frame_len(body_len);
        if len > self.cfg.max_frame {
            return Err(CallError::Unreachable(format!(
                "request of {len} bytes exceeds max_frame {}",
                self.cfg.max_frame
            )));
        }
        Ok(())
    }

    /// The registered connection to `node`, dialing (or joining a dial) if needed.
    async fn connection(&self, node: u64) -> Result<Arc<Conn>, CallError> {
        enum Wait {
            Dial(u64, watch::Receiver<Option<DialOutcome>>),
            Registration(watch::Receiver<u64>, Instant),
        }
        loop {
            let wait = {
                let mut st = self.lock();
                if st.shut {
                    return Err(CallError::Unreachable("transport is shut down".into()));
                }
                let now = Instant::now();
                let Some(peer) = st.peers.get_mut(&node) else {
                    return Err(CallError::Unreachable(format!(
                        "no address for node {node}"
                    )));
                };
                if let Some(c) = peer.live_conn() {
                    return Ok(c.clone());
                }
                if let Some((id, rx)) = &peer.dial {
                    Wait::Dial(*id, rx.clone())
                } else if let Some(until) = peer.race_until.filter(|u| *u > now) {
                    Wait::Registration(peer.registered.subscribe(), until)
                } else if let Some(left) = peer.backoff.remaining(now) {
                    return Err(CallError::Unreachable(format!(
                        "node {node} is in backoff for another {left:?} after: {}",
                        peer.backoff.last_error
                    )));
                } else {
                    let Some(addr) = peer.addr.clone() else {
                        return Err(CallError::Unreachable(format!(
                            "no address for node {node}"
                        )));
                    };
                    let id = self.ids.fetch_add(1, Ordering::Relaxed);
                    let (tx, rx) = watch::channel(None);
                    peer.dial = Some((id, rx.clone()));
                    let me = self.me.upgrade().expect("a transport in use is alive");
                    tokio::spawn(async move {
                        let outcome = me.dial(node, addr, id).await;
                        let _ = tx.send(Some(outcome));
                    });
                    Wait::Dial(id, rx)
                }
            };
            match wait {
                Wait::Dial(id, mut rx) => {
                    let outcome = rx.wait_for(|o| o.is_some()).await.map(|o| o.clone());
                    match outcome {
                        Ok(Some(DialOutcome::Failed(e))) => return Err(e),
                        Ok(Some(_)) => continue,
                        // The dial task vanished (runtime shutting down).
                        Ok(None) | Err(_) => {
                            let mut st = self.lock();
                            if let Some(p) = st.peers.get_mut(&node) {
                                if p.dial.as_ref().is_some_and(|d| d.0 == id) {
                                    p.dial = None;
                                }
                            }
                            return Err(CallError::Unreachable(format!(
                                "dial to node {node} was abandoned"
                            )));
                        }
                    }
                }
                Wait::Registration(mut rx, until) => {
                    if timeout_at(until, rx.changed()).await.is_err() {
                        return Err(CallError::Unreachable(format!(
                            "node {node} refused our dial as a duplicate and its own \
                             connection did not arrive"
                        )));
                    }
                }
            }
        }
    }

    /// One dial to `node` at `addr`; publishes its effect on the peer's state.
    async fn dial(&self, node: u64, addr: String, dial_id: u64) -> DialOutcome {
        let ct = self.cfg.connect_timeout;
        let result = match timeout(
            ct,
            handshake::dial(&addr, &self.me_hello(), Some(node), false),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(DialError::Failed(format!(
                "connect to {addr} timed out after {ct:?}"
            ))),
        };
        let mut st = self.lock();
        let st = &mut *st;
        let shut = st.shut;
        let Some(peer) = st.peers.get_mut(&node) else {
            return DialOutcome::Failed(CallError::Unreachable(format!(
                "node {node} was removed while connecting"
            )));
        };
        if peer.dial.as_ref().is_some_and(|d| d.0 == dial_id) {
            peer.dial = None;
        }
        match result {
            Ok(est) => {
                if shut {
                    return DialOutcome::Failed(CallError::Unreachable(
                        "transport is shut down".into(),
                    ));
                }
                if peer.addr.as_deref() != Some(addr.as_str()) {
                    return DialOutcome::Retry;
                }
                bump(&self.counters.opened);
                tracing::info!(node = self.cfg.node_id, peer = node, %addr, "connected to peer");
                self.install(st, est, Some(addr), false, None);
                DialOutcome::Connected
            }
            Err(DialError::Refused {
                code: RefuseCode::Duplicate,
                reason,
            }) => {
                bump(&self.counters.dial_races);
                tracing::debug!(node = self.cfg.node_id, peer = node, "dial race: {reason}");
                peer.race_until = Some(Instant::now() + ct);
                DialOutcome::RaceLost
            }
            Err(DialError::Refused { code, reason }) => {
                bump(&self.counters.refused_by_peer);
                tracing::warn!(node = self.cfg.node_id, peer = node, %addr, ?code, "peer refused our handshake: {reason}");
                let (min, max) = (self.cfg.backoff_min, self.cfg.backoff_max);
                peer.backoff.fail(min, max, format!("refused: {reason}"));
                DialOutcome::Failed(CallError::Refused(reason))
            }
            Err(DialError::Failed(e)) => {
                bump(&self.counters.connect_failures);
                if peer.backoff.failures == 0 {
                    tracing::warn!(
                        node = self.cfg.node_id,
                        peer = node,
                        "cannot reach peer: {e}"
                    );
                } else {
                    tracing::debug!(
                        node = self.cfg.node_id,
                        peer = node,
                        "cannot reach peer: {e}"
                    );
                }
                let (min, max) = (self.cfg.backoff_min, self.cfg.backoff_max);
                peer.backoff.fail(min, max, e.clone());
                DialOutcome::Failed(CallError::Unreachable(e))
            }
        }
    }

    /// Server side of a new connection: challenge, check, decide, install.
    async fn accept(self: Arc<Self>, mut stream: TcpStream, from: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let me = self.cfg.node_id;
        let ct = self.cfg.connect_timeout;
        let challenge = Challenge {
            version: PEER_PROTOCOL_VERSION,
            node_id: me,
            incarnation: self.incarnation,
            nonce: handshake::nonce(),
        };
        let nonce = challenge.nonce;
        let (hello, leftover) = match timeout(ct, handshake::greet(&mut stream, challenge)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                tracing::info!(node = me, %from, "peer handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::info!(node = me, %from, "peer handshake timed out after {ct:?}");
                return;
            }
        };
        let peer = hello.node_id;
        if let Err((code, reason)) = self.check_hello(&hello, &nonce) {
            bump(&self.counters.refused);
            tracing::warn!(node = me, peer, %from, ?code, "refused peer: {reason}");
            let _ = timeout(ct, handshake::refuse(stream, me, code, reason)).await;
            return;
        }
        let (local, remote) = match handshake::addrs(&stream) {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(node = me, peer, %from, "peer connection lost in handshake: {e}");
                return;
            }
        };
        let est = Established {
            stream,
            leftover,
            peer,
            peer_incarnation: hello.incarnation,
            local,
            remote,
        };
        let refused = {
            let mut st = self.lock();
            if st.shut {
                return;
            }
            let verdict = if hello.one_off {
                Ok(())
            } else {
                self.admit(&mut st, &hello)
            };
            match verdict {
                Ok(()) => {
                    let welcome = Frame::Welcome { node_id: me };
                    self.install(&mut st, est, None, hello.one_off, Some(welcome));
                    None
                }
                Err(r) => Some((r, est.stream)),
            }
        };
        match refused {
            None => {
                bump(&self.counters.accepted);
                if hello.one_off {
                    tracing::debug!(node = me, peer, %from, "accepted one-off peer connection");
                } else {
                    tracing::info!(node = me, peer, %from, "accepted peer connection");
                }
            }
            Some(((code, reason), stream)) => {
                bump(&self.counters.dial_races);
                tracing::debug!(node = me, peer, %from, "dial race: {reason}");
                let _ = timeout(ct, handshake::refuse(stream, me, code, reason)).await;
            }
        }
    }

    /// Version, cluster, identity and secret checks of a hello.
    fn check_hello(
        &self,
        hello: &Hello,
        nonce: &[u8; NONCE_LEN],
    ) -> Result<(), (RefuseCode, String)> {
        let me = self.cfg.node_id;
        if hello.version != PEER_PROTOCOL_VERSION {
            return Err((
                RefuseCode::Version,
                format!(
                    "peer protocol version {} is not supported: node {me} speaks version {}",
                    hello.version, PEER_PROTOCOL_VERSION
                ),
            ));
        }
        let (ours, theirs) = (&self.cfg.cluster_id, &hello.cluster_id);
        if !ours.is_empty() && !theirs.is_empty() && ours != theirs {
            return Err((
                RefuseCode::Cluster,
                format!("cluster id mismatch: node {me} is in {ours:?}, the peer in {theirs:?}"),
            ));
        }
        if hello.node_id == me {
            return Err((
                RefuseCode::SameNode,
                format!("the peer claims node id {me}, which is this node's own"),
            ));
        }
        if let Some(secret) = &self.cfg.secret {
            match &hello.auth {
                None => {
                    return Err((
                        RefuseCode::Auth,
                        format!("node {me} requires the cluster secret and the peer sent no proof of it"),
                    ))
                }
                Some(proof) if !verify_auth(secret.as_bytes(), nonce, hello.node_id, proof) => {
                    return Err((
                        RefuseCode::Auth,
                        format!("cluster secret mismatch: the peer's proof does not match node {me}'s secret"),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The one-connection rule, applied by the accepting side (see the module doc).
    fn admit(&self, st: &mut State, hello: &Hello) -> Result<(), (RefuseCode, String)> {
        let (me, them) = (self.cfg.node_id, hello.node_id);
        let peer = st.peers.entry(them).or_insert_with(Peer::new);
        if let Some(old) = peer.live_conn() {
            let ours_wins =
                old.peer_incarnation == hello.incarnation && old.dialer == me && me < them;
            if ours_wins {
                return Err((
                    RefuseCode::Duplicate,
                    format!(
                        "node {me} keeps the connection it dialed to node {them} (the lower id's dial wins)"
                    ),
                ));
            }
        } else if peer.dial.is_some() && me < them {
            return Err((
                RefuseCode::Duplicate,
                format!("nodes {me} and {them} dialed each other at once; node {me}'s dial wins"),
            ));
        }
        Ok(())
    }

    /// Creates the connection, registers it as the peer's (unless one-off), closing
    /// the one it replaces, and starts its tasks. `first` is queued before anything
    /// else can be (the acceptor's welcome).
    fn install(
        &self,
        st: &mut State,
        est: Established,
        addr: Option<String>,
        one_off: bool,
        first: Option<Frame>,
    ) -> Arc<Conn> {
        let dialer = if addr.is_some() {
            self.cfg.node_id
        } else {
            est.peer
        };
        let (conn, rx) = Conn::new(ConnMeta {
            id: self.ids.fetch_add(1, Ordering::Relaxed),
            peer: est.peer,
            peer_incarnation: est.peer_incarnation,
            dialer,
            addr,
            one_off,
            local: est.local,
            remote: est.remote,
        });
        if let Some(f) = first {
            conn.send(&f);
        }
        if !one_off {
            let peer = st.peers.entry(est.peer).or_insert_with(Peer::new);
            if let Some(old) = peer.conn.replace(conn.clone()) {
                if old.close() {
                    tracing::info!(
                        node = self.cfg.node_id,
                        peer = est.peer,
                        "replaced the connection to peer"
                    );
                }
                st.conns.remove(&old.id);
            }
            peer.backoff = Backoff::default();
            peer.race_until = None;
            peer.registered.send_modify(|g| *g += 1);
        }
        st.conns.insert(conn.id, conn.clone());
        let tasks = ConnTasks {
            transport: self.me.clone(),
            handler: self.handler.clone(),
            max_frame: self.cfg.max_frame,
            keepalive: self.cfg.keepalive,
        };
        conn::spawn(tasks, conn.clone(), est.stream, est.leftover, rx);
        conn
    }

    /// Called by a connection's tasks when it ends, and by one-off calls when done.
    fn connection_lost(&self, conn: &Arc<Conn>, why: &str) {
        let first = conn.close();
        {
            let mut st = self.lock();
            st.conns.remove(&conn.id);
            if let Some(p) = st.peers.get_mut(&conn.peer) {
                if p.conn.as_ref().is_some_and(|c| c.id == conn.id) {
                    p.conn = None;
                }
            }
        }
        if first && !conn.one_off {
            tracing::info!(node = self.cfg.node_id, peer = conn.peer, local = %conn.local, remote = %conn.remote, "peer connection closed: {why}");
        }
    }

    async fn finish_call(
        &self,
        conn: &Arc<Conn>,
        id: u64,
        rx: oneshot::Receiver<Result<Bytes, String>>,
        deadline: Instant,
    ) -> Result<Bytes, CallError> {
        // Removes the pending entry however this ends (timeout, caller gave up).
        struct Forget<'a>(&'a Conn, u64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.forget_call(self.1);
            }
        }
        let _forget = Forget(conn, id);
        match timeout_at(deadline, rx).await {
            Ok(Ok(Ok(body))) => Ok(body),
            Ok(Ok(Err(e))) => Err(CallError::Remote(e)),
            Ok(Err(_)) => Err(CallError::Closed),
            Err(_) => {
                bump(&self.counters.timeouts);
                Err(CallError::Timeout)
            }
        }
    }

    /// The local and remote socket addresses of the registered connection to node.
    #[cfg(test)]
    fn connection_addrs(&self, node: u64) -> Option<(SocketAddr, SocketAddr)> {
        let st = self.lock();
        let c = st.peers.get(&node)?.live_conn()?;
        Some((c.local, c.remote))
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct CloseOnDrop<'a>(&'a Transport, Arc<Conn>);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.connection_lost(&self.1, "one-off call done");
    }
}
