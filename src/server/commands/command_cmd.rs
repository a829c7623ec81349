//! COMMAND [COUNT | INFO | DOCS | LIST | GETKEYS | GETKEYSANDFLAGS | HELP]: the
//! command table as Redis 7 describes it. Cluster clients route by the
//! first/last/step triple, the key specs and GETKEYS, so these come from the same
//! `CommandSpec` that routes and checks commands here.

use crate::cmd::args::{self, glob_match};
use crate::cmd::error::{self, CmdError};
use crate::cmd::{self, flags, BeginSearch, CommandSpec, FindKeys, KeySpec};
use crate::resp::Reply;
use bytes::Bytes;

/// COMMAND <sub> ...; `sub` is the full name (`command|info`), or `command` alone.
pub fn run(sub: &str, a: &[Bytes]) -> Reply {
    match sub {
        "command" if a.len() == 1 => Reply::Array(cmd::all_commands().map(command_info).collect()),
        "command|count" => Reply::Int(cmd::all_commands().count() as i64),
        "command|info" if a.len() == 2 => {
            Reply::Array(cmd::all_commands().map(command_info).collect())
        }
        "command|info" => Reply::Array(
            a[2..]
                .iter()
                .map(|n| find(n).map_or(Reply::Nil, command_info))
                .collect(),
        ),
        "command|docs" if a.len() == 2 => {
            Reply::Map(cmd::all_commands().map(|c| (name(c), docs(c))).collect())
        }
        "command|docs" => Reply::Map(
            a[2..]
                .iter()
                .filter_map(|n| find(n))
                .map(|c| (name(c), docs(c)))
                .collect(),
        ),
        "command|list" => list(a),
        "command|getkeys" => match keys_of(&a[2..]) {
            Ok((_, keys)) => Reply::Array(
                keys.into_iter()
                    .map(|i| Reply::Bulk(a[2 + i].clone()))
                    .collect(),
            ),
            Err(e) => e,
        },
        "command|getkeysandflags" => match keys_of(&a[2..]) {
            Ok((spec, keys)) => Reply::Array(
                keys.into_iter()
                    .map(|i| {
                        let flags = flags_at(spec, &a[2..], i);
                        Reply::Array(vec![
                            Reply::Bulk(a[2 + i].clone()),
                            Reply::Set(flags.iter().map(|f| Reply::simple(f)).collect()),
                        ])
                    })
                    .collect(),
            ),
            Err(e) => e,
        },
        "command|help" => error::help("command", HELP),
        _ => error::unknown_subcommand("command", &a[1]),
    }
}

const HELP: &[&str] = &[
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
];

fn name(c: &CommandSpec) -> Reply {
    Reply::bulk(c.name)
}

/// A command by name, or a subcommand as `container|sub`.
fn find(n: &[u8]) -> Option<&'static CommandSpec> {
    match n.iter().position(|&b| b == b'|') {
        Some(bar) => cmd::lookup_sub(cmd::lookup(&n[..bar])?, &n[bar + 1..]),
        None => cmd::lookup(n),
    }
}

/// The key-spec flags: the command's own, or derived from its read/write flags.
fn key_flags(c: &CommandSpec) -> &'static [&'static str] {
    if !c.key_flags.is_empty() {
        c.key_flags
    } else if c.has(flags::WRITE) {
        &["RW", "update"]
    } else {
        &["RO", "access"]
    }
}

fn simple_set<'a>(items: impl IntoIterator<Item = &'a str>) -> Reply {
    Reply::Set(
        items
            .into_iter()
            .map(|s| Reply::Simple(s.to_string().into()))
            .collect(),
    )
}

fn map(pairs: Vec<(&'static str, Reply)>) -> Reply {
    Reply::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Reply::bulk(k), v))
            .collect(),
    )
}

/// The command's Redis 7 key specs: its own, else one range spec from the legacy
/// triple, or an `unknown` spec for movable keys without a triple.
fn specs_of(c: &CommandSpec) -> Vec<KeySpec> {
    if !c.key_specs.is_empty() {
        return c.key_specs.to_vec();
    }
    let k = &c.keys;
    if k.first > 0 && k.step > 0 {
        let lastkey = if k.last < 0 { k.last } else { k.last - k.first };
        return vec![KeySpec::range(key_flags(c), k.first, lastkey, k.step)];
    }
    if k.find.is_some() {
        return vec![KeySpec {
            notes: "",
            flags: key_flags(c),
            begin: BeginSearch::Unknown,
            find: FindKeys::Unknown,
        }];
    }
    Vec::new()
}

/// The flags of the key at `pos` in `argv` (GETKEYSANDFLAGS): those of the key spec
/// that begins last at or before it. SET's flags vary with its arguments, as
/// Redis's setGetKeys decides them: `GET` reads the old value.
fn flags_at(c: &CommandSpec, argv: &[Bytes], pos: usize) -> &'static [&'static str] {
    if c.name == "set" {
        return if argv[3..].iter().any(|x| args::is(x, "get")) {
            &["RW", "access", "update"]
        } else {
            &["OW", "update"]
        };
    }
    c.key_specs
        .iter()
        .filter_map(|ks| match ks.begin {
            BeginSearch::Index(i) if i as usize <= pos => Some((i, ks.flags)),
            _ => None,
        })
        .max_by_key(|(i, _)| *i)
        .map_or_else(|| key_flags(c), |(_, f)| f)
}

/// Key specs in COMMAND INFO's shape.
fn key_specs(c: &CommandSpec) -> Vec<Reply> {
    let typed = |t: &str, spec: Vec<(&'static str, Reply)>| {
        map(vec![("type", Reply::bulk(t)), ("spec", map(spec))])
    };
    specs_of(c)
        .into_iter()
        .map(|ks| {
            let begin = match ks.begin {
                BeginSearch::Index(i) => typed("index", vec![("index", Reply::Int(i as i64))]),
                BeginSearch::Keyword { keyword, startfrom } => typed(
                    "keyword",
                    vec![
                        ("keyword", Reply::bulk(keyword)),
                        ("startfrom", Reply::Int(startfrom as i64)),
                    ],
                ),
                BeginSearch::Unknown => typed("unknown", vec![]),
            };
            let find = match ks.find {
                FindKeys::Range {
                    lastkey,
                    keystep,
                    limit,
                } => typed(
                    "range",
                    vec![
                        ("lastkey", Reply::Int(lastkey as i64)),
                        ("keystep", Reply::Int(keystep as i64)),
                        ("limit", Reply::Int(limit as i64)),
                    ],
                ),
                FindKeys::Keynum {
                    keynumidx,
                    firstkey,
                    keystep,
                } => typed(
                    "keynum",
                    vec![
                        ("keynumidx", Reply::Int(keynumidx as i64)),
                        ("firstkey", Reply::Int(firstkey as i64)),
                        ("keystep", Reply::Int(keystep as i64)),
                    ],
                ),
                FindKeys::Unknown => typed("unknown", vec![]),
            };
            let mut fields = Vec::new();
            if !ks.notes.is_empty() {
                fields.push(("notes", Reply::bulk(ks.notes)));
            }
            fields.push(("flags", simple_set(ks.flags.iter().copied())));
            fields.push(("begin_search", begin));
            fields.push(("find_keys", find));
            map(fields)
        })
        .collect()
}

/// One command in COMMAND / COMMAND INFO's 10-element format.
pub fn command_info(c: &CommandSpec) -> Reply {
    let mut fl: Vec<&str> = flags::NAMES
        .iter()
        .filter(|(bit, _)| c.has(*bit))
        .map(|(_, n)| *n)
        .collect();
    if c.keys.find.is_some() && !c.has(flags::MOVABLE_KEYS) {
        let at = fl
            .iter()
            .position(|&f| f == "allow_busy")
            .unwrap_or(fl.len());
        fl.insert(at, "movablekeys");
    }
    let acl: Vec<String> = c.acl.iter().map(|a| format!("@{a}")).collect();
    let subcommands = if c.subcommands.is_empty() {
        // Redis answers an empty set here and an array when there are some.
        Reply::Set(vec![])
    } else {
        Reply::Array(c.subcommands.iter().map(command_info).collect())
    };
    Reply::Array(vec![
        name(c),
        Reply::Int(c.arity as i64),
        simple_set(fl),
        Reply::Int(c.keys.first as i64),
        Reply::Int(c.keys.last as i64),
        Reply::Int(c.keys.step as i64),
        simple_set(acl.iter().map(|s| s.as_str())),
        Reply::Set(c.tips.iter().map(Reply::bulk).collect()),
        Reply::Set(key_specs(c)),
        subcommands,
    ])
}

/// COMMAND DOCS for one command: summary, since, group, and its subcommands' docs.
pub fn docs(c: &CommandSpec) -> Reply {
    let mut m = vec![
        ("summary", Reply::bulk(c.summary)),
        ("since", Reply::bulk(c.since)),
        ("group", Reply::bulk(c.group)),
    ];
    if !c.subcommands.is_empty() {
        m.push((
            "subcommands",
            Reply::Map(c.subcommands.iter().map(|s| (name(s), docs(s))).collect()),
        ));
    }
    map(m)
}

/// COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]: command
/// and subcommand names.
fn list(a: &[Bytes]) -> Reply {
    let filter: Box<dyn Fn(&CommandSpec) -> bool> = match a.len() {
        2 => Box::new(|_| true),
        5 if args::is(&a[2], "filterby") => {
            let value = a[4].clone();
            if args::is(&a[3], "module") {
                Box::new(|_| false)
            } else if args::is(&a[3], "aclcat") {
                Box::new(move |c| c.acl.iter().any(|cat| args::is(&value, cat)))
            } else if args::is(&a[3], "pattern") {
                Box::new(move |c| glob_match(&value, c.name.as_bytes(), true))
            } else {
                return CmdError::Syntax.reply();
            }
        }
        _ => return CmdError::Syntax.reply(),
    };
    let mut out = Vec::new();
    for c in cmd::all_commands() {
        if filter(c) {
            out.push(name(c));
        }
        for s in c.subcommands {
            if filter(s) {
                out.push(name(s));
            }
        }
    }
    Reply::Array(out)
}

/// The spec and key positions (relative to `argv`) of a full command, as GETKEYS
/// sees it.
fn keys_of(argv: &[Bytes]) -> Result<(&'static CommandSpec, Vec<usize>), Reply> {
    let mut spec =
        cmd::lookup(&argv[0]).ok_or_else(|| Reply::error("ERR Invalid command specified"))?;
    if !spec.subcommands.is_empty() && argv.len() >= 2 {
        spec = cmd::lookup_sub(spec, &argv[1]).unwrap_or(spec);
    }
    if !spec.arity_ok(argv.len()) {
        return Err(Reply::error(
            "ERR Invalid number of arguments specified for command",
        ));
    }
    let keys = spec.key_positions(argv).map_err(|e| e.reply())?;
    if keys.is_empty() {
        return Err(Reply::error("ERR The command has no key arguments"));
    }
    Ok((spec, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cmd::testing::argv;

    fn simple(s: &'static str) -> Reply {
        Reply::simple(s)
    }

    #[test]
    fn info_shape_matches_redis() {
        let get = command_info(cmd::lookup(b"get").unwrap());
        let Reply::Array(items) = &get else {
            panic!("array")
        };
        assert_eq!(items.len(), 10);
        assert_eq!(items[0], Reply::bulk("get"));
        assert_eq!(items[1], Reply::Int(2));
        assert_eq!(
            items[2],
            Reply::Set(vec![simple("readonly"), simple("fast")])
        );
        assert_eq!(items[3..6], [Reply::Int(1), Reply::Int(1), Reply::Int(1)]);
        assert_eq!(
            items[6],
            Reply::Set(vec![simple("@read"), simple("@string"), simple("@fast")])
        );
        assert_eq!(items[7], Reply::Set(vec![]));
        let spec = map(vec![
            ("flags", Reply::Set(vec![simple("RO"), simple("access")])),
            (
                "begin_search",
                map(vec![
                    ("type", Reply::bulk("index")),
                    ("spec", map(vec![("index", Reply::Int(1))])),
                ]),
            ),
            (
                "find_keys",
                map(vec![
                    ("type", Reply::bulk("range")),
                    (
                        "spec",
                        map(vec![
                            ("lastkey", Reply::Int(0)),
                            ("keystep", Reply::Int(1)),
                            ("limit", Reply::Int(0)),
                        ]),
                    ),
                ]),
            ),
        ]);
        assert_eq!(items[8], Reply::Set(vec![spec]));
        assert_eq!(items[9], Reply::Set(vec![]));

        let Reply::Array(watch) = command_info(cmd::lookup(b"watch").unwrap()) else {
            panic!("array")
        };
        assert_eq!(
            watch[2],
            Reply::Set(vec![
                simple("noscript"),
                simple("loading"),
                simple("stale"),
                simple("fast"),
                simple("allow_busy")
            ])
        );
        assert_eq!(watch[4], Reply::Int(-1));

        let Reply::Array(config) = command_info(cmd::lookup(b"config").unwrap()) else {
            panic!("array")
        };
        assert_eq!(config[1], Reply::Int(-2));
        assert_eq!(config[2], Reply::Set(vec![]));
        let Reply::Array(subs) = &config[9] else {
            panic!("subcommands are an array")
        };
        let Reply::Array(set) = subs
            .iter()
            .find(|s| matches!(s, Reply::Array(x) if x[0] == Reply::bulk("config|set")))
            .unwrap()
        else {
            unreachable!()
        };
        assert_eq!(
            set[7],
            Reply::Set(vec![
                Reply::bulk("request_policy:all_nodes"),
                Reply::bulk("response_policy:all_succeeded")
            ])
        );
    }

    #[test]
    fn info_docs_count_list() {
        let n = cmd::all_commands().count() as i64;
        assert_eq!(
            run("command|count", &argv(&["COMMAND", "COUNT"])),
            Reply::Int(n)
        );
        let Reply::Array(all) = run("command", &argv(&["COMMAND"])) else {
            panic!("array")
        };
        assert_eq!(all.len() as i64, n);
        let Reply::Array(some) = run(
            "command|info",
            &argv(&["COMMAND", "INFO", "get", "nosuch", "CONFIG|GET"]),
        ) else {
            panic!("array")
        };
        assert_eq!(some[1], Reply::Nil);
        assert!(matches!(&some[2], Reply::Array(x) if x[0] == Reply::bulk("config|get")));
        assert_eq!(
            run("command|docs", &argv(&["COMMAND", "DOCS", "nosuch"])),
            Reply::Map(vec![])
        );
        assert_eq!(
            run("command|docs", &argv(&["COMMAND", "DOCS", "echo"])),
            Reply::Map(vec![(
                Reply::bulk("echo"),
                map(vec![
                    ("summary", Reply::bulk("Echo the given string")),
                    ("since", Reply::bulk("1.0.0")),
                    ("group", Reply::bulk("connection")),
                ])
            )])
        );
        let Reply::Array(names) = run(
            "command|list",
            &argv(&["COMMAND", "LIST", "FILTERBY", "PATTERN", "config*"]),
        ) else {
            panic!("array")
        };
        assert_eq!(names[0], Reply::bulk("config"));
        assert!(names.contains(&Reply::bulk("config|get")));
        assert_eq!(names.len(), 6);
        let Reply::Array(pubsub) = run(
            "command|list",
            &argv(&["COMMAND", "LIST", "FILTERBY", "ACLCAT", "pubsub"]),
        ) else {
            panic!("array")
        };
        assert!(pubsub.contains(&Reply::bulk("publish")));
        assert!(pubsub.contains(&Reply::bulk("pubsub|numsub")));
        assert!(!pubsub.contains(&Reply::bulk("pubsub")));
        assert_eq!(
            run(
                "command|list",
                &argv(&["COMMAND", "LIST", "FILTERBY", "MODULE", "x"])
            ),
            Reply::Array(vec![])
        );
        for bad in [
            &["COMMAND", "LIST", "FILTERBY", "foo", "x"][..],
            &["COMMAND", "LIST", "foo"],
        ] {
            assert_eq!(run("command|list", &argv(bad)), CmdError::Syntax.reply());
        }
    }

    #[test]
    fn getkeys() {
        let gk = |v: &[&str]| run("command|getkeys", &argv(v));
        assert_eq!(
            gk(&["COMMAND", "GETKEYS", "set", "a", "b"]),
            Reply::Array(vec![Reply::bulk("a")])
        );
        assert_eq!(
            gk(&["COMMAND", "GETKEYS", "watch", "a", "b"]),
            Reply::Array(vec![Reply::bulk("a"), Reply::bulk("b")])
        );
        assert_eq!(
            gk(&["COMMAND", "GETKEYS", "nosuch", "a"]),
            Reply::error("ERR Invalid command specified")
        );
        assert_eq!(
            gk(&["COMMAND", "GETKEYS", "get", "a", "b"]),
            Reply::error("ERR Invalid number of arguments specified for command")
        );
        assert_eq!(
            gk(&["COMMAND", "GETKEYS", "ping", "x"]),
            Reply::error("ERR The command has no key arguments")
        );
        assert_eq!(
            gk(&["COMMAND", "GETKEYS", "config", "get", "x"]),
            Reply::error("ERR The command has no key arguments")
        );
        assert_eq!(
            run(
                "command|getkeysandflags",
                &argv(&["COMMAND", "GETKEYSANDFLAGS", "set", "a", "b"])
            ),
            Reply::Array(vec![Reply::Array(vec![
                Reply::bulk("a"),
                Reply::Set(vec![simple("OW"), simple("update")])
            ])])
        );
        // Per-key flags from the spec each key falls in (as redis-server 7.0.15 answers).
        let gkf = |v: &[&str]| run("command|getkeysandflags", &argv(v));
        let pair = |k: &str, f: &[&'static str]| {
            Reply::Array(vec![
                Reply::bulk(k),
                Reply::Set(f.iter().map(|s| simple(s)).collect()),
            ])
        };
        assert_eq!(
            gkf(&["COMMAND", "GETKEYSANDFLAGS", "smove", "a", "b", "m"]),
            Reply::Array(vec![
                pair("a", &["RW", "access", "delete"]),
                pair("b", &["RW", "insert"])
            ])
        );
        assert_eq!(
            gkf(&[
                "COMMAND",
                "GETKEYSANDFLAGS",
                "zunionstore",
                "d",
                "2",
                "k1",
                "k2"
            ]),
            Reply::Array(vec![
                pair("d", &["OW", "update"]),
                pair("k1", &["RO", "access"]),
                pair("k2", &["RO", "access"])
            ])
        );
        assert_eq!(
            gkf(&["COMMAND", "GETKEYSANDFLAGS", "set", "a", "b", "GET"]),
            Reply::Array(vec![pair("a", &["RW", "access", "update"])])
        );
    }
}
