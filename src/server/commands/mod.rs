//! Commands the server runs itself (table entries with `Handler::Server`), by name.
//! Each family file holds its commands' parse and run.

pub mod client_cmd;
mod connection;
mod transaction;

/// The Redis version shardis reports (HELLO, INFO): the command set it implements.
pub const REDIS_VERSION: &str = "7.2.4";

use super::client::ClientState;
use super::dispatch::Flow;
use super::Server;
use crate::cmd::{error, CommandSpec};
use crate::resp::Reply;
use bytes::Bytes;
use std::sync::Arc;

pub fn run(
    server: &Arc<Server>,
    c: &mut ClientState,
    spec: &'static CommandSpec,
    args: Vec<Bytes>,
) -> Flow {
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
        _ => error::unknown_command(&args),
    };
    Flow::Reply(reply)
}

/// Releases what a closing connection holds: watches, subscriptions.
pub fn disconnect(server: &Server, c: &mut ClientState) {
    transaction::unwatch_all(server, c);
    connection::unsubscribe_all(server, c);
}
