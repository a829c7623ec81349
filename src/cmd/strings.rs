//! String commands.

use super::args::{self, Arg};
use super::error::CmdError;
use super::table::{flags::*, CommandSpec, Handler, Keys};
use super::{ReadCtx, WriteCtx};
use crate::keyspace::{Keyspace, Value};
use crate::resp::Reply;

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        group: "string",
        since: "1.0.0",
        summary: "Returns the string value of a key.",
        acl: &["read", "string", "fast"],
        ..CommandSpec::new("get", 2, READONLY | FAST, Keys::ONE, Handler::Read(get))
    },
    CommandSpec {
        group: "string",
        since: "1.0.0",
        summary: "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.",
        acl: &["write", "string", "slow"],
        ..CommandSpec::new("set", -3, WRITE | DENYOOM, Keys::ONE, Handler::Write(set))
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

/// GET key
fn get(ks: &Keyspace, ctx: &mut ReadCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    Ok(match read_string(ks, &a[1], ctx.now)? {
        Some(s) => Reply::bulk(s),
        None => Reply::Nil,
    })
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

/// SET key value [NX | XX] [GET] [EX seconds | PX milliseconds | EXAT unix-time-seconds |
/// PXAT unix-time-milliseconds | KEEPTTL]
fn set(ks: &mut Keyspace, ctx: &mut WriteCtx, a: &[Arg]) -> Result<Reply, CmdError> {
    let (mut nx, mut xx, mut get, mut keepttl) = (false, false, false, false);
    let mut expire: Option<(&[u8], i64, bool)> = None;
    let mut j = 3;
    while j < a.len() {
        let opt = &a[j];
        let next = a.get(j + 1);
        if args::is(opt, "nx") && !xx {
            nx = true;
        } else if args::is(opt, "xx") && !nx {
            xx = true;
        } else if args::is(opt, "get") {
            get = true;
        } else if args::is(opt, "keepttl") && expire.is_none() {
            keepttl = true;
        } else if expire.is_none() && !keepttl && next.is_some() {
            let (unit, abs) = if args::is(opt, "ex") {
                (1000, false)
            } else if args::is(opt, "px") {
                (1, false)
            } else if args::is(opt, "exat") {
                (1000, true)
            } else if args::is(opt, "pxat") {
                (1, true)
            } else {
                return Err(CmdError::Syntax);
            };
            expire = Some((next.unwrap(), unit, abs));
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let deadline = match expire {
        Some((v, unit, abs)) => ExpireArg::At(resolve_expire(v, unit, abs, ctx.now, "set")?),
        None if keepttl => ExpireArg::KeepTtl,
        None => ExpireArg::None,
    };
    let key = &a[1];
    let old = match ks.write(key, ctx.now) {
        None => None,
        Some(e) => match &e.value {
            Value::Str(s) => Some(s.clone()),
            _ if get => return Err(CmdError::WrongType),
            _ => Some(Vec::new()),
        },
    };
    let exists = old.is_some();
    let reply_skip = || {
        if get {
            old.as_deref().map(Reply::bulk).unwrap_or(Reply::Nil)
        } else {
            Reply::Nil
        }
    };
    if (nx && exists) || (xx && !exists) {
        return Ok(reply_skip());
    }
    let value = Value::Str(a[2].to_vec());
    match deadline {
        ExpireArg::KeepTtl if exists => {
            ks.replace_value(key, value, ctx.now);
        }
        ExpireArg::At(at) if at <= ctx.now => {
            // Already expired: Redis deletes instead of storing.
            ks.remove(key, ctx.now);
        }
        ExpireArg::At(at) => ks.set_with_expiry(key, value, Some(at), ctx.now),
        _ => ks.set(key, value, ctx.now),
    }
    Ok(if get {
        old.as_deref().map(Reply::bulk).unwrap_or(Reply::Nil)
    } else {
        Reply::ok()
    })
}
