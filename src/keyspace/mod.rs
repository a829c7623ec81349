//! The keyspace: typed values, the TTL index, LRU/LFU access metadata and sampling,
//! memory accounting and snapshot encoding. No tokio, no openraft, no files.
//!
//! Determinism: every method that changes replicated state takes its time (`now`, unix
//! ms) from the caller, which under Raft is the time the leader stamped into the log
//! entry. Access metadata (LRU clock, LFU counter) is local soft state: it is not part
//! of a snapshot and only the leader acts on it (eviction), so it may use local
//! randomness.

pub mod access;
pub mod evict;
pub mod float;
pub mod memory;
pub mod rng;
pub mod slab_map;
pub mod snapshot;
pub mod value;
pub mod zset;

use access::{AccessConfig, AccessMeta};
use slab_map::{Key, SlabMap};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
pub use value::Value;

/// One key's record.
#[derive(Debug)]
pub struct Entry {
    pub value: Value,
    /// Absolute unix-ms deadline; 0 = no TTL.
    expire_at: u64,
    /// Position in `Keyspace::volatile` while `expire_at != 0`.
    volatile_pos: u32,
    pub access: AccessMeta,
}

impl Entry {
    pub fn expire_at(&self) -> Option<u64> {
        (self.expire_at != 0).then_some(self.expire_at)
    }

    /// Redis's keyIsExpired: a key lives through its deadline millisecond and is
    /// expired after it (PTTL answers 0 at the deadline).
    fn is_expired(&self, now: u64) -> bool {
        self.expire_at != 0 && self.expire_at < now
    }
}

impl PartialEq for Entry {
    /// Replicated state only (value and TTL); access metadata is local.
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value && self.expire_at == other.expire_at
    }
}

#[derive(Default, Debug)]
pub struct Stats {
    pub expired_keys: AtomicU64,
    pub evicted_keys: AtomicU64,
    pub keyspace_hits: AtomicU64,
    pub keyspace_misses: AtomicU64,
}

impl Stats {
    pub fn reset(&self) {
        for c in [
            &self.expired_keys,
            &self.evicted_keys,
            &self.keyspace_hits,
            &self.keyspace_misses,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
pub struct Keyspace {
    pub(crate) dict: SlabMap<Entry>,
    /// Slab positions of keys that have a TTL, for active expiry and volatile-* eviction.
    volatile: Vec<u32>,
    pub stats: Stats,
    pub access_config: AccessConfig,
    /// Keys someone is waiting on (WATCH, blocked clients), with a count of waiters.
    /// Changes to these keys are recorded in `dirty` for the server to act on.
    interest: HashMap<Key, usize>,
    dirty: Vec<Key>,
}

impl Keyspace {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys, including expired ones not yet deleted (as Redis's DBSIZE).
    pub fn len(&self) -> usize {
        self.dict.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dict.is_empty()
    }

    pub fn volatile_len(&self) -> usize {
        self.volatile.len()
    }

    // ---- reads: hide expired keys, never delete ----

    /// Looks a key up for a read command: counts a hit or a miss, updates access
    /// metadata unless `no_touch`.
    pub fn read(&self, key: &[u8], now: u64) -> Option<&Entry> {
        match self.peek(key, now) {
            Some(e) => {
                self.stats.keyspace_hits.fetch_add(1, Ordering::Relaxed);
                e.access.touch(&self.access_config, now);
                Some(e)
            }
            None => {
                self.stats.keyspace_misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Looks a key up without counting or touching (TYPE-like internal checks, EXISTS).
    pub fn peek(&self, key: &[u8], now: u64) -> Option<&Entry> {
        self.dict.get(key).filter(|e| !e.is_expired(now))
    }

    /// A 64-bit digest of a key's state at `now` (type, contents in storage order,
    /// deadline; 0 for a missing or expired key). A pure function of the keyspace, so
    /// every replica computes the same one: WATCH guards an EXEC with it.
    pub fn digest(&self, key: &[u8], now: u64) -> u64 {
        struct Fnv(u64);
        impl Fnv {
            fn eat(&mut self, b: &[u8]) {
                self.eat_raw(&(b.len() as u64).to_le_bytes());
                self.eat_raw(b);
            }
            fn eat_raw(&mut self, b: &[u8]) {
                for &x in b {
                    self.0 = (self.0 ^ x as u64).wrapping_mul(0x0000_0100_0000_01b3);
                }
            }
        }
        let Some(e) = self.peek(key, now) else {
            return 0;
        };
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        h.eat_raw(&e.expire_at().unwrap_or(0).to_le_bytes());
        match &e.value {
            Value::Str(s) => {
                h.eat_raw(b"s");
                h.eat(s);
            }
            Value::List(l) => {
                h.eat_raw(b"l");
                l.iter().for_each(|x| h.eat(x));
            }
            Value::Hash(m) => {
                h.eat_raw(b"h");
                for (k, v) in m.iter() {
                    h.eat(k);
                    h.eat(v);
                }
            }
            Value::Set(m) => {
                h.eat_raw(b"S");
                m.iter().for_each(|(k, _)| h.eat(k));
            }
            Value::ZSet(z) => {
                h.eat_raw(b"z");
                for (m, score) in z.iter() {
                    h.eat(m);
                    h.eat_raw(&score.to_bits().to_le_bytes());
                }
            }
        }
        h.0.max(1)
    }

    pub fn exists(&self, key: &[u8], now: u64) -> bool {
        self.peek(key, now).is_some()
    }

    // ---- writes: deterministic in (state, now) ----

    /// Looks a key up for a write. A key whose deadline has passed at `now` is deleted
    /// here (the same on every replica, since `now` comes from the log entry).
    pub fn write(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        let pos = self.dict.find(key)?;
        if self.dict.at(pos).unwrap().1.is_expired(now) {
            self.delete_at(pos);
            self.stats.expired_keys.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let e = self.dict.at_mut(pos).unwrap().1;
        e.access.touch(&self.access_config, now);
        Some(e)
    }

    /// Stores a value, replacing any old one and clearing its TTL (Redis `setKey`).
    pub fn set(&mut self, key: &[u8], value: Value, now: u64) {
        self.set_with_expiry(key, value, None, now)
    }

    /// Stores a value with an absolute deadline (`None`: no TTL).
    pub fn set_with_expiry(&mut self, key: &[u8], value: Value, expire_at: Option<u64>, now: u64) {
        // One lookup: a key whose deadline passed counts as expired (and is counted
        // so) before the new value takes its place.
        let pos = match self.dict.find(key) {
            Some(pos) if self.dict.at(pos).unwrap().1.is_expired(now) => {
                self.delete_at(pos);
                self.stats.expired_keys.fetch_add(1, Ordering::Relaxed);
                None
            }
            found => found,
        };
        match pos {
            Some(pos) => {
                self.dict.at_mut(pos).unwrap().1.value = value;
                self.set_deadline(pos, expire_at.unwrap_or(0));
            }
            None => {
                let access = AccessMeta::new(&self.access_config, now);
                let pos = self.dict.insert_new(
                    key.into(),
                    Entry {
                        value,
                        expire_at: 0,
                        volatile_pos: 0,
                        access,
                    },
                );
                self.set_deadline(pos, expire_at.unwrap_or(0));
            }
        }
        self.modified(key);
    }

    /// Replaces the value of an existing live key, keeping its TTL (KEEPTTL, SETRANGE...).
    /// Returns false if the key does not exist.
    pub fn replace_value(&mut self, key: &[u8], value: Value, now: u64) -> bool {
        match self.write(key, now) {
            Some(e) => {
                e.value = value;
                self.modified(key);
                true
            }
            None => false,
        }
    }

    /// Removes a live key; returns its entry. Expired keys count as absent.
    pub fn remove(&mut self, key: &[u8], now: u64) -> Option<Entry> {
        self.write(key, now)?;
        let pos = self.dict.find(key)?;
        let e = self.delete_at(pos);
        Some(e)
    }

    /// Sets or clears (`0`) the deadline of a live key. Returns false if it is absent.
    pub fn set_expire(&mut self, key: &[u8], expire_at: u64, now: u64) -> bool {
        if self.write(key, now).is_none() {
            return false;
        }
        let pos = self.dict.find(key).unwrap();
        self.set_deadline(pos, expire_at);
        self.modified(key);
        true
    }

    /// Active expiry's delete: removes each key only if it is still expired at `now`.
    /// Returns how many were deleted.
    pub fn delete_expired(&mut self, keys: &[impl AsRef<[u8]>], now: u64) -> usize {
        let mut n = 0;
        for k in keys {
            if let Some(pos) = self.dict.find(k.as_ref()) {
                if self.dict.at(pos).unwrap().1.is_expired(now) {
                    self.delete_at(pos);
                    self.stats.expired_keys.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            }
        }
        n
    }

    /// Eviction's delete: removes each key that exists. Returns how many.
    pub fn delete_evicted(&mut self, keys: &[impl AsRef<[u8]>]) -> usize {
        let mut n = 0;
        for k in keys {
            if let Some(pos) = self.dict.find(k.as_ref()) {
                self.delete_at(pos);
                self.stats.evicted_keys.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }
        n
    }

    pub fn flush(&mut self) {
        let keys: Vec<Key> = if self.interest.is_empty() {
            Vec::new()
        } else {
            self.dict.keys().cloned().collect()
        };
        self.dict.clear();
        self.volatile.clear();
        for k in keys {
            self.modified(&k);
        }
    }

    fn delete_at(&mut self, pos: u32) -> Entry {
        self.set_deadline(pos, 0);
        let (key, entry) = self.dict.remove_at(pos).expect("live position");
        self.modified(&key);
        entry
    }

    fn set_deadline(&mut self, pos: u32, at: u64) {
        let e = self.dict.at_mut(pos).unwrap().1;
        let had = e.expire_at != 0;
        e.expire_at = at;
        if had && at == 0 {
            let vp = e.volatile_pos as usize;
            self.volatile.swap_remove(vp);
            if let Some(&moved) = self.volatile.get(vp) {
                self.dict.at_mut(moved).unwrap().1.volatile_pos = vp as u32;
            }
        } else if !had && at != 0 {
            e.volatile_pos = self.volatile.len() as u32;
            self.volatile.push(pos);
        }
    }

    /// Rebuilds the TTL index from the entries' deadlines (after a snapshot load).
    fn rebuild_volatile(&mut self) {
        self.volatile.clear();
        let positions: Vec<u32> = (0..self.dict.capacity_slots() as u32)
            .filter(|&p| self.dict.at(p).is_some_and(|(_, e)| e.expire_at != 0))
            .collect();
        for p in positions {
            let vp = self.volatile.len() as u32;
            self.dict.at_mut(p).unwrap().1.volatile_pos = vp;
            self.volatile.push(p);
        }
    }

    // ---- change notification for WATCH and blocked clients ----

    /// Records that `key` changed, if anyone is interested in it. Commands that
    /// mutate a value in place through [`Keyspace::write`] call this.
    pub fn modified(&mut self, key: &[u8]) {
        if !self.interest.is_empty() && self.interest.contains_key(key) {
            self.dirty.push(key.into());
        }
    }

    pub fn add_interest(&mut self, key: &[u8]) {
        *self.interest.entry(key.into()).or_insert(0) += 1;
    }

    pub fn remove_interest(&mut self, key: &[u8]) {
        if let Some(n) = self.interest.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.interest.remove(key);
            }
        }
    }

    /// Keys changed since the last call (each possibly more than once).
    /// Replaces this keyspace's data with `other`'s (a snapshot install), keeping the
    /// local interest registrations and reporting every interesting key as changed.
    pub fn replace_with(&mut self, mut other: Keyspace) {
        other.interest = std::mem::take(&mut self.interest);
        other.dirty = other.interest.keys().cloned().collect();
        *self = other;
    }

    pub fn take_dirty(&mut self) -> Vec<Key> {
        std::mem::take(&mut self.dirty)
    }

    // ---- iteration and sampling ----

    /// One SCAN step over all keys, live or not yet deleted; callers filter expired.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&Key, &Entry)) -> u64 {
        self.dict.scan(cursor, count, |k, e| f(k, e))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Entry)> {
        self.dict.iter()
    }

    /// A random key (not filtered for expiry), from a random number source.
    pub fn random_entry(&self, next: impl FnMut() -> u64) -> Option<(&Key, &Entry)> {
        self.dict.random_pos(next).and_then(|p| self.dict.at(p))
    }

    /// A random key that has a TTL.
    pub fn random_volatile(&self, mut next: impl FnMut() -> u64) -> Option<(&Key, &Entry)> {
        if self.volatile.is_empty() {
            return None;
        }
        let pos = self.volatile[(next() % self.volatile.len() as u64) as usize];
        self.dict.at(pos)
    }

    /// Replicated-state equality: same keys, values, TTLs and slab layout.
    pub fn same_state(&self, other: &Keyspace) -> bool {
        self.dict == other.dict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.as_bytes().to_vec())
    }

    #[test]
    fn expired_keys_are_hidden_on_read_and_deleted_on_write() {
        let mut ks = Keyspace::new();
        ks.set_with_expiry(b"k", s("v"), Some(1000), 0);
        assert!(
            ks.read(b"k", 1000).is_some(),
            "alive through its deadline, as Redis"
        );
        assert!(ks.read(b"k", 1001).is_none());
        assert_eq!(ks.len(), 1, "reads never delete");
        assert_eq!(ks.volatile_len(), 1);
        assert!(ks.write(b"k", 1001).is_none());
        assert_eq!(ks.len(), 0);
        assert_eq!(ks.volatile_len(), 0);
        assert_eq!(ks.stats.expired_keys.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn ttl_index_tracks_set_persist_and_delete() {
        let mut ks = Keyspace::new();
        for i in 0..10 {
            ks.set_with_expiry(format!("k{i}").as_bytes(), s("v"), Some(100 + i), 0);
        }
        assert_eq!(ks.volatile_len(), 10);
        ks.set(b"k3", s("x"), 0); // plain SET clears the TTL
        assert!(ks.set_expire(b"k4", 0, 0));
        ks.remove(b"k5", 0);
        assert_eq!(ks.volatile_len(), 7);
        for (pos, &slot) in ks.volatile.iter().enumerate() {
            let e = ks.dict.at(slot).unwrap().1;
            assert_eq!(e.volatile_pos as usize, pos);
            assert!(e.expire_at != 0);
        }
        assert_eq!(ks.delete_expired(&[b"k0", b"k9", b"k3"], 105), 1);
        assert_eq!(ks.volatile_len(), 6);
    }

    #[test]
    fn interest_records_changes() {
        let mut ks = Keyspace::new();
        ks.set(b"a", s("1"), 0);
        assert!(ks.take_dirty().is_empty());
        ks.add_interest(b"a");
        ks.set(b"a", s("2"), 0);
        ks.set(b"b", s("2"), 0);
        assert_eq!(ks.take_dirty(), vec![Key::from(&b"a"[..])]);
        ks.remove_interest(b"a");
        ks.remove(b"a", 0);
        assert!(ks.take_dirty().is_empty());
    }
}
