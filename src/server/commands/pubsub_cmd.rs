//! SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE SSUBSCRIBE SUNSUBSCRIBE PUBLISH
//! SPUBLISH PUBSUB.
//!
//! (Un)subscribing confirms each channel with its own push reply, so these commands
//! answer several replies (`Flow::Replies`). The count in a confirmation is the
//! client's channels plus patterns, or its shard channels for the shard variants.

use super::super::client::ClientState;
use super::super::dispatch::Flow;
use super::super::pubsub::{Kind, PubSub};
use super::super::Server;
use crate::cmd::error;
use crate::resp::Reply;
use bytes::Bytes;
use std::collections::HashSet;

fn names(kind: Kind) -> (&'static [u8], &'static [u8]) {
    match kind {
        Kind::Channel => (b"subscribe", b"unsubscribe"),
        Kind::Pattern => (b"psubscribe", b"punsubscribe"),
        Kind::Shard => (b"ssubscribe", b"sunsubscribe"),
    }
}

fn set_of(c: &mut ClientState, kind: Kind) -> &mut HashSet<Bytes> {
    match kind {
        Kind::Channel => &mut c.channels,
        Kind::Pattern => &mut c.patterns,
        Kind::Shard => &mut c.shard_channels,
    }
}

fn count(c: &ClientState, kind: Kind) -> i64 {
    match kind {
        Kind::Shard => c.shard_channels.len() as i64,
        _ => (c.channels.len() + c.patterns.len()) as i64,
    }
}

fn confirm(name: &'static [u8], channel: Option<&Bytes>, count: i64) -> Reply {
    Reply::Push(vec![
        Reply::bulk_static(name),
        channel.map_or(Reply::Nil, |ch| Reply::Bulk(ch.clone())),
        Reply::Int(count),
    ])
}

/// CLIENT LIST's sub/psub/ssub.
fn update_counts(c: &ClientState) {
    let mut i = c.handle.info.lock().unwrap();
    i.sub = c.channels.len();
    i.psub = c.patterns.len();
    i.ssub = c.shard_channels.len();
}

/// SUBSCRIBE channel [channel ...] (and PSUBSCRIBE, SSUBSCRIBE)
pub fn subscribe(server: &Server, c: &mut ClientState, a: &[Bytes], kind: Kind) -> Flow {
    let (name, _) = names(kind);
    let mut replies = Vec::with_capacity(a.len() - 1);
    for ch in &a[1..] {
        if set_of(c, kind).insert(ch.clone()) {
            server.pubsub.subscribe(kind, ch, &c.handle);
        }
        replies.push(confirm(name, Some(ch), count(c, kind)));
    }
    update_counts(c);
    Flow::Replies(replies)
}

/// UNSUBSCRIBE [channel ...] (and PUNSUBSCRIBE, SUNSUBSCRIBE): without arguments,
/// from everything of that kind; with nothing to leave, one confirmation with a nil.
pub fn unsubscribe(server: &Server, c: &mut ClientState, a: &[Bytes], kind: Kind) -> Flow {
    let (_, name) = names(kind);
    let targets: Vec<Bytes> = if a.len() > 1 {
        a[1..].to_vec()
    } else {
        let mut all: Vec<Bytes> = set_of(c, kind).iter().cloned().collect();
        all.sort();
        all
    };
    if targets.is_empty() {
        return Flow::Replies(vec![confirm(name, None, count(c, kind))]);
    }
    let mut replies = Vec::with_capacity(targets.len());
    for ch in &targets {
        if set_of(c, kind).remove(ch) {
            server.pubsub.unsubscribe(kind, ch, c.handle.id);
        }
        replies.push(confirm(name, Some(ch), count(c, kind)));
    }
    update_counts(c);
    Flow::Replies(replies)
}

/// PUBLISH channel message (and SPUBLISH): the number of clients that received it.
pub fn publish(server: &Server, a: &[Bytes], kind: Kind) -> Reply {
    if let Some(c) = server.cluster() {
        // The message reaches subscribers on every node. The count, as in Redis
        // Cluster, is this node's receivers.
        c.publish(proto::raft_msg::Publish {
            shard_channel: matches!(kind, Kind::Shard),
            channel: a[1].clone(),
            message: a[2].clone(),
        });
    }
    Reply::Int(server.pubsub.publish(kind, &a[1], &a[2]))
}

/// PUBSUB CHANNELS|SHARDCHANNELS [pattern], NUMSUB|SHARDNUMSUB [channel ...],
/// NUMPAT, HELP. `sub` is the full subcommand name (`pubsub|numsub`).
pub fn pubsub(ps: &PubSub, sub: &str, a: &[Bytes]) -> Reply {
    match sub {
        "pubsub|channels" | "pubsub|shardchannels" => {
            if a.len() > 3 {
                return error::subcommand_syntax("pubsub", &a[1]);
            }
            let kind = if sub == "pubsub|channels" {
                Kind::Channel
            } else {
                Kind::Shard
            };
            let mut chans = ps.channels(kind, a.get(2).map(|p| &p[..]));
            chans.sort();
            Reply::Array(chans.into_iter().map(Reply::Bulk).collect())
        }
        "pubsub|numsub" | "pubsub|shardnumsub" => {
            let kind = if sub == "pubsub|numsub" {
                Kind::Channel
            } else {
                Kind::Shard
            };
            let mut out = Vec::with_capacity((a.len() - 2) * 2);
            for ch in &a[2..] {
                out.push(Reply::Bulk(ch.clone()));
                out.push(Reply::Int(ps.numsub(kind, ch) as i64));
            }
            Reply::Array(out)
        }
        "pubsub|numpat" => Reply::Int(ps.numpat() as i64),
        "pubsub|help" => error::help(
            "pubsub",
            &[
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
                "SHARDCHANNELS [<pattern>]",
                "    Return the currently active shard level channels matching a <pattern> (default: '*').",
                "SHARDNUMSUB [<shardchannel> ...]",
                "    Return the number of subscribers for the specified shard level channel(s)",
            ],
        ),
        _ => error::unknown_subcommand("pubsub", &a[1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::client::Clients;
    use tokio::sync::mpsc;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn pubsub_introspection() {
        let ps = PubSub::default();
        let clients = Clients::default();
        let addr = "127.0.0.1:1".parse().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let h = clients.register(addr, addr, tx);
        ps.subscribe(Kind::Channel, &b("news"), &h);
        ps.subscribe(Kind::Channel, &b("nets"), &h);
        ps.subscribe(Kind::Pattern, &b("n*"), &h);
        ps.subscribe(Kind::Shard, &b("s1"), &h);
        let args = |v: &[&str]| v.iter().map(|s| b(s)).collect::<Vec<_>>();
        assert_eq!(
            pubsub(&ps, "pubsub|channels", &args(&["PUBSUB", "CHANNELS"])),
            Reply::Array(vec![Reply::Bulk(b("nets")), Reply::Bulk(b("news"))])
        );
        assert_eq!(
            pubsub(
                &ps,
                "pubsub|channels",
                &args(&["PUBSUB", "CHANNELS", "*ws"])
            ),
            Reply::Array(vec![Reply::Bulk(b("news"))])
        );
        assert_eq!(
            pubsub(&ps, "pubsub|channels", &args(&["PUBSUB", "channels", "a", "b"])),
            Reply::error(
                "ERR unknown subcommand or wrong number of arguments for 'channels'. Try PUBSUB HELP."
            )
        );
        assert_eq!(
            pubsub(
                &ps,
                "pubsub|numsub",
                &args(&["PUBSUB", "NUMSUB", "news", "x"])
            ),
            Reply::Array(vec![
                Reply::Bulk(b("news")),
                Reply::Int(1),
                Reply::Bulk(b("x")),
                Reply::Int(0)
            ])
        );
        assert_eq!(
            pubsub(&ps, "pubsub|numsub", &args(&["PUBSUB", "NUMSUB"])),
            Reply::Array(vec![])
        );
        assert_eq!(
            pubsub(&ps, "pubsub|numpat", &args(&["PUBSUB", "NUMPAT"])),
            Reply::Int(1)
        );
        assert_eq!(
            pubsub(
                &ps,
                "pubsub|shardchannels",
                &args(&["PUBSUB", "SHARDCHANNELS"])
            ),
            Reply::Array(vec![Reply::Bulk(b("s1"))])
        );
        assert_eq!(
            pubsub(
                &ps,
                "pubsub|shardnumsub",
                &args(&["PUBSUB", "SHARDNUMSUB", "s1"])
            ),
            Reply::Array(vec![Reply::Bulk(b("s1")), Reply::Int(1)])
        );
        let Reply::Array(help) = pubsub(&ps, "pubsub|help", &args(&["PUBSUB", "HELP"])) else {
            panic!("help is an array");
        };
        assert_eq!(help.len(), 14);

        // A channel message reaches the channel and the matching pattern.
        assert_eq!(ps.publish(Kind::Channel, &b("news"), &b("hi")), 2);
        assert_eq!(
            rx.try_recv().unwrap(),
            Reply::Push(vec![
                Reply::bulk("message"),
                Reply::bulk("news"),
                Reply::bulk("hi")
            ])
        );
        assert_eq!(
            rx.try_recv().unwrap(),
            Reply::Push(vec![
                Reply::bulk("pmessage"),
                Reply::bulk("n*"),
                Reply::bulk("news"),
                Reply::bulk("hi")
            ])
        );
        // Shard messages do not go to patterns.
        assert_eq!(ps.publish(Kind::Shard, &b("s1"), &b("x")), 1);
        assert_eq!(
            rx.try_recv().unwrap(),
            Reply::Push(vec![
                Reply::bulk("smessage"),
                Reply::bulk("s1"),
                Reply::bulk("x")
            ])
        );
        assert_eq!(ps.publish(Kind::Channel, &b("other"), &b("x")), 0);
        ps.unsubscribe(Kind::Channel, b"news", h.id);
        assert_eq!(ps.numsub(Kind::Channel, b"news"), 0);
        assert!(ps.channels(Kind::Channel, Some(b"news")).is_empty());
    }
}
