//! CLIENT subcommands: ID SETNAME GETNAME LIST INFO KILL SETINFO NO-EVICT NO-TOUCH
//! REPLY HELP.

use super::super::client::{ClientHandle, ClientState, Clients};
use super::super::Server;
use crate::cmd::args;
use crate::cmd::error::{self, CmdError};
use crate::resp::{Protocol, Reply};
use bytes::Bytes;

/// Client names may not contain spaces, newlines or special characters.
pub fn validate_name(name: &[u8]) -> Result<(), Reply> {
    if !printable(name) {
        return Err(Reply::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

fn printable(s: &[u8]) -> bool {
    s.iter().all(|b| (b'!'..=b'~').contains(b))
}

/// CLIENT <sub> ...; `sub` is the full name (`client|list`).
pub fn run(server: &Server, c: &mut ClientState, sub: &str, a: &[Bytes]) -> Reply {
    match sub {
        "client|id" => Reply::Int(c.id() as i64),
        "client|setname" => {
            if let Err(e) = validate_name(&a[2]) {
                return e;
            }
            c.handle.info.lock().unwrap().name = String::from_utf8_lossy(&a[2]).into_owned();
            Reply::ok()
        }
        "client|getname" => {
            let name = c.handle.info.lock().unwrap().name.clone();
            if name.is_empty() {
                Reply::Nil
            } else {
                Reply::bulk_string(name)
            }
        }
        "client|list" => match parse_list(a) {
            Ok(filter) => text_reply(c, list(&server.clients, &filter)),
            Err(e) => e,
        },
        "client|info" => text_reply(c, format!("{}\n", c.handle.describe())),
        "client|kill" => kill(server, c, a),
        "client|setinfo" => setinfo(c, a),
        "client|no-evict" => match on_off(&a[2]) {
            Some(on) => {
                c.no_evict = on;
                c.handle.info.lock().unwrap().no_evict = on;
                Reply::ok()
            }
            None => CmdError::Syntax.reply(),
        },
        "client|no-touch" => match on_off(&a[2]) {
            Some(on) => {
                c.no_touch = on;
                c.handle.info.lock().unwrap().no_touch = on;
                Reply::ok()
            }
            None => CmdError::Syntax.reply(),
        },
        "client|reply" => {
            if args::is(&a[2], "on") {
                c.reply_off = false;
                c.reply_skip_next = false;
                Reply::ok()
            } else if args::is(&a[2], "off") {
                // Takes effect at once: OFF itself gets no reply.
                c.reply_off = true;
                Reply::ok()
            } else if args::is(&a[2], "skip") {
                // Neither SKIP nor the next command get a reply.
                if !c.reply_off {
                    c.reply_skip = true;
                    c.reply_skip_next = true;
                }
                Reply::ok()
            } else {
                CmdError::Syntax.reply()
            }
        }
        "client|help" => error::help("client", HELP),
        _ => error::unknown_subcommand("client", &a[1]),
    }
}

const HELP: &[&str] = &[
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "    * ID <client-id>",
    "      Kill connections by client id.",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Will not touch LRU/LFU stats when this mode is on.",
];

/// CLIENT LIST and INFO answer a bulk string, verbatim text in RESP3.
fn text_reply(c: &ClientState, text: String) -> Reply {
    match c.proto {
        Protocol::Resp3 => Reply::Verbatim("txt", Bytes::from(text)),
        Protocol::Resp2 => Reply::bulk_string(text),
    }
}

fn on_off(a: &[u8]) -> Option<bool> {
    if args::is(a, "on") {
        Some(true)
    } else if args::is(a, "off") {
        Some(false)
    } else {
        None
    }
}

/// A client type of CLIENT LIST/KILL TYPE. Masters and replicas never connect to a
/// shardis node over RESP, so those types match nobody.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ClientType {
    Normal,
    PubSub,
    Replication,
}

fn client_type(a: &[u8]) -> Result<ClientType, Reply> {
    let t = args::lower(a);
    match t.as_str() {
        "normal" => Ok(ClientType::Normal),
        "pubsub" => Ok(ClientType::PubSub),
        "master" | "replica" | "slave" => Ok(ClientType::Replication),
        _ => Err(Reply::Error(
            format!(
                "ERR Unknown client type '{}'",
                crate::cmd::error::arg_text(a)
            )
            .into(),
        )),
    }
}

fn type_matches(h: &ClientHandle, t: ClientType) -> bool {
    let pubsub = h.info.lock().unwrap().is_pubsub();
    match t {
        ClientType::Normal => !pubsub,
        ClientType::PubSub => pubsub,
        ClientType::Replication => false,
    }
}

/// CLIENT LIST [TYPE type] [ID id [id ...]]
#[derive(Debug, Default, PartialEq)]
pub struct ListFilter {
    pub kind: Option<ClientType>,
    pub ids: Option<Vec<u64>>,
}

pub fn parse_list(a: &[Bytes]) -> Result<ListFilter, Reply> {
    let mut f = ListFilter::default();
    if a.len() == 4 && args::is(&a[2], "type") {
        f.kind = Some(client_type(&a[3])?);
    } else if a.len() >= 4 && args::is(&a[2], "id") {
        let mut ids = Vec::new();
        for x in &a[3..] {
            match args::int(x) {
                Ok(id) if id > 0 => ids.push(id as u64),
                _ => return Err(Reply::error("ERR Invalid client ID")),
            }
        }
        f.ids = Some(ids);
    } else if a.len() != 2 {
        return Err(CmdError::Syntax.reply());
    }
    Ok(f)
}

/// CLIENT LIST's text: one line per client, by id.
pub fn list(clients: &Clients, f: &ListFilter) -> String {
    let mut out = String::new();
    for h in clients.all() {
        if f.kind.is_some_and(|t| !type_matches(&h, t)) {
            continue;
        }
        if f.ids.as_ref().is_some_and(|ids| !ids.contains(&h.id)) {
            continue;
        }
        out.push_str(&h.describe());
        out.push('\n');
    }
    out
}

/// The filters of CLIENT KILL; all given ones must match.
#[derive(Debug, PartialEq)]
pub struct KillFilter {
    pub addr: Option<String>,
    pub laddr: Option<String>,
    pub id: Option<u64>,
    pub kind: Option<ClientType>,
    pub skipme: bool,
    /// The old form `CLIENT KILL addr:port`: answers OK or "No such client".
    pub legacy: bool,
}

pub fn parse_kill(a: &[Bytes]) -> Result<KillFilter, Reply> {
    let mut f = KillFilter {
        addr: None,
        laddr: None,
        id: None,
        kind: None,
        skipme: true,
        legacy: false,
    };
    if a.len() == 3 {
        f.addr = Some(String::from_utf8_lossy(&a[2]).into_owned());
        f.skipme = false;
        f.legacy = true;
        return Ok(f);
    }
    let mut i = 2;
    while i < a.len() {
        let Some(value) = a.get(i + 1) else {
            return Err(CmdError::Syntax.reply());
        };
        let opt = &a[i];
        if args::is(opt, "id") {
            match args::int(value) {
                Ok(id) if id > 0 => f.id = Some(id as u64),
                _ => return Err(Reply::error("ERR client-id should be greater than 0")),
            }
        } else if args::is(opt, "type") {
            f.kind = Some(client_type(value)?);
        } else if args::is(opt, "addr") {
            f.addr = Some(String::from_utf8_lossy(value).into_owned());
        } else if args::is(opt, "laddr") {
            f.laddr = Some(String::from_utf8_lossy(value).into_owned());
        } else if args::is(opt, "user") {
            if &value[..] != b"default" {
                return Err(Reply::Error(
                    format!("ERR No such user '{}'", String::from_utf8_lossy(value)).into(),
                ));
            }
        } else if args::is(opt, "skipme") {
            f.skipme = match &args::lower(value)[..] {
                "yes" => true,
                "no" => false,
                _ => return Err(CmdError::Syntax.reply()),
            };
        } else {
            return Err(CmdError::Syntax.reply());
        }
        i += 2;
    }
    Ok(f)
}

impl KillFilter {
    pub fn matches(&self, h: &ClientHandle, self_id: u64) -> bool {
        if self.skipme && h.id == self_id {
            return false;
        }
        self.id.is_none_or(|id| id == h.id)
            && self.addr.as_ref().is_none_or(|a| *a == h.addr.to_string())
            && self
                .laddr
                .as_ref()
                .is_none_or(|a| *a == h.laddr.to_string())
            && self.kind.is_none_or(|t| type_matches(h, t))
    }
}

/// CLIENT KILL addr:port | CLIENT KILL <filter> <value> ... Killing oneself closes the
/// connection after the reply.
fn kill(server: &Server, c: &mut ClientState, a: &[Bytes]) -> Reply {
    let f = match parse_kill(a) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let mut killed = 0;
    for h in server.clients.all() {
        if !f.matches(&h, c.id()) {
            continue;
        }
        if h.id == c.id() {
            c.closing = true;
        } else {
            h.kill();
        }
        killed += 1;
    }
    if f.legacy {
        if killed == 0 {
            return Reply::error("ERR No such client");
        }
        return Reply::ok();
    }
    Reply::Int(killed)
}

/// CLIENT SETINFO LIB-NAME|LIB-VER value
fn setinfo(c: &mut ClientState, a: &[Bytes]) -> Reply {
    if a.len() != 4 {
        return CmdError::WrongArity("client|setinfo".into()).reply();
    }
    let attr = args::lower(&a[2]);
    if attr != "lib-name" && attr != "lib-ver" {
        return Reply::Error(
            format!(
                "ERR Unrecognized option '{}'",
                String::from_utf8_lossy(&a[2])
            )
            .into(),
        );
    }
    if !printable(&a[3]) {
        return Reply::Error(
            format!("ERR {attr} cannot contain spaces, newlines or special characters.").into(),
        );
    }
    let value = String::from_utf8_lossy(&a[3]).into_owned();
    let mut i = c.handle.info.lock().unwrap();
    if attr == "lib-name" {
        i.lib_name = value;
    } else {
        i.lib_ver = value;
    }
    Reply::ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    use crate::cmd::testing::argv;

    #[test]
    fn kill_filters_parse_as_redis() {
        let f = parse_kill(&argv(&["CLIENT", "KILL", "1.2.3.4:5"])).unwrap();
        assert!(f.legacy && !f.skipme);
        assert_eq!(f.addr.as_deref(), Some("1.2.3.4:5"));
        let f = parse_kill(&argv(&[
            "CLIENT", "KILL", "ID", "7", "TYPE", "pubsub", "SKIPME", "no", "USER", "default",
        ]))
        .unwrap();
        assert_eq!(f.id, Some(7));
        assert_eq!(f.kind, Some(ClientType::PubSub));
        assert!(!f.skipme && !f.legacy);
        let err = |v: &[&str]| parse_kill(&argv(v)).unwrap_err();
        assert_eq!(
            err(&["CLIENT", "KILL", "id", "abc"]),
            Reply::error("ERR client-id should be greater than 0")
        );
        assert_eq!(
            err(&["CLIENT", "KILL", "id", "0"]),
            Reply::error("ERR client-id should be greater than 0")
        );
        assert_eq!(
            err(&["CLIENT", "KILL", "type", "foo"]),
            Reply::error("ERR Unknown client type 'foo'")
        );
        assert_eq!(
            err(&["CLIENT", "KILL", "skipme", "maybe"]),
            Reply::error("ERR syntax error")
        );
        assert_eq!(
            err(&["CLIENT", "KILL", "foo", "bar"]),
            Reply::error("ERR syntax error")
        );
        assert_eq!(
            err(&["CLIENT", "KILL", "id", "1", "id"]),
            Reply::error("ERR syntax error")
        );
        assert_eq!(
            err(&["CLIENT", "KILL", "user", "nobody"]),
            Reply::error("ERR No such user 'nobody'")
        );
    }

    #[test]
    fn list_filters_and_matching() {
        assert_eq!(
            parse_list(&argv(&["CLIENT", "LIST"])).unwrap(),
            ListFilter::default()
        );
        assert_eq!(
            parse_list(&argv(&["CLIENT", "LIST", "type", "foo"])).unwrap_err(),
            Reply::error("ERR Unknown client type 'foo'")
        );
        assert_eq!(
            parse_list(&argv(&["CLIENT", "LIST", "id", "1", "abc"])).unwrap_err(),
            Reply::error("ERR Invalid client ID")
        );
        assert_eq!(
            parse_list(&argv(&["CLIENT", "LIST", "id"])).unwrap_err(),
            Reply::error("ERR syntax error")
        );
        assert_eq!(
            parse_list(&argv(&["CLIENT", "LIST", "foo"])).unwrap_err(),
            Reply::error("ERR syntax error")
        );

        let clients = Clients::default();
        let addr = "127.0.0.1:5000".parse().unwrap();
        let laddr = "127.0.0.1:6379".parse().unwrap();
        let a = clients.register(addr, laddr, mpsc::channel(1).0);
        let b = clients.register("127.0.0.1:5001".parse().unwrap(), laddr, mpsc::channel(1).0);
        b.info.lock().unwrap().sub = 1;
        let pubsub = parse_list(&argv(&["CLIENT", "LIST", "TYPE", "pubsub"])).unwrap();
        let text = list(&clients, &pubsub);
        assert!(text.starts_with(&format!("id={} addr=127.0.0.1:5001 ", b.id)));
        assert!(text.contains(" flags=P "));
        assert_eq!(text.lines().count(), 1);
        let ids = parse_list(&argv(&["CLIENT", "LIST", "ID", &a.id.to_string(), "99"])).unwrap();
        let text = list(&clients, &ids);
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains(" flags=N ") && text.contains(" multi=-1 "));
        assert!(text.ends_with('\n'));

        let f = parse_kill(&argv(&["CLIENT", "KILL", "ADDR", "127.0.0.1:5000"])).unwrap();
        assert!(f.matches(&a, b.id) && !f.matches(&b, b.id));
        // SKIPME yes by default: the caller itself is spared.
        assert!(!f.matches(&a, a.id));
        let f = parse_kill(&argv(&["CLIENT", "KILL", "LADDR", "127.0.0.1:6379"])).unwrap();
        assert!(f.matches(&a, 0) && f.matches(&b, 0));
        let f = parse_kill(&argv(&["CLIENT", "KILL", "TYPE", "master"])).unwrap();
        assert!(!f.matches(&a, 0));
    }
}
