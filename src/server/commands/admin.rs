//! SLOWLOG TIME SHUTDOWN WAIT LASTSAVE.

use super::super::client::ClientState;
use super::super::dispatch::Flow;
use super::super::slowlog::SlowLog;
use super::super::Server;
use crate::cmd::args;
use crate::cmd::error::{self, CmdError};
use crate::resp::Reply;
use bytes::Bytes;
use std::time::{SystemTime, UNIX_EPOCH};

/// SLOWLOG GET [count] | LEN | RESET | HELP; `sub` is the full name.
pub fn slowlog(log: &mut SlowLog, sub: &str, a: &[Bytes]) -> Reply {
    match sub {
        "slowlog|get" => {
            if a.len() > 3 {
                return error::subcommand_syntax("slowlog", &a[1]);
            }
            let count = match a.get(2).map(|c| args::int(c)) {
                None => 10,
                Some(Ok(n)) if n >= -1 => n,
                Some(_) => return Reply::error("ERR count should be greater than or equal to -1"),
            };
            let take = if count == -1 {
                usize::MAX
            } else {
                count as usize
            };
            Reply::Array(
                log.entries
                    .iter()
                    .take(take)
                    .map(|e| {
                        Reply::Array(vec![
                            Reply::Int(e.id as i64),
                            Reply::Int(e.time as i64),
                            Reply::Int(e.usec as i64),
                            Reply::Array(e.args.iter().cloned().map(Reply::Bulk).collect()),
                            Reply::bulk(&e.addr),
                            Reply::bulk(&e.name),
                        ])
                    })
                    .collect(),
            )
        }
        "slowlog|len" => Reply::Int(log.entries.len() as i64),
        "slowlog|reset" => {
            log.entries.clear();
            Reply::ok()
        }
        "slowlog|help" => error::help(
            "slowlog",
            &[
                "GET [<count>]",
                "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "    Entries are made of:",
                "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                "    client name",
                "LEN",
                "    Return the length of the slowlog.",
                "RESET",
                "    Reset the slowlog.",
            ],
        ),
        _ => error::unknown_subcommand("slowlog", &a[1]),
    }
}

/// TIME: unix seconds and microseconds, as two bulk strings.
pub fn time() -> Reply {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Reply::Array(vec![
        Reply::bulk_string(d.as_secs().to_string()),
        Reply::bulk_string(d.subsec_micros().to_string()),
    ])
}

/// SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE] [ABORT]. There is nothing to save and no
/// replica to wait for, so it stops at once; the caller's connection closes without a
/// reply, as with Redis.
pub fn shutdown(server: &Server, c: &mut ClientState, a: &[Bytes]) -> Flow {
    let (mut save, mut nosave, mut abort, mut other) = (false, false, false, false);
    for opt in &a[1..] {
        if args::is(opt, "nosave") {
            nosave = true;
        } else if args::is(opt, "save") {
            save = true;
        } else if args::is(opt, "now") || args::is(opt, "force") {
            other = true;
        } else if args::is(opt, "abort") {
            abort = true;
        } else {
            return Flow::Reply(CmdError::Syntax.reply());
        }
    }
    if (abort && (save || nosave || other)) || (save && nosave) {
        return Flow::Reply(CmdError::Syntax.reply());
    }
    if abort {
        return Flow::Reply(Reply::error("ERR No shutdown in progress."));
    }
    tracing::info!(client = c.id(), "SHUTDOWN requested");
    server.shutdown();
    c.closing = true;
    Flow::Replies(Vec::new())
}

/// WAIT numreplicas timeout: a single node has no replicas to wait for, so every
/// write is as replicated as it will get: 0 at once.
pub fn wait(a: &[Bytes]) -> Reply {
    match args::int(&a[2]) {
        Err(_) => return Reply::error("ERR timeout is not an integer or out of range"),
        Ok(t) if t < 0 => return Reply::error("ERR timeout is negative"),
        Ok(_) => {}
    }
    if let Err(e) = args::int(&a[1]) {
        return e.reply();
    }
    Reply::Int(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cmd::testing::argv;

    #[test]
    fn slowlog_get_len_reset() {
        let mut log = SlowLog::default();
        for i in 0..3 {
            log.push(
                100 + i,
                &argv(&["SET", "k", &i.to_string()]),
                "127.0.0.1:1".into(),
                "n".into(),
                128,
            );
        }
        assert_eq!(
            slowlog(&mut log, "slowlog|len", &argv(&["SLOWLOG", "LEN"])),
            Reply::Int(3)
        );
        let Reply::Array(got) = slowlog(&mut log, "slowlog|get", &argv(&["SLOWLOG", "GET", "2"]))
        else {
            panic!("array")
        };
        assert_eq!(got.len(), 2);
        let Reply::Array(newest) = &got[0] else {
            panic!("entry")
        };
        assert_eq!(newest[0], Reply::Int(2));
        assert_eq!(newest[2], Reply::Int(102));
        assert_eq!(
            newest[3],
            Reply::Array(vec![Reply::bulk("SET"), Reply::bulk("k"), Reply::bulk("2")])
        );
        assert_eq!(newest[4], Reply::bulk("127.0.0.1:1"));
        assert_eq!(newest[5], Reply::bulk("n"));
        let all = |v: &[&str], log: &mut SlowLog| slowlog(log, "slowlog|get", &argv(v));
        assert!(
            matches!(all(&["SLOWLOG", "GET", "-1"], &mut log), Reply::Array(x) if x.len() == 3)
        );
        assert!(matches!(all(&["SLOWLOG", "GET"], &mut log), Reply::Array(x) if x.len() == 3));
        assert!(matches!(all(&["SLOWLOG", "GET", "0"], &mut log), Reply::Array(x) if x.is_empty()));
        for bad in ["-2", "abc"] {
            assert_eq!(
                all(&["SLOWLOG", "GET", bad], &mut log),
                Reply::error("ERR count should be greater than or equal to -1")
            );
        }
        assert_eq!(
            all(&["SLOWLOG", "GET", "1", "2"], &mut log),
            Reply::error(
                "ERR unknown subcommand or wrong number of arguments for 'GET'. Try SLOWLOG HELP."
            )
        );
        assert_eq!(
            slowlog(&mut log, "slowlog|reset", &argv(&["SLOWLOG", "RESET"])),
            Reply::ok()
        );
        assert_eq!(
            slowlog(&mut log, "slowlog|len", &argv(&["SLOWLOG", "LEN"])),
            Reply::Int(0)
        );
    }

    #[test]
    fn wait_and_time() {
        assert_eq!(wait(&argv(&["WAIT", "1", "0"])), Reply::Int(0));
        assert_eq!(
            wait(&argv(&["WAIT", "1", "abc"])),
            Reply::error("ERR timeout is not an integer or out of range")
        );
        assert_eq!(
            wait(&argv(&["WAIT", "-1", "-1"])),
            Reply::error("ERR timeout is negative")
        );
        assert_eq!(
            wait(&argv(&["WAIT", "x", "0"])),
            CmdError::NotInteger.reply()
        );
        let Reply::Array(t) = time() else {
            panic!("array")
        };
        let Reply::Bulk(us) = &t[1] else {
            panic!("bulk")
        };
        assert!(std::str::from_utf8(us).unwrap().parse::<u32>().unwrap() < 1_000_000);
    }
}
