//! The keyspace's side of a slot migration (DESIGN.md, online resharding): reading a
//! slot range out in chunks (big collections in pieces), tracking which of its keys
//! change meanwhile, writing chunks in on the target, and dropping a range.
//!
//! Tracking is local soft state of the replica that drives the copy, never part of the
//! replicated state: it only decides what the driver sends again.

use super::slab_map::{Key, SlabMap};
use super::value::Value;
use super::zset::ZSet;
use super::Keyspace;
use bytes::Bytes;
use proto::{Item, Piece};
use std::collections::{HashSet, VecDeque};

/// Keys of a slot range changed since the tracking started or was last taken.
#[derive(Debug)]
pub(super) struct Tracker {
    start: u16,
    end: u16,
    dirty: HashSet<Key>,
    /// The keyspace was replaced wholesale (a snapshot install): what changed is
    /// unknown, and the copy must start over.
    pub(super) broken: bool,
}

impl Tracker {
    pub(super) fn mark(&mut self, key: &[u8]) {
        let slot = proto::key_slot(key);
        if self.start <= slot && slot <= self.end && !self.dirty.contains(key) {
            self.dirty.insert(key.into());
        }
    }
}

/// Where an export stands: the slot being walked, the last key sent whole, and a big
/// value being sent in pieces (its key and the next element position).
#[derive(Clone, Debug, Default)]
pub struct ExportCursor {
    slot: u16,
    after: Option<Key>,
    piece: Option<(Key, usize)>,
    pub done: bool,
}

impl ExportCursor {
    pub fn new(start: u16) -> ExportCursor {
        ExportCursor {
            slot: start,
            ..Default::default()
        }
    }
}

/// The size of a chunk item, roughly as encoded.
fn piece_size(p: &Piece) -> usize {
    match p {
        Piece::Str(s) => s.len(),
        Piece::List(v) | Piece::Set(v) => v.iter().map(|e| e.len() + 2).sum(),
        Piece::Hash(v) => v.iter().map(|(f, x)| f.len() + x.len() + 4).sum(),
        Piece::ZSet(v) => v.iter().map(|(m, _)| m.len() + 10).sum(),
    }
}

pub fn item_size(i: &Item) -> usize {
    match i {
        Item::Del(k) => k.len() + 2,
        Item::Put { key, value, .. } => key.len() + 12 + piece_size(value),
    }
}

fn b(x: &[u8]) -> Bytes {
    Bytes::copy_from_slice(x)
}

/// Elements of a slab map from position `from`, up to `budget` bytes (at least one
/// element); the next position, or `None` at the end.
fn slab_piece<V, T>(
    m: &SlabMap<V>,
    from: usize,
    budget: usize,
    mut f: impl FnMut(&Key, &V) -> (T, usize),
) -> (Vec<T>, Option<usize>) {
    let (slots, _) = m.layout();
    let mut out = Vec::new();
    let mut used = 0;
    let mut pos = from;
    while pos < slots.len() {
        if let Some((k, v)) = &slots[pos] {
            if used >= budget && !out.is_empty() {
                return (out, Some(pos));
            }
            let (t, n) = f(k, v);
            used += n;
            out.push(t);
        }
        pos += 1;
    }
    (out, None)
}

/// One piece of `value` from element position `from`: the piece and where the next
/// starts (`None`: this was the last).
fn value_piece(value: &Value, from: usize, budget: usize) -> (Piece, Option<usize>) {
    match value {
        Value::Str(s) => (Piece::Str(b(s)), None),
        Value::List(l) => {
            let mut out = Vec::new();
            let mut used = 0;
            let mut i = from;
            while i < l.len() {
                if used >= budget && !out.is_empty() {
                    return (Piece::List(out), Some(i));
                }
                used += l[i].len() + 2;
                out.push(b(&l[i]));
                i += 1;
            }
            (Piece::List(out), None)
        }
        Value::Hash(h) => {
            let (v, next) = slab_piece(h, from, budget, |k, x| {
                ((b(k), b(x)), k.len() + x.len() + 4)
            });
            (Piece::Hash(v), next)
        }
        Value::Set(s) => {
            let (v, next) = slab_piece(s, from, budget, |k, _| (b(k), k.len() + 2));
            (Piece::Set(v), next)
        }
        Value::ZSet(z) => {
            let (v, next) = slab_piece(z.members(), from, budget, |k, s| {
                ((b(k), s.to_bits()), k.len() + 10)
            });
            (Piece::ZSet(v), next)
        }
    }
}

/// Pieces under this many bytes; a value bigger than this moves in several entries.
pub const PIECE_BYTES: usize = 256 * 1024;

impl Keyspace {
    /// Starts recording which keys of `start..=end` change (replacing any earlier
    /// tracking).
    pub fn track_slots(&mut self, start: u16, end: u16) {
        self.track = Some(Tracker {
            start,
            end,
            dirty: HashSet::new(),
            broken: false,
        });
    }

    pub fn stop_tracking(&mut self) {
        self.track = None;
    }

    /// The keys changed since the last call; `None` if tracking is off or broke (the
    /// keyspace was replaced), so what changed is unknown.
    pub fn take_changed(&mut self) -> Option<Vec<Key>> {
        let t = self.track.as_mut()?;
        if t.broken {
            return None;
        }
        Some(t.dirty.drain().collect())
    }

    /// Whether tracking is on and intact.
    pub fn tracking(&self) -> bool {
        self.track.as_ref().is_some_and(|t| !t.broken)
    }

    /// The next chunk of an export of slots up to `end`: whole keys and pieces of big
    /// values, about `budget` bytes. Keys expired at `now` are skipped (the target
    /// never had them). Sets `cur.done` after the last.
    pub fn export_chunk(
        &self,
        cur: &mut ExportCursor,
        end: u16,
        budget: usize,
        now: u64,
    ) -> Vec<Item> {
        let mut out: Vec<Item> = Vec::new();
        let mut used = 0;
        while !cur.done && used < budget {
            // A big value in the middle of being sent.
            if let Some((key, from)) = cur.piece.take() {
                match self.dict.get(&key) {
                    Some(e) if !e.is_expired(now) => {
                        let (value, next) = value_piece(&e.value, from, PIECE_BYTES);
                        let item = Item::Put {
                            key: b(&key),
                            expire_at: e.expire_at,
                            first: false,
                            value,
                        };
                        used += item_size(&item);
                        out.push(item);
                        if let Some(n) = next {
                            cur.piece = Some((key.clone(), n));
                        }
                    }
                    // Gone or expired meanwhile: tracking resends its state.
                    _ => {}
                }
                cur.after = Some(key);
                continue;
            }
            let walk = match &cur.after {
                None => Some(self.iter_slot(cur.slot)),
                Some(k) => self.iter_slot_after(k),
            };
            // The last key sent was deleted meanwhile: walk the slot again (sending
            // again is harmless, a put replaces).
            let walk = walk.unwrap_or_else(|| self.iter_slot(cur.slot));
            let mut progressed = false;
            for (key, e) in walk {
                progressed = true;
                cur.after = Some(key.clone());
                if e.is_expired(now) {
                    continue;
                }
                let (value, next) = value_piece(&e.value, 0, PIECE_BYTES);
                let item = Item::Put {
                    key: b(key),
                    expire_at: e.expire_at,
                    first: true,
                    value,
                };
                used += item_size(&item);
                out.push(item);
                if let Some(n) = next {
                    cur.piece = Some((key.clone(), n));
                    break;
                }
                if used >= budget {
                    break;
                }
            }
            if cur.piece.is_some() || (progressed && used >= budget) {
                continue;
            }
            // The slot is done.
            if cur.slot >= end {
                cur.done = true;
            } else {
                cur.slot += 1;
                cur.after = None;
            }
        }
        out
    }

    /// The current state of `key` as chunk items: a delete, or its value in pieces.
    pub fn export_key(&self, key: &[u8], now: u64) -> Vec<Item> {
        let Some(e) = self.dict.get(key).filter(|e| !e.is_expired(now)) else {
            return vec![Item::Del(b(key))];
        };
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let (value, next) = value_piece(&e.value, from, PIECE_BYTES);
            out.push(Item::Put {
                key: b(key),
                expire_at: e.expire_at,
                first: from == 0,
                value,
            });
            match next {
                Some(n) => from = n,
                None => return out,
            }
        }
    }

    /// Writes chunk items in (the target's apply).
    pub fn import(&mut self, items: &[Item], now: u64) {
        for item in items {
            match item {
                Item::Del(k) => {
                    if let Some(pos) = self.dict.find(k) {
                        self.delete_at(pos);
                    }
                }
                Item::Put {
                    key,
                    expire_at,
                    first: true,
                    value,
                } => {
                    let v = new_value(value);
                    let at = (*expire_at != 0).then_some(*expire_at);
                    // Drop first: a put replaces the value whatever its type.
                    if let Some(pos) = self.dict.find(key) {
                        self.delete_at(pos);
                    }
                    self.set_with_expiry(key, v, at, now);
                }
                Item::Put {
                    key,
                    first: false,
                    value,
                    ..
                } => {
                    if let Some(pos) = self.dict.find(key) {
                        let e = self.entry_at(pos);
                        extend_value(&mut e.value, value);
                        self.modified(key);
                    }
                }
            }
        }
    }

    /// Deletes up to `max` keys of slots `start..=end`; returns how many it deleted.
    pub fn drop_slots(&mut self, start: u16, end: u16, max: usize) -> usize {
        let mut n = 0;
        for slot in start..=end {
            while n < max {
                let Some((k, _)) = self.iter_slot(slot).next() else {
                    break;
                };
                let k = k.clone();
                let pos = self.dict.find(&k).expect("indexed key exists");
                self.delete_at(pos);
                n += 1;
            }
            if n >= max {
                break;
            }
        }
        n
    }

    /// Keys in slots `start..=end` (expired ones not yet deleted included).
    pub fn count_in_slots(&self, start: u16, end: u16) -> usize {
        (start..=end).map(|s| self.count_in_slot(s)).sum()
    }
}

fn new_value(p: &Piece) -> Value {
    match p {
        Piece::Str(s) => Value::Str(s.to_vec()),
        _ => {
            let mut v = match p {
                Piece::List(_) => Value::List(Box::new(VecDeque::new())),
                Piece::Hash(_) => Value::Hash(Box::new(SlabMap::new())),
                Piece::Set(_) => Value::Set(Box::new(SlabMap::new())),
                _ => Value::ZSet(Box::new(ZSet::new())),
            };
            extend_value(&mut v, p);
            v
        }
    }
}

/// Adds a piece's elements to a value of its type (a piece of another type is
/// ignored: the value changed on the source, and its new state follows).
fn extend_value(v: &mut Value, p: &Piece) {
    match (v, p) {
        (Value::List(l), Piece::List(xs)) => l.extend(xs.iter().map(|x| Key::from(&x[..]))),
        (Value::Hash(h), Piece::Hash(xs)) => {
            for (f, x) in xs {
                h.insert(f, Key::from(&x[..]));
            }
        }
        (Value::Set(s), Piece::Set(xs)) => {
            for x in xs {
                s.insert(x, ());
            }
        }
        (Value::ZSet(z), Piece::ZSet(xs)) => {
            for (m, s) in xs {
                z.insert(m, f64::from_bits(*s));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::Str(x.as_bytes().to_vec())
    }

    /// Keys in slot order: all keys of slots `start..=end` with their values' debug
    /// form and deadlines.
    fn dump(ks: &Keyspace, start: u16, end: u16) -> Vec<(Vec<u8>, String, u64)> {
        let mut v: Vec<_> = (start..=end)
            .flat_map(|sl| ks.iter_slot(sl))
            .map(|(k, e)| (k.to_vec(), format!("{:?}", sorted(&e.value)), e.expire_at))
            .collect();
        v.sort();
        v
    }

    fn sorted(v: &Value) -> Vec<String> {
        let mut out: Vec<String> = match v {
            Value::Str(x) => vec![format!("{x:?}")],
            Value::List(l) => return l.iter().map(|x| format!("{x:?}")).collect(),
            Value::Hash(h) => h.iter().map(|(k, x)| format!("{k:?}={x:?}")).collect(),
            Value::Set(h) => h.iter().map(|(k, _)| format!("{k:?}")).collect(),
            Value::ZSet(z) => z
                .members()
                .iter()
                .map(|(k, x)| format!("{k:?}={x}"))
                .collect(),
        };
        out.sort();
        out
    }

    fn copy_all(src: &Keyspace, dst: &mut Keyspace, start: u16, end: u16, budget: usize) -> usize {
        let mut cur = ExportCursor::new(start);
        let mut chunks = 0;
        while !cur.done {
            let items = src.export_chunk(&mut cur, end, budget, 100);
            dst.import(&items, 100);
            chunks += 1;
            assert!(chunks < 100_000, "export does not end");
        }
        chunks
    }

    #[test]
    fn a_range_copies_whole_in_small_chunks_with_big_values_in_pieces() {
        let mut src = Keyspace::new();
        for i in 0..2000 {
            src.set(format!("k{i}").as_bytes(), s(&format!("v{i}")), 0);
        }
        src.set_with_expiry(b"ttl", s("x"), Some(5000), 0);
        src.set_with_expiry(b"gone", s("x"), Some(50), 0);
        let mut list = VecDeque::new();
        let mut hash = SlabMap::new();
        let mut set = SlabMap::new();
        let mut z = ZSet::new();
        for i in 0..30_000 {
            let e = format!("element-{i}");
            list.push_back(Key::from(e.as_bytes()));
            hash.insert(e.as_bytes(), Key::from(&b"val"[..]));
            set.insert(e.as_bytes(), ());
            z.insert(e.as_bytes(), i as f64 / 3.0);
        }
        src.set(b"{big}list", Value::List(Box::new(list)), 0);
        src.set(b"{big}hash", Value::Hash(Box::new(hash)), 0);
        src.set(b"{big}set", Value::Set(Box::new(set)), 0);
        src.set(b"{big}zset", Value::ZSet(Box::new(z)), 0);
        let mut dst = Keyspace::new();
        let chunks = copy_all(&src, &mut dst, 0, 16383, 4096);
        assert!(chunks > 10, "small budget, many chunks ({chunks})");
        let mut want = dump(&src, 0, 16383);
        want.retain(|(k, _, _)| k != b"gone");
        assert_eq!(dump(&dst, 0, 16383), want);
        assert_eq!(dst.len(), 2005);
        // A partial range copies only its slots.
        let slot = proto::key_slot(b"k7");
        let mut part = Keyspace::new();
        copy_all(&src, &mut part, slot, slot, 1 << 20);
        assert_eq!(dump(&part, 0, 16383), dump(&src, slot, slot));
    }

    #[test]
    fn tracking_sees_every_change_in_the_range_and_the_delta_converges() {
        let mut src = Keyspace::new();
        for i in 0..500 {
            src.set(format!("k{i}").as_bytes(), s("a"), 0);
        }
        src.track_slots(0, 16383);
        let mut dst = Keyspace::new();
        let mut cur = ExportCursor::new(0);
        let mut i = 0;
        while !cur.done {
            dst.import(&src.export_chunk(&mut cur, 16383, 512, 100), 100);
            // Writes between chunks: updates, deletes, new keys, in-place changes.
            src.set(format!("k{i}").as_bytes(), s("b"), 0);
            src.remove(format!("k{}", i + 250).as_bytes(), 0);
            src.set(format!("new{i}").as_bytes(), s("c"), 0);
            if let Some(Value::Str(v)) = src
                .write(format!("k{}", i + 100).as_bytes(), 0)
                .map(|e| &mut e.value)
            {
                v.push(b'!');
            }
            i += 1;
        }
        let changed = src.take_changed().unwrap();
        assert!(!changed.is_empty());
        for k in changed {
            dst.import(&src.export_key(&k, 100), 100);
        }
        assert_eq!(dump(&dst, 0, 16383), dump(&src, 0, 16383));
        // Out-of-range keys are not tracked; a replaced keyspace breaks tracking.
        src.track_slots(0, 0);
        src.set(b"k1", s("z"), 0);
        assert_eq!(
            src.take_changed().unwrap().len(),
            (proto::key_slot(b"k1") == 0) as usize
        );
        src.replace_with(Keyspace::new());
        assert!(src.take_changed().is_none());
        assert!(!src.tracking());
    }

    #[test]
    fn drop_slots_deletes_in_bounded_batches() {
        let mut ks = Keyspace::new();
        for i in 0..1000 {
            ks.set(format!("k{i}").as_bytes(), s("a"), 0);
        }
        let inside = ks.count_in_slots(0, 8191);
        let mut total = 0;
        loop {
            let n = ks.drop_slots(0, 8191, 100);
            assert!(n <= 100);
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, inside);
        assert_eq!(ks.count_in_slots(0, 8191), 0);
        assert_eq!(ks.len(), 1000 - inside);
    }
}
