//! One client connection: read, decode every complete request in the buffer
//! (pipelining), dispatch, encode the replies in the client's protocol, write once.

use super::client::ClientState;
use super::dispatch::{self, Finish, Flow};
use super::exec;
use super::route::{self, Hosted, Target};
use super::Server;
use crate::cmd::{flags, Handler};
use crate::resp::{encode, DecodeLimits, Decoder, Reply};
use crate::shard::replica::{PendingWrite, Replica};
use crate::shard::Shard;
use bytes::Bytes;
use bytes::BytesMut;
use proto::Op;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Pub/sub messages a client may have queued before it is considered too slow.
const PUSH_QUEUE: usize = 64 * 1024;

pub async fn handle(server: Arc<Server>, mut socket: TcpStream, addr: SocketAddr) {
    let laddr = socket.local_addr().unwrap_or(addr);
    let (push_tx, mut push_rx) = mpsc::channel(PUSH_QUEUE);
    let handle = server.clients.register(addr, laddr, push_tx);
    let (maxclients, needs_auth) = {
        let c = server.config();
        (c.maxclients as usize, !c.requirepass.is_empty())
    };
    if server.clients.count() > maxclients {
        server
            .stats
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        let _ = socket
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        server.clients.unregister(handle.id);
        return;
    }
    let mut client = ClientState::new(handle.clone(), !needs_auth);
    let mut shutdown = server.shutdown_signal();
    let mut decoder = Decoder::new();
    let mut inbuf = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    // Cluster mode: the writes of this batch still in flight (in order), and the shards
    // whose read index this batch already holds.
    let cluster = server.is_cluster();
    let mut inflight: Inflight = VecDeque::new();
    let mut barrier_done: Vec<u64> = Vec::new();

    'conn: loop {
        tokio::select! {
            _ = handle.kill_notify.notified() => break,
            _ = shutdown.changed() => break,
            Some(msg) = push_rx.recv() => {
                encode(&msg, client.proto, &mut out);
                while let Ok(msg) = push_rx.try_recv() {
                    encode(&msg, client.proto, &mut out);
                }
            }
            read = socket.read_buf(&mut inbuf) => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        client.mark = std::time::Instant::now();
                        server.clock.refresh();
                        server.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
                let table = server.table();
                let (limits, qbuf_limit) = {
                    let c = server.config();
                    (DecodeLimits { max_bulk_len: c.proto_max_bulk_len as usize }, c.client_query_buffer_limit as usize)
                };
                loop {
                    let args = match decoder.decode(&mut inbuf, &limits) {
                        Ok(Some(args)) => args,
                        Ok(None) => break,
                        Err(e) => {
                            encode(&Reply::Error(e.reply_text().into()), client.proto, &mut out);
                            let _ = socket.write_all(&out).await;
                            tracing::debug!(client = handle.id, error = e.0, "protocol error");
                            break 'conn;
                        }
                    };
                    if args.is_empty() {
                        continue;
                    }
                    let spec = dispatch::route_spec(&args);
                    let target = match spec {
                        Some(s) => route::target(&table, cluster, s, &args),
                        None => Target::Keyless,
                    };
                    if cluster {
                        let handler = spec.map(|s| &s.handler);
                        let local_replica = match &target {
                            Target::Local(h) => h.replica.as_ref(),
                            _ => None,
                        };
                        let plain_write = client.multi.is_none()
                            && matches!(handler, Some(Handler::Write(_)))
                            && local_replica.is_some();
                        if !plain_write {
                            drain(&server, &mut client, &mut inflight, &mut out).await;
                        }
                        let read = matches!(handler, Some(Handler::Read(_)));
                        let watch = spec.is_some_and(|s| s.name == "watch");
                        if (read || watch)
                            && client.multi.is_none()
                            && !client.readonly
                            && client.authenticated
                        {
                            // WATCH's keys may be in several shards: each one's state
                            // must be current before its digest is taken.
                            let shards: Vec<Arc<Hosted>> = if watch {
                                args[1..].iter().filter_map(|k| server.shard_of_key(k)).collect()
                            } else {
                                match &target {
                                    Target::Local(h) => vec![h.clone()],
                                    _ => Vec::new(),
                                }
                            };
                            let mut failed = None;
                            for h in shards {
                                let Some(r) = &h.replica else { continue };
                                if barrier_done.contains(&h.id) {
                                    continue;
                                }
                                if let Err(e) = r.read_barrier().await {
                                    failed = Some(e);
                                    break;
                                }
                                barrier_done.push(h.id);
                            }
                            if let Some(e) = failed {
                                // No leader to confirm the read: a plain client's read
                                // runs again (exec::should_retry).
                                let mut r = e.reply();
                                if read {
                                    r = exec::retry_refused(&server, &mut client, args, r).await;
                                }
                                encode(&r, client.proto, &mut out);
                                continue;
                            }
                        }
                        if let (true, Target::Local(h)) = (plain_write, &target) {
                            let replica = h.replica.as_ref().expect("plain writes are replicated");
                            if spec.is_some_and(|s| s.has(flags::DENYOOM))
                                && server.hot.maxmemory.load(Ordering::Relaxed) > 0
                                && replica.is_leader()
                            {
                                evict(&h.shard, replica).await;
                            }
                        }
                    }
                    let flow = dispatch::command(&server, &mut client, args, &target);
                    // Messages the command itself published to this client go first,
                    // as Redis writes them before the PUBLISH reply.
                    while let Ok(msg) = push_rx.try_recv() {
                        encode(&msg, client.proto, &mut out);
                    }
                    // CLIENT REPLY OFF|SKIP: the command ran, its answer is dropped.
                    let silent = client.replies_suppressed();
                    match flow {
                        Flow::Reply(_) | Flow::Replies(_) if silent => {}
                        Flow::Reply(r) => encode(&r, client.proto, &mut out),
                        Flow::Replies(rs) => {
                            for r in &rs {
                                encode(r, client.proto, &mut out);
                            }
                        }
                        Flow::Replicate(rep) => {
                            let replica = rep.hosted.replica.clone().expect("replicated flows have a replica");
                            // Our own write must be visible to our next read, on a
                            // follower too: the next read takes a fresh read index.
                            barrier_done.clear();
                            match rep.finish {
                                // Proposed (leader) or forwarded (follower) without
                                // waiting: a pipeline's writes travel together.
                                Finish::One => {
                                    // The command, to run again if its slot is migrating.
                                    let again = match &rep.op {
                                        Op::Exec(cmds) if !server.hot.redirect.load(Ordering::Relaxed) => cmds.first().cloned(),
                                        _ => None,
                                    };
                                    inflight.push_back((replica.enqueue(rep.op), silent, again));
                                }
                                Finish::Exec(finish) => {
                                    drain(&server, &mut client, &mut inflight, &mut out).await;
                                    let r = replica.write(rep.op).await;
                                    let reply = finish(&server, &mut client, r);
                                    let reply = exec::exec_again(&server, &mut client, reply).await;
                                    if !silent {
                                        encode(&reply, client.proto, &mut out);
                                    }
                                }
                                Finish::Blocking { argv, keys, deadline } => {
                                    drain(&server, &mut client, &mut inflight, &mut out).await;
                                    if write_out(&server, &mut socket, &mut out).await.is_err() {
                                        break 'conn;
                                    }
                                    let reply = exec::blocking_write(&server, &rep.hosted, &replica, &mut client, argv, keys, deadline).await;
                                    client.mark = std::time::Instant::now();
                                    server.clock.refresh();
                                    match reply {
                                        Some(r) => encode(&r, client.proto, &mut out),
                                        None => break 'conn,
                                    }
                                }
                            }
                        }
                        flow @ (Flow::Forward { .. } | Flow::FanOut(_) | Flow::Later(_) | Flow::Retry(_)) => {
                            drain(&server, &mut client, &mut inflight, &mut out).await;
                            barrier_done.clear();
                            for r in exec::resolve(&server, &mut client, flow).await {
                                if !silent {
                                    encode(&r, client.proto, &mut out);
                                }
                            }
                        }
                        Flow::Block(wait) => {
                            // Earlier pipelined replies go out before we wait.
                            if write_out(&server, &mut socket, &mut out).await.is_err() {
                                break 'conn;
                            }
                            handle.info.lock().unwrap().blocked = true;
                            let reply = wait_block(&server, &client, wait).await;
                            handle.info.lock().unwrap().blocked = false;
                            client.mark = std::time::Instant::now();
                            server.clock.refresh();
                            match reply {
                                Some(r) => encode(&r, client.proto, &mut out),
                                None => break 'conn,
                            }
                        }
                    }
                    if client.closing {
                        let _ = write_out(&server, &mut socket, &mut out).await;
                        break 'conn;
                    }
                }
                drain(&server, &mut client, &mut inflight, &mut out).await;
                barrier_done.clear();
                if inbuf.len() + decoder.bulk_wanted().unwrap_or(0) > qbuf_limit {
                    tracing::warn!(client = handle.id, "closing client that reached max query buffer length");
                    break;
                }
                if let Some(want) = decoder.bulk_wanted() {
                    // A big bulk is arriving: grow the buffer once rather than in steps.
                    inbuf.reserve(want.saturating_sub(inbuf.len()));
                }
                client.flush(&server.stats);
                handle.info.lock().unwrap().qbuf = inbuf.len();
            }
        }
        if !out.is_empty() && write_out(&server, &mut socket, &mut out).await.is_err() {
            break;
        }
        if handle.is_killed() {
            break;
        }
    }
    client.flush(&server.stats);
    super::commands::disconnect(&server, &mut client);
    server.clients.unregister(handle.id);
}

async fn write_out(
    server: &Server,
    socket: &mut TcpStream,
    out: &mut BytesMut,
) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    server
        .stats
        .net_output_bytes
        .fetch_add(out.len() as u64, Ordering::Relaxed);
    let r = socket.write_all(out).await;
    out.clear();
    if out.capacity() > 1024 * 1024 {
        *out = BytesMut::with_capacity(16 * 1024);
    }
    r
}

/// Waits for a blocked command's reply, its timeout, or the end of the connection
/// (`None`).
async fn wait_block(
    server: &Server,
    client: &ClientState,
    mut wait: dispatch::BlockWait,
) -> Option<Reply> {
    let mut shutdown = server.shutdown_signal();
    let sleep = async {
        match wait.deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = &mut wait.rx => Some(r.ok().flatten().unwrap_or(Reply::NilArray)),
        _ = sleep => Some(dispatch::cancel_block(server, wait)),
        _ = client.handle.kill_notify.notified() => { dispatch::cancel_block(server, wait); None }
        _ = shutdown.changed() => { dispatch::cancel_block(server, wait); None }
    }
}

/// Pipelined writes waiting for their replies, with the command to run again if it
/// is refused (forward mode, see `exec::should_retry`).
type Inflight = VecDeque<(PendingWrite, bool, Option<Vec<Bytes>>)>;

/// Encodes the answers of in-flight writes, in order. A refused write is run again
/// only if no later write of the pipeline to the same slot may have been applied:
/// running it after that one would reverse the client's order on a key. (Writes to
/// different shards already apply in no fixed order.) Otherwise the client gets
/// the refusal, which is retryable.
async fn drain(
    server: &Arc<Server>,
    client: &mut ClientState,
    inflight: &mut Inflight,
    out: &mut BytesMut,
) {
    let mut done = Vec::with_capacity(inflight.len());
    while let Some((p, silent, again)) = inflight.pop_front() {
        done.push((exec::first_reply(p.wait().await), silent, again));
    }
    let may_retry = retry_plan(done.iter().map(|(r, _, again)| {
        let refused = again.is_some() && exec::should_retry(server, client, r);
        (refused, again.as_deref().and_then(slot_of))
    }));
    for ((mut r, silent, again), retry) in done.into_iter().zip(may_retry) {
        if let (Some(args), true) = (again, retry) {
            r = exec::retry_refused(server, client, args, r).await;
        }
        if !silent {
            encode(&r, client.proto, out);
        }
    }
}

/// Which of a pipeline's writes, `(refused, slot)` in order, may run again: a
/// refused one with no later write to its slot that may have run (a keyless write,
/// `None`, conflicts with every slot).
fn retry_plan(writes: impl DoubleEndedIterator<Item = (bool, Option<u16>)>) -> Vec<bool> {
    let mut ran_later: Vec<Option<u16>> = Vec::new();
    let mut plan: Vec<bool> = writes
        .rev()
        .map(|(refused, slot)| {
            if refused {
                !ran_later
                    .iter()
                    .any(|s| s.is_none() || slot.is_none() || *s == slot)
            } else {
                ran_later.push(slot);
                false
            }
        })
        .collect();
    plan.reverse();
    plan
}

/// The one slot a command's keys hash to (`None`: keyless or cross-slot).
fn slot_of(args: &[Bytes]) -> Option<u16> {
    let spec = dispatch::route_spec(args)?;
    crate::router::command_slot(spec, args).ok().flatten()
}

/// The leader makes room before a write that may grow memory: proposes eviction
/// victims until used memory is under maxmemory (bounded rounds; what is left is the
/// cron's).
async fn evict(shard: &Shard, replica: &Replica) {
    for _ in 0..64 {
        let victims = shard.lock().choose_victims(32);
        if victims.is_empty() {
            return;
        }
        if replica.write(Op::EvictKeys(victims)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::retry_plan;

    #[test]
    fn a_refused_write_runs_again_only_if_no_later_write_to_its_slot_ran() {
        let plan = |w: &[(bool, Option<u16>)]| retry_plan(w.iter().copied());
        // Alone, or followed by refusals only (they run again in order after it).
        assert_eq!(plan(&[(true, Some(1))]), [true]);
        assert_eq!(plan(&[(true, Some(1)), (true, Some(1))]), [true, true]);
        // A later write to the same slot ran: running this one now would reorder.
        assert_eq!(plan(&[(true, Some(1)), (false, Some(1))]), [false, false]);
        // An earlier one ran: no conflict.
        assert_eq!(plan(&[(false, Some(1)), (true, Some(1))]), [false, true]);
        // Other slots do not order it.
        assert_eq!(plan(&[(true, Some(1)), (false, Some(2))]), [true, false]);
        // Keyless writes conflict with everything.
        assert_eq!(plan(&[(true, Some(1)), (false, None)]), [false, false]);
        assert_eq!(plan(&[(true, None), (false, Some(7))]), [false, false]);
        // Mixed: only the writes with no later same-slot success.
        assert_eq!(
            plan(&[
                (true, Some(1)),
                (true, Some(2)),
                (false, Some(2)),
                (true, Some(2))
            ]),
            [true, false, false, true]
        );
    }
}
