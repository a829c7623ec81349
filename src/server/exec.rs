//! Commands run to completion one at a time, off the connection's pipelined path:
//! commands forwarded to a shard on another node, commands other nodes forward here,
//! and fan-out (a multi-key command across slots, or a keyless command over the whole
//! cluster: split per shard, run, combined). Fan-out is not atomic across shards.

use super::client::ClientState;
use super::dispatch::{self, Finish, Flow};
use super::route::{ForwardError, Hosted, Target};
use super::waiters::Blocked;
use super::Server;
use crate::cmd::{self, Handler};
use crate::resp::Reply;
use crate::shard::replica::{Replica, ReplicaError};
use bytes::Bytes;
use proto::Op;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn has_writes(cmds: &[Vec<Bytes>]) -> bool {
    cmds.iter()
        .any(|a| cmd::lookup(&a[0]).is_some_and(|s| matches!(s.handler, Handler::Write(_))))
}

/// A single command's answer from a replicated write.
pub fn first_reply(r: Result<Vec<Reply>, ReplicaError>) -> Reply {
    match r {
        Ok(mut replies) => replies.pop().unwrap_or(Reply::NilArray),
        Err(e) => e.reply(),
    }
}

/// Runs `cmds` on a node hosting `shard`; the replies in order.
pub async fn forward(
    server: &Arc<Server>,
    shard: u64,
    cmds: Vec<Vec<Bytes>>,
    resp3: bool,
) -> Result<Vec<Reply>, ForwardError> {
    let Some(hooks) = server.cluster().cloned() else {
        return Err(ForwardError::NotSent("not a cluster node".into()));
    };
    hooks.forward(shard, cmds, resp3).await
}

/// Turns a flow into its replies, waiting for what it waits on.
pub async fn resolve(server: &Arc<Server>, c: &mut ClientState, flow: Flow) -> Vec<Reply> {
    match flow {
        Flow::Reply(r) => vec![r],
        Flow::Replies(rs) => rs,
        Flow::Block(mut wait) => {
            let sleep = async {
                match wait.deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let r = tokio::select! {
                r = &mut wait.rx => r.ok().flatten().unwrap_or(Reply::NilArray),
                _ = sleep => dispatch::cancel_block(server, wait),
            };
            vec![r]
        }
        Flow::Replicate(rep) => {
            let replica = rep
                .hosted
                .replica
                .clone()
                .expect("replicated flows have a replica");
            match rep.finish {
                Finish::One => {
                    let again = match &rep.op {
                        Op::Exec(cmds) => cmds.first().cloned(),
                        _ => None,
                    };
                    let r = first_reply(replica.write(rep.op).await);
                    match again {
                        Some(args) => vec![retry_refused(server, c, args, r).await],
                        None => vec![r],
                    }
                }
                Finish::Exec(finish) => {
                    let r = replica.write(rep.op).await;
                    let reply = finish(server, c, r);
                    vec![exec_again(server, c, reply).await]
                }
                Finish::Blocking {
                    argv,
                    keys,
                    deadline,
                } => {
                    let r = blocking_write(server, &rep.hosted, &replica, c, argv, keys, deadline)
                        .await;
                    vec![r.unwrap_or(Reply::NilArray)]
                }
            }
        }
        Flow::Forward { shard, mut cmds } if cmds.len() == 1 && blocking(&cmds[0]) => {
            let args = cmds.remove(0);
            let deadline = block_deadline(&args);
            let r = forward_blocking(server, c, shard, args.clone(), deadline).await;
            vec![block_again(server, c, args, deadline, r).await]
        }
        Flow::Forward { shard, mut cmds } if cmds.len() == 1 => {
            let args = cmds.remove(0);
            let r = forward_last(server, c, shard, vec![args.clone()]).await;
            vec![retry_refused(server, c, args, r).await]
        }
        // A transaction (MULTI ... EXEC), run as a whole on a node hosting the shard.
        Flow::Forward { shard, cmds } => {
            let reply = forward_last(server, c, shard, cmds).await;
            vec![exec_again(server, c, reply).await]
        }
        Flow::FanOut(args) => vec![fan_out(server, c, args).await],
        Flow::Later(answer) => vec![answer.await],
        Flow::Retry(args) => {
            let first = Reply::error(crate::shard::migration::TRYAGAIN);
            vec![retry_refused(server, c, args, first).await]
        }
    }
}

/// How long a refused command is retried for a plain client.
const RETRY_FOR: Duration = Duration::from_secs(5);

/// Whether `reply` refuses a command in a way that says it did not run and that a
/// forward-mode client should not see: its slot is fenced for a migration's
/// cutover, it moved and this node's map (or the forwarding node's) is behind, the
/// shard has no leader for a moment (an election, a hand-over, a voter change), or
/// the node it was sent to no longer hosts the shard. Each of these is answered
/// before anything runs (a write whose outcome is unknown answers `UNKNOWN`
/// instead), so running the command again is safe. A slot no shard serves is not
/// transient and is answered at once.
pub fn should_retry(server: &Server, c: &ClientState, reply: &Reply) -> bool {
    let Reply::Error(e) = reply else {
        return false;
    };
    !c.retrying && c.multi.is_none() && forward_mode(server) && retryable(e)
}

/// A cluster node forwarding its clients' commands (not redirecting them).
pub fn forward_mode(server: &Server) -> bool {
    server.is_cluster()
        && !server
            .hot
            .redirect
            .load(std::sync::atomic::Ordering::Relaxed)
}

/// The refusals [`should_retry`] runs again (see there).
pub fn retryable(e: &str) -> bool {
    e.starts_with("TRYAGAIN")
        || e.starts_with("MOVED ")
        || (e.starts_with("CLUSTERDOWN") && e != super::dispatch::UNSERVED)
}

/// Runs `args` again while it is refused (see [`should_retry`], up to
/// [`RETRY_FOR`]), routed afresh each time: plain clients never see a migration's
/// cutover or a leader change. A refused command did not run, so running it again is
/// safe.
pub async fn retry_refused(
    server: &Arc<Server>,
    c: &mut ClientState,
    args: Vec<Bytes>,
    first: Reply,
) -> Reply {
    if !should_retry(server, c, &first) {
        return first;
    }
    let Some(spec) = super::dispatch::route_spec(&args) else {
        return first;
    };
    let deadline = Instant::now() + RETRY_FOR;
    let mut wait = Duration::from_millis(2);
    let mut reply = first;
    c.retrying = true;
    while Instant::now() < deadline {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(50));
        let target = super::route::target(&server.table(), true, spec, &args);
        reply = match target {
            Target::Remote { shard, .. } => {
                forward_last(server, c, shard, vec![args.clone()]).await
            }
            t => execute(server, c, args.clone(), t).await,
        };
        c.retrying = false;
        if !should_retry(server, c, &reply) {
            return reply;
        }
        c.retrying = true;
    }
    c.retrying = false;
    reply
}

/// After an EXEC's reply: a transaction refused before anything in it ran (its slot
/// fenced or moved, no leader; see [`should_retry`]) runs again for a plain client,
/// routed afresh, with its watches (up to [`RETRY_FOR`]). A watch whose key moved to
/// another shard aborts it, as in Redis.
pub fn exec_again<'a>(
    server: &'a Arc<Server>,
    c: &'a mut ClientState,
    first: Reply,
) -> futures_util::future::BoxFuture<'a, Reply> {
    Box::pin(exec_again_inner(server, c, first))
}

async fn exec_again_inner(server: &Arc<Server>, c: &mut ClientState, first: Reply) -> Reply {
    if c.retrying {
        // Inside a retry (or a forwarded run): the retrying loop decides.
        return first;
    }
    let Some((queued, slot)) = c.exec_again.take() else {
        return first;
    };
    if !should_retry(server, c, &first) {
        super::commands::transaction::unwatch_all(server, c);
        return first;
    }
    let deadline = Instant::now() + RETRY_FOR;
    let mut wait = Duration::from_millis(2);
    let mut reply = first;
    while Instant::now() < deadline {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(50));
        c.multi = Some(queued.clone());
        c.multi_slot = slot;
        c.retrying = true;
        let flow = super::commands::transaction::exec(server, c);
        reply = resolve(server, c, flow)
            .await
            .pop()
            .unwrap_or(Reply::NilArray);
        c.retrying = false;
        if c.exec_again.take().is_none() || !should_retry(server, c, &reply) {
            return reply;
        }
    }
    super::commands::transaction::unwatch_all(server, c);
    reply
}

fn blocking(args: &[Bytes]) -> bool {
    cmd::lookup(&args[0]).is_some_and(|s| s.has(crate::cmd::flags::BLOCKING))
}

/// The longest a forwarded blocking command waits on the other node: well under the
/// forward's own timeout, so a wait never looks like a lost request.
const BLOCK_SLICE: Duration = Duration::from_secs(5);

/// A blocking pop on a shard this node does not host: forwarded with its timeout cut
/// into slices of at most [`BLOCK_SLICE`], again while it finds nothing, until its
/// own deadline. Each slice either pops (and returns what it popped) or times out
/// having changed nothing, so no element is lost between slices.
async fn forward_blocking(
    server: &Arc<Server>,
    c: &mut ClientState,
    shard: u64,
    mut args: Vec<Bytes>,
    deadline: Option<Instant>,
) -> Reply {
    let spec = cmd::lookup(&args[0]).expect("blocking commands exist");
    let (Some(_), Some(pos)) = (
        dispatch::block_timeout(spec, &args),
        dispatch::block_timeout_pos(spec, &args),
    ) else {
        // An invalid timeout: the other node answers the error.
        return forward_one(server, c, shard, args).await;
    };
    loop {
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(BLOCK_SLICE),
            None => BLOCK_SLICE,
        };
        // A zero slice would block forever there: the smallest wait instead.
        let secs = format!("{:.3}", slice.as_secs_f64().max(0.001));
        args[pos] = Bytes::from(secs);
        let r = forward_one(server, c, shard, args.clone()).await;
        let done = deadline.is_some_and(|d| Instant::now() >= d);
        if !dispatch::is_empty_pop(&r) || done || c.handle.is_killed() || server.is_shutting_down()
        {
            return r;
        }
    }
}

async fn forward_one(
    server: &Arc<Server>,
    c: &mut ClientState,
    shard: u64,
    args: Vec<Bytes>,
) -> Reply {
    forward_last(server, c, shard, vec![args]).await
}

/// Forwards `cmds` for `shard` in the client's protocol; the last one's reply, or
/// the error the failure means for them.
async fn forward_last(
    server: &Arc<Server>,
    c: &ClientState,
    shard: u64,
    cmds: Vec<Vec<Bytes>>,
) -> Reply {
    let writes = has_writes(&cmds);
    match forward(server, shard, cmds, c.proto == crate::resp::Protocol::Resp3).await {
        Ok(mut r) => r.pop().unwrap_or(Reply::NilArray),
        Err(e) => e.reply(writes),
    }
}

/// Runs one command against `shard` (hosted here or not), bypassing slot checks: the
/// caller has split the keys by shard.
async fn run_on(server: &Arc<Server>, c: &mut ClientState, shard: u64, args: Vec<Bytes>) -> Reply {
    let target = match server.table().hosted.get(&shard) {
        Some(h) => Target::Local(h.clone()),
        None => {
            let cmds = vec![args];
            let writes = has_writes(&cmds);
            return match forward(server, shard, cmds, c.proto == crate::resp::Protocol::Resp3).await
            {
                Ok(mut r) => r.pop().unwrap_or(Reply::NilArray),
                Err(e) => e.reply(writes),
            };
        }
    };
    execute(server, c, args, target).await
}

/// Runs one command to completion against `target`, with the read barrier a read
/// needs. (Boxed: a fan-out's parts run through here, and resolving a flow may fan
/// out.)
pub fn execute<'a>(
    server: &'a Arc<Server>,
    c: &'a mut ClientState,
    args: Vec<Bytes>,
    target: Target,
) -> futures_util::future::BoxFuture<'a, Reply> {
    Box::pin(execute_inner(server, c, args, target))
}

async fn execute_inner(
    server: &Arc<Server>,
    c: &mut ClientState,
    args: Vec<Bytes>,
    target: Target,
) -> Reply {
    if let Target::Local(h) = &target {
        if let Some(replica) = &h.replica {
            let read = cmd::lookup(&args[0]).is_some_and(|s| matches!(s.handler, Handler::Read(_)));
            if read && c.multi.is_none() && !c.readonly {
                if let Err(e) = replica.read_barrier().await {
                    return e.reply();
                }
            }
        }
    }
    let flow = dispatch::command(server, c, args, &target);
    resolve(server, c, flow)
        .await
        .pop()
        .unwrap_or(Reply::NilArray)
}

/// Commands another node forwarded for `shard`: run in order as one client would, in
/// the origin client's protocol. Keys are checked against this node's map: a command
/// for another shard is answered with a redirect-style error rather than run.
pub async fn run_forwarded(
    server: &Arc<Server>,
    shard: u64,
    cmds: Vec<Vec<Bytes>>,
    resp3: bool,
) -> Vec<Reply> {
    // The commands arrived now: TTLs are judged from here (the cached clock may be
    // as old as the last client read or cron tick).
    server.clock.refresh();
    let mut c = ClientState::new(server.clients.detached(), true);
    // Refusals are answers here: the origin node retries them for its client, with
    // its own routing (one retry loop, not one per hop).
    c.retrying = true;
    if resp3 {
        c.proto = crate::resp::Protocol::Resp3;
    }
    let mut out = Vec::with_capacity(cmds.len());
    for args in cmds {
        if args.is_empty() {
            out.push(Reply::error("ERR empty command"));
            continue;
        }
        let table = server.table();
        let Some(h) = table.hosted.get(&shard).cloned() else {
            out.push(Reply::Error(
                format!("TRYAGAIN shard {shard} has no replica on this node").into(),
            ));
            continue;
        };
        // Every key must belong to the shard (the origin's map may be older).
        if let Some(spec) = cmd::lookup(&args[0]) {
            let keys = spec.key_positions(&args).unwrap_or_default();
            if let Some(&i) = keys
                .iter()
                .find(|&&i| table.map.shard_of(proto::key_slot(&args[i])) != Some(shard))
            {
                let slot = proto::key_slot(&args[i]);
                let owner = table.map.shard_of(slot).unwrap_or(0);
                out.push(dispatch::moved(server, slot, owner));
                continue;
            }
        }
        let r = execute(server, &mut c, args, Target::Local(h)).await;
        out.push(r);
    }
    super::commands::disconnect(server, &mut c);
    out
}

/// Splits a command over the shards its keys (or, keyless, the whole cluster) live
/// in, runs the parts, and combines their replies as the command's own.
pub async fn fan_out(server: &Arc<Server>, c: &mut ClientState, args: Vec<Bytes>) -> Reply {
    let Some(spec) = cmd::lookup(&args[0]) else {
        return Reply::error("ERR unknown command");
    };
    let name = spec.name;
    let map = server.table().map.clone();
    let all_shards: Vec<u64> = map.shards.keys().copied().collect();
    let shard_of = |key: &[u8]| map.shard_of(proto::key_slot(key));
    match name {
        "mget" => {
            let mut parts: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
            for i in 1..args.len() {
                match shard_of(&args[i]) {
                    Some(s) => parts.entry(s).or_default().push(i),
                    None => return Reply::error(dispatch::UNSERVED),
                }
            }
            let mut out = vec![Reply::Nil; args.len() - 1];
            for (shard, idx) in parts {
                let mut sub = vec![args[0].clone()];
                sub.extend(idx.iter().map(|&i| args[i].clone()));
                match run_on(server, c, shard, sub).await {
                    Reply::Array(vals) if vals.len() == idx.len() => {
                        for (v, i) in vals.into_iter().zip(idx) {
                            out[i - 1] = v;
                        }
                    }
                    Reply::Error(e) => return Reply::Error(e),
                    other => return other,
                }
            }
            Reply::Array(out)
        }
        "mset" => {
            if args.len() % 2 == 0 {
                return Reply::Error(
                    format!("ERR wrong number of arguments for '{name}' command").into(),
                );
            }
            let mut parts: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
            for i in (1..args.len()).step_by(2) {
                match shard_of(&args[i]) {
                    Some(s) => parts.entry(s).or_default().push(i),
                    None => return Reply::error(dispatch::UNSERVED),
                }
            }
            for (shard, idx) in parts {
                let mut sub = vec![args[0].clone()];
                for i in idx {
                    sub.push(args[i].clone());
                    sub.push(args[i + 1].clone());
                }
                let r = run_on(server, c, shard, sub).await;
                if r.is_error() {
                    return r;
                }
            }
            Reply::ok()
        }
        "del" | "unlink" | "exists" | "touch" => {
            let mut parts: BTreeMap<u64, Vec<Bytes>> = BTreeMap::new();
            for key in &args[1..] {
                match shard_of(key) {
                    Some(s) => parts.entry(s).or_default().push(key.clone()),
                    None => return Reply::error(dispatch::UNSERVED),
                }
            }
            let mut total = 0;
            for (shard, keys) in parts {
                let mut sub = vec![args[0].clone()];
                sub.extend(keys);
                match run_on(server, c, shard, sub).await {
                    Reply::Int(n) => total += n,
                    other => return other,
                }
            }
            Reply::Int(total)
        }
        "dbsize" => {
            let mut total = 0;
            for shard in all_shards {
                match run_on(server, c, shard, args.clone()).await {
                    Reply::Int(n) => total += n,
                    other => return other,
                }
            }
            Reply::Int(total)
        }
        "keys" => {
            let mut out = Vec::new();
            for shard in all_shards {
                match run_on(server, c, shard, args.clone()).await {
                    Reply::Array(v) => out.extend(v),
                    other => return other,
                }
            }
            Reply::Array(out)
        }
        "flushall" | "flushdb" => {
            for shard in all_shards {
                let r = run_on(server, c, shard, args.clone()).await;
                if r.is_error() {
                    return r;
                }
            }
            Reply::ok()
        }
        "randomkey" => {
            // Shards in a random order; the first key found.
            let mut order = all_shards;
            let mut rng = crate::keyspace::rng::Rng::new(crate::keyspace::rng::Rng::local_seed());
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            for shard in order {
                match run_on(server, c, shard, args.clone()).await {
                    Reply::Nil => continue,
                    other => return other,
                }
            }
            Reply::Nil
        }
        "scan" => scan(server, c, args, all_shards).await,
        _ => Reply::Error(format!("ERR '{name}' cannot fan out").into()),
    }
}

/// Bits of a cluster SCAN cursor holding the shard's own cursor; the bits above hold
/// the shard's position in the map's shard order.
const SCAN_SHARD_SHIFT: u32 = 48;

/// Cluster-wide SCAN: the shards one after another in the map's order; the cursor
/// carries the shard's position and its own cursor. A full iteration returns every key
/// present throughout, as Redis guarantees, while the map's shard set is unchanged.
async fn scan(
    server: &Arc<Server>,
    c: &mut ClientState,
    mut args: Vec<Bytes>,
    shards: Vec<u64>,
) -> Reply {
    let cursor = match std::str::from_utf8(&args[1])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(v) => v,
        None => return Reply::error("ERR invalid cursor"),
    };
    let mut pos = (cursor >> SCAN_SHARD_SHIFT) as usize;
    let mut inner = cursor & ((1 << SCAN_SHARD_SHIFT) - 1);
    if pos >= shards.len() {
        return Reply::Array(vec![Reply::bulk("0"), Reply::Array(Vec::new())]);
    }
    args[1] = Bytes::from(inner.to_string());
    match run_on(server, c, shards[pos], args).await {
        Reply::Array(mut parts) if parts.len() == 2 => {
            let keys = parts.pop().expect("two parts");
            let next = match &parts[0] {
                Reply::Bulk(b) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok()),
                _ => None,
            };
            let Some(next) = next else {
                return Reply::error("ERR bad SCAN reply from a shard");
            };
            inner = next;
            if inner == 0 {
                pos += 1;
            }
            let cursor = if pos >= shards.len() {
                0
            } else {
                ((pos as u64) << SCAN_SHARD_SHIFT) | inner
            };
            Reply::Array(vec![Reply::Bulk(Bytes::from(cursor.to_string())), keys])
        }
        other => other,
    }
}

/// A blocking pop in cluster mode: register interest in the keys first (so no change
/// is missed), try the pop through the log, and while it finds nothing wait for a
/// change to the keys, the deadline, or the end of the connection (`None`).
pub async fn blocking_write(
    server: &Arc<Server>,
    hosted: &Hosted,
    replica: &Replica,
    client: &mut ClientState,
    argv: Vec<Bytes>,
    keys: Vec<Bytes>,
    deadline: Option<Instant>,
) -> Option<Reply> {
    let r = block_here(
        server,
        hosted,
        replica,
        client,
        argv.clone(),
        keys,
        deadline,
    )
    .await?;
    Some(block_again(server, client, argv, deadline, r).await)
}

/// A blocked client looks this often whether its keys' slot is still served here.
const MOVE_CHECK: Duration = Duration::from_millis(100);

/// When a blocking command times out, from its timeout argument (`None`: never, or
/// an invalid timeout, which the command itself answers).
fn block_deadline(args: &[Bytes]) -> Option<Instant> {
    let spec = cmd::lookup(&args[0])?;
    dispatch::block_timeout(spec, args)
        .flatten()
        .map(|t| Instant::now() + t)
}

/// A blocking command refused before it popped anything (its slot fenced or moved
/// while it waited, see [`should_retry`]): a plain client's command blocks again
/// where its keys live now, for what is left of its timeout. Others get the refusal
/// (Redis's blocked clients get `-MOVED` or `-TRYAGAIN` when their slot moves).
async fn block_again(
    server: &Arc<Server>,
    c: &mut ClientState,
    mut args: Vec<Bytes>,
    deadline: Option<Instant>,
    first: Reply,
) -> Reply {
    if !should_retry(server, c, &first) {
        return first;
    }
    let (Some(spec), Some(pos)) = (
        super::dispatch::route_spec(&args),
        cmd::lookup(&args[0]).and_then(|s| dispatch::block_timeout_pos(s, &args)),
    ) else {
        return first;
    };
    let retry_end = Instant::now() + RETRY_FOR;
    let mut wait = Duration::from_millis(2);
    let mut reply = first;
    while Instant::now() < retry_end {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(50));
        args[pos] = match deadline {
            None => Bytes::from_static(b"0"),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Reply::NilArray;
                }
                Bytes::from(format!("{:.3}", left.as_secs_f64().max(0.001)))
            }
        };
        c.retrying = true;
        reply = match super::route::target(&server.table(), true, spec, &args) {
            Target::Remote { shard, .. } => {
                forward_blocking(server, c, shard, args.clone(), deadline).await
            }
            t => execute(server, c, args.clone(), t).await,
        };
        c.retrying = false;
        if !should_retry(server, c, &reply) {
            return reply;
        }
    }
    reply
}

/// Blocks on this node's replica of the keys' shard: pops through the log once a key
/// changes, until the deadline. A refusal (the slot is fenced or moved, or this node
/// no longer hosts the shard) ends the wait with the refusal, which nothing ran for.
async fn block_here(
    server: &Arc<Server>,
    hosted: &Hosted,
    replica: &Replica,
    client: &ClientState,
    argv: Vec<Bytes>,
    keys: Vec<Bytes>,
    deadline: Option<Instant>,
) -> Option<Reply> {
    let shard = &*hosted.shard;
    let mut shutdown = server.shutdown_signal();
    let unblock = |ticket| {
        let mut st = shard.lock();
        server.waiters.lock().unwrap().unblock(&mut st.ks, ticket);
    };
    loop {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let ticket = {
            let mut st = shard.lock();
            server.waiters.lock().unwrap().block(
                &mut st.ks,
                Blocked {
                    argv: argv.clone(),
                    keys: keys.clone(),
                    reply: tx,
                },
            )
        };
        let r = first_reply(replica.write(Op::Exec(vec![argv.clone()])).await);
        if !dispatch::is_empty_pop(&r) {
            unblock(ticket);
            return Some(r);
        }
        client.handle.info.lock().unwrap().blocked = true;
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        // Some(answer) ends the wait; None means a key changed or the slot is being
        // moved away: try again (a moved slot's pop is refused).
        let end = loop {
            tokio::select! {
                _ = &mut rx => break None,
                _ = &mut sleep => break Some(Some(Reply::NilArray)),
                _ = client.handle.kill_notify.notified() => break Some(None),
                _ = shutdown.changed() => break Some(None),
                _ = tokio::time::sleep(MOVE_CHECK) => {
                    if !server.table().hosted.contains_key(&hosted.id) {
                        break Some(Some(Reply::Error(
                            format!("TRYAGAIN shard {} has no replica on this node", hosted.id).into(),
                        )));
                    }
                    if shard.lock().migrations.refuses_command(&argv) {
                        break None;
                    }
                }
            }
        };
        client.handle.info.lock().unwrap().blocked = false;
        if let Some(answer) = end {
            unblock(ticket); // still registered: nothing woke it
            return answer;
        }
    }
}
