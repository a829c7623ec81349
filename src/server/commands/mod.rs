//! Commands the server runs itself (table entries with `Handler::Server`), by name.
//! Each family file holds its commands' parse and run.

pub mod admin;
pub mod client_cmd;
pub mod command_cmd;
pub mod config_cmd;
mod connection;
pub mod info;
pub mod pubsub_cmd;
mod transaction;

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
        "multi" => transaction::multi(c),
        "exec" => transaction::exec(server, c),
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
        n if n.starts_with("pubsub") => pubsub_cmd::pubsub(&server.pubsub, n, &args),
        n if n.starts_with("client") => client_cmd::run(server, c, n, &args),
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
