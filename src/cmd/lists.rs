//! List commands, including the blocking pops.
//!
//! A blocking command's handler never blocks: it validates its arguments (the timeout
//! included), pops if it can, and otherwise returns the empty answer (`NilArray` for
//! BLPOP/BRPOP/BLMPOP, `Nil` for BLMOVE/BRPOPLPUSH). The server parks the client on
//! that answer and re-runs the same command when one of its keys changes; inside
//! MULTI the empty answer is the reply, as in Redis.

use super::args::{self, Arg};
use super::error::CmdError;
use super::table::{flags::*, CommandSpec, Handler, KeySpec, Keys};
use super::{ReadCtx, WriteCtx};
use crate::keyspace::{Keyspace, Value};
use crate::resp::Reply;
use std::collections::VecDeque;

type List = VecDeque<Box<[u8]>>;

const RW_FAST: &[&str] = &["write", "list", "fast"];
const RW_SLOW: &[&str] = &["write", "list", "slow"];
const RO_FAST: &[&str] = &["read", "list", "fast"];
const RO_SLOW: &[&str] = &["read", "list", "slow"];
const BLOCKING_ACL: &[&str] = &["write", "list", "slow", "blocking"];

/// A list command: the family's group filled in.
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
        name, arity, flags, keys, "list", acl, since, summary, handler,
    )
}

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "insert"], 1, 0, 1)],
        ..spec(
        "lpush",
        -3,
        WRITE | DENYOOM | FAST,
        Keys::ONE,
        RW_FAST,
        "1.0.0",
        "Prepend one or multiple elements to a list",
        Handler::Write(lpush),
    )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "insert"], 1, 0, 1)],
        ..spec(
        "rpush",
        -3,
        WRITE | DENYOOM | FAST,
        Keys::ONE,
        RW_FAST,
        "1.0.0",
        "Append one or multiple elements to a list",
        Handler::Write(rpush),
    )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "insert"], 1, 0, 1)],
        ..spec(
        "lpushx",
        -3,
        WRITE | DENYOOM | FAST,
        Keys::ONE,
        RW_FAST,
        "2.2.0",
        "Prepend an element to a list, only if the list exists",
        Handler::Write(lpushx),
    )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "insert"], 1, 0, 1)],
        ..spec(
        "rpushx",
        -3,
        WRITE | DENYOOM | FAST,
        Keys::ONE,
        RW_FAST,
        "2.2.0",
        "Append an element to a list, only if the list exists",
        Handler::Write(rpushx),
    )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, 0, 1)],
        ..spec(
        "lpop",
        -2,
        WRITE | FAST,
        Keys::ONE,
        RW_FAST,
        "1.0.0",
        "Remove and get the first elements in a list",
        Handler::Write(lpop),
    )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, 0, 1)],
        ..spec(
        "rpop",
        -2,
        WRITE | FAST,
        Keys::ONE,
        RW_FAST,
        "1.0.0",
        "Remove and get the last elements in a list",
        Handler::Write(rpop),
    )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RO"], 1, 0, 1)],
        ..spec(
        "llen",
        2,
        READONLY | FAST,
        Keys::ONE,
        RO_FAST,
        "1.0.0",
        "Get the length of a list",
        Handler::Read(llen),
    )
    },
    spec(
        "lrange",
        4,
        READONLY,
        Keys::ONE,
        RO_SLOW,
        "1.0.0",
        "Get a range of elements from a list",
        Handler::Read(lrange),
    ),
    spec(
        "lindex",
        3,
        READONLY,
        Keys::ONE,
        RO_SLOW,
        "1.0.0",
        "Get an element from a list by its index",
        Handler::Read(lindex),
    ),
    spec(
        "lset",
        4,
        WRITE | DENYOOM,
        Keys::ONE,
        RW_SLOW,
        "1.0.0",
        "Set the value of an element in a list by its index",
        Handler::Write(lset),
    ),
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "insert"], 1, 0, 1)],
        ..spec(
        "linsert",
        5,
        WRITE | DENYOOM,
        Keys::ONE,
        RW_SLOW,
        "2.2.0",
        "Insert an element before or after another element in a list",
        Handler::Write(linsert),
    )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "delete"], 1, 0, 1)],
        ..spec(
        "lrem",
        4,
        WRITE,
        Keys::ONE,
        RW_SLOW,
        "1.0.0",
        "Remove elements from a list",
        Handler::Write(lrem),
    )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "delete"], 1, 0, 1)],
        ..spec(
        "ltrim",
        4,
        WRITE,
        Keys::ONE,
        RW_SLOW,
        "1.0.0",
        "Trim a list to the specified range",
        Handler::Write(ltrim),
    )
    },
    spec(
        "lpos",
        -3,
        READONLY,
        Keys::ONE,
        RO_SLOW,
        "6.0.6",
        "Return the index of matching elements on a list",
        Handler::Read(lpos),
    ),
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, 0, 1), KeySpec::range(&["RW", "insert"], 2, 0, 1)],
        ..spec(
        "lmove",
        5,
        WRITE | DENYOOM,
        Keys::TWO,
        RW_SLOW,
        "6.2.0",
        "Pop an element from a list, push it to another list and return it",
        Handler::Write(lmove),
    )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, 0, 1), KeySpec::range(&["RW", "insert"], 2, 0, 1)],
        ..spec(
        "rpoplpush",
        3,
        WRITE | DENYOOM,
        Keys::TWO,
        RW_SLOW,
        "1.2.0",
        "Remove the last element in a list, prepend it to another list and return it",
        Handler::Write(rpoplpush),
    )
    },
    CommandSpec {
        key_specs: &[KeySpec::keynum(&["RW", "access", "delete"], 1)],
        ..spec(
        "lmpop",
        -4,
        WRITE | MOVABLE_KEYS,
        Keys::movable(0, 0, 0, lmpop_keys),
        RW_SLOW,
        "7.0.0",
        "Pop elements from a list",
        Handler::Write(lmpop),
    )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, -2, 1)],
        ..spec(
        "blpop",
        -3,
        WRITE | NOSCRIPT | BLOCKING,
        Keys::range(1, -2, 1),
        BLOCKING_ACL,
        "2.0.0",
        "Remove and get the first element in a list, or block until one is available",
        Handler::Write(blpop),
    )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, -2, 1)],
        ..spec(
        "brpop",
        -3,
        WRITE | NOSCRIPT | BLOCKING,
        Keys::range(1, -2, 1),
        BLOCKING_ACL,
        "2.0.0",
        "Remove and get the last element in a list, or block until one is available",
        Handler::Write(brpop),
    )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, 0, 1), KeySpec::range(&["RW", "insert"], 2, 0, 1)],
        ..spec(
        "blmove",
        6,
        WRITE | DENYOOM | NOSCRIPT | BLOCKING,
        Keys::TWO,
        BLOCKING_ACL,
        "6.2.0",
        "Pop an element from a list, push it to another list and return it; or block until one is available",
        Handler::Write(blmove),
    )
    },
    CommandSpec {
        key_specs: &[KeySpec::range(&["RW", "access", "delete"], 1, 0, 1), KeySpec::range(&["RW", "insert"], 2, 0, 1)],
        ..spec(
        "brpoplpush",
        4,
        WRITE | DENYOOM | NOSCRIPT | BLOCKING,
        Keys::TWO,
        BLOCKING_ACL,
        "2.2.0",
        "Pop an element from a list, push it to another list and return it; or block until one is available",
        Handler::Write(brpoplpush),
    )
    },
    CommandSpec {
        key_specs: &[KeySpec::keynum(&["RW", "access", "delete"], 2)],
        ..spec(
        "blmpop",
        -5,
        WRITE | BLOCKING | MOVABLE_KEYS,
        Keys::movable(0, 0, 0, blmpop_keys),
        BLOCKING_ACL,
        "7.0.0",
        "Pop elements from a list, or block until one is available",
        Handler::Write(blmpop),
    )
    },
];

/// Which end of a list an operation works on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Left,
    Right,
}

impl End {
    /// `LEFT` or `RIGHT`, case-insensitively; anything else is a syntax error.
    fn parse(a: &[u8]) -> Result<End, CmdError> {
        if args::is(a, "left") {
            Ok(End::Left)
        } else if args::is(a, "right") {
            Ok(End::Right)
        } else {
            Err(CmdError::Syntax)
        }
    }
}

fn pop_end(l: &mut List, end: End) -> Option<Box<[u8]>> {
    match end {
        End::Left => l.pop_front(),
        End::Right => l.pop_back(),
    }
}

fn push_end(l: &mut List, end: End, v: Box<[u8]>) {
    match end {
        End::Left => l.push_front(v),
        End::Right => l.push_back(v),
    }
}

/// The list at `key` for a read: `None` if absent, WRONGTYPE if another type.
fn read_list<'a>(ks: &'a Keyspace, key: &[u8], now: u64) -> Result<Option<&'a List>, CmdError> {
    match ks.read(key, now) {
        None => Ok(None),
        Some(e) => match &e.value {
            Value::List(l) => Ok(Some(l)),
            _ => Err(CmdError::WrongType),
        },
    }
}

/// The list at `key` for a write: `None` if absent, WRONGTYPE if another type.
fn write_list<'a>(
    ks: &'a mut Keyspace,
    key: &[u8],
    now: u64,
) -> Result<Option<&'a mut List>, CmdError> {
    match ks.write(key, now) {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::List(l) => Ok(Some(l)),
            _ => Err(CmdError::WrongType),
        },
    }
}

/// After elements left a list: an empty list is deleted (which signals the change),
/// otherwise the change is signalled.
fn settle(ks: &mut Keyspace, key: &[u8], now: u64, now_empty: bool) {
    if now_empty {
        ks.remove(key, now);
    } else {
        ks.modified(key);
    }
}

/// Redis's index rule: negative counts from the tail; `None` when out of range.
fn resolve_index(index: i64, len: usize) -> Option<usize> {
    let i = if index < 0 {
        index.checked_add(len as i64)?
    } else {
        index
    };
    (i >= 0 && (i as usize) < len).then_some(i as usize)
}

/// The inclusive range `[start, end]` of a list of `len` elements, clamped as LRANGE
/// and LTRIM do; `None` when empty.
fn resolve_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 { start + len } else { start }.max(0);
    let end = if end < 0 { end + len } else { end };
    if start > end || start >= len {
        return None;
    }
    Some((start as usize, end.min(len - 1) as usize))
}

/// A count that must be >= 0 (`ERR value is out of range, must be positive`, also
/// for a non-integer, as Redis's getPositiveLongFromObjectOrReply).
fn positive_count(a: &[u8]) -> Result<i64, CmdError> {
    match args::int(a) {
        Ok(n) if n >= 0 => Ok(n),
        _ => Err(CmdError::NotPositive),
    }
}

/// An option value that must be >= 0, with the option's own error text for anything
/// else (Redis uses it for non-integers too).
fn non_negative(a: &[u8], text: &'static str) -> Result<i64, CmdError> {
    args::int(a)
        .ok()
        .filter(|&n| n >= 0)
        .ok_or_else(|| CmdError::other(text))
}

/// An option value that must be >= 1, with the option's own error text.
fn at_least_one(a: &[u8], text: &'static str) -> Result<i64, CmdError> {
    args::int(a)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| CmdError::other(text))
}

// ---- push ----

fn push(
    ks: &mut Keyspace,
    ctx: &WriteCtx,
    a: &[Arg],
    end: End,
    only_existing: bool,
) -> Result<Reply, CmdError> {
    let key = &a[1];
    let elements = a[2..].iter().map(|e| Box::<[u8]>::from(&e[..]));
    match write_list(ks, key, ctx.now)? {
        Some(l) => {
            for e in elements {
                push_end(l, end, e);
            }
            let n = l.len();
            ks.modified(key);
            Ok(Reply::Int(n as i64))
        }
        None if only_existing => Ok(Reply::Int(0)),
        None => {
            let mut l = List::with_capacity(a.len() - 2);
            for e in elements {
                push_end(&mut l, end, e);
            }
            let n = l.len();
            ks.set(key, Value::List(Box::new(l)), ctx.now);
            Ok(Reply::Int(n as i64))
        }
    }
}

/// LPUSH key element [element ...]
fn lpush(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    push(ks, ctx, a, End::Left, false)
}

/// RPUSH key element [element ...]
fn rpush(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    push(ks, ctx, a, End::Right, false)
}

/// LPUSHX key element [element ...]
fn lpushx(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    push(ks, ctx, a, End::Left, true)
}

/// RPUSHX key element [element ...]
fn rpushx(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    push(ks, ctx, a, End::Right, true)
}

// ---- pop ----

/// Pops up to `count` elements from one end of an existing list, in pop order, and
/// deletes the key if the list empties.
fn pop_many(ks: &mut Keyspace, key: &[u8], now: u64, end: End, count: usize) -> Vec<Reply> {
    let Ok(Some(l)) = write_list(ks, key, now) else {
        return Vec::new();
    };
    let n = count.min(l.len());
    let out: Vec<Reply> = (0..n)
        .filter_map(|_| pop_end(l, end))
        .map(|v| Reply::bulk(&v[..]))
        .collect();
    let empty = l.is_empty();
    settle(ks, key, now, empty);
    out
}

fn pop(ks: &mut Keyspace, ctx: &WriteCtx, a: &[Arg], end: End) -> Result<Reply, CmdError> {
    if a.len() > 3 {
        return Err(CmdError::WrongArity(args::lower(&a[0])));
    }
    let count = a.get(2).map(|c| positive_count(c)).transpose()?;
    let key = &a[1];
    if write_list(ks, key, ctx.now)?.is_none() {
        return Ok(match count {
            Some(_) => Reply::NilArray,
            None => Reply::Nil,
        });
    }
    Ok(match count {
        Some(0) => Reply::Array(Vec::new()),
        None => pop_many(ks, key, ctx.now, end, 1)
            .pop()
            .unwrap_or(Reply::Nil),
        Some(n) => Reply::Array(pop_many(ks, key, ctx.now, end, n as usize)),
    })
}

/// LPOP key [count]
fn lpop(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    pop(ks, ctx, a, End::Left)
}

/// RPOP key [count]
fn rpop(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    pop(ks, ctx, a, End::Right)
}

// ---- reads ----

/// LLEN key
fn llen(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let n = read_list(ks, &a[1], ctx.now)?.map_or(0, |l| l.len());
    Ok(Reply::Int(n as i64))
}

/// LRANGE key start stop
fn lrange(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let start = args::int(&a[2])?;
    let end = args::int(&a[3])?;
    let Some(l) = read_list(ks, &a[1], ctx.now)? else {
        return Ok(Reply::Array(Vec::new()));
    };
    Ok(Reply::Array(match resolve_range(start, end, l.len()) {
        None => Vec::new(),
        Some((s, e)) => l.range(s..=e).map(|v| Reply::bulk(&v[..])).collect(),
    }))
}

/// LINDEX key index
fn lindex(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    // Redis looks the key up before parsing the index.
    let Some(l) = read_list(ks, &a[1], ctx.now)? else {
        return Ok(Reply::Nil);
    };
    let index = args::int(&a[2])?;
    Ok(resolve_index(index, l.len()).map_or(Reply::Nil, |i| Reply::bulk(&l[i][..])))
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]
fn lpos(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let (mut rank, mut count, mut maxlen) = (1i64, None::<i64>, 0i64);
    let mut j = 3;
    while j < a.len() {
        match a.get(j + 1) {
            Some(v) if args::is(&a[j], "rank") => {
                rank = args::int(v)?;
                if rank == 0 {
                    return Err(CmdError::other(
                        "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                    ));
                }
            }
            Some(v) if args::is(&a[j], "count") => {
                count = Some(non_negative(v, "ERR COUNT can't be negative")?);
            }
            Some(v) if args::is(&a[j], "maxlen") => {
                maxlen = non_negative(v, "ERR MAXLEN can't be negative")?;
            }
            _ => return Err(CmdError::Syntax),
        }
        j += 2;
    }
    let Some(l) = read_list(ks, &a[1], ctx.now)? else {
        return Ok(match count {
            Some(_) => Reply::Array(Vec::new()),
            None => Reply::Nil,
        });
    };
    let from_tail = rank < 0;
    // Redis negates in C long arithmetic: RANK -2^63 stays negative, so every match
    // qualifies and COUNT's limit check wraps (it then returns all matches).
    let rank = if from_tail { rank.wrapping_neg() } else { rank };
    let element = &a[2][..];
    let len = l.len();
    let scan = if maxlen == 0 {
        len
    } else {
        len.min(maxlen as usize)
    };
    let mut matches: i64 = 0;
    let mut found = Vec::new();
    for step in 0..scan {
        let index = if from_tail { len - 1 - step } else { step };
        if &l[index][..] != element {
            continue;
        }
        matches += 1;
        if matches < rank {
            continue;
        }
        found.push(Reply::Int(index as i64));
        match count {
            None => break,
            Some(c) if c != 0 && matches.wrapping_sub(rank).wrapping_add(1) >= c => break,
            Some(_) => {}
        }
    }
    Ok(match count {
        Some(_) => Reply::Array(found),
        None => found.pop().unwrap_or(Reply::Nil),
    })
}

// ---- in-place edits ----

/// LSET key index element
fn lset(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let key = &a[1];
    let Some(l) = write_list(ks, key, ctx.now)? else {
        return Err(CmdError::NoSuchKey);
    };
    let index = args::int(&a[2])?;
    let i = resolve_index(index, l.len()).ok_or(CmdError::IndexOutOfRange)?;
    l[i] = a[3][..].into();
    ks.modified(key);
    Ok(Reply::ok())
}

/// LINSERT key BEFORE|AFTER pivot element
fn linsert(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let after = if args::is(&a[2], "after") {
        true
    } else if args::is(&a[2], "before") {
        false
    } else {
        return Err(CmdError::Syntax);
    };
    let key = &a[1];
    let Some(l) = write_list(ks, key, ctx.now)? else {
        return Ok(Reply::Int(0));
    };
    let Some(pos) = l.iter().position(|e| e[..] == a[3][..]) else {
        return Ok(Reply::Int(-1));
    };
    l.insert(pos + after as usize, a[4][..].into());
    let n = l.len();
    ks.modified(key);
    Ok(Reply::Int(n as i64))
}

/// LREM key count element
fn lrem(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let count = args::int(&a[2])?;
    let key = &a[1];
    let Some(l) = write_list(ks, key, ctx.now)? else {
        return Ok(Reply::Int(0));
    };
    let element = &a[3][..];
    let limit = if count == 0 {
        u64::MAX
    } else {
        count.unsigned_abs()
    };
    // From the tail, the last `limit` matches go: keep the first `total - limit`.
    let mut keep = if count < 0 {
        let total = l.iter().filter(|e| &e[..] == element).count() as u64;
        total.saturating_sub(limit)
    } else {
        0
    };
    let mut removed = 0u64;
    l.retain(|e| {
        if &e[..] != element {
            true
        } else if keep > 0 {
            keep -= 1;
            true
        } else if removed < limit {
            removed += 1;
            false
        } else {
            true
        }
    });
    let empty = l.is_empty();
    if removed > 0 {
        settle(ks, key, ctx.now, empty);
    }
    Ok(Reply::Int(removed as i64))
}

/// LTRIM key start stop
fn ltrim(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let start = args::int(&a[2])?;
    let end = args::int(&a[3])?;
    let key = &a[1];
    let Some(l) = write_list(ks, key, ctx.now)? else {
        return Ok(Reply::ok());
    };
    match resolve_range(start, end, l.len()) {
        None => l.clear(),
        Some((s, e)) => {
            l.truncate(e + 1);
            l.drain(..s);
        }
    }
    // Redis signals the key even when the trim removed nothing (WATCH sees it).
    let empty = l.is_empty();
    settle(ks, key, ctx.now, empty);
    Ok(Reply::ok())
}

// ---- move ----

/// LMOVE's semantics: `Nil` for a missing source; WRONGTYPE for a source or a
/// destination of another type, checked before anything is popped.
fn move_element(
    ks: &mut Keyspace,
    now: u64,
    src: &[u8],
    dst: &[u8],
    from: End,
    to: End,
) -> Result<Reply, CmdError> {
    if write_list(ks, src, now)?.is_none() {
        return Ok(Reply::Nil);
    }
    // WRONGTYPE for the destination before anything is popped.
    write_list(ks, dst, now)?;
    let src_list = write_list(ks, src, now)?.expect("source checked above");
    let value = pop_end(src_list, from).expect("lists are never stored empty");
    let reply = Reply::bulk(&value[..]);
    if src == dst {
        // The same key: a rotation, the list never empties.
        push_end(src_list, to, value);
        ks.modified(src);
        return Ok(reply);
    }
    let src_empty = src_list.is_empty();
    match write_list(ks, dst, now) {
        Ok(Some(d)) => {
            push_end(d, to, value);
            ks.modified(dst);
        }
        _ => {
            let d = List::from([value]);
            ks.set(dst, Value::List(Box::new(d)), now);
        }
    }
    settle(ks, src, now, src_empty);
    Ok(reply)
}

/// LMOVE source destination LEFT|RIGHT LEFT|RIGHT
fn lmove(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let from = End::parse(&a[3])?;
    let to = End::parse(&a[4])?;
    move_element(ks, ctx.now, &a[1], &a[2], from, to)
}

/// RPOPLPUSH source destination
fn rpoplpush(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    move_element(ks, ctx.now, &a[1], &a[2], End::Right, End::Left)
}

// ---- multi-key pops ----

/// LMPOP's and BLMPOP's `numkeys key [key ...] LEFT|RIGHT [COUNT count]`, starting
/// at `numkeys_at`: the keys' index range, the end and the count.
fn parse_mpop(
    a: &[Arg],
    numkeys_at: usize,
) -> Result<(std::ops::Range<usize>, End, usize), CmdError> {
    let numkeys = at_least_one(&a[numkeys_at], "ERR numkeys should be greater than 0")?;
    let where_at = (numkeys as u64)
        .checked_add(numkeys_at as u64 + 1)
        .filter(|&w| w < a.len() as u64)
        .ok_or(CmdError::Syntax)? as usize;
    let end = End::parse(&a[where_at])?;
    let mut count = None;
    let mut j = where_at + 1;
    while j < a.len() {
        if count.is_none() && args::is(&a[j], "count") && j + 1 < a.len() {
            count = Some(at_least_one(
                &a[j + 1],
                "ERR count should be greater than 0",
            )?);
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let count = count.unwrap_or(1).try_into().unwrap_or(usize::MAX);
    Ok((numkeys_at + 1..where_at, end, count))
}

/// Pops from the first non-empty list among `keys`: `[key, [elements]]`, or a null
/// array when all are missing. A key of another type met first is WRONGTYPE.
fn mpop(
    ks: &mut Keyspace,
    now: u64,
    keys: &[Arg],
    end: End,
    count: usize,
) -> Result<Reply, CmdError> {
    for key in keys {
        if write_list(ks, key, now)?.is_none() {
            continue;
        }
        let items = pop_many(ks, key, now, end, count);
        return Ok(Reply::Array(vec![Reply::bulk(key), Reply::Array(items)]));
    }
    Ok(Reply::NilArray)
}

/// LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]
fn lmpop(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let (keys, end, count) = parse_mpop(a, 1)?;
    mpop(ks, ctx.now, &a[keys], end, count)
}

/// Key positions of a `numkeys key [key ...]` command, as Redis's getkeys gives them:
/// none when numkeys is not a count the arguments can hold (the command then fails).
fn numkeys_positions(a: &[Arg], numkeys_at: usize) -> Vec<usize> {
    let first = numkeys_at + 1;
    match a.get(numkeys_at).and_then(|n| args::int(n).ok()) {
        Some(n) if n >= 1 && (n as u64) <= a.len().saturating_sub(first) as u64 => {
            (first..first + n as usize).collect()
        }
        _ => Vec::new(),
    }
}

fn lmpop_keys(a: &[Arg]) -> Result<Vec<usize>, CmdError> {
    Ok(numkeys_positions(a, 1))
}

fn blmpop_keys(a: &[Arg]) -> Result<Vec<usize>, CmdError> {
    Ok(numkeys_positions(a, 2))
}

// ---- blocking variants: they never block here (see the module comment) ----

fn blocking_pop(ks: &mut Keyspace, ctx: &WriteCtx, a: &[Arg], end: End) -> Result<Reply, CmdError> {
    args::timeout_ms(&a[a.len() - 1])?;
    for key in &a[1..a.len() - 1] {
        if write_list(ks, key, ctx.now)?.is_none() {
            continue;
        }
        let value = pop_many(ks, key, ctx.now, end, 1)
            .pop()
            .expect("lists are never stored empty");
        return Ok(Reply::Array(vec![Reply::bulk(key), value]));
    }
    Ok(Reply::NilArray)
}

/// BLPOP key [key ...] timeout
fn blpop(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    blocking_pop(ks, ctx, a, End::Left)
}

/// BRPOP key [key ...] timeout
fn brpop(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    blocking_pop(ks, ctx, a, End::Right)
}

/// BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout
fn blmove(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let from = End::parse(&a[3])?;
    let to = End::parse(&a[4])?;
    args::timeout_ms(&a[5])?;
    move_element(ks, ctx.now, &a[1], &a[2], from, to)
}

/// BRPOPLPUSH source destination timeout
fn brpoplpush(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    args::timeout_ms(&a[3])?;
    move_element(ks, ctx.now, &a[1], &a[2], End::Right, End::Left)
}

/// BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]
fn blmpop(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    // Redis checks numkeys, the end and COUNT before the timeout.
    let (keys, end, count) = parse_mpop(a, 2)?;
    args::timeout_ms(&a[1])?;
    mpop(ks, ctx.now, &a[keys], end, count)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{bulk, run, run_bytes};
    use super::*;

    fn ints(v: &[i64]) -> Reply {
        Reply::Array(v.iter().map(|&i| Reply::Int(i)).collect())
    }

    fn bulks(v: &[&str]) -> Reply {
        Reply::Array(v.iter().map(|s| bulk(s)).collect())
    }

    fn err(text: &str) -> Reply {
        Reply::error(text.to_string())
    }

    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    const NOT_INT: &str = "ERR value is not an integer or out of range";

    /// A keyspace with `l` = [a b c d e] and the string `s`.
    fn setup() -> Keyspace {
        let mut ks = Keyspace::new();
        assert_eq!(
            run(&mut ks, 0, &["RPUSH", "l", "a", "b", "c", "d", "e"]),
            Reply::Int(5)
        );
        assert_eq!(run(&mut ks, 0, &["SET", "s", "x"]), Reply::ok());
        ks
    }

    fn contents(ks: &mut Keyspace, key: &str) -> Reply {
        run(ks, 0, &["LRANGE", key, "0", "-1"])
    }

    #[test]
    fn push_orders_and_lengths() {
        let mut ks = Keyspace::new();
        assert_eq!(
            run(&mut ks, 0, &["LPUSH", "k", "a", "b", "c"]),
            Reply::Int(3)
        );
        assert_eq!(contents(&mut ks, "k"), bulks(&["c", "b", "a"]));
        assert_eq!(run(&mut ks, 0, &["RPUSH", "k", "x", "y"]), Reply::Int(5));
        assert_eq!(contents(&mut ks, "k"), bulks(&["c", "b", "a", "x", "y"]));
        assert_eq!(run(&mut ks, 0, &["LPUSHX", "k", "1", "2"]), Reply::Int(7));
        assert_eq!(run(&mut ks, 0, &["RPUSHX", "k", "z"]), Reply::Int(8));
        assert_eq!(
            contents(&mut ks, "k"),
            bulks(&["2", "1", "c", "b", "a", "x", "y", "z"])
        );
        assert_eq!(run(&mut ks, 0, &["LPUSHX", "nokey", "a"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["RPUSHX", "nokey", "a"]), Reply::Int(0));
        assert!(ks.peek(b"nokey", 0).is_none());
        assert_eq!(run(&mut ks, 0, &["LLEN", "nokey"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["LLEN", "k"]), Reply::Int(8));
        assert_eq!(
            run(&mut ks, 0, &["LPUSH", "k"]),
            err("ERR wrong number of arguments for 'lpush' command")
        );
    }

    #[test]
    fn binary_and_empty_elements() {
        let mut ks = Keyspace::new();
        let key: &[u8] = b"\x00k\xff";
        assert_eq!(
            run_bytes(&mut ks, 0, &[b"RPUSH", key, b"", b"\x00\r\n\xff"]),
            Reply::Int(2)
        );
        assert_eq!(
            run_bytes(&mut ks, 0, &[b"LRANGE", key, b"0", b"-1"]),
            Reply::Array(vec![Reply::bulk(b""), Reply::bulk(b"\x00\r\n\xff")])
        );
        assert_eq!(run_bytes(&mut ks, 0, &[b"LPOS", key, b""]), Reply::Int(0));
        assert_eq!(
            run_bytes(&mut ks, 0, &[b"BLPOP", key, b"0"]),
            Reply::Array(vec![Reply::bulk(key), Reply::bulk(b"")])
        );
    }

    #[test]
    fn wrong_type_everywhere() {
        let mut ks = setup();
        for cmd in [
            &["LPUSH", "s", "a"][..],
            &["RPUSH", "s", "a"],
            &["LPUSHX", "s", "a"],
            &["RPUSHX", "s", "a"],
            &["LPOP", "s"],
            &["RPOP", "s", "2"],
            &["LLEN", "s"],
            &["LRANGE", "s", "0", "-1"],
            &["LINDEX", "s", "0"],
            &["LSET", "s", "0", "x"],
            &["LINSERT", "s", "BEFORE", "a", "b"],
            &["LREM", "s", "0", "a"],
            &["LTRIM", "s", "0", "1"],
            &["LPOS", "s", "a"],
            &["LMOVE", "s", "l", "LEFT", "RIGHT"],
            &["LMOVE", "l", "s", "LEFT", "RIGHT"],
            &["RPOPLPUSH", "l", "s"],
            &["LMPOP", "2", "nokey", "s", "LEFT"],
            &["BLPOP", "nokey", "s", "0"],
            &["BRPOP", "s", "l", "0"],
            &["BLMOVE", "l", "s", "LEFT", "LEFT", "0"],
            &["BRPOPLPUSH", "s", "l", "0"],
            &["BLMPOP", "0", "1", "s", "RIGHT"],
        ] {
            assert_eq!(run(&mut ks, 0, cmd), err(WRONGTYPE), "{cmd:?}");
        }
        // Nothing was popped by the failed moves.
        assert_eq!(contents(&mut ks, "l"), bulks(&["a", "b", "c", "d", "e"]));
        // A non-empty list met before the wrong-type key wins, as in Redis.
        assert_eq!(
            run(&mut ks, 0, &["BLPOP", "l", "s", "0"]),
            bulks(&["l", "a"])
        );
        assert_eq!(
            run(&mut ks, 0, &["LMPOP", "2", "l", "s", "LEFT"]),
            Reply::Array(vec![bulk("l"), bulks(&["b"])])
        );
        // A missing source is not an error even if the destination has another type.
        assert_eq!(
            run(&mut ks, 0, &["LMOVE", "nokey", "s", "LEFT", "RIGHT"]),
            Reply::Nil
        );
    }

    #[test]
    fn pop_with_and_without_count() {
        let mut ks = setup();
        assert_eq!(run(&mut ks, 0, &["LPOP", "l"]), bulk("a"));
        assert_eq!(run(&mut ks, 0, &["RPOP", "l"]), bulk("e"));
        assert_eq!(run(&mut ks, 0, &["LPOP", "l", "0"]), Reply::Array(vec![]));
        assert_eq!(run(&mut ks, 0, &["RPOP", "l", "2"]), bulks(&["d", "c"]));
        assert_eq!(
            run(&mut ks, 0, &["LPOP", "l", "9223372036854775807"]),
            bulks(&["b"])
        );
        assert_eq!(run(&mut ks, 0, &["LLEN", "l"]), Reply::Int(0));
        assert!(ks.peek(b"l", 0).is_none(), "empty list deleted");
        assert_eq!(run(&mut ks, 0, &["LPOP", "nokey"]), Reply::Nil);
        assert_eq!(run(&mut ks, 0, &["RPOP", "nokey", "5"]), Reply::NilArray);
        assert_eq!(run(&mut ks, 0, &["LPOP", "nokey", "0"]), Reply::NilArray);
        assert_eq!(
            run(&mut ks, 0, &["LPOP", "nokey", "-1"]),
            err("ERR value is out of range, must be positive")
        );
        // redis-server 7.0.15 answers this for a non-integer count too.
        assert_eq!(
            run(&mut ks, 0, &["LPOP", "nokey", "x"]),
            err("ERR value is out of range, must be positive")
        );
        assert_eq!(
            run(&mut ks, 0, &["LPOP", "l", "1", "2"]),
            err("ERR wrong number of arguments for 'lpop' command")
        );
        assert_eq!(
            run(&mut ks, 0, &["RPOP", "l", "1", "2"]),
            err("ERR wrong number of arguments for 'rpop' command")
        );
    }

    #[test]
    fn lrange_bounds() {
        let mut ks = setup();
        let cases: &[(&str, &str, &[&str])] = &[
            ("0", "-1", &["a", "b", "c", "d", "e"]),
            ("-100", "100", &["a", "b", "c", "d", "e"]),
            ("2", "1", &[]),
            ("-2", "-1", &["d", "e"]),
            ("5", "10", &[]),
            ("1", "-5", &[]),
            ("-1", "-1", &["e"]),
            (
                "-9223372036854775808",
                "9223372036854775807",
                &["a", "b", "c", "d", "e"],
            ),
        ];
        for (s, e, want) in cases {
            assert_eq!(
                run(&mut ks, 0, &["LRANGE", "l", s, e]),
                bulks(want),
                "{s} {e}"
            );
        }
        assert_eq!(
            run(&mut ks, 0, &["LRANGE", "nokey", "0", "-1"]),
            Reply::Array(vec![])
        );
        // The range is parsed before the key is looked up.
        assert_eq!(
            run(&mut ks, 0, &["LRANGE", "nokey", "a", "1"]),
            err(NOT_INT)
        );
        assert_eq!(run(&mut ks, 0, &["LRANGE", "s", "0", "x"]), err(NOT_INT));
    }

    #[test]
    fn lindex_and_lset() {
        let mut ks = setup();
        assert_eq!(run(&mut ks, 0, &["LINDEX", "l", "0"]), bulk("a"));
        assert_eq!(run(&mut ks, 0, &["LINDEX", "l", "-1"]), bulk("e"));
        assert_eq!(run(&mut ks, 0, &["LINDEX", "l", "-5"]), bulk("a"));
        assert_eq!(run(&mut ks, 0, &["LINDEX", "l", "-6"]), Reply::Nil);
        assert_eq!(run(&mut ks, 0, &["LINDEX", "l", "5"]), Reply::Nil);
        assert_eq!(
            run(&mut ks, 0, &["LINDEX", "l", "-9223372036854775808"]),
            Reply::Nil
        );
        assert_eq!(
            run(&mut ks, 0, &["LINDEX", "l", "9223372036854775807"]),
            Reply::Nil
        );
        // The key is looked up before the index is parsed.
        assert_eq!(run(&mut ks, 0, &["LINDEX", "nokey", "abc"]), Reply::Nil);
        assert_eq!(run(&mut ks, 0, &["LINDEX", "l", "abc"]), err(NOT_INT));

        assert_eq!(run(&mut ks, 0, &["LSET", "l", "-1", "E"]), Reply::ok());
        assert_eq!(run(&mut ks, 0, &["LSET", "l", "1", "B"]), Reply::ok());
        assert_eq!(contents(&mut ks, "l"), bulks(&["a", "B", "c", "d", "E"]));
        assert_eq!(
            run(&mut ks, 0, &["LSET", "l", "5", "x"]),
            err("ERR index out of range")
        );
        assert_eq!(
            run(&mut ks, 0, &["LSET", "l", "-6", "x"]),
            err("ERR index out of range")
        );
        assert_eq!(
            run(&mut ks, 0, &["LSET", "nokey", "abc", "x"]),
            err("ERR no such key")
        );
        assert_eq!(run(&mut ks, 0, &["LSET", "l", "abc", "x"]), err(NOT_INT));
    }

    #[test]
    fn linsert_cases() {
        let mut ks = setup();
        assert_eq!(
            run(&mut ks, 0, &["LINSERT", "l", "BEFORE", "c", "X"]),
            Reply::Int(6)
        );
        assert_eq!(
            run(&mut ks, 0, &["LINSERT", "l", "after", "e", "Y"]),
            Reply::Int(7)
        );
        assert_eq!(
            contents(&mut ks, "l"),
            bulks(&["a", "b", "X", "c", "d", "e", "Y"])
        );
        assert_eq!(
            run(&mut ks, 0, &["LINSERT", "l", "BEFORE", "zz", "Y"]),
            Reply::Int(-1)
        );
        assert_eq!(
            run(&mut ks, 0, &["LINSERT", "nokey", "BEFORE", "a", "b"]),
            Reply::Int(0)
        );
        assert_eq!(
            run(&mut ks, 0, &["LINSERT", "nokey", "middle", "a", "b"]),
            err("ERR syntax error")
        );
        assert!(ks.peek(b"nokey", 0).is_none());
    }

    #[test]
    fn lrem_directions_and_counts() {
        let mut ks = Keyspace::new();
        let fill = |ks: &mut Keyspace| {
            ks.remove(b"k", 0);
            run(ks, 0, &["RPUSH", "k", "a", "b", "a", "c", "a"]);
        };
        fill(&mut ks);
        assert_eq!(run(&mut ks, 0, &["LREM", "k", "1", "a"]), Reply::Int(1));
        assert_eq!(contents(&mut ks, "k"), bulks(&["b", "a", "c", "a"]));
        fill(&mut ks);
        assert_eq!(run(&mut ks, 0, &["LREM", "k", "-2", "a"]), Reply::Int(2));
        assert_eq!(contents(&mut ks, "k"), bulks(&["a", "b", "c"]));
        fill(&mut ks);
        assert_eq!(run(&mut ks, 0, &["LREM", "k", "0", "a"]), Reply::Int(3));
        assert_eq!(contents(&mut ks, "k"), bulks(&["b", "c"]));
        fill(&mut ks);
        assert_eq!(
            run(&mut ks, 0, &["LREM", "k", "-9223372036854775808", "a"]),
            Reply::Int(3)
        );
        assert_eq!(run(&mut ks, 0, &["LREM", "k", "5", "zz"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["LREM", "nokey", "5", "a"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["LREM", "nokey", "x", "a"]), err(NOT_INT));
        // Removing the last elements deletes the key.
        assert_eq!(run(&mut ks, 0, &["LREM", "k", "0", "b"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["LREM", "k", "0", "c"]), Reply::Int(1));
        assert!(ks.peek(b"k", 0).is_none());
    }

    #[test]
    fn ltrim_cases() {
        let mut ks = setup();
        assert_eq!(run(&mut ks, 0, &["LTRIM", "l", "1", "-2"]), Reply::ok());
        assert_eq!(contents(&mut ks, "l"), bulks(&["b", "c", "d"]));
        assert_eq!(run(&mut ks, 0, &["LTRIM", "l", "-100", "100"]), Reply::ok());
        assert_eq!(contents(&mut ks, "l"), bulks(&["b", "c", "d"]));
        assert_eq!(run(&mut ks, 0, &["LTRIM", "l", "5", "1"]), Reply::ok());
        assert!(ks.peek(b"l", 0).is_none(), "trimmed to empty: deleted");
        assert_eq!(run(&mut ks, 0, &["LTRIM", "nokey", "0", "1"]), Reply::ok());
        assert_eq!(run(&mut ks, 0, &["LTRIM", "nokey", "x", "1"]), err(NOT_INT));
        assert_eq!(run(&mut ks, 0, &["LTRIM", "s", "0", "1"]), err(WRONGTYPE));
    }

    #[test]
    fn lpos_options() {
        let mut ks = Keyspace::new();
        run(
            &mut ks,
            0,
            &["RPUSH", "l", "a", "b", "c", "a", "b", "c", "a"],
        );
        let lpos = |ks: &mut Keyspace, extra: &[&str]| {
            let mut cmd = vec!["LPOS", "l"];
            cmd.extend_from_slice(extra);
            run(ks, 0, &cmd)
        };
        assert_eq!(lpos(&mut ks, &["a"]), Reply::Int(0));
        assert_eq!(lpos(&mut ks, &["c"]), Reply::Int(2));
        assert_eq!(lpos(&mut ks, &["z"]), Reply::Nil);
        assert_eq!(lpos(&mut ks, &["a", "RANK", "2"]), Reply::Int(3));
        assert_eq!(lpos(&mut ks, &["a", "RANK", "-1"]), Reply::Int(6));
        assert_eq!(lpos(&mut ks, &["a", "RANK", "-3"]), Reply::Int(0));
        assert_eq!(lpos(&mut ks, &["a", "RANK", "4"]), Reply::Nil);
        assert_eq!(
            lpos(&mut ks, &["a", "RANK", "9223372036854775807"]),
            Reply::Nil
        );
        assert_eq!(lpos(&mut ks, &["a", "COUNT", "0"]), ints(&[0, 3, 6]));
        assert_eq!(lpos(&mut ks, &["a", "COUNT", "2"]), ints(&[0, 3]));
        assert_eq!(
            lpos(&mut ks, &["a", "RANK", "-1", "COUNT", "2"]),
            ints(&[6, 3])
        );
        assert_eq!(
            lpos(&mut ks, &["a", "RANK", "2", "COUNT", "0"]),
            ints(&[3, 6])
        );
        assert_eq!(lpos(&mut ks, &["z", "COUNT", "1"]), ints(&[]));
        assert_eq!(lpos(&mut ks, &["c", "MAXLEN", "2"]), Reply::Nil);
        assert_eq!(lpos(&mut ks, &["c", "MAXLEN", "3"]), Reply::Int(2));
        assert_eq!(
            lpos(&mut ks, &["a", "COUNT", "0", "MAXLEN", "4"]),
            ints(&[0, 3])
        );
        assert_eq!(
            lpos(&mut ks, &["b", "RANK", "-1", "MAXLEN", "2"]),
            Reply::Nil
        );
        // Redis's C arithmetic: RANK -2^63 matches from the tail and COUNT never stops it.
        assert_eq!(
            lpos(&mut ks, &["a", "RANK", "-9223372036854775808"]),
            Reply::Int(6)
        );
        assert_eq!(
            lpos(
                &mut ks,
                &["a", "RANK", "-9223372036854775808", "COUNT", "2"]
            ),
            ints(&[6, 3, 0])
        );
        assert_eq!(run(&mut ks, 0, &["LPOS", "nokey", "a"]), Reply::Nil);
        assert_eq!(
            run(&mut ks, 0, &["LPOS", "nokey", "a", "COUNT", "1"]),
            ints(&[])
        );
        let rank0 = "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list";
        assert_eq!(lpos(&mut ks, &["a", "RANK", "0"]), err(rank0));
        assert_eq!(
            run(&mut ks, 0, &["LPOS", "nokey", "a", "RANK", "0"]),
            err(rank0)
        );
        assert_eq!(lpos(&mut ks, &["a", "RANK", "x"]), err(NOT_INT));
        assert_eq!(
            lpos(&mut ks, &["a", "COUNT", "-1"]),
            err("ERR COUNT can't be negative")
        );
        assert_eq!(
            lpos(&mut ks, &["a", "COUNT", "x"]),
            err("ERR COUNT can't be negative")
        );
        assert_eq!(
            lpos(&mut ks, &["a", "MAXLEN", "-1"]),
            err("ERR MAXLEN can't be negative")
        );
        assert_eq!(lpos(&mut ks, &["a", "MAXLEN"]), err("ERR syntax error"));
        assert_eq!(lpos(&mut ks, &["a", "FOO", "1"]), err("ERR syntax error"));
    }

    #[test]
    fn lmove_and_rpoplpush() {
        let mut ks = setup();
        assert_eq!(
            run(&mut ks, 0, &["LMOVE", "l", "d", "LEFT", "RIGHT"]),
            bulk("a")
        );
        assert_eq!(
            run(&mut ks, 0, &["LMOVE", "l", "d", "right", "left"]),
            bulk("e")
        );
        assert_eq!(contents(&mut ks, "d"), bulks(&["e", "a"]));
        assert_eq!(run(&mut ks, 0, &["RPOPLPUSH", "l", "d"]), bulk("d"));
        assert_eq!(contents(&mut ks, "d"), bulks(&["d", "e", "a"]));
        assert_eq!(contents(&mut ks, "l"), bulks(&["b", "c"]));
        // The same key rotates.
        assert_eq!(
            run(&mut ks, 0, &["LMOVE", "l", "l", "LEFT", "RIGHT"]),
            bulk("b")
        );
        assert_eq!(contents(&mut ks, "l"), bulks(&["c", "b"]));
        assert_eq!(run(&mut ks, 0, &["RPOPLPUSH", "d", "d"]), bulk("a"));
        assert_eq!(contents(&mut ks, "d"), bulks(&["a", "d", "e"]));
        // A one-element list rotated onto itself survives.
        run(&mut ks, 0, &["RPUSH", "one", "x"]);
        assert_eq!(
            run(&mut ks, 0, &["LMOVE", "one", "one", "LEFT", "LEFT"]),
            bulk("x")
        );
        assert_eq!(contents(&mut ks, "one"), bulks(&["x"]));
        // Moving the last element deletes the source.
        assert_eq!(
            run(&mut ks, 0, &["LMOVE", "one", "other", "RIGHT", "LEFT"]),
            bulk("x")
        );
        assert!(ks.peek(b"one", 0).is_none());
        assert_eq!(contents(&mut ks, "other"), bulks(&["x"]));
        assert_eq!(
            run(&mut ks, 0, &["LMOVE", "nokey", "other", "LEFT", "LEFT"]),
            Reply::Nil
        );
        assert_eq!(run(&mut ks, 0, &["RPOPLPUSH", "nokey", "x"]), Reply::Nil);
        assert_eq!(
            run(&mut ks, 0, &["LMOVE", "l", "d", "UP", "LEFT"]),
            err("ERR syntax error")
        );
        assert_eq!(
            run(&mut ks, 0, &["LMOVE", "nokey", "d", "LEFT", "DOWN"]),
            err("ERR syntax error")
        );
    }

    #[test]
    fn lmove_keeps_destination_ttl() {
        let mut ks = setup();
        run(&mut ks, 0, &["RPUSH", "d", "z"]);
        assert!(ks.set_expire(b"d", 10_000, 0));
        run(&mut ks, 0, &["LMOVE", "l", "d", "LEFT", "LEFT"]);
        assert_eq!(ks.peek(b"d", 0).unwrap().expire_at(), Some(10_000));
        // An expired destination is replaced by a fresh list without a TTL.
        run(&mut ks, 20_000, &["LMOVE", "l", "d", "LEFT", "LEFT"]);
        assert_eq!(ks.peek(b"d", 20_000).unwrap().expire_at(), None);
        assert_eq!(run(&mut ks, 20_000, &["LLEN", "d"]), Reply::Int(1));
    }

    #[test]
    fn lmpop_cases() {
        let mut ks = setup();
        assert_eq!(
            run(&mut ks, 0, &["LMPOP", "2", "nokey", "l", "LEFT"]),
            Reply::Array(vec![bulk("l"), bulks(&["a"])])
        );
        assert_eq!(
            run(&mut ks, 0, &["LMPOP", "1", "l", "RIGHT", "COUNT", "2"]),
            Reply::Array(vec![bulk("l"), bulks(&["e", "d"])])
        );
        assert_eq!(
            run(&mut ks, 0, &["LMPOP", "1", "l", "left", "count", "100"]),
            Reply::Array(vec![bulk("l"), bulks(&["b", "c"])])
        );
        assert!(ks.peek(b"l", 0).is_none());
        assert_eq!(
            run(&mut ks, 0, &["LMPOP", "2", "l", "nokey", "LEFT"]),
            Reply::NilArray
        );
        for (cmd, want) in [
            (
                &["LMPOP", "0", "a", "LEFT"][..],
                "ERR numkeys should be greater than 0",
            ),
            (
                &["LMPOP", "-1", "a", "LEFT"],
                "ERR numkeys should be greater than 0",
            ),
            (
                &["LMPOP", "x", "a", "LEFT"],
                "ERR numkeys should be greater than 0",
            ),
            (&["LMPOP", "2", "a", "LEFT"], "ERR syntax error"),
            (
                &["LMPOP", "9223372036854775807", "a", "LEFT"],
                "ERR syntax error",
            ),
            (&["LMPOP", "1", "a", "MIDDLE"], "ERR syntax error"),
            (&["LMPOP", "1", "a", "LEFT", "COUNT"], "ERR syntax error"),
            (
                &["LMPOP", "1", "a", "LEFT", "COUNT", "0"],
                "ERR count should be greater than 0",
            ),
            (
                &["LMPOP", "1", "a", "LEFT", "COUNT", "x"],
                "ERR count should be greater than 0",
            ),
            (
                &["LMPOP", "1", "a", "LEFT", "COUNT", "1", "COUNT", "2"],
                "ERR syntax error",
            ),
            (&["LMPOP", "1", "a", "LEFT", "FOO"], "ERR syntax error"),
            (
                &["LMPOP", "1", "a"],
                "ERR wrong number of arguments for 'lmpop' command",
            ),
        ] {
            assert_eq!(run(&mut ks, 0, cmd), err(want), "{cmd:?}");
        }
    }

    #[test]
    fn blocking_commands_pop_or_return_empty() {
        let mut ks = setup();
        assert_eq!(
            run(&mut ks, 0, &["BLPOP", "nokey", "l", "0"]),
            bulks(&["l", "a"])
        );
        assert_eq!(
            run(&mut ks, 0, &["BRPOP", "l", "nokey", "1.5"]),
            bulks(&["l", "e"])
        );
        assert_eq!(
            run(&mut ks, 0, &["BLMOVE", "l", "d", "LEFT", "RIGHT", "0"]),
            bulk("b")
        );
        assert_eq!(run(&mut ks, 0, &["BRPOPLPUSH", "l", "d", "0"]), bulk("d"));
        assert_eq!(contents(&mut ks, "d"), bulks(&["d", "b"]));
        assert_eq!(
            run(
                &mut ks,
                0,
                &["BLMPOP", "0", "2", "nokey", "d", "RIGHT", "COUNT", "5"]
            ),
            Reply::Array(vec![bulk("d"), bulks(&["b", "d"])])
        );
        assert!(ks.peek(b"d", 0).is_none());
        // Nothing to pop: the empty answer the server blocks on (and MULTI returns).
        assert_eq!(run(&mut ks, 0, &["BLPOP", "x", "y", "0"]), Reply::NilArray);
        assert_eq!(run(&mut ks, 0, &["BRPOP", "x", "0.1"]), Reply::NilArray);
        assert_eq!(
            run(&mut ks, 0, &["BLMPOP", "1", "1", "x", "LEFT"]),
            Reply::NilArray
        );
        assert_eq!(
            run(&mut ks, 0, &["BLMOVE", "x", "s", "LEFT", "RIGHT", "0"]),
            Reply::Nil
        );
        assert_eq!(run(&mut ks, 0, &["BRPOPLPUSH", "x", "y", "0"]), Reply::Nil);
        assert!(ks.peek(b"y", 0).is_none());
    }

    #[test]
    fn blocking_argument_errors() {
        let mut ks = setup();
        let not_float = "ERR timeout is not a float or out of range";
        let negative = "ERR timeout is negative";
        for (cmd, want) in [
            (&["BLPOP", "l", "abc"][..], not_float),
            (&["BLPOP", "l", "nan"], not_float),
            (&["BLPOP", "l", " 1"], not_float),
            (&["BLPOP", "l", "1 "], not_float),
            (&["BLPOP", "l", ""], not_float),
            (&["BLPOP", "l", "-1"], negative),
            (&["BRPOP", "l", "inf"], negative),
            (&["BRPOP", "l", "-inf"], negative),
            (&["BRPOP", "l", "1e16"], negative),
            (&["BRPOP", "l", "1e400"], negative),
            (&["BLMOVE", "l", "d", "LEFT", "RIGHT", "x"], not_float),
            (
                &["BLMOVE", "l", "d", "LEFTX", "RIGHT", "x"],
                "ERR syntax error",
            ),
            (&["BRPOPLPUSH", "l", "d", "-0.5"], negative),
            (&["BLMPOP", "x", "1", "l", "LEFT"], not_float),
            (&["BLMPOP", "-1", "1", "l", "LEFT"], negative),
            // numkeys, the end and COUNT are checked before the timeout.
            (
                &["BLMPOP", "-1", "0", "l", "LEFT"],
                "ERR numkeys should be greater than 0",
            ),
            (&["BLMPOP", "-1", "1", "l", "UP"], "ERR syntax error"),
            (
                &["BLMPOP", "-1", "1", "l", "LEFT", "COUNT", "0"],
                "ERR count should be greater than 0",
            ),
            (
                &["BLPOP", "l"],
                "ERR wrong number of arguments for 'blpop' command",
            ),
            (
                &["BLMPOP", "0", "1", "l"],
                "ERR wrong number of arguments for 'blmpop' command",
            ),
        ] {
            assert_eq!(run(&mut ks, 0, cmd), err(want), "{cmd:?}");
        }
        // The timeout is checked before the keys: no pop happened above.
        assert_eq!(run(&mut ks, 0, &["LLEN", "l"]), Reply::Int(5));
        for ok in [
            "0", "-0", "-0.0001", "0.0001", "1e-400", "0x10", "1e15", "+2",
        ] {
            assert!(
                !run(&mut ks, 0, &["BLPOP", "nokey", ok]).is_error(),
                "timeout {ok}"
            );
        }
    }

    #[test]
    fn timeouts_in_milliseconds() {
        assert_eq!(args::timeout_ms(b"0"), Ok(0));
        assert_eq!(
            args::timeout_ms(b"-0.0001"),
            Ok(0),
            "ceil(-0.1) is 0: forever"
        );
        assert_eq!(args::timeout_ms(b"0.0001"), Ok(1));
        assert_eq!(args::timeout_ms(b"1e-400"), Ok(1));
        assert_eq!(args::timeout_ms(b"0.1"), Ok(100));
        assert_eq!(args::timeout_ms(b"1.5"), Ok(1500));
        assert_eq!(args::timeout_ms(b"0x10"), Ok(16_000));
        assert_eq!(args::timeout_ms(b"0x1p-1"), Ok(500));
        assert_eq!(args::timeout_ms(b"1e15"), Ok(1_000_000_000_000_000_000));
        assert!(args::timeout_ms(b"9.3e15").is_err());
        assert!(args::timeout_ms(b"0x").is_err());
        assert!(args::timeout_ms(b"+-1").is_err());
        assert!(args::timeout_ms(&[b'1'; 5 * 1024]).is_err());
    }

    #[test]
    fn key_positions() {
        let spec = |name: &str| crate::cmd::lookup(name.as_bytes()).unwrap();
        let argv = |v: &[&str]| -> Vec<Arg> {
            v.iter()
                .map(|s| Arg::copy_from_slice(s.as_bytes()))
                .collect()
        };
        let keys = |name: &str, v: &[&str]| spec(name).key_positions(&argv(v)).unwrap();
        assert_eq!(keys("blpop", &["BLPOP", "a", "b", "0"]), vec![1, 2]);
        assert_eq!(keys("brpop", &["BRPOP", "a", "0"]), vec![1]);
        assert_eq!(
            keys("lmove", &["LMOVE", "a", "b", "LEFT", "LEFT"]),
            vec![1, 2]
        );
        assert_eq!(
            keys("blmove", &["BLMOVE", "a", "b", "LEFT", "LEFT", "0"]),
            vec![1, 2]
        );
        assert_eq!(
            keys("brpoplpush", &["BRPOPLPUSH", "a", "b", "0"]),
            vec![1, 2]
        );
        assert_eq!(keys("lmpop", &["LMPOP", "2", "a", "b", "LEFT"]), vec![2, 3]);
        assert_eq!(
            keys("lmpop", &["LMPOP", "3", "a", "b", "LEFT"]),
            vec![2, 3, 4]
        );
        assert_eq!(
            keys("lmpop", &["LMPOP", "4", "a", "b", "LEFT"]),
            Vec::<usize>::new()
        );
        assert_eq!(
            keys("lmpop", &["LMPOP", "x", "a", "LEFT"]),
            Vec::<usize>::new()
        );
        assert_eq!(
            keys("blmpop", &["BLMPOP", "0", "2", "a", "b", "LEFT"]),
            vec![3, 4]
        );
        for name in ["blpop", "brpop", "blmove", "brpoplpush", "blmpop"] {
            assert!(spec(name).has(BLOCKING) && spec(name).has(WRITE), "{name}");
        }
    }

    #[test]
    fn changes_are_signalled_only_when_something_changed() {
        let mut ks = setup();
        for k in [&b"l"[..], b"d", b"nokey"] {
            ks.add_interest(k);
        }
        let dirty = |ks: &mut Keyspace, cmd: &[&str]| {
            run(ks, 0, cmd);
            let mut keys: Vec<Vec<u8>> = ks.take_dirty().iter().map(|k| k.to_vec()).collect();
            keys.sort();
            keys.dedup();
            keys
        };
        let l = || vec![b"l".to_vec()];
        assert_eq!(dirty(&mut ks, &["RPUSH", "l", "f"]), l());
        assert_eq!(dirty(&mut ks, &["LSET", "l", "0", "A"]), l());
        assert_eq!(
            dirty(&mut ks, &["LINSERT", "l", "BEFORE", "zz", "x"]),
            Vec::<Vec<u8>>::new()
        );
        assert_eq!(dirty(&mut ks, &["LINSERT", "l", "BEFORE", "A", "x"]), l());
        assert_eq!(
            dirty(&mut ks, &["LREM", "l", "0", "zz"]),
            Vec::<Vec<u8>>::new()
        );
        assert_eq!(dirty(&mut ks, &["LREM", "l", "0", "x"]), l());
        assert_eq!(
            dirty(&mut ks, &["LPUSHX", "nokey", "x"]),
            Vec::<Vec<u8>>::new()
        );
        assert_eq!(dirty(&mut ks, &["LPOP", "nokey"]), Vec::<Vec<u8>>::new());
        assert_eq!(dirty(&mut ks, &["LPOP", "l", "0"]), Vec::<Vec<u8>>::new());
        assert_eq!(dirty(&mut ks, &["LPOP", "l"]), l());
        assert_eq!(
            dirty(&mut ks, &["LMOVE", "l", "d", "LEFT", "LEFT"]),
            vec![b"d".to_vec(), b"l".to_vec()]
        );
        assert_eq!(dirty(&mut ks, &["LTRIM", "l", "0", "-1"]), l(), "as Redis");
        assert_eq!(dirty(&mut ks, &["LTRIM", "l", "1", "0"]), l());
        assert!(ks.peek(b"l", 0).is_none());
    }
}
