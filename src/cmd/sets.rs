//! Set commands.
//!
//! SPOP is a write with a random outcome: it draws only from the entry's `ctx.rng`,
//! and the set's slab layout is itself replicated state, so every replica pops the
//! same members.

use super::args::{self, Arg};
use super::error::CmdError;
use super::hashes::{parse_cursor, random_count, random_positions, scan_reply, ScanOptions};
use super::table::{flags::*, CommandSpec, Handler, KeySpec, Keys};
use super::{ReadCtx, WriteCtx};
use crate::keyspace::slab_map::SlabMap;
use crate::keyspace::{Keyspace, Value};
use crate::resp::Reply;

type Set = SlabMap<()>;

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "insert"], 1, 0, 1)],
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
        key_specs: &[KeySpec::range(&["RW", "delete"], 1, 0, 1)],
        group: "set",
        since: "1.0.0",
        summary: "Remove one or more members from a set",
        acl: &["write", "set", "fast"],
        ..CommandSpec::new("srem", -3, WRITE | FAST, Keys::ONE, Handler::Write(srem))
    },
    CommandSpec {
        tips: &["nondeterministic_output_order"],
        group: "set",
        since: "1.0.0",
        summary: "Get all the members in a set",
        acl: &["read", "set", "slow"],
        ..CommandSpec::new("smembers", 2, READONLY, Keys::ONE, Handler::Read(smembers))
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RO"], 1, 0, 1)],
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
        key_specs: &[KeySpec::range(&["RO"], 1, 0, 1)],
        group: "set",
        since: "1.0.0",
        summary: "Get the number of members in a set",
        acl: &["read", "set", "fast"],
        ..CommandSpec::new("scard", 2, READONLY | FAST, Keys::ONE, Handler::Read(scard))
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, 0, 1)],
        group: "set",
        since: "1.0.0",
        summary: "Remove and return one or multiple random members from a set",
        acl: &["write", "set", "fast"],
        ..CommandSpec::new("spop", -2, WRITE | FAST, Keys::ONE, Handler::Write(spop))
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
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
        key_specs: &[
            KeySpec::range(&["RW", "access", "delete"], 1, 0, 1),
            KeySpec::range(&["RW", "insert"], 2, 0, 1),
        ],
        group: "set",
        since: "1.0.0",
        summary: "Move a member from one set to another",
        acl: &["write", "set", "fast"],
        ..CommandSpec::new("smove", 4, WRITE | FAST, Keys::TWO, Handler::Write(smove))
    },
    CommandSpec {
        tips: &["nondeterministic_output_order"],
        group: "set",
        since: "1.0.0",
        summary: "Intersect multiple sets",
        acl: &["read", "set", "slow"],
        ..CommandSpec::new("sinter", -2, READONLY, Keys::ALL, Handler::Read(sinter))
    },
    CommandSpec {
        key_specs: &[KeySpec::keynum(&["RO", "access"], 1)],
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
        key_specs: &[
            KeySpec::range(&["RW", "update"], 1, 0, 1),
            KeySpec::range(&["RO", "access"], 2, -1, 1),
        ],
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
        tips: &["nondeterministic_output_order"],
        group: "set",
        since: "1.0.0",
        summary: "Add multiple sets",
        acl: &["read", "set", "slow"],
        ..CommandSpec::new("sunion", -2, READONLY, Keys::ALL, Handler::Read(sunion))
    },
    CommandSpec {
        key_specs: &[
            KeySpec::range(&["OW", "update"], 1, 0, 1),
            KeySpec::range(&["RO", "access"], 2, -1, 1),
        ],
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
        tips: &["nondeterministic_output_order"],
        group: "set",
        since: "1.0.0",
        summary: "Subtract multiple sets",
        acl: &["read", "set", "slow"],
        ..CommandSpec::new("sdiff", -2, READONLY, Keys::ALL, Handler::Read(sdiff))
    },
    CommandSpec {
        key_specs: &[
            KeySpec::range(&["OW", "update"], 1, 0, 1),
            KeySpec::range(&["RO", "access"], 2, -1, 1),
        ],
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
        tips: &["nondeterministic_output"],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::testing::{bulk, run};
    use crate::cmd::{apply, ApplyLimits};
    use proto::{Op, WriteEntry};

    fn err(s: &'static str) -> Reply {
        Reply::error(s)
    }

    fn wrongtype() -> Reply {
        CmdError::WrongType.reply()
    }

    fn set(items: &[&str]) -> Reply {
        Reply::Set(items.iter().map(|s| bulk(s)).collect())
    }

    /// Members of a Set or Array reply, sorted, for order-free comparisons.
    fn sorted(r: Reply) -> Vec<String> {
        let (Reply::Set(items) | Reply::Array(items)) = r else {
            panic!("not a collection: {r:?}")
        };
        let mut v: Vec<String> = items
            .into_iter()
            .map(|i| match i {
                Reply::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
                other => panic!("not a bulk: {other:?}"),
            })
            .collect();
        v.sort();
        v
    }

    /// "str" is a string; a = {1,2,3,4}, b = {3,4,5}, c = {4,5,6}.
    fn fixture() -> Keyspace {
        let mut ks = Keyspace::new();
        run(&mut ks, 0, &["SET", "str", "x"]);
        assert_eq!(
            run(&mut ks, 0, &["SADD", "a", "1", "2", "3", "4"]),
            Reply::Int(4)
        );
        assert_eq!(
            run(&mut ks, 0, &["SADD", "b", "3", "4", "5"]),
            Reply::Int(3)
        );
        assert_eq!(
            run(&mut ks, 0, &["SADD", "c", "4", "5", "6"]),
            Reply::Int(3)
        );
        ks
    }

    #[test]
    fn sadd_srem_and_membership() {
        let mut ks = fixture();
        assert_eq!(
            run(&mut ks, 0, &["SADD", "a", "1", "9", "9"]),
            Reply::Int(1)
        );
        assert_eq!(run(&mut ks, 0, &["SREM", "a", "9", "zz"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["SREM", "nokey", "1"]), Reply::Int(0));
        assert_eq!(
            run(&mut ks, 0, &["SMEMBERS", "a"]),
            set(&["1", "2", "3", "4"])
        );
        assert_eq!(run(&mut ks, 0, &["SMEMBERS", "nokey"]), set(&[]));
        assert_eq!(run(&mut ks, 0, &["SISMEMBER", "a", "2"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["SISMEMBER", "a", "9"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["SISMEMBER", "nokey", "2"]), Reply::Int(0));
        assert_eq!(
            run(&mut ks, 0, &["SMISMEMBER", "a", "2", "9", "2"]),
            Reply::Array(vec![Reply::Int(1), Reply::Int(0), Reply::Int(1)])
        );
        assert_eq!(
            run(&mut ks, 0, &["SMISMEMBER", "nokey", "2", "9"]),
            Reply::Array(vec![Reply::Int(0), Reply::Int(0)])
        );
        assert_eq!(run(&mut ks, 0, &["SCARD", "a"]), Reply::Int(4));
        assert_eq!(run(&mut ks, 0, &["SCARD", "nokey"]), Reply::Int(0));
        assert_eq!(
            run(&mut ks, 0, &["SREM", "b", "3", "4", "5"]),
            Reply::Int(3)
        );
        assert!(!ks.exists(b"b", 0));
        assert_eq!(run(&mut ks, 0, &["SADD", "e", ""]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["SISMEMBER", "e", ""]), Reply::Int(1));
        for cmd in [
            &["SADD", "str", "a"][..],
            &["SREM", "str", "a"],
            &["SMEMBERS", "str"],
            &["SISMEMBER", "str", "a"],
            &["SMISMEMBER", "str", "a"],
            &["SCARD", "str"],
            &["SPOP", "str"],
            &["SPOP", "str", "0"],
            &["SRANDMEMBER", "str"],
            &["SRANDMEMBER", "str", "-1"],
            &["SSCAN", "str", "0"],
        ] {
            assert_eq!(run(&mut ks, 0, cmd), wrongtype(), "{cmd:?}");
        }
    }

    #[test]
    fn writes_signal_changes_only_when_something_changed() {
        let mut ks = fixture();
        ks.add_interest(b"a");
        ks.take_dirty();
        run(&mut ks, 0, &["SADD", "a", "1"]);
        run(&mut ks, 0, &["SREM", "a", "zz"]);
        run(&mut ks, 0, &["SMOVE", "a", "b", "zz"]);
        run(&mut ks, 0, &["SPOP", "a", "0"]);
        assert!(ks.take_dirty().is_empty());
        run(&mut ks, 0, &["SADD", "a", "new"]);
        assert!(!ks.take_dirty().is_empty());
        run(&mut ks, 0, &["SPOP", "a"]);
        assert!(!ks.take_dirty().is_empty());
    }

    #[test]
    fn spop() {
        let mut ks = fixture();
        assert_eq!(run(&mut ks, 0, &["SPOP", "nokey"]), Reply::Nil);
        assert_eq!(run(&mut ks, 0, &["SPOP", "nokey", "2"]), set(&[]));
        assert_eq!(run(&mut ks, 0, &["SPOP", "a", "0"]), set(&[]));
        for bad in ["-1", "x", "-9223372036854775808"] {
            assert_eq!(
                run(&mut ks, 0, &["SPOP", "a", bad]),
                err("ERR value is out of range, must be positive")
            );
            // The count is checked before the key's type.
            assert_eq!(
                run(&mut ks, 0, &["SPOP", "str", bad]),
                err("ERR value is out of range, must be positive")
            );
        }
        assert_eq!(
            run(&mut ks, 0, &["SPOP", "a", "1", "2"]),
            err("ERR syntax error")
        );
        let one = run(&mut ks, 0, &["SPOP", "a"]);
        let Reply::Bulk(m) = &one else { panic!() };
        assert_eq!(run_ismember(&mut ks, "a", m), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["SCARD", "a"]), Reply::Int(3));
        let two = sorted(run(&mut ks, 0, &["SPOP", "a", "2"]));
        assert_eq!(two.len(), 2);
        assert_ne!(two[0], two[1]);
        assert_eq!(run(&mut ks, 0, &["SCARD", "a"]), Reply::Int(1));
        // A count covering the set pops everything and deletes the key.
        assert_eq!(
            sorted(run(&mut ks, 0, &["SPOP", "c", "10"])),
            ["4", "5", "6"]
        );
        assert!(!ks.exists(b"c", 0));
        assert_eq!(
            sorted(run(&mut ks, 0, &["SPOP", "b", "9223372036854775807"])),
            ["3", "4", "5"]
        );
        run(&mut ks, 0, &["SPOP", "a"]);
        assert!(!ks.exists(b"a", 0));
    }

    fn run_ismember(ks: &mut Keyspace, key: &str, m: &[u8]) -> Reply {
        crate::cmd::testing::run_bytes(ks, 0, &[b"SISMEMBER", key.as_bytes(), m])
    }

    #[test]
    fn spop_of_a_large_set_pops_distinct_members() {
        let mut ks = Keyspace::new();
        let members: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
        let mut cmd = vec!["SADD", "s"];
        cmd.extend(members.iter().map(|s| s.as_str()));
        run(&mut ks, 0, &cmd);
        let mut popped = sorted(run(&mut ks, 0, &["SPOP", "s", "100"]));
        popped.extend(sorted(run(&mut ks, 0, &["SPOP", "s", "800"])));
        assert_eq!(run(&mut ks, 0, &["SCARD", "s"]), Reply::Int(100));
        popped.extend(sorted(run(&mut ks, 0, &["SMEMBERS", "s"])));
        popped.sort();
        let mut all = members.clone();
        all.sort();
        assert_eq!(popped, all);
    }

    #[test]
    fn spop_is_deterministic_across_replicas() {
        let history = |seed: u64| -> (Keyspace, Vec<Reply>) {
            let mut ks = Keyspace::new();
            let mut replies = Vec::new();
            let entries = [
                vec![
                    "SADD", "s", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j",
                ],
                vec!["SREM", "s", "c", "f"],
                vec!["SADD", "s", "k", "l", "m"],
                vec!["SPOP", "s"],
                vec!["SPOP", "s", "3"],
                vec!["SPOP", "s", "5"],
                vec!["SPOP", "s"],
            ];
            for (i, argv) in entries.iter().enumerate() {
                let entry = WriteEntry {
                    time_ms: 1000,
                    seed: seed.wrapping_add(i as u64),
                    op: Op::Exec(vec![argv
                        .iter()
                        .map(|a| bytes::Bytes::copy_from_slice(a.as_bytes()))
                        .collect()]),
                };
                replies.extend(apply(&mut ks, &entry, ApplyLimits::default()));
            }
            (ks, replies)
        };
        let (a, ra) = history(42);
        let (b, rb) = history(42);
        assert_eq!(ra, rb);
        assert!(a.same_state(&b));
        // Another seed pops other members (with overwhelming probability).
        let outcomes: std::collections::HashSet<String> =
            (0..8).map(|s| format!("{:?}", history(s).1)).collect();
        assert!(outcomes.len() > 1);
    }

    #[test]
    fn srandmember() {
        let mut ks = fixture();
        assert_eq!(run(&mut ks, 0, &["SRANDMEMBER", "nokey"]), Reply::Nil);
        assert_eq!(
            run(&mut ks, 0, &["SRANDMEMBER", "nokey", "2"]),
            Reply::Array(vec![])
        );
        assert_eq!(
            run(&mut ks, 0, &["SRANDMEMBER", "nokey", "-2"]),
            Reply::Array(vec![])
        );
        assert_eq!(
            run(&mut ks, 0, &["SRANDMEMBER", "a", "0"]),
            Reply::Array(vec![])
        );
        let one = run(&mut ks, 0, &["SRANDMEMBER", "a"]);
        assert!(["1", "2", "3", "4"].iter().any(|m| one == bulk(m)));
        assert_eq!(
            sorted(run(&mut ks, 0, &["SRANDMEMBER", "a", "10"])),
            ["1", "2", "3", "4"]
        );
        let two = sorted(run(&mut ks, 0, &["SRANDMEMBER", "a", "2"]));
        assert_eq!(two.len(), 2);
        assert_ne!(two[0], two[1]);
        let many = run(&mut ks, 0, &["SRANDMEMBER", "a", "-20"]);
        assert!(matches!(&many, Reply::Array(v) if v.len() == 20));
        let mut distinct = sorted(many);
        distinct.dedup();
        assert!(distinct.len() > 1 && distinct.len() <= 4);
        assert_eq!(run(&mut ks, 0, &["SCARD", "a"]), Reply::Int(4), "a read");
        assert_eq!(
            run(&mut ks, 0, &["SRANDMEMBER", "a", "x"]),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            run(&mut ks, 0, &["SRANDMEMBER", "str", "x"]),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            run(&mut ks, 0, &["SRANDMEMBER", "a", "-9223372036854775808"]),
            err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
        );
        assert_eq!(
            run(&mut ks, 0, &["SRANDMEMBER", "a", "1", "2"]),
            err("ERR syntax error")
        );
    }

    #[test]
    fn smove() {
        let mut ks = fixture();
        assert_eq!(run(&mut ks, 0, &["SMOVE", "a", "d", "1"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["SMEMBERS", "d"]), set(&["1"]));
        assert_eq!(run(&mut ks, 0, &["SISMEMBER", "a", "1"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["SMOVE", "a", "b", "3"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["SCARD", "b"]), Reply::Int(3));
        assert_eq!(run(&mut ks, 0, &["SMOVE", "a", "d", "zz"]), Reply::Int(0));
        assert_eq!(
            run(&mut ks, 0, &["SMOVE", "nokey", "d", "1"]),
            Reply::Int(0)
        );
        assert!(!ks.exists(b"nokey", 0));
        assert_eq!(run(&mut ks, 0, &["SMOVE", "a", "a", "2"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["SMOVE", "a", "a", "zz"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["SCARD", "a"]), Reply::Int(2));
        assert_eq!(run(&mut ks, 0, &["SMOVE", "a", "str", "2"]), wrongtype());
        assert_eq!(run(&mut ks, 0, &["SMOVE", "a", "str", "zz"]), wrongtype());
        assert_eq!(run(&mut ks, 0, &["SMOVE", "str", "a", "2"]), wrongtype());
        assert_eq!(
            run(&mut ks, 0, &["SMOVE", "nokey", "str", "1"]),
            Reply::Int(0)
        );
        assert_eq!(run(&mut ks, 0, &["SCARD", "a"]), Reply::Int(2));
        // Moving the last member deletes the source.
        run(&mut ks, 0, &["SMOVE", "a", "d", "2"]);
        run(&mut ks, 0, &["SMOVE", "a", "d", "4"]);
        assert!(!ks.exists(b"a", 0));
        assert_eq!(sorted(run(&mut ks, 0, &["SMEMBERS", "d"])), ["1", "2", "4"]);
    }

    #[test]
    fn algebra() {
        let mut ks = fixture();
        assert_eq!(sorted(run(&mut ks, 0, &["SINTER", "a", "b"])), ["3", "4"]);
        assert_eq!(sorted(run(&mut ks, 0, &["SINTER", "a", "b", "c"])), ["4"]);
        assert_eq!(
            sorted(run(&mut ks, 0, &["SINTER", "a"])),
            ["1", "2", "3", "4"]
        );
        assert_eq!(run(&mut ks, 0, &["SINTER", "a", "nokey"]), set(&[]));
        assert_eq!(
            sorted(run(&mut ks, 0, &["SUNION", "a", "b", "c", "nokey"])),
            ["1", "2", "3", "4", "5", "6"]
        );
        assert_eq!(run(&mut ks, 0, &["SUNION", "nokey"]), set(&[]));
        assert_eq!(sorted(run(&mut ks, 0, &["SDIFF", "a", "b"])), ["1", "2"]);
        assert_eq!(
            sorted(run(&mut ks, 0, &["SDIFF", "a", "b", "c"])),
            ["1", "2"]
        );
        assert_eq!(
            sorted(run(&mut ks, 0, &["SDIFF", "a", "nokey"])),
            ["1", "2", "3", "4"]
        );
        assert_eq!(run(&mut ks, 0, &["SDIFF", "a", "a"]), set(&[]));
        assert_eq!(run(&mut ks, 0, &["SDIFF", "nokey", "a"]), set(&[]));
        // Every key's type is checked, even after a missing key.
        for cmd in ["SINTER", "SUNION", "SDIFF"] {
            assert_eq!(
                run(&mut ks, 0, &[cmd, "nokey", "str"]),
                wrongtype(),
                "{cmd}"
            );
            assert_eq!(run(&mut ks, 0, &[cmd, "a", "str"]), wrongtype(), "{cmd}");
        }
    }

    #[test]
    fn algebra_store() {
        let mut ks = fixture();
        assert_eq!(
            run(&mut ks, 0, &["SINTERSTORE", "d", "a", "b"]),
            Reply::Int(2)
        );
        assert_eq!(sorted(run(&mut ks, 0, &["SMEMBERS", "d"])), ["3", "4"]);
        // The destination is overwritten whatever its type, and loses its TTL.
        assert!(ks.set_expire(b"str", 10_000, 0));
        assert_eq!(
            run(&mut ks, 0, &["SUNIONSTORE", "str", "b", "c"]),
            Reply::Int(4)
        );
        assert_eq!(ks.peek(b"str", 0).unwrap().value.type_name(), "set");
        assert_eq!(ks.peek(b"str", 0).unwrap().expire_at(), None);
        assert_eq!(
            run(&mut ks, 0, &["SDIFFSTORE", "d", "a", "b", "c"]),
            Reply::Int(2)
        );
        assert_eq!(sorted(run(&mut ks, 0, &["SMEMBERS", "d"])), ["1", "2"]);
        // A destination among the sources.
        assert_eq!(
            run(&mut ks, 0, &["SUNIONSTORE", "a", "a", "c"]),
            Reply::Int(6)
        );
        // An empty result deletes the destination.
        assert_eq!(
            run(&mut ks, 0, &["SINTERSTORE", "d", "a", "nokey"]),
            Reply::Int(0)
        );
        assert!(!ks.exists(b"d", 0));
        run(&mut ks, 0, &["SET", "s2", "x"]);
        assert_eq!(
            run(&mut ks, 0, &["SDIFFSTORE", "s2", "b", "b"]),
            Reply::Int(0)
        );
        assert!(!ks.exists(b"s2", 0));
        assert_eq!(
            run(&mut ks, 0, &["SUNIONSTORE", "d", "nokey", "nokey2"]),
            Reply::Int(0)
        );
        assert!(!ks.exists(b"d", 0));
        run(&mut ks, 0, &["SET", "s3", "x"]);
        for cmd in ["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"] {
            assert_eq!(
                run(&mut ks, 0, &[cmd, "d", "nokey", "s3"]),
                wrongtype(),
                "{cmd}"
            );
        }
        assert!(!ks.exists(b"d", 0));
    }

    #[test]
    fn sintercard() {
        let mut ks = fixture();
        assert_eq!(run(&mut ks, 0, &["SINTERCARD", "1", "a"]), Reply::Int(4));
        assert_eq!(
            run(&mut ks, 0, &["SINTERCARD", "2", "a", "b"]),
            Reply::Int(2)
        );
        assert_eq!(
            run(&mut ks, 0, &["SINTERCARD", "2", "a", "b", "LIMIT", "1"]),
            Reply::Int(1)
        );
        assert_eq!(
            run(&mut ks, 0, &["SINTERCARD", "2", "a", "b", "limit", "0"]),
            Reply::Int(2)
        );
        assert_eq!(
            run(
                &mut ks,
                0,
                &["SINTERCARD", "2", "a", "b", "limit", "5", "limit", "1"]
            ),
            Reply::Int(1)
        );
        assert_eq!(
            run(&mut ks, 0, &["SINTERCARD", "2", "a", "nokey"]),
            Reply::Int(0)
        );
        for bad in ["-1", "x"] {
            assert_eq!(
                run(&mut ks, 0, &["SINTERCARD", "1", "str", "LIMIT", bad]),
                err("ERR LIMIT can't be negative")
            );
        }
        assert_eq!(
            run(&mut ks, 0, &["SINTERCARD", "2", "a", "b", "limit"]),
            err("ERR syntax error")
        );
        assert_eq!(
            run(&mut ks, 0, &["SINTERCARD", "2", "a", "b", "foo", "1"]),
            err("ERR syntax error")
        );
        for bad in ["0", "-1", "x"] {
            assert_eq!(
                run(&mut ks, 0, &["SINTERCARD", bad, "a"]),
                err("ERR numkeys should be greater than 0")
            );
        }
        assert_eq!(
            run(&mut ks, 0, &["SINTERCARD", "3", "a", "b"]),
            err("ERR Number of keys can't be greater than number of args")
        );
        assert_eq!(
            run(&mut ks, 0, &["SINTERCARD", "2", "nokey", "str"]),
            wrongtype()
        );
        assert_eq!(
            run(&mut ks, 0, &["SINTERCARD", "2", "str", "nokey"]),
            wrongtype()
        );
    }

    #[test]
    fn key_positions() {
        let spec = |name: &str| crate::cmd::lookup(name.as_bytes()).unwrap();
        let argv = |s: &[&str]| -> Vec<Arg> {
            s.iter()
                .map(|a| Arg::copy_from_slice(a.as_bytes()))
                .collect()
        };
        let card = spec("sintercard");
        assert!(card.has(MOVABLE_KEYS));
        assert_eq!(
            card.key_positions(&argv(&["SINTERCARD", "2", "a", "b", "LIMIT", "1"])),
            Ok(vec![2, 3])
        );
        assert!(card
            .key_positions(&argv(&["SINTERCARD", "0", "a"]))
            .is_err());
        assert!(card
            .key_positions(&argv(&["SINTERCARD", "3", "a", "b"]))
            .is_err());
        assert_eq!(
            spec("sinterstore").key_positions(&argv(&["SINTERSTORE", "d", "a", "b"])),
            Ok(vec![1, 2, 3])
        );
        assert_eq!(
            spec("smove").key_positions(&argv(&["SMOVE", "s", "d", "m"])),
            Ok(vec![1, 2])
        );
    }

    #[test]
    fn sscan() {
        let mut ks = fixture();
        assert_eq!(
            run(&mut ks, 0, &["SSCAN", "a", "0", "COUNT", "1"]),
            Reply::Array(vec![
                bulk("0"),
                Reply::Array(["1", "2", "3", "4"].iter().map(|s| bulk(s)).collect())
            ])
        );
        assert_eq!(
            run(&mut ks, 0, &["SSCAN", "a", "0", "MATCH", "[13]"]),
            Reply::Array(vec![bulk("0"), Reply::Array(vec![bulk("1"), bulk("3")])])
        );
        assert_eq!(
            run(&mut ks, 0, &["SSCAN", "nokey", "0"]),
            Reply::Array(vec![bulk("0"), Reply::Array(vec![])])
        );
        assert_eq!(
            run(&mut ks, 0, &["SSCAN", "a", "x"]),
            err("ERR invalid cursor")
        );
        assert_eq!(
            run(&mut ks, 0, &["SSCAN", "a", "0", "COUNT", "0"]),
            err("ERR syntax error")
        );
        // A set of non-integers is a hashtable in Redis: iterated with a cursor.
        let members: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
        let mut cmd = vec!["SADD", "big"];
        cmd.extend(members.iter().map(|s| s.as_str()));
        run(&mut ks, 0, &cmd);
        let mut cursor = "0".to_string();
        let mut seen = Vec::new();
        loop {
            let Reply::Array(r) = run(&mut ks, 0, &["SSCAN", "big", &cursor, "COUNT", "7"]) else {
                panic!()
            };
            let Reply::Bulk(c) = &r[0] else { panic!() };
            seen.extend(sorted(r[1].clone()));
            cursor = String::from_utf8(c.to_vec()).unwrap();
            if cursor == "0" {
                break;
            }
        }
        seen.sort();
        let mut all = members.clone();
        all.sort();
        assert_eq!(seen, all);
    }
}
