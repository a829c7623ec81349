use bytes::Bytes;
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
