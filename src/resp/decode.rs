//! Request decoding, following Redis's `processMultibulkBuffer` and
//! `processInlineBuffer`: the same limits, the same error texts.

use bytes::{Buf, Bytes, BytesMut};

/// Longest inline request or `*`/`$` header line without a newline (PROTO_INLINE_MAX_SIZE).
pub const INLINE_MAX: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// `proto-max-bulk-len`
    pub max_bulk_len: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_bulk_len: 512 * 1024 * 1024,
        }
    }
}

/// A protocol error: the connection answers `-ERR Protocol error: <text>` and closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

impl ProtocolError {
    pub fn reply_text(&self) -> String {
        format!("ERR Protocol error: {}", self.0)
    }
}

/// Incremental request decoder. It keeps the arguments of a multibulk request that
/// arrived in pieces, so a huge request is parsed once, not once per read.
#[derive(Default, Debug)]
pub struct Decoder {
    args: Vec<Bytes>,
    /// Bulk strings still expected in the current multibulk request; 0 = between requests.
    pending: usize,
    /// Length of the bulk whose `$len` line has been read but whose payload has not.
    bulk_len: Option<usize>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Bytes the decoder needs in the buffer before it can make progress on a large
    /// bulk (so the reader can reserve them at once), if known.
    pub fn bulk_wanted(&self) -> Option<usize> {
        self.bulk_len.map(|n| n + 2)
    }

    /// True while part of a request has been consumed from the buffer.
    pub fn mid_request(&self) -> bool {
        self.pending > 0
    }

    /// Takes the next complete request from `buf`. `Ok(Some(args))` may hold an empty
    /// vector for an empty inline line or `*0`, which callers skip.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        limits: &DecodeLimits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        if self.pending == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            if buf[0] != b'*' {
                return decode_inline(buf);
            }
            let Some(n) = take_header(buf, "too big mbulk count string")? else {
                return Ok(None);
            };
            let n = n.ok_or(ProtocolError("invalid multibulk length"))?;
            if n > i32::MAX as i64 {
                return Err(ProtocolError("invalid multibulk length"));
            }
            if n <= 0 {
                return Ok(Some(Vec::new()));
            }
            self.pending = n as usize;
            // Reserve modestly: the count is client-controlled.
            self.args = Vec::with_capacity(self.pending.min(1024));
        }
        while self.pending > 0 {
            let len = match self.bulk_len {
                Some(len) => len,
                None => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    if buf[0] != b'$' {
                        return Err(expected_dollar(buf[0]));
                    }
                    let Some(len) = take_header(buf, "too big bulk count string")? else {
                        return Ok(None);
                    };
                    let len = len.ok_or(ProtocolError("invalid bulk length"))?;
                    if len < 0 || len as u64 > limits.max_bulk_len as u64 {
                        return Err(ProtocolError("invalid bulk length"));
                    }
                    self.bulk_len = Some(len as usize);
                    len as usize
                }
            };
            if buf.len() < len + 2 {
                return Ok(None);
            }
            let arg = buf.split_to(len).freeze();
            // Like Redis, the two bytes after the payload are taken as CRLF unchecked.
            buf.advance(2);
            self.args.push(arg);
            self.bulk_len = None;
            self.pending -= 1;
        }
        Ok(Some(std::mem::take(&mut self.args)))
    }
}

fn expected_dollar(got: u8) -> ProtocolError {
    // Redis prints the offending byte with %c; the texts are built once and kept.
    use std::sync::OnceLock;
    static TEXTS: OnceLock<Vec<&'static str>> = OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        (0u8..=255)
            .map(|c| {
                let shown = if c.is_ascii() { c as char } else { '?' };
                &*Box::leak(format!("expected '$', got '{shown}'").into_boxed_str())
            })
            .collect()
    });
    ProtocolError(texts[got as usize])
}

/// Consumes one `*<n>` or `$<n>` header line and parses its number (`Some(None)`: the
/// line was there but is not a valid length). Parsing in place avoids splitting the
/// buffer for every header.
fn take_header(
    buf: &mut BytesMut,
    too_big: &'static str,
) -> Result<Option<Option<i64>>, ProtocolError> {
    match memchr_cr(buf) {
        Some(pos) => {
            let n = parse_len(&buf[1..pos]);
            buf.advance(pos + 2);
            Ok(Some(n))
        }
        None => {
            if buf.len() > INLINE_MAX {
                Err(ProtocolError(too_big))
            } else {
                Ok(None)
            }
        }
    }
}

/// Position of the first `\r` that is followed by `\n`.
fn memchr_cr(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(i) = buf[start..].iter().position(|&b| b == b'\r') {
        let pos = start + i;
        if pos + 1 >= buf.len() {
            return None;
        }
        if buf[pos + 1] == b'\n' {
            return Some(pos);
        }
        start = pos + 1;
    }
    None
}

/// Redis's `string2ll` for header lengths: optional '-', digits, no spaces or '+'.
fn parse_len(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as i64)?;
    }
    Some(if neg { -v } else { v })
}

fn decode_inline(buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    // Redis finds the newline with strchr, which stops at a NUL: a line with a NUL
    // before its newline stays incomplete until it is too big.
    let nl = buf
        .iter()
        .position(|&b| b == b'\n' || b == 0)
        .filter(|&i| buf[i] == b'\n');
    let Some(nl) = nl else {
        if buf.len() > INLINE_MAX {
            return Err(ProtocolError("too big inline request"));
        }
        return Ok(None);
    };
    let line = buf.split_to(nl + 1);
    let mut end = nl;
    if end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    let args = split_args(&line[..end]).ok_or(ProtocolError("unbalanced quotes in request"))?;
    Ok(Some(args.into_iter().map(Bytes::from).collect()))
}

/// Redis's `sdssplitargs`: whitespace-separated words, with "double quotes" (escapes
/// `\n \r \t \b \a \\ \" \xHH`) and 'single quotes' (only `\'`). A closing quote must
/// be followed by a space or the end. `None` means unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        // A NUL ends the line, as in C (it also ends a word, so skipping it here
        // would loop forever).
        if i >= n || line[i] == 0 {
            return Some(out);
        }
        let mut cur = Vec::new();
        let mut inq = false; // double quotes
        let mut insq = false; // single quotes
        loop {
            if inq {
                if i >= n {
                    return None;
                }
                if line[i] == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && is_hex(line[i + 2])
                    && is_hex(line[i + 3])
                {
                    cur.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                    i += 3;
                } else if line[i] == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        c => c,
                    });
                } else if line[i] == b'"' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(line[i]);
                }
            } else if insq {
                if i >= n {
                    return None;
                }
                if line[i] == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if line[i] == b'\'' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(line[i]);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => break,
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        out.push(cur);
    }
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex(c: u8) -> u8 {
    (c as char).to_digit(16).unwrap() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> DecodeLimits {
        DecodeLimits::default()
    }

    fn all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(req) = d.decode(&mut buf, &lim())? {
            out.push(req);
        }
        Ok(out)
    }

    #[test]
    fn multibulk_at_every_split_point() {
        let frame = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\r\nxy\r\n*1\r\n$4\r\nPING\r\n";
        for split in 0..=frame.len() {
            let mut d = Decoder::new();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in [&frame[..split], &frame[split..]] {
                buf.extend_from_slice(chunk);
                while let Some(req) = d.decode(&mut buf, &lim()).unwrap() {
                    got.push(req);
                }
            }
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(
                got[0],
                vec![Bytes::from("SET"), Bytes::from("k"), Bytes::from("v\r\nxy")]
            );
            assert_eq!(got[1], vec![Bytes::from("PING")]);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn byte_by_byte() {
        let frame = b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\nPING\r\n";
        let mut d = Decoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in frame.iter() {
            buf.extend_from_slice(&[b]);
            while let Some(req) = d.decode(&mut buf, &lim()).unwrap() {
                got.push(req);
            }
        }
        assert_eq!(
            got,
            vec![
                vec![Bytes::from("ECHO"), Bytes::new()],
                vec![Bytes::from("PING")]
            ]
        );
    }

    #[test]
    fn inline_commands() {
        let got = all(b"SET k \"a b\\x41\\n\"\r\nGET 'k'\n\r\n   \n").unwrap();
        assert_eq!(
            got[0],
            vec![Bytes::from("SET"), Bytes::from("k"), Bytes::from("a bA\n")]
        );
        assert_eq!(got[1], vec![Bytes::from("GET"), Bytes::from("k")]);
        assert!(got[2].is_empty());
        assert!(got[3].is_empty());
        assert_eq!(
            all(b"SET \"k\n"),
            Err(ProtocolError("unbalanced quotes in request"))
        );
        // A NUL before the newline leaves the line incomplete, as Redis's strchr does.
        assert_eq!(
            all(b"SET a b\0c\r\nGET a\r\n").unwrap(),
            Vec::<Vec<Bytes>>::new()
        );
        assert_eq!(
            split_args(b"a b\0c d"),
            Some(vec![b"a".to_vec(), b"b".to_vec()])
        );
        assert_eq!(split_args(b"\0"), Some(Vec::new()));
        assert_eq!(
            all(b"SET \"k\"x\n"),
            Err(ProtocolError("unbalanced quotes in request"))
        );
    }

    #[test]
    fn protocol_errors_match_redis() {
        assert_eq!(
            all(b"*abc\r\n"),
            Err(ProtocolError("invalid multibulk length"))
        );
        assert_eq!(
            all(b"*3000000000\r\n"),
            Err(ProtocolError("invalid multibulk length"))
        );
        assert_eq!(
            all(b"*1\r\n$-1\r\n"),
            Err(ProtocolError("invalid bulk length"))
        );
        assert_eq!(
            all(b"*1\r\n+OK\r\n"),
            Err(ProtocolError("expected '$', got '+'"))
        );
        assert_eq!(
            all(b"*1\r\nx\r\n"),
            Err(ProtocolError("expected '$', got 'x'"))
        );
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&b"*1\r\n$11\r\n"[..]);
        let small = DecodeLimits { max_bulk_len: 10 };
        assert_eq!(
            d.decode(&mut buf, &small),
            Err(ProtocolError("invalid bulk length"))
        );
        assert_eq!(
            all(&vec![b'a'; INLINE_MAX + 1]),
            Err(ProtocolError("too big inline request"))
        );
        let mut big = b"*".to_vec();
        big.extend(vec![b'1'; INLINE_MAX + 1]);
        assert_eq!(all(&big), Err(ProtocolError("too big mbulk count string")));
        assert_eq!(
            all(b"*0\r\n*-1\r\n").unwrap(),
            vec![Vec::<Bytes>::new(), Vec::new()]
        );
    }
}
