//! MULTI EXEC DISCARD WATCH UNWATCH.
//!
//! EXEC runs the queued keyspace commands as one write-path entry, so the block is
//! atomic on every replica; queued server commands (PING, TIME, ...) run in place
//! around it. WATCH is broken by any change to a watched key, including expiry and
//! eviction, and by a watched key's deadline passing before EXEC.

use super::super::client::ClientState;
use super::super::dispatch::{self, ExecFinish, Finish, Flow, Replicate, CROSSSLOT, UNSERVED};
use super::super::route::{self, Target};
use super::super::Server;
use crate::cmd::{self, Handler};
use crate::resp::Reply;
use bytes::Bytes;
use proto::Op;
use std::sync::atomic::Ordering;

pub fn multi(c: &mut ClientState) -> Reply {
    if c.multi.is_some() {
        return Reply::error("ERR MULTI calls can not be nested");
    }
    c.multi = Some(Vec::new());
    c.multi_failed = false;
    c.multi_slot = None;
    c.handle.info.lock().unwrap().multi = 0;
    Reply::ok()
}

pub fn discard(server: &Server, c: &mut ClientState) -> Reply {
    if c.multi.take().is_none() {
        return Reply::error("ERR DISCARD without MULTI");
    }
    c.multi_failed = false;
    unwatch_all(server, c);
    c.handle.info.lock().unwrap().multi = -1;
    Reply::ok()
}

pub fn watch(server: &Server, c: &mut ClientState, a: &[Bytes]) -> Reply {
    if c.multi.is_some() {
        return Reply::error("ERR WATCH inside MULTI is not allowed");
    }
    for key in &a[1..] {
        if c.watched.iter().any(|(k, _, _)| k == key) {
            continue;
        }
        let Some(h) = server.shard_of_key(key) else {
            return Reply::error(WATCH_REMOTE);
        };
        // Lock order: shard, then waiters (as after_write takes them).
        let mut st = h.shard.lock();
        let now = st.now();
        let alive = st.ks.exists(key, now);
        let digest = st.ks.digest(key, now);
        server
            .waiters
            .lock()
            .unwrap()
            .watch(&mut st.ks, c.id(), key, &c.watch_dirty);
        c.watched.push((key.clone(), alive, digest));
    }
    c.handle.info.lock().unwrap().watch = c.watched.len();
    Reply::ok()
}

const WATCH_REMOTE: &str = "ERR WATCH of a key whose shard has no replica on this node is not supported: connect to a node hosting the shard (CLUSTER SLOTS)";

pub fn unwatch_all(server: &Server, c: &mut ClientState) {
    for (key, _, _) in c.watched.drain(..) {
        if let Some(h) = server.shard_of_key(&key) {
            // Lock order: shard, then waiters (as after_write takes them).
            let mut st = h.shard.lock();
            server
                .waiters
                .lock()
                .unwrap()
                .unwatch(&mut st.ks, c.handle.id, &key);
        }
    }
    c.watch_dirty.store(false, Ordering::SeqCst);
    c.handle.info.lock().unwrap().watch = 0;
}

pub fn exec(server: &std::sync::Arc<Server>, c: &mut ClientState) -> Flow {
    let Some(queued) = c.multi.take() else {
        return Flow::Reply(Reply::error("ERR EXEC without MULTI"));
    };
    c.handle.info.lock().unwrap().multi = -1;
    if std::mem::take(&mut c.multi_failed) {
        unwatch_all(server, c);
        return Flow::Reply(Reply::error(
            "EXECABORT Transaction discarded because of previous errors.",
        ));
    }
    let data: Vec<Vec<Bytes>> = queued.iter().filter(|a| is_data(a)).cloned().collect();
    let slot = c.multi_slot.take();
    // Where the block runs: the shard of its slot (cluster mode), the node's one shard.
    let target = if !server.is_cluster() {
        server
            .table()
            .hosted
            .values()
            .next()
            .cloned()
            .map(Target::Local)
    } else {
        slot.map(|s| route::slot_target(&server.table(), s))
    };
    // Watched keys must live in the shard the block runs in.
    if let (Some(s), true) = (slot, server.is_cluster()) {
        let map = server.table().map.clone();
        let shard = map.shard_of(s);
        if c.watched
            .iter()
            .any(|(k, _, _)| map.shard_of(proto::key_slot(k)) != shard)
        {
            unwatch_all(server, c);
            return Flow::Reply(Reply::error(CROSSSLOT));
        }
    }
    let h = match target {
        Some(Target::Local(h)) => h,
        Some(Target::Remote { shard, slot }) => {
            let watching = !c.watched.is_empty();
            unwatch_all(server, c);
            if server.hot.redirect.load(Ordering::Relaxed) {
                return Flow::Reply(dispatch::moved(server, slot, shard));
            }
            // WATCH only takes keys hosted here: a watched key's shard that is now
            // elsewhere moved (or its replica left this node). As in Redis, where
            // migrating a key deletes it from the source and so touches it, the
            // transaction aborts; the client runs its check-and-set again.
            if watching {
                return Flow::Reply(Reply::NilArray);
            }
            if crate::server::exec::forward_mode(server) {
                c.exec_again = Some((queued.clone(), Some(slot)));
            }
            // The block runs as a whole on a node hosting the shard.
            let mut cmds = Vec::with_capacity(queued.len() + 2);
            cmds.push(vec![Bytes::from_static(b"MULTI")]);
            cmds.extend(queued);
            cmds.push(vec![Bytes::from_static(b"EXEC")]);
            return Flow::Forward { shard, cmds };
        }
        Some(Target::Unserved) => {
            unwatch_all(server, c);
            return Flow::Reply(Reply::error(UNSERVED));
        }
        // No keys: nothing runs in a shard.
        None | Some(Target::Keyless) | Some(Target::CrossSlot) => {
            if !data.is_empty() {
                unwatch_all(server, c);
                return Flow::Reply(Reply::error(
                    "ERR a transaction whose commands have no keys has no shard to run in, in cluster mode",
                ));
            }
            return Flow::Reply(assemble(server, c, queued, Vec::new()));
        }
    };
    if let Some(replica) = &h.replica {
        if server.hot.redirect.load(Ordering::Relaxed) && !replica.is_leader() {
            unwatch_all(server, c);
            return Flow::Reply(dispatch::moved(server, slot.unwrap_or(0), h.id));
        }
    }
    let mut st = h.shard.lock();
    let now = st.now();
    // A watched key that changed, or that was alive when watched and has expired since.
    let broken = c.watch_dirty.load(Ordering::SeqCst)
        || c.watched
            .iter()
            .any(|(k, alive, _)| *alive && !st.ks.exists(k, now));
    if broken {
        drop(st);
        unwatch_all(server, c);
        return Flow::Reply(Reply::NilArray);
    }
    if data.is_empty() {
        drop(st);
        return Flow::Reply(assemble(server, c, queued, Vec::new()));
    }
    if h.replica.is_some() {
        // Replicated: the data commands are one log entry, applied atomically on every
        // replica; the answer is assembled once apply has returned. Watched keys travel
        // as digests: apply checks them at the entry's place in the log, so a write
        // ordered before the EXEC by any node aborts it, as in Redis.
        drop(st);
        let watched: Vec<(Bytes, u64)> =
            c.watched.iter().map(|(k, _, d)| (k.clone(), *d)).collect();
        let finish: ExecFinish = Box::new(move |server, c, result| {
            let refusal = match result {
                // No replies: a watched key had changed by the time the entry applied.
                Ok(replies) if replies.is_empty() => {
                    unwatch_all(server, c);
                    return Reply::NilArray;
                }
                // The slot is being migrated: the whole transaction was refused (as
                // Redis Cluster's TRYAGAIN).
                Ok(replies) if crate::shard::migration::refused(&replies) => replies[0].clone(),
                Ok(replies) => return assemble(server, c, queued, replies),
                Err(e) => e.reply(),
            };
            // Nothing ran: a plain client's transaction runs again, watches kept
            // (exec::exec_again); others get the refusal.
            if let Reply::Error(e) = &refusal {
                if crate::server::exec::forward_mode(server) && crate::server::exec::retryable(e) {
                    c.exec_again = Some((queued, slot));
                    return refusal;
                }
            }
            unwatch_all(server, c);
            refusal
        });
        let op = if watched.is_empty() {
            Op::Exec(data)
        } else {
            Op::ExecWatched {
                watched,
                cmds: data,
            }
        };
        return Flow::Replicate(Replicate {
            hosted: h.clone(),
            op,
            finish: Finish::Exec(finish),
        });
    }
    let data_replies = st.write(data);
    server.after_write(&mut st);
    drop(st);
    Flow::Reply(assemble(server, c, queued, data_replies))
}

fn is_data(args: &[Bytes]) -> bool {
    cmd::lookup(&args[0]).is_some_and(|s| !matches!(s.handler, Handler::Server))
}

/// EXEC's reply: the data commands' replies in their places, queued server commands
/// (PING, TIME, ...) run in place.
fn assemble(
    server: &std::sync::Arc<Server>,
    c: &mut ClientState,
    queued: Vec<Vec<Bytes>>,
    data_replies: Vec<Reply>,
) -> Reply {
    let mut data_replies = data_replies.into_iter();
    let mut replies = Vec::with_capacity(queued.len());
    for args in queued {
        if is_data(&args) {
            replies.push(data_replies.next().expect("one reply per queued command"));
        } else {
            let spec = cmd::lookup(&args[0]).expect("checked when queued");
            match super::run(server, c, spec, args) {
                Flow::Reply(r) => replies.push(r),
                // SUBSCRIBE in a transaction: its confirmations go in the block's
                // reply, as Redis writes them there.
                Flow::Replies(rs) => replies.extend(rs),
                Flow::Block(_)
                | Flow::Replicate(_)
                | Flow::Forward { .. }
                | Flow::FanOut(_)
                | Flow::Later(_)
                | Flow::Retry(_) => replies.push(Reply::NilArray),
            }
        }
    }
    unwatch_all(server, c);
    Reply::Array(replies)
}
