//! CONFIG GET SET RESETSTAT REWRITE HELP.

use super::super::config::{self, Config};
use super::super::Server;
use crate::cmd::error::{self, CmdError};
use crate::resp::Reply;
use bytes::Bytes;

/// CONFIG <sub> ...; `sub` is the full name (`config|get`).
pub fn run(server: &Server, sub: &str, a: &[Bytes]) -> Reply {
    match sub {
        "config|get" => get(&server.config(), a),
        "config|set" => {
            let mut next = server.config().clone();
            if let Err(e) = set(&mut next, a) {
                return e;
            }
            *server.config.write().unwrap_or_else(|p| p.into_inner()) = next;
            server.apply_config();
            Reply::ok()
        }
        "config|resetstat" => {
            server.stats.reset();
            for h in server.hosted() {
                h.shard.lock().ks.stats.reset();
            }
            Reply::ok()
        }
        // shardis takes its settings from flags and an optional file it never
        // writes back.
        "config|rewrite" => Reply::error("ERR The server is running without a config file"),
        "config|help" => error::help(
            "config",
            &[
                "GET <pattern>",
                "    Return parameters matching the glob-like <pattern> and their values.",
                "SET <directive> <value>",
                "    Set the configuration <directive> to <value>.",
                "RESETSTAT",
                "    Reset statistics reported by the INFO command.",
                "REWRITE",
                "    Rewrite the configuration file.",
            ],
        ),
        _ => error::unknown_subcommand("config", &a[1]),
    }
}

/// CONFIG GET parameter [parameter ...]: every setting matching any glob pattern,
/// once; a map in RESP3.
pub fn get(c: &Config, a: &[Bytes]) -> Reply {
    let patterns: Vec<&[u8]> = a[2..].iter().map(|p| &p[..]).collect();
    Reply::Map(
        c.get_matching(&patterns)
            .into_iter()
            .map(|(name, value)| (Reply::bulk(name), Reply::bulk_string(value)))
            .collect(),
    )
}

fn set_failed(name: &[u8], reason: &str) -> Reply {
    Reply::Error(
        format!(
            "ERR CONFIG SET failed (possibly related to argument '{}') - {reason}",
            String::from_utf8_lossy(name)
        )
        .into(),
    )
}

/// CONFIG SET parameter value [parameter value ...], all or nothing: names are
/// checked first (unknown, immutable, repeated), then values are applied to `c`; on
/// error `c` may be half changed, so callers set a copy.
pub fn set(c: &mut Config, a: &[Bytes]) -> Result<(), Reply> {
    if !a.len().is_multiple_of(2) {
        return Err(CmdError::WrongArity("config|set".into()).reply());
    }
    let pairs: Vec<(&Bytes, &Bytes)> = a[2..].chunks(2).map(|p| (&p[0], &p[1])).collect();
    let mut seen: Vec<&'static str> = Vec::new();
    for (name, _) in &pairs {
        let p = config::param(&String::from_utf8_lossy(name)).ok_or_else(|| {
            Reply::Error(
                format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                    String::from_utf8_lossy(name)
                )
                .into(),
            )
        })?;
        if p.immutable {
            return Err(set_failed(name, "can't set immutable config"));
        }
        if seen.contains(&p.name) {
            return Err(set_failed(name, "duplicate parameter"));
        }
        seen.push(p.name);
    }
    for (name, value) in pairs {
        let p = config::param(&String::from_utf8_lossy(name)).expect("checked above");
        (p.set)(c, &String::from_utf8_lossy(value)).map_err(|e| set_failed(name, &e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cmd::testing::argv;

    #[test]
    fn get_matches_patterns_once() {
        let c = Config::default();
        let Reply::Map(pairs) = get(&c, &argv(&["CONFIG", "GET", "maxmemory", "maxmemory*"]))
        else {
            panic!("CONFIG GET answers a map");
        };
        let names: Vec<Reply> = pairs.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            names,
            vec![
                Reply::bulk("maxmemory"),
                Reply::bulk("maxmemory-policy"),
                Reply::bulk("maxmemory-samples")
            ]
        );
        assert_eq!(pairs[0].1, Reply::bulk("0"));
        assert_eq!(pairs[1].1, Reply::bulk("noeviction"));
        assert_eq!(
            get(&c, &argv(&["CONFIG", "GET", "nosuch"])),
            Reply::Map(vec![])
        );
        assert_eq!(
            get(&c, &argv(&["CONFIG", "GET", "HZ"])),
            Reply::Map(vec![(Reply::bulk("hz"), Reply::bulk("10"))])
        );
    }

    #[test]
    fn set_is_checked_then_applied() {
        let mut c = Config::default();
        set(
            &mut c,
            &argv(&[
                "CONFIG",
                "SET",
                "maxmemory",
                "10mb",
                "maxmemory-policy",
                "allkeys-lru",
            ]),
        )
        .unwrap();
        assert_eq!(c.maxmemory, 10 * 1024 * 1024);
        let err = |v: &[&str]| set(&mut Config::default(), &argv(v)).unwrap_err();
        assert_eq!(
            err(&["CONFIG", "SET", "maxmemory", "abc"]),
            Reply::error("ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value")
        );
        assert_eq!(
            err(&["CONFIG", "SET", "nosuch", "1"]),
            Reply::error("ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'")
        );
        assert_eq!(
            err(&["CONFIG", "SET", "maxmemory", "1", "maxmemory", "2"]),
            Reply::error("ERR CONFIG SET failed (possibly related to argument 'maxmemory') - duplicate parameter")
        );
        assert_eq!(
            err(&["CONFIG", "SET", "maxmemory", "1", "hz"]),
            Reply::error("ERR wrong number of arguments for 'config|set' command")
        );
        assert_eq!(
            err(&["CONFIG", "SET", "daemonize", "yes"]),
            Reply::error("ERR CONFIG SET failed (possibly related to argument 'daemonize') - can't set immutable config")
        );
        assert_eq!(
            err(&["CONFIG", "SET", "maxmemory", "10mb", "maxmemory-policy", "foo"]),
            Reply::error("ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction")
        );
        assert_eq!(
            err(&["CONFIG", "SET", "timeout", "-1"]),
            Reply::error("ERR CONFIG SET failed (possibly related to argument 'timeout') - argument must be between 0 and 2147483647 inclusive")
        );
        // hz is clamped to Redis's range rather than refused.
        let mut c = Config::default();
        set(&mut c, &argv(&["CONFIG", "SET", "hz", "1000"])).unwrap();
        assert_eq!(c.hz, 500);
    }
}
