//! One command, from decoded arguments to a reply: the checks Redis's processCommand
//! makes (existence and arity, auth, pub/sub context, OOM, MULTI queueing) in the
//! same order, then the run itself: server commands here, keyspace reads against the
//! shard, writes through the shard's write path.

use super::client::ClientState;
use super::commands;
use super::waiters::Blocked;
use super::Server;
use crate::cmd::{self, flags, CommandSpec, Handler, ReadCtx};
use crate::resp::Reply;
use crate::shard::{now_ms, OOM};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What the connection does after a command.
pub enum Flow {
    Reply(Reply),
    /// A blocking pop found nothing: wait for a key change or the timeout.
    Block(BlockWait),
}

pub struct BlockWait {
    pub ticket: u64,
    pub rx: oneshot::Receiver<Reply>,
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

/// Runs one command for a client.
pub fn command(server: &Arc<Server>, c: &mut ClientState, args: Vec<Bytes>) -> Flow {
    let start = Instant::now();
    let spec = match cmd::check(&args) {
        Ok(s) => s,
        Err(reply) => {
            c.flag_multi_error();
            server
                .stats
                .total_error_replies
                .fetch_add(1, Ordering::Relaxed);
            return Flow::Reply(reply);
        }
    };
    if let Some(reply) = reject(server, c, spec, &args) {
        c.flag_multi_error();
        server.stats.reject(spec.name);
        return Flow::Reply(reply);
    }
    if c.multi.is_some()
        && !matches!(
            spec.name,
            "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
        )
    {
        c.multi.as_mut().unwrap().push(args);
        return Flow::Reply(Reply::simple("QUEUED"));
    }
    let flow = run(server, c, spec, args.clone());
    let usec = start.elapsed().as_micros() as u64;
    let failed = matches!(&flow, Flow::Reply(r) if r.is_error());
    server.stats.record(spec.name, usec, failed);
    let slower_than = server.config().slowlog_log_slower_than;
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
    {
        let mut info = c.handle.info.lock().unwrap();
        info.last_cmd = spec.name.to_string();
        info.last_interaction = Some(Instant::now());
    }
    flow
}

/// The checks that refuse a command before it runs (and flag a MULTI as failed).
fn reject(
    server: &Server,
    c: &mut ClientState,
    spec: &CommandSpec,
    args: &[Bytes],
) -> Option<Reply> {
    if !c.authenticated && !spec.has(flags::NO_AUTH) {
        return Some(Reply::error("NOAUTH Authentication required."));
    }
    if c.in_subscribed_mode() && !allowed_when_subscribed(spec.name) {
        return Some(Reply::Error(
            format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                cmd::args::lower(&args[0])
            )
            .into(),
        ));
    }
    if c.multi.is_some() && spec.has(flags::NO_MULTI) {
        return Some(Reply::Error(
            format!("ERR Command not allowed inside a transaction").into(),
        ));
    }
    if spec.has(flags::DENYOOM) && server.config().maxmemory > 0 {
        let mut st = server.shard.lock();
        let ok = st.make_room(now_ms());
        server.after_write(&mut st);
        if !ok {
            return Some(Reply::error(OOM));
        }
    }
    None
}

fn run(
    server: &Arc<Server>,
    c: &mut ClientState,
    spec: &'static CommandSpec,
    args: Vec<Bytes>,
) -> Flow {
    match spec.handler {
        Handler::Server => commands::run(server, c, spec, args),
        Handler::Read(_) => {
            let st = server.shard.lock();
            let mut ctx = ReadCtx::new(now_ms());
            ctx.no_touch = c.no_touch;
            Flow::Reply(cmd::execute_read(&st.ks, &mut ctx, spec, &args))
        }
        Handler::Write(_) => {
            let mut st = server.shard.lock();
            let reply = st
                .write(vec![args.clone()], now_ms())
                .pop()
                .expect("one reply per command");
            server.after_write(&mut st);
            if spec.has(flags::BLOCKING) && is_empty_pop(&reply) && c.multi.is_none() {
                let Some(timeout) = block_timeout(spec, &args) else {
                    return Flow::Reply(reply);
                };
                let (tx, rx) = oneshot::channel();
                let keys = blocking_keys(spec, &args);
                let ticket = server.waiters.lock().unwrap().block(
                    &mut st.ks,
                    Blocked {
                        argv: args,
                        keys,
                        reply: tx,
                    },
                );
                let deadline = timeout.map(|t| Instant::now() + t);
                return Flow::Block(BlockWait {
                    ticket,
                    rx,
                    deadline,
                });
            }
            Flow::Reply(reply)
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
fn block_timeout(spec: &CommandSpec, args: &[Bytes]) -> Option<Option<Duration>> {
    let raw = match spec.name {
        "blmpop" | "bzmpop" => args.get(1)?,
        _ => args.last()?,
    };
    // Redis's reading (whole milliseconds, rounded up; hex accepted), so that what
    // the command accepted blocks for what Redis would.
    let ms = cmd::args::timeout_ms(raw).ok()?;
    Some((ms > 0).then(|| Duration::from_millis(ms)))
}

/// Cancels a blocked command after its timeout: the reply is a null array, unless a
/// write served it in the meantime.
pub fn cancel_block(server: &Server, mut wait: BlockWait) -> Reply {
    let mut st = server.shard.lock();
    let removed = server
        .waiters
        .lock()
        .unwrap()
        .unblock(&mut st.ks, wait.ticket);
    drop(st);
    match removed {
        Some(_) => Reply::NilArray,
        None => wait.rx.try_recv().unwrap_or(Reply::NilArray),
    }
}

impl ClientState {
    pub fn flag_multi_error(&mut self) {
        if self.multi.is_some() {
            self.multi_failed = true;
        }
    }
}
