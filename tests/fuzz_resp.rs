//! Fuzzing the request decoder with proptest: arbitrary bytes must never panic it, and
//! valid requests, cut into arbitrary pieces, must decode to exactly what was encoded.
//!
//! 2000 cases per property by default; a long run:
//! `PROPTEST_CASES=1000000 cargo test --release --test fuzz_resp`.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use shardis::resp::{DecodeLimits, Decoder};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Feeds `input` in the given pieces; stops at the first protocol error, as a
/// connection does. Returns the requests decoded before it.
fn feed(input: &[u8], cuts: &[usize], limits: &DecodeLimits) -> (Vec<Vec<Bytes>>, bool) {
    let mut d = Decoder::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(input.len());
    points.sort_unstable();
    let mut from = 0;
    for to in points {
        buf.extend_from_slice(&input[from..to]);
        from = to;
        loop {
            match d.decode(&mut buf, limits) {
                Ok(Some(req)) => out.push(req),
                Ok(None) => break,
                Err(e) => {
                    assert!(e.reply_text().starts_with("ERR Protocol error: "));
                    return (out, true);
                }
            }
        }
    }
    (out, false)
}

fn multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A request as a client may send it: multibulk with any bytes, or an inline line of
/// plain words.
#[derive(Debug, Clone)]
enum Request {
    Multibulk(Vec<Vec<u8>>),
    Inline(Vec<Vec<u8>>),
}

impl Request {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Request::Multibulk(args) => multibulk(args),
            Request::Inline(words) => {
                let mut line = words.join(&b' ');
                line.extend_from_slice(b"\r\n");
                line
            }
        }
    }

    fn args(&self) -> &[Vec<u8>] {
        match self {
            Request::Multibulk(a) | Request::Inline(a) => a,
        }
    }
}

fn request() -> impl Strategy<Value = Request> {
    let arg = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::collection::vec(any::<u8>(), 0..3000),
        Just(b"\r\n".to_vec()),
        Just(b"*1\r\n$4\r\nPING\r\n".to_vec()),
    ];
    // Inline words: no whitespace or quotes, never starting with '*'.
    let word = "[a-zA-Z0-9_:.+-][a-zA-Z0-9_:.*+-]{0,20}".prop_map(|s| s.into_bytes());
    prop_oneof![
        3 => proptest::collection::vec(arg, 1..6).prop_map(Request::Multibulk),
        1 => proptest::collection::vec(word, 1..5).prop_map(Request::Inline),
    ]
}

/// Fragments that steer random input towards the decoder's branches.
fn noisy_input() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..16),
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"*2\r\n".to_vec()),
        Just(b"$3\r\nGET\r\n".to_vec()),
        Just(b"$-1\r\n".to_vec()),
        Just(b"*-5\r\n".to_vec()),
        Just(b"*99999999999999999999\r\n".to_vec()),
        Just(b"$2147483648\r\n".to_vec()),
        Just(b"\"a\\x4".to_vec()),
        Just(b"'it\\'s'".to_vec()),
        Just(b"\"q\"x".to_vec()),
        Just(b" \t".to_vec()),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(
        input in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        feed(&input, &cuts, &DecodeLimits::default());
    }

    #[test]
    fn protocol_shaped_noise_never_panics(
        input in noisy_input(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        small in any::<bool>(),
    ) {
        let limits = if small {
            DecodeLimits { max_bulk_len: 8 }
        } else {
            DecodeLimits::default()
        };
        feed(&input, &cuts, &limits);
    }

    #[test]
    fn valid_requests_split_anywhere_decode_to_their_args(
        reqs in proptest::collection::vec(request(), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let input: Vec<u8> = reqs.iter().flat_map(|r| r.bytes()).collect();
        let (got, failed) = feed(&input, &cuts, &DecodeLimits::default());
        prop_assert!(!failed, "protocol error on valid input");
        let want: Vec<Vec<Bytes>> = reqs
            .iter()
            .map(|r| r.args().iter().map(|a| Bytes::copy_from_slice(a)).collect())
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn corrupted_requests_never_panic(
        req in request(),
        at in any::<usize>(),
        byte in any::<u8>(),
        truncate in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut input = req.bytes();
        let i = at % input.len();
        if truncate {
            input.truncate(i);
        } else {
            input[i] = byte;
        }
        feed(&input, &cuts, &DecodeLimits::default());
    }
}
