//! Hash commands.
//!
//! Also holds the cursor and option parsing that HSCAN shares with SSCAN.

use super::args::{self, Arg};
use super::error::CmdError;
use super::table::{flags::*, CommandSpec, Handler, KeySpec, Keys};
use super::{ReadCtx, WriteCtx};
use crate::keyspace::rng::Rng;
use crate::keyspace::slab_map::{Key, SlabMap};
use crate::keyspace::value::parse_strict_i64;
use crate::keyspace::{Keyspace, Value};
use crate::resp::Reply;

type Hash = SlabMap<Box<[u8]>>;

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        group: "hash",
        since: "2.0.0",
        summary: "Set the string value of a hash field",
        acl: &["write", "hash", "fast"],
        ..CommandSpec::new(
            "hset",
            -4,
            WRITE | DENYOOM | FAST,
            Keys::ONE,
            Handler::Write(hset),
        )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "insert"], 1, 0, 1)],
        group: "hash",
        since: "2.0.0",
        summary: "Set the value of a hash field, only if the field does not exist",
        acl: &["write", "hash", "fast"],
        ..CommandSpec::new(
            "hsetnx",
            4,
            WRITE | DENYOOM | FAST,
            Keys::ONE,
            Handler::Write(hsetnx),
        )
    },
    CommandSpec {
        group: "hash",
        since: "2.0.0",
        summary: "Get the value of a hash field",
        acl: &["read", "hash", "fast"],
        ..CommandSpec::new("hget", 3, READONLY | FAST, Keys::ONE, Handler::Read(hget))
    },
    CommandSpec {
        group: "hash",
        since: "2.0.0",
        summary: "Set multiple hash fields to multiple values",
        acl: &["write", "hash", "fast"],
        ..CommandSpec::new(
            "hmset",
            -4,
            WRITE | DENYOOM | FAST,
            Keys::ONE,
            Handler::Write(hset),
        )
    },
    CommandSpec {
        group: "hash",
        since: "2.0.0",
        summary: "Get the values of all the given hash fields",
        acl: &["read", "hash", "fast"],
        ..CommandSpec::new(
            "hmget",
            -3,
            READONLY | FAST,
            Keys::ONE,
            Handler::Read(hmget),
        )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "delete"], 1, 0, 1)],
        group: "hash",
        since: "2.0.0",
        summary: "Delete one or more hash fields",
        acl: &["write", "hash", "fast"],
        ..CommandSpec::new("hdel", -3, WRITE | FAST, Keys::ONE, Handler::Write(hdel))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RO"], 1, 0, 1)],
        group: "hash",
        since: "2.0.0",
        summary: "Determine if a hash field exists",
        acl: &["read", "hash", "fast"],
        ..CommandSpec::new(
            "hexists",
            3,
            READONLY | FAST,
            Keys::ONE,
            Handler::Read(hexists),
        )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RO"], 1, 0, 1)],
        group: "hash",
        since: "2.0.0",
        summary: "Get the number of fields in a hash",
        acl: &["read", "hash", "fast"],
        ..CommandSpec::new("hlen", 2, READONLY | FAST, Keys::ONE, Handler::Read(hlen))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RO"], 1, 0, 1)],
        group: "hash",
        since: "3.2.0",
        summary: "Get the length of the value of a hash field",
        acl: &["read", "hash", "fast"],
        ..CommandSpec::new(
            "hstrlen",
            3,
            READONLY | FAST,
            Keys::ONE,
            Handler::Read(hstrlen),
        )
    },
    CommandSpec {
        tips: &["nondeterministic_output_order"],
        group: "hash",
        since: "2.0.0",
        summary: "Get all the fields and values in a hash",
        acl: &["read", "hash", "slow"],
        ..CommandSpec::new("hgetall", 2, READONLY, Keys::ONE, Handler::Read(hgetall))
    },
    CommandSpec {
        tips: &["nondeterministic_output_order"],
        group: "hash",
        since: "2.0.0",
        summary: "Get all the fields in a hash",
        acl: &["read", "hash", "slow"],
        ..CommandSpec::new("hkeys", 2, READONLY, Keys::ONE, Handler::Read(hkeys))
    },
    CommandSpec {
        tips: &["nondeterministic_output_order"],
        group: "hash",
        since: "2.0.0",
        summary: "Get all the values in a hash",
        acl: &["read", "hash", "slow"],
        ..CommandSpec::new("hvals", 2, READONLY, Keys::ONE, Handler::Read(hvals))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "update"], 1, 0, 1)],
        group: "hash",
        since: "2.0.0",
        summary: "Increment the integer value of a hash field by the given number",
        acl: &["write", "hash", "fast"],
        ..CommandSpec::new(
            "hincrby",
            4,
            WRITE | DENYOOM | FAST,
            Keys::ONE,
            Handler::Write(hincrby),
        )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "update"], 1, 0, 1)],
        group: "hash",
        since: "2.6.0",
        summary: "Increment the float value of a hash field by the given amount",
        acl: &["write", "hash", "fast"],
        ..CommandSpec::new(
            "hincrbyfloat",
            4,
            WRITE | DENYOOM | FAST,
            Keys::ONE,
            Handler::Write(hincrbyfloat),
        )
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        group: "hash",
        since: "6.2.0",
        summary: "Get one or multiple random fields from a hash",
        acl: &["read", "hash", "slow"],
        ..CommandSpec::new(
            "hrandfield",
            -2,
            READONLY,
            Keys::ONE,
            Handler::Read(hrandfield),
        )
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        group: "hash",
        since: "2.8.0",
        summary: "Incrementally iterate hash fields and associated values",
        acl: &["read", "hash", "slow"],
        ..CommandSpec::new("hscan", -3, READONLY, Keys::ONE, Handler::Read(hscan))
    },
];

/// The hash at `key` for a read: `Ok(None)` if absent, WRONGTYPE if another type.
fn read_hash<'a>(ks: &'a Keyspace, key: &[u8], now: u64) -> Result<Option<&'a Hash>, CmdError> {
    match ks.read(key, now) {
        None => Ok(None),
        Some(e) => match &e.value {
            Value::Hash(h) => Ok(Some(&**h)),
            _ => Err(CmdError::WrongType),
        },
    }
}

/// The hash at `key` for a write: `Ok(None)` if absent (or expired, which deletes
/// it), WRONGTYPE if another type.
fn write_hash<'a>(
    ks: &'a mut Keyspace,
    key: &[u8],
    now: u64,
) -> Result<Option<&'a mut Hash>, CmdError> {
    match ks.write(key, now) {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::Hash(h) => Ok(Some(&mut **h)),
            _ => Err(CmdError::WrongType),
        },
    }
}

/// Sets `field` to `value`; true if the field is new.
fn put(h: &mut Hash, field: &[u8], value: &[u8]) -> bool {
    h.insert(field, value.into()).is_none()
}

/// HSET key field value [field value ...]
/// HMSET key field value [field value ...]
fn hset(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    if a.len() % 2 == 1 {
        return Err(CmdError::WrongArity(args::lower(&a[0])));
    }
    let key = &a[1];
    let pairs = a[2..].chunks_exact(2);
    let added = match write_hash(ks, key, ctx.now)? {
        Some(h) => {
            let n = pairs.filter(|p| put(h, &p[0], &p[1])).count();
            ks.modified(key);
            n
        }
        None => {
            let mut h = Hash::new();
            let n = pairs.filter(|p| put(&mut h, &p[0], &p[1])).count();
            ks.set(key, Value::Hash(Box::new(h)), ctx.now);
            n
        }
    };
    Ok(if args::is(&a[0], "hmset") {
        Reply::ok()
    } else {
        Reply::Int(added as i64)
    })
}

/// HSETNX key field value
fn hsetnx(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let (key, field, value) = (&a[1], &a[2], &a[3]);
    match write_hash(ks, key, ctx.now)? {
        Some(h) if h.contains(field) => return Ok(Reply::Int(0)),
        Some(h) => {
            put(h, field, value);
            ks.modified(key);
        }
        None => {
            let mut h = Hash::new();
            put(&mut h, field, value);
            ks.set(key, Value::Hash(Box::new(h)), ctx.now);
        }
    }
    Ok(Reply::Int(1))
}

/// HGET key field
fn hget(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(
        match read_hash(ks, &a[1], ctx.now)?.and_then(|h| h.get(&a[2])) {
            Some(v) => Reply::bulk(v),
            None => Reply::Nil,
        },
    )
}

/// HMGET key field [field ...]
fn hmget(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let h = read_hash(ks, &a[1], ctx.now)?;
    Ok(Reply::Array(
        a[2..]
            .iter()
            .map(|f| match h.and_then(|h| h.get(f)) {
                Some(v) => Reply::bulk(v),
                None => Reply::Nil,
            })
            .collect(),
    ))
}

/// HDEL key field [field ...]
fn hdel(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let key = &a[1];
    let Some(h) = write_hash(ks, key, ctx.now)? else {
        return Ok(Reply::Int(0));
    };
    let deleted = a[2..].iter().filter(|f| h.remove(f).is_some()).count();
    if h.is_empty() {
        ks.remove(key, ctx.now);
    } else if deleted > 0 {
        ks.modified(key);
    }
    Ok(Reply::Int(deleted as i64))
}

/// HEXISTS key field
fn hexists(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let found = read_hash(ks, &a[1], ctx.now)?.is_some_and(|h| h.contains(&a[2]));
    Ok(Reply::Int(found as i64))
}

/// HLEN key
fn hlen(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(Reply::Int(
        read_hash(ks, &a[1], ctx.now)?.map_or(0, |h| h.len()) as i64,
    ))
}

/// HSTRLEN key field
fn hstrlen(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let len = read_hash(ks, &a[1], ctx.now)?
        .and_then(|h| h.get(&a[2]))
        .map_or(0, |v| v.len());
    Ok(Reply::Int(len as i64))
}

/// HGETALL key
fn hgetall(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let pairs = read_hash(ks, &a[1], ctx.now)?
        .map(|h| {
            h.iter()
                .map(|(f, v)| (Reply::bulk(f), Reply::bulk(v)))
                .collect()
        })
        .unwrap_or_default();
    Ok(Reply::Map(pairs))
}

/// HKEYS key
fn hkeys(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let h = read_hash(ks, &a[1], ctx.now)?;
    Ok(Reply::bulk_array(h.into_iter().flat_map(|h| h.keys())))
}

/// HVALS key
fn hvals(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let h = read_hash(ks, &a[1], ctx.now)?;
    Ok(Reply::bulk_array(
        h.into_iter().flat_map(|h| h.iter().map(|(_, v)| v)),
    ))
}

/// HINCRBY key field increment
fn hincrby(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let (key, field) = (&a[1], &a[2]);
    let by = args::int(&a[3])?;
    let hash = write_hash(ks, key, ctx.now)?;
    let current = match hash.as_deref().and_then(|h| h.get(field)) {
        Some(v) => parse_strict_i64(v)
            .ok_or_else(|| CmdError::other("ERR hash value is not an integer"))?,
        None => 0,
    };
    let new = current.checked_add(by).ok_or(CmdError::Overflow)?;
    store_field(ks, key, field, new.to_string().as_bytes(), ctx.now);
    Ok(Reply::Int(new))
}

/// HINCRBYFLOAT key field increment
fn hincrbyfloat(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let (key, field, by) = (&a[1], &a[2], &a[3]);
    let current = match write_hash(ks, key, ctx.now) {
        Ok(h) => h.and_then(|h| h.get(field)).map(|v| v.to_vec()),
        Err(e) => {
            // Redis rejects a bad increment before it looks at the key's type.
            incr_float(b"0", by)?;
            return Err(e);
        }
    };
    let new = incr_float(current.as_deref().unwrap_or(b"0"), by)?;
    store_field(ks, key, field, &new, ctx.now);
    Ok(Reply::bulk(new))
}

/// Writes one field, creating the hash if needed; the caller checked the type.
fn store_field(ks: &mut Keyspace, key: &[u8], field: &[u8], value: &[u8], now: u64) {
    match write_hash(ks, key, now) {
        Ok(Some(h)) => {
            put(h, field, value);
            ks.modified(key);
        }
        _ => {
            let mut h = Hash::new();
            put(&mut h, field, value);
            ks.set(key, Value::Hash(Box::new(h)), now);
        }
    }
}

/// HINCRBYFLOAT's arithmetic: Redis's long double (see `keyspace::float`), with
/// HINCRBYFLOAT's own checks and texts: an infinite increment is refused before the
/// stored value is looked at.
fn incr_float(current: &[u8], by: &[u8]) -> Result<Vec<u8>, CmdError> {
    use crate::keyspace::float::{incr_long_double, IncrFloatError};
    match incr_long_double(b"0", by) {
        Err(IncrFloatError::NanOrInfinity) => {
            return Err(CmdError::other("ERR value is NaN or Infinity"))
        }
        Err(_) => return Err(CmdError::NotFloat),
        Ok(_) => {}
    }
    incr_long_double(current, by).map_err(|e| match e {
        IncrFloatError::IncrNotFloat => CmdError::NotFloat,
        IncrFloatError::CurrentNotFloat => CmdError::other("ERR hash value is not a float"),
        IncrFloatError::NanOrInfinity => CmdError::NanOrInfinity,
    })
}

/// HRANDFIELD key [count [WITHVALUES]]
fn hrandfield(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    if a.len() == 2 {
        let Some(h) = read_hash(ks, &a[1], ctx.now)? else {
            return Ok(Reply::Nil);
        };
        let pos = h
            .random_pos(|| ctx.rng.next_u64())
            .expect("hashes are never empty");
        return Ok(Reply::bulk(h.at(pos).unwrap().0));
    }
    let count = random_count(&a[2])?;
    let with_values = match a.len() {
        3 => false,
        4 if args::is(&a[3], "withvalues") => {
            if !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
                return Err(CmdError::other("ERR value is out of range"));
            }
            true
        }
        _ => return Err(CmdError::Syntax),
    };
    let Some(h) = read_hash(ks, &a[1], ctx.now)? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let picks = random_positions(h, count, &mut ctx.rng);
    let entry = |p: &u32| h.at(*p).unwrap();
    Ok(if with_values {
        Reply::Pairs(
            picks
                .iter()
                .map(entry)
                .map(|(f, v)| (Reply::bulk(f), Reply::bulk(v)))
                .collect(),
        )
    } else {
        Reply::Array(picks.iter().map(|p| Reply::bulk(entry(p).0)).collect())
    })
}

/// The count of HRANDFIELD and SRANDMEMBER: any i64 but i64::MIN, with Redis's text.
pub(super) fn random_count(a: &[u8]) -> Result<i64, CmdError> {
    match args::int(a)? {
        i64::MIN => Err(CmdError::other(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        )),
        n => Ok(n),
    }
}

/// Slab positions for HRANDFIELD / SRANDMEMBER / SPOP with a count: `count >= 0`
/// picks distinct elements (all of them, in slab order, when count covers the
/// collection), `count < 0` picks |count| elements with repeats. Deterministic in
/// (collection layout, rng state).
pub(super) fn random_positions<V>(m: &SlabMap<V>, count: i64, rng: &mut Rng) -> Vec<u32> {
    let len = m.len();
    if len == 0 || count == 0 {
        return Vec::new();
    }
    if count < 0 {
        let n = count.unsigned_abs();
        // Grows as it fills: a huge count fails by running out of memory only if the
        // reply would really be that large.
        let mut out = Vec::with_capacity(n.min(1024) as usize);
        for _ in 0..n {
            out.push(m.random_pos(|| rng.next_u64()).unwrap());
        }
        return out;
    }
    let count = count as u64;
    let all = || (0..m.capacity_slots() as u32).filter(|&p| m.at(p).is_some());
    if count >= len as u64 {
        return all().collect();
    }
    let count = count as usize;
    if count * 3 > len {
        // Many picks: a partial Fisher-Yates shuffle of all positions.
        let mut positions: Vec<u32> = all().collect();
        for i in 0..count {
            let j = i + rng.below((len - i) as u64) as usize;
            positions.swap(i, j);
        }
        positions.truncate(count);
        return positions;
    }
    // Few picks: draw until enough distinct ones.
    let mut seen = std::collections::HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let p = m.random_pos(|| rng.next_u64()).unwrap();
        if seen.insert(p) {
            out.push(p);
        }
    }
    out
}

/// HSCAN key cursor [MATCH pattern] [COUNT count]
fn hscan(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let cursor = parse_cursor(&a[2])?;
    let Some(e) = ks.read(&a[1], ctx.now) else {
        return Ok(scan_reply(0, Vec::new()));
    };
    let Value::Hash(h) = &e.value else {
        return Err(CmdError::WrongType);
    };
    let opts = ScanOptions::parse(&a[3..])?;
    let mut items = Vec::new();
    let next = opts.scan(h, e.value.is_compact(), cursor, |f, v| {
        items.push(Reply::bulk(f));
        items.push(Reply::bulk(v));
    });
    Ok(scan_reply(next, items))
}

/// A *SCAN cursor as Redis's `parseScanCursorOrReply` reads it (strtoul: an optional
/// sign, a negative value wraps, no leading space, the whole string, no overflow).
pub(super) fn parse_cursor(a: &[u8]) -> Result<u64, CmdError> {
    let invalid = || CmdError::other("ERR invalid cursor");
    let (neg, digits) = match a.first() {
        Some(b'-') => (true, &a[1..]),
        Some(b'+') => (false, &a[1..]),
        _ => (false, a),
    };
    if a.is_empty() {
        return Ok(0);
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    let mut v: u64 = 0;
    for &d in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((d - b'0') as u64))
            .ok_or_else(invalid)?;
    }
    Ok(if neg { v.wrapping_neg() } else { v })
}

/// The MATCH and COUNT options of HSCAN and SSCAN.
pub(super) struct ScanOptions<'a> {
    pattern: Option<&'a [u8]>,
    count: usize,
}

impl<'a> ScanOptions<'a> {
    pub(super) fn parse(opts: &'a [Arg]) -> Result<ScanOptions<'a>, CmdError> {
        let mut o = ScanOptions {
            pattern: None,
            count: 10,
        };
        let mut i = 0;
        while i < opts.len() {
            let value = opts.get(i + 1).ok_or(CmdError::Syntax)?;
            if args::is(&opts[i], "count") {
                let n = args::int(value)?;
                if n < 1 {
                    return Err(CmdError::Syntax);
                }
                o.count = usize::try_from(n).unwrap_or(usize::MAX);
            } else if args::is(&opts[i], "match") {
                // "*" matches everything: skip the matcher, as Redis does.
                o.pattern = (&value[..] != b"*").then_some(&value[..]);
            } else {
                return Err(CmdError::Syntax);
            }
            i += 2;
        }
        Ok(o)
    }

    /// One step over `m`: a collection Redis keeps compact is returned whole with
    /// cursor 0; otherwise a slab scan from `cursor`. Calls `f` for each element whose
    /// key matches; returns the next cursor.
    pub(super) fn scan<V>(
        &self,
        m: &SlabMap<V>,
        compact: bool,
        cursor: u64,
        mut f: impl FnMut(&Key, &V),
    ) -> u64 {
        let mut visit = |k: &Key, v: &V| {
            if self.pattern.is_none_or(|p| args::glob_match(p, k, false)) {
                f(k, v)
            }
        };
        if compact {
            m.iter().for_each(|(k, v)| visit(k, v));
            return 0;
        }
        m.scan(cursor, self.count, visit)
    }
}

/// `[cursor, [elements...]]`
pub(super) fn scan_reply(cursor: u64, items: Vec<Reply>) -> Reply {
    Reply::Array(vec![
        Reply::bulk_string(cursor.to_string()),
        Reply::Array(items),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::testing::{bulk, run, run_bytes};

    fn err(s: &'static str) -> Reply {
        Reply::error(s)
    }

    fn arr(items: &[&str]) -> Reply {
        Reply::Array(items.iter().map(|s| bulk(s)).collect())
    }

    fn wrongtype() -> Reply {
        CmdError::WrongType.reply()
    }

    /// A keyspace with a string at "str" and hash h = {a:1, b:2, c:3}.
    fn fixture() -> Keyspace {
        let mut ks = Keyspace::new();
        run(&mut ks, 0, &["SET", "str", "x"]);
        assert_eq!(
            run(&mut ks, 0, &["HSET", "h", "a", "1", "b", "2", "c", "3"]),
            Reply::Int(3)
        );
        ks
    }

    #[test]
    fn hset_and_hmset() {
        let mut ks = Keyspace::new();
        assert_eq!(
            run(&mut ks, 0, &["HSET", "h", "f"]),
            err("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(
            run(&mut ks, 0, &["HSET", "h", "f", "v", "g"]),
            err("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(
            run(&mut ks, 0, &["hmset", "h", "f", "v", "g"]),
            err("ERR wrong number of arguments for 'hmset' command")
        );
        assert!(!ks.exists(b"h", 0));
        assert_eq!(
            run(&mut ks, 0, &["HSET", "h", "f", "v", "g", "w"]),
            Reply::Int(2)
        );
        assert_eq!(run(&mut ks, 0, &["HSET", "h", "f", "v2"]), Reply::Int(0));
        assert_eq!(
            run(&mut ks, 0, &["HSET", "h", "f", "v3", "n", "1", "n", "2"]),
            Reply::Int(1)
        );
        assert_eq!(run(&mut ks, 0, &["HGET", "h", "f"]), bulk("v3"));
        assert_eq!(run(&mut ks, 0, &["HGET", "h", "n"]), bulk("2"));
        assert_eq!(run(&mut ks, 0, &["HMSET", "h", "a", "1"]), Reply::ok());
        assert_eq!(run(&mut ks, 0, &["HLEN", "h"]), Reply::Int(4));
        run(&mut ks, 0, &["SET", "str", "x"]);
        assert_eq!(run(&mut ks, 0, &["HSET", "str", "f", "v"]), wrongtype());
        assert_eq!(run(&mut ks, 0, &["HMSET", "str", "f", "v"]), wrongtype());
    }

    #[test]
    fn hsetnx() {
        let mut ks = fixture();
        assert_eq!(run(&mut ks, 0, &["HSETNX", "h", "a", "9"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["HGET", "h", "a"]), bulk("1"));
        assert_eq!(run(&mut ks, 0, &["HSETNX", "h", "d", "4"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["HSETNX", "new", "f", "v"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["HGET", "new", "f"]), bulk("v"));
        assert_eq!(run(&mut ks, 0, &["HSETNX", "str", "f", "v"]), wrongtype());
    }

    #[test]
    fn field_reads() {
        let mut ks = fixture();
        assert_eq!(run(&mut ks, 0, &["HGET", "h", "b"]), bulk("2"));
        assert_eq!(run(&mut ks, 0, &["HGET", "h", "zz"]), Reply::Nil);
        assert_eq!(run(&mut ks, 0, &["HGET", "nokey", "a"]), Reply::Nil);
        assert_eq!(
            run(&mut ks, 0, &["HMGET", "h", "a", "zz", "c"]),
            Reply::Array(vec![bulk("1"), Reply::Nil, bulk("3")])
        );
        assert_eq!(
            run(&mut ks, 0, &["HMGET", "nokey", "a", "b"]),
            Reply::Array(vec![Reply::Nil, Reply::Nil])
        );
        assert_eq!(run(&mut ks, 0, &["HEXISTS", "h", "a"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["HEXISTS", "h", "zz"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["HEXISTS", "nokey", "a"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["HLEN", "h"]), Reply::Int(3));
        assert_eq!(run(&mut ks, 0, &["HLEN", "nokey"]), Reply::Int(0));
        run(&mut ks, 0, &["HSET", "h", "long", "hello"]);
        assert_eq!(run(&mut ks, 0, &["HSTRLEN", "h", "long"]), Reply::Int(5));
        assert_eq!(run(&mut ks, 0, &["HSTRLEN", "h", "zz"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["HSTRLEN", "nokey", "a"]), Reply::Int(0));
        for cmd in [
            &["HGET", "str", "a"][..],
            &["HMGET", "str", "a"],
            &["HEXISTS", "str", "a"],
            &["HLEN", "str"],
            &["HSTRLEN", "str", "a"],
            &["HGETALL", "str"],
            &["HKEYS", "str"],
            &["HVALS", "str"],
            &["HDEL", "str", "a"],
        ] {
            assert_eq!(run(&mut ks, 0, cmd), wrongtype(), "{cmd:?}");
        }
    }

    #[test]
    fn whole_hash_reads() {
        let mut ks = fixture();
        assert_eq!(
            run(&mut ks, 0, &["HGETALL", "h"]),
            Reply::Map(vec![
                (bulk("a"), bulk("1")),
                (bulk("b"), bulk("2")),
                (bulk("c"), bulk("3")),
            ])
        );
        assert_eq!(run(&mut ks, 0, &["HKEYS", "h"]), arr(&["a", "b", "c"]));
        assert_eq!(run(&mut ks, 0, &["HVALS", "h"]), arr(&["1", "2", "3"]));
        assert_eq!(run(&mut ks, 0, &["HGETALL", "nokey"]), Reply::Map(vec![]));
        assert_eq!(run(&mut ks, 0, &["HKEYS", "nokey"]), arr(&[]));
        assert_eq!(run(&mut ks, 0, &["HVALS", "nokey"]), arr(&[]));
    }

    #[test]
    fn hdel_deletes_the_key_when_empty() {
        let mut ks = fixture();
        assert_eq!(run(&mut ks, 0, &["HDEL", "h", "zz"]), Reply::Int(0));
        assert_eq!(
            run(&mut ks, 0, &["HDEL", "h", "a", "a", "zz"]),
            Reply::Int(1)
        );
        assert_eq!(run(&mut ks, 0, &["HDEL", "nokey", "a"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["HDEL", "h", "b", "c"]), Reply::Int(2));
        assert!(!ks.exists(b"h", 0));
    }

    #[test]
    fn binary_and_empty_fields() {
        let mut ks = Keyspace::new();
        let f: &[u8] = b"\x00\xff\r\n";
        assert_eq!(
            run_bytes(&mut ks, 0, &[b"HSET", b"h", f, b"", b"", b"\x00"]),
            Reply::Int(2)
        );
        assert_eq!(run_bytes(&mut ks, 0, &[b"HGET", b"h", f]), bulk(""));
        assert_eq!(
            run_bytes(&mut ks, 0, &[b"HGET", b"h", b""]),
            Reply::bulk(b"\x00")
        );
        assert_eq!(
            run_bytes(&mut ks, 0, &[b"HSTRLEN", b"h", b""]),
            Reply::Int(1)
        );
        assert_eq!(
            run_bytes(&mut ks, 0, &[b"HDEL", b"h", b"", f]),
            Reply::Int(2)
        );
        assert!(!ks.exists(b"h", 0));
    }

    #[test]
    fn writes_signal_changes_only_when_something_changed() {
        let mut ks = fixture();
        ks.add_interest(b"h");
        ks.take_dirty();
        run(&mut ks, 0, &["HDEL", "h", "zz"]);
        run(&mut ks, 0, &["HSETNX", "h", "a", "x"]);
        assert!(ks.take_dirty().is_empty());
        run(&mut ks, 0, &["HSET", "h", "a", "x"]);
        assert!(!ks.take_dirty().is_empty());
        run(&mut ks, 0, &["HINCRBY", "h", "b", "1"]);
        assert!(!ks.take_dirty().is_empty());
    }

    #[test]
    fn expired_hash_is_replaced_by_a_new_one() {
        let mut ks = fixture();
        assert!(ks.set_expire(b"h", 100, 0));
        assert_eq!(run(&mut ks, 101, &["HGET", "h", "a"]), Reply::Nil);
        assert_eq!(run(&mut ks, 101, &["HSET", "h", "z", "1"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 101, &["HLEN", "h"]), Reply::Int(1));
        assert_eq!(ks.peek(b"h", 100).unwrap().expire_at(), None);
    }

    #[test]
    fn hincrby() {
        let mut ks = fixture();
        assert_eq!(
            run(&mut ks, 0, &["HINCRBY", "h", "a", "10"]),
            Reply::Int(11)
        );
        assert_eq!(
            run(&mut ks, 0, &["HINCRBY", "h", "a", "-20"]),
            Reply::Int(-9)
        );
        assert_eq!(run(&mut ks, 0, &["HGET", "h", "a"]), bulk("-9"));
        assert_eq!(
            run(&mut ks, 0, &["HINCRBY", "new", "f", "-5"]),
            Reply::Int(-5)
        );
        assert_eq!(
            run(&mut ks, 0, &["HINCRBY", "h", "a", "x"]),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            run(&mut ks, 0, &["HINCRBY", "h", "a", " 1"]),
            err("ERR value is not an integer or out of range")
        );
        run(
            &mut ks,
            0,
            &[
                "HSET",
                "h",
                "s",
                "abc",
                "z",
                "00",
                "big",
                "9223372036854775807",
            ],
        );
        for f in ["s", "z"] {
            assert_eq!(
                run(&mut ks, 0, &["HINCRBY", "h", f, "1"]),
                err("ERR hash value is not an integer")
            );
        }
        assert_eq!(
            run(&mut ks, 0, &["HINCRBY", "h", "big", "1"]),
            err("ERR increment or decrement would overflow")
        );
        assert_eq!(
            run(&mut ks, 0, &["HINCRBY", "h", "a", "-9223372036854775800"]),
            err("ERR increment or decrement would overflow")
        );
        assert_eq!(
            run(&mut ks, 0, &["HINCRBY", "h", "big", "-1"]),
            Reply::Int(i64::MAX - 1)
        );
        // The increment is parsed before the key's type is checked.
        assert_eq!(
            run(&mut ks, 0, &["HINCRBY", "str", "f", "x"]),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(run(&mut ks, 0, &["HINCRBY", "str", "f", "1"]), wrongtype());
        // A failed increment on a missing key creates nothing.
        assert_eq!(
            run(&mut ks, 0, &["HINCRBY", "none", "f", "x"]),
            err("ERR value is not an integer or out of range")
        );
        assert!(!ks.exists(b"none", 0));
    }

    #[test]
    fn hincrbyfloat() {
        let mut ks = fixture();
        let incr = |ks: &mut Keyspace, f: &str, by: &str| run(ks, 0, &["HINCRBYFLOAT", "h", f, by]);
        // Replies observed from redis-server 7.0.15.
        assert_eq!(incr(&mut ks, "a", "1.5"), bulk("2.5"));
        assert_eq!(incr(&mut ks, "z", "10.5"), bulk("10.5"));
        assert_eq!(incr(&mut ks, "z", "0.1"), bulk("10.6"));
        assert_eq!(run(&mut ks, 0, &["HGET", "h", "z"]), bulk("10.6"));
        assert_eq!(incr(&mut ks, "y", "5.0e3"), bulk("5000"));
        assert_eq!(incr(&mut ks, "q", "-0"), bulk("0"));
        assert_eq!(incr(&mut ks, "q2", "-0.0"), bulk("0"));
        assert_eq!(incr(&mut ks, "q3", "1e20"), bulk("100000000000000000000"));
        assert_eq!(incr(&mut ks, "q4", "1.5e-5"), bulk("0.000015"));
        assert_eq!(incr(&mut ks, "q5", "1e-20"), bulk("0"));
        assert_eq!(incr(&mut ks, "q6", "1e-300"), bulk("0"));
        assert_eq!(incr(&mut ks, "nn", "-5"), bulk("-5"));
        assert_eq!(incr(&mut ks, "nn", "0.5"), bulk("-4.5"));
        assert_eq!(incr(&mut ks, "nn2", "-0.5"), bulk("-0.5"));
        assert_eq!(
            incr(&mut ks, "a", "inf"),
            err("ERR value is NaN or Infinity")
        );
        assert_eq!(
            incr(&mut ks, "a", "-inf"),
            err("ERR value is NaN or Infinity")
        );
        for bad in ["abc", "nan", " 1", "1 ", ""] {
            assert_eq!(
                incr(&mut ks, "a", bad),
                err("ERR value is not a valid float"),
                "{bad:?}"
            );
        }
        run(
            &mut ks,
            0,
            &[
                "HSET", "h", "sp", " 1.5", "n", "nan", "i", "inf", "e", "", "w", "x",
            ],
        );
        for f in ["sp", "n", "e", "w"] {
            assert_eq!(
                incr(&mut ks, f, "1"),
                err("ERR hash value is not a float"),
                "{f}"
            );
        }
        assert_eq!(
            incr(&mut ks, "i", "1"),
            err("ERR increment would produce NaN or Infinity")
        );
        run(&mut ks, 0, &["HSET", "h", "zz", "00"]);
        assert_eq!(incr(&mut ks, "zz", "1"), bulk("1"));
        assert_eq!(
            run(&mut ks, 0, &["HINCRBYFLOAT", "str", "f", "x"]),
            err("ERR value is not a valid float")
        );
        assert_eq!(
            run(&mut ks, 0, &["HINCRBYFLOAT", "str", "f", "1"]),
            wrongtype()
        );
        assert_eq!(
            run(&mut ks, 0, &["HINCRBYFLOAT", "none", "f", "x"]),
            err("ERR value is not a valid float")
        );
        assert!(!ks.exists(b"none", 0));
    }

    #[test]
    fn hincrbyfloat_uses_long_double() {
        let mut ks = Keyspace::new();
        run(&mut ks, 0, &["HINCRBYFLOAT", "h", "f", "0.1"]);
        assert_eq!(
            run(&mut ks, 0, &["HINCRBYFLOAT", "h", "f", "0.2"]),
            bulk("0.3")
        );
        assert_eq!(
            run(&mut ks, 0, &["HINCRBYFLOAT", "h", "f", "inf"]),
            err("ERR value is NaN or Infinity")
        );
        assert_eq!(
            run(&mut ks, 0, &["HINCRBYFLOAT", "h", "g", "1e20"]),
            bulk("100000000000000000000")
        );
    }

    fn count_distinct(items: &[Reply]) -> usize {
        let mut v: Vec<_> = items.iter().map(|r| format!("{r:?}")).collect();
        v.sort();
        v.dedup();
        v.len()
    }

    #[test]
    fn hrandfield() {
        let mut ks = fixture();
        assert_eq!(run(&mut ks, 0, &["HRANDFIELD", "nokey"]), Reply::Nil);
        assert_eq!(run(&mut ks, 0, &["HRANDFIELD", "nokey", "3"]), arr(&[]));
        assert_eq!(
            run(&mut ks, 0, &["HRANDFIELD", "nokey", "-3", "withvalues"]),
            arr(&[])
        );
        assert_eq!(run(&mut ks, 0, &["HRANDFIELD", "h", "0"]), arr(&[]));
        assert_eq!(
            run(&mut ks, 0, &["HRANDFIELD", "h", "0", "WITHVALUES"]),
            Reply::Pairs(vec![])
        );
        let one = run(&mut ks, 0, &["HRANDFIELD", "h"]);
        assert!([bulk("a"), bulk("b"), bulk("c")].contains(&one));
        // A count covering the hash returns all of it.
        assert_eq!(
            run(&mut ks, 0, &["HRANDFIELD", "h", "3"]),
            arr(&["a", "b", "c"])
        );
        assert_eq!(
            run(&mut ks, 0, &["HRANDFIELD", "h", "100", "withvalues"]),
            Reply::Pairs(vec![
                (bulk("a"), bulk("1")),
                (bulk("b"), bulk("2")),
                (bulk("c"), bulk("3")),
            ])
        );
        let Reply::Array(two) = run(&mut ks, 0, &["HRANDFIELD", "h", "2"]) else {
            panic!()
        };
        assert_eq!(two.len(), 2);
        assert_eq!(count_distinct(&two), 2);
        let Reply::Array(many) = run(&mut ks, 0, &["HRANDFIELD", "h", "-50"]) else {
            panic!()
        };
        assert_eq!(many.len(), 50);
        assert!(count_distinct(&many) > 1, "repeats, but not one field only");
        let Reply::Pairs(pairs) = run(&mut ks, 0, &["HRANDFIELD", "h", "-5", "WITHVALUES"]) else {
            panic!()
        };
        assert_eq!(pairs.len(), 5);
        for (f, v) in pairs {
            let expect = match f {
                Reply::Bulk(ref b) if &b[..] == b"a" => "1",
                Reply::Bulk(ref b) if &b[..] == b"b" => "2",
                _ => "3",
            };
            assert_eq!(v, bulk(expect));
        }
        assert_eq!(
            run(&mut ks, 0, &["HRANDFIELD", "h", "x"]),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            run(&mut ks, 0, &["HRANDFIELD", "h", "1", "foo"]),
            err("ERR syntax error")
        );
        assert_eq!(
            run(&mut ks, 0, &["HRANDFIELD", "h", "1", "withvalues", "x"]),
            err("ERR syntax error")
        );
        assert_eq!(
            run(&mut ks, 0, &["HRANDFIELD", "h", "-9223372036854775808"]),
            err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
        );
        for huge in [
            "-4611686018427387904",
            "4611686018427387904",
            "-9223372036854775807",
        ] {
            assert_eq!(
                run(&mut ks, 0, &["HRANDFIELD", "nokey", huge, "withvalues"]),
                err("ERR value is out of range"),
                "{huge}"
            );
        }
        assert_eq!(
            run(&mut ks, 0, &["HRANDFIELD", "nokey", "x"]),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(run(&mut ks, 0, &["HRANDFIELD", "str"]), wrongtype());
        assert_eq!(run(&mut ks, 0, &["HRANDFIELD", "str", "-1"]), wrongtype());
    }

    #[test]
    fn random_positions_pick_distinct_members_from_large_maps() {
        let mut m = SlabMap::new();
        for i in 0..1000u32 {
            m.insert(format!("f{i}").as_bytes(), ());
        }
        for i in (0..1000u32).step_by(2) {
            m.remove(format!("f{i}").as_bytes());
        }
        let mut rng = Rng::new(1);
        for count in [1, 10, 166, 167, 400, 499] {
            let picks = random_positions(&m, count, &mut rng);
            assert_eq!(picks.len(), count as usize);
            let distinct: std::collections::HashSet<_> = picks.iter().collect();
            assert_eq!(distinct.len(), count as usize);
            assert!(picks.iter().all(|&p| m.at(p).is_some()));
        }
        assert_eq!(random_positions(&m, 500, &mut rng).len(), 500);
        assert_eq!(random_positions(&m, i64::MAX, &mut rng).len(), 500);
        assert_eq!(random_positions(&m, -1000, &mut rng).len(), 1000);
    }

    #[test]
    fn scan_cursor_parsing() {
        assert_eq!(parse_cursor(b"0"), Ok(0));
        assert_eq!(parse_cursor(b"00"), Ok(0));
        assert_eq!(parse_cursor(b"+5"), Ok(5));
        assert_eq!(parse_cursor(b""), Ok(0));
        assert_eq!(parse_cursor(b"-1"), Ok(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_cursor(b"-18446744073709551615"), Ok(1));
        for bad in [
            &b"x"[..],
            b" 1",
            b"1 ",
            b"18446744073709551616",
            b"-",
            b"1.5",
        ] {
            assert_eq!(
                parse_cursor(bad),
                Err(CmdError::other("ERR invalid cursor")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hscan_small_hash_returns_everything_at_once() {
        let mut ks = fixture();
        let all = arr(&["a", "1", "b", "2", "c", "3"]);
        for cursor in ["0", "5", "-1"] {
            assert_eq!(
                run(&mut ks, 0, &["HSCAN", "h", cursor, "COUNT", "1"]),
                Reply::Array(vec![bulk("0"), all.clone()])
            );
        }
        assert_eq!(
            run(
                &mut ks,
                0,
                &["HSCAN", "h", "0", "MATCH", "*", "MATCH", "a*"]
            ),
            Reply::Array(vec![bulk("0"), arr(&["a", "1"])])
        );
        assert_eq!(
            run(&mut ks, 0, &["HSCAN", "nokey", "0", "COUNT", "0"]),
            Reply::Array(vec![bulk("0"), arr(&[])])
        );
        assert_eq!(
            run(&mut ks, 0, &["HSCAN", "h", "x"]),
            err("ERR invalid cursor")
        );
        assert_eq!(
            run(&mut ks, 0, &["HSCAN", "nokey", "x"]),
            err("ERR invalid cursor")
        );
        for opts in [
            &["COUNT", "0"][..],
            &["COUNT", "-1"],
            &["COUNT"],
            &["MATCH"],
            &["TYPE", "string"],
            &["NOVALUES"],
            &["foo", "1"],
        ] {
            let mut cmd = vec!["HSCAN", "h", "0"];
            cmd.extend_from_slice(opts);
            assert_eq!(run(&mut ks, 0, &cmd), err("ERR syntax error"), "{opts:?}");
        }
        assert_eq!(
            run(&mut ks, 0, &["HSCAN", "h", "0", "COUNT", "x"]),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(run(&mut ks, 0, &["HSCAN", "str", "0"]), wrongtype());
    }

    #[test]
    fn hscan_large_hash_iterates_with_a_cursor() {
        let mut ks = Keyspace::new();
        for i in 0..300 {
            run(
                &mut ks,
                0,
                &["HSET", "h", &format!("f{i}"), &format!("v{i}")],
            );
        }
        let mut cursor = "0".to_string();
        let mut seen = std::collections::BTreeMap::new();
        let mut calls = 0;
        loop {
            let Reply::Array(r) = run(&mut ks, 0, &["HSCAN", "h", &cursor, "COUNT", "20"]) else {
                panic!()
            };
            let (Reply::Bulk(c), Reply::Array(items)) = (&r[0], &r[1]) else {
                panic!()
            };
            assert!(items.len() <= 40);
            for pair in items.chunks(2) {
                seen.insert(format!("{:?}", pair[0]), pair[1].clone());
            }
            calls += 1;
            cursor = String::from_utf8(c.to_vec()).unwrap();
            if cursor == "0" {
                break;
            }
        }
        assert!(calls > 1);
        assert_eq!(seen.len(), 300);
        let Reply::Array(r) = run(
            &mut ks,
            0,
            &["HSCAN", "h", "0", "MATCH", "f1?", "COUNT", "1000"],
        ) else {
            panic!()
        };
        assert_eq!(r[0], bulk("0"));
        assert!(matches!(&r[1], Reply::Array(items) if items.len() == 20));
    }
}
