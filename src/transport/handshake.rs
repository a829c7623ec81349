//! The socket side of the handshake (see `proto::peer` for the frames). Deciding
//! whether to accept a peer needs the transport's state and lives in `mod.rs`.

use bytes::BytesMut;
use proto::peer::{
    auth_proof, decode_frame, Challenge, Frame, Hello, RefuseCode, NONCE_LEN, PEER_PROTOCOL_VERSION,
};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Frames before authentication are small; a bigger one is an attack or a bug, and
/// must not make us allocate `max_frame` bytes for an unknown peer.
const HANDSHAKE_MAX_FRAME: usize = 64 * 1024;

/// What the dialing side says about itself.
pub(super) struct Me<'a> {
    pub node_id: u64,
    pub incarnation: u64,
    pub cluster_id: &'a str,
    pub secret: Option<&'a str>,
}

/// A connection whose handshake succeeded.
pub(super) struct Established {
    pub stream: TcpStream,
    /// Bytes read past the last handshake frame: the start of the peer's traffic.
    pub leftover: BytesMut,
    pub peer: u64,
    pub peer_incarnation: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

pub(super) enum DialError {
    /// No connection, a broken handshake, or the address is another node.
    Failed(String),
    Refused {
        code: RefuseCode,
        reason: String,
    },
}

/// Connects to `addr` and runs the client side of the handshake. `expect` is the
/// node id the address book says lives there, if known.
pub(super) async fn dial(
    addr: &str,
    me: &Me<'_>,
    expect: Option<u64>,
    one_off: bool,
) -> Result<Established, DialError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| DialError::Failed(format!("connect to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let fail = |e: String| DialError::Failed(format!("handshake with {addr}: {e}"));
    let mut buf = BytesMut::with_capacity(256);
    let challenge = match read_frame(&mut stream, &mut buf).await.map_err(fail)? {
        Frame::Challenge(c) => c,
        f => return Err(fail(format!("expected a challenge, got {}", name(&f)))),
    };
    if let Some(expect) = expect {
        if challenge.node_id != expect {
            return Err(fail(format!(
                "the address is node {}, not node {expect}",
                challenge.node_id
            )));
        }
    }
    let hello = Hello {
        version: PEER_PROTOCOL_VERSION,
        node_id: me.node_id,
        incarnation: me.incarnation,
        one_off,
        cluster_id: me.cluster_id.to_string(),
        auth: me
            .secret
            .map(|s| auth_proof(s.as_bytes(), &challenge.nonce, me.node_id)),
    };
    stream
        .write_all(&Frame::Hello(hello).encode())
        .await
        .map_err(|e| fail(e.to_string()))?;
    match read_frame(&mut stream, &mut buf).await.map_err(fail)? {
        Frame::Welcome { node_id } if node_id == challenge.node_id => {}
        Frame::Welcome { node_id } => {
            return Err(fail(format!(
                "welcomed by node {node_id} after a challenge from node {}",
                challenge.node_id
            )))
        }
        Frame::Refused { code, reason, .. } => return Err(DialError::Refused { code, reason }),
        f => {
            return Err(fail(format!(
                "expected welcome or refusal, got {}",
                name(&f)
            )))
        }
    }
    let (local, remote) = addrs(&stream).map_err(fail)?;
    Ok(Established {
        stream,
        leftover: buf,
        peer: challenge.node_id,
        peer_incarnation: challenge.incarnation,
        local,
        remote,
    })
}

/// Server side, first half: send our challenge and read the client's hello.
pub(super) async fn greet(
    stream: &mut TcpStream,
    challenge: Challenge,
) -> Result<(Hello, BytesMut), String> {
    stream
        .write_all(&Frame::Challenge(challenge).encode())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(256);
    match read_frame(stream, &mut buf).await? {
        Frame::Hello(h) => Ok((h, buf)),
        f => Err(format!("expected a hello, got {}", name(&f))),
    }
}

/// Server side: tell the client why it is refused, then close.
pub(super) async fn refuse(mut stream: TcpStream, node_id: u64, code: RefuseCode, reason: String) {
    let frame = Frame::Refused {
        node_id,
        code,
        reason,
    };
    // The client may already be gone; the refusal is logged on this side anyway.
    let _ = stream.write_all(&frame.encode()).await;
    let _ = stream.shutdown().await;
}

pub(super) fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).expect("the OS random source is available");
    n
}

pub(super) fn addrs(stream: &TcpStream) -> Result<(SocketAddr, SocketAddr), String> {
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    let remote = stream.peer_addr().map_err(|e| e.to_string())?;
    Ok((local, remote))
}

async fn read_frame(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<Frame, String> {
    loop {
        match decode_frame(buf, HANDSHAKE_MAX_FRAME) {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {}
            Err(e) => return Err(format!("bad handshake frame: {e}")),
        }
        if buf.capacity() - buf.len() < 256 {
            buf.reserve(4096);
        }
        match stream.read_buf(buf).await {
            Ok(0) => return Err("connection closed during the handshake".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn name(f: &Frame) -> &'static str {
    match f {
        Frame::Challenge(_) => "a challenge",
        Frame::Hello(_) => "a hello",
        Frame::Welcome { .. } => "a welcome",
        Frame::Refused { .. } => "a refusal",
        Frame::Request { .. } => "a request",
        Frame::Response { .. } => "a response",
        Frame::Ping => "a ping",
        Frame::Pong => "a pong",
    }
}
