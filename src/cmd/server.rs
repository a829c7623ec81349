//! Connection, server, transaction and pub/sub commands: their table entries. They
//! act on connections and the server, so the server layer runs them by name
//! (`Handler::Server`).

use super::table::{flags::*, CommandSpec, Handler, Keys};

pub static COMMANDS: &[CommandSpec] = &[CommandSpec {
    group: "connection",
    since: "1.0.0",
    summary: "Returns the server's liveliness response.",
    acl: &["fast", "connection"],
    ..CommandSpec::new("ping", -1, FAST, Keys::NONE, Handler::Server)
}];
