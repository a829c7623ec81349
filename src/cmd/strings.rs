//! String commands.

use super::args::{self, Arg};
use super::error::CmdError;
use super::table::{flags::*, CommandSpec, Handler, KeySpec, Keys};
use super::{ReadCtx, WriteCtx};
use crate::keyspace::float::{incr_long_double, IncrFloatError};
use crate::keyspace::value::parse_strict_i64;
use crate::keyspace::{Keyspace, Value};
use crate::resp::Reply;

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        group: "string",
        since: "1.0.0",
        summary: "Get the value of a key",
        acl: &["read", "string", "fast"],
        ..CommandSpec::new("get", 2, READONLY | FAST, Keys::ONE, Handler::Read(get))
    },
    CommandSpec {
        key_specs: &[
            KeySpec::range(&["RW", "access", "update", "variable_flags"], 1, 0, 1)
                .with_notes("RW and ACCESS due to the optional `GET` argument"),
        ],
        group: "string",
        since: "1.0.0",
        summary: "Set the string value of a key",
        acl: &["write", "string", "slow"],
        ..CommandSpec::new("set", -3, WRITE | DENYOOM, Keys::ONE, Handler::Write(set))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["OW", "insert"], 1, 0, 1)],
        group: "string",
        since: "1.0.0",
        summary: "Set the value of a key, only if the key does not exist",
        acl: &["write", "string", "fast"],
        ..CommandSpec::new(
            "setnx",
            3,
            WRITE | DENYOOM | FAST,
            Keys::ONE,
            Handler::Write(setnx),
        )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["OW", "update"], 1, 0, 1)],
        group: "string",
        since: "2.0.0",
        summary: "Set the value and expiration of a key",
        acl: &["write", "string", "slow"],
        ..CommandSpec::new(
            "setex",
            4,
            WRITE | DENYOOM,
            Keys::ONE,
            Handler::Write(setex),
        )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["OW", "update"], 1, 0, 1)],
        group: "string",
        since: "2.6.0",
        summary: "Set the value and expiration in milliseconds of a key",
        acl: &["write", "string", "slow"],
        ..CommandSpec::new(
            "psetex",
            4,
            WRITE | DENYOOM,
            Keys::ONE,
            Handler::Write(psetex),
        )
    },
    CommandSpec {
        tips: &["request_policy:multi_shard"],
        group: "string",
        since: "1.0.0",
        summary: "Get the values of all the given keys",
        acl: &["read", "string", "fast"],
        ..CommandSpec::new("mget", -2, READONLY | FAST, Keys::ALL, Handler::Read(mget))
    },
    CommandSpec {
        tips: &[
            "request_policy:multi_shard",
            "response_policy:all_succeeded",
        ],
        key_specs: &[KeySpec::range(&["OW", "update"], 1, -1, 2)],
        group: "string",
        since: "1.0.1",
        summary: "Set multiple keys to multiple values",
        acl: &["write", "string", "slow"],
        ..CommandSpec::new(
            "mset",
            -3,
            WRITE | DENYOOM,
            Keys::PAIRS,
            Handler::Write(mset),
        )
    },
    CommandSpec {
        tips: &["request_policy:multi_shard", "response_policy:agg_min"],
        key_specs: &[KeySpec::range(&["OW", "insert"], 1, -1, 2)],
        group: "string",
        since: "1.0.1",
        summary: "Set multiple keys to multiple values, only if none of the keys exist",
        acl: &["write", "string", "slow"],
        ..CommandSpec::new(
            "msetnx",
            -3,
            WRITE | DENYOOM,
            Keys::PAIRS,
            Handler::Write(msetnx),
        )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "update"], 1, 0, 1)],
        group: "string",
        since: "1.0.0",
        summary: "Set the string value of a key and return its old value",
        acl: &["write", "string", "fast"],
        ..CommandSpec::new(
            "getset",
            3,
            WRITE | DENYOOM | FAST,
            Keys::ONE,
            Handler::Write(getset),
        )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, 0, 1)],
        group: "string",
        since: "6.2.0",
        summary: "Get the value of a key and delete the key",
        acl: &["write", "string", "fast"],
        ..CommandSpec::new("getdel", 2, WRITE | FAST, Keys::ONE, Handler::Write(getdel))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "update"], 1, 0, 1)
            .with_notes("RW and UPDATE because it changes the TTL")],
        group: "string",
        since: "6.2.0",
        summary: "Get the value of a key and optionally set its expiration",
        acl: &["write", "string", "fast"],
        ..CommandSpec::new("getex", -2, WRITE | FAST, Keys::ONE, Handler::Write(getex))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "insert"], 1, 0, 1)],
        group: "string",
        since: "2.0.0",
        summary: "Append a value to a key",
        acl: &["write", "string", "fast"],
        ..CommandSpec::new(
            "append",
            3,
            WRITE | DENYOOM | FAST,
            Keys::ONE,
            Handler::Write(append),
        )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RO"], 1, 0, 1)],
        group: "string",
        since: "2.2.0",
        summary: "Get the length of the value stored in a key",
        acl: &["read", "string", "fast"],
        ..CommandSpec::new(
            "strlen",
            2,
            READONLY | FAST,
            Keys::ONE,
            Handler::Read(strlen),
        )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "update"], 1, 0, 1)],
        group: "string",
        since: "1.0.0",
        summary: "Increment the integer value of a key by one",
        acl: &["write", "string", "fast"],
        ..CommandSpec::new(
            "incr",
            2,
            WRITE | DENYOOM | FAST,
            Keys::ONE,
            Handler::Write(incr),
        )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "update"], 1, 0, 1)],
        group: "string",
        since: "1.0.0",
        summary: "Decrement the integer value of a key by one",
        acl: &["write", "string", "fast"],
        ..CommandSpec::new(
            "decr",
            2,
            WRITE | DENYOOM | FAST,
            Keys::ONE,
            Handler::Write(decr),
        )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "update"], 1, 0, 1)],
        group: "string",
        since: "1.0.0",
        summary: "Increment the integer value of a key by the given amount",
        acl: &["write", "string", "fast"],
        ..CommandSpec::new(
            "incrby",
            3,
            WRITE | DENYOOM | FAST,
            Keys::ONE,
            Handler::Write(incrby),
        )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "update"], 1, 0, 1)],
        group: "string",
        since: "1.0.0",
        summary: "Decrement the integer value of a key by the given number",
        acl: &["write", "string", "fast"],
        ..CommandSpec::new(
            "decrby",
            3,
            WRITE | DENYOOM | FAST,
            Keys::ONE,
            Handler::Write(decrby),
        )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "update"], 1, 0, 1)],
        group: "string",
        since: "2.6.0",
        summary: "Increment the float value of a key by the given amount",
        acl: &["write", "string", "fast"],
        ..CommandSpec::new(
            "incrbyfloat",
            3,
            WRITE | DENYOOM | FAST,
            Keys::ONE,
            Handler::Write(incrbyfloat),
        )
    },
    CommandSpec {
        group: "string",
        since: "2.4.0",
        summary: "Get a substring of the string stored at a key",
        acl: &["read", "string", "slow"],
        ..CommandSpec::new("getrange", 4, READONLY, Keys::ONE, Handler::Read(getrange))
    },
    CommandSpec {
        group: "string",
        since: "2.2.0",
        summary: "Overwrite part of a string at key starting at the specified offset",
        acl: &["write", "string", "slow"],
        ..CommandSpec::new(
            "setrange",
            4,
            WRITE | DENYOOM,
            Keys::ONE,
            Handler::Write(setrange),
        )
    },
    CommandSpec {
        group: "string",
        since: "1.0.0",
        summary: "Get a substring of the string stored at a key",
        acl: &["read", "string", "slow"],
        ..CommandSpec::new("substr", 4, READONLY, Keys::ONE, Handler::Read(getrange))
    },
    CommandSpec {
        group: "string",
        since: "7.0.0",
        summary: "Find longest common substring",
        acl: &["read", "string", "slow"],
        ..CommandSpec::new("lcs", -3, READONLY, Keys::TWO, Handler::Read(lcs))
    },
];

/// The string at `key`: `Ok(None)` if absent, WRONGTYPE if another type.
pub fn read_string<'a>(
    ks: &'a Keyspace,
    key: &[u8],
    now: u64,
) -> Result<Option<&'a [u8]>, CmdError> {
    match ks.read(key, now) {
        None => Ok(None),
        Some(e) => match &e.value {
            Value::Str(s) => Ok(Some(s)),
            _ => Err(CmdError::WrongType),
        },
    }
}

/// The string at `key` for a write (an expired key is deleted first).
fn write_string<'a>(
    ks: &'a mut Keyspace,
    key: &[u8],
    now: u64,
) -> Result<Option<&'a mut Vec<u8>>, CmdError> {
    match ks.write(key, now) {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::Str(s) => Ok(Some(s)),
            _ => Err(CmdError::WrongType),
        },
    }
}

fn bulk_or_nil(v: Option<&[u8]>) -> Reply {
    v.map(Reply::bulk).unwrap_or(Reply::Nil)
}

/// GET key
fn get(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(bulk_or_nil(read_string(ks, &a[1], ctx.now)?))
}

/// How a command sets a key's deadline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExpireArg {
    None,
    KeepTtl,
    /// Absolute unix ms.
    At(u64),
}

/// Resolves EX/PX/EXAT/PXAT `value` into an absolute deadline against `now`, with
/// Redis's checks (`invalid expire time in '<cmd>' command`).
pub fn resolve_expire(
    value: &[u8],
    unit_ms: i64,
    absolute: bool,
    now: u64,
    cmd: &str,
) -> Result<u64, CmdError> {
    let v = args::int(value)?;
    if v <= 0 || (unit_ms == 1000 && v > i64::MAX / 1000) {
        return Err(CmdError::InvalidExpire(cmd.into()));
    }
    let mut ms = v * unit_ms;
    if !absolute {
        ms = ms
            .checked_add(now as i64)
            .ok_or_else(|| CmdError::InvalidExpire(cmd.into()))?;
    }
    if ms <= 0 {
        return Err(CmdError::InvalidExpire(cmd.into()));
    }
    Ok(ms as u64)
}

/// The expiry unit of an EX/PX/EXAT/PXAT option: (ms per unit, absolute).
#[derive(Clone, Copy, PartialEq)]
struct ExpireKind(i64, bool);

/// SET's and GETEX's options, parsed as Redis's parseExtendedStringArguments does: an
/// option may repeat (the last expiry wins) but not conflict with another.
#[derive(Default)]
struct StringOpts<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    expire: Option<(&'a [u8], ExpireKind)>,
}

impl<'a> StringOpts<'a> {
    fn parse(a: &'a [Arg], from: usize, for_set: bool) -> Result<StringOpts<'a>, CmdError> {
        let mut o = StringOpts::default();
        let mut j = from;
        while j < a.len() {
            let opt = &a[j];
            let next = a.get(j + 1);
            let kind = if args::is(opt, "ex") {
                Some(ExpireKind(1000, false))
            } else if args::is(opt, "px") {
                Some(ExpireKind(1, false))
            } else if args::is(opt, "exat") {
                Some(ExpireKind(1000, true))
            } else if args::is(opt, "pxat") {
                Some(ExpireKind(1, true))
            } else {
                None
            };
            if for_set && args::is(opt, "nx") && !o.xx {
                o.nx = true;
            } else if for_set && args::is(opt, "xx") && !o.nx {
                o.xx = true;
            } else if for_set && args::is(opt, "get") {
                o.get = true;
            } else if for_set && args::is(opt, "keepttl") && !o.persist && o.expire.is_none() {
                o.keepttl = true;
            } else if !for_set && args::is(opt, "persist") && !o.keepttl && o.expire.is_none() {
                o.persist = true;
            } else if let (Some(kind), Some(value)) = (kind, next) {
                let same_or_none = o.expire.map_or(true, |(_, k)| k == kind);
                if o.keepttl || o.persist || !same_or_none {
                    return Err(CmdError::Syntax);
                }
                o.expire = Some((value, kind));
                j += 1;
            } else {
                return Err(CmdError::Syntax);
            }
            j += 1;
        }
        Ok(o)
    }

    fn deadline(&self, now: u64, cmd: &str) -> Result<Option<u64>, CmdError> {
        self.expire
            .map(|(v, ExpireKind(unit, abs))| resolve_expire(v, unit, abs, now, cmd))
            .transpose()
    }
}

/// SET key value [NX | XX] [GET] [EX seconds | PX milliseconds | EXAT unix-time-seconds |
/// PXAT unix-time-milliseconds | KEEPTTL]
fn set(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let opts = StringOpts::parse(a, 3, true)?;
    let deadline = match opts.deadline(ctx.now, "set")? {
        Some(at) => ExpireArg::At(at),
        None if opts.keepttl => ExpireArg::KeepTtl,
        None => ExpireArg::None,
    };
    let key = &a[1];
    // The old value is copied only when GET asks for it.
    let (exists, old) = match ks.write(key, ctx.now) {
        None => (false, None),
        Some(e) => match &e.value {
            Value::Str(s) => (true, opts.get.then(|| Reply::bulk(s))),
            _ if opts.get => return Err(CmdError::WrongType),
            _ => (true, None),
        },
    };
    let reply = |done: bool| {
        if opts.get {
            old.clone().unwrap_or(Reply::Nil)
        } else if done {
            Reply::ok()
        } else {
            Reply::Nil
        }
    };
    if (opts.nx && exists) || (opts.xx && !exists) {
        return Ok(reply(false));
    }
    let value = Value::Str(a[2].to_vec());
    match deadline {
        ExpireArg::KeepTtl if exists => {
            ks.replace_value(key, value, ctx.now);
        }
        // Already expired: Redis deletes instead of storing.
        ExpireArg::At(at) if at <= ctx.now => {
            ks.remove(key, ctx.now);
        }
        ExpireArg::At(at) => ks.set_with_expiry(key, value, Some(at), ctx.now),
        _ => ks.set(key, value, ctx.now),
    }
    Ok(reply(true))
}

/// SETNX key value
fn setnx(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    if ks.write(&a[1], ctx.now).is_some() {
        return Ok(Reply::Int(0));
    }
    ks.set(&a[1], Value::Str(a[2].to_vec()), ctx.now);
    Ok(Reply::Int(1))
}

fn set_expiring(
    ks: &mut Keyspace,
    ctx: &WriteCtx,
    a: &[Arg],
    unit_ms: i64,
    cmd: &str,
) -> Result<Reply, CmdError> {
    let at = resolve_expire(&a[2], unit_ms, false, ctx.now, cmd)?;
    ks.set_with_expiry(&a[1], Value::Str(a[3].to_vec()), Some(at), ctx.now);
    Ok(Reply::ok())
}

/// SETEX key seconds value
fn setex(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    set_expiring(ks, ctx, a, 1000, "setex")
}

/// PSETEX key milliseconds value
fn psetex(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    set_expiring(ks, ctx, a, 1, "psetex")
}

/// MGET key [key ...]: nil for missing keys and keys of other types.
fn mget(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(Reply::Array(
        a[1..]
            .iter()
            .map(|k| match ks.read(k, ctx.now) {
                Some(e) => match &e.value {
                    Value::Str(s) => Reply::bulk(s),
                    _ => Reply::Nil,
                },
                None => Reply::Nil,
            })
            .collect(),
    ))
}

fn check_pairs(a: &[Arg]) -> Result<(), CmdError> {
    if a.len() % 2 == 0 {
        return Err(CmdError::WrongArity(args::lower(&a[0])));
    }
    Ok(())
}

/// MSET key value [key value ...]
fn mset(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    check_pairs(a)?;
    for pair in a[1..].chunks(2) {
        ks.set(&pair[0], Value::Str(pair[1].to_vec()), ctx.now);
    }
    Ok(Reply::ok())
}

/// MSETNX key value [key value ...]: sets all or none.
fn msetnx(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    check_pairs(a)?;
    if a[1..].chunks(2).any(|p| ks.exists(&p[0], ctx.now)) {
        return Ok(Reply::Int(0));
    }
    for pair in a[1..].chunks(2) {
        ks.set(&pair[0], Value::Str(pair[1].to_vec()), ctx.now);
    }
    Ok(Reply::Int(1))
}

/// GETSET key value: the old value; the key loses its TTL.
fn getset(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let old = write_string(ks, &a[1], ctx.now)?.map(|s| Reply::bulk(&s[..]));
    ks.set(&a[1], Value::Str(a[2].to_vec()), ctx.now);
    Ok(old.unwrap_or(Reply::Nil))
}

/// GETDEL key
fn getdel(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let Some(old) = write_string(ks, &a[1], ctx.now)?.map(|s| Reply::bulk(&s[..])) else {
        return Ok(Reply::Nil);
    };
    ks.remove(&a[1], ctx.now);
    Ok(old)
}

/// GETEX key [EX seconds | PX milliseconds | EXAT unix-time-seconds |
/// PXAT unix-time-milliseconds | PERSIST]
fn getex(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let opts = StringOpts::parse(a, 2, false)?;
    let key = &a[1];
    let Some(entry) = ks.write(key, ctx.now) else {
        return Ok(Reply::Nil);
    };
    let had_ttl = entry.expire_at().is_some();
    let reply = match &entry.value {
        Value::Str(s) => Reply::bulk(s),
        _ => return Err(CmdError::WrongType),
    };
    // Redis checks the expiry only once it knows the key holds a string.
    match opts.deadline(ctx.now, "getex")? {
        Some(at) if at <= ctx.now => {
            ks.remove(key, ctx.now);
        }
        Some(at) => {
            ks.set_expire(key, at, ctx.now);
        }
        None if opts.persist && had_ttl => {
            ks.set_expire(key, 0, ctx.now);
        }
        None => {}
    }
    Ok(reply)
}

/// APPEND key value: the new length.
fn append(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let key = &a[1];
    let len = match write_string(ks, key, ctx.now)? {
        Some(s) => {
            if s.len() + a[2].len() > ctx.limits.max_string_len {
                return Err(CmdError::StringTooLong);
            }
            s.extend_from_slice(&a[2]);
            let len = s.len();
            ks.modified(key);
            len
        }
        None => {
            ks.set(key, Value::Str(a[2].to_vec()), ctx.now);
            a[2].len()
        }
    };
    Ok(Reply::Int(len as i64))
}

/// STRLEN key
fn strlen(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let len = read_string(ks, &a[1], ctx.now)?.map_or(0, |s| s.len());
    Ok(Reply::Int(len as i64))
}

/// Adds `by` to the integer at `key` (0 if absent), keeping its TTL.
fn incr_generic(ks: &mut Keyspace, now: u64, key: &[u8], by: i64) -> Result<Reply, CmdError> {
    let current = match write_string(ks, key, now)? {
        Some(s) => Some(parse_strict_i64(s).ok_or(CmdError::NotInteger)?),
        None => None,
    };
    let new = current
        .unwrap_or(0)
        .checked_add(by)
        .ok_or(CmdError::Overflow)?;
    let value = Value::Str(new.to_string().into_bytes());
    if current.is_some() {
        ks.replace_value(key, value, now);
    } else {
        ks.set(key, value, now);
    }
    Ok(Reply::Int(new))
}

/// INCR key
fn incr(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    incr_generic(ks, ctx.now, &a[1], 1)
}

/// DECR key
fn decr(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    incr_generic(ks, ctx.now, &a[1], -1)
}

/// INCRBY key increment
fn incrby(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let by = args::int(&a[2])?;
    incr_generic(ks, ctx.now, &a[1], by)
}

/// DECRBY key decrement
fn decrby(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let by = args::int(&a[2])?;
    if by == i64::MIN {
        return Err(CmdError::other("ERR decrement would overflow"));
    }
    incr_generic(ks, ctx.now, &a[1], -by)
}

/// INCRBYFLOAT's and HINCRBYFLOAT's shared failures; a bad stored value is worded by
/// the caller (HINCRBYFLOAT says "hash value is not a float").
impl From<IncrFloatError> for CmdError {
    fn from(e: IncrFloatError) -> CmdError {
        match e {
            IncrFloatError::IncrNotFloat | IncrFloatError::CurrentNotFloat => CmdError::NotFloat,
            IncrFloatError::NanOrInfinity => CmdError::NanOrInfinity,
        }
    }
}

/// INCRBYFLOAT key increment: computed in 80-bit long double like Redis; the TTL stays.
fn incrbyfloat(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let key = &a[1];
    let (exists, new) = match write_string(ks, key, ctx.now)? {
        Some(s) => (true, incr_long_double(s, &a[2])?),
        None => (false, incr_long_double(b"0", &a[2])?),
    };
    let reply = Reply::bulk(&new);
    if exists {
        ks.replace_value(key, Value::Str(new), ctx.now);
    } else {
        ks.set(key, Value::Str(new), ctx.now);
    }
    Ok(reply)
}

/// GETRANGE key start end (and SUBSTR): inclusive, negative indexes count from the end.
fn getrange(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let mut start = args::int(&a[2])?;
    let mut end = args::int(&a[3])?;
    let Some(s) = read_string(ks, &a[1], ctx.now)? else {
        return Ok(Reply::bulk(b""));
    };
    let len = s.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Ok(Reply::bulk(b""));
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0).min(len - 1);
    if start > end || len == 0 {
        return Ok(Reply::bulk(b""));
    }
    Ok(Reply::bulk(&s[start as usize..=end as usize]))
}

/// SETRANGE key offset value: the new length; pads with zero bytes.
fn setrange(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let offset = args::int(&a[2])?;
    if offset < 0 {
        return Err(CmdError::other("ERR offset is out of range"));
    }
    let (key, value) = (&a[1], &a[3]);
    let too_long =
        (offset as u64).saturating_add(value.len() as u64) > ctx.limits.max_string_len as u64;
    let offset = offset as usize;
    match write_string(ks, key, ctx.now)? {
        Some(s) => {
            if value.is_empty() {
                return Ok(Reply::Int(s.len() as i64));
            }
            if too_long {
                return Err(CmdError::StringTooLong);
            }
            if s.len() < offset + value.len() {
                s.resize(offset + value.len(), 0);
            }
            s[offset..offset + value.len()].copy_from_slice(value);
            let len = s.len();
            ks.modified(key);
            Ok(Reply::Int(len as i64))
        }
        None => {
            if value.is_empty() {
                return Ok(Reply::Int(0));
            }
            if too_long {
                return Err(CmdError::StringTooLong);
            }
            let mut s = vec![0u8; offset + value.len()];
            s[offset..].copy_from_slice(value);
            let len = s.len();
            ks.set(key, Value::Str(s), ctx.now);
            Ok(Reply::Int(len as i64))
        }
    }
}

/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN min-match-len] [WITHMATCHLEN]: the longest
/// common subsequence of two strings (a missing key reads as ""), its length (LEN), or
/// a map of the matching ranges, last match first, and the length (IDX).
fn lcs(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    // Redis looks both keys up and checks their types before it reads the options.
    let x = ks.read(&a[1], ctx.now);
    let y = ks.read(&a[2], ctx.now);
    fn as_str(e: Option<&crate::keyspace::Entry>) -> Option<&[u8]> {
        match e.map(|e| &e.value) {
            None => Some(b""),
            Some(Value::Str(s)) => Some(s),
            Some(_) => None,
        }
    }
    let (Some(x), Some(y)) = (as_str(x), as_str(y)) else {
        return Err(CmdError::other(
            "ERR The specified keys must contain string values",
        ));
    };
    let opts = LcsOpts::parse(a)?;
    if opts.len && opts.idx {
        return Err(CmdError::other(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    let table = LcsTable::build(x, y)?;
    if opts.len {
        return Ok(Reply::Int(table.total() as i64));
    }
    let walk = table.walk_back(opts.min_match_len, opts.idx);
    if !opts.idx {
        return Ok(Reply::Bulk(walk.common.into()));
    }
    let matches = walk
        .ranges
        .iter()
        .map(|r| {
            let mut m = vec![
                Reply::Array(vec![Reply::Int(r.a.0 as i64), Reply::Int(r.a.1 as i64)]),
                Reply::Array(vec![Reply::Int(r.b.0 as i64), Reply::Int(r.b.1 as i64)]),
            ];
            if opts.with_match_len {
                m.push(Reply::Int(r.len() as i64));
            }
            Reply::Array(m)
        })
        .collect();
    Ok(Reply::Map(vec![
        (Reply::bulk_static(b"matches"), Reply::Array(matches)),
        (Reply::bulk_static(b"len"), Reply::Int(table.total() as i64)),
    ]))
}

#[derive(Default)]
struct LcsOpts {
    len: bool,
    idx: bool,
    with_match_len: bool,
    min_match_len: u64,
}

impl LcsOpts {
    /// Options repeat freely; a negative MINMATCHLEN counts as 0, as in Redis.
    fn parse(a: &[Arg]) -> Result<LcsOpts, CmdError> {
        let mut o = LcsOpts::default();
        let mut j = 3;
        while j < a.len() {
            let opt = &a[j];
            if args::is(opt, "idx") {
                o.idx = true;
            } else if args::is(opt, "len") {
                o.len = true;
            } else if args::is(opt, "withmatchlen") {
                o.with_match_len = true;
            } else if args::is(opt, "minmatchlen") && j + 1 < a.len() {
                o.min_match_len = args::int(&a[j + 1])?.max(0) as u64;
                j += 1;
            } else {
                return Err(CmdError::Syntax);
            }
            j += 1;
        }
        Ok(o)
    }
}

/// Redis's LCS table: `cell(i, j)` is the LCS length of `a[..i]` and `b[..j]`.
struct LcsTable<'s> {
    a: &'s [u8],
    b: &'s [u8],
    cells: Vec<u32>,
}

/// A matching run, inclusive byte ranges in each string.
#[derive(Debug, PartialEq)]
struct LcsRange {
    a: (usize, usize),
    b: (usize, usize),
}

impl LcsRange {
    fn len(&self) -> u64 {
        (self.a.1 - self.a.0 + 1) as u64
    }
}

/// What walking the table back yields: the common subsequence and its runs.
struct LcsWalk {
    common: Vec<u8>,
    ranges: Vec<LcsRange>,
}

/// Redis caps the table (4 bytes a cell) at proto-max-bulk-len. Reads carry no
/// settings, so the cap is the default 512 MB.
const LCS_MAX_TABLE_BYTES: u64 = 512 * 1024 * 1024;

impl<'s> LcsTable<'s> {
    fn build(a: &'s [u8], b: &'s [u8]) -> Result<LcsTable<'s>, CmdError> {
        if a.len() as u64 >= u32::MAX as u64 - 1 || b.len() as u64 >= u32::MAX as u64 - 1 {
            return Err(CmdError::other("ERR String too long for LCS"));
        }
        let width = b.len() + 1;
        let count = (a.len() as u64 + 1) * width as u64;
        if count * 4 > LCS_MAX_TABLE_BYTES {
            return Err(CmdError::other(
                "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
            ));
        }
        let mut cells = Vec::new();
        if cells.try_reserve_exact(count as usize).is_err() {
            return Err(CmdError::other(
                "ERR Insufficient memory, failed allocating transient memory for LCS",
            ));
        }
        cells.resize(count as usize, 0u32);
        for i in 1..=a.len() {
            let (done, rest) = cells.split_at_mut(i * width);
            let prev = &done[(i - 1) * width..];
            let row = &mut rest[..width];
            let ai = a[i - 1];
            for j in 1..width {
                row[j] = if ai == b[j - 1] {
                    prev[j - 1] + 1
                } else {
                    prev[j].max(row[j - 1])
                };
            }
        }
        Ok(LcsTable { a, b, cells })
    }

    fn cell(&self, i: usize, j: usize) -> u32 {
        self.cells[i * (self.b.len() + 1) + j]
    }

    fn total(&self) -> u32 {
        self.cell(self.a.len(), self.b.len())
    }

    /// Walks from the bottom-right corner as Redis does (on a mismatch it moves up only
    /// when that cell is strictly larger, else left), so the runs it reports, and their
    /// order, are Redis's. Runs shorter than `min_len` (when not 0) are dropped.
    fn walk_back(&self, min_len: u64, want_ranges: bool) -> LcsWalk {
        let (a, b) = (self.a, self.b);
        let mut common = Vec::with_capacity(if want_ranges {
            0
        } else {
            self.total() as usize
        });
        let mut ranges = Vec::new();
        let mut run: Option<LcsRange> = None;
        let (mut i, mut j) = (a.len(), b.len());
        while i > 0 && j > 0 {
            let mut emit = false;
            if a[i - 1] == b[j - 1] {
                if !want_ranges {
                    common.push(a[i - 1]);
                }
                match &mut run {
                    None => {
                        run = Some(LcsRange {
                            a: (i - 1, i - 1),
                            b: (j - 1, j - 1),
                        })
                    }
                    Some(r) if r.a.0 == i && r.b.0 == j => {
                        r.a.0 -= 1;
                        r.b.0 -= 1;
                    }
                    // Not contiguous: Redis closes the run without this byte.
                    Some(_) => emit = true,
                }
                // A run touching the start of either string is complete.
                if run.as_ref().is_some_and(|r| r.a.0 == 0 || r.b.0 == 0) {
                    emit = true;
                }
                i -= 1;
                j -= 1;
            } else {
                if self.cell(i - 1, j) > self.cell(i, j - 1) {
                    i -= 1;
                } else {
                    j -= 1;
                }
                emit = run.is_some();
            }
            if emit {
                if let Some(r) = run.take() {
                    if want_ranges && (min_len == 0 || r.len() >= min_len) {
                        ranges.push(r);
                    }
                }
            }
        }
        common.reverse();
        LcsWalk { common, ranges }
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::testing::{bulk, run, run_bytes};
    use crate::keyspace::Keyspace;
    use crate::resp::Reply;

    const NOT_INT: &str = "ERR value is not an integer or out of range";
    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

    fn err(s: &str) -> Reply {
        Reply::error(s.to_string())
    }

    fn ttl(ks: &mut Keyspace, now: u64, key: &str) -> Option<u64> {
        ks.peek(key.as_bytes(), now).and_then(|e| e.expire_at())
    }

    /// A keyspace holding a list at "l", for WRONGTYPE checks.
    fn with_list() -> Keyspace {
        let mut ks = Keyspace::new();
        ks.set(
            b"l",
            crate::keyspace::Value::List(Box::new([b"x".to_vec().into_boxed_slice()].into())),
            0,
        );
        ks
    }

    #[test]
    fn set_options_repeat_but_do_not_conflict() {
        let mut ks = Keyspace::new();
        let now = 1_000_000;
        assert_eq!(
            run(&mut ks, now, &["SET", "k", "v", "EX", "10", "EX", "20"]),
            Reply::ok()
        );
        assert_eq!(ttl(&mut ks, now, "k"), Some(now + 20_000));
        // Only the last expiry value is checked.
        assert_eq!(
            run(&mut ks, now, &["SET", "k", "v", "ex", "abc", "ex", "30"]),
            Reply::ok()
        );
        assert_eq!(ttl(&mut ks, now, "k"), Some(now + 30_000));
        assert_eq!(
            run(&mut ks, now, &["SET", "k", "v", "NX", "NX"]),
            Reply::Nil
        );
        assert_eq!(
            run(&mut ks, now, &["SET", "k", "w", "GET", "GET", "KEEPTTL"]),
            bulk("v")
        );
        assert_eq!(
            run(&mut ks, now, &["SET", "k", "w", "KEEPTTL", "KEEPTTL"]),
            Reply::ok()
        );
        assert_eq!(ttl(&mut ks, now, "k"), Some(now + 30_000));
        for bad in [
            &["SET", "k", "v", "XX", "NX"][..],
            &["SET", "k", "v", "EX", "10", "KEEPTTL"],
            &["SET", "k", "v", "KEEPTTL", "EX", "10"],
            &["SET", "k", "v", "PX", "100", "EX", "10"],
            &["SET", "k", "v", "PERSIST"],
            &["SET", "k", "v", "EX"],
        ] {
            assert_eq!(run(&mut ks, now, bad), err("ERR syntax error"), "{bad:?}");
        }
        assert_eq!(run(&mut ks, now, &["SET", "k", "v"]), Reply::ok());
        assert_eq!(ttl(&mut ks, now, "k"), None);
        assert_eq!(
            run(&mut ks, now, &["SET", "k", "v", "EXAT", "1"]),
            Reply::ok(),
            "a deadline in the past deletes"
        );
        assert_eq!(run(&mut ks, now, &["GET", "k"]), Reply::Nil);
        let mut ks = with_list();
        assert_eq!(run(&mut ks, now, &["SET", "l", "v", "GET"]), err(WRONGTYPE));
        assert_eq!(run(&mut ks, now, &["GET", "l"]), err(WRONGTYPE));
        assert_eq!(run(&mut ks, now, &["SET", "l", "v"]), Reply::ok());
        assert_eq!(run(&mut ks, now, &["GET", "l"]), bulk("v"));
    }

    #[test]
    fn setnx_setex_psetex() {
        let mut ks = Keyspace::new();
        let now = 5_000;
        assert_eq!(run(&mut ks, now, &["SETNX", "k", "v"]), Reply::Int(1));
        assert_eq!(run(&mut ks, now, &["SETNX", "k", "w"]), Reply::Int(0));
        assert_eq!(run(&mut ks, now, &["GET", "k"]), bulk("v"));
        for (cmd, v) in [("SETEX", "0"), ("SETEX", "-1"), ("PSETEX", "0")] {
            assert_eq!(
                run(&mut ks, now, &[cmd, "k", v, "x"]),
                err(&format!(
                    "ERR invalid expire time in '{}' command",
                    cmd.to_lowercase()
                ))
            );
        }
        assert_eq!(
            run(&mut ks, now, &["SETEX", "k", "9223372036854775807", "v"]),
            err("ERR invalid expire time in 'setex' command")
        );
        assert_eq!(
            run(&mut ks, now, &["SETEX", "k", "9223372036854774", "v"]),
            err("ERR invalid expire time in 'setex' command"),
            "overflow once now is added"
        );
        assert_eq!(
            run(&mut ks, now, &["PSETEX", "k", "9223372036854775807", "v"]),
            err("ERR invalid expire time in 'psetex' command")
        );
        assert_eq!(run(&mut ks, now, &["SETEX", "k", "abc", "v"]), err(NOT_INT));
        assert_eq!(
            run(&mut ks, now, &["GET", "k"]),
            bulk("v"),
            "errors leave the key"
        );
        assert_eq!(run(&mut ks, now, &["SETEX", "k", "10", "w"]), Reply::ok());
        assert_eq!(ttl(&mut ks, now, "k"), Some(now + 10_000));
        assert_eq!(run(&mut ks, now, &["PSETEX", "k", "10", "x"]), Reply::ok());
        assert_eq!(ttl(&mut ks, now, "k"), Some(now + 10));
        assert_eq!(
            run(&mut ks, now + 10, &["GET", "k"]),
            bulk("x"),
            "alive through its deadline"
        );
        assert_eq!(run(&mut ks, now + 11, &["GET", "k"]), Reply::Nil);
        // SETNX sees an expired key as absent.
        assert_eq!(run(&mut ks, now + 11, &["SETNX", "k", "y"]), Reply::Int(1));
        let mut ks = with_list();
        assert_eq!(run(&mut ks, now, &["SETEX", "l", "10", "v"]), Reply::ok());
        assert_eq!(run(&mut ks, now, &["GET", "l"]), bulk("v"));
    }

    #[test]
    fn mget_mset_msetnx() {
        let mut ks = with_list();
        assert_eq!(
            run(&mut ks, 0, &["MSET", "a", "1", "b"]),
            err("ERR wrong number of arguments for 'mset' command")
        );
        assert_eq!(
            run(&mut ks, 0, &["MSETNX", "a", "1", "b"]),
            err("ERR wrong number of arguments for 'msetnx' command")
        );
        assert_eq!(
            run(&mut ks, 0, &["MSET", "a", "1", "b", "2", "a", "3"]),
            Reply::ok()
        );
        assert_eq!(
            run(&mut ks, 0, &["MGET", "a", "b", "c", "l"]),
            Reply::Array(vec![bulk("3"), bulk("2"), Reply::Nil, Reply::Nil])
        );
        assert_eq!(
            run(&mut ks, 0, &["MSETNX", "a", "1", "x", "2"]),
            Reply::Int(0)
        );
        assert_eq!(run(&mut ks, 0, &["GET", "x"]), Reply::Nil);
        assert_eq!(
            run(&mut ks, 0, &["MSETNX", "x", "1", "y", "2", "x", "3"]),
            Reply::Int(1)
        );
        assert_eq!(
            run(&mut ks, 0, &["MGET", "x", "y"]),
            Reply::Array(vec![bulk("3"), bulk("2")])
        );
        assert_eq!(run(&mut ks, 0, &["MSET", "l", "v"]), Reply::ok());
        assert_eq!(run(&mut ks, 0, &["GET", "l"]), bulk("v"));
    }

    #[test]
    fn getset_getdel() {
        let mut ks = with_list();
        assert_eq!(run(&mut ks, 0, &["GETSET", "k", "a"]), Reply::Nil);
        assert_eq!(run(&mut ks, 0, &["PEXPIRE", "k", "100"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["GETSET", "k", "b"]), bulk("a"));
        assert_eq!(ttl(&mut ks, 0, "k"), None, "GETSET clears the TTL");
        assert_eq!(run(&mut ks, 0, &["GETDEL", "k"]), bulk("b"));
        assert_eq!(run(&mut ks, 0, &["GETDEL", "k"]), Reply::Nil);
        assert_eq!(run(&mut ks, 0, &["GETSET", "l", "v"]), err(WRONGTYPE));
        assert_eq!(run(&mut ks, 0, &["GETDEL", "l"]), err(WRONGTYPE));
        assert_eq!(run(&mut ks, 0, &["TYPE", "l"]), Reply::simple("list"));
    }

    #[test]
    fn getex_options() {
        let mut ks = with_list();
        let now = 10_000;
        assert_eq!(
            run(&mut ks, now, &["GETEX", "nokey", "EX", "10"]),
            Reply::Nil
        );
        // The expiry is checked only for an existing string.
        assert_eq!(
            run(&mut ks, now, &["GETEX", "nokey", "EX", "0"]),
            Reply::Nil
        );
        assert_eq!(
            run(&mut ks, now, &["GETEX", "nokey", "foo"]),
            err("ERR syntax error")
        );
        run(&mut ks, now, &["SET", "a", "3"]);
        for bad in [
            &["GETEX", "a", "PERSIST", "EX", "10"][..],
            &["GETEX", "a", "EX", "10", "PX", "10"],
            &["GETEX", "a", "EX", "10", "PERSIST"],
            &["GETEX", "a", "KEEPTTL"],
            &["GETEX", "a", "NX"],
            &["GETEX", "a", "GET"],
            &["GETEX", "a", "EX"],
        ] {
            assert_eq!(run(&mut ks, now, bad), err("ERR syntax error"), "{bad:?}");
        }
        assert_eq!(
            run(&mut ks, now, &["GETEX", "a", "EX", "0"]),
            err("ERR invalid expire time in 'getex' command")
        );
        assert_eq!(
            run(&mut ks, now, &["GETEX", "a", "PX", "-1"]),
            err("ERR invalid expire time in 'getex' command")
        );
        assert_eq!(
            run(&mut ks, now, &["GETEX", "a", "EX", "10", "EX", "20"]),
            bulk("3")
        );
        assert_eq!(ttl(&mut ks, now, "a"), Some(now + 20_000));
        assert_eq!(run(&mut ks, now, &["GETEX", "a"]), bulk("3"));
        assert_eq!(ttl(&mut ks, now, "a"), Some(now + 20_000));
        assert_eq!(
            run(&mut ks, now, &["GETEX", "a", "PXAT", "50000"]),
            bulk("3")
        );
        assert_eq!(ttl(&mut ks, now, "a"), Some(50_000));
        assert_eq!(run(&mut ks, now, &["GETEX", "a", "persist"]), bulk("3"));
        assert_eq!(ttl(&mut ks, now, "a"), None);
        assert_eq!(run(&mut ks, now, &["GETEX", "a", "EXAT", "1"]), bulk("3"));
        assert_eq!(run(&mut ks, now, &["EXISTS", "a"]), Reply::Int(0));
        assert_eq!(run(&mut ks, now, &["GETEX", "l"]), err(WRONGTYPE));
        assert_eq!(
            run(&mut ks, now, &["GETEX", "l", "EX", "0"]),
            err(WRONGTYPE)
        );
    }

    #[test]
    fn append_strlen() {
        let mut ks = with_list();
        assert_eq!(run(&mut ks, 0, &["STRLEN", "nk"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["APPEND", "nk", "abc"]), Reply::Int(3));
        assert_eq!(run(&mut ks, 0, &["APPEND", "nk", ""]), Reply::Int(3));
        assert_eq!(
            run_bytes(&mut ks, 0, &[b"APPEND", b"nk", b"\x00\xff"]),
            Reply::Int(5)
        );
        assert_eq!(run(&mut ks, 0, &["STRLEN", "nk"]), Reply::Int(5));
        assert_eq!(run(&mut ks, 0, &["GET", "nk"]), Reply::bulk(b"abc\x00\xff"));
        assert_eq!(run(&mut ks, 0, &["APPEND", "l", "x"]), err(WRONGTYPE));
        assert_eq!(run(&mut ks, 0, &["STRLEN", "l"]), err(WRONGTYPE));
        run(&mut ks, 0, &["PEXPIRE", "nk", "100"]);
        run(&mut ks, 0, &["APPEND", "nk", "x"]);
        assert_eq!(ttl(&mut ks, 0, "nk"), Some(100), "APPEND keeps the TTL");
    }

    #[test]
    fn append_and_setrange_respect_the_size_limit() {
        use crate::cmd::{ApplyLimits, WriteCtx};
        use crate::keyspace::rng::Rng;
        let mut ks = Keyspace::new();
        let mut ctx = WriteCtx {
            now: 0,
            rng: Rng::new(1),
            limits: ApplyLimits { max_string_len: 8 },
        };
        let args = |v: &[&str]| -> Vec<bytes::Bytes> {
            v.iter()
                .map(|s| bytes::Bytes::copy_from_slice(s.as_bytes()))
                .collect()
        };
        let too_long = Err(crate::cmd::error::CmdError::StringTooLong);
        assert_eq!(
            super::append(&mut ks, &mut ctx, &args(&["APPEND", "k", "12345"])),
            Ok(Reply::Int(5))
        );
        assert_eq!(
            super::append(&mut ks, &mut ctx, &args(&["APPEND", "k", "6789"])),
            too_long
        );
        assert_eq!(
            super::append(&mut ks, &mut ctx, &args(&["APPEND", "k", "678"])),
            Ok(Reply::Int(8))
        );
        assert_eq!(
            super::setrange(&mut ks, &mut ctx, &args(&["SETRANGE", "k", "8", "x"])),
            too_long
        );
        assert_eq!(
            super::setrange(&mut ks, &mut ctx, &args(&["SETRANGE", "k", "7", "x"])),
            Ok(Reply::Int(8))
        );
        assert_eq!(
            super::setrange(&mut ks, &mut ctx, &args(&["SETRANGE", "n", "8", "x"])),
            too_long
        );
        assert_eq!(
            super::setrange(&mut ks, &mut ctx, &args(&["SETRANGE", "n", "9", ""])),
            Ok(Reply::Int(0))
        );
    }

    #[test]
    fn incr_family() {
        let mut ks = with_list();
        assert_eq!(run(&mut ks, 0, &["INCR", "n"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["DECRBY", "n2", "5"]), Reply::Int(-5));
        assert_eq!(run(&mut ks, 0, &["INCRBY", "n2", "-10"]), Reply::Int(-15));
        assert_eq!(run(&mut ks, 0, &["DECR", "n2"]), Reply::Int(-16));
        assert_eq!(run(&mut ks, 0, &["GET", "n2"]), bulk("-16"));
        for bad in [
            "  1",
            " 1",
            "1 ",
            "01",
            "1.0",
            "-0",
            "+1",
            "",
            "abc",
            "99999999999999999999",
        ] {
            run(&mut ks, 0, &["SET", "b", bad]);
            assert_eq!(run(&mut ks, 0, &["INCR", "b"]), err(NOT_INT), "{bad:?}");
        }
        run(&mut ks, 0, &["SET", "m", "9223372036854775807"]);
        assert_eq!(
            run(&mut ks, 0, &["INCR", "m"]),
            err("ERR increment or decrement would overflow")
        );
        run(&mut ks, 0, &["SET", "m", "-9223372036854775808"]);
        assert_eq!(
            run(&mut ks, 0, &["DECR", "m"]),
            err("ERR increment or decrement would overflow")
        );
        run(&mut ks, 0, &["SET", "m", "5"]);
        assert_eq!(
            run(&mut ks, 0, &["DECRBY", "m", "-9223372036854775808"]),
            err("ERR decrement would overflow")
        );
        assert_eq!(
            run(&mut ks, 0, &["INCRBY", "m", "-9223372036854775808"]),
            Reply::Int(-9223372036854775803)
        );
        assert_eq!(run(&mut ks, 0, &["INCRBY", "m", "abc"]), err(NOT_INT));
        assert_eq!(
            run(&mut ks, 0, &["INCRBY", "m", "9223372036854775808"]),
            err(NOT_INT)
        );
        assert_eq!(run(&mut ks, 0, &["INCR", "l"]), err(WRONGTYPE));
        run(&mut ks, 0, &["SET", "t", "10"]);
        run(&mut ks, 0, &["PEXPIRE", "t", "100"]);
        assert_eq!(run(&mut ks, 0, &["INCR", "t"]), Reply::Int(11));
        assert_eq!(ttl(&mut ks, 0, "t"), Some(100), "INCR keeps the TTL");
    }

    #[test]
    fn incrbyfloat_replies_and_errors() {
        let mut ks = with_list();
        assert_eq!(run(&mut ks, 0, &["INCRBYFLOAT", "f", "0.1"]), bulk("0.1"));
        assert_eq!(run(&mut ks, 0, &["INCRBYFLOAT", "f", "0.2"]), bulk("0.3"));
        assert_eq!(run(&mut ks, 0, &["GET", "f"]), bulk("0.3"));
        run(&mut ks, 0, &["SET", "t", "10"]);
        run(&mut ks, 0, &["PEXPIRE", "t", "100"]);
        assert_eq!(run(&mut ks, 0, &["INCRBYFLOAT", "t", "1.5"]), bulk("11.5"));
        assert_eq!(ttl(&mut ks, 0, "t"), Some(100), "INCRBYFLOAT keeps the TTL");
        assert_eq!(
            run(&mut ks, 0, &["INCRBYFLOAT", "t", "abc"]),
            err("ERR value is not a valid float")
        );
        assert_eq!(
            run(&mut ks, 0, &["INCRBYFLOAT", "t", "inf"]),
            err("ERR increment would produce NaN or Infinity")
        );
        run(&mut ks, 0, &["SET", "s", "abc"]);
        assert_eq!(
            run(&mut ks, 0, &["INCRBYFLOAT", "s", "1"]),
            err("ERR value is not a valid float")
        );
        assert_eq!(run(&mut ks, 0, &["INCRBYFLOAT", "l", "1"]), err(WRONGTYPE));
        assert_eq!(
            run(&mut ks, 0, &["INCRBYFLOAT", "new", "1e-5000"]),
            err("ERR value is not a valid float")
        );
        assert_eq!(run(&mut ks, 0, &["EXISTS", "new"]), Reply::Int(0));
    }

    #[test]
    fn getrange_indexes() {
        let mut ks = with_list();
        run(&mut ks, 0, &["SET", "s", "Hello World"]);
        let cases = [
            ("0", "-1", "Hello World"),
            ("-3", "-1", "rld"),
            ("5", "3", ""),
            ("-100", "2", "Hel"),
            ("3", "100", "lo World"),
            ("100", "200", ""),
            ("-1", "-5", ""),
            ("0", "0", "H"),
            ("9223372036854775807", "9223372036854775807", ""),
            ("-9223372036854775808", "-9223372036854775808", "H"),
        ];
        for (start, end, want) in cases {
            assert_eq!(
                run(&mut ks, 0, &["GETRANGE", "s", start, end]),
                bulk(want),
                "{start} {end}"
            );
        }
        assert_eq!(run(&mut ks, 0, &["SUBSTR", "s", "0", "3"]), bulk("Hell"));
        assert_eq!(run(&mut ks, 0, &["GETRANGE", "s", "a", "1"]), err(NOT_INT));
        assert_eq!(run(&mut ks, 0, &["GETRANGE", "nokey", "0", "-1"]), bulk(""));
        assert_eq!(
            run(&mut ks, 0, &["GETRANGE", "nokey", "a", "b"]),
            err(NOT_INT)
        );
        assert_eq!(
            run(&mut ks, 0, &["GETRANGE", "l", "0", "1"]),
            err(WRONGTYPE)
        );
        run(&mut ks, 0, &["SET", "e", ""]);
        assert_eq!(run(&mut ks, 0, &["GETRANGE", "e", "0", "-1"]), bulk(""));
        assert_eq!(run(&mut ks, 0, &["GETRANGE", "e", "-1", "0"]), bulk(""));
    }

    #[test]
    fn setrange_cases() {
        let mut ks = with_list();
        assert_eq!(run(&mut ks, 0, &["SETRANGE", "nk", "0", ""]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["SETRANGE", "nk", "5", ""]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["EXISTS", "nk"]), Reply::Int(0));
        assert_eq!(
            run(&mut ks, 0, &["SETRANGE", "nk", "-1", "x"]),
            err("ERR offset is out of range")
        );
        assert_eq!(
            run(&mut ks, 0, &["SETRANGE", "nk", "-1", ""]),
            err("ERR offset is out of range")
        );
        assert_eq!(
            run(&mut ks, 0, &["SETRANGE", "nk", "536870912", "x"]),
            err("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
        );
        assert_eq!(run(&mut ks, 0, &["SETRANGE", "nk", "a", "x"]), err(NOT_INT));
        assert_eq!(
            run(&mut ks, 0, &["SETRANGE", "nk2", "2", "ab"]),
            Reply::Int(4)
        );
        assert_eq!(run(&mut ks, 0, &["GET", "nk2"]), Reply::bulk(b"\0\0ab"));
        run(&mut ks, 0, &["SET", "s", "Hello World"]);
        assert_eq!(run(&mut ks, 0, &["SETRANGE", "s", "5", ""]), Reply::Int(11));
        assert_eq!(
            run(&mut ks, 0, &["SETRANGE", "s", "15", "!!"]),
            Reply::Int(17)
        );
        assert_eq!(
            run(&mut ks, 0, &["GET", "s"]),
            Reply::bulk(b"Hello World\0\0\0\0!!")
        );
        assert_eq!(
            run(&mut ks, 0, &["SETRANGE", "s", "0", "J"]),
            Reply::Int(17)
        );
        assert_eq!(run(&mut ks, 0, &["GETRANGE", "s", "0", "4"]), bulk("Jello"));
        run(&mut ks, 0, &["SET", "e", ""]);
        assert_eq!(run(&mut ks, 0, &["SETRANGE", "e", "2", ""]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["EXISTS", "e"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["SETRANGE", "l", "0", ""]), err(WRONGTYPE));
    }

    #[test]
    fn binary_keys_and_values() {
        let mut ks = Keyspace::new();
        let key: &[u8] = b"\x00k\xff\r\n";
        assert_eq!(
            run_bytes(&mut ks, 0, &[b"SET", key, b"\x00\x01"]),
            Reply::ok()
        );
        assert_eq!(
            run_bytes(&mut ks, 0, &[b"GET", key]),
            Reply::bulk(b"\x00\x01")
        );
        assert_eq!(run_bytes(&mut ks, 0, &[b"STRLEN", key]), Reply::Int(2));
        assert_eq!(run_bytes(&mut ks, 0, &[b"SET", b"", b""]), Reply::ok());
        assert_eq!(run_bytes(&mut ks, 0, &[b"GET", b""]), bulk(""));
        assert_eq!(run_bytes(&mut ks, 0, &[b"STRLEN", b""]), Reply::Int(0));
    }

    /// One run of an `LCS ... IDX` reply: (range in key1, range in key2, length).
    type LcsRun = ((i64, i64), (i64, i64), i64);

    /// `LCS ... IDX` as Redis answers.
    fn lcs_idx(runs: &[LcsRun], with_len: bool, len: i64) -> Reply {
        let pair = |(s, e): (i64, i64)| Reply::Array(vec![Reply::Int(s), Reply::Int(e)]);
        let matches = runs
            .iter()
            .map(|&(ra, rb, n)| {
                let mut m = vec![pair(ra), pair(rb)];
                if with_len {
                    m.push(Reply::Int(n));
                }
                Reply::Array(m)
            })
            .collect();
        Reply::Map(vec![
            (bulk("matches"), Reply::Array(matches)),
            (bulk("len"), Reply::Int(len)),
        ])
    }

    /// A keyspace with the strings the expected replies below were taken from
    /// (redis-server 7.0.15).
    fn lcs_keyspace() -> Keyspace {
        let mut ks = with_list();
        for (k, v) in [
            ("a", "ohmytext"),
            ("b", "mynewtext"),
            ("x", "ABCBDAB"),
            ("y", "BDCABA"),
            ("p", "GAAGTCCGAT"),
            ("q", "TTGAAGCGATCC"),
            ("e", ""),
        ] {
            run(&mut ks, 0, &["SET", k, v]);
        }
        run_bytes(&mut ks, 0, &[b"SET", b"bin1", b"ab\x00\xffcd\x00"]);
        run_bytes(&mut ks, 0, &[b"SET", b"bin2", b"\x00\xffc\x00ab"]);
        ks
    }

    #[test]
    fn lcs_string_and_len() {
        let mut ks = lcs_keyspace();
        for (cmd, want) in [
            (&["LCS", "a", "b"][..], bulk("mytext")),
            (&["LCS", "a", "b", "LEN"], Reply::Int(6)),
            (&["LCS", "x", "y"], bulk("BDAB")),
            (&["LCS", "y", "x"], bulk("BCBA")),
            (&["LCS", "x", "y", "len"], Reply::Int(4)),
            (&["LCS", "p", "q"], bulk("GAAGCGAT")),
            (&["LCS", "p", "q", "WITHMATCHLEN"], bulk("GAAGCGAT")),
            (&["LCS", "p", "q", "MINMATCHLEN", "100"], bulk("GAAGCGAT")),
            (&["LCS", "p", "q", "LEN", "MINMATCHLEN", "3"], Reply::Int(8)),
            (&["LCS", "e", "x"], bulk("")),
            (&["LCS", "x", "e", "LEN"], Reply::Int(0)),
            (&["LCS", "e", "e"], bulk("")),
            (&["LCS", "nokey", "x"], bulk("")),
            (&["LCS", "nokey", "other"], bulk("")),
        ] {
            assert_eq!(run(&mut ks, 0, cmd), want, "{cmd:?}");
        }
        assert_eq!(
            run_bytes(&mut ks, 0, &[b"LCS", b"bin1", b"bin2"]),
            Reply::bulk(b"\x00\xffc\x00")
        );
    }

    #[test]
    fn lcs_idx_ranges_match_redis() {
        let mut ks = lcs_keyspace();
        let cases: &[(&[&str], Reply)] = &[
            (
                &["LCS", "a", "b", "IDX"],
                lcs_idx(&[((4, 7), (5, 8), 4), ((2, 3), (0, 1), 2)], false, 6),
            ),
            (
                &["LCS", "a", "b", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"],
                lcs_idx(&[((4, 7), (5, 8), 4)], true, 6),
            ),
            (
                &["LCS", "x", "y", "IDX", "WITHMATCHLEN"],
                lcs_idx(&[((5, 6), (3, 4), 2), ((3, 4), (0, 1), 2)], true, 4),
            ),
            (
                &["LCS", "y", "x", "IDX", "WITHMATCHLEN"],
                lcs_idx(
                    &[
                        ((5, 5), (5, 5), 1),
                        ((4, 4), (3, 3), 1),
                        ((2, 2), (2, 2), 1),
                        ((0, 0), (1, 1), 1),
                    ],
                    true,
                    4,
                ),
            ),
            (
                &["LCS", "y", "x", "IDX", "MINMATCHLEN", "2"],
                lcs_idx(&[], false, 4),
            ),
            (
                &["LCS", "p", "q", "IDX"],
                lcs_idx(&[((6, 9), (6, 9), 4), ((0, 3), (2, 5), 4)], false, 8),
            ),
            (
                &["LCS", "p", "q", "IDX", "MINMATCHLEN", "-3", "WITHMATCHLEN"],
                lcs_idx(&[((6, 9), (6, 9), 4), ((0, 3), (2, 5), 4)], true, 8),
            ),
            (
                &["LCS", "p", "q", "IdX", "MinMatchLen", "3", "WithMatchLen"],
                lcs_idx(&[((6, 9), (6, 9), 4), ((0, 3), (2, 5), 4)], true, 8),
            ),
            (
                &["LCS", "p", "p", "IDX", "WITHMATCHLEN"],
                lcs_idx(&[((0, 9), (0, 9), 10)], true, 10),
            ),
            (&["LCS", "e", "x", "IDX"], lcs_idx(&[], false, 0)),
            (
                &["LCS", "nokey", "x", "IDX", "WITHMATCHLEN"],
                lcs_idx(&[], true, 0),
            ),
            (&["LCS", "e", "e", "IDX"], lcs_idx(&[], false, 0)),
            (
                &["LCS", "bin1", "bin2", "IDX", "WITHMATCHLEN"],
                lcs_idx(&[((6, 6), (3, 3), 1), ((2, 4), (0, 2), 3)], true, 4),
            ),
            (
                &[
                    "LCS",
                    "bin1",
                    "bin2",
                    "IDX",
                    "MINMATCHLEN",
                    "2",
                    "WITHMATCHLEN",
                ],
                lcs_idx(&[((2, 4), (0, 2), 3)], true, 4),
            ),
        ];
        for (cmd, want) in cases {
            assert_eq!(&run(&mut ks, 0, cmd), want, "{cmd:?}");
        }
        // One long run ending at the first byte of one string only.
        let (m1, m2) = ("ab".repeat(3000), "ba".repeat(3000));
        run(&mut ks, 0, &["SET", "m1", &m1]);
        run(&mut ks, 0, &["SET", "m2", &m2]);
        assert_eq!(
            run(&mut ks, 0, &["LCS", "m1", "m2", "IDX", "WITHMATCHLEN"]),
            lcs_idx(&[((1, 5999), (0, 5998), 5999)], true, 5999)
        );
    }

    #[test]
    fn lcs_errors_in_redis_order() {
        let mut ks = lcs_keyspace();
        let types = "ERR The specified keys must contain string values";
        let both = "ERR If you want both the length and indexes, please just use IDX.";
        for (cmd, want) in [
            // The key types are checked before the options.
            (&["LCS", "l", "p", "FOO"][..], types),
            (&["LCS", "p", "l", "LEN", "IDX"], types),
            (&["LCS", "nokey", "l"], types),
            (&["LCS", "p", "q", "LEN", "IDX"], both),
            (&["LCS", "p", "q", "IDX", "IDX", "LEN"], both),
            // Options are parsed before LEN and IDX are compared.
            (&["LCS", "p", "q", "LEN", "IDX", "FOO"], "ERR syntax error"),
            (&["LCS", "p", "q", "MINMATCHLEN"], "ERR syntax error"),
            (
                &["LCS", "p", "q", "MINMATCHLEN", "x", "LEN", "IDX"],
                NOT_INT,
            ),
            (
                &["LCS", "p", "q", "IDX", "MINMATCHLEN", "9223372036854775808"],
                NOT_INT,
            ),
        ] {
            assert_eq!(run(&mut ks, 0, cmd), err(want), "{cmd:?}");
        }
    }

    #[test]
    fn lcs_refuses_a_table_over_proto_max_bulk_len() {
        let mut ks = lcs_keyspace();
        // (11585 + 1)^2 cells of 4 bytes exceed 512 MB; Redis refuses before allocating.
        run(&mut ks, 0, &["SET", "big1", &"a".repeat(11585)]);
        run(&mut ks, 0, &["SET", "big2", &"a".repeat(11584)]);
        let too_big =
            err("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
        assert_eq!(run(&mut ks, 0, &["LCS", "big1", "big1", "LEN"]), too_big);
        assert_eq!(run(&mut ks, 0, &["LCS", "big1", "big2", "IDX"]), too_big);
        assert_eq!(
            run(&mut ks, 0, &["LCS", "big1", "big1", "FOO"]),
            err("ERR syntax error"),
            "options first"
        );
        assert_eq!(run(&mut ks, 0, &["LCS", "big1", "e", "LEN"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["LCS", "big1", "nokey"]), bulk(""));
    }

    #[test]
    fn lcs_hides_expired_keys() {
        let mut ks = lcs_keyspace();
        run(&mut ks, 0, &["PEXPIRE", "a", "100"]);
        assert_eq!(run(&mut ks, 99, &["LCS", "a", "b"]), bulk("mytext"));
        assert_eq!(run(&mut ks, 101, &["LCS", "a", "b"]), bulk(""));
        run(&mut ks, 0, &["PEXPIRE", "l", "100"]);
        assert_eq!(run(&mut ks, 101, &["LCS", "l", "b", "LEN"]), Reply::Int(0));
    }
}
