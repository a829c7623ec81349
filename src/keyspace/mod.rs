//! The keyspace: typed values, the TTL index, LRU/LFU access metadata and sampling,
//! memory accounting and snapshot encoding. No tokio, no openraft, no files.
//!
//! Determinism: every method that changes replicated state takes its time (`now`, unix
//! ms) from the caller, which under Raft is the time the leader stamped into the log
//! entry. Access metadata (LRU clock, LFU counter) is local soft state: it is not part
//! of a snapshot and only the leader acts on it (eviction), so it may use local
//! randomness.
//!
//! Per-slot key index: every key is on an intrusive doubly linked list of its cluster
//! slot (`proto::key_slot`), threaded through the slab positions (`slot_prev`/
//! `slot_next` beside each entry) with a head and a count per slot, so COUNTKEYSINSLOT
//! is O(1), GETKEYSINSLOT and slot migration walk only that slot's keys, and keeping it
//! costs O(1) per insert and delete with no key copies. The index is derived state: it
//! lists every key the dict holds (expired ones too until they are deleted, as Redis's
//! per-slot dicts do), and the order of a slot's list is local (a restored replica
//! rebuilds it in slab order), not part of the replicated state.

pub mod access;
pub mod evict;
pub mod float;
pub mod memory;
pub mod migrate;
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
    /// Neighbours on the key's slot list (slab positions; `NIL` at the ends).
    slot_prev: u32,
    slot_next: u32,
}

/// No position: the end of a slot list, or an empty slot.
const NIL: u32 = u32::MAX;

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

/// Heads and counts of the per-slot key lists. Allocated with the first key (two
/// arrays of 16384 u32, 128 KiB) and dropped when the keyspace empties, so an empty
/// keyspace costs nothing.
#[derive(Default, Debug)]
struct SlotIndex {
    head: Box<[u32]>,
    count: Box<[u32]>,
}

impl SlotIndex {
    fn ensure(&mut self) {
        if self.head.is_empty() {
            self.head = vec![NIL; proto::SLOTS as usize].into_boxed_slice();
            self.count = vec![0; proto::SLOTS as usize].into_boxed_slice();
        }
    }

    fn head(&self, slot: u16) -> u32 {
        self.head.get(slot as usize).copied().unwrap_or(NIL)
    }

    fn count(&self, slot: u16) -> usize {
        self.count.get(slot as usize).copied().unwrap_or(0) as usize
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
    slots: SlotIndex,
    /// A migration's record of changed keys in the range it copies (local soft
    /// state of the replica driving it).
    track: Option<migrate::Tracker>,
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
        if let Some(t) = &mut self.track {
            t.mark(key);
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
                        slot_prev: NIL,
                        slot_next: NIL,
                    },
                );
                self.link_slot(pos, proto::key_slot(key));
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
        let keys: Vec<Key> = if self.interest.is_empty() && self.track.is_none() {
            Vec::new()
        } else {
            self.dict.keys().cloned().collect()
        };
        self.dict.clear();
        self.volatile.clear();
        self.slots = SlotIndex::default();
        for k in keys {
            self.modified(&k);
        }
    }

    fn delete_at(&mut self, pos: u32) -> Entry {
        self.set_deadline(pos, 0);
        self.unlink_slot(pos);
        let (key, entry) = self.dict.remove_at(pos).expect("live position");
        if self.dict.is_empty() {
            self.slots = SlotIndex::default();
        }
        self.modified(&key);
        entry
    }

    fn entry_at(&mut self, pos: u32) -> &mut Entry {
        self.dict.at_mut(pos).expect("live position").1
    }

    /// Puts the entry at `pos` at the head of `slot`'s list.
    fn link_slot(&mut self, pos: u32, slot: u16) {
        self.slots.ensure();
        let old = self.slots.head[slot as usize];
        let e = self.entry_at(pos);
        e.slot_prev = NIL;
        e.slot_next = old;
        if old != NIL {
            self.entry_at(old).slot_prev = pos;
        }
        self.slots.head[slot as usize] = pos;
        self.slots.count[slot as usize] += 1;
    }

    /// Takes the entry at `pos` off its slot's list.
    fn unlink_slot(&mut self, pos: u32) {
        let (key, e) = self.dict.at(pos).expect("live position");
        let (prev, next) = (e.slot_prev, e.slot_next);
        let slot = proto::key_slot(key) as usize;
        if prev == NIL {
            self.slots.head[slot] = next;
        } else {
            self.entry_at(prev).slot_next = next;
        }
        if next != NIL {
            self.entry_at(next).slot_prev = prev;
        }
        self.slots.count[slot] -= 1;
    }

    /// Rebuilds the per-slot lists from the dict (after a snapshot load), in slab order.
    fn rebuild_slot_index(&mut self) {
        self.slots = SlotIndex::default();
        // Walk positions downwards so that head insertion leaves each list in slab order.
        for p in (0..self.dict.capacity_slots() as u32).rev() {
            if let Some((k, _)) = self.dict.at(p) {
                let slot = proto::key_slot(k);
                self.link_slot(p, slot);
            }
        }
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
        if let Some(t) = &mut self.track {
            t.mark(key);
        }
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
        other.track = self.track.take().map(|mut t| {
            t.broken = true;
            t
        });
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

    /// Number of keys in a cluster slot, expired ones not yet deleted included
    /// (Redis's COUNTKEYSINSLOT).
    pub fn count_in_slot(&self, slot: u16) -> usize {
        self.slots.count(slot)
    }

    /// Up to `count` keys of a slot (GETKEYSINSLOT), in the slot list's order.
    pub fn keys_in_slot(&self, slot: u16, count: usize) -> Vec<Key> {
        self.iter_slot(slot)
            .take(count)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The keys of one slot with their entries, not filtered for expiry; O(keys in the
    /// slot). For slot migration.
    pub fn iter_slot(&self, slot: u16) -> SlotKeys<'_> {
        SlotKeys {
            dict: &self.dict,
            pos: self.slots.head(slot),
        }
    }

    /// Resumes a walk of `key`'s slot just after `key` (a migration copying in chunks
    /// between which writes are applied). `None` if `key` no longer exists: the walk
    /// must restart from [`Keyspace::iter_slot`]. New keys join the head of a list, so
    /// a resumed walk sees every key that lived through the whole walk.
    pub fn iter_slot_after(&self, key: &[u8]) -> Option<SlotKeys<'_>> {
        let pos = self.dict.find(key)?;
        Some(SlotKeys {
            dict: &self.dict,
            pos: self.dict.at(pos)?.1.slot_next,
        })
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

/// A walk over one slot's keys: [`Keyspace::iter_slot`].
pub struct SlotKeys<'a> {
    dict: &'a SlabMap<Entry>,
    pos: u32,
}

impl<'a> Iterator for SlotKeys<'a> {
    type Item = (&'a Key, &'a Entry);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos == NIL {
            return None;
        }
        let (k, e) = self
            .dict
            .at(self.pos)
            .expect("slot list names a live position");
        self.pos = e.slot_next;
        Some((k, e))
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

#[cfg(test)]
mod slot_index_tests {
    use super::*;
    use crate::cmd::testing::run;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    type Model = BTreeMap<u16, BTreeSet<Vec<u8>>>;

    /// Keys spread over a handful of slots (hash tags) so lists get long and churn.
    fn key(tag: u8, n: u8) -> Vec<u8> {
        format!("{{t{tag}}}k{n}").into_bytes()
    }

    fn model_of(ks: &Keyspace) -> Model {
        let mut m = Model::new();
        for (k, _) in ks.iter() {
            m.entry(proto::key_slot(k)).or_default().insert(k.to_vec());
        }
        m
    }

    /// The index agrees with the dict: per-slot counts, list contents, back links.
    fn check(ks: &Keyspace, model: &Model) {
        check_slots(ks, model, 0..proto::SLOTS);
    }

    fn check_slots(ks: &Keyspace, model: &Model, slots: impl IntoIterator<Item = u16>) {
        let total: usize = model.values().map(|s| s.len()).sum();
        assert_eq!(ks.len(), total);
        let mut counted = 0;
        for slot in slots {
            let n = ks.count_in_slot(slot);
            counted += n;
            let want = model.get(&slot);
            assert_eq!(n, want.map_or(0, |s| s.len()), "count of slot {slot}");
            if n == 0 {
                assert_eq!(ks.iter_slot(slot).count(), 0);
                continue;
            }
            let listed: Vec<Vec<u8>> = ks.iter_slot(slot).map(|(k, _)| k.to_vec()).collect();
            assert_eq!(listed.len(), n, "slot {slot} list length");
            let listed: BTreeSet<Vec<u8>> = listed.into_iter().collect();
            assert_eq!(Some(&listed), want, "keys of slot {slot}");
            let mut prev = NIL;
            let mut pos = ks.slots.head(slot);
            while pos != NIL {
                let e = ks.dict.at(pos).unwrap().1;
                assert_eq!(e.slot_prev, prev, "back link at position {pos}");
                prev = pos;
                pos = e.slot_next;
            }
        }
        assert_eq!(counted, total, "every key is in a slot checked");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(u8, u8),
        SetEx(u8, u8, u64),
        Del(u8, u8),
        Rename(u8, u8, u8, u8),
        ExpireCycle(u64),
        Evict(u8, u8),
        Flush,
        Snapshot,
    }

    fn op() -> impl Strategy<Value = Op> {
        let k = (0u8..6, 0u8..12);
        prop_oneof![
            6 => k.clone().prop_map(|(t, n)| Op::Set(t, n)),
            2 => (k.clone(), 1u64..50).prop_map(|((t, n), at)| Op::SetEx(t, n, at)),
            4 => k.clone().prop_map(|(t, n)| Op::Del(t, n)),
            2 => (k.clone(), k.clone()).prop_map(|((a, b), (c, d))| Op::Rename(a, b, c, d)),
            1 => (1u64..60).prop_map(Op::ExpireCycle),
            1 => k.prop_map(|(t, n)| Op::Evict(t, n)),
            1 => Just(Op::Flush),
            1 => Just(Op::Snapshot),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Random sets, deletes, renames, expiries, evictions, flushes and snapshot
        /// restores against a model of slot -> keys.
        #[test]
        fn slot_index_matches_a_model(ops in proptest::collection::vec(op(), 1..200)) {
            let mut ks = Keyspace::new();
            let mut model = Model::new();
            let live = |ks: &Keyspace, k: &[u8]| ks.dict.contains(k);
            for op in ops {
                match op {
                    Op::Set(t, n) => {
                        let k = key(t, n);
                        ks.set(&k, Value::Str(b"v".to_vec()), 0);
                        model.entry(proto::key_slot(&k)).or_default().insert(k);
                    }
                    Op::SetEx(t, n, at) => {
                        let k = key(t, n);
                        ks.set_with_expiry(&k, Value::Str(b"v".to_vec()), Some(at), 0);
                        model.entry(proto::key_slot(&k)).or_default().insert(k);
                    }
                    Op::Del(t, n) => {
                        let k = key(t, n);
                        ks.remove(&k, 0);
                        if let Some(s) = model.get_mut(&proto::key_slot(&k)) {
                            s.remove(&k);
                        }
                    }
                    Op::Rename(a, b, c, d) => {
                        let (src, dst) = (key(a, b), key(c, d));
                        let (src, dst) = (String::from_utf8(src).unwrap(), String::from_utf8(dst).unwrap());
                        if live(&ks, src.as_bytes()) {
                            run(&mut ks, 0, &["RENAME", &src, &dst]);
                            model.entry(proto::key_slot(src.as_bytes())).or_default().remove(src.as_bytes());
                            model.entry(proto::key_slot(dst.as_bytes())).or_default().insert(dst.into_bytes());
                        }
                    }
                    Op::ExpireCycle(now) => {
                        let all: Vec<Key> = ks.iter().map(|(k, _)| k.clone()).collect();
                        ks.delete_expired(&all, now);
                        model = model_of(&ks);
                    }
                    Op::Evict(t, n) => {
                        let k = key(t, n);
                        ks.delete_evicted(&[&k]);
                        if let Some(s) = model.get_mut(&proto::key_slot(&k)) {
                            s.remove(&k);
                        }
                    }
                    Op::Flush => {
                        ks.flush();
                        model.clear();
                    }
                    Op::Snapshot => {
                        let mut buf = Vec::new();
                        snapshot::write(&ks, &mut buf).unwrap();
                        ks.replace_with(snapshot::read(&buf[..]).unwrap());
                    }
                }
                model.retain(|_, s| !s.is_empty());
                let tags: BTreeSet<u16> = (0..6).map(|t| proto::key_slot(&key(t, 0))).collect();
                check_slots(&ks, &model, tags);
            }
            check(&ks, &model);
        }
    }

    #[test]
    fn count_and_list_keys_of_a_slot() {
        let mut ks = Keyspace::new();
        assert_eq!(ks.count_in_slot(0), 0);
        assert!(ks.keys_in_slot(0, 10).is_empty());
        for i in 0..5 {
            ks.set(format!("{{user1}}:{i}").as_bytes(), Value::Str(vec![]), 0);
        }
        ks.set(b"other", Value::Str(vec![]), 0);
        let slot = proto::key_slot(b"user1");
        assert_eq!(ks.count_in_slot(slot), 5);
        assert_eq!(ks.keys_in_slot(slot, 3).len(), 3);
        assert_eq!(ks.keys_in_slot(slot, 100).len(), 5);
        // Expired keys are listed until deleted, as in Redis.
        ks.set_with_expiry(b"{user1}:x", Value::Str(vec![]), Some(10), 0);
        assert_eq!(ks.count_in_slot(slot), 6);
        assert_eq!(ks.delete_expired(&[b"{user1}:x"], 11), 1);
        assert_eq!(ks.count_in_slot(slot), 5);
        ks.flush();
        assert_eq!(ks.count_in_slot(slot), 0);
        assert!(
            ks.slots.head.is_empty(),
            "an empty keyspace frees the index"
        );
    }

    #[test]
    fn a_walk_resumes_after_a_key_despite_writes() {
        let mut ks = Keyspace::new();
        for i in 0..100 {
            ks.set(format!("{{m}}{i}").as_bytes(), Value::Str(vec![]), 0);
        }
        let slot = proto::key_slot(b"m");
        let mut seen = BTreeSet::new();
        let mut last: Option<Key> = None;
        let mut round = 0;
        loop {
            let chunk: Vec<Key> = match &last {
                None => ks.keys_in_slot(slot, 7),
                Some(k) => ks
                    .iter_slot_after(k)
                    .expect("the cursor key lives")
                    .take(7)
                    .map(|(k, _)| k.clone())
                    .collect(),
            };
            if chunk.is_empty() {
                break;
            }
            seen.extend(chunk.iter().cloned());
            last = chunk.last().cloned();
            // Writes between chunks: new keys and deletes of keys already copied.
            ks.set(format!("{{m}}new{round}").as_bytes(), Value::Str(vec![]), 0);
            ks.remove(&chunk[0], 0);
            round += 1;
        }
        for i in 0..100 {
            assert!(
                seen.contains(format!("{{m}}{i}").as_bytes()),
                "missed {{m}}{i}"
            );
        }
        ks.remove(b"{m}5", 0);
        assert!(
            ks.iter_slot_after(b"{m}5").is_none(),
            "a deleted cursor key"
        );
    }

    #[test]
    fn snapshot_round_trip_keeps_slot_counts() {
        let mut ks = Keyspace::new();
        for i in 0..2000 {
            ks.set(format!("key:{i}").as_bytes(), Value::Str(vec![]), 0);
        }
        for i in (0..2000).step_by(3) {
            ks.remove(format!("key:{i}").as_bytes(), 0);
        }
        let mut buf = Vec::new();
        snapshot::write(&ks, &mut buf).unwrap();
        let back = snapshot::read(&buf[..]).unwrap();
        check(&back, &model_of(&ks));
        for slot in 0..proto::SLOTS {
            assert_eq!(back.count_in_slot(slot), ks.count_in_slot(slot));
        }
    }

    #[test]
    fn the_index_adds_eight_bytes_per_entry() {
        // Two u32 links beside each entry; the heads and counts are per slot, not per key.
        assert!(
            std::mem::size_of::<Entry>() <= 48,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }
}
