//! Commands: the table (arity, flags, key positions) and, per family, each command's
//! parse and execute against the keyspace. Execute returns a reply value and never
//! writes to a socket: under Raft the same write runs on every replica and only the
//! leader answers.
//!
//! Writes run inside [`apply`] with the time and random seed of their log entry;
//! reads run on the serving replica with its clock.

pub mod args;
pub mod error;
pub mod table;

pub mod hashes;
pub mod keys;
pub mod lists;
pub mod server;
pub mod sets;
pub mod strings;
pub mod zsets;

#[cfg(test)]
mod determinism;
#[cfg(test)]
mod model_tests;

use crate::keyspace::rng::Rng;
use crate::keyspace::Keyspace;
use crate::resp::Reply;
use args::Arg;
use error::CmdError;
use proto::{Op, WriteEntry};
use std::collections::HashMap;
use std::sync::OnceLock;
pub use table::{flags, BeginSearch, CommandSpec, FindKeys, Handler, KeySpec, Keys};

/// Context of a read: the serving replica's clock and local randomness.
pub struct ReadCtx {
    pub now: u64,
    pub rng: Rng,
    /// CLIENT NO-TOUCH: do not update LRU/LFU.
    pub no_touch: bool,
}

impl ReadCtx {
    pub fn new(now: u64) -> ReadCtx {
        ReadCtx {
            now,
            rng: Rng::local(),
            no_touch: false,
        }
    }
}

/// Context of a write: everything comes from the log entry or from settings that are
/// the same on every node.
pub struct WriteCtx {
    pub now: u64,
    pub rng: Rng,
    pub limits: ApplyLimits,
}

/// Settings apply depends on; they must be identical on every replica.
#[derive(Clone, Copy, Debug)]
pub struct ApplyLimits {
    /// proto-max-bulk-len: the largest string SETRANGE/APPEND may build.
    pub max_string_len: usize,
}

impl Default for ApplyLimits {
    fn default() -> Self {
        ApplyLimits {
            max_string_len: 512 * 1024 * 1024,
        }
    }
}

/// All families' commands.
pub fn all_commands() -> impl Iterator<Item = &'static CommandSpec> {
    [
        strings::COMMANDS,
        keys::COMMANDS,
        hashes::COMMANDS,
        lists::COMMANDS,
        sets::COMMANDS,
        zsets::COMMANDS,
        server::COMMANDS,
    ]
    .into_iter()
    .flatten()
}

type Table = HashMap<&'static str, &'static CommandSpec, foldhash::fast::FixedState>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Table::default();
        for c in all_commands() {
            assert!(
                t.insert(c.name, c).is_none(),
                "command {} registered twice",
                c.name
            );
        }
        t
    })
}

/// Finds a command by name, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut buf = [0u8; 32];
    if name.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let lower = std::str::from_utf8(&buf[..name.len()]).ok()?;
    table().get(lower).copied()
}

/// Finds `name|sub` for a command with subcommands.
pub fn lookup_sub(spec: &'static CommandSpec, sub: &[u8]) -> Option<&'static CommandSpec> {
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    spec.subcommands
        .iter()
        .find(|s| s.name.split('|').nth(1) == Some(sub.as_str()))
}

/// Checks that a command exists and has a valid arity; the error reply if not.
pub fn check(args: &[Arg]) -> Result<&'static CommandSpec, Reply> {
    let spec = lookup(&args[0]).ok_or_else(|| error::unknown_command(args))?;
    if !spec.arity_ok(args.len()) {
        return Err(CmdError::WrongArity(spec.name.to_string()).reply());
    }
    if !spec.subcommands.is_empty() && args.len() >= 2 {
        if let Some(sub) = lookup_sub(spec, &args[1]) {
            if !sub.arity_ok(args.len()) {
                return Err(CmdError::WrongArity(sub.name.to_string()).reply());
            }
        }
    }
    Ok(spec)
}

/// Runs a read command against the local keyspace.
pub fn execute_read(ks: &Keyspace, ctx: &mut ReadCtx, spec: &CommandSpec, args: &[Arg]) -> Reply {
    match spec.handler {
        Handler::Read(f) => f(ks, ctx, args).unwrap_or_else(|e| e.reply()),
        _ => Reply::error("ERR command is not a read"),
    }
}

/// Applies one log entry: the state machine's transition. A pure function of the
/// keyspace and the entry (plus `limits`, identical on every replica). Returns one
/// reply per command of an `Exec`, none for expiry and eviction.
pub fn apply(ks: &mut Keyspace, entry: &WriteEntry, limits: ApplyLimits) -> Vec<Reply> {
    match &entry.op {
        Op::ExecWatched { watched, cmds } => {
            if watched
                .iter()
                .any(|(k, digest)| ks.digest(k, entry.time_ms) != *digest)
            {
                return Vec::new();
            }
            exec_cmds(ks, entry, cmds, limits)
        }
        Op::Exec(cmds) => exec_cmds(ks, entry, cmds, limits),
        Op::ExpireKeys(keys) => {
            ks.delete_expired(keys, entry.time_ms);
            Vec::new()
        }
        Op::EvictKeys(keys) => {
            ks.delete_evicted(keys);
            Vec::new()
        }
        // Migration steps change the shard's migration record too: the shard
        // applies them (shard::migration).
        Op::Migrate(_) => vec![Reply::error("ERR migration step outside a shard")],
    }
}

/// The random seed of the `i`-th command of an entry.
pub fn command_seed(entry_seed: u64, i: usize) -> u64 {
    entry_seed.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn exec_cmds(
    ks: &mut Keyspace,
    entry: &WriteEntry,
    cmds: &[Vec<bytes::Bytes>],
    limits: ApplyLimits,
) -> Vec<Reply> {
    cmds.iter()
        .enumerate()
        .map(|(i, argv)| {
            let seed = command_seed(entry.seed, i);
            let mut ctx = WriteCtx {
                now: entry.time_ms,
                rng: Rng::new(seed),
                limits,
            };
            execute_in_apply(ks, &mut ctx, argv)
        })
        .collect()
}

fn execute_in_apply(ks: &mut Keyspace, ctx: &mut WriteCtx, argv: &[Arg]) -> Reply {
    let spec = match check(argv) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let result = match spec.handler {
        Handler::Write(f) => f(ks, ctx, argv),
        // Reads inside a MULTI block run in the block, at the entry's time.
        Handler::Read(f) => {
            let mut rctx = ReadCtx {
                now: ctx.now,
                rng: ctx.rng.clone(),
                no_touch: false,
            };
            f(ks, &mut rctx, argv)
        }
        Handler::Server => Err(CmdError::other("ERR command not allowed in the write path")),
    };
    result.unwrap_or_else(|e| e.reply())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for c in all_commands() {
            assert_eq!(c.name, c.name.to_ascii_lowercase());
            assert!(c.arity != 0, "{} has arity 0", c.name);
            let w = c.has(flags::WRITE);
            match c.handler {
                Handler::Write(_) => assert!(w, "{} writes but lacks the write flag", c.name),
                Handler::Read(_) => assert!(!w, "{} reads but has the write flag", c.name),
                Handler::Server => {}
            }
            for s in c.subcommands {
                assert!(
                    s.name.starts_with(&format!("{}|", c.name)),
                    "subcommand {} of {}",
                    s.name,
                    c.name
                );
            }
        }
        assert!(lookup(b"GeT").is_some());
        assert!(lookup(b"nosuchcommand").is_none());
    }
}

/// Running commands in unit tests the way the server does: writes through [`apply`]
/// (at time `now`, fixed seed), reads through [`execute_read`].
#[cfg(test)]
pub mod testing {
    use super::*;
    use bytes::Bytes;

    pub fn run(ks: &mut Keyspace, now: u64, args: &[&str]) -> Reply {
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        run_bytes(ks, now, &argv)
    }

    pub fn run_bytes(ks: &mut Keyspace, now: u64, args: &[&[u8]]) -> Reply {
        let argv: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        let spec = match check(&argv) {
            Ok(s) => s,
            Err(r) => return r,
        };
        match spec.handler {
            Handler::Read(_) => execute_read(
                ks,
                &mut ReadCtx {
                    now,
                    rng: Rng::new(7),
                    no_touch: false,
                },
                spec,
                &argv,
            ),
            _ => {
                let entry = WriteEntry {
                    time_ms: now,
                    seed: 7,
                    op: Op::Exec(vec![argv]),
                };
                apply(ks, &entry, ApplyLimits::default()).pop().unwrap()
            }
        }
    }

    /// An argument vector from words.
    pub fn argv(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    /// A bulk reply's bytes as a string, for assertions.
    pub fn bulk(s: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }
}

#[cfg(test)]
mod string_tests {
    use super::testing::*;
    use crate::keyspace::Keyspace;
    use crate::resp::Reply;

    #[test]
    fn set_get_with_expiry() {
        let mut ks = Keyspace::new();
        assert_eq!(
            run(&mut ks, 1000, &["SET", "k", "v", "PX", "100"]),
            Reply::ok()
        );
        assert_eq!(run(&mut ks, 1100, &["GET", "k"]), bulk("v"));
        assert_eq!(run(&mut ks, 1101, &["GET", "k"]), Reply::Nil);
        assert_eq!(
            run(&mut ks, 1101, &["SET", "k", "w", "NX", "GET"]),
            Reply::Nil
        );
        assert_eq!(
            run(&mut ks, 1101, &["SET", "k", "x", "XX", "GET"]),
            bulk("w")
        );
        assert_eq!(
            run(&mut ks, 1101, &["SET", "k", "x", "EX", "0"]),
            Reply::error("ERR invalid expire time in 'set' command")
        );
        assert_eq!(
            run(&mut ks, 1101, &["SET", "k", "x", "EX", "1", "PX", "1"]),
            Reply::error("ERR syntax error")
        );
        assert_eq!(
            run(&mut ks, 1101, &["SET", "k"]),
            Reply::error("ERR wrong number of arguments for 'set' command")
        );
    }
}
