//! Commands the server runs itself (table entries with `Handler::Server`), by name.
//! Each family file holds its commands' parse and run.

pub mod admin;
pub mod client_cmd;
pub mod cluster_cmd;
pub mod command_cmd;
pub mod config_cmd;
mod connection;
pub mod info;
pub mod pubsub_cmd;
pub(crate) mod transaction;

/// The Redis version shardis reports (HELLO, INFO): the command set it implements.
pub const REDIS_VERSION: &str = "7.2.4";

use super::client::ClientState;
use super::dispatch::Flow;
use super::pubsub::Kind;
use super::Server;
use crate::cmd::{self, error, CommandSpec};
use crate::resp::{Protocol, Reply};
use bytes::Bytes;
use std::sync::Arc;

pub fn run(
    server: &Arc<Server>,
    c: &mut ClientState,
    spec: &'static CommandSpec,
    args: Vec<Bytes>,
) -> Flow {
    // Container commands run by their subcommand's full name (`config|get`).
    let spec = if !spec.subcommands.is_empty() && args.len() >= 2 {
        cmd::lookup_sub(spec, &args[1]).unwrap_or(spec)
    } else {
        spec
    };
    let reply = match spec.name {
        "ping" => connection::ping(c, &args),
        "echo" => Reply::Bulk(args[1].clone()),
        "quit" => {
            c.closing = true;
            Reply::ok()
        }
        "select" => connection::select(&args),
        "hello" => connection::hello(server, c, &args),
        "auth" => connection::auth(server, c, &args),
        "reset" => connection::reset(server, c),
        "readonly" | "readwrite" if !server.is_cluster() => {
            error::CmdError::ClusterDisabled.reply()
        }
        "readonly" => {
            c.readonly = true;
            Reply::ok()
        }
        "readwrite" => {
            c.readonly = false;
            Reply::ok()
        }
        "asking" => cluster_cmd::asking(server, c),
        "multi" => transaction::multi(c),
        "exec" => return transaction::exec(server, c),
        "discard" => transaction::discard(server, c),
        "watch" => transaction::watch(server, c, &args),
        "unwatch" => {
            transaction::unwatch_all(server, c);
            Reply::ok()
        }
        "subscribe" => return pubsub_cmd::subscribe(server, c, &args, Kind::Channel),
        "psubscribe" => return pubsub_cmd::subscribe(server, c, &args, Kind::Pattern),
        "ssubscribe" => return pubsub_cmd::subscribe(server, c, &args, Kind::Shard),
        "unsubscribe" => return pubsub_cmd::unsubscribe(server, c, &args, Kind::Channel),
        "punsubscribe" => return pubsub_cmd::unsubscribe(server, c, &args, Kind::Pattern),
        "sunsubscribe" => return pubsub_cmd::unsubscribe(server, c, &args, Kind::Shard),
        "publish" => pubsub_cmd::publish(server, &args, Kind::Channel),
        "spublish" => pubsub_cmd::publish(server, &args, Kind::Shard),
        "info" => {
            let text = info::info(server, &args[1..]);
            match c.proto {
                Protocol::Resp3 => Reply::Verbatim("txt", Bytes::from(text)),
                Protocol::Resp2 => Reply::bulk_string(text),
            }
        }
        "time" => admin::time(),
        "lastsave" => Reply::Int(info::start_time_secs(server) as i64),
        "wait" => admin::wait(&args),
        "shutdown" => return admin::shutdown(server, c, &args),
        "shardis" => match server.cluster() {
            Some(hooks) => return Flow::Later(hooks.admin(args)),
            None => Reply::error("ERR This instance has cluster support disabled"),
        },
        n if n.starts_with("pubsub") => pubsub_cmd::pubsub(&server.pubsub, n, &args),
        n if n.starts_with("client") => client_cmd::run(server, c, n, &args),
        n if n.starts_with("cluster") => cluster_cmd::run(server, n, &args),
        n if n.starts_with("config") => config_cmd::run(server, n, &args),
        n if n.starts_with("command") => command_cmd::run(n, &args),
        n if n.starts_with("slowlog") => {
            admin::slowlog(&mut server.slowlog.lock().unwrap(), n, &args)
        }
        _ => error::unknown_command(&args),
    };
    Flow::Reply(reply)
}

/// Releases what a closing connection holds: watches, subscriptions.
pub fn disconnect(server: &Server, c: &mut ClientState) {
    transaction::unwatch_all(server, c);
    connection::unsubscribe_all(server, c);
}

#[cfg(test)]
mod tests {
    use super::super::client::ClientState;
    use super::super::config::Config;
    use super::super::dispatch::{self, Flow};
    use super::super::Server;
    use crate::resp::Reply;
    use bytes::Bytes;
    use tokio::sync::mpsc;

    fn call(server: &std::sync::Arc<Server>, c: &mut ClientState, v: &[&str]) -> Vec<Reply> {
        let args: Vec<Bytes> = v
            .iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        let target = match dispatch::route_spec(&args) {
            Some(spec) => server.target(spec, &args),
            None => super::super::route::Target::Keyless,
        };
        match dispatch::command(server, c, args, &target) {
            Flow::Reply(r) => vec![r],
            Flow::Replies(rs) => rs,
            _ => panic!("blocked, replicated or forwarded"),
        }
    }

    fn push(kind: &str, ch: Option<&str>, n: i64) -> Reply {
        Reply::Push(vec![
            Reply::bulk(kind),
            ch.map_or(Reply::Nil, Reply::bulk),
            Reply::Int(n),
        ])
    }

    #[test]
    fn subscriptions_through_the_dispatcher() {
        let server = Server::new(Config::default(), 7651);
        let addr = "127.0.0.1:4000".parse().unwrap();
        let (tx, _rx) = mpsc::channel(16);
        let mut c = ClientState::new(server.clients.register(addr, addr, tx), true);
        assert_eq!(
            call(&server, &mut c, &["SUBSCRIBE", "a", "b", "a"]),
            vec![
                push("subscribe", Some("a"), 1),
                push("subscribe", Some("b"), 2),
                push("subscribe", Some("a"), 2)
            ]
        );
        assert_eq!(
            call(&server, &mut c, &["PSUBSCRIBE", "p*"]),
            vec![push("psubscribe", Some("p*"), 3)]
        );
        assert_eq!(
            call(&server, &mut c, &["SSUBSCRIBE", "s"]),
            vec![push("ssubscribe", Some("s"), 1)]
        );
        assert_eq!(c.handle.info.lock().unwrap().flags(), "P");
        // RESP2 subscribed mode names the subcommand in its refusal.
        assert_eq!(
            call(&server, &mut c, &["PUBSUB", "NUMPAT"]),
            vec![Reply::error("ERR Can't execute 'pubsub|numpat': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")]
        );
        assert_eq!(
            call(&server, &mut c, &["PUBSUB", "foo"]),
            vec![Reply::error(
                "ERR unknown subcommand 'foo'. Try PUBSUB HELP."
            )]
        );
        assert_eq!(
            call(&server, &mut c, &["UNSUBSCRIBE"]),
            vec![
                push("unsubscribe", Some("a"), 2),
                push("unsubscribe", Some("b"), 1)
            ]
        );
        assert_eq!(
            call(&server, &mut c, &["SUNSUBSCRIBE", "s", "t"]),
            vec![
                push("sunsubscribe", Some("s"), 0),
                push("sunsubscribe", Some("t"), 0)
            ]
        );
        assert_eq!(
            call(&server, &mut c, &["PUNSUBSCRIBE"]),
            vec![push("punsubscribe", Some("p*"), 0)]
        );
        assert_eq!(
            call(&server, &mut c, &["UNSUBSCRIBE"]),
            vec![push("unsubscribe", None, 0)]
        );
        assert_eq!(server.pubsub.numpat(), 0);
        assert_eq!(
            call(&server, &mut c, &["PUBLISH", "a", "x"]),
            vec![Reply::Int(0)]
        );
    }

    #[test]
    fn client_commands_and_stats_by_subcommand() {
        let server = Server::new(Config::default(), 7651);
        let addr = "127.0.0.1:4001".parse().unwrap();
        let mut c = ClientState::new(
            server.clients.register(addr, addr, mpsc::channel(1).0),
            true,
        );
        let id = c.id() as i64;
        assert_eq!(
            call(&server, &mut c, &["CLIENT", "ID"]),
            vec![Reply::Int(id)]
        );
        assert_eq!(
            call(&server, &mut c, &["client", "setname", "me"]),
            vec![Reply::ok()]
        );
        assert_eq!(
            call(&server, &mut c, &["CLIENT", "GETNAME"]),
            vec![Reply::bulk("me")]
        );
        let Reply::Bulk(line) = &call(&server, &mut c, &["CLIENT", "INFO"])[0] else {
            panic!("bulk")
        };
        let line = std::str::from_utf8(line).unwrap();
        assert!(line.contains(" name=me ") && line.contains(" cmd=client|info "));
        assert_eq!(
            call(&server, &mut c, &["CLIENT", "NO-TOUCH", "on"]),
            vec![Reply::ok()]
        );
        assert!(c.no_touch);
        let stats = server.stats.commands.lock().unwrap().clone();
        assert_eq!(stats["client|id"].calls, 1);
        assert!(!stats.contains_key("client"));
        // MULTI refuses SHUTDOWN (no_multi) and EXEC then aborts.
        call(&server, &mut c, &["MULTI"]);
        assert_eq!(
            call(&server, &mut c, &["SHUTDOWN"]),
            vec![Reply::error("ERR Command not allowed inside a transaction")]
        );
        assert_eq!(
            call(&server, &mut c, &["EXEC"]),
            vec![Reply::error(
                "EXECABORT Transaction discarded because of previous errors."
            )]
        );
        // Killing oneself answers, then closes.
        assert_eq!(
            call(
                &server,
                &mut c,
                &["CLIENT", "KILL", "ID", &id.to_string(), "SKIPME", "no"]
            ),
            vec![Reply::Int(1)]
        );
        assert!(c.closing);
        assert!(!server.is_shutting_down());
        assert_eq!(call(&server, &mut c, &["SHUTDOWN", "NOSAVE"]), vec![]);
        assert!(server.is_shutting_down());
    }

    #[test]
    fn cluster_commands_and_asking_through_the_dispatcher() {
        use crate::router::ClusterView;
        use proto::map::{ClusterMap, SlotRange};
        let server = Server::new(Config::default(), 7651);
        let addr = "127.0.0.1:4002".parse().unwrap();
        let mut c = ClientState::new(
            server.clients.register(addr, addr, mpsc::channel(1).0),
            true,
        );
        let disabled = vec![Reply::error(
            "ERR This instance has cluster support disabled",
        )];
        // A single node answers as Redis without cluster-enabled.
        for cmd in [
            &["CLUSTER", "INFO"][..],
            &["CLUSTER", "KEYSLOT", "x"],
            &["CLUSTER", "HELP"],
            &["ASKING"],
        ] {
            assert_eq!(call(&server, &mut c, cmd), disabled, "{cmd:?}");
        }
        assert!(!c.asking);
        assert_eq!(
            call(&server, &mut c, &["CLUSTER", "FOO"]),
            vec![Reply::error(
                "ERR unknown subcommand 'FOO'. Try CLUSTER HELP."
            )]
        );
        assert_eq!(
            call(&server, &mut c, &["CLUSTER", "KEYSLOT"]),
            vec![Reply::error(
                "ERR wrong number of arguments for 'cluster|keyslot' command"
            )]
        );
        // In a cluster: the view comes from the installed function.
        let mut map = ClusterMap {
            epoch: 1,
            ..Default::default()
        };
        map.nodes.insert(
            7,
            proto::NodeAddr {
                peer: "127.0.0.1:17007".into(),
                client: "127.0.0.1:7007".into(),
            },
        );
        map.shards.insert(1, vec![7]);
        map.ranges.push(SlotRange {
            start: 0,
            end: 16383,
            shard: 1,
        });
        let map = std::sync::Arc::new(map);
        struct Hooks(ClusterView);
        impl crate::server::route::ClusterHooks for Hooks {
            fn view(&self) -> ClusterView {
                self.0.clone()
            }
            fn publish(&self, _: proto::raft_msg::Publish) {}
            fn forward(
                &self,
                _: u64,
                _: Vec<Vec<Bytes>>,
                _: bool,
            ) -> futures_util::future::BoxFuture<
                'static,
                Result<Vec<Reply>, crate::server::route::ForwardError>,
            > {
                unreachable!("nothing is forwarded here")
            }
            fn hand_over(&self) -> futures_util::future::BoxFuture<'static, usize> {
                Box::pin(async { 0 })
            }
            fn admin(&self, _: Vec<Bytes>) -> futures_util::future::BoxFuture<'static, Reply> {
                unreachable!("no administration here")
            }
        }
        server.enter_cluster(std::sync::Arc::new(Hooks(ClusterView {
            map: map.clone(),
            my_id: 7,
            leaders: [(1, Some(7))].into_iter().collect(),
        })));
        let shard = server.new_shard();
        server.set_table(crate::server::route::ShardTable {
            map,
            hosted: [(
                1,
                std::sync::Arc::new(crate::server::route::Hosted {
                    id: 1,
                    shard: shard.clone(),
                    replica: None,
                }),
            )]
            .into_iter()
            .collect(),
        });
        assert_eq!(
            call(&server, &mut c, &["CLUSTER", "MYID"]),
            vec![Reply::bulk(format!("{:040x}", 7))]
        );
        assert_eq!(
            call(&server, &mut c, &["CLUSTER", "KEYSLOT", "123456789"]),
            vec![Reply::Int(12739)]
        );
        shard
            .lock()
            .ks
            .set(b"{a}1", crate::keyspace::Value::Str(vec![]), 0);
        assert_eq!(
            call(&server, &mut c, &["CLUSTER", "COUNTKEYSINSLOT", "15495"]),
            vec![Reply::Int(1)]
        );
        assert_eq!(
            call(&server, &mut c, &["CLUSTER", "GETKEYSINSLOT", "15495", "5"]),
            vec![Reply::Array(vec![Reply::bulk("{a}1")])]
        );
        let Reply::Verbatim("txt", text) = &call(&server, &mut c, &["CLUSTER", "INFO"])[0] else {
            panic!("verbatim")
        };
        assert!(text.starts_with(b"cluster_state:ok\r\n"));
        // ASKING lasts one command, or up to EXEC when a MULTI follows it.
        assert_eq!(call(&server, &mut c, &["ASKING"]), vec![Reply::ok()]);
        assert!(c.asking);
        c.after_command_asking("asking");
        assert!(c.asking);
        c.after_command_asking("get");
        assert!(!c.asking);
        call(&server, &mut c, &["ASKING"]);
        c.after_command_asking("asking");
        call(&server, &mut c, &["MULTI"]);
        c.after_command_asking("multi");
        assert!(c.asking);
        call(&server, &mut c, &["EXEC"]);
        c.after_command_asking("exec");
        assert!(!c.asking);
        call(&server, &mut c, &["ASKING"]);
        call(&server, &mut c, &["RESET"]);
        assert!(!c.asking, "RESET clears ASKING");
    }
}
