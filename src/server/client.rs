//! Per-connection state and the registry of connected clients (CLIENT LIST/KILL).

use crate::resp::{Protocol, Reply};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, Notify};

/// What other tasks can do to a connection: kill it, or hand it out-of-band messages
/// (pub/sub pushes).
#[derive(Debug)]
pub struct ClientHandle {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub created: Instant,
    pub killed: AtomicBool,
    pub kill_notify: Notify,
    pub push: mpsc::Sender<Reply>,
    pub info: Mutex<ClientInfo>,
}

/// What CLIENT LIST shows, updated by the connection.
#[derive(Debug, Default, Clone)]
pub struct ClientInfo {
    pub name: String,
    pub lib_name: String,
    pub lib_ver: String,
    pub last_cmd: &'static str,
    pub last_interaction: Option<Instant>,
    pub resp: u8,
    pub sub: usize,
    pub psub: usize,
    pub ssub: usize,
    pub multi: i64,
    pub watch: usize,
    pub qbuf: usize,
    pub blocked: bool,
    /// CLIENT NO-EVICT on (flag `e`).
    pub no_evict: bool,
    /// CLIENT NO-TOUCH on (flag `T`).
    pub no_touch: bool,
}

impl ClientInfo {
    /// CLIENT LIST's `flags=`, in Redis's order; `N` when none applies.
    pub fn flags(&self) -> String {
        let mut f = String::new();
        if self.sub + self.psub + self.ssub > 0 {
            f.push('P');
        }
        if self.multi >= 0 {
            f.push('x');
        }
        if self.blocked {
            f.push('b');
        }
        if self.no_evict {
            f.push('e');
        }
        if self.no_touch {
            f.push('T');
        }
        if f.is_empty() {
            f.push('N');
        }
        f
    }

    /// Whether CLIENT LIST TYPE / CLIENT KILL TYPE `pubsub` applies (else `normal`).
    pub fn is_pubsub(&self) -> bool {
        self.sub + self.psub + self.ssub > 0
    }
}

impl ClientHandle {
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill_notify.notify_one();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// One CLIENT LIST line.
    pub fn describe(&self) -> String {
        let i = self.info.lock().unwrap().clone();
        let now = Instant::now();
        let age = now.duration_since(self.created).as_secs();
        let idle = i
            .last_interaction
            .map(|t| now.duration_since(t).as_secs())
            .unwrap_or(age);
        let flags = i.flags();
        format!(
            "id={} addr={} laddr={} fd=8 name={} age={} idle={} flags={} db=0 sub={} psub={} ssub={} multi={} qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=16384 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            i.name,
            age,
            idle,
            flags,
            i.sub,
            i.psub,
            i.ssub,
            i.multi,
            i.qbuf,
            if i.last_cmd.is_empty() { "NULL" } else { i.last_cmd },
            i.resp.max(2),
            i.lib_name,
            i.lib_ver
        )
    }
}

#[derive(Default)]
pub struct Clients {
    next_id: AtomicU64,
    map: Mutex<HashMap<u64, Arc<ClientHandle>>>,
}

impl Clients {
    pub fn register(
        &self,
        addr: SocketAddr,
        laddr: SocketAddr,
        push: mpsc::Sender<Reply>,
    ) -> Arc<ClientHandle> {
        let h = self.handle(addr, laddr, push);
        self.map.lock().unwrap().insert(h.id, h.clone());
        h
    }

    /// A client handle not in the registry (CLIENT LIST does not show it): the
    /// session of commands another node forwarded here.
    pub fn detached(&self) -> Arc<ClientHandle> {
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        let (push, _) = mpsc::channel(1);
        self.handle(addr, addr, push)
    }

    fn handle(
        &self,
        addr: SocketAddr,
        laddr: SocketAddr,
        push: mpsc::Sender<Reply>,
    ) -> Arc<ClientHandle> {
        Arc::new(ClientHandle {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            addr,
            laddr,
            created: Instant::now(),
            killed: AtomicBool::new(false),
            kill_notify: Notify::new(),
            push,
            info: Mutex::new(ClientInfo {
                resp: 2,
                multi: -1,
                ..Default::default()
            }),
        })
    }

    pub fn unregister(&self, id: u64) {
        self.map.lock().unwrap().remove(&id);
    }

    pub fn count(&self) -> usize {
        self.map.lock().unwrap().len()
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientHandle>> {
        self.map.lock().unwrap().get(&id).cloned()
    }

    /// All clients, by id.
    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        let mut v: Vec<_> = self.map.lock().unwrap().values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }
}

/// A connection's own state, owned by its task.
pub struct ClientState {
    pub handle: Arc<ClientHandle>,
    pub proto: Protocol,
    pub authenticated: bool,
    /// Commands queued by MULTI; `None` outside a transaction.
    pub multi: Option<Vec<Vec<Bytes>>>,
    /// A command failed to queue: EXEC answers EXECABORT.
    pub multi_failed: bool,
    /// Cluster mode: the one slot the queued commands' keys hash to.
    pub multi_slot: Option<u16>,
    /// Refusals are answers, not retried (see `exec::should_retry`): set while a
    /// refused command is being run again, and for commands another node forwarded
    /// (their origin retries).
    pub retrying: bool,
    /// An EXEC refused before anything in it ran (forward mode), with its slot: run
    /// again by `exec::exec_again`, watches kept.
    pub exec_again: Option<(Vec<Vec<Bytes>>, Option<u16>)>,
    /// WATCHed keys with whether each was alive when watched and its digest then
    /// (a replicated EXEC carries the digests and aborts in apply if any changed).
    pub watched: Vec<(Bytes, bool, u64)>,
    /// Set when a watched key changes.
    pub watch_dirty: Arc<AtomicBool>,
    pub channels: HashSet<Bytes>,
    pub patterns: HashSet<Bytes>,
    pub shard_channels: HashSet<Bytes>,
    pub no_evict: bool,
    pub no_touch: bool,
    /// READONLY: reads are served from this node's state even on a follower (possibly
    /// stale), without a read index.
    pub readonly: bool,
    /// ASKING: the next command may touch a slot this node is importing (after an
    /// `-ASK` redirect). Lasts one command, see [`ClientState::after_command_asking`].
    pub asking: bool,
    /// Close after writing the pending replies (QUIT, protocol error).
    pub closing: bool,
    /// CLIENT REPLY OFF.
    pub reply_off: bool,
    /// CLIENT REPLY SKIP: drop the reply of the command after it...
    pub reply_skip_next: bool,
    /// ...which is the current one when this is set.
    pub reply_skip: bool,
    /// Command counts not yet flushed into the server's stats.
    pub stats: super::stats::LocalStats,
    /// The last command run, published to CLIENT LIST once per read batch.
    pub last_cmd: &'static str,
    /// When the current command started, for its duration (see dispatch).
    pub mark: std::time::Instant,
}

impl ClientState {
    pub fn new(handle: Arc<ClientHandle>, authenticated: bool) -> ClientState {
        ClientState {
            handle,
            proto: Protocol::Resp2,
            authenticated,
            multi: None,
            retrying: false,
            exec_again: None,
            multi_failed: false,
            multi_slot: None,
            watched: Vec::new(),
            watch_dirty: Arc::new(AtomicBool::new(false)),
            channels: HashSet::new(),
            patterns: HashSet::new(),
            shard_channels: HashSet::new(),
            no_evict: false,
            no_touch: false,
            readonly: false,
            asking: false,
            closing: false,
            reply_off: false,
            reply_skip_next: false,
            reply_skip: false,
            stats: Default::default(),
            last_cmd: "",
            mark: std::time::Instant::now(),
        }
    }

    /// Called once after each command: whether its replies are dropped (CLIENT REPLY
    /// OFF, or SKIP on the previous command), and moves a SKIP on to the next command.
    pub fn replies_suppressed(&mut self) -> bool {
        let silent = self.reply_off || self.reply_skip;
        self.reply_skip = std::mem::take(&mut self.reply_skip_next);
        silent
    }

    /// Publishes per-batch state: command counts into the server's stats, the last
    /// command and the interaction time into CLIENT LIST.
    pub fn flush(&mut self, stats: &super::stats::Stats) {
        self.stats.flush(stats);
        let mut i = self.handle.info.lock().unwrap();
        if !self.last_cmd.is_empty() {
            i.last_cmd = self.last_cmd;
        }
        i.last_interaction = Some(std::time::Instant::now());
    }

    pub fn id(&self) -> u64 {
        self.handle.id
    }

    /// The ASKING reset hook, as Redis's resetClient: the connection calls it after
    /// each command with the command's name. ASKING covers exactly the next command,
    /// and stays set while a MULTI is open so that it covers the queued commands up to
    /// and including EXEC.
    pub fn after_command_asking(&mut self, command: &str) {
        if command != "asking" && self.multi.is_none() {
            self.asking = false;
        }
    }

    pub fn subscriptions(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shard_channels.len()
    }

    /// RESP2 subscribed mode restricts the commands a client may send.
    pub fn in_subscribed_mode(&self) -> bool {
        self.proto == Protocol::Resp2 && self.subscriptions() > 0
    }
}
