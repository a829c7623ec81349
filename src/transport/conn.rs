//! One established peer connection: its pending calls, its writer task (batches
//! queued frames into few syscalls) and its reader task (dispatches requests to the
//! handler in arrival order, completes calls, answers pings, watches for silence).

use super::{Handler, Responder, Transport};
use bytes::{Buf, Bytes, BytesMut};
use proto::peer::{decode_frame, Frame};
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// A frame ready for the writer: its encoded head and a body written after it.
pub(super) struct Outgoing {
    pub head: BytesMut,
    pub body: Bytes,
}

pub(super) type Outbox = mpsc::UnboundedSender<Outgoing>;

pub(super) fn outgoing(frame: &Frame) -> Outgoing {
    let (head, body) = frame.encode_parts();
    Outgoing { head, body }
}

type CallSlot = oneshot::Sender<Result<Bytes, String>>;

struct Pending {
    closed: bool,
    calls: HashMap<u64, CallSlot>,
}

pub(super) struct Conn {
    /// Unique within this transport (not a wire value).
    pub id: u64,
    pub peer: u64,
    pub peer_incarnation: u64,
    /// Node id of the side that dialed this connection.
    pub dialer: u64,
    /// The address we dialed, for outbound connections.
    pub addr: Option<String>,
    pub one_off: bool,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    out: Outbox,
    pending: Mutex<Pending>,
    next_call: AtomicU64,
    closed: watch::Sender<bool>,
}

/// Who is at the other end of a connection, and who dialed it.
pub(super) struct ConnMeta {
    pub id: u64,
    pub peer: u64,
    pub peer_incarnation: u64,
    pub dialer: u64,
    pub addr: Option<String>,
    /// A short-lived connection for one call, never registered as the peer's.
    pub one_off: bool,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl Conn {
    /// The connection and the receiving end of its outbox (for the writer task).
    pub fn new(m: ConnMeta) -> (Arc<Conn>, mpsc::UnboundedReceiver<Outgoing>) {
        let (out, rx) = mpsc::unbounded_channel();
        let conn = Conn {
            id: m.id,
            peer: m.peer,
            peer_incarnation: m.peer_incarnation,
            dialer: m.dialer,
            addr: m.addr,
            one_off: m.one_off,
            local: m.local,
            remote: m.remote,
            out,
            pending: Mutex::new(Pending {
                closed: false,
                calls: HashMap::new(),
            }),
            next_call: AtomicU64::new(1),
            closed: watch::channel(false).0,
        };
        (Arc::new(conn), rx)
    }

    pub fn send(&self, frame: &Frame) {
        // A closed connection's writer is gone; the frame is dropped with it.
        let _ = self.out.send(outgoing(frame));
    }

    pub fn outbox(&self) -> Outbox {
        self.out.clone()
    }

    /// Registers a call and queues its request. `None`: the connection closed
    /// before anything was queued, so the request was certainly never sent.
    pub fn start_call(
        &self,
        group: u64,
        kind: u16,
        body: Bytes,
    ) -> Option<(u64, oneshot::Receiver<Result<Bytes, String>>)> {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().unwrap();
            if p.closed {
                return None;
            }
            p.calls.insert(id, tx);
        }
        self.send(&Frame::Request {
            id,
            group,
            kind,
            body,
        });
        Some((id, rx))
    }

    pub fn forget_call(&self, id: u64) {
        self.pending.lock().unwrap().calls.remove(&id);
    }

    fn complete_call(&self, id: u64, result: Result<Bytes, String>) {
        let slot = self.pending.lock().unwrap().calls.remove(&id);
        // No slot: the call timed out or was cancelled; its late answer is dropped.
        if let Some(slot) = slot {
            let _ = slot.send(result);
        }
    }

    pub fn pending_calls(&self) -> usize {
        self.pending.lock().unwrap().calls.len()
    }

    /// Fails every pending call (their receivers see `Closed`) and stops both
    /// tasks, which drops the socket. Returns true for the first close only.
    pub fn close(&self) -> bool {
        let calls = {
            let mut p = self.pending.lock().unwrap();
            if p.closed {
                return false;
            }
            p.closed = true;
            std::mem::take(&mut p.calls)
        };
        drop(calls);
        self.closed.send_replace(true);
        true
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }
}

/// Frames staged per write: at most this many, and at most this many bytes.
const BATCH_FRAMES: usize = 1024;
const BATCH_BYTES: usize = 1 << 20;
/// Bodies up to this size are copied into the batch buffer; larger ones are written
/// from their own buffer (vectored write).
const COPY_BODY_MAX: usize = 4096;
/// iovecs per write_vectored call (well under IOV_MAX).
const IOVECS: usize = 64;

pub(super) struct ConnTasks {
    pub transport: Weak<Transport>,
    pub handler: Arc<dyn Handler>,
    pub max_frame: usize,
    pub keepalive: Duration,
}

/// Starts the reader and writer tasks of a registered (or one-off) connection.
pub(super) fn spawn(
    t: ConnTasks,
    conn: Arc<Conn>,
    stream: TcpStream,
    leftover: BytesMut,
    rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    let (rd, wr) = stream.into_split();
    let w_conn = conn.clone();
    let w_transport = t.transport.clone();
    tokio::spawn(async move {
        let why = match write_loop(&w_conn, wr, rx).await {
            Ok(()) => "closed".to_string(),
            Err(e) => format!("write failed: {e}"),
        };
        lost(&w_transport, &w_conn, &why);
    });
    tokio::spawn(async move {
        // Runs on every exit, a panicking handler included, so the connection is
        // never left registered without a reader.
        let mut guard = LostOnDrop {
            transport: t.transport.clone(),
            conn: conn.clone(),
            why: "reader task panicked".into(),
        };
        guard.why = read_loop(&t, &conn, rd, leftover).await;
    });
}

struct LostOnDrop {
    transport: Weak<Transport>,
    conn: Arc<Conn>,
    why: String,
}

impl Drop for LostOnDrop {
    fn drop(&mut self) {
        lost(&self.transport, &self.conn, &self.why);
    }
}

fn lost(transport: &Weak<Transport>, conn: &Arc<Conn>, why: &str) {
    match transport.upgrade() {
        Some(t) => t.connection_lost(conn, why),
        None => {
            conn.close();
        }
    }
}

async fn write_loop(
    conn: &Conn,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) -> io::Result<()> {
    let mut closed = conn.closed.subscribe();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut chunks: VecDeque<Bytes> = VecDeque::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = closed.wait_for(|c| *c) => return Ok(()),
            m = rx.recv() => match m {
                Some(m) => m,
                None => return Ok(()),
            },
        };
        // Write everything queued so far in one go: Raft heartbeats and appends
        // from many groups share one syscall.
        let mut frames = 1;
        let mut bytes = stage(first, &mut buf, &mut chunks);
        while frames < BATCH_FRAMES && bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(m) => {
                    bytes += stage(m, &mut buf, &mut chunks);
                    frames += 1;
                }
                Err(_) => break,
            }
        }
        if !buf.is_empty() {
            chunks.push_back(buf.split().freeze());
        }
        write_chunks(&mut wr, &mut chunks).await?;
    }
}

fn stage(m: Outgoing, buf: &mut BytesMut, chunks: &mut VecDeque<Bytes>) -> usize {
    let n = m.head.len() + m.body.len();
    buf.extend_from_slice(&m.head);
    if m.body.len() <= COPY_BODY_MAX {
        buf.extend_from_slice(&m.body);
    } else {
        if !buf.is_empty() {
            chunks.push_back(buf.split().freeze());
        }
        chunks.push_back(m.body);
    }
    n
}

async fn write_chunks(wr: &mut OwnedWriteHalf, chunks: &mut VecDeque<Bytes>) -> io::Result<()> {
    while !chunks.is_empty() {
        let mut n = {
            let slices: Vec<IoSlice<'_>> = chunks
                .iter()
                .take(IOVECS)
                .map(|c| IoSlice::new(c))
                .collect();
            wr.write_vectored(&slices).await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let front = chunks.front_mut().expect("written bytes came from a chunk");
            if front.len() <= n {
                n -= front.len();
                chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
    Ok(())
}

/// Reads frames until the connection ends; returns why it ended.
async fn read_loop(
    t: &ConnTasks,
    conn: &Arc<Conn>,
    mut rd: OwnedReadHalf,
    leftover: BytesMut,
) -> String {
    let mut closed = conn.closed.subscribe();
    let mut buf = leftover;
    let mut last_frame = Instant::now();
    // A zero keepalive would make interval() panic; treat it as 1 ms.
    let keepalive = t.keepalive.max(Duration::from_millis(1));
    let mut tick = tokio::time::interval(keepalive);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        loop {
            match decode_frame(&mut buf, t.max_frame) {
                Ok(Some(frame)) => {
                    if let Err(why) = dispatch(t, conn, frame) {
                        tracing::warn!(peer = conn.peer, remote = %conn.remote, "{why}; closing the connection");
                        return why;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(peer = conn.peer, remote = %conn.remote, "bad frame: {e}; closing the connection");
                    return format!("bad frame: {e}");
                }
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            _ = closed.wait_for(|c| *c) => return "closed".into(),
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => return "closed by the peer".into(),
                Ok(_) => last_frame = Instant::now(),
                Err(e) => return format!("read failed: {e}"),
            },
            _ = tick.tick() => {
                let silent = last_frame.elapsed();
                if silent >= keepalive * 3 {
                    tracing::warn!(peer = conn.peer, remote = %conn.remote, ?silent, "peer silent; closing the connection");
                    return format!("no frame for {silent:?}");
                }
                if silent >= keepalive {
                    conn.send(&Frame::Ping);
                }
            }
        }
    }
}

fn dispatch(t: &ConnTasks, conn: &Arc<Conn>, frame: Frame) -> Result<(), String> {
    match frame {
        Frame::Request {
            id,
            group,
            kind,
            body,
        } => {
            let respond = Responder::new(conn.outbox(), id, t.max_frame);
            t.handler.handle(conn.peer, group, kind, body, respond);
        }
        Frame::Response { id, result } => conn.complete_call(id, result),
        Frame::Ping => conn.send(&Frame::Pong),
        Frame::Pong => {}
        Frame::Challenge(_) | Frame::Hello(_) | Frame::Welcome { .. } | Frame::Refused { .. } => {
            return Err("handshake frame after the handshake".into());
        }
    }
    Ok(())
}
