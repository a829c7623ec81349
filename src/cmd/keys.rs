//! Generic key commands (DEL, EXISTS, RENAME, COPY, SCAN, EXPIRE and friends, TTL...)
//! and the keyspace-wide ones (DBSIZE, FLUSHDB, OBJECT, MEMORY USAGE).

use super::args::{self, Arg};
use super::error::{self, CmdError};
use super::table::{flags::*, CommandSpec, Handler, KeySpec, Keys};
use super::{ReadCtx, WriteCtx};
use crate::keyspace::zset::ZSet;
use crate::keyspace::{Entry, Keyspace, Value};
use crate::resp::Reply;

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        tips: &["request_policy:multi_shard", "response_policy:agg_sum"],
        key_specs: &[KeySpec::range(&["RM", "delete"], 1, -1, 1)],
        since: "1.0.0",
        summary: "Delete a key",
        acl: &["keyspace", "write", "slow"],
        ..CommandSpec::new("del", -2, WRITE, Keys::ALL, Handler::Write(del))
    },
    CommandSpec {
        tips: &["request_policy:multi_shard", "response_policy:agg_sum"],
        key_specs: &[KeySpec::range(&["RM", "delete"], 1, -1, 1)],
        since: "4.0.0",
        summary: "Delete a key asynchronously in another thread. Otherwise it is just as DEL, but non blocking.",
        acl: &["keyspace", "write", "fast"],
        ..CommandSpec::new("unlink", -2, WRITE | FAST, Keys::ALL, Handler::Write(del))
    },
    CommandSpec {
        tips: &["request_policy:multi_shard", "response_policy:agg_sum"],
        key_specs: &[KeySpec::range(&["RO"], 1, -1, 1)],
        since: "1.0.0",
        summary: "Determine if a key exists",
        acl: &["keyspace", "read", "fast"],
        ..CommandSpec::new("exists", -2, READONLY | FAST, Keys::ALL, Handler::Read(exists))
    },
    CommandSpec {
        tips: &["request_policy:multi_shard", "response_policy:agg_sum"],
        key_specs: &[KeySpec::range(&["RO"], 1, -1, 1)],
        since: "3.2.1",
        summary: "Alters the last access time of a key(s). Returns the number of existing keys specified.",
        acl: &["keyspace", "read", "fast"],
        ..CommandSpec::new("touch", -2, READONLY | FAST, Keys::ALL, Handler::Read(touch))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RO"], 1, 0, 1)],
        since: "1.0.0",
        summary: "Determine the type stored at key",
        acl: &["keyspace", "read", "fast"],
        ..CommandSpec::new("type", 2, READONLY | FAST, Keys::ONE, Handler::Read(type_cmd))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, 0, 1), KeySpec::range(&["OW", "update"], 2, 0, 1)],
        since: "1.0.0",
        summary: "Rename a key",
        acl: &["keyspace", "write", "slow"],
        ..CommandSpec::new("rename", 3, WRITE, Keys::TWO, Handler::Write(rename))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, 0, 1), KeySpec::range(&["OW", "insert"], 2, 0, 1)],
        since: "1.0.0",
        summary: "Rename a key, only if the new key does not exist",
        acl: &["keyspace", "write", "fast"],
        ..CommandSpec::new("renamenx", 3, WRITE | FAST, Keys::TWO, Handler::Write(renamenx))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RO", "access"], 1, 0, 1), KeySpec::range(&["OW", "update"], 2, 0, 1)],
        since: "6.2.0",
        summary: "Copy a key",
        acl: &["keyspace", "write", "slow"],
        ..CommandSpec::new("copy", -3, WRITE | DENYOOM, Keys::TWO, Handler::Write(copy))
    },
    CommandSpec {
        tips: &["request_policy:all_shards", "nondeterministic_output_order"],
        since: "1.0.0",
        summary: "Find all keys matching the given pattern",
        acl: &["keyspace", "read", "slow", "dangerous"],
        ..CommandSpec::new("keys", 2, READONLY, Keys::NONE, Handler::Read(keys))
    },
    CommandSpec {
        tips: &["nondeterministic_output", "request_policy:special"],
        since: "2.8.0",
        summary: "Incrementally iterate the keys space",
        acl: &["keyspace", "read", "slow"],
        ..CommandSpec::new("scan", -2, READONLY, Keys::NONE, Handler::Read(scan))
    },
    CommandSpec {
        tips: &["request_policy:all_shards", "nondeterministic_output"],
        since: "1.0.0",
        summary: "Return a random key from the keyspace",
        acl: &["keyspace", "read", "slow"],
        ..CommandSpec::new("randomkey", 1, READONLY, Keys::NONE, Handler::Read(randomkey))
    },
    CommandSpec {
        since: "1.0.0",
        summary: "Set a key's time to live in seconds",
        acl: &["keyspace", "write", "fast"],
        ..CommandSpec::new("expire", -3, WRITE | FAST, Keys::ONE, Handler::Write(expire))
    },
    CommandSpec {
        since: "2.6.0",
        summary: "Set a key's time to live in milliseconds",
        acl: &["keyspace", "write", "fast"],
        ..CommandSpec::new("pexpire", -3, WRITE | FAST, Keys::ONE, Handler::Write(pexpire))
    },
    CommandSpec {
        since: "1.2.0",
        summary: "Set the expiration for a key as a UNIX timestamp",
        acl: &["keyspace", "write", "fast"],
        ..CommandSpec::new("expireat", -3, WRITE | FAST, Keys::ONE, Handler::Write(expireat))
    },
    CommandSpec {
        since: "2.6.0",
        summary: "Set the expiration for a key as a UNIX timestamp specified in milliseconds",
        acl: &["keyspace", "write", "fast"],
        ..CommandSpec::new("pexpireat", -3, WRITE | FAST, Keys::ONE, Handler::Write(pexpireat))
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        since: "1.0.0",
        summary: "Get the time to live for a key in seconds",
        acl: &["keyspace", "read", "fast"],
        ..CommandSpec::new("ttl", 2, READONLY | FAST, Keys::ONE, Handler::Read(ttl))
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        since: "2.6.0",
        summary: "Get the time to live for a key in milliseconds",
        acl: &["keyspace", "read", "fast"],
        ..CommandSpec::new("pttl", 2, READONLY | FAST, Keys::ONE, Handler::Read(pttl))
    },
    CommandSpec {
        since: "7.0.0",
        summary: "Get the expiration Unix timestamp for a key",
        acl: &["keyspace", "read", "fast"],
        ..CommandSpec::new("expiretime", 2, READONLY | FAST, Keys::ONE, Handler::Read(expiretime))
    },
    CommandSpec {
        since: "7.0.0",
        summary: "Get the expiration Unix timestamp for a key in milliseconds",
        acl: &["keyspace", "read", "fast"],
        ..CommandSpec::new("pexpiretime", 2, READONLY | FAST, Keys::ONE, Handler::Read(pexpiretime))
    },
    CommandSpec {
        since: "2.2.0",
        summary: "Remove the expiration from a key",
        acl: &["keyspace", "write", "fast"],
        ..CommandSpec::new("persist", 2, WRITE | FAST, Keys::ONE, Handler::Write(persist))
    },
    CommandSpec {
        tips: &["request_policy:all_shards", "response_policy:agg_sum"],
        group: "server",
        since: "1.0.0",
        summary: "Return the number of keys in the selected database",
        acl: &["keyspace", "read", "fast"],
        ..CommandSpec::new("dbsize", 1, READONLY | FAST, Keys::NONE, Handler::Read(dbsize))
    },
    CommandSpec {
        tips: &["request_policy:all_shards", "response_policy:all_succeeded"],
        group: "server",
        since: "1.0.0",
        summary: "Remove all keys from the current database",
        acl: &["keyspace", "write", "slow", "dangerous"],
        ..CommandSpec::new("flushdb", -1, WRITE, Keys::NONE, Handler::Write(flush))
    },
    CommandSpec {
        tips: &["request_policy:all_shards", "response_policy:all_succeeded"],
        group: "server",
        since: "1.0.0",
        summary: "Remove all keys from all databases",
        acl: &["keyspace", "write", "slow", "dangerous"],
        ..CommandSpec::new("flushall", -1, WRITE, Keys::NONE, Handler::Write(flush))
    },
    CommandSpec {
        since: "2.2.3",
        summary: "A container for object introspection commands",
        acl: &["slow"],
        subcommands: OBJECT_SUBCOMMANDS,
        ..CommandSpec::new("object", -2, 0, Keys::NONE, Handler::Read(object))
    },
    CommandSpec {
        group: "server",
        since: "4.0.0",
        summary: "A container for memory diagnostics commands",
        acl: &["slow"],
        subcommands: MEMORY_SUBCOMMANDS,
        ..CommandSpec::new("memory", -2, 0, Keys::NONE, Handler::Read(memory))
    },
];

const OBJECT_KEY: Keys = Keys::range(2, 2, 1);

const OBJECT_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec {
        tips: &["nondeterministic_output"],
        key_specs: &[KeySpec::range(&["RO"], 2, 0, 1)],
        since: "2.2.3",
        summary: "Inspect the internal encoding of a Redis object",
        acl: &["keyspace", "read", "slow"],
        ..CommandSpec::new(
            "object|encoding",
            3,
            READONLY,
            OBJECT_KEY,
            Handler::Read(object_encoding),
        )
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        key_specs: &[KeySpec::range(&["RO"], 2, 0, 1)],
        since: "4.0.0",
        summary: "Get the logarithmic access frequency counter of a Redis object",
        acl: &["keyspace", "read", "slow"],
        ..CommandSpec::new(
            "object|freq",
            3,
            READONLY,
            OBJECT_KEY,
            Handler::Read(object_freq),
        )
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        key_specs: &[KeySpec::range(&["RO"], 2, 0, 1)],
        since: "2.2.3",
        summary: "Get the time since a Redis object was last accessed",
        acl: &["keyspace", "read", "slow"],
        ..CommandSpec::new(
            "object|idletime",
            3,
            READONLY,
            OBJECT_KEY,
            Handler::Read(object_idletime),
        )
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        key_specs: &[KeySpec::range(&["RO"], 2, 0, 1)],
        since: "2.2.3",
        summary: "Get the number of references to the value of the key",
        acl: &["keyspace", "read", "slow"],
        ..CommandSpec::new(
            "object|refcount",
            3,
            READONLY,
            OBJECT_KEY,
            Handler::Read(object_refcount),
        )
    },
    CommandSpec {
        since: "6.2.0",
        summary: "Show helpful text about the different subcommands",
        acl: &["keyspace", "slow"],
        ..CommandSpec::new(
            "object|help",
            2,
            LOADING | STALE,
            Keys::NONE,
            Handler::Read(object_help),
        )
    },
];

const MEMORY_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec {
        key_specs: &[KeySpec::range(&["RO"], 2, 0, 1)],
        group: "server",
        since: "4.0.0",
        summary: "Estimate the memory usage of a key",
        acl: &["read", "slow"],
        ..CommandSpec::new(
            "memory|usage",
            -3,
            READONLY,
            OBJECT_KEY,
            Handler::Read(memory_usage),
        )
    },
    CommandSpec {
        group: "server",
        since: "4.0.0",
        summary: "Show helpful text about the different subcommands",
        acl: &["slow"],
        ..CommandSpec::new(
            "memory|help",
            2,
            LOADING | STALE,
            Keys::NONE,
            Handler::Read(memory_help),
        )
    },
];

fn live(e: &Entry, now: u64) -> bool {
    e.expire_at().map_or(true, |at| at > now)
}

/// DEL key [key ...] (and UNLINK: memory is freed the same way either way).
fn del(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let n = a[1..]
        .iter()
        .filter(|k| ks.remove(k, ctx.now).is_some())
        .count();
    Ok(Reply::Int(n as i64))
}

/// EXISTS key [key ...]: a key named twice counts twice.
fn exists(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let n = a[1..].iter().filter(|k| ks.exists(k, ctx.now)).count();
    Ok(Reply::Int(n as i64))
}

/// TOUCH key [key ...]: records an access on each existing key.
fn touch(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let n = a[1..]
        .iter()
        .filter(|k| ks.read(k, ctx.now).is_some())
        .count();
    Ok(Reply::Int(n as i64))
}

/// TYPE key
fn type_cmd(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(Reply::simple(
        ks.peek(&a[1], ctx.now)
            .map_or("none", |e| e.value.type_name()),
    ))
}

/// Moves `src` to `dst` with its TTL; `Ok(false)` if `nx` and `dst` exists.
fn rename_generic(ks: &mut Keyspace, now: u64, a: &[Arg], nx: bool) -> Result<bool, CmdError> {
    let (src, dst) = (&a[1], &a[2]);
    let Some(expire_at) = ks.write(src, now).map(|e| e.expire_at()) else {
        return Err(CmdError::NoSuchKey);
    };
    if src == dst {
        return Ok(!nx);
    }
    if nx && ks.write(dst, now).is_some() {
        return Ok(false);
    }
    // Read before removing: removal clears the entry's deadline.
    let entry = ks.remove(src, now).expect("checked above");
    ks.set_with_expiry(dst, entry.value, expire_at, now);
    Ok(true)
}

/// RENAME key newkey
fn rename(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    rename_generic(ks, ctx.now, a, false)?;
    Ok(Reply::ok())
}

/// RENAMENX key newkey
fn renamenx(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(Reply::Int(rename_generic(ks, ctx.now, a, true)? as i64))
}

/// A deep copy of a value (COPY).
fn duplicate(v: &Value) -> Value {
    match v {
        Value::Str(s) => Value::Str(s.clone()),
        Value::List(l) => Value::List(l.clone()),
        Value::Hash(h) => Value::Hash(h.clone()),
        Value::Set(s) => Value::Set(s.clone()),
        Value::ZSet(z) => {
            let mut copy = ZSet::new();
            for (member, score) in z.iter() {
                copy.insert(member, score);
            }
            Value::ZSet(Box::new(copy))
        }
    }
}

/// Redis's default number of databases: DB indexes below it are valid but refused,
/// as Redis Cluster refuses them, since only database 0 exists here.
const DATABASES: i64 = 16;

/// COPY source destination [DB destination-db] [REPLACE]
fn copy(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let mut replace = false;
    let mut db = 0;
    let mut j = 3;
    while j < a.len() {
        if args::is(&a[j], "replace") {
            replace = true;
        } else if args::is(&a[j], "db") && j + 1 < a.len() {
            db = args::int(&a[j + 1])?;
            if db < i32::MIN as i64 || db > i32::MAX as i64 {
                return Err(CmdError::NotInteger);
            }
            if !(0..DATABASES).contains(&db) {
                return Err(CmdError::other("ERR DB index is out of range"));
            }
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    if db != 0 {
        return Err(CmdError::other(
            "ERR Copying to another database is not allowed in cluster mode",
        ));
    }
    let (src, dst) = (&a[1], &a[2]);
    if src == dst {
        return Err(CmdError::other(
            "ERR source and destination objects are the same",
        ));
    }
    let Some(entry) = ks.write(src, ctx.now) else {
        return Ok(Reply::Int(0));
    };
    let (value, expire_at) = (duplicate(&entry.value), entry.expire_at());
    if ks.write(dst, ctx.now).is_some() && !replace {
        return Ok(Reply::Int(0));
    }
    ks.set_with_expiry(dst, value, expire_at, ctx.now);
    Ok(Reply::Int(1))
}

/// KEYS pattern
fn keys(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let all = &a[1][..] == b"*";
    Ok(Reply::Array(
        ks.iter()
            .filter(|(k, e)| live(e, ctx.now) && (all || args::glob_match(&a[1], k, false)))
            .map(|(k, _)| Reply::bulk(k))
            .collect(),
    ))
}

/// A SCAN cursor as C's strtoul reads it (a sign is allowed, "-1" wraps; an empty
/// string is 0), with Redis's checks: no leading space, nothing after the digits, no
/// overflow.
pub fn parse_cursor(s: &[u8]) -> Result<u64, CmdError> {
    let invalid = || CmdError::other("ERR invalid cursor");
    if s.is_empty() {
        return Ok(0);
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return Err(invalid());
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return Err(invalid());
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((c - b'0') as u64))
            .ok_or_else(invalid)?;
    }
    Ok(if neg { v.wrapping_neg() } else { v })
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]
fn scan(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let cursor = parse_cursor(&a[1])?;
    let mut count = 10usize;
    let mut pattern: Option<&[u8]> = None;
    let mut type_name: Option<&[u8]> = None;
    let mut j = 2;
    while j < a.len() {
        if j + 1 >= a.len() {
            return Err(CmdError::Syntax);
        }
        let value = &a[j + 1];
        if args::is(&a[j], "count") {
            let n = args::int(value)?;
            if n < 1 {
                return Err(CmdError::Syntax);
            }
            count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if args::is(&a[j], "match") {
            pattern = (&value[..] != b"*").then_some(&value[..]);
        } else if args::is(&a[j], "type") {
            type_name = Some(value);
        } else {
            return Err(CmdError::Syntax);
        }
        j += 2;
    }
    let mut found = Vec::new();
    let next = ks.scan(cursor, count, |k, e| {
        let wanted = live(e, ctx.now)
            && pattern.map_or(true, |p| args::glob_match(p, k, false))
            && type_name.map_or(true, |t| {
                t.eq_ignore_ascii_case(e.value.type_name().as_bytes())
            });
        if wanted {
            found.push(Reply::bulk(k));
        }
    });
    Ok(Reply::Array(vec![
        Reply::bulk_string(next.to_string()),
        Reply::Array(found),
    ]))
}

/// RANDOMKEY: a random live key, nil if there is none.
fn randomkey(ks: &Keyspace, ctx: &mut ReadCtx, _a: &[Arg]) -> Result<Reply, CmdError> {
    // Sample a few times; if every pick was expired, fall back to a walk so that a
    // keyspace full of expired keys still answers correctly.
    for _ in 0..100 {
        match ks.random_entry(|| ctx.rng.next_u64()) {
            None => return Ok(Reply::Nil),
            Some((k, e)) if live(e, ctx.now) => return Ok(Reply::bulk(k)),
            Some(_) => {}
        }
    }
    Ok(ks
        .iter()
        .find(|(_, e)| live(e, ctx.now))
        .map_or(Reply::Nil, |(k, _)| Reply::bulk(k)))
}

/// EXPIRE's NX | XX | GT | LT.
#[derive(Default)]
struct ExpireCond {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

impl ExpireCond {
    fn parse(a: &[Arg]) -> Result<ExpireCond, CmdError> {
        let mut c = ExpireCond::default();
        for opt in &a[3..] {
            if args::is(opt, "nx") {
                c.nx = true;
            } else if args::is(opt, "xx") {
                c.xx = true;
            } else if args::is(opt, "gt") {
                c.gt = true;
            } else if args::is(opt, "lt") {
                c.lt = true;
            } else {
                return Err(CmdError::Other(
                    format!("ERR Unsupported option {}", super::error::arg_text(opt)).into(),
                ));
            }
        }
        if c.nx && (c.xx || c.gt || c.lt) {
            return Err(CmdError::other(
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            ));
        }
        if c.gt && c.lt {
            return Err(CmdError::other(
                "ERR GT and LT options at the same time are not compatible",
            ));
        }
        Ok(c)
    }

    /// Whether the new deadline `when` may replace `current` (None: no TTL, which
    /// counts as infinite).
    fn allows(&self, current: Option<u64>, when: i64) -> bool {
        let current = current.map(|c| c as i64);
        !((self.nx && current.is_some())
            || (self.xx && current.is_none())
            || (self.gt && current.map_or(true, |c| when <= c))
            || (self.lt && current.is_some_and(|c| when >= c)))
    }
}

/// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT: `base` is `now` for relative times, 0 for
/// absolute ones; a deadline not after `now` deletes the key.
fn expire_generic(
    ks: &mut Keyspace,
    ctx: &WriteCtx,
    a: &[Arg],
    base: i64,
    unit_ms: i64,
) -> Result<Reply, CmdError> {
    let cond = ExpireCond::parse(a)?;
    let mut when = args::int(&a[2])?;
    let invalid = || CmdError::InvalidExpire(args::lower(&a[0]));
    if unit_ms == 1000 {
        when = when.checked_mul(1000).ok_or_else(invalid)?;
    }
    when = when.checked_add(base).ok_or_else(invalid)?;
    let key = &a[1];
    let Some(entry) = ks.write(key, ctx.now) else {
        return Ok(Reply::Int(0));
    };
    if !cond.allows(entry.expire_at(), when) {
        return Ok(Reply::Int(0));
    }
    if when <= ctx.now as i64 {
        ks.remove(key, ctx.now);
    } else {
        ks.set_expire(key, when as u64, ctx.now);
    }
    Ok(Reply::Int(1))
}

/// EXPIRE key seconds [NX | XX | GT | LT]
fn expire(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    expire_generic(ks, ctx, a, ctx.now as i64, 1000)
}

/// PEXPIRE key milliseconds [NX | XX | GT | LT]
fn pexpire(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    expire_generic(ks, ctx, a, ctx.now as i64, 1)
}

/// EXPIREAT key unix-time-seconds [NX | XX | GT | LT]
fn expireat(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    expire_generic(ks, ctx, a, 0, 1000)
}

/// PEXPIREAT key unix-time-milliseconds [NX | XX | GT | LT]
fn pexpireat(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    expire_generic(ks, ctx, a, 0, 1)
}

/// -2 for a missing key, -1 without TTL, else `f(deadline)`.
fn ttl_generic(ks: &Keyspace, now: u64, key: &[u8], f: impl Fn(u64) -> i64) -> Reply {
    Reply::Int(match ks.peek(key, now) {
        None => -2,
        Some(e) => e.expire_at().map_or(-1, f),
    })
}

/// TTL key: seconds left, rounded to the nearest.
fn ttl(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let now = ctx.now;
    Ok(ttl_generic(ks, now, &a[1], |at| {
        ((at.saturating_sub(now) + 500) / 1000) as i64
    }))
}

/// PTTL key
fn pttl(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let now = ctx.now;
    Ok(ttl_generic(ks, now, &a[1], |at| {
        at.saturating_sub(now) as i64
    }))
}

/// EXPIRETIME key
fn expiretime(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(ttl_generic(ks, ctx.now, &a[1], |at| (at / 1000) as i64))
}

/// PEXPIRETIME key
fn pexpiretime(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(ttl_generic(ks, ctx.now, &a[1], |at| at as i64))
}

/// PERSIST key: 1 if a TTL was removed.
fn persist(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let had_ttl = ks
        .write(&a[1], ctx.now)
        .is_some_and(|e| e.expire_at().is_some());
    if had_ttl {
        ks.set_expire(&a[1], 0, ctx.now);
    }
    Ok(Reply::Int(had_ttl as i64))
}

/// DBSIZE: keys stored, including expired ones not yet deleted, as Redis counts.
fn dbsize(ks: &Keyspace, _ctx: &mut ReadCtx, _a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(Reply::Int(ks.len() as i64))
}

/// FLUSHDB [ASYNC | SYNC] and FLUSHALL [ASYNC | SYNC]: one database, so the same.
fn flush(ks: &mut Keyspace, _ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    match a.len() {
        1 => {}
        2 if args::is(&a[1], "async") || args::is(&a[1], "sync") => {}
        _ => return Err(CmdError::Syntax),
    }
    ks.flush();
    Ok(Reply::ok())
}

/// Runs the subcommand `a[1]` of a container command (OBJECT, MEMORY).
fn run_subcommand(
    subs: &'static [CommandSpec],
    container: &str,
    ks: &Keyspace,
    ctx: &mut ReadCtx,
    a: &[Arg],
) -> Result<Reply, CmdError> {
    let name = args::lower(&a[1]);
    match subs
        .iter()
        .find(|s| s.name.split('|').nth(1) == Some(name.as_str()))
    {
        Some(CommandSpec {
            handler: Handler::Read(f),
            ..
        }) => f(ks, ctx, a),
        _ => Ok(error::unknown_subcommand(container, &a[1])),
    }
}

/// OBJECT <ENCODING | FREQ | IDLETIME | REFCOUNT | HELP> [key]
fn object(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    run_subcommand(OBJECT_SUBCOMMANDS, "object", ks, ctx, a)
}

/// OBJECT ENCODING key: what Redis 7.0 would use for the same contents. OBJECT
/// subcommands peek, so that looking does not count as an access.
fn object_encoding(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(ks
        .peek(&a[2], ctx.now)
        .map_or(Reply::Nil, |e| Reply::bulk(e.value.encoding())))
}

/// OBJECT FREQ key: the LFU counter, under an LFU policy only.
fn object_freq(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let Some(e) = ks.peek(&a[2], ctx.now) else {
        return Ok(Reply::Nil);
    };
    if !ks.access_config.lfu {
        return Err(CmdError::other("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust."));
    }
    Ok(Reply::Int(
        e.access.frequency(&ks.access_config, ctx.now) as i64
    ))
}

/// OBJECT IDLETIME key: seconds since the last access, under an LRU policy only.
fn object_idletime(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let Some(e) = ks.peek(&a[2], ctx.now) else {
        return Ok(Reply::Nil);
    };
    if ks.access_config.lfu {
        return Err(CmdError::other("ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust."));
    }
    Ok(Reply::Int((e.access.idle_ms(ctx.now) / 1000) as i64))
}

/// Redis shares the integers 0..10000 between keys (refcount INT_MAX), except under
/// an LFU policy, where each key needs its own access counter.
const OBJ_SHARED_INTEGERS: i64 = 10_000;

/// OBJECT REFCOUNT key
fn object_refcount(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let Some(e) = ks.peek(&a[2], ctx.now) else {
        return Ok(Reply::Nil);
    };
    let shared = match &e.value {
        Value::Str(s) if !ks.access_config.lfu => crate::keyspace::value::parse_strict_i64(s)
            .is_some_and(|v| (0..OBJ_SHARED_INTEGERS).contains(&v)),
        _ => false,
    };
    Ok(Reply::Int(if shared { i32::MAX as i64 } else { 1 }))
}

fn help(lines: &[&'static str]) -> Reply {
    Reply::Array(lines.iter().map(|l| Reply::simple(l)).collect())
}

/// OBJECT HELP
fn object_help(_ks: &Keyspace, _ctx: &mut ReadCtx, _a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(help(&[
        "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ENCODING <key>",
        "    Return the kind of internal representation used in order to store the value",
        "    associated with a <key>.",
        "FREQ <key>",
        "    Return the access frequency index of the <key>. The returned integer is",
        "    proportional to the logarithm of the recent access frequency of the key.",
        "IDLETIME <key>",
        "    Return the idle time of the <key>, that is the approximated number of",
        "    seconds elapsed since the last access to the key.",
        "REFCOUNT <key>",
        "    Return the number of references of the value associated with the specified",
        "    <key>.",
        "HELP",
        "    Prints this help.",
    ]))
}

/// MEMORY <USAGE | HELP> ...
fn memory(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    run_subcommand(MEMORY_SUBCOMMANDS, "memory", ks, ctx, a)
}

/// MEMORY USAGE key [SAMPLES count]: bytes of the value, the key and the entry. The
/// estimate walks the whole value, so SAMPLES is checked but does not change it.
fn memory_usage(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let mut j = 3;
    while j < a.len() {
        if args::is(&a[j], "samples") && j + 1 < a.len() {
            if args::int(&a[j + 1])? < 0 {
                return Err(CmdError::Syntax);
            }
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let Some(e) = ks.peek(&a[2], ctx.now) else {
        return Ok(Reply::Nil);
    };
    // The key's boxed bytes and the dict slot that holds key and entry.
    let overhead = a[2].len()
        + std::mem::size_of::<Option<(crate::keyspace::slab_map::Key, Entry)>>()
        + std::mem::size_of::<u32>();
    Ok(Reply::Int((e.value.memory_usage() + overhead) as i64))
}

/// MEMORY HELP (Redis's text; DOCTOR, MALLOC-STATS, PURGE and STATS belong to the
/// server layer).
fn memory_help(_ks: &Keyspace, _ctx: &mut ReadCtx, _a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(help(&[
        "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "DOCTOR",
        "    Return memory problems reports.",
        "MALLOC-STATS",
        "    Return internal statistics report from the memory allocator.",
        "PURGE",
        "    Attempt to purge dirty pages for reclamation by the allocator.",
        "STATS",
        "    Return information about the memory usage of the server.",
        "USAGE <key> [SAMPLES <count>]",
        "    Return memory in bytes used by <key> and its value. Nested values are",
        "    sampled up to <count> times (default: 5, 0 means sample all).",
        "HELP",
        "    Prints this help.",
    ]))
}

#[cfg(test)]
mod tests {
    use super::parse_cursor;
    use crate::cmd::testing::{bulk, run, run_bytes};
    use crate::keyspace::slab_map::SlabMap;
    use crate::keyspace::zset::ZSet;
    use crate::keyspace::{Keyspace, Value};
    use crate::resp::Reply;

    fn err(s: &str) -> Reply {
        Reply::error(s.to_string())
    }

    fn int(n: i64) -> Reply {
        Reply::Int(n)
    }

    fn list(ks: &mut Keyspace, key: &str, items: &[&str]) {
        let l = items.iter().map(|i| i.as_bytes().into()).collect();
        ks.set(key.as_bytes(), Value::List(Box::new(l)), 0);
    }

    fn sorted_keys(r: Reply) -> Vec<Reply> {
        let Reply::Array(mut v) = r else {
            panic!("not an array: {r:?}")
        };
        v.sort_by_key(|r| format!("{r:?}"));
        v
    }

    #[test]
    fn del_exists_touch_type() {
        let mut ks = Keyspace::new();
        run(&mut ks, 0, &["MSET", "a", "1", "b", "2"]);
        assert_eq!(run(&mut ks, 0, &["EXISTS", "a", "a", "b", "c"]), int(3));
        assert_eq!(run(&mut ks, 0, &["TOUCH", "a", "a", "c"]), int(2));
        assert_eq!(run(&mut ks, 0, &["TYPE", "a"]), Reply::simple("string"));
        assert_eq!(run(&mut ks, 0, &["TYPE", "nokey"]), Reply::simple("none"));
        assert_eq!(run(&mut ks, 0, &["DEL", "a", "a", "b", "c"]), int(2));
        assert_eq!(run(&mut ks, 0, &["EXISTS", "a", "b"]), int(0));
        run(&mut ks, 0, &["SET", "x", "1", "PX", "10"]);
        assert_eq!(run(&mut ks, 11, &["EXISTS", "x"]), int(0));
        assert_eq!(run(&mut ks, 11, &["TYPE", "x"]), Reply::simple("none"));
        assert_eq!(
            run(&mut ks, 11, &["UNLINK", "x"]),
            int(0),
            "expired keys do not count"
        );
        list(&mut ks, "l", &["v"]);
        assert_eq!(run(&mut ks, 0, &["UNLINK", "l", "l"]), int(1));
        assert_eq!(
            run(&mut ks, 0, &["DEL"]),
            err("ERR wrong number of arguments for 'del' command")
        );
    }

    #[test]
    fn rename_and_renamenx() {
        let mut ks = Keyspace::new();
        run(&mut ks, 0, &["MSET", "a", "1", "b", "2"]);
        assert_eq!(
            run(&mut ks, 0, &["RENAME", "nokey", "x"]),
            err("ERR no such key")
        );
        assert_eq!(
            run(&mut ks, 0, &["RENAME", "nokey", "nokey"]),
            err("ERR no such key")
        );
        assert_eq!(
            run(&mut ks, 0, &["RENAMENX", "nokey", "x"]),
            err("ERR no such key")
        );
        assert_eq!(run(&mut ks, 0, &["RENAME", "a", "a"]), Reply::ok());
        assert_eq!(run(&mut ks, 0, &["RENAMENX", "a", "a"]), int(0));
        assert_eq!(run(&mut ks, 0, &["RENAMENX", "a", "b"]), int(0));
        assert_eq!(run(&mut ks, 0, &["RENAMENX", "a", "c"]), int(1));
        assert_eq!(run(&mut ks, 0, &["EXPIRE", "c", "100"]), int(1));
        assert_eq!(run(&mut ks, 0, &["RENAME", "c", "b"]), Reply::ok());
        assert_eq!(run(&mut ks, 0, &["GET", "b"]), bulk("1"));
        assert_eq!(
            run(&mut ks, 0, &["PTTL", "b"]),
            int(100_000),
            "the TTL moves along"
        );
        assert_eq!(run(&mut ks, 0, &["EXISTS", "a", "c"]), int(0));
        // The destination loses its own TTL and type.
        run(&mut ks, 0, &["SET", "d", "x", "EX", "5"]);
        list(&mut ks, "e", &["v"]);
        assert_eq!(run(&mut ks, 0, &["RENAME", "e", "d"]), Reply::ok());
        assert_eq!(run(&mut ks, 0, &["TYPE", "d"]), Reply::simple("list"));
        assert_eq!(run(&mut ks, 0, &["TTL", "d"]), int(-1));
        // An expired source is absent.
        run(&mut ks, 0, &["SET", "gone", "x", "PX", "5"]);
        assert_eq!(
            run(&mut ks, 6, &["RENAME", "gone", "z"]),
            err("ERR no such key")
        );
    }

    #[test]
    fn copy_options() {
        let mut ks = Keyspace::new();
        run(&mut ks, 0, &["SET", "d", "v", "EX", "100"]);
        assert_eq!(run(&mut ks, 0, &["COPY", "d", "e"]), int(1));
        assert_eq!(run(&mut ks, 0, &["TTL", "e"]), int(100));
        assert_eq!(run(&mut ks, 0, &["COPY", "d", "e"]), int(0));
        assert_eq!(run(&mut ks, 0, &["COPY", "d", "e", "REPLACE"]), int(1));
        assert_eq!(
            run(&mut ks, 0, &["COPY", "d", "e", "replace", "replace"]),
            int(1)
        );
        assert_eq!(
            run(&mut ks, 0, &["COPY", "d", "d"]),
            err("ERR source and destination objects are the same")
        );
        assert_eq!(run(&mut ks, 0, &["COPY", "nokey", "z"]), int(0));
        assert_eq!(run(&mut ks, 0, &["COPY", "d", "f", "DB", "0"]), int(1));
        assert_eq!(
            run(&mut ks, 0, &["COPY", "d", "g", "DB", "1"]),
            err("ERR Copying to another database is not allowed in cluster mode")
        );
        assert_eq!(
            run(&mut ks, 0, &["COPY", "d", "g", "DB", "-1"]),
            err("ERR DB index is out of range")
        );
        assert_eq!(
            run(&mut ks, 0, &["COPY", "d", "g", "DB", "16"]),
            err("ERR DB index is out of range")
        );
        assert_eq!(
            run(&mut ks, 0, &["COPY", "d", "g", "DB", "abc"]),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            run(&mut ks, 0, &["COPY", "d", "g", "DB", "4294967296"]),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            run(&mut ks, 0, &["COPY", "d", "g", "DB"]),
            err("ERR syntax error")
        );
        assert_eq!(
            run(&mut ks, 0, &["COPY", "d", "g", "foo"]),
            err("ERR syntax error")
        );
        // Collections are deep copies.
        list(&mut ks, "l", &["a", "b"]);
        let mut z = ZSet::new();
        z.insert(b"a", 1.0);
        z.insert(b"b", 2.0);
        ks.set(b"z", Value::ZSet(Box::new(z)), 0);
        let mut h = SlabMap::new();
        h.insert(b"f", b"v".to_vec().into_boxed_slice());
        ks.set(b"h", Value::Hash(Box::new(h)), 0);
        let mut set = SlabMap::new();
        set.insert(b"m", ());
        ks.set(b"s", Value::Set(Box::new(set)), 0);
        for (src, dst) in [("l", "l2"), ("z", "z2"), ("h", "h2"), ("s", "s2")] {
            assert_eq!(run(&mut ks, 0, &["COPY", src, dst]), int(1));
            let (a, b) = (ks.peek(src.as_bytes(), 0), ks.peek(dst.as_bytes(), 0));
            assert_eq!(a.unwrap().value, b.unwrap().value, "{src}");
        }
        if let Some(Value::List(l)) = ks.write(b"l", 0).map(|e| &mut e.value) {
            l.push_back(b"c".to_vec().into_boxed_slice());
        }
        let Value::List(l2) = &ks.peek(b"l2", 0).unwrap().value else {
            panic!()
        };
        assert_eq!(l2.len(), 2);
    }

    #[test]
    fn keys_and_scan() {
        let mut ks = Keyspace::new();
        run(&mut ks, 0, &["MSET", "a", "1", "b", "2", "c", "3"]);
        run(&mut ks, 0, &["SET", "gone", "x", "PX", "5"]);
        list(&mut ks, "l", &["x"]);
        assert_eq!(
            sorted_keys(run(&mut ks, 10, &["KEYS", "*"])),
            vec![bulk("a"), bulk("b"), bulk("c"), bulk("l")]
        );
        assert_eq!(
            sorted_keys(run(&mut ks, 10, &["KEYS", "[ab]"])),
            vec![bulk("a"), bulk("b")]
        );
        assert_eq!(
            run(&mut ks, 10, &["KEYS", "nomatch*"]),
            Reply::Array(vec![])
        );

        let Reply::Array(r) = run(&mut ks, 10, &["SCAN", "0"]) else {
            panic!()
        };
        assert_eq!(r[0], bulk("0"));
        assert_eq!(
            sorted_keys(r[1].clone()),
            vec![bulk("a"), bulk("b"), bulk("c"), bulk("l")]
        );
        let Reply::Array(r) = run(&mut ks, 10, &["SCAN", "0", "TYPE", "LIST"]) else {
            panic!()
        };
        assert_eq!(r[1], Reply::Array(vec![bulk("l")]));
        let Reply::Array(r) = run(&mut ks, 10, &["SCAN", "0", "type", "foo"]) else {
            panic!()
        };
        assert_eq!(r[1], Reply::Array(vec![]));
        let Reply::Array(r) = run(
            &mut ks,
            10,
            &["SCAN", "0", "TYPE", "string", "MATCH", "[ab]"],
        ) else {
            panic!()
        };
        assert_eq!(sorted_keys(r[1].clone()), vec![bulk("a"), bulk("b")]);

        // A full iteration with COUNT 1 visits every live key once.
        let mut cursor = "0".to_string();
        let mut seen = Vec::new();
        loop {
            let Reply::Array(r) = run(&mut ks, 10, &["SCAN", &cursor, "COUNT", "1"]) else {
                panic!()
            };
            let Reply::Array(keys) = &r[1] else { panic!() };
            seen.extend(keys.iter().cloned());
            let Reply::Bulk(c) = &r[0] else { panic!() };
            cursor = String::from_utf8(c.to_vec()).unwrap();
            if cursor == "0" {
                break;
            }
        }
        seen.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(seen, vec![bulk("a"), bulk("b"), bulk("c"), bulk("l")]);

        for (args, e) in [
            (&["SCAN", " 1"][..], "ERR invalid cursor"),
            (&["SCAN", "abc"], "ERR invalid cursor"),
            (&["SCAN", "18446744073709551616"], "ERR invalid cursor"),
            (&["SCAN", "-"], "ERR invalid cursor"),
            (&["SCAN", "0", "COUNT", "0"], "ERR syntax error"),
            (&["SCAN", "0", "COUNT", "-1"], "ERR syntax error"),
            (
                &["SCAN", "0", "COUNT", "abc"],
                "ERR value is not an integer or out of range",
            ),
            (&["SCAN", "0", "MATCH"], "ERR syntax error"),
            (&["SCAN", "0", "foo", "bar"], "ERR syntax error"),
        ] {
            assert_eq!(run(&mut ks, 10, args), err(e), "{args:?}");
        }
        assert_eq!(parse_cursor(b""), Ok(0));
        assert_eq!(parse_cursor(b"+0"), Ok(0));
        assert_eq!(parse_cursor(b"-1"), Ok(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn randomkey_skips_expired_keys() {
        let mut ks = Keyspace::new();
        assert_eq!(run(&mut ks, 0, &["RANDOMKEY"]), Reply::Nil);
        for i in 0..50 {
            run(&mut ks, 0, &["SET", &format!("gone{i}"), "x", "PX", "5"]);
        }
        assert_eq!(run(&mut ks, 10, &["RANDOMKEY"]), Reply::Nil);
        run(&mut ks, 0, &["SET", "live", "x"]);
        assert_eq!(run(&mut ks, 10, &["RANDOMKEY"]), bulk("live"));
    }

    #[test]
    fn expire_options() {
        let mut ks = Keyspace::new();
        let now = 1_000_000;
        run(&mut ks, now, &["SET", "k", "v"]);
        let cases: &[(&[&str], Reply)] = &[
            (
                &["EXPIRE", "k", "100", "foo"],
                err("ERR Unsupported option foo"),
            ),
            (
                &["EXPIRE", "k", "100", "nx", "xx"],
                err("ERR NX and XX, GT or LT options at the same time are not compatible"),
            ),
            (
                &["EXPIRE", "k", "100", "nx", "gt"],
                err("ERR NX and XX, GT or LT options at the same time are not compatible"),
            ),
            (
                &["EXPIRE", "k", "100", "gt", "lt"],
                err("ERR GT and LT options at the same time are not compatible"),
            ),
            (
                &["EXPIRE", "k", "abc"],
                err("ERR value is not an integer or out of range"),
            ),
            (
                &["EXPIRE", "k", "9223372036854775807"],
                err("ERR invalid expire time in 'expire' command"),
            ),
            (
                &["EXPIRE", "k", "-9223372036854775808"],
                err("ERR invalid expire time in 'expire' command"),
            ),
            (
                &["PEXPIRE", "k", "9223372036854775807"],
                err("ERR invalid expire time in 'pexpire' command"),
            ),
            // GT against no TTL (infinite) fails; XX needs a TTL.
            (&["EXPIRE", "k", "100", "gt"], int(0)),
            (&["EXPIRE", "k", "100", "xx"], int(0)),
            (&["EXPIRE", "k", "100", "xx", "xx"], int(0)),
            (&["EXPIRE", "k", "100", "NX"], int(1)),
            (&["TTL", "k"], int(100)),
            (&["EXPIRE", "k", "100", "nx"], int(0)),
            (&["EXPIRE", "k", "50", "gt"], int(0)),
            (&["EXPIRE", "k", "100", "gt"], int(0)),
            (&["EXPIRE", "k", "200", "gt"], int(1)),
            (&["EXPIRE", "k", "300", "lt"], int(0)),
            (&["EXPIRE", "k", "150", "lt", "xx"], int(1)),
            (&["PTTL", "k"], int(150_000)),
            (&["EXPIRETIME", "k"], int(1150)),
            (&["PEXPIRETIME", "k"], int(1_150_000)),
            (&["PEXPIREAT", "k", "9223372036854775807"], int(1)),
            (&["PEXPIRETIME", "k"], int(i64::MAX)),
            (&["EXPIREAT", "k", "2000"], int(1)),
            (&["PEXPIRETIME", "k"], int(2_000_000)),
            (&["PERSIST", "k"], int(1)),
            (&["PERSIST", "k"], int(0)),
            (&["TTL", "k"], int(-1)),
            (&["PTTL", "k"], int(-1)),
            (&["EXPIRETIME", "k"], int(-1)),
            (&["PEXPIRETIME", "k"], int(-1)),
            (&["EXPIRE", "nokey", "100"], int(0)),
            (
                &["EXPIRE", "nokey", "abc"],
                err("ERR value is not an integer or out of range"),
            ),
            (
                &["EXPIRE", "nokey", "100", "foo"],
                err("ERR Unsupported option foo"),
            ),
            (&["TTL", "nokey"], int(-2)),
            (&["PTTL", "nokey"], int(-2)),
            (&["EXPIRETIME", "nokey"], int(-2)),
            (&["PEXPIRETIME", "nokey"], int(-2)),
            (&["PERSIST", "nokey"], int(0)),
            // LT with no TTL succeeds, and a deadline in the past deletes.
            (&["EXPIRE", "k", "-1", "lt"], int(1)),
            (&["EXISTS", "k"], int(0)),
        ];
        for (args, want) in cases {
            assert_eq!(&run(&mut ks, now, args), want, "{args:?}");
        }
        run(&mut ks, now, &["SET", "k", "v"]);
        assert_eq!(run(&mut ks, now, &["EXPIRE", "k", "0"]), int(1));
        assert_eq!(run(&mut ks, now, &["EXISTS", "k"]), int(0));
        run(&mut ks, now, &["SET", "k", "v"]);
        assert_eq!(run(&mut ks, now, &["EXPIREAT", "k", "1"]), int(1));
        assert_eq!(run(&mut ks, now, &["EXISTS", "k"]), int(0));
        run(&mut ks, now, &["SET", "k", "v"]);
        assert_eq!(run(&mut ks, now, &["PEXPIRE", "k", "1"]), int(1));
        assert_eq!(run(&mut ks, now + 2, &["TTL", "k"]), int(-2));
        // TTL rounds to the nearest second.
        run(&mut ks, now, &["SET", "k", "v", "PX", "1500"]);
        assert_eq!(run(&mut ks, now, &["TTL", "k"]), int(2));
        assert_eq!(run(&mut ks, now + 1001, &["TTL", "k"]), int(0));
    }

    #[test]
    fn dbsize_and_flush() {
        let mut ks = Keyspace::new();
        run(&mut ks, 0, &["MSET", "a", "1", "b", "2"]);
        run(&mut ks, 0, &["SET", "gone", "x", "PX", "5"]);
        assert_eq!(
            run(&mut ks, 10, &["DBSIZE"]),
            int(3),
            "like Redis, until deleted"
        );
        assert_eq!(
            run(&mut ks, 10, &["FLUSHDB", "foo"]),
            err("ERR syntax error")
        );
        assert_eq!(
            run(&mut ks, 10, &["FLUSHDB", "sync", "async"]),
            err("ERR syntax error")
        );
        assert_eq!(
            run(&mut ks, 10, &["FLUSHALL", "async", "sync"]),
            err("ERR syntax error")
        );
        assert_eq!(run(&mut ks, 10, &["DBSIZE"]), int(3));
        assert_eq!(run(&mut ks, 10, &["FLUSHDB", "ASYNC"]), Reply::ok());
        assert_eq!(run(&mut ks, 10, &["DBSIZE"]), int(0));
        run(&mut ks, 0, &["SET", "a", "1"]);
        assert_eq!(run(&mut ks, 10, &["FLUSHALL", "sync"]), Reply::ok());
        assert_eq!(run(&mut ks, 10, &["FLUSHALL"]), Reply::ok());
        assert_eq!(run(&mut ks, 10, &["DBSIZE"]), int(0));
    }

    #[test]
    fn object_subcommands() {
        let mut ks = Keyspace::new();
        run(&mut ks, 0, &["SET", "a", "1"]);
        run(&mut ks, 0, &["SET", "big", "12345"]);
        run(&mut ks, 0, &["SET", "s", "hello"]);
        assert_eq!(run(&mut ks, 0, &["OBJECT", "ENCODING", "a"]), bulk("int"));
        assert_eq!(
            run(&mut ks, 0, &["object", "encoding", "s"]),
            bulk("embstr")
        );
        assert_eq!(
            run(&mut ks, 0, &["OBJECT", "ENCODING", "nokey"]),
            Reply::Nil
        );
        assert_eq!(
            run(&mut ks, 0, &["OBJECT", "REFCOUNT", "a"]),
            int(2147483647)
        );
        assert_eq!(run(&mut ks, 0, &["OBJECT", "REFCOUNT", "big"]), int(1));
        assert_eq!(run(&mut ks, 0, &["OBJECT", "REFCOUNT", "s"]), int(1));
        assert_eq!(
            run(&mut ks, 0, &["OBJECT", "REFCOUNT", "nokey"]),
            Reply::Nil
        );
        assert_eq!(run(&mut ks, 16_000, &["OBJECT", "IDLETIME", "a"]), int(16));
        // Looking does not count as an access.
        assert_eq!(run(&mut ks, 17_000, &["OBJECT", "IDLETIME", "a"]), int(17));
        assert_eq!(
            run(&mut ks, 0, &["OBJECT", "IDLETIME", "nokey"]),
            Reply::Nil
        );
        assert_eq!(
            run(&mut ks, 0, &["OBJECT", "FREQ", "a"]),
            err("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.")
        );
        assert_eq!(run(&mut ks, 0, &["OBJECT", "FREQ", "nokey"]), Reply::Nil);
        ks.access_config.lfu = true;
        run(&mut ks, 0, &["SET", "f", "x"]);
        assert_eq!(run(&mut ks, 0, &["OBJECT", "FREQ", "f"]), int(5));
        assert_eq!(
            run(&mut ks, 0, &["OBJECT", "IDLETIME", "f"]),
            err("ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.")
        );
        assert_eq!(
            run(&mut ks, 0, &["OBJECT", "IDLETIME", "nokey"]),
            Reply::Nil
        );
        assert_eq!(
            run(&mut ks, 0, &["OBJECT", "foo"]),
            err("ERR unknown subcommand 'foo'. Try OBJECT HELP.")
        );
        assert_eq!(
            run(&mut ks, 0, &["OBJECT", "ENCODING"]),
            err("ERR wrong number of arguments for 'object|encoding' command")
        );
        assert_eq!(
            run(&mut ks, 0, &["OBJECT", "ENCODING", "a", "b"]),
            err("ERR wrong number of arguments for 'object|encoding' command")
        );
        let Reply::Array(lines) = run(&mut ks, 0, &["OBJECT", "HELP"]) else {
            panic!()
        };
        assert_eq!(lines.len(), 15);
        assert_eq!(
            lines[0],
            Reply::simple("OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
        );
    }

    #[test]
    fn memory_usage_and_help() {
        let mut ks = Keyspace::new();
        run(&mut ks, 0, &["SET", "a", "1"]);
        run(&mut ks, 0, &["SET", "s2", &"x".repeat(100)]);
        let Reply::Int(small) = run(&mut ks, 0, &["MEMORY", "USAGE", "a"]) else {
            panic!()
        };
        let Reply::Int(big) = run(&mut ks, 0, &["MEMORY", "USAGE", "s2"]) else {
            panic!()
        };
        assert!(small > 16 && small < 200, "{small}");
        assert!(big >= small + 100, "{small} {big}");
        assert_eq!(run(&mut ks, 0, &["MEMORY", "USAGE", "nokey"]), Reply::Nil);
        assert_eq!(
            run(&mut ks, 0, &["MEMORY", "USAGE", "a", "SAMPLES", "0"]),
            int(small)
        );
        for (args, e) in [
            (&["MEMORY", "USAGE", "a", "SAMPLES"][..], "ERR syntax error"),
            (
                &["MEMORY", "USAGE", "a", "SAMPLES", "-1"],
                "ERR syntax error",
            ),
            (&["MEMORY", "USAGE", "a", "foo", "1"], "ERR syntax error"),
            (
                &["MEMORY", "USAGE", "a", "SAMPLES", "abc"],
                "ERR value is not an integer or out of range",
            ),
            (
                &["MEMORY", "USAGE"],
                "ERR wrong number of arguments for 'memory|usage' command",
            ),
            (
                &["MEMORY", "foo"],
                "ERR unknown subcommand 'foo'. Try MEMORY HELP.",
            ),
        ] {
            assert_eq!(run(&mut ks, 0, args), err(e), "{args:?}");
        }
        let Reply::Array(lines) = run(&mut ks, 0, &["MEMORY", "HELP"]) else {
            panic!()
        };
        assert_eq!(lines.len(), 14);
    }

    #[test]
    fn binary_and_empty_keys() {
        let mut ks = Keyspace::new();
        let key: &[u8] = b"\x00\xff key\r\n";
        run_bytes(&mut ks, 0, &[b"SET", key, b"v"]);
        run_bytes(&mut ks, 0, &[b"SET", b"", b"e"]);
        assert_eq!(run_bytes(&mut ks, 0, &[b"EXISTS", key, b""]), int(2));
        assert_eq!(
            run_bytes(&mut ks, 0, &[b"RENAME", key, b"\x01"]),
            Reply::ok()
        );
        assert_eq!(run_bytes(&mut ks, 0, &[b"GET", b"\x01"]), bulk("v"));
        assert_eq!(run_bytes(&mut ks, 0, &[b"EXPIRE", b"", b"10"]), int(1));
        assert_eq!(run_bytes(&mut ks, 0, &[b"TTL", b""]), int(10));
        assert_eq!(
            sorted_keys(run_bytes(&mut ks, 0, &[b"KEYS", b"*"])),
            vec![bulk(""), Reply::bulk(b"\x01")]
        );
        assert_eq!(run_bytes(&mut ks, 0, &[b"DEL", b"", b"\x01"]), int(2));
    }
}
