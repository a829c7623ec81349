//! The fault-injecting TCP proxy on the peer links. Each node's peer address, as the
//! other nodes know it, is a proxy listener on loopback that forwards to the node's
//! real peer port, so faults need neither root nor namespaces.
//!
//! A peer connection starts with the accepting node's Challenge and the dialing
//! node's Hello, which names the dialer (`proto::peer`). Until the Hello arrives the
//! proxy relays the Challenge as it comes; once it names the dialer X, every byte
//! belongs to a link: client→upstream is X→j, upstream→client is j→X. A first frame
//! that is not a Hello leaves the connection transparent (never blocked).
//!
//! Blocking a link drops its bytes: the sender sees no backpressure, the receiver
//! silence, as with lost packets. A direction that lost bytes is poisoned for good (a
//! TCP stream with a hole is corrupt); `heal` closes poisoned connections and the
//! nodes redial. A new connection over a blocked link never completes its handshake:
//! its Hello or the acceptor's answer to it is dropped. Delays hold each chunk until
//! the time it was read plus the link's delay, keeping order.

use bytes::BytesMut;
use proto::peer::{decode_frame, Frame};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

const HELLO_MAX: usize = 64 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub accepted: u64,
    pub live: u64,
    pub forwarded_bytes: u64,
    pub dropped_bytes: u64,
}

#[derive(Default)]
struct Links {
    blocked: HashSet<(u64, u64)>,
    delays: HashMap<(u64, u64), Duration>,
}

struct Conn {
    /// Set once the Hello names the dialer.
    src: Mutex<Option<u64>>,
    dst: u64,
    /// A direction dropped bytes: client→upstream, upstream→client.
    poisoned: [AtomicBool; 2],
    close: watch::Sender<bool>,
}

impl Conn {
    /// The link of direction `dir` (0: client→upstream), once the dialer is known.
    fn link(&self, dir: usize) -> Option<(u64, u64)> {
        let src = (*self.src.lock().unwrap())?;
        Some(if dir == 0 {
            (src, self.dst)
        } else {
            (self.dst, src)
        })
    }
}

struct Inner {
    links: Mutex<Links>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_conn: AtomicU64,
    accepted: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    stop: watch::Sender<bool>,
}

pub struct Proxy {
    inner: Arc<Inner>,
    addrs: HashMap<u64, SocketAddr>,
}

impl Proxy {
    /// One listener per node at `listen` (port 0: any), forwarding to `upstream`.
    pub async fn start(nodes: &[(u64, SocketAddr, SocketAddr)]) -> std::io::Result<Proxy> {
        let inner = Arc::new(Inner {
            links: Mutex::new(Links::default()),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            stop: watch::channel(false).0,
        });
        let mut addrs = HashMap::new();
        for &(node, listen, upstream) in nodes {
            assert!(
                listen.ip().is_loopback() && upstream.ip().is_loopback(),
                "loopback only"
            );
            let listener = TcpListener::bind(listen).await?;
            addrs.insert(node, listener.local_addr()?);
            tokio::spawn(accept_loop(inner.clone(), listener, node, upstream));
        }
        Ok(Proxy { inner, addrs })
    }

    pub fn listen_addr(&self, node: u64) -> SocketAddr {
        self.addrs[&node]
    }

    /// Bytes from `from` to `to` are dropped from now on.
    pub fn block(&self, from: u64, to: u64) {
        self.inner.links.lock().unwrap().blocked.insert((from, to));
    }

    /// Both directions.
    pub fn cut(&self, a: u64, b: u64) {
        self.block(a, b);
        self.block(b, a);
    }

    /// Every link forwards again; connections that lost bytes are closed.
    pub fn heal(&self) {
        self.inner.links.lock().unwrap().blocked.clear();
        for c in self.inner.conns.lock().unwrap().values() {
            if c.poisoned.iter().any(|p| p.load(Ordering::Relaxed)) {
                let _ = c.close.send(true);
            }
        }
    }

    pub fn set_delay(&self, from: u64, to: u64, d: Duration) {
        self.inner
            .links
            .lock()
            .unwrap()
            .delays
            .insert((from, to), d);
    }

    pub fn clear_delays(&self) {
        self.inner.links.lock().unwrap().delays.clear();
    }

    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            accepted: self.inner.accepted.load(Ordering::Relaxed),
            live: self.inner.conns.lock().unwrap().len() as u64,
            forwarded_bytes: self.inner.forwarded.load(Ordering::Relaxed),
            dropped_bytes: self.inner.dropped.load(Ordering::Relaxed),
        }
    }

    /// Closes the listeners and every connection.
    pub fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        for c in self.inner.conns.lock().unwrap().values() {
            let _ = c.close.send(true);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Returns once the flag is (or was) set, or its sender is gone.
async fn until_set(rx: &mut watch::Receiver<bool>) {
    loop {
        let set = *rx.borrow_and_update();
        if set || rx.changed().await.is_err() {
            return;
        }
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener, node: u64, upstream: SocketAddr) {
    let mut stop = inner.stop.subscribe();
    loop {
        let client = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = until_set(&mut stop) => return,
        };
        inner.accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(relay(inner.clone(), client, node, upstream));
    }
}

async fn relay(inner: Arc<Inner>, client: TcpStream, dst: u64, upstream: SocketAddr) {
    let Ok(Ok(up)) =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(upstream)).await
    else {
        return; // the node is down: the dialer sees the connection close
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    let conn = Arc::new(Conn {
        src: Mutex::new(None),
        dst,
        poisoned: [AtomicBool::new(false), AtomicBool::new(false)],
        close: watch::channel(false).0,
    });
    if *inner.stop.borrow() {
        return;
    }
    inner.conns.lock().unwrap().insert(id, conn.clone());
    let (cr, cw) = client.into_split();
    let (ur, uw) = up.into_split();
    let a = tokio::spawn(pump(inner.clone(), conn.clone(), 0, cr, uw));
    let b = tokio::spawn(pump(inner.clone(), conn.clone(), 1, ur, cw));
    let _ = a.await;
    let _ = b.await;
    inner.conns.lock().unwrap().remove(&id);
}

/// One direction: reads chunks, drops or queues them, and a writer task writes them
/// when due. Either direction ending closes the connection.
async fn pump(
    inner: Arc<Inner>,
    conn: Arc<Conn>,
    dir: usize,
    mut r: OwnedReadHalf,
    w: OwnedWriteHalf,
) {
    let mut close = conn.close.subscribe();
    let (tx, rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(write_due(rx, w, conn.close.subscribe()));
    // Client→upstream: bytes held until the Hello names the dialer.
    let mut hello = (dir == 0).then(BytesMut::new);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = r.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = until_set(&mut close) => break,
        };
        let mut chunk = buf[..n].to_vec();
        if let Some(held) = hello.as_mut() {
            held.extend_from_slice(&chunk);
            match decode_frame(&mut held.clone(), HELLO_MAX) {
                Ok(None) => continue,
                Ok(Some(Frame::Hello(h))) => *conn.src.lock().unwrap() = Some(h.node_id),
                _ => {} // not a peer handshake: transparent
            }
            chunk = held.to_vec();
            hello = None;
        }
        let (drop_it, delay) = {
            let links = inner.links.lock().unwrap();
            match conn.link(dir) {
                Some(link) => (
                    links.blocked.contains(&link) || conn.poisoned[dir].load(Ordering::Relaxed),
                    links.delays.get(&link).copied().unwrap_or_default(),
                ),
                None => (false, Duration::ZERO),
            }
        };
        if drop_it {
            conn.poisoned[dir].store(true, Ordering::Relaxed);
            inner
                .dropped
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            continue;
        }
        inner
            .forwarded
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if tx.send((Instant::now() + delay, chunk)).is_err() {
            break;
        }
    }
    let _ = conn.close.send(true);
    drop(tx);
    let _ = writer.await;
}

async fn write_due(
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    mut w: OwnedWriteHalf,
    mut close: watch::Receiver<bool>,
) {
    loop {
        let (due, bytes) = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = until_set(&mut close) => break,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = until_set(&mut close) => break,
        }
        if w.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::peer::{Challenge, Hello, PEER_PROTOCOL_VERSION};

    const WAIT: Duration = Duration::from_secs(5);

    /// A fake node: sends a Challenge on every connection, then echoes with a prefix.
    async fn fake_node(id: u64) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let c = Frame::Challenge(Challenge {
                        version: PEER_PROTOCOL_VERSION,
                        node_id: id,
                        incarnation: 1,
                        nonce: [0; proto::peer::NONCE_LEN],
                    });
                    if s.write_all(&c.encode()).await.is_err() {
                        return;
                    }
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    fn hello(from: u64) -> Vec<u8> {
        Frame::Hello(Hello {
            version: PEER_PROTOCOL_VERSION,
            node_id: from,
            incarnation: 7,
            one_off: false,
            cluster_id: String::new(),
            auth: None,
        })
        .encode()
    }

    async fn proxy_for(node: u64) -> (Proxy, SocketAddr) {
        let up = fake_node(node).await;
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let p = Proxy::start(&[(node, any, up)]).await.unwrap();
        let a = p.listen_addr(node);
        (p, a)
    }

    /// Reads exactly `n` bytes, or None by the deadline.
    async fn read_n(s: &mut TcpStream, n: usize, within: Duration) -> Option<Vec<u8>> {
        let mut out = vec![0u8; n];
        match tokio::time::timeout(within, s.read_exact(&mut out)).await {
            Ok(Ok(_)) => Some(out),
            _ => None,
        }
    }

    /// Connects as node `from`: reads the challenge, sends the hello; returns the
    /// stream and the hello's length (echoed back first).
    async fn dial(addr: SocketAddr, from: u64) -> (TcpStream, usize) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut held = BytesMut::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(Some(Frame::Challenge(_))) = decode_frame(&mut held.clone(), HELLO_MAX) {
                break;
            }
            let mut b = [0u8; 256];
            let n = tokio::time::timeout_at(deadline, s.read(&mut b))
                .await
                .expect("challenge within the deadline")
                .unwrap();
            held.extend_from_slice(&b[..n]);
        }
        let h = hello(from);
        s.write_all(&h).await.unwrap();
        (s, h.len())
    }

    #[tokio::test]
    async fn relays_both_ways_and_learns_the_dialer() {
        let (p, addr) = proxy_for(2).await;
        let (mut s, hl) = dial(addr, 1).await;
        assert!(read_n(&mut s, hl, WAIT).await.is_some(), "hello echoed");
        s.write_all(b"ping").await.unwrap();
        assert_eq!(read_n(&mut s, 4, WAIT).await.unwrap(), b"ping");
        let st = p.stats();
        assert_eq!(st.accepted, 1);
        assert_eq!(st.live, 1);
        assert_eq!(st.dropped_bytes, 0);
    }

    #[tokio::test]
    async fn a_blocked_direction_loses_bytes_and_heal_closes_the_connection() {
        let (p, addr) = proxy_for(2).await;
        let (mut s, hl) = dial(addr, 1).await;
        read_n(&mut s, hl, WAIT).await.unwrap();
        // The way back (2 -> 1) is cut: the echo never arrives, but 1 -> 2 flows.
        p.block(2, 1);
        s.write_all(b"lost").await.unwrap();
        assert!(read_n(&mut s, 4, Duration::from_millis(500))
            .await
            .is_none());
        let deadline = std::time::Instant::now() + WAIT;
        while p.stats().dropped_bytes < 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "the echo was not dropped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(p.stats().forwarded_bytes > 0);
        p.heal();
        // The poisoned connection is closed.
        let mut b = [0u8; 16];
        let r = tokio::time::timeout(WAIT, s.read(&mut b))
            .await
            .expect("closed within the deadline");
        assert!(matches!(r, Ok(0) | Err(_)), "closed, got {r:?}");
        // A new one works.
        let (mut s, hl) = dial(addr, 1).await;
        read_n(&mut s, hl, WAIT).await.unwrap();
        s.write_all(b"back").await.unwrap();
        assert_eq!(read_n(&mut s, 4, WAIT).await.unwrap(), b"back");
    }

    #[tokio::test]
    async fn a_new_connection_over_a_blocked_link_never_completes() {
        let (p, addr) = proxy_for(2).await;
        p.block(1, 2);
        let (mut s, hl) = dial(addr, 1).await;
        assert!(
            read_n(&mut s, hl, Duration::from_millis(500))
                .await
                .is_none(),
            "the hello was dropped"
        );
        // Another dialer is not affected.
        let (mut s3, hl3) = dial(addr, 3).await;
        assert!(read_n(&mut s3, hl3, WAIT).await.is_some());
    }

    #[tokio::test]
    async fn delays_keep_order() {
        let (p, addr) = proxy_for(2).await;
        let (mut s, hl) = dial(addr, 1).await;
        read_n(&mut s, hl, WAIT).await.unwrap();
        p.set_delay(1, 2, Duration::from_millis(150));
        let t0 = std::time::Instant::now();
        for i in 0..10u8 {
            s.write_all(&[i]).await.unwrap();
        }
        let got = read_n(&mut s, 10, WAIT).await.unwrap();
        assert_eq!(got, (0..10).collect::<Vec<u8>>());
        assert!(
            t0.elapsed() >= Duration::from_millis(150),
            "delayed by {:?}",
            t0.elapsed()
        );
        p.clear_delays();
    }

    #[tokio::test]
    async fn without_a_hello_the_connection_is_transparent() {
        let (p, addr) = proxy_for(2).await;
        p.block(1, 2);
        p.block(2, 1);
        let mut s = TcpStream::connect(addr).await.unwrap();
        read_n(
            &mut s,
            Frame::Challenge(Challenge {
                version: PEER_PROTOCOL_VERSION,
                node_id: 2,
                incarnation: 1,
                nonce: [0; proto::peer::NONCE_LEN],
            })
            .encode()
            .len(),
            WAIT,
        )
        .await
        .expect("challenge");
        // A Ping frame is not a Hello: relayed whatever the links say.
        let ping = Frame::Ping.encode();
        s.write_all(&ping).await.unwrap();
        assert_eq!(read_n(&mut s, ping.len(), WAIT).await.unwrap(), ping);
    }

    #[tokio::test]
    async fn shutdown_closes_connections_and_listeners() {
        let (p, addr) = proxy_for(2).await;
        let (mut s, hl) = dial(addr, 1).await;
        read_n(&mut s, hl, WAIT).await.unwrap();
        p.shutdown();
        let mut b = [0u8; 16];
        let r = tokio::time::timeout(WAIT, s.read(&mut b))
            .await
            .expect("closed within the deadline");
        assert!(matches!(r, Ok(0) | Err(_)));
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            // The listener is gone once its task has seen the stop.
            match TcpStream::connect(addr).await {
                Err(_) => break,
                Ok(_) if std::time::Instant::now() > deadline => panic!("listener still open"),
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}
