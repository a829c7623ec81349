//! Pub/sub: channel, pattern and shard-channel subscriptions, and message delivery.
//!
//! Messages go to each subscriber's push queue; a subscriber whose queue is full
//! (it does not read) is disconnected, like Redis's pubsub output buffer limit.

use super::client::ClientHandle;
use crate::cmd::args::glob_match;
use crate::resp::Reply;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Channel,
    Pattern,
    Shard,
}

type Subscribers = HashMap<Bytes, HashMap<u64, Arc<ClientHandle>>>;

#[derive(Default)]
pub struct PubSub {
    inner: Mutex<[Subscribers; 3]>,
}

fn idx(k: Kind) -> usize {
    match k {
        Kind::Channel => 0,
        Kind::Pattern => 1,
        Kind::Shard => 2,
    }
}

impl PubSub {
    pub fn subscribe(&self, kind: Kind, name: &Bytes, client: &Arc<ClientHandle>) {
        self.inner.lock().unwrap()[idx(kind)]
            .entry(name.clone())
            .or_default()
            .insert(client.id, client.clone());
    }

    pub fn unsubscribe(&self, kind: Kind, name: &[u8], client: u64) {
        let mut g = self.inner.lock().unwrap();
        let map = &mut g[idx(kind)];
        if let Some(subs) = map.get_mut(name) {
            subs.remove(&client);
            if subs.is_empty() {
                map.remove(name);
            }
        }
    }

    /// Delivers a message; returns how many clients received it.
    pub fn publish(&self, kind: Kind, channel: &Bytes, message: &Bytes) -> i64 {
        let g = self.inner.lock().unwrap();
        let mut n = 0;
        let (kind_name, map) = match kind {
            Kind::Shard => ("smessage", &g[2]),
            _ => ("message", &g[0]),
        };
        if let Some(subs) = map.get(channel) {
            for c in subs.values() {
                let msg = Reply::Push(vec![
                    Reply::bulk_static(kind_name.as_bytes()),
                    Reply::Bulk(channel.clone()),
                    Reply::Bulk(message.clone()),
                ]);
                deliver(c, msg);
                n += 1;
            }
        }
        if kind == Kind::Channel {
            for (pattern, subs) in &g[1] {
                if glob_match(pattern, channel, false) {
                    for c in subs.values() {
                        let msg = Reply::Push(vec![
                            Reply::bulk_static(b"pmessage"),
                            Reply::Bulk(pattern.clone()),
                            Reply::Bulk(channel.clone()),
                            Reply::Bulk(message.clone()),
                        ]);
                        deliver(c, msg);
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// Active channels (with at least one subscriber) matching an optional pattern.
    pub fn channels(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let g = self.inner.lock().unwrap();
        g[idx(kind)]
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c, false)))
            .cloned()
            .collect()
    }

    pub fn numsub(&self, kind: Kind, channel: &[u8]) -> usize {
        self.inner.lock().unwrap()[idx(kind)]
            .get(channel)
            .map_or(0, |s| s.len())
    }

    /// PUBSUB NUMPAT: number of distinct patterns subscribed.
    pub fn numpat(&self) -> usize {
        self.inner.lock().unwrap()[1].len()
    }
}

fn deliver(c: &Arc<ClientHandle>, msg: Reply) {
    if c.push.try_send(msg).is_err() {
        tracing::warn!(client = c.id, "pub/sub output buffer full, closing client");
        c.kill();
    }
}
