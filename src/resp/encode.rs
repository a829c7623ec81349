use super::{Protocol, Reply};
use crate::keyspace::float::format_double;
use bytes::{BufMut, BytesMut};

/// Appends `reply` to `out` in the given protocol.
pub fn encode(reply: &Reply, proto: Protocol, out: &mut BytesMut) {
    match reply {
        Reply::Simple(s) => line(out, b'+', s.as_bytes()),
        Reply::Error(s) => {
            // A newline inside an error would break the protocol: Redis turns them into
            // spaces.
            if s.contains(['\r', '\n']) {
                line(out, b'-', s.replace(['\r', '\n'], " ").as_bytes())
            } else {
                line(out, b'-', s.as_bytes())
            }
        }
        Reply::Int(n) => {
            let mut buf = itoa_buf();
            line(out, b':', fmt_i64(*n, &mut buf));
        }
        Reply::Bulk(b) => bulk(out, b),
        Reply::Nil => match proto {
            Protocol::Resp2 => out.put_slice(b"$-1\r\n"),
            Protocol::Resp3 => out.put_slice(b"_\r\n"),
        },
        Reply::NilArray => match proto {
            Protocol::Resp2 => out.put_slice(b"*-1\r\n"),
            Protocol::Resp3 => out.put_slice(b"_\r\n"),
        },
        Reply::Array(items) => {
            header(out, b'*', items.len());
            for r in items {
                encode(r, proto, out);
            }
        }
        Reply::Set(items) => {
            header(
                out,
                if proto == Protocol::Resp3 { b'~' } else { b'*' },
                items.len(),
            );
            for r in items {
                encode(r, proto, out);
            }
        }
        Reply::Push(items) => {
            header(
                out,
                if proto == Protocol::Resp3 { b'>' } else { b'*' },
                items.len(),
            );
            for r in items {
                encode(r, proto, out);
            }
        }
        Reply::Map(pairs) => {
            match proto {
                Protocol::Resp3 => header(out, b'%', pairs.len()),
                Protocol::Resp2 => header(out, b'*', pairs.len() * 2),
            }
            for (k, v) in pairs {
                encode(k, proto, out);
                encode(v, proto, out);
            }
        }
        Reply::Pairs(pairs) => {
            match proto {
                Protocol::Resp3 => header(out, b'*', pairs.len()),
                Protocol::Resp2 => header(out, b'*', pairs.len() * 2),
            }
            for (a, b) in pairs {
                if proto == Protocol::Resp3 {
                    header(out, b'*', 2);
                }
                encode(a, proto, out);
                encode(b, proto, out);
            }
        }
        Reply::Double(d) => {
            let s = format_double(*d);
            match proto {
                Protocol::Resp3 => line(out, b',', s.as_bytes()),
                Protocol::Resp2 => bulk(out, s.as_bytes()),
            }
        }
        Reply::Bool(b) => match proto {
            Protocol::Resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Protocol::Resp2 => out.put_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
        },
        Reply::Verbatim(fmt, b) => match proto {
            Protocol::Resp3 => {
                header(out, b'=', b.len() + 4);
                out.put_slice(fmt.as_bytes());
                out.put_u8(b':');
                out.put_slice(b);
                out.put_slice(b"\r\n");
            }
            Protocol::Resp2 => bulk(out, b),
        },
    }
}

fn line(out: &mut BytesMut, prefix: u8, body: &[u8]) {
    out.reserve(body.len() + 3);
    out.put_u8(prefix);
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

fn header(out: &mut BytesMut, prefix: u8, len: usize) {
    let mut buf = itoa_buf();
    line(out, prefix, fmt_i64(len as i64, &mut buf));
}

fn bulk(out: &mut BytesMut, b: &[u8]) {
    header(out, b'$', b.len());
    out.reserve(b.len() + 2);
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

/// Formats without allocating; i64::MIN has 20 characters.
fn fmt_i64(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn enc(r: &Reply, p: Protocol) -> String {
        let mut out = BytesMut::new();
        encode(r, p, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn pairs_are_flat_in_resp2_and_nested_in_resp3() {
        let p = Reply::Pairs(vec![(Reply::bulk("a"), Reply::Double(1.0))]);
        assert_eq!(enc(&p, Protocol::Resp2), "*2\r\n$1\r\na\r\n$1\r\n1\r\n");
        assert_eq!(enc(&p, Protocol::Resp3), "*1\r\n*2\r\n$1\r\na\r\n,1\r\n");
        assert_eq!(enc(&Reply::Pairs(vec![]), Protocol::Resp3), "*0\r\n");
    }

    #[test]
    fn resp2_and_resp3_shapes() {
        let map = Reply::Map(vec![(Reply::bulk("a"), Reply::Int(1))]);
        assert_eq!(enc(&map, Protocol::Resp2), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&map, Protocol::Resp3), "%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&Reply::Nil, Protocol::Resp2), "$-1\r\n");
        assert_eq!(enc(&Reply::NilArray, Protocol::Resp2), "*-1\r\n");
        assert_eq!(enc(&Reply::Nil, Protocol::Resp3), "_\r\n");
        assert_eq!(enc(&Reply::Double(1.5), Protocol::Resp2), "$3\r\n1.5\r\n");
        assert_eq!(enc(&Reply::Double(1.5), Protocol::Resp3), ",1.5\r\n");
        assert_eq!(enc(&Reply::Bool(true), Protocol::Resp2), ":1\r\n");
        assert_eq!(enc(&Reply::Bool(false), Protocol::Resp3), "#f\r\n");
        assert_eq!(
            enc(&Reply::Int(i64::MIN), Protocol::Resp2),
            ":-9223372036854775808\r\n"
        );
        assert_eq!(
            enc(&Reply::Set(vec![Reply::Int(0)]), Protocol::Resp3),
            "~1\r\n:0\r\n"
        );
        assert_eq!(
            enc(
                &Reply::Verbatim("txt", Bytes::from_static(b"hi")),
                Protocol::Resp3
            ),
            "=6\r\ntxt:hi\r\n"
        );
        assert_eq!(enc(&Reply::error("ERR x"), Protocol::Resp3), "-ERR x\r\n");
        let pairs = Reply::Pairs(vec![(Reply::bulk("a"), Reply::bulk("1"))]);
        assert_eq!(enc(&pairs, Protocol::Resp2), "*2\r\n$1\r\na\r\n$1\r\n1\r\n");
        assert_eq!(
            enc(&pairs, Protocol::Resp3),
            "*1\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n"
        );
    }
}
