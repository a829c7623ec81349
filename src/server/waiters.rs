//! Clients waiting on keys: WATCH (a change to the key breaks the transaction) and
//! blocked list/zset pops (served first-blocked-first-served when a key changes).
//!
//! Lock order: the shard's lock, then this registry's. Both are held while a write is
//! applied and its changed keys are processed, so a wake-up is atomic with the write
//! that caused it, as in Redis's handleClientsBlockedOnKeys.

use crate::keyspace::Keyspace;
use crate::resp::Reply;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

pub struct Blocked {
    /// The command to retry when a key changes (its apply never blocks).
    pub argv: Vec<Bytes>,
    pub keys: Vec<Bytes>,
    /// Some(reply): served by a write (single node). None: a key changed, retry the
    /// pop through the log (replicated shard).
    pub reply: oneshot::Sender<Option<Reply>>,
}

#[derive(Default)]
pub struct Waiters {
    watch: HashMap<Bytes, Vec<(u64, Arc<AtomicBool>)>>,
    blocked_on: HashMap<Bytes, VecDeque<u64>>,
    blocked: HashMap<u64, Blocked>,
    next_ticket: u64,
}

impl Waiters {
    pub fn watch(&mut self, ks: &mut Keyspace, client: u64, key: &Bytes, dirty: &Arc<AtomicBool>) {
        ks.add_interest(key);
        self.watch
            .entry(key.clone())
            .or_default()
            .push((client, dirty.clone()));
    }

    pub fn unwatch(&mut self, ks: &mut Keyspace, client: u64, key: &Bytes) {
        if let Some(list) = self.watch.get_mut(key) {
            if let Some(i) = list.iter().position(|(c, _)| *c == client) {
                list.swap_remove(i);
                ks.remove_interest(key);
            }
            if list.is_empty() {
                self.watch.remove(key);
            }
        }
    }

    /// Registers a blocked command; returns its ticket for cancellation.
    pub fn block(&mut self, ks: &mut Keyspace, b: Blocked) -> u64 {
        self.next_ticket += 1;
        let t = self.next_ticket;
        for k in &b.keys {
            ks.add_interest(k);
            self.blocked_on.entry(k.clone()).or_default().push_back(t);
        }
        self.blocked.insert(t, b);
        t
    }

    /// Removes a blocked command (timeout, client gone). None if it was already served.
    pub fn unblock(&mut self, ks: &mut Keyspace, ticket: u64) -> Option<Blocked> {
        let b = self.blocked.remove(&ticket)?;
        for k in &b.keys {
            ks.remove_interest(k);
            if let Some(q) = self.blocked_on.get_mut(k) {
                q.retain(|&t| t != ticket);
                if q.is_empty() {
                    self.blocked_on.remove(k);
                }
            }
        }
        Some(b)
    }

    pub fn blocked_count(&self) -> usize {
        self.blocked.len()
    }

    pub fn watching_keys(&self) -> usize {
        self.watch.len()
    }

    /// Marks the watchers of a changed key. Returns the blocked tickets on that key in
    /// the order they blocked.
    pub fn changed(&mut self, key: &[u8]) -> Vec<u64> {
        if let Some(list) = self.watch.get(key) {
            for (_, dirty) in list {
                dirty.store(true, Ordering::SeqCst);
            }
        }
        self.blocked_on
            .get(key)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn argv_of(&self, ticket: u64) -> Option<Vec<Bytes>> {
        self.blocked.get(&ticket).map(|b| b.argv.clone())
    }
}
