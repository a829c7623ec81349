//! PING ECHO QUIT SELECT HELLO AUTH RESET.

use super::super::client::ClientState;
use super::super::pubsub::Kind;
use super::super::Server;
use crate::cmd::args;
use crate::cmd::error::CmdError;
use crate::resp::{Protocol, Reply};
use bytes::Bytes;

/// PING [message]. In RESP2 subscribed mode the reply is `pong` and the message in
/// an array.
pub fn ping(c: &ClientState, a: &[Bytes]) -> Reply {
    if a.len() > 2 {
        return CmdError::WrongArity("ping".into()).reply();
    }
    if c.in_subscribed_mode() {
        return Reply::Array(vec![
            Reply::bulk_static(b"pong"),
            a.get(1)
                .map(|m| Reply::Bulk(m.clone()))
                .unwrap_or(Reply::bulk_static(b"")),
        ]);
    }
    match a.get(1) {
        Some(m) => Reply::Bulk(m.clone()),
        None => Reply::simple("PONG"),
    }
}

/// SELECT index: only database 0 exists, as in Redis Cluster.
pub fn select(a: &[Bytes]) -> Reply {
    match args::int(&a[1]) {
        Err(_) => CmdError::NotInteger.reply(),
        Ok(0) => Reply::ok(),
        Ok(_) => Reply::error("ERR SELECT is not allowed in cluster mode"),
    }
}

fn check_password(server: &Server, user: Option<&[u8]>, pass: &[u8]) -> bool {
    let required = server.config().requirepass.clone();
    let user_ok = user.is_none_or(|u| u == b"default");
    user_ok && (required.is_empty() || pass == required.as_bytes())
}

/// AUTH [username] password
pub fn auth(server: &Server, c: &mut ClientState, a: &[Bytes]) -> Reply {
    if a.len() > 3 {
        return CmdError::Syntax.reply();
    }
    let (user, pass) = if a.len() == 3 {
        (Some(&a[1][..]), &a[2][..])
    } else {
        (None, &a[1][..])
    };
    if user.is_none() && server.config().requirepass.is_empty() {
        return Reply::error(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        );
    }
    if check_password(server, user, pass) {
        c.authenticated = true;
        Reply::ok()
    } else {
        Reply::error("WRONGPASS invalid username-password pair or user is disabled.")
    }
}

/// HELLO [protover [AUTH username password] [SETNAME clientname]]
pub fn hello(server: &Server, c: &mut ClientState, a: &[Bytes]) -> Reply {
    let mut proto = None;
    let mut j = 1;
    if a.len() >= 2 {
        let v = match args::int(&a[1]) {
            Ok(v) => v,
            Err(_) => {
                return Reply::error("ERR Protocol version is not an integer or out of range")
            }
        };
        if !(2..=3).contains(&v) {
            return Reply::error("NOPROTO unsupported protocol version");
        }
        proto = Some(if v == 3 {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        });
        j = 2;
    }
    let mut setname = None;
    while j < a.len() {
        let more = a.len() - j - 1;
        if args::is(&a[j], "auth") && more >= 2 {
            if !check_password(server, Some(&a[j + 1]), &a[j + 2]) {
                return Reply::error(
                    "WRONGPASS invalid username-password pair or user is disabled.",
                );
            }
            c.authenticated = true;
            j += 3;
        } else if args::is(&a[j], "setname") && more >= 1 {
            setname = Some(a[j + 1].clone());
            j += 2;
        } else {
            return Reply::Error(
                format!(
                    "ERR Syntax error in HELLO option '{}'",
                    crate::cmd::error::arg_text(&a[j])
                )
                .into(),
            );
        }
    }
    if !c.authenticated {
        return Reply::error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(name) = setname {
        if let Err(e) = super::client_cmd::validate_name(&name) {
            return e;
        }
        c.handle.info.lock().unwrap().name = String::from_utf8_lossy(&name).into_owned();
    }
    if let Some(p) = proto {
        c.proto = p;
        c.handle.info.lock().unwrap().resp = if p == Protocol::Resp3 { 3 } else { 2 };
    }
    Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("redis")),
        (
            Reply::bulk("version"),
            Reply::bulk(crate::server::commands::REDIS_VERSION),
        ),
        (
            Reply::bulk("proto"),
            Reply::Int(if c.proto == Protocol::Resp3 { 3 } else { 2 }),
        ),
        (Reply::bulk("id"), Reply::Int(c.id() as i64)),
        (Reply::bulk("mode"), Reply::bulk("standalone")),
        (Reply::bulk("role"), Reply::bulk("master")),
        (Reply::bulk("modules"), Reply::Array(vec![])),
    ])
}

/// RESET: back to a fresh connection's state.
pub fn reset(server: &Server, c: &mut ClientState) -> Reply {
    c.multi = None;
    c.multi_failed = false;
    super::transaction::unwatch_all(server, c);
    unsubscribe_all(server, c);
    c.proto = Protocol::Resp2;
    c.no_evict = false;
    c.no_touch = false;
    c.readonly = false;
    c.asking = false;
    c.authenticated = server.config().requirepass.is_empty();
    {
        let mut i = c.handle.info.lock().unwrap();
        i.name.clear();
        i.resp = 2;
        i.sub = 0;
        i.psub = 0;
        i.ssub = 0;
    }
    Reply::simple("RESET")
}

pub fn unsubscribe_all(server: &Server, c: &mut ClientState) {
    for ch in c.channels.drain() {
        server.pubsub.unsubscribe(Kind::Channel, &ch, c.handle.id);
    }
    for p in c.patterns.drain() {
        server.pubsub.unsubscribe(Kind::Pattern, &p, c.handle.id);
    }
    for ch in c.shard_channels.drain() {
        server.pubsub.unsubscribe(Kind::Shard, &ch, c.handle.id);
    }
}
