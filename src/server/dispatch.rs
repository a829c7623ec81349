//! One command, from decoded arguments to a reply: the checks Redis's processCommand
//! makes (existence and arity, auth, pub/sub context, OOM, MULTI queueing) in the
//! same order, then the run itself: server commands here, keyspace reads against the
//! shard, writes through the shard's write path.

use super::client::ClientState;
use super::commands;
use super::route::{Hosted, Target};
use super::waiters::Blocked;
use super::Server;
use crate::cmd::{self, flags, CommandSpec, Handler, ReadCtx};
use crate::resp::Reply;
use crate::shard::replica::ReplicaError;
use crate::shard::OOM;
use bytes::Bytes;
use proto::Op;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What the connection does after a command.
pub enum Flow {
    Reply(Reply),
    /// Several replies for one command (SUBSCRIBE confirms each channel), or none
    /// (SHUTDOWN closes without answering).
    Replies(Vec<Reply>),
    /// A blocking pop found nothing: wait for a key change or the timeout.
    Block(BlockWait),
    /// Cluster mode: a write to put through the shard's log; the connection proposes
    /// (or forwards) it and turns apply's replies into the answer.
    Replicate(Replicate),
    /// Cluster mode: commands for a shard this node does not host, to run on a node
    /// that does; the answer is the last command's reply.
    Forward {
        shard: u64,
        cmds: Vec<Vec<Bytes>>,
    },
    /// Cluster mode, forward mode: a command over several shards (multi-key commands
    /// across slots, DBSIZE, KEYS, SCAN...), split, run per shard, and combined.
    FanOut(Vec<Bytes>),
    /// An answer computed off the connection's path (cluster administration, which
    /// waits on the meta group).
    Later(futures_util::future::BoxFuture<'static, Reply>),
    /// Forward mode: a command refused because its slot is migrating (or moved under
    /// a stale map), to run again once the map moves on (exec::retry_refused).
    Retry(Vec<Bytes>),
}

pub struct Replicate {
    /// The hosted shard whose log takes the write.
    pub hosted: Arc<Hosted>,
    pub op: Op,
    pub finish: Finish,
}

pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";
pub const UNSERVED: &str = "CLUSTERDOWN Hash slot not served";

/// Multi-key commands that fan out across shards in forward mode (not atomic across
/// shards), and keyless commands that cover the whole cluster.
pub fn fans_out(name: &str) -> bool {
    matches!(
        name,
        "mget" | "mset" | "del" | "unlink" | "exists" | "touch"
    )
}

pub fn cluster_wide(name: &str) -> bool {
    matches!(
        name,
        "dbsize" | "keys" | "scan" | "randomkey" | "flushall" | "flushdb"
    )
}

/// How a replicated write's replies become the client's answer.
pub enum Finish {
    /// One command: its reply.
    One,
    /// A blocking pop: while it finds nothing, wait for a change to `keys` (or the
    /// deadline) and try again.
    Blocking {
        argv: Vec<Bytes>,
        keys: Vec<Bytes>,
        deadline: Option<Instant>,
    },
    /// EXEC: the block's reply, with queued server commands run in place.
    Exec(ExecFinish),
}

pub type ExecFinish = Box<
    dyn FnOnce(&Arc<Server>, &mut ClientState, Result<Vec<Reply>, ReplicaError>) -> Reply + Send,
>;

pub struct BlockWait {
    /// The shard whose keys the client waits on.
    pub hosted: Arc<Hosted>,
    pub ticket: u64,
    pub rx: oneshot::Receiver<Option<Reply>>,
    pub deadline: Option<Instant>,
}

/// An empty result of a pop: the blocking variant of the command would block.
pub fn is_empty_pop(r: &Reply) -> bool {
    matches!(r, Reply::Nil | Reply::NilArray)
}

/// Commands allowed in RESP2 subscribed mode.
fn allowed_when_subscribed(name: &str) -> bool {
    matches!(
        name,
        "subscribe"
            | "ssubscribe"
            | "unsubscribe"
            | "sunsubscribe"
            | "psubscribe"
            | "punsubscribe"
            | "ping"
            | "quit"
            | "reset"
    )
}

/// The subcommand's spec for a container command (`client|list`), or the command's
/// own: flags, stats and error texts are per subcommand, as in Redis.
fn effective_spec(spec: &'static CommandSpec, args: &[Bytes]) -> &'static CommandSpec {
    if spec.subcommands.is_empty() || args.len() < 2 {
        return spec;
    }
    cmd::lookup_sub(spec, &args[1]).unwrap_or(spec)
}

/// The spec a command routes by: its subcommand's for container commands (key
/// positions are per subcommand); None for an unknown command.
pub fn route_spec(args: &[Bytes]) -> Option<&'static CommandSpec> {
    let spec = cmd::lookup(args.first()?)?;
    Some(effective_spec(spec, args))
}

/// Runs one command for a client; `target` is where its keys live
/// ([`Server::target`]).
pub fn command(
    server: &Arc<Server>,
    c: &mut ClientState,
    args: Vec<Bytes>,
    target: &Target,
) -> Flow {
    let container = match cmd::check(&args) {
        Ok(s) => s,
        Err(reply) => {
            c.flag_multi_error();
            server.stats.error_reply(&reply);
            return Flow::Reply(reply);
        }
    };
    let spec = effective_spec(container, &args);
    if !container.subcommands.is_empty() && args.len() >= 2 && std::ptr::eq(spec, container) {
        c.flag_multi_error();
        let reply = cmd::error::unknown_subcommand(container.name, &args[1]);
        server.stats.error_reply(&reply);
        return Flow::Reply(reply);
    }
    if let Some(reply) = reject(server, c, spec, target) {
        c.flag_multi_error();
        server.stats.reject(spec.name, &reply);
        return Flow::Reply(reply);
    }
    if c.multi.is_some() {
        if !matches!(
            spec.name,
            "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
        ) {
            // Cluster mode: a transaction runs in one shard's log, so all its keys
            // must hash to one slot (Redis Cluster's rule).
            if server.is_cluster() && !matches!(spec.handler, Handler::Server) {
                let slot = match target {
                    Target::CrossSlot => Err(()),
                    Target::Keyless => Ok(None),
                    _ => Ok(crate::router::command_slot(spec, &args).ok().flatten()),
                };
                match (slot, c.multi_slot) {
                    (Err(()), _) => return cross_slot_in_multi(server, c),
                    (Ok(Some(s)), Some(prev)) if s != prev => {
                        return cross_slot_in_multi(server, c)
                    }
                    (Ok(Some(s)), _) => c.multi_slot = Some(s),
                    (Ok(None), _) => {}
                }
            }
            let queued = c.multi.as_mut().expect("in MULTI");
            queued.push(args);
            c.handle.info.lock().unwrap().multi = queued.len() as i64;
            return Flow::Reply(Reply::simple("QUEUED"));
        }
    }
    c.last_cmd = spec.name;
    if matches!(spec.handler, Handler::Server) {
        // Server commands may read the stats (INFO) or the client list (CLIENT LIST
        // shows the running command as `cmd=`, as Redis does): publish first.
        c.flush(&server.stats);
    }
    let (flow, args) = run(server, c, container, args, target);
    let flow = match flow {
        Flow::Reply(r) if crate::server::exec::should_retry(server, c, &r) => {
            Flow::Retry(args.clone())
        }
        other => other,
    };
    c.after_command_asking(spec.name);
    // One clock read per command: its duration runs from the end of the previous
    // command in the batch (or the batch's start).
    let end = Instant::now();
    let usec = end.saturating_duration_since(c.mark).as_micros() as u64;
    c.mark = end;
    let error = match &flow {
        Flow::Reply(r) => r.is_error().then_some(r),
        Flow::Replies(rs) => rs.iter().find(|r| r.is_error()),
        Flow::Block(_)
        | Flow::Replicate(_)
        | Flow::Forward { .. }
        | Flow::FanOut(_)
        | Flow::Later(_)
        | Flow::Retry(_) => None,
    };
    c.stats.record(spec.name, usec, error.is_some());
    if let Some(e) = error {
        server.stats.error_reply(e);
    }
    server
        .stats
        .track_memory_peak(crate::keyspace::memory::used_memory() as u64);
    let slower_than = server.hot.slowlog_slower_than.load(Ordering::Relaxed);
    if slower_than >= 0 && usec >= slower_than as u64 && !spec.has(flags::SKIP_SLOWLOG) {
        let (max, name) = (
            server.config().slowlog_max_len as usize,
            c.handle.info.lock().unwrap().name.clone(),
        );
        server
            .slowlog
            .lock()
            .unwrap()
            .push(usec, &args, c.handle.addr.to_string(), name, max);
    }
    flow
}

/// The checks that refuse a command before it runs (and flag a MULTI as failed).
fn reject(
    server: &Server,
    c: &mut ClientState,
    spec: &CommandSpec,
    target: &Target,
) -> Option<Reply> {
    if !c.authenticated && !spec.has(flags::NO_AUTH) {
        return Some(Reply::error("NOAUTH Authentication required."));
    }
    if c.in_subscribed_mode() && !allowed_when_subscribed(spec.name) {
        return Some(Reply::Error(
            format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                spec.name
            )
            .into(),
        ));
    }
    if c.multi.is_some() && spec.has(flags::NO_MULTI) {
        return Some(Reply::error("ERR Command not allowed inside a transaction"));
    }
    if spec.has(flags::DENYOOM) && server.hot.maxmemory.load(Ordering::Relaxed) > 0 {
        // A remote shard's node makes its own check.
        let Target::Local(h) = target else {
            return None;
        };
        let mut st = h.shard.lock();
        if h.replica.is_some() {
            // Replicated: the leader evicts by proposing victims before the command
            // runs (connection and cron); what is left over the limit is refused only
            // under noeviction.
            let noeviction =
                st.settings().policy == crate::keyspace::evict::EvictionPolicy::NoEviction;
            return (noeviction && st.over_maxmemory()).then(|| Reply::error(OOM));
        }
        let ok = st.make_room();
        server.after_write(&mut st);
        if !ok {
            return Some(Reply::error(OOM));
        }
    }
    None
}

fn cross_slot_in_multi(server: &Server, c: &mut ClientState) -> Flow {
    c.flag_multi_error();
    let reply = Reply::error(CROSSSLOT);
    server.stats.error_reply(&reply);
    Flow::Reply(reply)
}

/// `-MOVED slot host:port` naming the node believed to lead `shard`.
pub fn moved(server: &Server, slot: u16, shard: u64) -> Reply {
    let Some(view) = server.cluster_view() else {
        return Reply::error(UNSERVED);
    };
    let node = view
        .leader_of(shard)
        .or_else(|| view.map.shards.get(&shard).and_then(|r| r.first().copied()));
    match node.and_then(|n| view.map.nodes.get(&n)) {
        Some(addr) => Reply::Error(format!("MOVED {slot} {}", addr.client).into()),
        None => Reply::error(UNSERVED),
    }
}

fn run(
    server: &Arc<Server>,
    c: &mut ClientState,
    spec: &'static CommandSpec,
    args: Vec<Bytes>,
    target: &Target,
) -> (Flow, Vec<Bytes>) {
    let redirect = server.hot.redirect.load(Ordering::Relaxed);
    if matches!(spec.handler, Handler::Server) {
        if server.is_cluster() && matches!(spec.name, "spublish" | "ssubscribe") {
            // Shard channels hash like keys: one slot per command; in redirect mode
            // the slot's shard leader serves them, as Redis Cluster's shard does. (In
            // forward mode any node does: messages reach every node.)
            let slot = match crate::router::command_slot(spec, &args) {
                Err(_) => return (Flow::Reply(Reply::error(CROSSSLOT)), args),
                Ok(slot) => slot,
            };
            if let (true, Some(slot)) = (redirect, slot) {
                let local_leader = matches!(
                    crate::server::route::slot_target(&server.table(), slot),
                    Target::Local(ref h) if h.replica.as_ref().is_some_and(|r| r.is_leader())
                );
                if !local_leader {
                    let shard = server.table().map.shard_of(slot).unwrap_or(0);
                    return (Flow::Reply(moved(server, slot, shard)), args);
                }
            }
        }
        return (commands::run(server, c, spec, args.clone()), args);
    }
    let h = match target {
        Target::Local(h) => h,
        Target::Remote { shard, slot } => {
            let flow = if redirect {
                Flow::Reply(moved(server, *slot, *shard))
            } else {
                Flow::Forward {
                    shard: *shard,
                    cmds: vec![args.clone()],
                }
            };
            return (flow, args);
        }
        Target::CrossSlot if !redirect && fans_out(spec.name) => {
            return (Flow::FanOut(args.clone()), args)
        }
        Target::CrossSlot => return (Flow::Reply(Reply::error(CROSSSLOT)), args),
        Target::Keyless if cluster_wide(spec.name) => return (Flow::FanOut(args.clone()), args),
        Target::Keyless => {
            let reply = Reply::Error(
                format!(
                    "ERR '{}' without keys is not supported in cluster mode",
                    spec.name
                )
                .into(),
            );
            return (Flow::Reply(reply), args);
        }
        Target::Unserved => return (Flow::Reply(Reply::error(UNSERVED)), args),
    };
    if let Some(replica) = &h.replica {
        // Redirect mode: only the leader serves, except reads on a READONLY connection.
        let read = matches!(spec.handler, Handler::Read(_));
        if redirect && !replica.is_leader() && !(read && c.readonly) {
            let slot = crate::router::command_slot(spec, &args)
                .ok()
                .flatten()
                .unwrap_or(0);
            return (Flow::Reply(moved(server, slot, h.id)), args);
        }
    }
    match spec.handler {
        Handler::Server => unreachable!("handled above"),
        Handler::Read(_) => {
            let st = h.shard.lock();
            if st.migrations.refuses_command(&args) {
                let reply = Reply::error(crate::shard::migration::TRYAGAIN);
                return (Flow::Reply(reply), args);
            }
            let mut ctx = ReadCtx::new(st.now());
            ctx.no_touch = c.no_touch;
            let reply = cmd::execute_read(&st.ks, &mut ctx, spec, &args);
            (Flow::Reply(reply), args)
        }
        Handler::Write(_) if h.replica.is_some() => {
            let mut finish = Finish::One;
            if spec.has(flags::BLOCKING) && c.multi.is_none() {
                if let Some(timeout) = block_timeout(spec, &args) {
                    finish = Finish::Blocking {
                        argv: args.clone(),
                        keys: blocking_keys(spec, &args),
                        deadline: timeout.map(|t| Instant::now() + t),
                    };
                }
            }
            let op = Op::Exec(vec![args.clone()]);
            let rep = Replicate {
                hosted: h.clone(),
                op,
                finish,
            };
            (Flow::Replicate(rep), args)
        }
        Handler::Write(_) => {
            let mut st = h.shard.lock();
            let (reply, args) = st.write_one(args);
            server.after_write(&mut st);
            if spec.has(flags::BLOCKING) && is_empty_pop(&reply) && c.multi.is_none() {
                let Some(timeout) = block_timeout(spec, &args) else {
                    return (Flow::Reply(reply), args);
                };
                let (tx, rx) = oneshot::channel();
                let keys = blocking_keys(spec, &args);
                let ticket = server.waiters.lock().unwrap().block(
                    &mut st.ks,
                    Blocked {
                        argv: args.clone(),
                        keys,
                        reply: tx,
                    },
                );
                let deadline = timeout.map(|t| Instant::now() + t);
                let wait = BlockWait {
                    ticket,
                    rx,
                    deadline,
                    hosted: h.clone(),
                };
                return (Flow::Block(wait), args);
            }
            (Flow::Reply(reply), args)
        }
    }
}

/// The keys a blocking command waits on: the source only for BLMOVE/BRPOPLPUSH.
fn blocking_keys(spec: &CommandSpec, args: &[Bytes]) -> Vec<Bytes> {
    match spec.name {
        "blmove" | "brpoplpush" => vec![args[1].clone()],
        _ => spec
            .key_positions(args)
            .unwrap_or_default()
            .into_iter()
            .map(|i| args[i].clone())
            .collect(),
    }
}

/// The timeout of a blocking command (`None` inside: 0 = forever). The command's own
/// apply validated it already, so a parse failure here means "don't block".
pub fn block_timeout(spec: &CommandSpec, args: &[Bytes]) -> Option<Option<Duration>> {
    let raw = args.get(block_timeout_pos(spec, args)?)?;
    // Redis's reading (whole milliseconds, rounded up; hex accepted), so that what
    // the command accepted blocks for what Redis would.
    let ms = cmd::args::timeout_ms(raw).ok()?;
    Some((ms > 0).then(|| Duration::from_millis(ms)))
}

/// Where a blocking command's timeout argument is.
pub fn block_timeout_pos(spec: &CommandSpec, args: &[Bytes]) -> Option<usize> {
    match spec.name {
        "blmpop" | "bzmpop" => Some(1),
        _ => args.len().checked_sub(1),
    }
}

/// Cancels a blocked command after its timeout: the reply is a null array, unless a
/// write served it in the meantime.
pub fn cancel_block(server: &Server, mut wait: BlockWait) -> Reply {
    let mut st = wait.hosted.shard.lock();
    let removed = server
        .waiters
        .lock()
        .unwrap()
        .unblock(&mut st.ks, wait.ticket);
    drop(st);
    match removed {
        Some(_) => Reply::NilArray,
        None => wait.rx.try_recv().ok().flatten().unwrap_or(Reply::NilArray),
    }
}

impl ClientState {
    pub fn flag_multi_error(&mut self) {
        if self.multi.is_some() {
            self.multi_failed = true;
        }
    }
}
