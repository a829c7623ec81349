//! The peer protocol: frames exchanged between two shardis nodes over their one TCP
//! connection (see `src/transport` for the behaviour built on them).
//!
//! Every frame is `u32 LE length | tag byte | payload`, where the length counts the
//! tag and the payload. All integers are little endian.
//!
//! A connection opens with a handshake:
//! 1. server → client: [`Challenge`] (its version, node id, incarnation, a fresh nonce);
//! 2. client → server: [`Hello`] (its version, node id, incarnation, flags, cluster id
//!    and, when it holds the cluster secret, `HMAC-SHA256(secret, nonce || node id LE)`);
//! 3. server → client: `Welcome` or `Refused` (a [`RefuseCode`] and a reason text).
//!
//! Then either side sends `Request`s and answers with `Response`s matched by id;
//! `Ping`/`Pong` keep an idle connection checked.
//!
//! Compatibility rules (this is a contract between nodes of different versions):
//! - tags and the layouts below are never changed, only new tags added;
//! - the layouts of the handshake frames (`Challenge`, `Hello`, `Welcome`, `Refused`)
//!   are frozen prefixes: a later version may append fields and readers ignore
//!   trailing bytes there, so a node can always read a newer peer's version and refuse
//!   it with a text that names both versions;
//! - `Request` and `Response` bodies run to the end of the frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// The protocol version this build speaks (sent in `Challenge` and `Hello`).
pub const PEER_PROTOCOL_VERSION: u16 = 1;

/// Default limit on one frame's length (tag + payload).
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

/// Bytes of the handshake nonce and of the HMAC-SHA256 proof.
pub const NONCE_LEN: usize = 32;

const TAG_CHALLENGE: u8 = 1;
const TAG_HELLO: u8 = 2;
const TAG_WELCOME: u8 = 3;
const TAG_REFUSED: u8 = 4;
const TAG_REQUEST: u8 = 5;
const TAG_RESPONSE: u8 = 6;
const TAG_PING: u8 = 7;
const TAG_PONG: u8 = 8;

const HELLO_ONE_OFF: u8 = 1;
const HELLO_HAS_AUTH: u8 = 2;

/// Request header after the length prefix: tag, id, group, kind.
const REQUEST_HEAD: usize = 1 + 8 + 8 + 2;
/// Response header after the length prefix: tag, id, status.
const RESPONSE_HEAD: usize = 1 + 8 + 1;

/// First frame on a connection, sent by the accepting side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The highest protocol version the server speaks (informational).
    pub version: u16,
    pub node_id: u64,
    /// Random per process start: tells a restarted peer from an old connection.
    pub incarnation: u64,
    pub nonce: [u8; NONCE_LEN],
}

/// The dialing side's answer to a [`Challenge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The protocol version the client wants to speak on this connection.
    pub version: u16,
    pub node_id: u64,
    pub incarnation: u64,
    /// A short-lived connection for one call (bootstrap/join): the server serves it
    /// but does not take it as the client's connection.
    pub one_off: bool,
    /// Empty: not checked. Otherwise both sides' non-empty ids must match.
    pub cluster_id: String,
    /// `HMAC-SHA256(secret, nonce || node_id LE)`; see [`auth_proof`].
    pub auth: Option<[u8; NONCE_LEN]>,
}

/// Why a server refused a handshake. Unknown codes decode as `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseCode {
    Other,
    /// The client's protocol version is not supported.
    Version,
    /// Missing or wrong cluster secret.
    Auth,
    /// Different cluster id.
    Cluster,
    /// Both nodes dialed each other at once (or an older connection is kept): the
    /// client should use the connection that the server keeps, not retry at once.
    Duplicate,
    /// The client claims the server's own node id.
    SameNode,
}

impl RefuseCode {
    fn to_wire(self) -> u16 {
        match self {
            RefuseCode::Other => 0,
            RefuseCode::Version => 1,
            RefuseCode::Auth => 2,
            RefuseCode::Cluster => 3,
            RefuseCode::Duplicate => 4,
            RefuseCode::SameNode => 5,
        }
    }

    fn from_wire(v: u16) -> RefuseCode {
        match v {
            1 => RefuseCode::Version,
            2 => RefuseCode::Auth,
            3 => RefuseCode::Cluster,
            4 => RefuseCode::Duplicate,
            5 => RefuseCode::SameNode,
            _ => RefuseCode::Other,
        }
    }
}

/// One frame of the peer protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Challenge(Challenge),
    Hello(Hello),
    Welcome {
        node_id: u64,
    },
    Refused {
        node_id: u64,
        code: RefuseCode,
        reason: String,
    },
    Request {
        id: u64,
        group: u64,
        kind: u16,
        body: Bytes,
    },
    Response {
        id: u64,
        result: Result<Bytes, String>,
    },
    Ping,
    Pong,
}

/// Why bytes could not be read as a frame. Any of these closes the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The length prefix announces more than the receiver accepts.
    TooLarge {
        len: usize,
        max: usize,
    },
    /// A zero length prefix: no tag.
    Empty,
    UnknownTag(u8),
    /// The frame ended inside the named field.
    Truncated(&'static str),
    /// Bytes after the last field of a frame that does not allow them.
    Trailing {
        tag: u8,
        extra: usize,
    },
    BadStatus(u8),
    BadUtf8(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max}")
            }
            DecodeError::Empty => write!(f, "empty frame"),
            DecodeError::UnknownTag(t) => write!(f, "unknown frame tag {t}"),
            DecodeError::Truncated(field) => write!(f, "frame truncated in {field}"),
            DecodeError::Trailing { tag, extra } => {
                write!(f, "{extra} unexpected bytes after frame with tag {tag}")
            }
            DecodeError::BadStatus(s) => write!(f, "unknown response status {s}"),
            DecodeError::BadUtf8(field) => write!(f, "{field} is not UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl Frame {
    /// The frame's wire length, prefix included.
    pub fn encoded_len(&self) -> usize {
        4 + self.inner_len()
    }

    /// Tag and payload length: the value of the length prefix.
    fn inner_len(&self) -> usize {
        1 + match self {
            Frame::Challenge(_) => 2 + 8 + 8 + NONCE_LEN,
            Frame::Hello(h) => {
                2 + 8 + 8 + 1 + 2 + h.cluster_id.len() + h.auth.map_or(0, |a| a.len())
            }
            Frame::Welcome { .. } => 8,
            Frame::Refused { reason, .. } => 8 + 2 + 4 + reason.len(),
            Frame::Request { body, .. } => REQUEST_HEAD - 1 + body.len(),
            Frame::Response { result, .. } => {
                RESPONSE_HEAD - 1
                    + match result {
                        Ok(b) => b.len(),
                        Err(e) => e.len(),
                    }
            }
            Frame::Ping | Frame::Pong => 0,
        }
    }

    /// Encodes the frame as a head and a body to be written after it, so a large
    /// request or response body goes to the socket without being copied. The body is
    /// empty for frames that have none.
    pub fn encode_parts(&self) -> (BytesMut, Bytes) {
        let inner = self.inner_len();
        let head_cap = match self {
            Frame::Request { .. } => 4 + REQUEST_HEAD,
            Frame::Response { result: Ok(_), .. } => 4 + RESPONSE_HEAD,
            _ => 4 + inner,
        };
        let mut out = BytesMut::with_capacity(head_cap);
        // A frame over 4 GiB cannot be sent; callers bound frames by max_frame first.
        out.put_u32_le(u32::try_from(inner).unwrap_or(u32::MAX));
        let body = match self {
            Frame::Challenge(c) => {
                out.put_u8(TAG_CHALLENGE);
                out.put_u16_le(c.version);
                out.put_u64_le(c.node_id);
                out.put_u64_le(c.incarnation);
                out.put_slice(&c.nonce);
                Bytes::new()
            }
            Frame::Hello(h) => {
                out.put_u8(TAG_HELLO);
                out.put_u16_le(h.version);
                out.put_u64_le(h.node_id);
                out.put_u64_le(h.incarnation);
                let mut flags = 0;
                if h.one_off {
                    flags |= HELLO_ONE_OFF;
                }
                if h.auth.is_some() {
                    flags |= HELLO_HAS_AUTH;
                }
                out.put_u8(flags);
                put_str16(&mut out, &h.cluster_id);
                if let Some(a) = &h.auth {
                    out.put_slice(a);
                }
                Bytes::new()
            }
            Frame::Welcome { node_id } => {
                out.put_u8(TAG_WELCOME);
                out.put_u64_le(*node_id);
                Bytes::new()
            }
            Frame::Refused {
                node_id,
                code,
                reason,
            } => {
                out.put_u8(TAG_REFUSED);
                out.put_u64_le(*node_id);
                out.put_u16_le(code.to_wire());
                out.put_u32_le(reason.len() as u32);
                out.put_slice(reason.as_bytes());
                Bytes::new()
            }
            Frame::Request {
                id,
                group,
                kind,
                body,
            } => {
                out.put_u8(TAG_REQUEST);
                out.put_u64_le(*id);
                out.put_u64_le(*group);
                out.put_u16_le(*kind);
                body.clone()
            }
            Frame::Response { id, result } => {
                out.put_u8(TAG_RESPONSE);
                out.put_u64_le(*id);
                match result {
                    Ok(b) => {
                        out.put_u8(0);
                        b.clone()
                    }
                    Err(e) => {
                        out.put_u8(1);
                        out.put_slice(e.as_bytes());
                        Bytes::new()
                    }
                }
            }
            Frame::Ping => {
                out.put_u8(TAG_PING);
                Bytes::new()
            }
            Frame::Pong => {
                out.put_u8(TAG_PONG);
                Bytes::new()
            }
        };
        (out, body)
    }

    /// The whole frame in one buffer (copies the body; for handshakes and tests).
    pub fn encode(&self) -> Vec<u8> {
        let (head, body) = self.encode_parts();
        let mut v = Vec::with_capacity(head.len() + body.len());
        v.extend_from_slice(&head);
        v.extend_from_slice(&body);
        v
    }

    /// Decodes one frame from its tag and payload (the bytes after the length
    /// prefix). Bodies are slices of `frame`, not copies.
    pub fn decode(mut frame: Bytes) -> Result<Frame, DecodeError> {
        if frame.is_empty() {
            return Err(DecodeError::Empty);
        }
        let tag = frame.get_u8();
        let f = &mut frame;
        let out = match tag {
            TAG_CHALLENGE => Frame::Challenge(Challenge {
                version: take_u16(f, "challenge version")?,
                node_id: take_u64(f, "challenge node id")?,
                incarnation: take_u64(f, "challenge incarnation")?,
                nonce: take_array(f, "challenge nonce")?,
            }),
            TAG_HELLO => {
                let version = take_u16(f, "hello version")?;
                let node_id = take_u64(f, "hello node id")?;
                let incarnation = take_u64(f, "hello incarnation")?;
                let flags = take_u8(f, "hello flags")?;
                let cluster_id = take_str16(f, "hello cluster id")?;
                let auth = if flags & HELLO_HAS_AUTH != 0 {
                    Some(take_array(f, "hello auth")?)
                } else {
                    None
                };
                Frame::Hello(Hello {
                    version,
                    node_id,
                    incarnation,
                    one_off: flags & HELLO_ONE_OFF != 0,
                    cluster_id,
                    auth,
                })
            }
            TAG_WELCOME => Frame::Welcome {
                node_id: take_u64(f, "welcome node id")?,
            },
            TAG_REFUSED => {
                let node_id = take_u64(f, "refusal node id")?;
                let code = RefuseCode::from_wire(take_u16(f, "refusal code")?);
                let len = take_u32(f, "refusal reason length")? as usize;
                let reason = take_utf8(f, len, "refusal reason")?;
                Frame::Refused {
                    node_id,
                    code,
                    reason,
                }
            }
            TAG_REQUEST => Frame::Request {
                id: take_u64(f, "request id")?,
                group: take_u64(f, "request group")?,
                kind: take_u16(f, "request kind")?,
                body: std::mem::take(f),
            },
            TAG_RESPONSE => {
                let id = take_u64(f, "response id")?;
                let result = match take_u8(f, "response status")? {
                    0 => Ok(std::mem::take(f)),
                    1 => {
                        let len = f.len();
                        Err(take_utf8(f, len, "response error")?)
                    }
                    s => return Err(DecodeError::BadStatus(s)),
                };
                Frame::Response { id, result }
            }
            TAG_PING => Frame::Ping,
            TAG_PONG => Frame::Pong,
            t => return Err(DecodeError::UnknownTag(t)),
        };
        let handshake = matches!(tag, TAG_CHALLENGE | TAG_HELLO | TAG_WELCOME | TAG_REFUSED);
        if !handshake && !frame.is_empty() {
            return Err(DecodeError::Trailing {
                tag,
                extra: frame.len(),
            });
        }
        Ok(out)
    }
}

/// Takes one whole frame off the front of `buf`, if it holds one.
///
/// `Ok(None)` means "incomplete, read more"; in that case room for the rest of the
/// frame is reserved, but only once its length is known to be within `max_frame`, so
/// a hostile length never causes a large allocation.
pub fn decode_frame(buf: &mut BytesMut, max_frame: usize) -> Result<Option<Frame>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max_frame {
        return Err(DecodeError::TooLarge {
            len,
            max: max_frame,
        });
    }
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Frame::decode(buf.split_to(len).freeze()).map(Some)
}

/// Wire length of a request frame carrying `body_len` bytes (prefix excluded), to
/// check against the receiver's `max_frame` before sending.
pub fn request_frame_len(body_len: usize) -> usize {
    REQUEST_HEAD + body_len
}

/// Wire length of a response frame (prefix excluded).
pub fn response_frame_len(result: &Result<Bytes, String>) -> usize {
    RESPONSE_HEAD
        + match result {
            Ok(b) => b.len(),
            Err(e) => e.len(),
        }
}

/// The client's proof that it knows the cluster secret:
/// `HMAC-SHA256(secret, nonce || node_id as u64 LE)`.
pub fn auth_proof(secret: &[u8], nonce: &[u8; NONCE_LEN], node_id: u64) -> [u8; NONCE_LEN] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(nonce);
    mac.update(&node_id.to_le_bytes());
    mac.finalize().into_bytes().into()
}

/// Checks a proof in constant time.
pub fn verify_auth(secret: &[u8], nonce: &[u8; NONCE_LEN], node_id: u64, proof: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(nonce);
    mac.update(&node_id.to_le_bytes());
    mac.verify_slice(proof).is_ok()
}

fn put_str16(out: &mut BytesMut, s: &str) {
    // Cluster ids are short; a longer one is cut at a character boundary.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16_le(end as u16);
    out.put_slice(&s.as_bytes()[..end]);
}

fn take_u8(f: &mut Bytes, field: &'static str) -> Result<u8, DecodeError> {
    f.try_get_u8().map_err(|_| DecodeError::Truncated(field))
}

fn take_u16(f: &mut Bytes, field: &'static str) -> Result<u16, DecodeError> {
    f.try_get_u16_le()
        .map_err(|_| DecodeError::Truncated(field))
}

fn take_u32(f: &mut Bytes, field: &'static str) -> Result<u32, DecodeError> {
    f.try_get_u32_le()
        .map_err(|_| DecodeError::Truncated(field))
}

fn take_u64(f: &mut Bytes, field: &'static str) -> Result<u64, DecodeError> {
    f.try_get_u64_le()
        .map_err(|_| DecodeError::Truncated(field))
}

fn take_array(f: &mut Bytes, field: &'static str) -> Result<[u8; NONCE_LEN], DecodeError> {
    if f.len() < NONCE_LEN {
        return Err(DecodeError::Truncated(field));
    }
    let mut a = [0u8; NONCE_LEN];
    f.copy_to_slice(&mut a);
    Ok(a)
}

fn take_utf8(f: &mut Bytes, len: usize, field: &'static str) -> Result<String, DecodeError> {
    if f.len() < len {
        return Err(DecodeError::Truncated(field));
    }
    let b = f.split_to(len);
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::BadUtf8(field))
}

fn take_str16(f: &mut Bytes, field: &'static str) -> Result<String, DecodeError> {
    let len = take_u16(f, field)? as usize;
    take_utf8(f, len, field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(f: &Frame) -> Frame {
        let mut buf = BytesMut::from(&f.encode()[..]);
        let out = decode_frame(&mut buf, DEFAULT_MAX_FRAME)
            .expect("decodes")
            .expect("complete");
        assert!(buf.is_empty(), "one frame consumes exactly its bytes");
        out
    }

    fn samples() -> Vec<Frame> {
        vec![
            Frame::Challenge(Challenge {
                version: 1,
                node_id: 2,
                incarnation: 3,
                nonce: [4; NONCE_LEN],
            }),
            Frame::Hello(Hello {
                version: 1,
                node_id: 5,
                incarnation: 6,
                one_off: true,
                cluster_id: "c1".into(),
                auth: Some([7; NONCE_LEN]),
            }),
            Frame::Hello(Hello {
                version: 1,
                node_id: 5,
                incarnation: 6,
                one_off: false,
                cluster_id: String::new(),
                auth: None,
            }),
            Frame::Welcome { node_id: 9 },
            Frame::Refused {
                node_id: 9,
                code: RefuseCode::Auth,
                reason: "no".into(),
            },
            Frame::Request {
                id: 1,
                group: 2,
                kind: 3,
                body: Bytes::from_static(b"xyz"),
            },
            Frame::Response {
                id: 1,
                result: Ok(Bytes::from_static(b"ok")),
            },
            Frame::Response {
                id: 1,
                result: Err("bad".into()),
            },
            Frame::Ping,
            Frame::Pong,
        ]
    }

    #[test]
    fn samples_roundtrip_and_know_their_length() {
        for f in samples() {
            assert_eq!(f.encode().len(), f.encoded_len(), "{f:?}");
            assert_eq!(roundtrip(&f), f);
        }
    }

    /// Golden bytes: today's encodings. If one of these changes, nodes of different
    /// versions stop understanding each other.
    #[test]
    fn version_one_encodings_are_stable() {
        let golden: Vec<(Frame, Vec<u8>)> = vec![
            (
                Frame::Challenge(Challenge {
                    version: 1,
                    node_id: 2,
                    incarnation: 3,
                    nonce: [4; NONCE_LEN],
                }),
                [
                    &[51, 0, 0, 0, TAG_CHALLENGE, 1, 0][..],
                    &[2, 0, 0, 0, 0, 0, 0, 0],
                    &[3, 0, 0, 0, 0, 0, 0, 0],
                    &[4; 32],
                ]
                .concat(),
            ),
            (
                Frame::Hello(Hello {
                    version: 1,
                    node_id: 5,
                    incarnation: 6,
                    one_off: true,
                    cluster_id: "c1".into(),
                    auth: Some([7; NONCE_LEN]),
                }),
                [
                    &[56, 0, 0, 0, TAG_HELLO, 1, 0][..],
                    &[5, 0, 0, 0, 0, 0, 0, 0],
                    &[6, 0, 0, 0, 0, 0, 0, 0],
                    &[3, 2, 0, b'c', b'1'],
                    &[7; 32],
                ]
                .concat(),
            ),
            (
                Frame::Welcome { node_id: 9 },
                vec![9, 0, 0, 0, TAG_WELCOME, 9, 0, 0, 0, 0, 0, 0, 0],
            ),
            (
                Frame::Refused {
                    node_id: 9,
                    code: RefuseCode::Auth,
                    reason: "no".into(),
                },
                vec![
                    17,
                    0,
                    0,
                    0,
                    TAG_REFUSED,
                    9,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    2,
                    0,
                    2,
                    0,
                    0,
                    0,
                    b'n',
                    b'o',
                ],
            ),
            (
                Frame::Request {
                    id: 1,
                    group: 2,
                    kind: 3,
                    body: Bytes::from_static(b"xyz"),
                },
                [
                    &[22, 0, 0, 0, TAG_REQUEST][..],
                    &[1, 0, 0, 0, 0, 0, 0, 0],
                    &[2, 0, 0, 0, 0, 0, 0, 0],
                    &[3, 0, b'x', b'y', b'z'],
                ]
                .concat(),
            ),
            (
                Frame::Response {
                    id: 1,
                    result: Ok(Bytes::from_static(b"ok")),
                },
                [
                    &[12, 0, 0, 0, TAG_RESPONSE][..],
                    &[1, 0, 0, 0, 0, 0, 0, 0],
                    &[0, b'o', b'k'],
                ]
                .concat(),
            ),
            (
                Frame::Response {
                    id: 1,
                    result: Err("bad".into()),
                },
                [
                    &[13, 0, 0, 0, TAG_RESPONSE][..],
                    &[1, 0, 0, 0, 0, 0, 0, 0],
                    &[1, b'b', b'a', b'd'],
                ]
                .concat(),
            ),
            (Frame::Ping, vec![1, 0, 0, 0, TAG_PING]),
            (Frame::Pong, vec![1, 0, 0, 0, TAG_PONG]),
        ];
        for (frame, bytes) in golden {
            assert_eq!(frame.encode(), bytes, "encoding of {frame:?}");
            let mut buf = BytesMut::from(&bytes[..]);
            assert_eq!(
                decode_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap(),
                Some(frame)
            );
        }
    }

    #[test]
    fn handshake_frames_accept_appended_fields_and_others_do_not() {
        // A later version may append to a Hello; this version still reads its prefix
        // (notably the version, to refuse it with a useful text).
        let hello = Frame::Hello(Hello {
            version: 7,
            node_id: 1,
            incarnation: 2,
            one_off: false,
            cluster_id: String::new(),
            auth: None,
        });
        let mut inner = hello.encode()[4..].to_vec();
        inner.extend_from_slice(b"future fields");
        assert_eq!(Frame::decode(Bytes::from(inner)).unwrap(), hello);

        let mut ping = vec![TAG_PING];
        ping.push(0);
        assert_eq!(
            Frame::decode(Bytes::from(ping)),
            Err(DecodeError::Trailing {
                tag: TAG_PING,
                extra: 1
            })
        );
    }

    #[test]
    fn unknown_refuse_codes_read_as_other() {
        let mut inner = Frame::Refused {
            node_id: 1,
            code: RefuseCode::Version,
            reason: "r".into(),
        }
        .encode()[4..]
            .to_vec();
        inner[9] = 200; // the code's low byte
        match Frame::decode(Bytes::from(inner)).unwrap() {
            Frame::Refused { code, reason, .. } => {
                assert_eq!(code, RefuseCode::Other);
                assert_eq!(reason, "r");
            }
            f => panic!("expected a refusal, got {f:?}"),
        }
    }

    #[test]
    fn truncated_frames_are_incomplete_or_errors() {
        for f in samples() {
            let bytes = f.encode();
            // Cut anywhere inside the frame: the stream decoder waits for more.
            for cut in 0..bytes.len() {
                let mut buf = BytesMut::from(&bytes[..cut]);
                assert_eq!(decode_frame(&mut buf, DEFAULT_MAX_FRAME), Ok(None));
            }
            // A length prefix that lies short: the payload decoder reports it.
            let inner = &bytes[4..];
            for cut in 0..inner.len() {
                let r = Frame::decode(Bytes::copy_from_slice(&inner[..cut]));
                let open_ended = matches!(f, Frame::Request { .. } | Frame::Response { .. });
                if r.is_ok() {
                    // Only a body that runs to the end may be cut and still parse.
                    assert!(open_ended, "cut {cut} of {f:?} decoded as {r:?}");
                }
            }
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let mut buf = BytesMut::from(&[1, 0, 0, 0, 99][..]);
        assert_eq!(
            decode_frame(&mut buf, DEFAULT_MAX_FRAME),
            Err(DecodeError::UnknownTag(99))
        );
        let mut buf = BytesMut::from(&[0, 0, 0, 0][..]);
        assert_eq!(
            decode_frame(&mut buf, DEFAULT_MAX_FRAME),
            Err(DecodeError::Empty)
        );
        let mut buf = BytesMut::from(&[10, 0, 0, 0, TAG_RESPONSE, 1, 0, 0, 0, 0, 0, 0, 0, 9][..]);
        assert_eq!(
            decode_frame(&mut buf, DEFAULT_MAX_FRAME),
            Err(DecodeError::BadStatus(9))
        );
        let mut buf =
            BytesMut::from(&[11, 0, 0, 0, TAG_RESPONSE, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff][..]);
        assert_eq!(
            decode_frame(&mut buf, DEFAULT_MAX_FRAME),
            Err(DecodeError::BadUtf8("response error"))
        );
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, TAG_PING][..]);
        assert_eq!(
            decode_frame(&mut buf, 1024),
            Err(DecodeError::TooLarge {
                len: u32::MAX as usize,
                max: 1024
            })
        );
        assert!(buf.capacity() < 1024, "no room reserved for the lie");
        // Exactly at the limit is fine.
        let f = Frame::Request {
            id: 1,
            group: 1,
            kind: 1,
            body: Bytes::from(vec![0; 100]),
        };
        let len = request_frame_len(100);
        let mut buf = BytesMut::from(&f.encode()[..]);
        assert_eq!(decode_frame(&mut buf, len).unwrap(), Some(f));
    }

    #[test]
    fn request_and_response_lengths_match_the_encoding() {
        let body = Bytes::from(vec![1; 1000]);
        let req = Frame::Request {
            id: 1,
            group: 2,
            kind: 3,
            body: body.clone(),
        };
        assert_eq!(req.encoded_len(), 4 + request_frame_len(1000));
        for result in [Ok(body), Err("e".to_string())] {
            let len = response_frame_len(&result);
            assert_eq!(Frame::Response { id: 1, result }.encoded_len(), 4 + len);
        }
    }

    #[test]
    fn encode_parts_does_not_copy_bodies() {
        let body = Bytes::from(vec![5; 4096]);
        let (head, out) = Frame::Request {
            id: 1,
            group: 2,
            kind: 3,
            body: body.clone(),
        }
        .encode_parts();
        assert_eq!(head.len(), 4 + REQUEST_HEAD);
        assert_eq!(
            out.as_ptr(),
            body.as_ptr(),
            "the body is shared, not copied"
        );
    }

    #[test]
    fn auth_proof_is_bound_to_secret_nonce_and_node() {
        let nonce = [1; NONCE_LEN];
        let p = auth_proof(b"secret", &nonce, 7);
        assert!(verify_auth(b"secret", &nonce, 7, &p));
        assert!(!verify_auth(b"secreT", &nonce, 7, &p));
        assert!(!verify_auth(b"secret", &[2; NONCE_LEN], 7, &p));
        assert!(!verify_auth(b"secret", &nonce, 8, &p));
        assert!(!verify_auth(b"secret", &nonce, 7, &p[..31]));
        // RFC 4231-style sanity: the MAC is HMAC-SHA256 over nonce || id LE.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(&[1; NONCE_LEN]);
        mac.update(&[7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(p, <[u8; 32]>::from(mac.finalize().into_bytes()));
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
        prop_oneof![
            (any::<u16>(), any::<u64>(), any::<u64>(), any::<[u8; 32]>()).prop_map(
                |(version, node_id, incarnation, nonce)| Frame::Challenge(Challenge {
                    version,
                    node_id,
                    incarnation,
                    nonce
                })
            ),
            (
                any::<u16>(),
                any::<u64>(),
                any::<u64>(),
                any::<bool>(),
                ".{0,20}",
                any::<Option<[u8; 32]>>()
            )
                .prop_map(
                    |(version, node_id, incarnation, one_off, cluster_id, auth)| {
                        Frame::Hello(Hello {
                            version,
                            node_id,
                            incarnation,
                            one_off,
                            cluster_id,
                            auth,
                        })
                    }
                ),
            any::<u64>().prop_map(|node_id| Frame::Welcome { node_id }),
            (any::<u64>(), 0u16..6, ".{0,40}").prop_map(|(node_id, c, reason)| {
                Frame::Refused {
                    node_id,
                    code: RefuseCode::from_wire(c),
                    reason,
                }
            }),
            (any::<u64>(), any::<u64>(), any::<u16>(), bytes.clone()).prop_map(
                |(id, group, kind, body)| Frame::Request {
                    id,
                    group,
                    kind,
                    body
                }
            ),
            (any::<u64>(), bytes).prop_map(|(id, b)| Frame::Response { id, result: Ok(b) }),
            (any::<u64>(), ".{0,40}").prop_map(|(id, e)| Frame::Response { id, result: Err(e) }),
            Just(Frame::Ping),
            Just(Frame::Pong),
        ]
    }

    proptest! {
        #[test]
        fn any_frame_roundtrips(f in arb_frame()) {
            prop_assert_eq!(roundtrip(&f), f);
        }

        #[test]
        fn frame_sequences_split_anywhere_decode_in_order(
            frames in proptest::collection::vec(arb_frame(), 1..8),
            chunk in 1usize..50,
        ) {
            let wire: Vec<u8> = frames.iter().flat_map(|f| f.encode()).collect();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(f) = decode_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap() {
                    out.push(f);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(out, frames);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decode_frame(&mut buf, 1 << 16) {}
            let _ = Frame::decode(Bytes::from(bytes));
        }
    }
}
