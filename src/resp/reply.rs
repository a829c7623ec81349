use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A reply before encoding. Commands return these; the connection encodes them in
/// its protocol (RESP2 flattens maps, turns doubles into bulk strings, and so on).
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+OK`
    Simple(Cow<'static, str>),
    /// Full error text including its prefix, e.g. `ERR syntax error`, `WRONGTYPE ...`.
    Error(Cow<'static, str>),
    Int(i64),
    Bulk(Bytes),
    /// Null bulk string (`$-1` in RESP2).
    Nil,
    /// Null array (`*-1` in RESP2).
    NilArray,
    Array(Vec<Reply>),
    /// RESP3 map; a flat array of key, value, ... in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// RESP3 set; an array in RESP2.
    Set(Vec<Reply>),
    /// Pairs that Redis 7 sends as an array of two-element arrays in RESP3 and as one
    /// flat array in RESP2 (HRANDFIELD WITHVALUES, ZRANGE WITHSCORES).
    Pairs(Vec<(Reply, Reply)>),
    /// RESP3 double; a bulk string in RESP2.
    Double(f64),
    /// RESP3 boolean; the integer 1 or 0 in RESP2.
    Bool(bool),
    /// RESP3 verbatim string with a 3-letter format (`txt`); a bulk string in RESP2.
    Verbatim(&'static str, Bytes),
    /// RESP3 push (out-of-band); an array in RESP2.
    Push(Vec<Reply>),
}

impl Reply {
    pub const OK: Reply = Reply::Simple(Cow::Borrowed("OK"));

    pub fn ok() -> Reply {
        Reply::OK
    }

    pub fn simple(s: &'static str) -> Reply {
        Reply::Simple(Cow::Borrowed(s))
    }

    pub fn error(s: impl Into<Cow<'static, str>>) -> Reply {
        Reply::Error(s.into())
    }

    pub fn bulk(b: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(b.as_ref()))
    }

    pub fn bulk_static(b: &'static [u8]) -> Reply {
        Reply::Bulk(Bytes::from_static(b))
    }

    pub fn bulk_string(s: String) -> Reply {
        Reply::Bulk(Bytes::from(s))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    pub fn bulk_array<I, B>(items: I) -> Reply
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        Reply::Array(items.into_iter().map(Reply::bulk).collect())
    }
}

/// How a reply crosses between nodes (a forwarded command's answer): the same shape
/// with owned texts, so a verbatim string's format need not be `'static`.
#[derive(Serialize, Deserialize)]
enum WireReply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Bytes),
    Nil,
    NilArray,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    Pairs(Vec<(Reply, Reply)>),
    Double(f64),
    Bool(bool),
    Verbatim(String, Bytes),
    Push(Vec<Reply>),
}

impl Serialize for Reply {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireReply::from(self.clone()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reply, D::Error> {
        WireReply::deserialize(d).map(Reply::from)
    }
}

impl From<Reply> for WireReply {
    fn from(r: Reply) -> WireReply {
        match r {
            Reply::Simple(s) => WireReply::Simple(s.into_owned()),
            Reply::Error(s) => WireReply::Error(s.into_owned()),
            Reply::Int(i) => WireReply::Int(i),
            Reply::Bulk(b) => WireReply::Bulk(b),
            Reply::Nil => WireReply::Nil,
            Reply::NilArray => WireReply::NilArray,
            Reply::Array(v) => WireReply::Array(v),
            Reply::Map(v) => WireReply::Map(v),
            Reply::Set(v) => WireReply::Set(v),
            Reply::Pairs(v) => WireReply::Pairs(v),
            Reply::Double(d) => WireReply::Double(d),
            Reply::Bool(b) => WireReply::Bool(b),
            Reply::Verbatim(f, b) => WireReply::Verbatim(f.to_string(), b),
            Reply::Push(v) => WireReply::Push(v),
        }
    }
}

impl From<WireReply> for Reply {
    fn from(r: WireReply) -> Reply {
        match r {
            WireReply::Simple(s) => Reply::Simple(s.into()),
            WireReply::Error(s) => Reply::Error(s.into()),
            WireReply::Int(i) => Reply::Int(i),
            WireReply::Bulk(b) => Reply::Bulk(b),
            WireReply::Nil => Reply::Nil,
            WireReply::NilArray => Reply::NilArray,
            WireReply::Array(v) => Reply::Array(v),
            WireReply::Map(v) => Reply::Map(v),
            WireReply::Set(v) => Reply::Set(v),
            WireReply::Pairs(v) => Reply::Pairs(v),
            WireReply::Double(d) => Reply::Double(d),
            WireReply::Bool(b) => Reply::Bool(b),
            // Redis sends two formats: plain text and markdown.
            WireReply::Verbatim(f, b) => Reply::Verbatim(if f == "mkd" { "mkd" } else { "txt" }, b),
            WireReply::Push(v) => Reply::Push(v),
        }
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn replies_survive_the_wire() {
        let r = Reply::Array(vec![
            Reply::ok(),
            Reply::error("WRONGTYPE x"),
            Reply::Int(-3),
            Reply::bulk("v"),
            Reply::Nil,
            Reply::NilArray,
            Reply::Map(vec![(Reply::bulk("k"), Reply::Double(1.5))]),
            Reply::Set(vec![Reply::Bool(true)]),
            Reply::Pairs(vec![(Reply::bulk("m"), Reply::Double(2.0))]),
            Reply::Verbatim("txt", Bytes::from_static(b"hello")),
            Reply::Push(vec![Reply::bulk("message")]),
        ]);
        let cfg = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&r, cfg).unwrap();
        let (back, _): (Reply, usize) = bincode::serde::decode_from_slice(&bytes, cfg).unwrap();
        assert_eq!(back, r);
    }
}
