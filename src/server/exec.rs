//! Commands run to completion one at a time, off the connection's pipelined path:
//! commands forwarded to a shard on another node, commands other nodes forward here,
//! and fan-out (a multi-key command across slots, or a keyless command over the whole
//! cluster: split per shard, run, combined). Fan-out is not atomic across shards.

use super::client::ClientState;
use super::dispatch::{self, Finish, Flow};
use super::route::{ForwardError, Target};
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
                    vec![finish(server, c, r)]
                }
                Finish::Blocking {
                    argv,
                    keys,
                    deadline,
                } => {
                    let r = blocking_write(
                        server,
                        &rep.hosted.shard,
                        &replica,
                        c,
                        argv,
                        keys,
                        deadline,
                    )
                    .await;
                    vec![r.unwrap_or(Reply::NilArray)]
                }
            }
        }
        Flow::Forward { shard, mut cmds } if cmds.len() == 1 && blocking(&cmds[0]) => {
            vec![forward_blocking(server, c, shard, cmds.remove(0)).await]
        }
        Flow::Forward { shard, mut cmds } if cmds.len() == 1 => {
            let args = cmds.remove(0);
            let r = forward_last(server, c, shard, vec![args.clone()]).await;
            vec![retry_refused(server, c, args, r).await]
        }
        Flow::Forward { shard, cmds } => vec![forward_last(server, c, shard, cmds).await],
        Flow::FanOut(args) => vec![fan_out(server, c, args).await],
        Flow::Later(answer) => vec![answer.await],
        Flow::Retry(args) => {
            let first = Reply::error(crate::shard::migration::TRYAGAIN);
            vec![retry_refused(server, c, args, first).await]
        }
    }
}

/// How long a command refused by a migrating slot is retried for a plain client.
const RETRY_FOR: Duration = Duration::from_secs(5);

/// Whether `reply` refuses a command that a forward-mode client should not see
/// refused: its slot is fenced for a migration's cutover, or moved and this node's map
/// (or the forwarding node's) is behind.
pub fn should_retry(server: &Server, c: &ClientState, reply: &Reply) -> bool {
    let Reply::Error(e) = reply else {
        return false;
    };
    !c.retrying
        && c.multi.is_none()
        && server.is_cluster()
        && !server
            .hot
            .redirect
            .load(std::sync::atomic::Ordering::Relaxed)
        && (e.as_ref() == crate::shard::migration::TRYAGAIN || e.starts_with("MOVED "))
}

/// Runs `args` again while it is refused by a migrating slot (up to [`RETRY_FOR`]),
/// routed afresh each time: plain clients never see a migration's cutover. A
/// refused command did not run, so running it again is safe.
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
) -> Reply {
    let spec = cmd::lookup(&args[0]).expect("blocking commands exist");
    let (Some(timeout), Some(pos)) = (
        dispatch::block_timeout(spec, &args),
        dispatch::block_timeout_pos(spec, &args),
    ) else {
        // An invalid timeout: the other node answers the error.
        return forward_one(server, c, shard, args).await;
    };
    let deadline = timeout.map(|t| Instant::now() + t);
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
    server: &Server,
    shard: &crate::shard::Shard,
    replica: &Replica,
    client: &ClientState,
    argv: Vec<Bytes>,
    keys: Vec<Bytes>,
    deadline: Option<Instant>,
) -> Option<Reply> {
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
        // Some(answer) ends the wait; None means a key changed: try again.
        let end = tokio::select! {
            _ = &mut rx => None,
            _ = sleep => Some(Some(Reply::NilArray)),
            _ = client.handle.kill_notify.notified() => Some(None),
            _ = shutdown.changed() => Some(None),
        };
        client.handle.info.lock().unwrap().blocked = false;
        if let Some(answer) = end {
            unblock(ticket); // still registered: nothing woke it
            return answer;
        }
    }
}
