//! Set commands.
//!
//! SPOP is a write with a random outcome: it draws only from the entry's `ctx.rng`,
//! and the set's slab layout is itself replicated state, so every replica pops the
//! same members.

use super::args::{self, Arg};
use super::error::CmdError;
use super::hashes::{parse_cursor, random_count, random_positions, scan_reply, ScanOptions};
use super::table::{flags::*, CommandSpec, Handler, Keys};
use super::{ReadCtx, WriteCtx};
use crate::keyspace::slab_map::SlabMap;
use crate::keyspace::{Keyspace, Value};
use crate::resp::Reply;

type Set = SlabMap<()>;

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        group: "set",
        since: "1.0.0",
        summary: "Add one or more members to a set",
        acl: &["write", "set", "fast"],
        ..CommandSpec::new(
            "sadd",
            -3,
            WRITE | DENYOOM | FAST,
            Keys::ONE,
            Handler::Write(sadd),
        )
    },
    CommandSpec {
        group: "set",
        since: "1.0.0",
        summary: "Remove one or more members from a set",
        acl: &["write", "set", "fast"],
        ..CommandSpec::new("srem", -3, WRITE | FAST, Keys::ONE, Handler::Write(srem))
    },
    CommandSpec {
        group: "set",
        since: "1.0.0",
        summary: "Get all the members in a set",
        acl: &["read", "set", "slow"],
        ..CommandSpec::new("smembers", 2, READONLY, Keys::ONE, Handler::Read(smembers))
    },
    CommandSpec {
        group: "set",
        since: "1.0.0",
        summary: "Determine if a given value is a member of a set",
        acl: &["read", "set", "fast"],
        ..CommandSpec::new(
            "sismember",
            3,
            READONLY | FAST,
            Keys::ONE,
            Handler::Read(sismember),
        )
    },
    CommandSpec {
        group: "set",
        since: "6.2.0",
        summary: "Returns the membership associated with the given elements for a set",
        acl: &["read", "set", "fast"],
        ..CommandSpec::new(
            "smismember",
            -3,
            READONLY | FAST,
            Keys::ONE,
            Handler::Read(smismember),
        )
    },
    CommandSpec {
        group: "set",
        since: "1.0.0",
        summary: "Get the number of members in a set",
        acl: &["read", "set", "fast"],
        ..CommandSpec::new("scard", 2, READONLY | FAST, Keys::ONE, Handler::Read(scard))
    },
    CommandSpec {
        group: "set",
        since: "1.0.0",
        summary: "Remove and return one or multiple random members from a set",
        acl: &["write", "set", "fast"],
        ..CommandSpec::new("spop", -2, WRITE | FAST, Keys::ONE, Handler::Write(spop))
    },
    CommandSpec {
        group: "set",
        since: "1.0.0",
        summary: "Get one or multiple random members from a set",
        acl: &["read", "set", "slow"],
        ..CommandSpec::new(
            "srandmember",
            -2,
            READONLY,
            Keys::ONE,
            Handler::Read(srandmember),
        )
    },
    CommandSpec {
        group: "set",
        since: "1.0.0",
        summary: "Move a member from one set to another",
        acl: &["write", "set", "fast"],
        ..CommandSpec::new("smove", 4, WRITE | FAST, Keys::TWO, Handler::Write(smove))
    },
    CommandSpec {
        group: "set",
        since: "1.0.0",
        summary: "Intersect multiple sets",
        acl: &["read", "set", "slow"],
        ..CommandSpec::new("sinter", -2, READONLY, Keys::ALL, Handler::Read(sinter))
    },
    CommandSpec {
        group: "set",
        since: "7.0.0",
        summary: "Intersect multiple sets and return the cardinality of the result",
        acl: &["read", "set", "slow"],
        ..CommandSpec::new(
            "sintercard",
            -3,
            READONLY | MOVABLE_KEYS,
            Keys::movable(0, 0, 0, sintercard_keys),
            Handler::Read(sintercard),
        )
    },
    CommandSpec {
        group: "set",
        since: "1.0.0",
        summary: "Intersect multiple sets and store the resulting set in a key",
        acl: &["write", "set", "slow"],
        ..CommandSpec::new(
            "sinterstore",
            -3,
            WRITE | DENYOOM,
            Keys::ALL,
            Handler::Write(sinterstore),
        )
    },
    CommandSpec {
        group: "set",
        since: "1.0.0",
        summary: "Add multiple sets",
        acl: &["read", "set", "slow"],
        ..CommandSpec::new("sunion", -2, READONLY, Keys::ALL, Handler::Read(sunion))
    },
    CommandSpec {
        group: "set",
        since: "1.0.0",
        summary: "Add multiple sets and store the resulting set in a key",
        acl: &["write", "set", "slow"],
        ..CommandSpec::new(
            "sunionstore",
            -3,
            WRITE | DENYOOM,
            Keys::ALL,
            Handler::Write(sunionstore),
        )
    },
    CommandSpec {
        group: "set",
        since: "1.0.0",
        summary: "Subtract multiple sets",
        acl: &["read", "set", "slow"],
        ..CommandSpec::new("sdiff", -2, READONLY, Keys::ALL, Handler::Read(sdiff))
    },
    CommandSpec {
        group: "set",
        since: "1.0.0",
        summary: "Subtract multiple sets and store the resulting set in a key",
        acl: &["write", "set", "slow"],
        ..CommandSpec::new(
            "sdiffstore",
            -3,
            WRITE | DENYOOM,
            Keys::ALL,
            Handler::Write(sdiffstore),
        )
    },
    CommandSpec {
        group: "set",
        since: "2.8.0",
        summary: "Incrementally iterate Set elements",
        acl: &["read", "set", "slow"],
        ..CommandSpec::new("sscan", -3, READONLY, Keys::ONE, Handler::Read(sscan))
    },
];

/// The set at `key` for a read: `Ok(None)` if absent, WRONGTYPE if another type.
fn read_set<'a>(ks: &'a Keyspace, key: &[u8], now: u64) -> Result<Option<&'a Set>, CmdError> {
    match ks.read(key, now) {
        None => Ok(None),
        Some(e) => match &e.value {
            Value::Set(s) => Ok(Some(&**s)),
            _ => Err(CmdError::WrongType),
        },
    }
}

/// The set at `key` for a write: `Ok(None)` if absent (or expired, which deletes
/// it), WRONGTYPE if another type.
fn write_set<'a>(
    ks: &'a mut Keyspace,
    key: &[u8],
    now: u64,
) -> Result<Option<&'a mut Set>, CmdError> {
    match ks.write(key, now) {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::Set(s) => Ok(Some(&mut **s)),
            _ => Err(CmdError::WrongType),
        },
    }
}

/// Adds `member`; true if it was not there.
fn add(s: &mut Set, member: &[u8]) -> bool {
    s.insert(member, ()).is_none()
}

fn members_reply<'a>(members: impl IntoIterator<Item = &'a [u8]>) -> Reply {
    Reply::Set(members.into_iter().map(Reply::bulk).collect())
}

/// SADD key member [member ...]
fn sadd(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let key = &a[1];
    let added = match write_set(ks, key, ctx.now)? {
        Some(s) => {
            let n = a[2..].iter().filter(|m| add(s, m)).count();
            if n > 0 {
                ks.modified(key);
            }
            n
        }
        None => {
            let mut s = Set::new();
            let n = a[2..].iter().filter(|m| add(&mut s, m)).count();
            ks.set(key, Value::Set(Box::new(s)), ctx.now);
            n
        }
    };
    Ok(Reply::Int(added as i64))
}

/// SREM key member [member ...]
fn srem(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let key = &a[1];
    let Some(s) = write_set(ks, key, ctx.now)? else {
        return Ok(Reply::Int(0));
    };
    let removed = a[2..].iter().filter(|m| s.remove(m).is_some()).count();
    if s.is_empty() {
        ks.remove(key, ctx.now);
    } else if removed > 0 {
        ks.modified(key);
    }
    Ok(Reply::Int(removed as i64))
}

/// SMEMBERS key
fn smembers(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let s = read_set(ks, &a[1], ctx.now)?;
    Ok(members_reply(
        s.into_iter().flat_map(|s| s.keys()).map(|k| &**k),
    ))
}

/// SISMEMBER key member
fn sismember(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let found = read_set(ks, &a[1], ctx.now)?.is_some_and(|s| s.contains(&a[2]));
    Ok(Reply::Int(found as i64))
}

/// SMISMEMBER key member [member ...]
fn smismember(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let s = read_set(ks, &a[1], ctx.now)?;
    Ok(Reply::Array(
        a[2..]
            .iter()
            .map(|m| Reply::Int(s.is_some_and(|s| s.contains(m)) as i64))
            .collect(),
    ))
}

/// SCARD key
fn scard(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(Reply::Int(
        read_set(ks, &a[1], ctx.now)?.map_or(0, |s| s.len()) as i64,
    ))
}

/// SPOP key [count]
fn spop(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let key = &a[1];
    let count = match a.len() {
        2 => None,
        3 => match args::int(&a[2]) {
            Ok(n) if n >= 0 => Some(n),
            _ => return Err(CmdError::NotPositive),
        },
        _ => return Err(CmdError::Syntax),
    };
    let Some(s) = write_set(ks, key, ctx.now)? else {
        return Ok(match count {
            None => Reply::Nil,
            Some(_) => Reply::Set(Vec::new()),
        });
    };
    let popped: Vec<Reply> = match count {
        None => {
            let pos = s
                .random_pos(|| ctx.rng.next_u64())
                .expect("sets are never empty");
            vec![Reply::bulk(s.remove_at(pos).unwrap().0)]
        }
        Some(0) => return Ok(Reply::Set(Vec::new())),
        Some(n) => random_positions(s, n, &mut ctx.rng)
            .into_iter()
            .map(|p| Reply::bulk(s.remove_at(p).unwrap().0))
            .collect(),
    };
    if s.is_empty() {
        ks.remove(key, ctx.now);
    } else {
        ks.modified(key);
    }
    Ok(match count {
        None => popped.into_iter().next().unwrap(),
        Some(_) => Reply::Set(popped),
    })
}

/// SRANDMEMBER key [count]
fn srandmember(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    match a.len() {
        2 => {
            let Some(s) = read_set(ks, &a[1], ctx.now)? else {
                return Ok(Reply::Nil);
            };
            let pos = s
                .random_pos(|| ctx.rng.next_u64())
                .expect("sets are never empty");
            Ok(Reply::bulk(s.at(pos).unwrap().0))
        }
        3 => {
            let count = random_count(&a[2])?;
            let Some(s) = read_set(ks, &a[1], ctx.now)? else {
                return Ok(Reply::Array(Vec::new()));
            };
            Ok(Reply::Array(
                random_positions(s, count, &mut ctx.rng)
                    .into_iter()
                    .map(|p| Reply::bulk(s.at(p).unwrap().0))
                    .collect(),
            ))
        }
        _ => Err(CmdError::Syntax),
    }
}

/// SMOVE source destination member
fn smove(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let (src, dst, member) = (&a[1], &a[2], &a[3]);
    // Both types are checked before anything moves, as Redis does.
    let src_has = match write_set(ks, src, ctx.now)? {
        None => return Ok(Reply::Int(0)),
        Some(s) => s.contains(member),
    };
    write_set(ks, dst, ctx.now)?;
    if src == dst || !src_has {
        return Ok(Reply::Int(src_has as i64));
    }
    let s = write_set(ks, src, ctx.now)?.expect("source checked above");
    s.remove(member);
    if s.is_empty() {
        ks.remove(src, ctx.now);
    } else {
        ks.modified(src);
    }
    match write_set(ks, dst, ctx.now)? {
        Some(d) => {
            add(d, member);
            ks.modified(dst);
        }
        None => {
            let mut d = Set::new();
            add(&mut d, member);
            ks.set(dst, Value::Set(Box::new(d)), ctx.now);
        }
    }
    Ok(Reply::Int(1))
}

#[derive(Clone, Copy, PartialEq)]
enum SetOp {
    Inter,
    Union,
    Diff,
}

/// Looks up every key (a missing key is an empty set), failing with WRONGTYPE if any
/// holds another type, even after a missing one, as Redis does.
fn lookup_all<'a>(
    ks: &'a Keyspace,
    keys: &[Arg],
    now: u64,
) -> Result<Vec<Option<&'a Set>>, CmdError> {
    keys.iter().map(|k| read_set(ks, k, now)).collect()
}

/// The result of SINTER/SUNION/SDIFF over `keys`, in a deterministic order (slab
/// order of the sets involved), so a store variant builds the same layout on every
/// replica.
fn compute(ks: &Keyspace, keys: &[Arg], now: u64, op: SetOp) -> Result<Set, CmdError> {
    let sets = lookup_all(ks, keys, now)?;
    let mut out = Set::new();
    match op {
        SetOp::Inter => {
            let Some(mut sets) = sets.into_iter().collect::<Option<Vec<&Set>>>() else {
                return Ok(out);
            };
            // Stable sort: ties keep key order, so the result order is deterministic.
            sets.sort_by_key(|s| s.len());
            for m in sets[0].keys() {
                if sets[1..].iter().all(|s| s.contains(m)) {
                    out.insert_new(m.clone(), ());
                }
            }
        }
        SetOp::Union => {
            for m in sets.iter().flatten().flat_map(|s| s.keys()) {
                add(&mut out, m);
            }
        }
        SetOp::Diff => {
            let Some(first) = sets[0] else {
                return Ok(out);
            };
            for m in first.keys() {
                if !sets[1..].iter().flatten().any(|s| s.contains(m)) {
                    out.insert_new(m.clone(), ());
                }
            }
        }
    }
    Ok(out)
}

fn set_op_reply(ks: &Keyspace, ctx: &ReadCtx, a: &[Arg], op: SetOp) -> Result<Reply, CmdError> {
    let result = compute(ks, &a[1..], ctx.now, op)?;
    Ok(members_reply(result.keys().map(|k| &**k)))
}

/// Stores the result at `a[1]` (overwriting any type), or deletes `a[1]` when the
/// result is empty; replies with the result's size.
fn set_op_store(
    ks: &mut Keyspace,
    ctx: &WriteCtx,
    a: &[Arg],
    op: SetOp,
) -> Result<Reply, CmdError> {
    let result = compute(ks, &a[2..], ctx.now, op)?;
    let n = result.len();
    if n == 0 {
        ks.remove(&a[1], ctx.now);
    } else {
        ks.set(&a[1], Value::Set(Box::new(result)), ctx.now);
    }
    Ok(Reply::Int(n as i64))
}

/// SINTER key [key ...]
fn sinter(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    set_op_reply(ks, ctx, a, SetOp::Inter)
}

/// SUNION key [key ...]
fn sunion(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    set_op_reply(ks, ctx, a, SetOp::Union)
}

/// SDIFF key [key ...]
fn sdiff(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    set_op_reply(ks, ctx, a, SetOp::Diff)
}

/// SINTERSTORE destination key [key ...]
fn sinterstore(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    set_op_store(ks, ctx, a, SetOp::Inter)
}

/// SUNIONSTORE destination key [key ...]
fn sunionstore(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    set_op_store(ks, ctx, a, SetOp::Union)
}

/// SDIFFSTORE destination key [key ...]
fn sdiffstore(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    set_op_store(ks, ctx, a, SetOp::Diff)
}

/// SINTERCARD's numkeys (`a[1]`), checked against the arguments that follow.
fn sintercard_numkeys(a: &[Arg]) -> Result<usize, CmdError> {
    let n = match args::int(&a[1]) {
        Ok(n) if n > 0 => n as u64,
        _ => return Err(CmdError::other("ERR numkeys should be greater than 0")),
    };
    if n > (a.len() - 2) as u64 {
        return Err(CmdError::other(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    Ok(n as usize)
}

/// SINTERCARD's key positions: `numkeys` keys from position 2.
fn sintercard_keys(a: &[Arg]) -> Result<Vec<usize>, CmdError> {
    let n = sintercard_numkeys(a)?;
    Ok((2..2 + n).collect())
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit]
fn sintercard(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let n = sintercard_numkeys(a)?;
    let keys = &a[2..2 + n];
    let mut limit = 0u64;
    let mut opts = a[2 + n..].iter();
    while let Some(opt) = opts.next() {
        match opts.next() {
            Some(v) if args::is(opt, "limit") => {
                limit = match args::int(v) {
                    Ok(l) if l >= 0 => l as u64,
                    _ => return Err(CmdError::other("ERR LIMIT can't be negative")),
                };
            }
            _ => return Err(CmdError::Syntax),
        }
    }
    let Some(mut sets) = lookup_all(ks, keys, ctx.now)?
        .into_iter()
        .collect::<Option<Vec<&Set>>>()
    else {
        return Ok(Reply::Int(0));
    };
    sets.sort_by_key(|s| s.len());
    let mut card = 0u64;
    for m in sets[0].keys() {
        if sets[1..].iter().all(|s| s.contains(m)) {
            card += 1;
            if card == limit {
                break;
            }
        }
    }
    Ok(Reply::Int(card as i64))
}

/// SSCAN key cursor [MATCH pattern] [COUNT count]
fn sscan(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let cursor = parse_cursor(&a[2])?;
    let Some(e) = ks.read(&a[1], ctx.now) else {
        return Ok(scan_reply(0, Vec::new()));
    };
    let Value::Set(s) = &e.value else {
        return Err(CmdError::WrongType);
    };
    let opts = ScanOptions::parse(&a[3..])?;
    let mut items = Vec::new();
    let next = opts.scan(s, e.value.is_compact(), cursor, |m, _| {
        items.push(Reply::bulk(m))
    });
    Ok(scan_reply(next, items))
}
