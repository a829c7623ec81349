//! The command table: one entry per command drives arity errors, read/write flags,
//! key positions (routing, CROSSSLOT, COMMAND GETKEYS) and COMMAND's output.

use super::args::Arg;
use super::error::CmdError;
use super::{ReadCtx, WriteCtx};
use crate::keyspace::Keyspace;
use crate::resp::Reply;

pub type ReadFn = fn(&Keyspace, &mut ReadCtx, &[Arg]) -> Result<Reply, CmdError>;
pub type WriteFn = fn(&mut Keyspace, &mut WriteCtx, &[Arg]) -> Result<Reply, CmdError>;
/// Key positions for commands whose keys move (numkeys arguments and the like).
pub type KeysFn = fn(&[Arg]) -> Result<Vec<usize>, CmdError>;

/// What runs a command.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Reads the keyspace: runs locally on the replica serving the read.
    Read(ReadFn),
    /// Changes the keyspace: goes through the write path (the log) and runs on every
    /// replica in log order.
    Write(WriteFn),
    /// Connection, server or cluster command: the server layer runs it by name.
    Server,
}

/// Command flags, as in Redis's COMMAND INFO.
pub mod flags {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const PUBSUB: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    pub const BLOCKING: u32 = 1 << 6;
    pub const LOADING: u32 = 1 << 7;
    pub const STALE: u32 = 1 << 8;
    pub const SKIP_MONITOR: u32 = 1 << 9;
    pub const SKIP_SLOWLOG: u32 = 1 << 10;
    pub const FAST: u32 = 1 << 11;
    pub const NO_AUTH: u32 = 1 << 12;
    pub const MAY_REPLICATE: u32 = 1 << 13;
    pub const NO_MULTI: u32 = 1 << 14;
    pub const MOVABLE_KEYS: u32 = 1 << 15;
    pub const ALLOW_BUSY: u32 = 1 << 16;

    pub const NAMES: [(u32, &str); 17] = [
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (ADMIN, "admin"),
        (PUBSUB, "pubsub"),
        (NOSCRIPT, "noscript"),
        (BLOCKING, "blocking"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (SKIP_MONITOR, "skip_monitor"),
        (SKIP_SLOWLOG, "skip_slowlog"),
        (FAST, "fast"),
        (NO_AUTH, "no_auth"),
        (MAY_REPLICATE, "may_replicate"),
        (NO_MULTI, "no_multi"),
        (MOVABLE_KEYS, "movablekeys"),
        (ALLOW_BUSY, "allow_busy"),
    ];
}

/// Where a command's keys are. `first`, `last`, `step` are Redis's legacy triple
/// (last < 0 counts from the end); `find` overrides it for movable keys.
#[derive(Clone, Copy)]
pub struct Keys {
    pub first: i32,
    pub last: i32,
    pub step: i32,
    pub find: Option<KeysFn>,
}

impl Keys {
    pub const NONE: Keys = Keys {
        first: 0,
        last: 0,
        step: 0,
        find: None,
    };
    pub const ONE: Keys = Keys {
        first: 1,
        last: 1,
        step: 1,
        find: None,
    };
    pub const ALL: Keys = Keys {
        first: 1,
        last: -1,
        step: 1,
        find: None,
    };
    pub const PAIRS: Keys = Keys {
        first: 1,
        last: -1,
        step: 2,
        find: None,
    };
    pub const TWO: Keys = Keys {
        first: 1,
        last: 2,
        step: 1,
        find: None,
    };

    pub const fn range(first: i32, last: i32, step: i32) -> Keys {
        Keys {
            first,
            last,
            step,
            find: None,
        }
    }

    pub const fn movable(first: i32, last: i32, step: i32, find: KeysFn) -> Keys {
        Keys {
            first,
            last,
            step,
            find: Some(find),
        }
    }
}

/// Where a key spec starts looking for keys (Redis 7 `begin_search`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BeginSearch {
    /// At a fixed argument index.
    Index(i32),
    /// After the first (`startfrom` > 0) or last (< 0) occurrence of `keyword`.
    Keyword {
        keyword: &'static str,
        startfrom: i32,
    },
    Unknown,
}

/// How a key spec finds keys from where it began (Redis 7 `find_keys`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FindKeys {
    /// `lastkey` relative to the begin index (negative: from the end), every
    /// `keystep`; `limit` > 1 divides the remaining arguments.
    Range {
        lastkey: i32,
        keystep: i32,
        limit: i32,
    },
    /// A count of keys at `keynumidx`, keys from `firstkey`, every `keystep`
    /// (all relative to the begin index).
    Keynum {
        keynumidx: i32,
        firstkey: i32,
        keystep: i32,
    },
    Unknown,
}

/// One Redis 7 key spec as COMMAND INFO reports it (cluster clients route by these).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeySpec {
    /// Redis's note on the spec; empty for none.
    pub notes: &'static str,
    /// `RO`, `RW`, `OW`, `RM`, `access`, `update`, `insert`, `delete`, ...
    pub flags: &'static [&'static str],
    pub begin: BeginSearch,
    pub find: FindKeys,
}

impl KeySpec {
    /// Keys at index `index` through `lastkey` (relative), every `keystep`.
    pub const fn range(
        flags: &'static [&'static str],
        index: i32,
        lastkey: i32,
        keystep: i32,
    ) -> KeySpec {
        KeySpec {
            notes: "",
            flags,
            begin: BeginSearch::Index(index),
            find: FindKeys::Range {
                lastkey,
                keystep,
                limit: 0,
            },
        }
    }

    /// A key count at `index`, then the keys.
    pub const fn keynum(flags: &'static [&'static str], index: i32) -> KeySpec {
        KeySpec {
            notes: "",
            flags,
            begin: BeginSearch::Index(index),
            find: FindKeys::Keynum {
                keynumidx: 0,
                firstkey: 1,
                keystep: 1,
            },
        }
    }

    pub const fn with_notes(self, notes: &'static str) -> KeySpec {
        KeySpec { notes, ..self }
    }
}

#[derive(Clone, Copy)]
pub struct CommandSpec {
    /// Lowercase name (for subcommands: `config|get`).
    pub name: &'static str,
    /// Redis arity: n = exactly n args including the name; -n = at least n.
    pub arity: i32,
    pub flags: u32,
    pub keys: Keys,
    /// ACL categories without the '@' (COMMAND INFO).
    pub acl: &'static [&'static str],
    /// Command group for COMMAND DOCS (string, list, generic, server, ...).
    pub group: &'static str,
    pub since: &'static str,
    pub summary: &'static str,
    pub handler: Handler,
    pub subcommands: &'static [CommandSpec],
    /// Command tips for COMMAND INFO (`nondeterministic_output`, `request_policy:...`).
    pub tips: &'static [&'static str],
    /// Key-spec flags for COMMAND INFO (`RO`, `RW`, `OW`, `RM`, `access`, `update`,
    /// `insert`, `delete`, `not_key`); empty: derived from the command's flags.
    pub key_flags: &'static [&'static str],
    /// Redis 7's key specs, when they are not the one range spec derived from `keys`
    /// and `key_flags` (several specs, keynum specs, notes).
    pub key_specs: &'static [KeySpec],
}

impl CommandSpec {
    /// A spec with defaults for the descriptive fields, to be completed with struct
    /// update syntax.
    pub const fn new(
        name: &'static str,
        arity: i32,
        flags: u32,
        keys: Keys,
        handler: Handler,
    ) -> CommandSpec {
        CommandSpec {
            name,
            arity,
            flags,
            keys,
            acl: &[],
            group: "generic",
            since: "1.0.0",
            summary: "",
            handler,
            subcommands: &[],
            tips: &[],
            key_flags: &[],
            key_specs: &[],
        }
    }

    /// [`CommandSpec::new`] plus the descriptive fields a family's table fills in.
    #[allow(clippy::too_many_arguments)]
    pub const fn described(
        name: &'static str,
        arity: i32,
        flags: u32,
        keys: Keys,
        group: &'static str,
        acl: &'static [&'static str],
        since: &'static str,
        summary: &'static str,
        handler: Handler,
    ) -> CommandSpec {
        CommandSpec {
            group,
            since,
            summary,
            acl,
            ..CommandSpec::new(name, arity, flags, keys, handler)
        }
    }

    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    pub fn is_write(&self) -> bool {
        self.has(flags::WRITE)
    }

    pub fn arity_ok(&self, argc: usize) -> bool {
        let a = self.arity;
        (a >= 0 && argc == a as usize) || (a < 0 && argc >= (-a) as usize)
    }

    /// Positions of the keys in `args` (args[0] is the command name).
    pub fn key_positions(&self, args: &[Arg]) -> Result<Vec<usize>, CmdError> {
        if let Some(find) = self.keys.find {
            return find(args);
        }
        let k = &self.keys;
        if k.first <= 0 || k.step <= 0 {
            return Ok(Vec::new());
        }
        let argc = args.len() as i32;
        let last = if k.last < 0 {
            argc + k.last
        } else {
            k.last.min(argc - 1)
        };
        Ok((k.first..=last)
            .step_by(k.step as usize)
            .filter(|&i| i < argc)
            .map(|i| i as usize)
            .collect())
    }
}
