//! One client connection: read, decode every complete request in the buffer
//! (pipelining), dispatch, encode the replies in the client's protocol, write once.

use super::client::ClientState;
use super::dispatch::{self, Flow};
use super::Server;
use crate::resp::{encode, DecodeLimits, Decoder, Reply};
use bytes::BytesMut;
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
                    let flow = dispatch::command(&server, &mut client, args);
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
        r = &mut wait.rx => Some(r.unwrap_or(Reply::NilArray)),
        _ = sleep => Some(dispatch::cancel_block(server, wait)),
        _ = client.handle.kill_notify.notified() => { dispatch::cancel_block(server, wait); None }
        _ = shutdown.changed() => { dispatch::cancel_block(server, wait); None }
    }
}
