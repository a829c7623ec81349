//! Sorted-set commands.
//!
//! Scores reply as doubles (a bulk string in RESP2); WITHSCORES replies are
//! [`Reply::Pairs`] (flat in RESP2, [member, score] pairs in RESP3), as in Redis 7.
//! Range arguments are parsed like Redis's zslParseRange (C `strtod`: leading
//! spaces, hex floats and an empty string are accepted) while scores to store are
//! parsed like getDoubleFromObject. Blocking pops never block here: with nothing
//! to pop they answer a null array and the server parks the client.

use super::args::{self, Arg};
use super::error::CmdError;
use super::table::{flags::*, CommandSpec, Handler, KeySpec, Keys};
use super::{ReadCtx, WriteCtx};
use crate::keyspace::float::{format_double, parse_double};
use crate::keyspace::slab_map::{Key, SlabMap};
use crate::keyspace::zset::ZSet;
use crate::keyspace::{Keyspace, Value};
use crate::resp::Reply;

const R_FAST: &[&str] = &["read", "sortedset", "fast"];
const R_SLOW: &[&str] = &["read", "sortedset", "slow"];
const W_FAST: &[&str] = &["write", "sortedset", "fast"];
const W_SLOW: &[&str] = &["write", "sortedset", "slow"];
const B_FAST: &[&str] = &["write", "sortedset", "fast", "blocking"];
const B_SLOW: &[&str] = &["write", "sortedset", "slow", "blocking"];

/// A sorted-set command: the family's group filled in.
#[allow(clippy::too_many_arguments)]
const fn spec(
    name: &'static str,
    arity: i32,
    flags: u32,
    keys: Keys,
    acl: &'static [&'static str],
    since: &'static str,
    summary: &'static str,
    handler: Handler,
) -> CommandSpec {
    CommandSpec::described(
        name,
        arity,
        flags,
        keys,
        "sorted-set",
        acl,
        since,
        summary,
        handler,
    )
}

pub static COMMANDS: &[CommandSpec] = &[
    spec("zadd", -4, WRITE | DENYOOM | FAST, Keys::ONE, W_FAST, "1.2.0",
        "Add one or more members to a sorted set, or update its score if it already exists",
        Handler::Write(zadd)),
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "update"], 1, 0, 1)],
        ..spec("zincrby", 4, WRITE | DENYOOM | FAST, Keys::ONE, W_FAST, "1.2.0",
        "Increment the score of a member in a sorted set", Handler::Write(zincrby))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "delete"], 1, 0, 1)],
        ..spec("zrem", -3, WRITE | FAST, Keys::ONE, W_FAST, "1.2.0",
        "Remove one or more members from a sorted set", Handler::Write(zrem))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RO"], 1, 0, 1)],
        ..spec("zcard", 2, READONLY | FAST, Keys::ONE, R_FAST, "1.2.0",
        "Get the number of members in a sorted set", Handler::Read(zcard))
    },
    spec("zscore", 3, READONLY | FAST, Keys::ONE, R_FAST, "1.2.0",
        "Get the score associated with the given member in a sorted set", Handler::Read(zscore)),
    spec("zmscore", -3, READONLY | FAST, Keys::ONE, R_FAST, "6.2.0",
        "Get the score associated with the given members in a sorted set",
        Handler::Read(zmscore)),
    spec("zrank", 3, READONLY | FAST, Keys::ONE, R_FAST, "2.0.0",
        "Determine the index of a member in a sorted set", Handler::Read(zrank)),
    spec("zrevrank", 3, READONLY | FAST, Keys::ONE, R_FAST, "2.0.0",
        "Determine the index of a member in a sorted set, with scores ordered from high to low",
        Handler::Read(zrevrank)),
    spec("zrange", -4, READONLY, Keys::ONE, R_SLOW, "1.2.0",
        "Return a range of members in a sorted set", Handler::Read(zrange)),
    CommandSpec {
        key_specs: &[KeySpec::range(&["OW", "update"], 1, 0, 1), KeySpec::range(&["RO", "access"], 2, 0, 1)],
        ..spec("zrangestore", -5, WRITE | DENYOOM, Keys::TWO, W_SLOW, "6.2.0",
        "Store a range of members from sorted set into another key", Handler::Write(zrangestore))
    },
    spec("zrevrange", -4, READONLY, Keys::ONE, R_SLOW, "1.2.0",
        "Return a range of members in a sorted set, by index, with scores ordered from high to low",
        Handler::Read(zrevrange)),
    spec("zrangebyscore", -4, READONLY, Keys::ONE, R_SLOW, "1.0.5",
        "Return a range of members in a sorted set, by score", Handler::Read(zrangebyscore)),
    spec("zrevrangebyscore", -4, READONLY, Keys::ONE, R_SLOW, "2.2.0",
        "Return a range of members in a sorted set, by score, with scores ordered from high to low",
        Handler::Read(zrevrangebyscore)),
    spec("zrangebylex", -4, READONLY, Keys::ONE, R_SLOW, "2.8.9",
        "Return a range of members in a sorted set, by lexicographical range",
        Handler::Read(zrangebylex)),
    spec("zrevrangebylex", -4, READONLY, Keys::ONE, R_SLOW, "2.8.9",
        "Return a range of members in a sorted set, by lexicographical range, ordered from higher to lower strings.",
        Handler::Read(zrevrangebylex)),
    spec("zcount", 4, READONLY | FAST, Keys::ONE, R_FAST, "2.0.0",
        "Count the members in a sorted set with scores within the given values",
        Handler::Read(zcount)),
    spec("zlexcount", 4, READONLY | FAST, Keys::ONE, R_FAST, "2.8.9",
        "Count the number of members in a sorted set between a given lexicographical range",
        Handler::Read(zlexcount)),
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, 0, 1)],
        ..spec("zpopmin", -2, WRITE | FAST, Keys::ONE, W_FAST, "5.0.0",
        "Remove and return members with the lowest scores in a sorted set",
        Handler::Write(zpopmin))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, 0, 1)],
        ..spec("zpopmax", -2, WRITE | FAST, Keys::ONE, W_FAST, "5.0.0",
        "Remove and return members with the highest scores in a sorted set",
        Handler::Write(zpopmax))
    },
    CommandSpec {
        key_specs: &[KeySpec::keynum(&["RW", "access", "delete"], 1)],
        ..spec("zmpop", -4, WRITE | MOVABLE_KEYS, Keys::movable(0, 0, 0, keys_numkeys_at_1), W_SLOW,
        "7.0.0", "Remove and return members with scores in a sorted set", Handler::Write(zmpop))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "delete"], 1, 0, 1)],
        ..spec("zremrangebyrank", 4, WRITE, Keys::ONE, W_SLOW, "2.0.0",
        "Remove all members in a sorted set within the given indexes",
        Handler::Write(zremrangebyrank))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "delete"], 1, 0, 1)],
        ..spec("zremrangebyscore", 4, WRITE, Keys::ONE, W_SLOW, "1.2.0",
        "Remove all members in a sorted set within the given scores",
        Handler::Write(zremrangebyscore))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "delete"], 1, 0, 1)],
        ..spec("zremrangebylex", 4, WRITE, Keys::ONE, W_SLOW, "2.8.9",
        "Remove all members in a sorted set between the given lexicographical range",
        Handler::Write(zremrangebylex))
    },
    CommandSpec {
        key_specs: &[KeySpec::keynum(&["RO", "access"], 1)],
        ..spec("zunion", -3, READONLY | MOVABLE_KEYS, Keys::movable(0, 0, 0, keys_numkeys_at_1),
        R_SLOW, "6.2.0", "Add multiple sorted sets", Handler::Read(zunion))
    },
    CommandSpec {
        key_specs: &[KeySpec::keynum(&["RO", "access"], 1)],
        ..spec("zinter", -3, READONLY | MOVABLE_KEYS, Keys::movable(0, 0, 0, keys_numkeys_at_1),
        R_SLOW, "6.2.0", "Intersect multiple sorted sets", Handler::Read(zinter))
    },
    CommandSpec {
        key_specs: &[KeySpec::keynum(&["RO", "access"], 1)],
        ..spec("zintercard", -3, READONLY | MOVABLE_KEYS, Keys::movable(0, 0, 0, keys_numkeys_at_1),
        R_SLOW, "7.0.0", "Intersect multiple sorted sets and return the cardinality of the result",
        Handler::Read(zintercard))
    },
    CommandSpec {
        key_specs: &[KeySpec::keynum(&["RO", "access"], 1)],
        ..spec("zdiff", -3, READONLY | MOVABLE_KEYS, Keys::movable(0, 0, 0, keys_numkeys_at_1),
        R_SLOW, "6.2.0", "Subtract multiple sorted sets", Handler::Read(zdiff))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["OW", "update"], 1, 0, 1), KeySpec::keynum(&["RO", "access"], 2)],
        ..spec("zunionstore", -4, WRITE | DENYOOM | MOVABLE_KEYS, Keys::movable(1, 1, 1, keys_store),
        W_SLOW, "2.0.0",
        "Add multiple sorted sets and store the resulting sorted set in a new key",
        Handler::Write(zunionstore))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["OW", "update"], 1, 0, 1), KeySpec::keynum(&["RO", "access"], 2)],
        ..spec("zinterstore", -4, WRITE | DENYOOM | MOVABLE_KEYS, Keys::movable(1, 1, 1, keys_store),
        W_SLOW, "2.0.0",
        "Intersect multiple sorted sets and store the resulting sorted set in a new key",
        Handler::Write(zinterstore))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["OW", "update"], 1, 0, 1), KeySpec::keynum(&["RO", "access"], 2)],
        ..spec("zdiffstore", -4, WRITE | DENYOOM | MOVABLE_KEYS, Keys::movable(1, 1, 1, keys_store),
        W_SLOW, "6.2.0",
        "Subtract multiple sorted sets and store the resulting sorted set in a new key",
        Handler::Write(zdiffstore))
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        ..spec("zrandmember", -2, READONLY, Keys::ONE, R_SLOW, "6.2.0",
        "Get one or multiple random elements from a sorted set", Handler::Read(zrandmember))
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        ..spec("zscan", -3, READONLY, Keys::ONE, R_SLOW, "2.8.0",
        "Incrementally iterate sorted sets elements and associated scores", Handler::Read(zscan))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, -2, 1)],
        ..spec("bzpopmin", -3, WRITE | NOSCRIPT | BLOCKING | FAST, Keys::range(1, -2, 1), B_FAST,
        "5.0.0",
        "Remove and return the member with the lowest score from one or more sorted sets, or block until one is available",
        Handler::Write(bzpopmin))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, -2, 1)],
        ..spec("bzpopmax", -3, WRITE | NOSCRIPT | BLOCKING | FAST, Keys::range(1, -2, 1), B_FAST,
        "5.0.0",
        "Remove and return the member with the highest score from one or more sorted sets, or block until one is available",
        Handler::Write(bzpopmax))
    },
    CommandSpec {
        key_specs: &[KeySpec::keynum(&["RW", "access", "delete"], 2)],
        ..spec("bzmpop", -5, WRITE | BLOCKING | MOVABLE_KEYS, Keys::movable(0, 0, 0, keys_numkeys_at_2),
        B_SLOW, "7.0.0",
        "Remove and return members with scores in a sorted set or block until one is available",
        Handler::Write(bzmpop))
    },
];

// ---- key positions of the numkeys commands ----

fn numkeys_keys(a: &[Arg], idx: usize) -> Result<Vec<usize>, CmdError> {
    let bad = || CmdError::other("ERR Invalid arguments specified for command");
    let n = a.get(idx).and_then(|v| args::int(v).ok()).ok_or_else(bad)?;
    if n < 1 || n as u64 > (a.len() - idx - 1) as u64 {
        return Err(bad());
    }
    Ok((idx + 1..idx + 1 + n as usize).collect())
}

/// ZUNION, ZINTER, ZINTERCARD, ZDIFF, ZMPOP: `numkeys key [key ...]`.
fn keys_numkeys_at_1(a: &[Arg]) -> Result<Vec<usize>, CmdError> {
    numkeys_keys(a, 1)
}

/// BZMPOP: `timeout numkeys key [key ...]`.
fn keys_numkeys_at_2(a: &[Arg]) -> Result<Vec<usize>, CmdError> {
    numkeys_keys(a, 2)
}

/// Z*STORE: `destination numkeys key [key ...]`.
fn keys_store(a: &[Arg]) -> Result<Vec<usize>, CmdError> {
    let mut k = vec![1];
    k.extend(numkeys_keys(a, 2)?);
    Ok(k)
}

// ---- number parsing with C's strtod rules ----

/// C `strtod` required to consume the whole string (up to a NUL, as C sees it):
/// `(value, erange)`, or None. Accepts leading spaces, hex floats, inf/infinity and
/// nan; an empty string converts nothing and so "consumes" everything as 0.
fn c_strtod(s: &[u8]) -> Option<(f64, bool)> {
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    if s.is_empty() {
        return Some((0.0, false));
    }
    let t = &s[s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))?..];
    let (neg, body) = match t[0] {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let sign = if neg { -1.0 } else { 1.0 };
    let lower = body.to_ascii_lowercase();
    if lower == b"inf" || lower == b"infinity" {
        return Some((sign * f64::INFINITY, false));
    }
    if lower == b"nan" || (lower.starts_with(b"nan(") && lower.ends_with(b")")) {
        return Some((f64::NAN, false));
    }
    if lower.starts_with(b"0x") {
        return parse_hex(&lower[2..]).map(|(v, e)| (sign * v, e));
    }
    // Decimal: digits [. digits] [e [sign] digits], at least one mantissa digit.
    let mut i = 0;
    let digits = |i: &mut usize| {
        let st = *i;
        while *i < body.len() && body[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - st
    };
    let mut nd = digits(&mut i);
    if i < body.len() && body[i] == b'.' {
        i += 1;
        nd += digits(&mut i);
    }
    if nd == 0 {
        return None;
    }
    let mantissa_end = i;
    if i < body.len() && (body[i] | 0x20) == b'e' {
        i += 1;
        if i < body.len() && matches!(body[i], b'+' | b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if i != body.len() {
        return None;
    }
    let v: f64 = std::str::from_utf8(body).ok()?.parse().ok()?;
    let erange = v.is_infinite()
        || (v == 0.0
            && body[..mantissa_end]
                .iter()
                .any(|c| (b'1'..=b'9').contains(c)));
    Some((sign * v, erange))
}

/// The part of a hex float after `0x`: hex digits, an optional point, an optional
/// binary exponent `p[sign]digits`.
fn parse_hex(s: &[u8]) -> Option<(f64, bool)> {
    let mut v = 0.0f64;
    let mut exp: i64 = 0;
    let mut nd = 0;
    let mut i = 0;
    let mut seen_point = false;
    while i < s.len() {
        let c = s[i];
        if c == b'.' && !seen_point {
            seen_point = true;
        } else if let Some(d) = (c as char).to_digit(16) {
            v = v * 16.0 + d as f64;
            nd += 1;
            if seen_point {
                exp -= 4;
            }
        } else {
            break;
        }
        i += 1;
    }
    if nd == 0 {
        return None;
    }
    if i < s.len() && s[i] == b'p' {
        i += 1;
        let st = i;
        if i < s.len() && matches!(s[i], b'+' | b'-') {
            i += 1;
        }
        let ds = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        if i == ds {
            return None;
        }
        let e: i64 = std::str::from_utf8(&s[st..i])
            .ok()?
            .parse()
            .unwrap_or(if s[st] == b'-' { -100_000 } else { 100_000 });
        exp = exp.saturating_add(e);
    }
    if i != s.len() {
        return None;
    }
    let r = v * 2f64.powi(exp.clamp(-2000, 2000) as i32);
    Some((r, r.is_infinite() || (r == 0.0 && v != 0.0)))
}

/// getDoubleFromObject: a score or weight to store.
fn parse_score(a: &[u8]) -> Option<f64> {
    if let Some(v) = parse_double(a) {
        return Some(v);
    }
    // parse_double has strtod's decimal grammar; strtod also reads hex floats.
    if a.is_empty() || a[0].is_ascii_whitespace() {
        return None;
    }
    match c_strtod(a) {
        Some((v, false)) if !v.is_nan() => Some(v),
        _ => None,
    }
}

fn score_arg(a: &[u8]) -> Result<f64, CmdError> {
    parse_score(a).ok_or(CmdError::NotFloat)
}

/// getRangeLongFromObjectOrReply with a custom message for any failure.
fn ranged_int(a: &[u8], min: i64, max: i64, msg: &'static str) -> Result<i64, CmdError> {
    match args::int(a) {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(CmdError::other(msg)),
    }
}

/// A blocking command's timeout, checked as Redis's getTimeoutFromObjectOrReply
/// does (the server layer computes the actual wait).
fn check_timeout(a: &[u8]) -> Result<(), CmdError> {
    let not_float = || CmdError::other("ERR timeout is not a float or out of range");
    if a.is_empty() || a[0].is_ascii_whitespace() {
        return Err(not_float());
    }
    let (v, _) = c_strtod(a).ok_or_else(not_float)?;
    if v.is_nan() {
        return Err(not_float());
    }
    // Redis casts ceil(ms) to long long: overflow (and inf) lands on LLONG_MIN.
    let ms = (v * 1000.0).ceil();
    if ms < 0.0 || ms >= 9.223_372_036_854_775_807e18 {
        return Err(CmdError::other("ERR timeout is negative"));
    }
    Ok(())
}

// ---- ranges ----

#[derive(Clone, Copy, Debug)]
struct ScoreRange {
    min: f64,
    max: f64,
    minex: bool,
    maxex: bool,
}

impl ScoreRange {
    /// zslParseRange: `(` makes a bound exclusive; `ERR min or max is not a float`.
    fn parse(min: &[u8], max: &[u8]) -> Result<ScoreRange, CmdError> {
        fn bound(a: &[u8]) -> Result<(f64, bool), CmdError> {
            let (ex, body) = match a.first() {
                Some(b'(') => (true, &a[1..]),
                _ => (false, a),
            };
            match c_strtod(body) {
                Some((v, _)) if !v.is_nan() => Ok((v, ex)),
                _ => Err(CmdError::MinMaxNotFloat),
            }
        }
        let (min, minex) = bound(min)?;
        let (max, maxex) = bound(max)?;
        Ok(ScoreRange {
            min,
            max,
            minex,
            maxex,
        })
    }

    fn gte_min(&self, v: f64) -> bool {
        if self.minex {
            v > self.min
        } else {
            v >= self.min
        }
    }

    fn lte_max(&self, v: f64) -> bool {
        if self.maxex {
            v < self.max
        } else {
            v <= self.max
        }
    }

    /// Ascending ranks `lo..hi` of the items in range.
    fn ranks(&self, z: &ZSet) -> (usize, usize) {
        let lo = z.partition_point(|s, _| !self.gte_min(s));
        let hi = z.partition_point(|s, _| self.lte_max(s));
        (lo, hi.max(lo))
    }
}

#[derive(Clone, Debug)]
enum LexBound {
    NegInf,
    PosInf,
    Incl(Vec<u8>),
    Excl(Vec<u8>),
}

#[derive(Clone, Debug)]
struct LexRange {
    min: LexBound,
    max: LexBound,
}

impl LexRange {
    /// zslParseLexRange: `[x`, `(x`, `-`, `+`.
    fn parse(min: &[u8], max: &[u8]) -> Result<LexRange, CmdError> {
        fn bound(a: &[u8]) -> Result<LexBound, CmdError> {
            match a {
                [b'+'] => Ok(LexBound::PosInf),
                [b'-'] => Ok(LexBound::NegInf),
                [b'(', rest @ ..] => Ok(LexBound::Excl(rest.to_vec())),
                [b'[', rest @ ..] => Ok(LexBound::Incl(rest.to_vec())),
                _ => Err(CmdError::MinMaxNotStringRange),
            }
        }
        Ok(LexRange {
            min: bound(min)?,
            max: bound(max)?,
        })
    }

    fn gte_min(&self, m: &[u8]) -> bool {
        match &self.min {
            LexBound::NegInf => true,
            LexBound::PosInf => false,
            LexBound::Incl(b) => m >= &b[..],
            LexBound::Excl(b) => m > &b[..],
        }
    }

    fn lte_max(&self, m: &[u8]) -> bool {
        match &self.max {
            LexBound::NegInf => false,
            LexBound::PosInf => true,
            LexBound::Incl(b) => m <= &b[..],
            LexBound::Excl(b) => m < &b[..],
        }
    }

    /// Ascending ranks `lo..hi` of the items in range (members assumed to share a
    /// score, as Redis assumes).
    fn ranks(&self, z: &ZSet) -> (usize, usize) {
        self.ranks_dir(z, false)
    }

    /// Lex ranges are defined only when all scores are equal; then a binary search
    /// finds them. Otherwise Redis's answer is what its scan finds (listpack: from
    /// the head forward, or from the tail backward for REV), which is reproduced here.
    fn ranks_dir(&self, z: &ZSet, rev: bool) -> (usize, usize) {
        let n = z.len();
        let uniform =
            n == 0 || z.range(0, 1).next().map(|x| x.1) == z.range(n - 1, n).next().map(|x| x.1);
        if uniform {
            let lo = z.partition_point(|_, m| !self.gte_min(m));
            let hi = z.partition_point(|_, m| self.lte_max(m));
            return (lo, hi.max(lo));
        }
        // Redis first asks whether the range can overlap at all, judging by the head
        // and the tail only (zzlIsInLexRange).
        let head = z.range(0, 1).next().map(|x| x.0);
        let tail = z.range(n - 1, n).next().map(|x| x.0);
        if !(head.is_some_and(|m| self.lte_max(m)) && tail.is_some_and(|m| self.gte_min(m))) {
            return (0, 0);
        }
        if !rev {
            let lo = z
                .range(0, n)
                .position(|(m, _)| self.gte_min(m))
                .unwrap_or(n);
            let len = z.range(lo, n).take_while(|(m, _)| self.lte_max(m)).count();
            (lo, lo + len)
        } else {
            let from_end = z
                .range(0, n)
                .rev()
                .position(|(m, _)| self.lte_max(m))
                .unwrap_or(n);
            let hi = n - from_end;
            let len = z
                .range(0, hi)
                .rev()
                .take_while(|(m, _)| self.gte_min(m))
                .count();
            (hi - len, hi)
        }
    }
}

/// Redis's rank sanitising for `start..=end` over `len` items: ascending `lo..hi`.
fn rank_bounds(start: i64, end: i64, len: usize) -> (usize, usize) {
    let len = len as i64;
    let mut start = if start < 0 { len + start } else { start };
    let end = if end < 0 { len + end } else { end };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= len {
        return (0, 0);
    }
    (start as usize, (end.min(len - 1) + 1) as usize)
}

// ---- lookups ----

fn read_zset<'a>(ks: &'a Keyspace, key: &[u8], now: u64) -> Result<Option<&'a ZSet>, CmdError> {
    match ks.read(key, now) {
        None => Ok(None),
        Some(e) => match &e.value {
            Value::ZSet(z) => Ok(Some(z)),
            _ => Err(CmdError::WrongType),
        },
    }
}

fn write_zset<'a>(
    ks: &'a mut Keyspace,
    key: &[u8],
    now: u64,
) -> Result<Option<&'a mut ZSet>, CmdError> {
    match ks.write(key, now) {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::ZSet(z) => Ok(Some(z)),
            _ => Err(CmdError::WrongType),
        },
    }
}

/// After an in-place change: delete the key if the set emptied, else signal it.
fn finish_write(ks: &mut Keyspace, key: &[u8], now: u64, changed: bool, empty: bool) {
    if empty {
        ks.remove(key, now);
    } else if changed {
        ks.modified(key);
    }
}

/// Stores a computed set at `dst` (replacing any value), or deletes `dst` when the
/// result is empty; replies with the size.
fn store_result(ks: &mut Keyspace, dst: &[u8], z: ZSet, now: u64) -> Reply {
    let n = z.len();
    if n == 0 {
        ks.remove(dst, now);
    } else {
        ks.set(dst, Value::ZSet(Box::new(z)), now);
    }
    Reply::Int(n as i64)
}

fn with_scores<'a>(items: impl Iterator<Item = (&'a [u8], f64)>, withscores: bool) -> Reply {
    if withscores {
        Reply::Pairs(
            items
                .map(|(m, s)| (Reply::bulk(m), Reply::Double(s)))
                .collect(),
        )
    } else {
        Reply::Array(items.map(|(m, _)| Reply::bulk(m)).collect())
    }
}

// ---- ZADD, ZINCRBY, ZREM ----

#[derive(Default, Clone, Copy)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    incr: bool,
}

struct AddOutcome {
    added: usize,
    updated: usize,
    processed: usize,
    score: f64,
}

/// Redis's zsetAdd over every pair.
fn add_pairs(z: &mut ZSet, f: AddFlags, pairs: &[(f64, &[u8])]) -> Result<AddOutcome, CmdError> {
    let mut out = AddOutcome {
        added: 0,
        updated: 0,
        processed: 0,
        score: 0.0,
    };
    for &(s, m) in pairs {
        match z.score(m) {
            Some(cur) => {
                if f.nx {
                    continue;
                }
                let mut score = s;
                if f.incr {
                    score += cur;
                    if score.is_nan() {
                        return Err(CmdError::other("ERR resulting score is not a number (NaN)"));
                    }
                }
                if (f.lt && score >= cur) || (f.gt && score <= cur) {
                    continue;
                }
                out.score = score;
                out.processed += 1;
                if score != cur {
                    z.insert(m, score);
                    out.updated += 1;
                }
            }
            None if !f.xx => {
                z.insert(m, s);
                out.score = s;
                out.added += 1;
                out.processed += 1;
            }
            None => {}
        }
    }
    Ok(out)
}

fn add_generic(
    ks: &mut Keyspace,
    now: u64,
    key: &[u8],
    f: AddFlags,
    ch: bool,
    pairs: &[(f64, &[u8])],
) -> Result<Reply, CmdError> {
    let out = match write_zset(ks, key, now)? {
        Some(z) => {
            let out = add_pairs(z, f, pairs)?;
            if out.added + out.updated > 0 {
                ks.modified(key);
            }
            Some(out)
        }
        None if f.xx => None,
        None => {
            let mut z = ZSet::new();
            let out = add_pairs(&mut z, f, pairs)?;
            if !z.is_empty() {
                ks.set(key, Value::ZSet(Box::new(z)), now);
            }
            Some(out)
        }
    };
    Ok(match (f.incr, out) {
        (true, Some(o)) if o.processed > 0 => Reply::Double(o.score),
        (true, _) => Reply::Nil,
        (false, Some(o)) => Reply::Int(if ch { o.added + o.updated } else { o.added } as i64),
        (false, None) => Reply::Int(0),
    })
}

/// ZADD key [NX | XX] [GT | LT] [CH] [INCR] score member [score member ...]
fn zadd(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let mut f = AddFlags::default();
    let mut ch = false;
    let mut i = 2;
    while i < a.len() {
        let o = &a[i];
        if args::is(o, "nx") {
            f.nx = true;
        } else if args::is(o, "xx") {
            f.xx = true;
        } else if args::is(o, "ch") {
            ch = true;
        } else if args::is(o, "incr") {
            f.incr = true;
        } else if args::is(o, "gt") {
            f.gt = true;
        } else if args::is(o, "lt") {
            f.lt = true;
        } else {
            break;
        }
        i += 1;
    }
    let rest = &a[i..];
    if rest.is_empty() || rest.len() % 2 != 0 {
        return Err(CmdError::Syntax);
    }
    if f.nx && f.xx {
        return Err(CmdError::other(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (f.gt && f.nx) || (f.lt && f.nx) || (f.gt && f.lt) {
        return Err(CmdError::other(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if f.incr && rest.len() > 2 {
        return Err(CmdError::other(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let pairs = rest
        .chunks(2)
        .map(|p| Ok((score_arg(&p[0])?, &p[1][..])))
        .collect::<Result<Vec<_>, CmdError>>()?;
    add_generic(ks, ctx.now, &a[1], f, ch, &pairs)
}

/// ZINCRBY key increment member
fn zincrby(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let incr = score_arg(&a[2])?;
    let f = AddFlags {
        incr: true,
        ..AddFlags::default()
    };
    add_generic(ks, ctx.now, &a[1], f, false, &[(incr, &a[3][..])])
}

/// ZREM key member [member ...]
fn zrem(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let Some(z) = write_zset(ks, &a[1], ctx.now)? else {
        return Ok(Reply::Int(0));
    };
    let mut deleted = 0;
    for m in &a[2..] {
        if z.remove(m).is_some() {
            deleted += 1;
        }
        if z.is_empty() {
            break;
        }
    }
    let empty = z.is_empty();
    finish_write(ks, &a[1], ctx.now, deleted > 0, empty);
    Ok(Reply::Int(deleted))
}

// ---- single-key reads ----

/// ZCARD key
fn zcard(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(Reply::Int(
        read_zset(ks, &a[1], ctx.now)?.map_or(0, |z| z.len()) as i64,
    ))
}

/// ZSCORE key member
fn zscore(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(read_zset(ks, &a[1], ctx.now)?
        .and_then(|z| z.score(&a[2]))
        .map_or(Reply::Nil, Reply::Double))
}

/// ZMSCORE key member [member ...]
fn zmscore(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let z = read_zset(ks, &a[1], ctx.now)?;
    Ok(Reply::Array(
        a[2..]
            .iter()
            .map(|m| z.and_then(|z| z.score(m)).map_or(Reply::Nil, Reply::Double))
            .collect(),
    ))
}

fn rank_generic(ks: &Keyspace, ctx: &ReadCtx, a: &[Arg], rev: bool) -> Result<Reply, CmdError> {
    let Some(z) = read_zset(ks, &a[1], ctx.now)? else {
        return Ok(Reply::Nil);
    };
    Ok(match z.rank(&a[2]) {
        Some(r) if rev => Reply::Int((z.len() - 1 - r) as i64),
        Some(r) => Reply::Int(r as i64),
        None => Reply::Nil,
    })
}

/// ZRANK key member
fn zrank(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    rank_generic(ks, ctx, a, false)
}

/// ZREVRANK key member
fn zrevrank(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    rank_generic(ks, ctx, a, true)
}

/// ZCOUNT key min max
fn zcount(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let r = ScoreRange::parse(&a[2], &a[3])?;
    let Some(z) = read_zset(ks, &a[1], ctx.now)? else {
        return Ok(Reply::Int(0));
    };
    let (lo, hi) = r.ranks(z);
    Ok(Reply::Int((hi - lo) as i64))
}

/// ZLEXCOUNT key min max
fn zlexcount(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let r = LexRange::parse(&a[2], &a[3])?;
    let Some(z) = read_zset(ks, &a[1], ctx.now)? else {
        return Ok(Reply::Int(0));
    };
    let (lo, hi) = r.ranks(z);
    Ok(Reply::Int((hi - lo) as i64))
}

// ---- ZRANGE family ----

#[derive(Clone, Copy, PartialEq, Debug)]
enum By {
    Rank,
    Score,
    Lex,
}

enum Bounds {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

struct RangeQuery {
    bounds: Bounds,
    rev: bool,
    withscores: bool,
    offset: i64,
    limit: i64,
}

/// Redis's zrangeGenericCommand argument parsing: `<src> <min> <max>` at `at`,
/// then options. `by`/`rev` are fixed by the legacy commands.
fn parse_range(
    a: &[Arg],
    at: usize,
    store: bool,
    mut by: Option<By>,
    mut rev: Option<bool>,
) -> Result<RangeQuery, CmdError> {
    let (mut withscores, mut offset, mut limit) = (false, 0, -1);
    let mut j = at + 3;
    while j < a.len() {
        let left = a.len() - j - 1;
        let o = &a[j];
        if !store && args::is(o, "withscores") {
            withscores = true;
        } else if args::is(o, "limit") && left >= 2 {
            offset = args::int(&a[j + 1])?;
            limit = args::int(&a[j + 2])?;
            j += 2;
        } else if rev.is_none() && args::is(o, "rev") {
            rev = Some(true);
        } else if by.is_none() && args::is(o, "bylex") {
            by = Some(By::Lex);
        } else if by.is_none() && args::is(o, "byscore") {
            by = Some(By::Score);
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let by = by.unwrap_or(By::Rank);
    let rev = rev.unwrap_or(false);
    if limit != -1 && by == By::Rank {
        return Err(CmdError::other(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && by == By::Lex {
        return Err(CmdError::other(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (mut lo, mut hi) = (&a[at + 1], &a[at + 2]);
    if rev && by != By::Rank {
        std::mem::swap(&mut lo, &mut hi);
    }
    let bounds = match by {
        By::Rank => Bounds::Rank(args::int(lo)?, args::int(hi)?),
        By::Score => Bounds::Score(ScoreRange::parse(lo, hi)?),
        By::Lex => Bounds::Lex(LexRange::parse(lo, hi)?),
    };
    Ok(RangeQuery {
        bounds,
        rev,
        withscores,
        offset,
        limit,
    })
}

/// The selected items, in reply order.
fn select<'a>(z: &'a ZSet, q: &RangeQuery) -> Vec<(&'a [u8], f64)> {
    let n = z.len();
    let (lo, hi) = match &q.bounds {
        Bounds::Rank(start, end) => {
            let (s, e) = rank_bounds(*start, *end, n);
            return if q.rev {
                // Ranks count from the top: map back to ascending positions.
                z.range(n - e, n - s).rev().collect()
            } else {
                z.range(s, e).collect()
            };
        }
        Bounds::Score(r) => r.ranks(z),
        Bounds::Lex(r) => r.ranks_dir(z, q.rev),
    };
    // A negative offset walks off the end in Redis; a negative limit is no limit.
    if q.offset < 0 || (q.offset > 0 && q.offset as u64 >= n as u64) {
        return Vec::new();
    }
    let take = if q.limit < 0 {
        usize::MAX
    } else {
        q.limit as usize
    };
    let skip = q.offset as usize;
    if q.rev {
        z.range(lo, hi).rev().skip(skip).take(take).collect()
    } else {
        z.range(lo, hi).skip(skip).take(take).collect()
    }
}

fn range_read(
    ks: &Keyspace,
    ctx: &ReadCtx,
    a: &[Arg],
    by: Option<By>,
    rev: Option<bool>,
) -> Result<Reply, CmdError> {
    let q = parse_range(a, 1, false, by, rev)?;
    let Some(z) = read_zset(ks, &a[1], ctx.now)? else {
        return Ok(Reply::Array(Vec::new()));
    };
    Ok(with_scores(select(z, &q).into_iter(), q.withscores))
}

/// ZRANGE key start stop [BYSCORE | BYLEX] [REV] [LIMIT offset count] [WITHSCORES]
fn zrange(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    range_read(ks, ctx, a, None, None)
}

/// ZREVRANGE key start stop [WITHSCORES]
fn zrevrange(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    range_read(ks, ctx, a, Some(By::Rank), Some(true))
}

/// ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]
fn zrangebyscore(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    range_read(ks, ctx, a, Some(By::Score), Some(false))
}

/// ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count]
fn zrevrangebyscore(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    range_read(ks, ctx, a, Some(By::Score), Some(true))
}

/// ZRANGEBYLEX key min max [LIMIT offset count]
fn zrangebylex(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    range_read(ks, ctx, a, Some(By::Lex), Some(false))
}

/// ZREVRANGEBYLEX key max min [LIMIT offset count]
fn zrevrangebylex(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    range_read(ks, ctx, a, Some(By::Lex), Some(true))
}

/// ZRANGESTORE dst src min max [BYSCORE | BYLEX] [REV] [LIMIT offset count]
fn zrangestore(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let q = parse_range(a, 2, true, None, None)?;
    let mut out = ZSet::new();
    if let Some(z) = read_zset(ks, &a[2], ctx.now)? {
        for (m, s) in select(z, &q) {
            out.insert(m, s);
        }
    }
    Ok(store_result(ks, &a[1], out, ctx.now))
}

// ---- ZREMRANGEBY* ----

fn remrange(ks: &mut Keyspace, ctx: &WriteCtx, a: &[Arg], by: By) -> Result<Reply, CmdError> {
    let bounds = match by {
        By::Rank => Bounds::Rank(args::int(&a[2])?, args::int(&a[3])?),
        By::Score => Bounds::Score(ScoreRange::parse(&a[2], &a[3])?),
        By::Lex => Bounds::Lex(LexRange::parse(&a[2], &a[3])?),
    };
    let Some(z) = write_zset(ks, &a[1], ctx.now)? else {
        return Ok(Reply::Int(0));
    };
    let (lo, hi) = match &bounds {
        Bounds::Rank(s, e) => rank_bounds(*s, *e, z.len()),
        Bounds::Score(r) => r.ranks(z),
        Bounds::Lex(r) => r.ranks(z),
    };
    let deleted = z.remove_range(lo, hi).len();
    let empty = z.is_empty();
    finish_write(ks, &a[1], ctx.now, deleted > 0, empty);
    Ok(Reply::Int(deleted as i64))
}

/// ZREMRANGEBYRANK key start stop
fn zremrangebyrank(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    remrange(ks, ctx, a, By::Rank)
}

/// ZREMRANGEBYSCORE key min max
fn zremrangebyscore(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    remrange(ks, ctx, a, By::Score)
}

/// ZREMRANGEBYLEX key min max
fn zremrangebylex(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    remrange(ks, ctx, a, By::Lex)
}

// ---- pops ----

/// Pops up to `count` items from the first non-empty set among `keys` (WRONGTYPE
/// if a key of another type comes first). None when every key is missing.
fn pop_first(
    ks: &mut Keyspace,
    now: u64,
    keys: &[Arg],
    max: bool,
    count: usize,
) -> Result<Option<(Arg, Vec<(Key, f64)>)>, CmdError> {
    for key in keys {
        let Some(z) = write_zset(ks, key, now)? else {
            continue;
        };
        let n = z.len();
        let k = count.min(n);
        let mut items = if max {
            z.remove_range(n - k, n)
        } else {
            z.remove_range(0, k)
        };
        if max {
            items.reverse();
        }
        let empty = z.is_empty();
        finish_write(ks, key, now, k > 0, empty);
        return Ok(Some((key.clone(), items)));
    }
    Ok(None)
}

fn pop_count_arg(a: &[Arg]) -> Result<Option<usize>, CmdError> {
    match a.len() {
        2 => Ok(None),
        3 => match args::int(&a[2]) {
            Ok(n) if n >= 0 => Ok(Some(n as usize)),
            _ => Err(CmdError::NotPositive),
        },
        _ => Err(CmdError::Syntax),
    }
}

fn zpop(ks: &mut Keyspace, ctx: &WriteCtx, a: &[Arg], max: bool) -> Result<Reply, CmdError> {
    let count = pop_count_arg(a)?;
    let popped = pop_first(ks, ctx.now, &a[1..2], max, count.unwrap_or(1))?;
    let items = popped.map(|(_, items)| items).unwrap_or_default();
    let pairs = items
        .into_iter()
        .map(|(m, s)| (Reply::bulk(m), Reply::Double(s)));
    Ok(match count {
        Some(_) => Reply::Pairs(pairs.collect()),
        None => Reply::Array(pairs.flat_map(|(m, s)| [m, s]).collect()),
    })
}

/// ZPOPMIN key [count]
fn zpopmin(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    zpop(ks, ctx, a, false)
}

/// ZPOPMAX key [count]
fn zpopmax(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    zpop(ks, ctx, a, true)
}

fn bzpop(ks: &mut Keyspace, ctx: &WriteCtx, a: &[Arg], max: bool) -> Result<Reply, CmdError> {
    check_timeout(&a[a.len() - 1])?;
    Ok(match pop_first(ks, ctx.now, &a[1..a.len() - 1], max, 1)? {
        Some((key, items)) if !items.is_empty() => {
            let (m, s) = &items[0];
            Reply::Array(vec![Reply::bulk(key), Reply::bulk(m), Reply::Double(*s)])
        }
        _ => Reply::NilArray,
    })
}

/// BZPOPMIN key [key ...] timeout
fn bzpopmin(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    bzpop(ks, ctx, a, false)
}

/// BZPOPMAX key [key ...] timeout
fn bzpopmax(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    bzpop(ks, ctx, a, true)
}

/// Shared by ZMPOP and BZMPOP: `numkeys key [key ...] MIN | MAX [COUNT count]` from
/// `at`.
fn mpop(ks: &mut Keyspace, ctx: &WriteCtx, a: &[Arg], at: usize) -> Result<Reply, CmdError> {
    let numkeys = ranged_int(&a[at], 1, i64::MAX, "ERR numkeys should be greater than 0")? as u64;
    let where_idx = (at as u64 + 1).saturating_add(numkeys);
    if where_idx >= a.len() as u64 {
        return Err(CmdError::Syntax);
    }
    let where_idx = where_idx as usize;
    let max = if args::is(&a[where_idx], "max") {
        true
    } else if args::is(&a[where_idx], "min") {
        false
    } else {
        return Err(CmdError::Syntax);
    };
    let mut count = None;
    let mut j = where_idx + 1;
    while j < a.len() {
        if count.is_none() && args::is(&a[j], "count") && j + 1 < a.len() {
            count = Some(ranged_int(
                &a[j + 1],
                1,
                i64::MAX,
                "ERR count should be greater than 0",
            )?);
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    if at == 2 {
        check_timeout(&a[1])?;
    }
    let count = usize::try_from(count.unwrap_or(1)).unwrap_or(usize::MAX);
    Ok(
        match pop_first(ks, ctx.now, &a[at + 1..where_idx], max, count)? {
            Some((key, items)) if !items.is_empty() => Reply::Array(vec![
                Reply::bulk(key),
                Reply::Array(
                    items
                        .into_iter()
                        .map(|(m, s)| Reply::Array(vec![Reply::bulk(m), Reply::Double(s)]))
                        .collect(),
                ),
            ]),
            _ => Reply::NilArray,
        },
    )
}

/// ZMPOP numkeys key [key ...] MIN | MAX [COUNT count]
fn zmpop(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    mpop(ks, ctx, a, 1)
}

/// BZMPOP timeout numkeys key [key ...] MIN | MAX [COUNT count]
fn bzmpop(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    mpop(ks, ctx, a, 2)
}

// ---- ZUNION, ZINTER, ZDIFF, ZINTERCARD and the STORE forms ----

#[derive(Clone, Copy, PartialEq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy, PartialEq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

/// An input of a set operation: a sorted set, a plain set (every score is 1) or
/// nothing.
#[derive(Clone, Copy)]
enum Src<'a> {
    None,
    Z(&'a ZSet),
    S(&'a SlabMap<()>),
}

impl<'a> Src<'a> {
    fn len(&self) -> usize {
        match self {
            Src::None => 0,
            Src::Z(z) => z.len(),
            Src::S(s) => s.len(),
        }
    }

    fn items(&self) -> Box<dyn Iterator<Item = (&'a [u8], f64)> + 'a> {
        match *self {
            Src::None => Box::new(std::iter::empty()),
            // Redis's zuiNext walks a sorted set from its highest item down.
            Src::Z(z) => Box::new(z.iter().rev()),
            Src::S(s) => Box::new(s.keys().map(|k| (&k[..], 1.0))),
        }
    }

    fn find(&self, m: &[u8]) -> Option<f64> {
        match self {
            Src::None => None,
            Src::Z(z) => z.score(m),
            Src::S(s) => s.contains(m).then_some(1.0),
        }
    }
}

fn aggregate(target: &mut f64, v: f64, agg: Aggregate) {
    match agg {
        Aggregate::Sum => {
            *target += v;
            // inf + -inf: Redis's convention is 0.
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggregate::Min => {
            if v < *target {
                *target = v
            }
        }
        Aggregate::Max => {
            if v > *target {
                *target = v
            }
        }
    }
}

fn weighted(score: f64, weight: f64) -> f64 {
    let v = score * weight;
    // inf * 0 is NaN; Redis makes it 0.
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

struct SetOpArgs<'a> {
    srcs: Vec<(Src<'a>, f64)>,
    agg: Aggregate,
    withscores: bool,
    limit: usize,
}

/// Redis's zunionInterDiffGenericCommand parsing: numkeys at `at`, the inputs
/// looked up (WRONGTYPE) before the options are parsed.
fn parse_setop<'a>(
    ks: &'a Keyspace,
    now: u64,
    a: &[Arg],
    at: usize,
    op: SetOp,
    store: bool,
    card: bool,
) -> Result<SetOpArgs<'a>, CmdError> {
    let n = args::int(&a[at])?;
    if n < 1 {
        return Err(CmdError::Other(
            format!(
                "ERR at least 1 input key is needed for '{}' command",
                args::lower(&a[0])
            )
            .into(),
        ));
    }
    if n as u64 > (a.len() - at - 1) as u64 {
        return Err(CmdError::Syntax);
    }
    let n = n as usize;
    let mut srcs = Vec::with_capacity(n);
    for key in &a[at + 1..at + 1 + n] {
        let src = match ks.read(key, now) {
            None => Src::None,
            Some(e) => match &e.value {
                Value::ZSet(z) => Src::Z(z),
                Value::Set(s) => Src::S(s),
                _ => return Err(CmdError::WrongType),
            },
        };
        srcs.push((src, 1.0));
    }
    let mut out = SetOpArgs {
        srcs,
        agg: Aggregate::Sum,
        withscores: false,
        limit: 0,
    };
    let mut j = at + 1 + n;
    while j < a.len() {
        let remaining = a.len() - j;
        let o = &a[j];
        if op != SetOp::Diff && !card && remaining > n && args::is(o, "weights") {
            for i in 0..n {
                out.srcs[i].1 = parse_score(&a[j + 1 + i])
                    .ok_or_else(|| CmdError::other("ERR weight value is not a float"))?;
            }
            j += 1 + n;
        } else if op != SetOp::Diff && !card && remaining >= 2 && args::is(o, "aggregate") {
            let v = &a[j + 1];
            out.agg = if args::is(v, "sum") {
                Aggregate::Sum
            } else if args::is(v, "min") {
                Aggregate::Min
            } else if args::is(v, "max") {
                Aggregate::Max
            } else {
                return Err(CmdError::Syntax);
            };
            j += 2;
        } else if !store && !card && args::is(o, "withscores") {
            out.withscores = true;
            j += 1;
        } else if card && remaining >= 2 && args::is(o, "limit") {
            out.limit = ranged_int(&a[j + 1], 0, i64::MAX, "ERR LIMIT can't be negative")? as usize;
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok(out)
}

/// Computes the operation. The result's slab layout follows the inputs' iteration
/// order, so it is deterministic.
fn compute_setop(p: &mut SetOpArgs, op: SetOp) -> ZSet {
    let mut out = ZSet::new_unpacked();
    if op != SetOp::Diff {
        // Smallest first, as Redis does (a stable sort keeps equal sizes in order).
        p.srcs.sort_by_key(|(s, _)| s.len());
    }
    match op {
        SetOp::Inter => {
            let (first, w0) = p.srcs[0];
            if first.len() == 0 {
                return out;
            }
            'items: for (m, s) in first.items() {
                let mut score = weighted(s, w0);
                for (src, w) in &p.srcs[1..] {
                    match src.find(m) {
                        Some(v) => aggregate(&mut score, weighted(v, *w), p.agg),
                        None => continue 'items,
                    }
                }
                out.insert(m, score);
            }
        }
        SetOp::Union => {
            let mut acc: SlabMap<f64> = SlabMap::new();
            for (src, w) in &p.srcs {
                for (m, s) in src.items() {
                    let v = weighted(s, *w);
                    match acc.get_mut(m) {
                        Some(t) => aggregate(t, v, p.agg),
                        None => {
                            acc.insert_new(m.into(), v);
                        }
                    }
                }
            }
            for (m, s) in acc.iter() {
                out.insert(m, *s);
            }
        }
        SetOp::Diff => {
            let (first, _) = p.srcs[0];
            for (m, s) in first.items() {
                if p.srcs[1..].iter().all(|(src, _)| src.find(m).is_none()) {
                    out.insert(m, s);
                }
            }
        }
    }
    out
}

fn setop_read(ks: &Keyspace, ctx: &ReadCtx, a: &[Arg], op: SetOp) -> Result<Reply, CmdError> {
    let mut p = parse_setop(ks, ctx.now, a, 1, op, false, false)?;
    let z = compute_setop(&mut p, op);
    Ok(with_scores(z.iter(), p.withscores))
}

fn setop_store(ks: &mut Keyspace, ctx: &WriteCtx, a: &[Arg], op: SetOp) -> Result<Reply, CmdError> {
    let mut z = {
        let mut p = parse_setop(ks, ctx.now, a, 2, op, true, false)?;
        compute_setop(&mut p, op)
    };
    z.compact_if_small();
    Ok(store_result(ks, &a[1], z, ctx.now))
}

/// ZUNION numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM | MIN | MAX]
/// [WITHSCORES]
fn zunion(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    setop_read(ks, ctx, a, SetOp::Union)
}

/// ZINTER numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM | MIN | MAX]
/// [WITHSCORES]
fn zinter(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    setop_read(ks, ctx, a, SetOp::Inter)
}

/// ZDIFF numkeys key [key ...] [WITHSCORES]
fn zdiff(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    setop_read(ks, ctx, a, SetOp::Diff)
}

/// ZINTERCARD numkeys key [key ...] [LIMIT limit]
fn zintercard(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let mut p = parse_setop(ks, ctx.now, a, 1, SetOp::Inter, false, true)?;
    p.srcs.sort_by_key(|(s, _)| s.len());
    let first = p.srcs[0].0;
    let mut n = 0usize;
    for (m, _) in first.items() {
        if p.srcs[1..].iter().all(|(src, _)| src.find(m).is_some()) {
            n += 1;
            if p.limit > 0 && n >= p.limit {
                break;
            }
        }
    }
    Ok(Reply::Int(n as i64))
}

/// ZUNIONSTORE destination numkeys key [key ...] [WEIGHTS weight [weight ...]]
/// [AGGREGATE SUM | MIN | MAX]
fn zunionstore(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    setop_store(ks, ctx, a, SetOp::Union)
}

/// ZINTERSTORE destination numkeys key [key ...] [WEIGHTS weight [weight ...]]
/// [AGGREGATE SUM | MIN | MAX]
fn zinterstore(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    setop_store(ks, ctx, a, SetOp::Inter)
}

/// ZDIFFSTORE destination numkeys key [key ...]
fn zdiffstore(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    setop_store(ks, ctx, a, SetOp::Diff)
}

// ---- ZRANDMEMBER, ZSCAN ----

/// The most items a negative ZRANDMEMBER count may ask for: Redis would stream
/// them until the client's output limit closes it; we refuse instead.
const MAX_RANDOM_REPEATS: u64 = 1 << 24;

/// ZRANDMEMBER key [count [WITHSCORES]]
fn zrandmember(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    if a.len() == 2 {
        let Some(z) = read_zset(ks, &a[1], ctx.now)? else {
            return Ok(Reply::Nil);
        };
        let rng = &mut ctx.rng;
        let pos = z
            .members()
            .random_pos(|| rng.next_u64())
            .expect("non-empty");
        return Ok(Reply::bulk(z.members().at(pos).unwrap().0));
    }
    let l = args::int(&a[2])?;
    if l == i64::MIN {
        return Err(CmdError::other(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    if a.len() > 4 || (a.len() == 4 && !args::is(&a[3], "withscores")) {
        return Err(CmdError::Syntax);
    }
    let withscores = a.len() == 4;
    if withscores && !(-i64::MAX / 2..=i64::MAX / 2).contains(&l) {
        return Err(CmdError::other("ERR value is out of range"));
    }
    let Some(z) = read_zset(ks, &a[1], ctx.now)? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let count = l.unsigned_abs();
    if count == 0 {
        return Ok(Reply::Array(Vec::new()));
    }
    let members = z.members();
    let rng = &mut ctx.rng;
    let entry = |pos: u32| {
        let (m, s) = members.at(pos).unwrap();
        (&m[..], *s)
    };
    let picked: Vec<(&[u8], f64)> = if l < 0 {
        if count > MAX_RANDOM_REPEATS {
            return Err(CmdError::other("ERR value is out of range"));
        }
        (0..count)
            .map(|_| entry(members.random_pos(|| rng.next_u64()).unwrap()))
            .collect()
    } else if count as usize >= z.len() {
        Src::Z(z).items().collect()
    } else if count * 3 > z.len() as u64 {
        // Most of the set: drop random members until `count` remain.
        let mut keep: Vec<u32> = (0..members.capacity_slots() as u32)
            .filter(|&p| members.at(p).is_some())
            .collect();
        while keep.len() > count as usize {
            let i = rng.below(keep.len() as u64) as usize;
            keep.swap_remove(i);
        }
        keep.into_iter().map(entry).collect()
    } else {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(count as usize);
        while out.len() < count as usize {
            let p = members.random_pos(|| rng.next_u64()).unwrap();
            if seen.insert(p) {
                out.push(entry(p));
            }
        }
        out
    };
    Ok(with_scores(picked.into_iter(), withscores))
}

/// Redis's parseScanCursorOrReply: strtoul over the whole argument.
fn scan_cursor(a: &[u8]) -> Result<u64, CmdError> {
    let bad = || CmdError::other("ERR invalid cursor");
    if a.first().is_some_and(|c| c.is_ascii_whitespace()) {
        return Err(bad());
    }
    let (neg, digits) = match a.first() {
        Some(b'-') => (true, &a[1..]),
        Some(b'+') => (false, &a[1..]),
        _ => (false, a),
    };
    if digits.is_empty() {
        // strtoul converted nothing: only an empty argument ends where it started.
        return if a.is_empty() { Ok(0) } else { Err(bad()) };
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return Err(bad());
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((c - b'0') as u64))
            .ok_or_else(bad)?;
    }
    Ok(if neg { v.wrapping_neg() } else { v })
}

/// ZSCAN key cursor [MATCH pattern] [COUNT count]
fn zscan(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let cursor = scan_cursor(&a[2])?;
    let Some(z) = read_zset(ks, &a[1], ctx.now)? else {
        return Ok(Reply::Array(vec![
            Reply::bulk("0"),
            Reply::Array(Vec::new()),
        ]));
    };
    let mut pattern: Option<&[u8]> = None;
    let mut count = 10usize;
    let mut j = 3;
    while j < a.len() {
        if args::is(&a[j], "count") && j + 1 < a.len() {
            let n = args::int(&a[j + 1])?;
            if n < 1 {
                return Err(CmdError::Syntax);
            }
            count = n as usize;
            j += 2;
        } else if args::is(&a[j], "match") && j + 1 < a.len() {
            pattern = Some(&a[j + 1]).map(|p| &p[..]).filter(|p| *p != b"*");
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let mut items = Vec::new();
    let mut push = |m: &[u8], s: f64| {
        if pattern.map_or(true, |p| args::glob_match(p, m, false)) {
            items.push(Reply::bulk(m));
            items.push(Reply::bulk(format_double(s)));
        }
    };
    let next = if z.is_compact() {
        // A listpack is scanned whole, in order.
        for (m, s) in z.iter() {
            push(m, s);
        }
        0
    } else {
        z.members().scan(cursor, count, |m, s| push(m, *s))
    };
    Ok(Reply::Array(vec![
        Reply::bulk(next.to_string()),
        Reply::Array(items),
    ]))
}

#[cfg(test)]
mod tests {
    //! Expected replies were taken from redis-server 7.0.15.
    use super::*;
    use crate::cmd::testing::{bulk, run};

    fn ks_with(cmds: &[&[&str]]) -> Keyspace {
        let mut ks = Keyspace::new();
        for c in cmds {
            let r = run(&mut ks, 0, c);
            assert!(!r.is_error(), "{c:?}: {r:?}");
        }
        ks
    }

    fn err(s: &'static str) -> Reply {
        Reply::error(s)
    }

    fn bulks(items: &[&str]) -> Reply {
        Reply::Array(items.iter().map(|s| bulk(s)).collect())
    }

    fn pairs(items: &[(&str, f64)]) -> Reply {
        Reply::Pairs(
            items
                .iter()
                .map(|(m, s)| (bulk(m), Reply::Double(*s)))
                .collect(),
        )
    }

    fn abcde() -> Keyspace {
        ks_with(&[&[
            "ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e",
        ]])
    }

    fn encoding(ks: &Keyspace, key: &str) -> &'static str {
        ks.peek(key.as_bytes(), 0).unwrap().value.encoding()
    }

    #[test]
    fn zadd_options_and_errors() {
        let mut ks = Keyspace::new();
        assert_eq!(
            run(&mut ks, 0, &["ZADD", "z", "1", "a", "2", "b"]),
            Reply::Int(2)
        );
        assert_eq!(run(&mut ks, 0, &["ZADD", "z", "0x10", "h"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["ZSCORE", "z", "h"]), Reply::Double(16.0));
        for (args, e) in [
            (
                &["ZADD", "z", "1e400", "b"][..],
                "ERR value is not a valid float",
            ),
            (&["ZADD", "z", "nan", "b"], "ERR value is not a valid float"),
            (
                &["ZADD", "z", "nx", "xx", "1", "a"],
                "ERR XX and NX options at the same time are not compatible",
            ),
            (
                &["ZADD", "z", "gt", "lt", "1", "a"],
                "ERR GT, LT, and/or NX options at the same time are not compatible",
            ),
            (
                &["ZADD", "z", "gt", "nx", "1", "a"],
                "ERR GT, LT, and/or NX options at the same time are not compatible",
            ),
            (
                &["ZADD", "z", "incr", "1", "a", "2", "b"],
                "ERR INCR option supports a single increment-element pair",
            ),
            (&["ZADD", "z", "1", "a", "2"], "ERR syntax error"),
            (&["ZADD", "z", "ch", "nx"], "ERR syntax error"),
            (
                &["ZADD", "z", "1"],
                "ERR wrong number of arguments for 'zadd' command",
            ),
        ] {
            assert_eq!(run(&mut ks, 0, args), err(e), "{args:?}");
        }
        assert_eq!(
            run(&mut ks, 0, &["ZADD", "z", "inf", "p", "-inf", "n"]),
            Reply::Int(2)
        );
        assert_eq!(
            run(&mut ks, 0, &["ZADD", "z", "incr", "-inf", "p"]),
            err("ERR resulting score is not a number (NaN)")
        );
        assert_eq!(
            run(&mut ks, 0, &["ZADD", "z", "incr", "nx", "5", "a"]),
            Reply::Nil
        );
        assert_eq!(
            run(&mut ks, 0, &["ZADD", "z", "incr", "xx", "5", "zz"]),
            Reply::Nil
        );
        assert_eq!(
            run(&mut ks, 0, &["ZADD", "z", "incr", "2.5", "a"]),
            Reply::Double(3.5)
        );
        assert_eq!(
            run(
                &mut ks,
                0,
                &["ZADD", "z", "gt", "ch", "1", "a", "100", "new"]
            ),
            Reply::Int(1)
        );
        assert_eq!(
            run(
                &mut ks,
                0,
                &["ZADD", "z", "lt", "ch", "1", "a", "100", "new"]
            ),
            Reply::Int(1)
        );
        assert_eq!(
            run(&mut ks, 0, &["ZADD", "z", "xx", "9", "a", "9", "nosuch"]),
            Reply::Int(0)
        );
        assert_eq!(run(&mut ks, 0, &["ZSCORE", "z", "a"]), Reply::Double(9.0));
        assert_eq!(
            run(&mut ks, 0, &["ZADD", "z", "ch", "9", "a"]),
            Reply::Int(0)
        );
        assert_eq!(
            run(&mut ks, 0, &["ZADD", "nokey", "xx", "1", "a"]),
            Reply::Int(0)
        );
        assert!(!ks.exists(b"nokey", 0));
        run(&mut ks, 0, &["SET", "s", "v"]);
        assert_eq!(
            run(&mut ks, 0, &["ZADD", "s", "1", "a"]),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
    }

    #[test]
    fn zincrby_zscore_zmscore_zrank() {
        let mut ks = abcde();
        assert_eq!(
            run(&mut ks, 0, &["ZINCRBY", "z", "1.5", "a"]),
            Reply::Double(2.5)
        );
        assert_eq!(
            run(&mut ks, 0, &["ZINCRBY", "z", "x", "a"]),
            err("ERR value is not a valid float")
        );
        assert_eq!(
            run(&mut ks, 0, &["ZINCRBY", "n", "-inf", "a"]),
            Reply::Double(f64::NEG_INFINITY)
        );
        assert_eq!(
            run(&mut ks, 0, &["ZINCRBY", "n", "inf", "a"]),
            err("ERR resulting score is not a number (NaN)")
        );
        assert_eq!(run(&mut ks, 0, &["ZSCORE", "z", "nosuch"]), Reply::Nil);
        assert_eq!(run(&mut ks, 0, &["ZSCORE", "nokey", "a"]), Reply::Nil);
        assert_eq!(
            run(&mut ks, 0, &["ZMSCORE", "z", "a", "nosuch", "e"]),
            Reply::Array(vec![Reply::Double(2.5), Reply::Nil, Reply::Double(5.0)])
        );
        assert_eq!(
            run(&mut ks, 0, &["ZMSCORE", "nokey", "a"]),
            Reply::Array(vec![Reply::Nil])
        );
        assert_eq!(run(&mut ks, 0, &["ZRANK", "z", "c"]), Reply::Int(2));
        assert_eq!(run(&mut ks, 0, &["ZREVRANK", "z", "c"]), Reply::Int(2));
        assert_eq!(run(&mut ks, 0, &["ZRANK", "z", "e"]), Reply::Int(4));
        assert_eq!(run(&mut ks, 0, &["ZREVRANK", "z", "e"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["ZRANK", "z", "nosuch"]), Reply::Nil);
        assert_eq!(run(&mut ks, 0, &["ZRANK", "nokey", "a"]), Reply::Nil);
        assert_eq!(
            run(&mut ks, 0, &["ZRANK", "z", "a", "withscore"]),
            err("ERR wrong number of arguments for 'zrank' command")
        );
        assert_eq!(run(&mut ks, 0, &["ZCARD", "z"]), Reply::Int(5));
        assert_eq!(run(&mut ks, 0, &["ZCARD", "nokey"]), Reply::Int(0));
    }

    #[test]
    fn zrange_by_rank() {
        let mut ks = abcde();
        assert_eq!(
            run(&mut ks, 0, &["ZRANGE", "z", "-3", "-1"]),
            bulks(&["c", "d", "e"])
        );
        assert_eq!(run(&mut ks, 0, &["ZRANGE", "z", "5", "2"]), bulks(&[]));
        assert_eq!(
            run(&mut ks, 0, &["ZRANGE", "z", "-100", "100"]),
            bulks(&["a", "b", "c", "d", "e"])
        );
        assert_eq!(
            run(&mut ks, 0, &["ZRANGE", "z", "0", "1", "rev", "withscores"]),
            pairs(&[("e", 5.0), ("d", 4.0)])
        );
        assert_eq!(
            run(&mut ks, 0, &["ZREVRANGE", "z", "1", "-2"]),
            bulks(&["d", "c", "b"])
        );
        assert_eq!(
            run(
                &mut ks,
                0,
                &["ZRANGE", "z", "0", "0", "withscores", "withscores"]
            ),
            pairs(&[("a", 1.0)])
        );
        assert_eq!(run(&mut ks, 0, &["ZRANGE", "nokey", "0", "-1"]), bulks(&[]));
        for (args, e) in [
            (&["ZRANGE", "z", "0", "-1", "limit", "0", "1"][..],
                "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"),
            (&["ZRANGE", "z", "[a", "[b", "bylex", "withscores"],
                "ERR syntax error, WITHSCORES not supported in combination with BYLEX"),
            (&["ZRANGE", "z", "0", "1", "byscore", "bylex"], "ERR syntax error"),
            (&["ZRANGE", "z", "0", "1", "rev", "rev"], "ERR syntax error"),
            (&["ZRANGE", "z", "0", "1", "limit", "0"], "ERR syntax error"),
            (&["ZRANGE", "z", "x", "1"], "ERR value is not an integer or out of range"),
            (&["ZRANGE", "z", "(1", "2", "byscore", "limit", "0", "x"], "ERR value is not an integer or out of range"),
            (&["ZRANGEBYSCORE", "z", "1", "2", "rev"], "ERR syntax error"),
            (&["ZREVRANGE", "z", "0", "1", "byscore"], "ERR syntax error"),
        ] {
            assert_eq!(run(&mut ks, 0, args), err(e), "{args:?}");
        }
    }

    #[test]
    fn zrange_by_score() {
        let mut ks = abcde();
        let q = |ks: &mut Keyspace, a: &[&str]| run(ks, 0, a);
        assert_eq!(
            q(&mut ks, &["ZRANGEBYSCORE", "z", "", "3"]),
            bulks(&["a", "b", "c"])
        );
        assert_eq!(
            q(&mut ks, &["ZRANGEBYSCORE", "z", " 1", "0x3"]),
            bulks(&["a", "b", "c"])
        );
        assert_eq!(
            q(&mut ks, &["ZRANGEBYSCORE", "z", "1e400", "inf"]),
            bulks(&[])
        );
        assert_eq!(q(&mut ks, &["ZRANGEBYSCORE", "z", "(", "1"]), bulks(&["a"]));
        assert_eq!(
            q(&mut ks, &["ZRANGEBYSCORE", "z", "(1", "(5"]),
            bulks(&["b", "c", "d"])
        );
        assert_eq!(q(&mut ks, &["ZRANGEBYSCORE", "z", "3", "1"]), bulks(&[]));
        assert_eq!(
            q(&mut ks, &["ZRANGEBYSCORE", "z", "1", "3 "]),
            err("ERR min or max is not a float")
        );
        assert_eq!(
            q(&mut ks, &["ZRANGEBYSCORE", "z", "nan", "3"]),
            err("ERR min or max is not a float")
        );
        assert_eq!(
            q(
                &mut ks,
                &["ZRANGEBYSCORE", "z", "1", "5", "limit", "-1", "2"]
            ),
            bulks(&[])
        );
        assert_eq!(
            q(
                &mut ks,
                &["ZRANGEBYSCORE", "z", "1", "5", "limit", "1", "-1"]
            ),
            bulks(&["b", "c", "d", "e"])
        );
        assert_eq!(
            q(
                &mut ks,
                &["ZRANGEBYSCORE", "z", "1", "5", "limit", "0", "0"]
            ),
            bulks(&[])
        );
        assert_eq!(
            q(
                &mut ks,
                &["ZRANGEBYSCORE", "z", "1", "5", "limit", "5", "1"]
            ),
            bulks(&[])
        );
        assert_eq!(
            q(
                &mut ks,
                &[
                    "ZREVRANGEBYSCORE",
                    "z",
                    "5",
                    "1",
                    "withscores",
                    "limit",
                    "1",
                    "2"
                ]
            ),
            pairs(&[("d", 4.0), ("c", 3.0)])
        );
        assert_eq!(
            q(
                &mut ks,
                &["ZRANGE", "z", "5", "(1", "byscore", "rev", "limit", "0", "2"]
            ),
            bulks(&["e", "d"])
        );
        assert_eq!(
            q(&mut ks, &["ZRANGE", "z", "(1", "5", "byscore", "rev"]),
            bulks(&[])
        );
        assert_eq!(q(&mut ks, &["ZCOUNT", "z", "-inf", "+inf"]), Reply::Int(5));
        assert_eq!(q(&mut ks, &["ZCOUNT", "z", "(1", "3"]), Reply::Int(2));
        assert_eq!(
            q(&mut ks, &["ZCOUNT", "z", "x", "3"]),
            err("ERR min or max is not a float")
        );
        assert_eq!(q(&mut ks, &["ZCOUNT", "nokey", "1", "2"]), Reply::Int(0));
    }

    #[test]
    fn equal_scores_and_lex_ranges() {
        let mut ks = ks_with(&[&[
            "ZADD", "l", "0", "g", "0", "f", "0", "e", "0", "d", "0", "c", "0", "b", "0", "a",
        ]]);
        let q = |ks: &mut Keyspace, a: &[&str]| run(ks, 0, a);
        assert_eq!(
            q(&mut ks, &["ZRANGE", "l", "0", "2"]),
            bulks(&["a", "b", "c"])
        );
        assert_eq!(
            q(&mut ks, &["ZRANGEBYLEX", "l", "[b", "(e"]),
            bulks(&["b", "c", "d"])
        );
        assert_eq!(
            q(
                &mut ks,
                &["ZRANGEBYLEX", "l", "(b", "[e", "limit", "1", "2"]
            ),
            bulks(&["d", "e"])
        );
        assert_eq!(
            q(
                &mut ks,
                &["ZREVRANGEBYLEX", "l", "+", "-", "limit", "0", "3"]
            ),
            bulks(&["g", "f", "e"])
        );
        assert_eq!(
            q(&mut ks, &["ZREVRANGEBYLEX", "l", "[e", "[b"]),
            bulks(&["e", "d", "c", "b"])
        );
        assert_eq!(
            q(&mut ks, &["ZRANGE", "l", "[e", "[b", "bylex", "rev"]),
            bulks(&["e", "d", "c", "b"])
        );
        assert_eq!(q(&mut ks, &["ZRANGEBYLEX", "l", "+", "-"]), bulks(&[]));
        assert_eq!(q(&mut ks, &["ZRANGEBYLEX", "l", "-", "-"]), bulks(&[]));
        for bad in [
            &["ZRANGEBYLEX", "l", "a", "[b"][..],
            &["ZRANGEBYLEX", "l", "[a", "+x"],
            &["ZRANGEBYLEX", "l", "", "+"],
        ] {
            assert_eq!(
                q(&mut ks, bad),
                err("ERR min or max not valid string range item")
            );
        }
        assert_eq!(q(&mut ks, &["ZLEXCOUNT", "l", "[b", "[f"]), Reply::Int(5));
        assert_eq!(q(&mut ks, &["ZLEXCOUNT", "l", "-", "+"]), Reply::Int(7));
        assert_eq!(
            q(&mut ks, &["ZLEXCOUNT", "l", "foo", "+"]),
            err("ERR min or max not valid string range item")
        );
        assert_eq!(
            q(&mut ks, &["ZREMRANGEBYLEX", "l", "[a", "[b"]),
            Reply::Int(2)
        );
        assert_eq!(
            q(&mut ks, &["ZREMRANGEBYLEX", "l", "(x", "+"]),
            Reply::Int(0)
        );
        assert_eq!(
            q(&mut ks, &["ZRANGE", "l", "0", "-1"]),
            bulks(&["c", "d", "e", "f", "g"])
        );
    }

    #[test]
    fn zremrange_deletes_emptied_keys() {
        let mut ks = abcde();
        let q = |ks: &mut Keyspace, a: &[&str]| run(ks, 0, a);
        assert_eq!(
            q(&mut ks, &["ZREMRANGEBYRANK", "z", "0", "0"]),
            Reply::Int(1)
        );
        assert_eq!(
            q(&mut ks, &["ZREMRANGEBYRANK", "z", "-1", "-1"]),
            Reply::Int(1)
        );
        assert_eq!(
            q(&mut ks, &["ZREMRANGEBYRANK", "z", "5", "10"]),
            Reply::Int(0)
        );
        assert_eq!(
            q(&mut ks, &["ZREMRANGEBYRANK", "z", "x", "1"]),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            q(&mut ks, &["ZRANGE", "z", "0", "-1"]),
            bulks(&["b", "c", "d"])
        );
        assert_eq!(
            q(&mut ks, &["ZREMRANGEBYSCORE", "z", "x", "1"]),
            err("ERR min or max is not a float")
        );
        assert_eq!(
            q(&mut ks, &["ZREMRANGEBYSCORE", "z", "(2", "3"]),
            Reply::Int(1)
        );
        assert_eq!(
            q(&mut ks, &["ZREMRANGEBYSCORE", "z", "-inf", "+inf"]),
            Reply::Int(2)
        );
        assert!(!ks.exists(b"z", 0));
        assert_eq!(
            q(&mut ks, &["ZREMRANGEBYSCORE", "z", "-inf", "+inf"]),
            Reply::Int(0)
        );
        let mut ks = abcde();
        assert_eq!(
            run(&mut ks, 0, &["ZREM", "z", "a", "nosuch", "b"]),
            Reply::Int(2)
        );
        assert_eq!(
            run(&mut ks, 0, &["ZREM", "z", "c", "d", "e"]),
            Reply::Int(3)
        );
        assert!(!ks.exists(b"z", 0));
        assert_eq!(run(&mut ks, 0, &["ZREM", "z", "a"]), Reply::Int(0));
    }

    #[test]
    fn pops() {
        let mut ks = abcde();
        let q = |ks: &mut Keyspace, a: &[&str]| run(ks, 0, a);
        assert_eq!(
            q(&mut ks, &["ZPOPMIN", "z"]),
            Reply::Array(vec![bulk("a"), Reply::Double(1.0)])
        );
        assert_eq!(q(&mut ks, &["ZPOPMAX", "z", "1"]), pairs(&[("e", 5.0)]));
        assert_eq!(q(&mut ks, &["ZPOPMIN", "z", "0"]), pairs(&[]));
        assert_eq!(q(&mut ks, &["ZPOPMIN", "nokey"]), Reply::Array(vec![]));
        assert_eq!(q(&mut ks, &["ZPOPMIN", "nokey", "2"]), pairs(&[]));
        assert_eq!(
            q(&mut ks, &["ZPOPMIN", "z", "-1"]),
            err("ERR value is out of range, must be positive")
        );
        assert_eq!(
            q(&mut ks, &["ZPOPMIN", "z", "x"]),
            err("ERR value is out of range, must be positive")
        );
        assert_eq!(
            q(&mut ks, &["ZPOPMIN", "z", "1", "2"]),
            err("ERR syntax error")
        );
        assert_eq!(
            q(&mut ks, &["ZPOPMAX", "z", "10"]),
            pairs(&[("d", 4.0), ("c", 3.0), ("b", 2.0)])
        );
        assert!(!ks.exists(b"z", 0));
    }

    #[test]
    fn zmpop_and_blocking_pops() {
        let mut ks = ks_with(&[&["ZADD", "m", "1", "a", "2", "b"], &["SET", "str", "v"]]);
        let q = |ks: &mut Keyspace, a: &[&str]| run(ks, 0, a);
        let mpop = |key: &str, items: &[(&str, f64)]| {
            Reply::Array(vec![
                bulk(key),
                Reply::Array(
                    items
                        .iter()
                        .map(|(m, s)| Reply::Array(vec![bulk(m), Reply::Double(*s)]))
                        .collect(),
                ),
            ])
        };
        assert_eq!(
            q(&mut ks, &["ZMPOP", "1", "m", "min"]),
            mpop("m", &[("a", 1.0)])
        );
        assert_eq!(q(&mut ks, &["ZMPOP", "1", "nokey", "min"]), Reply::NilArray);
        assert_eq!(
            q(&mut ks, &["ZMPOP", "2", "nokey", "m", "MAX", "count", "5"]),
            mpop("m", &[("b", 2.0)])
        );
        assert!(!ks.exists(b"m", 0));
        for (args, e) in [
            (
                &["ZMPOP", "1", "m", "min", "count", "0"][..],
                "ERR count should be greater than 0",
            ),
            (
                &["ZMPOP", "0", "m", "min"],
                "ERR numkeys should be greater than 0",
            ),
            (
                &["ZMPOP", "x", "m", "min"],
                "ERR numkeys should be greater than 0",
            ),
            (&["ZMPOP", "1", "m", "foo"], "ERR syntax error"),
            (&["ZMPOP", "1", "m", "min", "count"], "ERR syntax error"),
            (
                &["ZMPOP", "1", "m", "min", "count", "1", "count", "2"],
                "ERR syntax error",
            ),
            (&["ZMPOP", "2", "m", "min"], "ERR syntax error"),
            (
                &["ZMPOP", "9223372036854775807", "m", "min"],
                "ERR syntax error",
            ),
            (
                &["ZMPOP", "1", "str", "min"],
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            (
                &["BZMPOP", "-1", "1", "m", "min"],
                "ERR timeout is negative",
            ),
            (
                &["BZMPOP", "x", "1", "m", "min"],
                "ERR timeout is not a float or out of range",
            ),
            (
                &["BZMPOP", "x", "0", "m", "min"],
                "ERR numkeys should be greater than 0",
            ),
            (
                &["BZMPOP", "0", "1", "m", "min", "count", "0"],
                "ERR count should be greater than 0",
            ),
            (&["BZPOPMIN", "m", "-1"], "ERR timeout is negative"),
            (&["BZPOPMIN", "m", "inf"], "ERR timeout is negative"),
            (&["BZPOPMIN", "m", "1e30"], "ERR timeout is negative"),
            (
                &["BZPOPMIN", "m", "x"],
                "ERR timeout is not a float or out of range",
            ),
            (
                &["BZPOPMIN", "m", ""],
                "ERR timeout is not a float or out of range",
            ),
            (
                &["BZPOPMIN", "m", "nan"],
                "ERR timeout is not a float or out of range",
            ),
            (
                &["BZPOPMIN", "m", " 1"],
                "ERR timeout is not a float or out of range",
            ),
            (
                &["BZPOPMIN", "str", "m", "0"],
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
        ] {
            assert_eq!(q(&mut ks, args), err(e), "{args:?}");
        }
        // Nothing to pop: a null array, for the server to block on.
        assert_eq!(q(&mut ks, &["BZPOPMIN", "m", "0"]), Reply::NilArray);
        assert_eq!(q(&mut ks, &["BZPOPMIN", "m", "-0.0001"]), Reply::NilArray);
        assert_eq!(q(&mut ks, &["BZPOPMIN", "m", "0x10"]), Reply::NilArray);
        assert_eq!(
            q(&mut ks, &["BZMPOP", "0.5", "1", "m", "min"]),
            Reply::NilArray
        );
        q(&mut ks, &["ZADD", "m", "1", "a", "2", "b", "3", "c"]);
        assert_eq!(
            q(&mut ks, &["BZPOPMAX", "nokey", "m", "0"]),
            Reply::Array(vec![bulk("m"), bulk("c"), Reply::Double(3.0)])
        );
        assert_eq!(
            q(&mut ks, &["BZPOPMIN", "m", "0"]),
            Reply::Array(vec![bulk("m"), bulk("a"), Reply::Double(1.0)])
        );
        assert_eq!(
            q(
                &mut ks,
                &["BZMPOP", "0", "2", "nokey", "m", "max", "count", "2"]
            ),
            mpop("m", &[("b", 2.0)])
        );
        assert!(!ks.exists(b"m", 0));
    }

    fn with_set(ks: &mut Keyspace, key: &str, members: &[&str]) {
        let mut s = SlabMap::new();
        for m in members {
            s.insert(m.as_bytes(), ());
        }
        ks.set(key.as_bytes(), Value::Set(Box::new(s)), 0);
    }

    #[test]
    fn union_inter_diff() {
        let mut ks = ks_with(&[
            &["ZADD", "z", "1", "a", "2", "b", "3", "c"],
            &["SET", "str", "v"],
        ]);
        with_set(&mut ks, "s", &["a", "x"]);
        let q = |ks: &mut Keyspace, a: &[&str]| run(ks, 0, a);
        assert_eq!(
            q(&mut ks, &["ZUNION", "2", "z", "s", "withscores"]),
            pairs(&[("x", 1.0), ("a", 2.0), ("b", 2.0), ("c", 3.0)])
        );
        assert_eq!(
            q(
                &mut ks,
                &[
                    "ZUNION",
                    "2",
                    "z",
                    "s",
                    "weights",
                    "2",
                    "3",
                    "withscores",
                    "aggregate",
                    "max"
                ]
            ),
            pairs(&[("a", 3.0), ("x", 3.0), ("b", 4.0), ("c", 6.0)])
        );
        assert_eq!(
            q(
                &mut ks,
                &[
                    "ZUNION",
                    "2",
                    "z",
                    "s",
                    "weights",
                    "2",
                    "3",
                    "aggregate",
                    "min",
                    "withscores"
                ]
            ),
            pairs(&[("a", 2.0), ("x", 3.0), ("b", 4.0), ("c", 6.0)])
        );
        assert_eq!(
            q(&mut ks, &["ZINTER", "2", "z", "s", "withscores"]),
            pairs(&[("a", 2.0)])
        );
        // inf * 0 is 0; inf + -inf is 0.
        assert_eq!(
            q(
                &mut ks,
                &["ZINTER", "2", "z", "s", "weights", "0", "inf", "withscores"]
            ),
            pairs(&[("a", f64::INFINITY)])
        );
        assert_eq!(
            q(
                &mut ks,
                &[
                    "ZUNION",
                    "2",
                    "z",
                    "z",
                    "weights",
                    "inf",
                    "-inf",
                    "withscores"
                ]
            ),
            pairs(&[("a", 0.0), ("b", 0.0), ("c", 0.0)])
        );
        assert_eq!(
            q(&mut ks, &["ZDIFF", "2", "z", "s", "withscores"]),
            pairs(&[("b", 2.0), ("c", 3.0)])
        );
        assert_eq!(q(&mut ks, &["ZDIFF", "2", "z", "z"]), bulks(&[]));
        assert_eq!(q(&mut ks, &["ZINTERCARD", "2", "z", "s"]), Reply::Int(1));
        assert_eq!(
            q(&mut ks, &["ZINTERCARD", "1", "z", "limit", "2"]),
            Reply::Int(2)
        );
        assert_eq!(
            q(&mut ks, &["ZINTERCARD", "2", "z", "s", "limit", "0"]),
            Reply::Int(1)
        );
        for (args, e) in [
            (
                &["ZUNION", "0", "z"][..],
                "ERR at least 1 input key is needed for 'zunion' command",
            ),
            (
                &["ZINTERSTORE", "d", "0", "z"],
                "ERR at least 1 input key is needed for 'zinterstore' command",
            ),
            (&["ZUNION", "2", "z"], "ERR syntax error"),
            (
                &["ZUNION", "x", "z"],
                "ERR value is not an integer or out of range",
            ),
            (&["ZUNION", "9223372036854775807", "z"], "ERR syntax error"),
            (
                &["ZUNION", "1", "z", "weights", "1", "2"],
                "ERR syntax error",
            ),
            (
                &["ZUNION", "1", "z", "weights", "x"],
                "ERR weight value is not a float",
            ),
            (
                &["ZUNION", "1", "z", "aggregate", "foo"],
                "ERR syntax error",
            ),
            (&["ZUNION", "1", "z", "aggregate"], "ERR syntax error"),
            (&["ZUNION", "1", "z", "foo"], "ERR syntax error"),
            (
                &["ZUNION", "2", "str", "z", "foo"],
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            (
                &["ZUNIONSTORE", "d", "1", "z", "withscores"],
                "ERR syntax error",
            ),
            (&["ZDIFF", "1", "z", "weights", "1"], "ERR syntax error"),
            (
                &["ZINTERCARD", "1", "z", "limit", "-1"],
                "ERR LIMIT can't be negative",
            ),
            (
                &["ZINTERCARD", "1", "z", "limit", "x"],
                "ERR LIMIT can't be negative",
            ),
            (&["ZINTERCARD", "1", "z", "withscores"], "ERR syntax error"),
        ] {
            assert_eq!(q(&mut ks, args), err(e), "{args:?}");
        }
    }

    #[test]
    fn store_commands_replace_or_delete_the_destination() {
        let mut ks = ks_with(&[
            &["ZADD", "z", "1", "a", "2", "b", "3", "c"],
            &["SET", "d", "v"],
        ]);
        with_set(&mut ks, "s", &["a", "x"]);
        let q = |ks: &mut Keyspace, a: &[&str]| run(ks, 0, a);
        assert_eq!(
            q(&mut ks, &["ZUNIONSTORE", "d", "2", "z", "s"]),
            Reply::Int(4)
        );
        assert_eq!(
            q(&mut ks, &["ZRANGE", "d", "0", "-1", "withscores"]),
            pairs(&[("x", 1.0), ("a", 2.0), ("b", 2.0), ("c", 3.0)])
        );
        assert_eq!(encoding(&ks, "d"), "listpack");
        assert_eq!(
            q(&mut ks, &["ZINTERSTORE", "d", "2", "z", "nokey"]),
            Reply::Int(0)
        );
        assert!(!ks.exists(b"d", 0));
        assert_eq!(q(&mut ks, &["ZDIFFSTORE", "d", "1", "z"]), Reply::Int(3));
        assert_eq!(
            q(&mut ks, &["ZRANGESTORE", "d", "z", "1", "2", "byscore"]),
            Reply::Int(2)
        );
        assert_eq!(q(&mut ks, &["ZRANGE", "d", "0", "-1"]), bulks(&["a", "b"]));
        assert_eq!(
            q(&mut ks, &["ZRANGESTORE", "d", "z", "0", "0", "rev"]),
            Reply::Int(1)
        );
        assert_eq!(q(&mut ks, &["ZRANGE", "d", "0", "-1"]), bulks(&["c"]));
        assert_eq!(
            q(&mut ks, &["ZRANGESTORE", "d", "z", "5", "6", "byscore"]),
            Reply::Int(0)
        );
        assert!(!ks.exists(b"d", 0));
        assert_eq!(
            q(&mut ks, &["ZRANGESTORE", "d", "nokey", "0", "-1"]),
            Reply::Int(0)
        );
        assert_eq!(
            q(&mut ks, &["ZRANGESTORE", "d", "z", "0", "-1", "withscores"]),
            err("ERR syntax error")
        );
        q(&mut ks, &["SET", "str", "v"]);
        assert_eq!(
            q(&mut ks, &["ZRANGESTORE", "str", "z", "0", "0"]),
            Reply::Int(1)
        );
        assert_eq!(ks.peek(b"str", 0).unwrap().value.type_name(), "zset");
        assert_eq!(
            q(&mut ks, &["ZRANGESTORE", "d", "s", "0", "-1"]),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
    }

    #[test]
    fn encodings_and_negative_zero() {
        let long = "a".repeat(84);
        let mut ks = ks_with(&[&["ZADD", "big", "1", &long]]);
        assert_eq!(encoding(&ks, "big"), "skiplist");
        run(&mut ks, 0, &["ZADD", "big", "-0", "e"]);
        let s = run(&mut ks, 0, &["ZSCORE", "big", "e"]);
        assert!(matches!(s, Reply::Double(v) if v == 0.0 && v.is_sign_negative()));
        run(&mut ks, 0, &["ZREM", "big", &long]);
        assert_eq!(encoding(&ks, "big"), "skiplist");
        assert_eq!(
            run(&mut ks, 0, &["ZUNIONSTORE", "big2", "1", "big"]),
            Reply::Int(1)
        );
        assert_eq!(encoding(&ks, "big2"), "listpack");
        let s = run(&mut ks, 0, &["ZSCORE", "big2", "e"]);
        assert!(matches!(s, Reply::Double(v) if !v.is_sign_negative()));
        let u = run(&mut ks, 0, &["ZUNION", "1", "big", "withscores"]);
        assert!(
            matches!(&u, Reply::Pairs(p) if matches!(p[0].1, Reply::Double(v) if v.is_sign_negative()))
        );
        run(&mut ks, 0, &["ZADD", "small", "-0", "e"]);
        let s = run(&mut ks, 0, &["ZSCORE", "small", "e"]);
        assert!(matches!(s, Reply::Double(v) if !v.is_sign_negative()));
        assert_eq!(encoding(&ks, "small"), "listpack");
    }

    #[test]
    fn zrandmember() {
        let mut ks = abcde();
        let q = |ks: &mut Keyspace, a: &[&str]| run(ks, 0, a);
        assert!(matches!(q(&mut ks, &["ZRANDMEMBER", "z"]), Reply::Bulk(_)));
        assert_eq!(q(&mut ks, &["ZRANDMEMBER", "nokey"]), Reply::Nil);
        assert_eq!(q(&mut ks, &["ZRANDMEMBER", "nokey", "3"]), bulks(&[]));
        assert_eq!(q(&mut ks, &["ZRANDMEMBER", "z", "0"]), bulks(&[]));
        assert_eq!(
            q(&mut ks, &["ZRANDMEMBER", "z", "100", "withscores"]),
            pairs(&[("e", 5.0), ("d", 4.0), ("c", 3.0), ("b", 2.0), ("a", 1.0)])
        );
        for n in ["3", "1", "4"] {
            let Reply::Array(items) = q(&mut ks, &["ZRANDMEMBER", "z", n]) else {
                panic!()
            };
            let mut seen: Vec<_> = items.clone();
            seen.dedup();
            assert_eq!(items.len(), n.parse::<usize>().unwrap());
            let set: std::collections::HashSet<_> =
                items.iter().map(|r| format!("{r:?}")).collect();
            assert_eq!(set.len(), items.len(), "distinct");
        }
        let Reply::Pairs(p) = q(&mut ks, &["ZRANDMEMBER", "z", "-20", "withscores"]) else {
            panic!()
        };
        assert_eq!(p.len(), 20);
        for (args, e) in [
            (&["ZRANDMEMBER", "z", "-9223372036854775808"][..],
                "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"),
            (&["ZRANDMEMBER", "z", "x"], "ERR value is not an integer or out of range"),
            (&["ZRANDMEMBER", "z", "1", "foo"], "ERR syntax error"),
            (&["ZRANDMEMBER", "z", "1", "withscores", "foo"], "ERR syntax error"),
            (&["ZRANDMEMBER", "z", "-4611686018427387904", "withscores"], "ERR value is out of range"),
        ] {
            assert_eq!(q(&mut ks, args), err(e), "{args:?}");
        }
    }

    #[test]
    fn zscan() {
        let mut ks = ks_with(&[
            &["ZADD", "z", "1", "a", "2", "b", "0.1", "c"],
            &["SET", "str", "v"],
        ]);
        let q = |ks: &mut Keyspace, a: &[&str]| run(ks, 0, a);
        let page = |cursor: &str, items: &[&str]| Reply::Array(vec![bulk(cursor), bulks(items)]);
        assert_eq!(
            q(&mut ks, &["ZSCAN", "z", "0", "count", "1"]),
            page("0", &["c", "0.10000000000000001", "a", "1", "b", "2"])
        );
        assert_eq!(
            q(&mut ks, &["ZSCAN", "z", "-1", "match", "a*"]),
            page("0", &["a", "1"])
        );
        assert_eq!(
            q(&mut ks, &["ZSCAN", "nokey", "0", "count", "0"]),
            page("0", &[])
        );
        for (args, e) in [
            (&["ZSCAN", "z", "x"][..], "ERR invalid cursor"),
            (
                &["ZSCAN", "z", "18446744073709551616"],
                "ERR invalid cursor",
            ),
            (&["ZSCAN", "z", "0", "count", "0"], "ERR syntax error"),
            (
                &["ZSCAN", "z", "0", "count", "x"],
                "ERR value is not an integer or out of range",
            ),
            (&["ZSCAN", "z", "0", "match"], "ERR syntax error"),
            (&["ZSCAN", "z", "0", "foo", "1"], "ERR syntax error"),
            (
                &["ZSCAN", "str", "0"],
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
        ] {
            assert_eq!(q(&mut ks, args), err(e), "{args:?}");
        }
        // A skiplist-encoded set is scanned by cursor and every member shows up.
        let mut ks = Keyspace::new();
        for i in 0..300 {
            run(
                &mut ks,
                0,
                &["ZADD", "big", &i.to_string(), &format!("m{i}")],
            );
        }
        let mut cursor = "0".to_string();
        let mut seen = std::collections::HashSet::new();
        loop {
            let Reply::Array(r) = run(&mut ks, 0, &["ZSCAN", "big", &cursor, "count", "7"]) else {
                panic!()
            };
            let (Reply::Bulk(c), Reply::Array(items)) = (&r[0], &r[1]) else {
                panic!()
            };
            for kv in items.chunks(2) {
                seen.insert(format!("{:?}", kv[0]));
            }
            cursor = String::from_utf8(c.to_vec()).unwrap();
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen.len(), 300);
    }

    #[test]
    fn key_positions_of_numkeys_commands() {
        let argv = |a: &[&str]| -> Vec<Arg> {
            a.iter()
                .map(|s| Arg::copy_from_slice(s.as_bytes()))
                .collect()
        };
        let keys = |a: &[&str]| {
            let v = argv(a);
            crate::cmd::lookup(&v[0]).unwrap().key_positions(&v)
        };
        let bad = Err(CmdError::other(
            "ERR Invalid arguments specified for command",
        ));
        assert_eq!(keys(&["ZUNION", "0", "a"]), bad);
        assert_eq!(keys(&["ZUNION", "2", "a"]), bad);
        assert_eq!(keys(&["ZUNION", "1", "a", "b"]), Ok(vec![2]));
        assert_eq!(
            keys(&["ZUNIONSTORE", "d", "2", "a", "b", "weights", "1", "2"]),
            Ok(vec![1, 3, 4])
        );
        assert_eq!(keys(&["ZMPOP", "2", "a", "b", "min"]), Ok(vec![2, 3]));
        assert_eq!(keys(&["BZMPOP", "0", "2", "a", "b", "min"]), Ok(vec![3, 4]));
        assert_eq!(keys(&["BZPOPMIN", "a", "b", "0"]), Ok(vec![1, 2]));
        assert_eq!(keys(&["ZRANGESTORE", "d", "s", "0", "1"]), Ok(vec![1, 2]));
    }

    #[test]
    fn changes_are_signalled_and_binary_members_work() {
        let mut ks = ks_with(&[&["ZADD", "z", "1", "a"]]);
        ks.add_interest(b"z");
        run(&mut ks, 0, &["ZADD", "z", "1", "a"]);
        assert!(ks.take_dirty().is_empty(), "no change, no signal");
        run(&mut ks, 0, &["ZINCRBY", "z", "1", "a"]);
        assert_eq!(ks.take_dirty().len(), 1);
        run(&mut ks, 0, &["ZREM", "z", "nosuch"]);
        assert!(ks.take_dirty().is_empty());
        run(&mut ks, 0, &["ZPOPMIN", "z"]);
        assert_eq!(ks.take_dirty().len(), 1);
        let mut ks = Keyspace::new();
        let m: &[u8] = b"\x00\xff\r\n";
        crate::cmd::testing::run_bytes(&mut ks, 0, &[b"ZADD", b"", b"1", m]);
        assert_eq!(
            crate::cmd::testing::run_bytes(&mut ks, 0, &[b"ZRANGE", b"", b"0", b"-1"]),
            Reply::Array(vec![Reply::bulk(m)])
        );
    }
}
