//! Transport tests on loopback, every wait bounded and named.

use super::*;
use bytes::BytesMut;
use proto::peer::decode_frame;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bound on any single wait in these tests.
const WAIT: Duration = Duration::from_secs(10);
/// A call timeout long enough never to fire unless something is wrong.
const LONG: Duration = Duration::from_secs(5);

const ECHO: u16 = 0;
const FAIL: u16 = 1;
const DROP: u16 = 2;
/// Never answered: the responder is kept.
const HOLD: u16 = 3;
/// Recorded in arrival order, answered later from a task, out of order.
const RECORD: u16 = 4;
const PANIC: u16 = 5;

async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    bounded(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

#[derive(Default)]
struct TestHandler {
    held: Mutex<Vec<Responder>>,
    recorded: Mutex<Vec<u64>>,
    calls: AtomicU64,
}

impl Handler for TestHandler {
    fn handle(&self, from: u64, group: u64, kind: u16, body: Bytes, respond: Responder) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match kind {
            ECHO => {
                let mut out = format!("{from}/{group}:").into_bytes();
                out.extend_from_slice(&body);
                respond.send(Ok(Bytes::from(out)));
            }
            FAIL => respond.send(Err(format!("no: {}", String::from_utf8_lossy(&body)))),
            DROP => drop(respond),
            HOLD => self.held.lock().unwrap().push(respond),
            RECORD => {
                let seq = u64::from_le_bytes(body[..8].try_into().unwrap());
                self.recorded.lock().unwrap().push(seq);
                // Answer from another task after a delay that varies with seq, so
                // responses come back out of order and must be matched by id.
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_micros((seq * 7919) % 3000)).await;
                    respond.send(Ok(body));
                });
            }
            PANIC => panic!("handler bug (expected by the test)"),
            _ => respond.send(Err(format!("unknown kind {kind}"))),
        }
    }
}

struct Node {
    id: u64,
    addr: String,
    t: Arc<Transport>,
    h: Arc<TestHandler>,
    server: JoinHandle<()>,
}

fn cfg(id: u64) -> TransportConfig {
    TransportConfig {
        node_id: id,
        ..Default::default()
    }
}

async fn start(cfg: TransportConfig) -> Node {
    start_at(cfg, "127.0.0.1:0").await
}

async fn start_at(cfg: TransportConfig, addr: &str) -> Node {
    let listener = TcpListener::bind(addr).await.expect("bind on loopback");
    let addr = listener.local_addr().unwrap().to_string();
    let h = Arc::new(TestHandler::default());
    let id = cfg.node_id;
    let t = Transport::new(cfg, h.clone());
    let server = t.serve(listener);
    Node {
        id,
        addr,
        t,
        h,
        server,
    }
}

impl Node {
    /// Stops the node like a killed process: connections closed, port closed.
    async fn kill(self) {
        self.t.shutdown();
        bounded("the accept loop to stop", self.server)
            .await
            .expect("accept loop ended cleanly");
    }
}

fn link(a: &Node, b: &Node) {
    a.t.set_peer(b.id, b.addr.clone());
    b.t.set_peer(a.id, a.addr.clone());
}

async fn echo(from: &Node, to: &Node, group: u64, body: &'static [u8]) -> Result<Bytes, CallError> {
    let what = format!("an echo call from node {} to node {}", from.id, to.id);
    bounded(
        &what,
        from.t
            .call(to.id, group, ECHO, Bytes::from_static(body), LONG),
    )
    .await
}

/// Polls the futures in the order given, every time, until all are done: the first
/// poll of each happens in order, so calls created in order are queued in order.
async fn join_in_order<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (f, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => done = false,
                }
            }
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("all done")).collect()
}

/// A loopback port with nothing listening on it.
async fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    drop(l);
    a
}

/// Forwards connections to `target`, each only after `delay`: a slow network path.
async fn slow_proxy(target: String, delay: Duration) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = l.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut out) = TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn round_trip() {
    let a = start(cfg(1)).await;
    let b = start(cfg(2)).await;
    a.t.set_peer(2, b.addr.clone());

    assert_eq!(echo(&a, &b, 7, b"hi").await.unwrap(), Bytes::from("1/7:hi"));
    let err = bounded(
        "a failing call",
        a.t.call(2, 7, FAIL, Bytes::from("x"), LONG),
    )
    .await;
    assert_eq!(err, Err(CallError::Remote("no: x".into())));
    assert!(err.unwrap_err().maybe_delivered());
    let dropped = bounded(
        "a dropped responder",
        a.t.call(2, 7, DROP, Bytes::new(), LONG),
    )
    .await;
    assert_eq!(dropped, Err(CallError::Remote("dropped".into())));

    // B has no address for A, yet calls it over the connection A opened.
    assert_eq!(
        echo(&b, &a, 9, b"back").await.unwrap(),
        Bytes::from("2/9:back")
    );
    assert_eq!(a.t.connected_peers(), vec![2]);
    assert_eq!(b.t.connected_peers(), vec![1]);
    let (sa, sb) = (a.t.stats(), b.t.stats());
    assert_eq!((sa.connections_opened, sa.connections_accepted), (1, 0));
    assert_eq!((sb.connections_opened, sb.connections_accepted), (0, 1));
    assert_eq!((sa.connections_live, sb.connections_live), (1, 1));
    assert_eq!(sa.calls, 3);
    assert_eq!(sa.pending_calls, 0);
}

/// Bodies far larger than a socket buffer, mixed with small ones, arrive intact
/// (the writer's vectored, partial-write path and the reader's large frames).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_small_bodies_round_trip_together() {
    let a = start(cfg(1)).await;
    let b = start(cfg(2)).await;
    a.t.set_peer(2, b.addr.clone());
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..40usize {
        let len = if i % 4 == 0 { 3 << 20 } else { i * 100 };
        let body: Bytes = (0..len)
            .map(|j| (j * 31 + i) as u8)
            .collect::<Vec<u8>>()
            .into();
        let t = a.t.clone();
        calls.spawn(async move {
            let r = t.call(2, i as u64, ECHO, body.clone(), LONG).await;
            (i, body, r)
        });
    }
    while let Some(r) = bounded("large and small calls", calls.join_next()).await {
        let (i, body, r) = r.expect("call task");
        let r = r.unwrap();
        let prefix = format!("1/{i}:");
        assert_eq!(&r[..prefix.len()], prefix.as_bytes());
        assert!(
            r[prefix.len()..] == body[..],
            "body {i} of {} bytes came back changed",
            body.len()
        );
    }
    assert_eq!(a.t.stats().connections_opened, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_calls_over_many_groups_share_one_connection() {
    let a = start(cfg(1)).await;
    let b = start(cfg(2)).await;
    link(&a, &b);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..1000u64 {
        let t = a.t.clone();
        calls.spawn(async move {
            let body = Bytes::from(i.to_string());
            (i, t.call(2, i % 16, ECHO, body, LONG).await)
        });
    }
    let mut done = 0;
    while let Some(r) = bounded("1000 concurrent calls", calls.join_next()).await {
        let (i, r) = r.expect("call task");
        assert_eq!(r.unwrap(), Bytes::from(format!("1/{}:{i}", i % 16)));
        done += 1;
    }
    assert_eq!(done, 1000);
    let (sa, sb) = (a.t.stats(), b.t.stats());
    assert_eq!(sa.connections_opened + sa.connections_accepted, 1, "{sa:?}");
    assert_eq!(sb.connections_opened + sb.connections_accepted, 1, "{sb:?}");
    assert_eq!((sa.connections_live, sb.connections_live), (1, 1));
    assert_eq!(b.h.calls.load(Ordering::Relaxed), 1000);
    assert_eq!(sa.pending_calls, 0);
}

/// Both nodes call each other at the same moment, many times over, on fresh pairs:
/// every call succeeds and each pair ends with one connection, the same at both ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calling_each_other_at_once_yields_one_connection() {
    for round in 0..10 {
        let a = start(cfg(1)).await;
        let b = start(cfg(2)).await;
        link(&a, &b);
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..100u64 {
            for (t, to) in [(a.t.clone(), 2), (b.t.clone(), 1)] {
                calls.spawn(async move { t.call(to, i, ECHO, Bytes::new(), LONG).await });
            }
        }
        while let Some(r) = bounded("calls both ways", calls.join_next()).await {
            r.expect("call task")
                .unwrap_or_else(|e| panic!("round {round}: call failed: {e}"));
        }
        let what = format!("round {round}: one connection left on each side");
        wait_until(&what, || {
            a.t.stats().connections_live == 1 && b.t.stats().connections_live == 1
        })
        .await;
        let (la, ra) = a.t.connection_addrs(2).expect("A has a connection to B");
        let (lb, rb) = b.t.connection_addrs(1).expect("B has a connection to A");
        assert_eq!(
            (la, ra),
            (rb, lb),
            "round {round}: both ends use the same socket pair"
        );
    }
}

/// The lower node's dial is slow (through a delaying proxy), so the higher node's
/// dial arrives while it is in progress and is refused as a duplicate; the higher
/// node's call then runs on the lower node's connection.
#[tokio::test]
async fn dial_race_keeps_the_lower_ids_dial() {
    let a = start(cfg(1)).await;
    let b = start(cfg(2)).await;
    a.t.set_peer(
        2,
        slow_proxy(b.addr.clone(), Duration::from_millis(200)).await,
    );
    b.t.set_peer(1, a.addr.clone());

    let ta = a.t.clone();
    let from_a = tokio::spawn(async move { ta.call(2, 1, ECHO, Bytes::from("a"), LONG).await });
    wait_until("A to start dialing B", || {
        a.t.lock().peers.get(&2).is_some_and(|p| p.dial.is_some())
    })
    .await;
    let r = bounded(
        "B's call to A",
        b.t.call(1, 1, ECHO, Bytes::from("b"), LONG),
    )
    .await;
    assert_eq!(r.unwrap(), Bytes::from("2/1:b"));
    let r = bounded("A's call to B", from_a).await.unwrap();
    assert_eq!(r.unwrap(), Bytes::from("1/1:a"));

    assert!(b.t.stats().dial_races >= 1, "B's dial lost the race");
    assert!(a.t.stats().dial_races >= 1, "A refused B's dial");
    assert_eq!(a.t.stats().connections_live, 1);
    assert_eq!(b.t.stats().connections_live, 1);
    assert_eq!(b.t.stats().connections_accepted, 1, "B kept A's dial");
}

/// The higher node's dial is the slow one: the lower node's dial is accepted while
/// it is in progress, and the slow dial is refused when it finally arrives.
#[tokio::test]
async fn dial_race_refuses_the_higher_ids_late_dial() {
    let a = start(cfg(1)).await;
    let b = start(cfg(2)).await;
    a.t.set_peer(2, b.addr.clone());
    b.t.set_peer(
        1,
        slow_proxy(a.addr.clone(), Duration::from_millis(200)).await,
    );

    let tb = b.t.clone();
    let from_b = tokio::spawn(async move { tb.call(1, 1, ECHO, Bytes::from("b"), LONG).await });
    wait_until("B to start dialing A", || {
        b.t.lock().peers.get(&1).is_some_and(|p| p.dial.is_some())
    })
    .await;
    let r = bounded(
        "A's call to B",
        a.t.call(2, 1, ECHO, Bytes::from("a"), LONG),
    )
    .await;
    assert_eq!(r.unwrap(), Bytes::from("1/1:a"));
    let r = bounded("B's call to A", from_b).await.unwrap();
    assert_eq!(r.unwrap(), Bytes::from("2/1:b"));

    assert!(b.t.stats().dial_races >= 1, "B's slow dial was refused");
    assert_eq!(a.t.stats().connections_live, 1);
    assert_eq!(b.t.stats().connections_live, 1);
    let (la, ra) = a.t.connection_addrs(2).unwrap();
    let (lb, rb) = b.t.connection_addrs(1).unwrap();
    assert_eq!((la, ra), (rb, lb), "both ends use A's connection");
}

#[tokio::test]
async fn call_timeout_fires_and_forgets_the_pending_call() {
    let a = start(cfg(1)).await;
    let b = start(cfg(2)).await;
    a.t.set_peer(2, b.addr.clone());
    echo(&a, &b, 0, b"warm").await.unwrap();

    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..50 {
        let t = a.t.clone();
        calls.spawn(async move {
            t.call(2, i, HOLD, Bytes::new(), Duration::from_millis(100))
                .await
        });
    }
    while let Some(r) = bounded("calls that time out", calls.join_next()).await {
        let e = r.unwrap().unwrap_err();
        assert_eq!(e, CallError::Timeout);
        assert!(e.maybe_delivered());
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timeouts fired late"
    );
    let s = a.t.stats();
    assert_eq!(s.timeouts, 50);
    assert_eq!(s.pending_calls, 0, "timed-out calls left pending entries");
    // The connection is still good, and late answers to forgotten calls are ignored.
    b.h.held.lock().unwrap().clear();
    assert_eq!(
        echo(&a, &b, 0, b"after").await.unwrap(),
        Bytes::from("1/0:after")
    );
    assert_eq!(a.t.stats().pending_calls, 0);
    assert_eq!(a.t.stats().connections_opened, 1);
}

#[tokio::test]
async fn killed_peer_fails_pending_calls_promptly_then_is_unreachable() {
    let a = start(cfg(1)).await;
    let b = start(cfg(2)).await;
    a.t.set_peer(2, b.addr.clone());
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..5 {
        let t = a.t.clone();
        calls.spawn(async move {
            t.call(2, i, HOLD, Bytes::new(), Duration::from_secs(30))
                .await
        });
    }
    let held = b.h.clone();
    wait_until("B to hold 5 requests", || {
        held.held.lock().unwrap().len() == 5
    })
    .await;

    let killed = Instant::now();
    b.kill().await;
    while let Some(r) = bounded("pending calls to fail", calls.join_next()).await {
        assert_eq!(r.unwrap(), Err(CallError::Closed));
    }
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "pending calls took {:?} to fail",
        killed.elapsed()
    );
    assert_eq!(a.t.stats().pending_calls, 0);
    wait_until("A to drop the dead connection", || {
        a.t.connected_peers().is_empty()
    })
    .await;
    let r = bounded(
        "a call to the dead peer",
        a.t.call(2, 0, ECHO, Bytes::new(), LONG),
    )
    .await;
    match r {
        Err(e @ CallError::Unreachable(_)) => assert!(!e.maybe_delivered()),
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn restarted_peer_is_reached_again_after_backoff() {
    let a = start(TransportConfig {
        backoff_max: Duration::from_millis(400),
        ..cfg(1)
    })
    .await;
    let b = start(cfg(2)).await;
    a.t.set_peer(2, b.addr.clone());
    echo(&a, &b, 0, b"before").await.unwrap();
    let addr = b.addr.clone();
    b.kill().await;
    wait_until("A to see B's connection close", || {
        a.t.connected_peers().is_empty()
    })
    .await;
    for _ in 0..3 {
        let r = bounded(
            "calls to the dead peer",
            a.t.call(2, 0, ECHO, Bytes::new(), LONG),
        )
        .await;
        assert!(matches!(r, Err(CallError::Unreachable(_))), "{r:?}");
    }

    let b = start_at(cfg(2), &addr).await;
    let reached = bounded("a call to the restarted peer", async {
        loop {
            match a.t.call(2, 0, ECHO, Bytes::from("again"), LONG).await {
                Ok(body) => return body,
                Err(CallError::Unreachable(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("unexpected error while B restarts: {e}"),
            }
        }
    })
    .await;
    assert_eq!(reached, Bytes::from("1/0:again"));
    assert_eq!(b.t.stats().connections_accepted, 1);
}

#[tokio::test]
async fn backoff_fails_fast_without_dialing() {
    let a = start(TransportConfig {
        backoff_min: Duration::from_millis(300),
        backoff_max: Duration::from_secs(5),
        ..cfg(1)
    })
    .await;
    a.t.set_peer(2, dead_addr().await);

    let r = bounded(
        "a call to a dead port",
        a.t.call(2, 0, ECHO, Bytes::new(), LONG),
    )
    .await;
    assert!(matches!(r, Err(CallError::Unreachable(_))), "{r:?}");
    assert_eq!(a.t.stats().connect_failures, 1);

    let fast = Instant::now();
    for _ in 0..100 {
        let r = bounded(
            "a call in backoff",
            a.t.call(2, 0, ECHO, Bytes::new(), LONG),
        )
        .await;
        match r {
            Err(CallError::Unreachable(e)) => assert!(e.contains("backoff"), "{e}"),
            other => panic!("expected Unreachable in backoff, got {other:?}"),
        }
    }
    assert!(
        fast.elapsed() < Duration::from_millis(200),
        "backoff calls were slow"
    );
    assert_eq!(a.t.stats().connect_failures, 1, "no dial during backoff");

    // After the backoff a call dials again, fails, and the next backoff is longer.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let r = bounded(
        "a call after backoff",
        a.t.call(2, 0, ECHO, Bytes::new(), LONG),
    )
    .await;
    assert!(matches!(r, Err(CallError::Unreachable(_))), "{r:?}");
    assert_eq!(a.t.stats().connect_failures, 2);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let r = bounded(
        "a call in doubled backoff",
        a.t.call(2, 0, ECHO, Bytes::new(), LONG),
    )
    .await;
    assert!(
        matches!(&r, Err(CallError::Unreachable(e)) if e.contains("backoff")),
        "{r:?}"
    );
    assert_eq!(a.t.stats().connect_failures, 2);
}

#[tokio::test]
async fn cluster_secret_is_checked_without_being_sent() {
    let secret = |s: Option<&str>, id| TransportConfig {
        secret: s.map(str::to_string),
        ..cfg(id)
    };
    let server = start(secret(Some("sesame"), 1)).await;

    let wrong = start(secret(Some("open"), 2)).await;
    wrong.t.set_peer(1, server.addr.clone());
    let r = bounded(
        "a wrong-secret call",
        wrong.t.call(1, 0, ECHO, Bytes::new(), LONG),
    )
    .await;
    match r {
        Err(CallError::Refused(m)) => assert!(m.contains("secret mismatch"), "{m}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(wrong.t.stats().refused_by_peer, 1);
    assert_eq!(server.t.stats().refused, 1);

    let none = start(secret(None, 3)).await;
    none.t.set_peer(1, server.addr.clone());
    let r = bounded(
        "a no-secret call",
        none.t.call(1, 0, ECHO, Bytes::new(), LONG),
    )
    .await;
    match r {
        Err(CallError::Refused(m)) => assert!(m.contains("requires the cluster secret"), "{m}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(server.t.stats().refused, 2);

    let right = start(secret(Some("sesame"), 4)).await;
    right.t.set_peer(1, server.addr.clone());
    assert_eq!(
        echo(&right, &server, 0, b"ok").await.unwrap(),
        Bytes::from("4/0:ok")
    );
    assert!(
        server.h.calls.load(Ordering::Relaxed) == 1,
        "only the right peer got through"
    );

    // A server without a secret accepts anyone, with or without one.
    let open = start(secret(None, 5)).await;
    right.t.set_peer(5, open.addr.clone());
    assert_eq!(
        echo(&right, &open, 0, b"hi").await.unwrap(),
        Bytes::from("4/0:hi")
    );
}

/// Reads one frame with a raw socket (a peer built from another version).
async fn read_raw(s: &mut TcpStream, buf: &mut BytesMut) -> Frame {
    bounded("a frame from the server", async {
        loop {
            if let Some(f) = decode_frame(buf, 1 << 16).expect("valid frame") {
                return f;
            }
            assert!(
                s.read_buf(buf).await.expect("read") > 0,
                "server closed early"
            );
        }
    })
    .await
}

#[tokio::test]
async fn unsupported_version_is_refused_naming_both_versions() {
    let b = start(cfg(2)).await;
    let mut s = TcpStream::connect(&b.addr).await.unwrap();
    let mut buf = BytesMut::new();
    let Frame::Challenge(c) = read_raw(&mut s, &mut buf).await else {
        panic!("expected a challenge first")
    };
    assert_eq!((c.version, c.node_id), (PEER_PROTOCOL_VERSION, 2));
    let hello = Hello {
        version: 2,
        node_id: 9,
        incarnation: 1,
        one_off: false,
        cluster_id: String::new(),
        auth: None,
    };
    s.write_all(&Frame::Hello(hello).encode()).await.unwrap();
    match read_raw(&mut s, &mut buf).await {
        Frame::Refused { code, reason, .. } => {
            assert_eq!(code, RefuseCode::Version);
            assert!(
                reason.contains("version 2") && reason.contains("version 1"),
                "{reason}"
            );
        }
        f => panic!("expected a refusal, got {f:?}"),
    }
    assert_eq!(b.t.stats().refused, 1);
    assert_eq!(b.t.stats().connections_live, 0);
}

#[tokio::test]
async fn cluster_id_mismatch_is_refused() {
    let with_cluster = |c: &str, id| TransportConfig {
        cluster_id: c.into(),
        ..cfg(id)
    };
    let a = start(with_cluster("blue", 1)).await;
    let b = start(with_cluster("green", 2)).await;
    a.t.set_peer(2, b.addr.clone());
    let r = bounded(
        "a cross-cluster call",
        a.t.call(2, 0, ECHO, Bytes::new(), LONG),
    )
    .await;
    assert!(
        matches!(&r, Err(CallError::Refused(m)) if m.contains("cluster id")),
        "{r:?}"
    );
}

#[tokio::test]
async fn oversized_frame_closes_only_that_connection() {
    let b = start(TransportConfig {
        max_frame: 1024,
        ..cfg(2)
    })
    .await;
    let a = start(cfg(1)).await;
    let c = start(cfg(3)).await;
    a.t.set_peer(2, b.addr.clone());
    c.t.set_peer(2, b.addr.clone());
    echo(&a, &b, 0, b"a").await.unwrap();
    echo(&c, &b, 0, b"c").await.unwrap();

    let big = Bytes::from(vec![b'x'; 4096]);
    let r = bounded("an oversized call", a.t.call(2, 0, ECHO, big.clone(), LONG)).await;
    assert_eq!(r, Err(CallError::Closed));
    wait_until("B to drop A's connection", || {
        b.t.connected_peers() == vec![3]
    })
    .await;
    // C's connection was not touched.
    assert_eq!(
        echo(&c, &b, 0, b"still").await.unwrap(),
        Bytes::from("3/0:still")
    );
    assert_eq!(c.t.stats().connections_opened, 1);
    // A reconnects for normal-sized calls.
    assert_eq!(
        echo(&a, &b, 0, b"small").await.unwrap(),
        Bytes::from("1/0:small")
    );
    assert_eq!(a.t.stats().connections_opened, 2);

    // A node does not send what its own limit forbids: refused before sending.
    let r = bounded("a call over B's own limit", b.t.call(1, 0, ECHO, big, LONG)).await;
    assert!(
        matches!(&r, Err(CallError::Unreachable(m)) if m.contains("max_frame")),
        "{r:?}"
    );
    assert_eq!(a.h.calls.load(Ordering::Relaxed), 0);
}

/// 1000 requests are queued in order without waiting for answers; the handler
/// must see them in exactly that order. The runtime has two worker threads and the
/// answers come back out of order, so a transport that dispatched requests on
/// separate tasks, or matched answers by position, would fail here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_order_is_arrival_order() {
    let a = start(cfg(1)).await;
    let b = start(cfg(2)).await;
    a.t.set_peer(2, b.addr.clone());
    echo(&a, &b, 0, b"warm").await.unwrap();

    let calls: Vec<_> = (0..1000u64)
        .map(|seq| {
            let body = Bytes::copy_from_slice(&seq.to_le_bytes());
            a.t.call(2, seq % 4, RECORD, body, LONG)
        })
        .collect();
    let answers = bounded("1000 in-order calls", join_in_order(calls)).await;
    for (seq, r) in answers.into_iter().enumerate() {
        assert_eq!(
            r.unwrap(),
            Bytes::copy_from_slice(&(seq as u64).to_le_bytes())
        );
    }
    let recorded = b.h.recorded.lock().unwrap().clone();
    assert_eq!(
        recorded,
        (0..1000).collect::<Vec<u64>>(),
        "handler saw requests out of order"
    );
}

/// A peer that completes the handshake and then never sends another byte (no pong):
/// the connection is closed after 3x keepalive and the pending call fails.
#[tokio::test]
async fn silent_peer_is_dropped_after_three_keepalives() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let mute = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let challenge = Challenge {
            version: 1,
            node_id: 2,
            incarnation: 1,
            nonce: [0; NONCE_LEN],
        };
        s.write_all(&Frame::Challenge(challenge).encode())
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        let Frame::Hello(_) = read_raw(&mut s, &mut buf).await else {
            panic!("expected a hello")
        };
        s.write_all(&Frame::Welcome { node_id: 2 }.encode())
            .await
            .unwrap();
        // Read (pings, the request) but never answer, until the client closes.
        let mut sink = vec![0u8; 4096];
        while s.read(&mut sink).await.map(|n| n > 0).unwrap_or(false) {}
    });
    let a = start(TransportConfig {
        keepalive: Duration::from_millis(100),
        ..cfg(1)
    })
    .await;
    a.t.set_peer(2, addr);
    let started = Instant::now();
    let r = bounded(
        "a call to a mute peer",
        a.t.call(2, 0, ECHO, Bytes::new(), LONG),
    )
    .await;
    assert_eq!(r, Err(CallError::Closed));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "closed after {took:?}, expected about 3x keepalive"
    );
    bounded("the mute peer to see the close", mute)
        .await
        .unwrap();
}

#[tokio::test]
async fn call_addr_uses_its_own_connection_and_learns_the_node_id() {
    let a = start(cfg(1)).await;
    let b = start(cfg(2)).await;
    a.t.set_peer(2, b.addr.clone());
    echo(&a, &b, 0, b"main").await.unwrap();
    let main = a.t.connection_addrs(2).unwrap();

    let r = bounded(
        "a one-off call",
        a.t.call_addr(&b.addr, 5, ECHO, Bytes::from("join"), LONG),
    )
    .await;
    assert_eq!(r.unwrap(), (2, Bytes::from("1/5:join")));
    wait_until("the one-off connection to close on both sides", || {
        a.t.stats().connections_live == 1 && b.t.stats().connections_live == 1
    })
    .await;
    assert_eq!(
        a.t.connection_addrs(2),
        Some(main),
        "the main connection is untouched"
    );
    assert_eq!(b.t.connected_peers(), vec![1]);

    let r = bounded(
        "a one-off call to a dead port",
        a.t.call_addr(&dead_addr().await, 0, ECHO, Bytes::new(), LONG),
    )
    .await;
    assert!(matches!(r, Err(CallError::Unreachable(_))), "{r:?}");
}

#[tokio::test]
async fn changing_a_peers_address_drops_the_old_connection() {
    let a = start(cfg(1)).await;
    let b = start(cfg(2)).await;
    a.t.set_peer(2, b.addr.clone());
    echo(&a, &b, 0, b"old").await.unwrap();
    // Node 2 "moves": a new process at a new address.
    let b2 = start(cfg(2)).await;
    a.t.set_peer(2, b2.addr.clone());
    assert_eq!(
        echo(&a, &b2, 0, b"new").await.unwrap(),
        Bytes::from("1/0:new")
    );
    assert_eq!(b2.h.calls.load(Ordering::Relaxed), 1);
    assert_eq!(b.h.calls.load(Ordering::Relaxed), 1);
    wait_until("the old process to see its connection close", || {
        b.t.stats().connections_live == 0
    })
    .await;
    // An address that turns out to be another node is not used.
    a.t.set_peer(3, b.addr.clone());
    let r = bounded(
        "a call to the wrong node",
        a.t.call(3, 0, ECHO, Bytes::new(), LONG),
    )
    .await;
    assert!(
        matches!(&r, Err(CallError::Unreachable(m)) if m.contains("not node 3")),
        "{r:?}"
    );
}

#[tokio::test]
async fn shutdown_fails_pending_calls_and_later_calls() {
    let a = start(cfg(1)).await;
    let b = start(cfg(2)).await;
    a.t.set_peer(2, b.addr.clone());
    let t = a.t.clone();
    let pending = tokio::spawn(async move { t.call(2, 0, HOLD, Bytes::new(), LONG).await });
    let held = b.h.clone();
    wait_until("B to hold the request", || {
        held.held.lock().unwrap().len() == 1
    })
    .await;
    a.t.shutdown();
    assert_eq!(
        bounded("the pending call", pending).await.unwrap(),
        Err(CallError::Closed)
    );
    let r = bounded(
        "a call after shutdown",
        a.t.call(2, 0, ECHO, Bytes::new(), LONG),
    )
    .await;
    assert!(matches!(r, Err(CallError::Unreachable(_))), "{r:?}");
    assert_eq!(a.t.stats().connections_live, 0);
    bounded("A's accept loop to stop", a.server).await.unwrap();
}

/// A panicking handler takes down its connection (calls on it fail, they do not
/// hang) and the next call reconnects.
#[tokio::test]
async fn panicking_handler_closes_the_connection_not_the_node() {
    let a = start(cfg(1)).await;
    let b = start(cfg(2)).await;
    a.t.set_peer(2, b.addr.clone());
    let r = bounded(
        "a call whose handler panics",
        a.t.call(2, 0, PANIC, Bytes::new(), LONG),
    )
    .await;
    assert_eq!(r, Err(CallError::Closed));
    assert_eq!(
        echo(&a, &b, 0, b"again").await.unwrap(),
        Bytes::from("1/0:again")
    );
    assert_eq!(a.t.stats().connections_opened, 2);
}
