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
use proto::{Edit, Item, Piece};
use std::collections::{HashMap, HashSet, VecDeque};

/// Keys of a slot range changed since the tracking started or was last taken.
#[derive(Debug)]
pub(super) struct Tracker {
    start: u16,
    end: u16,
    dirty: HashSet<Key>,
    /// Big collections as the target has them now: each built from the very items
    /// sent for it, by the functions the target applies them with, so a change to
    /// one goes as the edits from this copy to the current value. Only values that
    /// went in pieces and have no deadline (a copy that cannot expire or change on
    /// the target).
    shadows: HashMap<Key, Value>,
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

fn edit_size(e: &Edit) -> usize {
    match e {
        Edit::ListTrim { .. } => 10,
        Edit::ListPrepend(v)
        | Edit::ListAppend(v)
        | Edit::HashDel(v)
        | Edit::SetAdd(v)
        | Edit::SetRem(v)
        | Edit::ZRem(v) => v.iter().map(|e| e.len() + 2).sum(),
        Edit::HashSet(v) => v.iter().map(|(f, x)| f.len() + x.len() + 4).sum(),
        Edit::ZAdd(v) => v.iter().map(|(m, _)| m.len() + 10).sum(),
    }
}

pub fn item_size(i: &Item) -> usize {
    match i {
        Item::Del(k) => k.len() + 2,
        Item::Put { key, value, .. } => key.len() + 12 + piece_size(value),
        Item::Patch { key, edit } => key.len() + 2 + edit_size(edit),
    }
}

/// Elements in a piece.
fn piece_len(p: &Piece) -> usize {
    match p {
        Piece::Str(_) => 1,
        Piece::List(v) | Piece::Set(v) => v.len(),
        Piece::Hash(v) => v.len(),
        Piece::ZSet(v) => v.len(),
    }
}

fn value_len(v: &Value) -> usize {
    match v {
        Value::Str(_) => 0,
        Value::List(l) => l.len(),
        Value::Hash(h) => h.len(),
        Value::Set(s) => s.len(),
        Value::ZSet(z) => z.len(),
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
            shadows: HashMap::new(),
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
        &mut self,
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
        self.mirror(&out);
        out
    }

    /// A changed key's current state as chunk items: the edits from the target's copy
    /// when it has a shadow of it and they are small, else `export_key`'s.
    pub fn export_changed(&mut self, key: &[u8], now: u64) -> Vec<Item> {
        let old = self.track.as_ref().and_then(|t| t.shadows.get(key));
        let new = self
            .dict
            .get(key)
            .filter(|e| e.expire_at == 0 && !e.is_expired(now));
        let items = match (old, new) {
            (Some(old), Some(e)) => diff(old, &e.value).map(|edits| {
                edits
                    .into_iter()
                    .map(|edit| Item::Patch { key: b(key), edit })
                    .collect()
            }),
            _ => None,
        };
        let items = items.unwrap_or_else(|| self.export_key(key, now));
        self.mirror(&items);
        items
    }

    /// Follows items sent to the target into the shadows (called under the same lock
    /// as the export, so the dictionary still holds what was exported).
    fn mirror(&mut self, items: &[Item]) {
        let Some(t) = self.track.as_mut() else {
            return;
        };
        for item in items {
            match item {
                Item::Del(k) => {
                    t.shadows.remove(&k[..]);
                }
                Item::Put {
                    key,
                    expire_at,
                    first: true,
                    value,
                } => {
                    // (Short-circuits: no lookup for the strings most keys are.)
                    let partial = *expire_at == 0
                        && !matches!(value, Piece::Str(_))
                        && piece_len(value) < self.dict.get(key).map_or(0, |e| value_len(&e.value));
                    if partial {
                        t.shadows.insert(Key::from(&key[..]), new_value(value));
                    } else if !t.shadows.is_empty() {
                        t.shadows.remove(&key[..]);
                    }
                }
                Item::Put {
                    key,
                    first: false,
                    value,
                    ..
                } => {
                    if let Some(v) = t.shadows.get_mut(&key[..]) {
                        extend_value(v, value);
                    }
                }
                Item::Patch { key, edit } => {
                    if let Some(v) = t.shadows.get_mut(&key[..]) {
                        apply_edit(v, edit);
                    }
                }
            }
        }
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

    /// Writes chunk items in (the target's apply). A patch for a key this copy lacks,
    /// or has with another type, refuses the whole chunk before anything is written.
    pub fn import(&mut self, items: &[Item], now: u64) -> Result<(), String> {
        for item in items {
            if let Item::Patch { key, edit } = item {
                let fits = self
                    .dict
                    .get(key)
                    .is_some_and(|e| edit_fits(&e.value, edit));
                if !fits {
                    return Err(format!(
                        "ERR migration chunk does not fit the target's copy of '{}'",
                        String::from_utf8_lossy(key)
                    ));
                }
            }
        }
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
                Item::Patch { key, edit } => {
                    let pos = self.dict.find(key).expect("checked above");
                    apply_edit(&mut self.entry_at(pos).value, edit);
                    self.modified(key);
                }
            }
        }
        Ok(())
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

/// Whether `edit` applies to a value of `v`'s type.
fn edit_fits(v: &Value, edit: &Edit) -> bool {
    matches!(
        (v, edit),
        (
            Value::List(_),
            Edit::ListTrim { .. } | Edit::ListPrepend(_) | Edit::ListAppend(_)
        ) | (Value::Hash(_), Edit::HashSet(_) | Edit::HashDel(_))
            | (Value::Set(_), Edit::SetAdd(_) | Edit::SetRem(_))
            | (Value::ZSet(_), Edit::ZAdd(_) | Edit::ZRem(_))
    )
}

/// Applies an edit to a value of its type (another type is left alone: `import`
/// checks first, and a shadow of another type is never diffed).
fn apply_edit(v: &mut Value, edit: &Edit) {
    match (v, edit) {
        (Value::List(l), Edit::ListTrim { front, back }) => {
            let front = (*front as usize).min(l.len());
            l.drain(..front);
            let keep = l.len().saturating_sub(*back as usize);
            l.truncate(keep);
        }
        (Value::List(l), Edit::ListPrepend(xs)) => {
            for x in xs.iter().rev() {
                l.push_front(Key::from(&x[..]));
            }
        }
        (Value::Hash(h), Edit::HashDel(fs)) => {
            for f in fs {
                h.remove(f);
            }
        }
        (Value::Set(s), Edit::SetRem(xs)) => {
            for x in xs {
                s.remove(x);
            }
        }
        (Value::ZSet(z), Edit::ZRem(xs)) => {
            for x in xs {
                z.remove(x);
            }
        }
        (v, Edit::ListAppend(xs)) => extend_value(v, &Piece::List(xs.clone())),
        (v, Edit::HashSet(xs)) => extend_value(v, &Piece::Hash(xs.clone())),
        (v, Edit::SetAdd(xs)) => extend_value(v, &Piece::Set(xs.clone())),
        (v, Edit::ZAdd(xs)) => extend_value(v, &Piece::ZSet(xs.clone())),
        _ => {}
    }
}

/// Splits `xs` into edits of about `PIECE_BYTES` each.
fn pieces<T>(xs: Vec<T>, size: impl Fn(&T) -> usize, mk: impl Fn(Vec<T>) -> Edit) -> Vec<Edit> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut used = 0;
    for x in xs {
        used += size(&x);
        cur.push(x);
        if used >= PIECE_BYTES {
            out.push(mk(std::mem::take(&mut cur)));
            used = 0;
        }
    }
    if !cur.is_empty() {
        out.push(mk(cur));
    }
    out
}

/// The edits that turn `old` into `new`, when they are of one collection type and
/// the edits carry at most half of `new`'s elements (else sending it whole is as
/// cheap). Applying them in order to `old` gives exactly `new`.
fn diff(old: &Value, new: &Value) -> Option<Vec<Edit>> {
    let limit = value_len(new) / 2;
    let bytes = |x: &Key| Bytes::copy_from_slice(x);
    let edits = match (old, new) {
        (Value::List(o), Value::List(n)) => {
            let (front, back, pf, pb) = list_diff(o, n)?;
            if pf + pb > limit {
                return None;
            }
            let mut out = Vec::new();
            if front + back > 0 {
                out.push(Edit::ListTrim {
                    front: front as u64,
                    back: back as u64,
                });
            }
            let pre: Vec<Bytes> = n.iter().take(pf).map(bytes).collect();
            out.extend(pieces(pre, |x| x.len() + 2, Edit::ListPrepend));
            let post: Vec<Bytes> = n.iter().skip(n.len() - pb).map(bytes).collect();
            out.extend(pieces(post, |x| x.len() + 2, Edit::ListAppend));
            return Some(out);
        }
        (Value::Hash(o), Value::Hash(n)) => {
            let set: Vec<(Bytes, Bytes)> = n
                .iter()
                .filter(|(f, x)| o.get(f) != Some(x))
                .map(|(f, x)| (bytes(f), bytes(x)))
                .collect();
            let del: Vec<Bytes> = o.keys().filter(|f| !n.contains(f)).map(bytes).collect();
            if set.len() + del.len() > limit {
                return None;
            }
            let mut out = pieces(del, |x| x.len() + 2, Edit::HashDel);
            out.extend(pieces(set, |(f, x)| f.len() + x.len() + 4, Edit::HashSet));
            out
        }
        (Value::Set(o), Value::Set(n)) => {
            let add: Vec<Bytes> = n.keys().filter(|x| !o.contains(x)).map(bytes).collect();
            let rem: Vec<Bytes> = o.keys().filter(|x| !n.contains(x)).map(bytes).collect();
            if add.len() + rem.len() > limit {
                return None;
            }
            let mut out = pieces(rem, |x| x.len() + 2, Edit::SetRem);
            out.extend(pieces(add, |x| x.len() + 2, Edit::SetAdd));
            out
        }
        (Value::ZSet(o), Value::ZSet(n)) => {
            let (o, n) = (o.members(), n.members());
            let add: Vec<(Bytes, u64)> = n
                .iter()
                .filter(|(m, s)| o.get(m).map(|x| x.to_bits()) != Some(s.to_bits()))
                .map(|(m, s)| (bytes(m), s.to_bits()))
                .collect();
            let rem: Vec<Bytes> = o.keys().filter(|m| !n.contains(m)).map(bytes).collect();
            if add.len() + rem.len() > limit {
                return None;
            }
            let mut out = pieces(rem, |x| x.len() + 2, Edit::ZRem);
            out.extend(pieces(add, |(m, _)| m.len() + 10, Edit::ZAdd));
            out
        }
        _ => return None,
    };
    Some(edits)
}

/// How `new` is `old` with elements dropped from and added at its ends: `(front
/// dropped, back dropped, front added, back added)`, with `new == new[..front added]
/// ++ old[front dropped .. len - back dropped] ++ new[len - back added ..]`. Looks
/// for the run the two share by how far from the heads it starts (queues and stacks
/// change at their ends), within a bounded number of comparisons; `None` if no run
/// is found, or neither list is left with anything in common.
fn list_diff(old: &VecDeque<Key>, new: &VecDeque<Key>) -> Option<(usize, usize, usize, usize)> {
    /// How far from the heads the shared run may start.
    const REACH: usize = 4096;
    let (m, n) = (old.len(), new.len());
    let mut budget = 4 * (m + n) + 1_000_000;
    let mut best: Option<(usize, usize, usize, usize)> = None;
    let cost = |c: &(usize, usize, usize, usize)| c.2 + c.3;
    for d in 0..(m + n).min(REACH) {
        // Diagonal d: `pf` dropped at the front of old, `d - pf` added to new's.
        for f in 0..=d {
            let added = d - f;
            if f >= m || added >= n {
                continue;
            }
            if budget == 0 {
                return best;
            }
            budget -= 1;
            if old[f] != new[added] {
                continue;
            }
            let mut run = 1;
            while f + run < m && added + run < n && old[f + run] == new[added + run] {
                run += 1;
            }
            budget = budget.saturating_sub(run);
            let c = (f, m - f - run, added, n - added - run);
            if best.as_ref().is_none_or(|b| cost(&c) < cost(b)) {
                best = Some(c);
            }
            // A run to either end: whatever differs more lies behind it.
            if f + run == m || added + run == n {
                return best;
            }
        }
        if budget == 0 {
            break;
        }
    }
    best
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

    fn copy_all(
        src: &mut Keyspace,
        dst: &mut Keyspace,
        start: u16,
        end: u16,
        budget: usize,
    ) -> usize {
        let mut cur = ExportCursor::new(start);
        let mut chunks = 0;
        while !cur.done {
            let items = src.export_chunk(&mut cur, end, budget, 100);
            dst.import(&items, 100).unwrap();
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
        let chunks = copy_all(&mut src, &mut dst, 0, 16383, 4096);
        assert!(chunks > 10, "small budget, many chunks ({chunks})");
        let mut want = dump(&src, 0, 16383);
        want.retain(|(k, _, _)| k != b"gone");
        assert_eq!(dump(&dst, 0, 16383), want);
        assert_eq!(dst.len(), 2005);
        // A partial range copies only its slots.
        let slot = proto::key_slot(b"k7");
        let mut part = Keyspace::new();
        copy_all(&mut src, &mut part, slot, slot, 1 << 20);
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
            dst.import(&src.export_chunk(&mut cur, 16383, 512, 100), 100)
                .unwrap();
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
            dst.import(&src.export_changed(&k, 100), 100).unwrap();
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

    fn big(n: usize) -> [(&'static [u8], Value); 4] {
        let mut list = VecDeque::new();
        let mut hash = SlabMap::new();
        let mut set = SlabMap::new();
        let mut z = ZSet::new();
        for i in 0..n {
            let e = format!("element-{i}");
            list.push_back(Key::from(e.as_bytes()));
            hash.insert(e.as_bytes(), Key::from(&b"val"[..]));
            set.insert(e.as_bytes(), ());
            z.insert(e.as_bytes(), i as f64);
        }
        [
            (b"{big}list", Value::List(Box::new(list))),
            (b"{big}hash", Value::Hash(Box::new(hash))),
            (b"{big}set", Value::Set(Box::new(set))),
            (b"{big}zset", Value::ZSet(Box::new(z))),
        ]
    }

    /// Changes to every big collection: pops and pushes at both ends of the list,
    /// fields set, changed and deleted.
    fn churn(ks: &mut Keyspace, round: usize) {
        let e = |i: usize| Key::from(format!("new-{round}-{i}").as_bytes());
        for (k, _) in big(0) {
            match ks.write(k, 0).map(|e| &mut e.value) {
                Some(Value::List(l)) => {
                    l.pop_front();
                    l.pop_back();
                    l.push_back(e(1));
                    l.push_front(e(2));
                    l.push_front(e(3));
                }
                Some(Value::Hash(h)) => {
                    h.insert(&e(1), e(2));
                    h.insert(b"element-5", e(3));
                    h.remove(format!("element-{}", 10 + round).as_bytes());
                }
                Some(Value::Set(s)) => {
                    s.insert(&e(1), ());
                    s.remove(format!("element-{}", 10 + round).as_bytes());
                }
                Some(Value::ZSet(z)) => {
                    z.insert(&e(1), -1.0);
                    z.insert(b"element-7", round as f64 + 0.5);
                    z.remove(format!("element-{}", 10 + round).as_bytes());
                }
                _ => {}
            }
            ks.modified(k);
        }
    }

    #[test]
    fn a_changed_big_collection_goes_as_its_edits() {
        let mut src = Keyspace::new();
        for (k, v) in big(20_000) {
            src.set(k, v, 0);
        }
        src.set(b"{big}small", s("x"), 0);
        src.track_slots(0, 16383);
        let mut dst = Keyspace::new();
        let mut cur = ExportCursor::new(0);
        let mut round = 0;
        // Changes while the big values are on their way, piece by piece.
        while !cur.done {
            dst.import(&src.export_chunk(&mut cur, 16383, 64 * 1024, 100), 100)
                .unwrap();
            churn(&mut src, round);
            round += 1;
        }
        assert!(round >= 6, "the values went in pieces ({round} chunks)");
        // The first pass: the list's copy may have taken pieces of a shifting list
        // (an element twice or missing in the middle), which end edits cannot mend,
        // so it may go whole. The others' copies are mended by edits.
        for k in src.take_changed().unwrap() {
            let items = src.export_changed(&k, 100);
            let whole = items.iter().any(|i| matches!(i, Item::Put { .. }));
            assert!(!whole || &k[..] == b"{big}list", "{k:?} went whole");
            dst.import(&items, 100).unwrap();
        }
        assert_eq!(dump(&dst, 0, 16383), dump(&src, 0, 16383));
        // From then on every change goes as edits.
        churn(&mut src, round);
        for pass in 1..4 {
            let mut sent = 0;
            for k in src.take_changed().unwrap() {
                let items = src.export_changed(&k, 100);
                assert!(
                    items.iter().all(|i| matches!(i, Item::Patch { .. })),
                    "pass {pass}: {k:?} went whole"
                );
                sent += items.iter().map(item_size).sum::<usize>();
                dst.import(&items, 100).unwrap();
            }
            assert_eq!(dump(&dst, 0, 16383), dump(&src, 0, 16383), "pass {pass}");
            assert!(sent < 64 * 1024, "pass {pass} sent {sent} bytes");
            churn(&mut src, round + pass);
        }
        // Under a deadline a big value goes whole again, and so does one whose type
        // changed.
        src.set_expire(b"{big}set", 9_000_000, 0);
        src.set(b"{big}hash", s("now a string"), 0);
        for k in src.take_changed().unwrap() {
            let items = src.export_changed(&k, 100);
            let whole = items
                .iter()
                .any(|i| matches!(i, Item::Put { first: true, .. }));
            let expect = matches!(&k[..], b"{big}set" | b"{big}hash");
            assert_eq!(whole, expect, "{k:?}");
            dst.import(&items, 100).unwrap();
        }
        assert_eq!(dump(&dst, 0, 16383), dump(&src, 0, 16383));
        // A patch for a copy the target lacks refuses the chunk, writing nothing.
        churn(&mut src, 99);
        let mut items = vec![Item::Del(b(b"{big}small"))];
        for k in src.take_changed().unwrap() {
            items.extend(src.export_changed(&k, 100));
        }
        let mut other = Keyspace::new();
        other.set(b"{big}small", s("x"), 0);
        let err = other.import(&items, 100).unwrap_err();
        assert!(err.contains("does not fit"), "{err}");
        assert_eq!(other.len(), 1);
    }

    fn list(xs: &[u8]) -> Value {
        Value::List(Box::new(xs.iter().map(|x| Key::from(&[*x][..])).collect()))
    }

    #[test]
    fn list_edits_follow_queue_and_stack_use() {
        let old: Vec<u8> = (0..100).collect();
        let cases: Vec<(Vec<u8>, usize)> = vec![
            // RPUSH, LPUSH, LPOP + RPUSH (a queue), LPUSH + RPOP (Celery's), both ends.
            ([&old[..], &[200, 201]].concat(), 2),
            ([&[200, 201][..], &old[..]].concat(), 2),
            ([&old[3..], &[200][..]].concat(), 1),
            ([&[200][..], &old[..97]].concat(), 1),
            ([&[200][..], &old[5..90], &[201, 202]].concat(), 3),
            // Duplicates everywhere.
            (vec![7; 150], 50),
        ];
        for (new, added) in cases {
            let (o, n) = (list(if new[0] == 7 { &[7; 100] } else { &old }), list(&new));
            let edits = diff(&o, &n).expect("edits");
            let sent: usize = edits
                .iter()
                .map(|e| match e {
                    Edit::ListPrepend(v) | Edit::ListAppend(v) => v.len(),
                    _ => 0,
                })
                .sum();
            assert_eq!(sent, added, "{new:?}");
            let mut v = o;
            for e in &edits {
                apply_edit(&mut v, e);
            }
            assert_eq!(v, n);
        }
        // A change in the middle of a list leaves nothing worth editing.
        let mut mid = old.clone();
        mid[50] = 255;
        assert!(diff(&list(&old), &list(&mid)).is_none_or(|e| {
            let mut v = list(&old);
            e.iter().for_each(|e| apply_edit(&mut v, e));
            v == list(&mid)
        }));
    }

    proptest::proptest! {
        #[test]
        fn edits_turn_old_into_new(
            old in proptest::collection::vec(0u8..6, 1..60),
            ops in proptest::collection::vec((0u8..6, 0u8..6), 0..20),
        ) {
            let mut new: VecDeque<u8> = old.iter().copied().collect();
            let mut h_old = SlabMap::new();
            for x in &old {
                h_old.insert(&[*x], Key::from(&[*x][..]));
            }
            let mut h_new = SlabMap::new();
            for (k, v) in h_old.iter() {
                h_new.insert(k, v.clone());
            }
            for (op, x) in ops {
                match op {
                    0 => new.push_back(x),
                    1 => new.push_front(x),
                    2 => { new.pop_front(); }
                    3 => { new.pop_back(); }
                    4 => if let Some(e) = new.get_mut(x as usize) { *e = 9 },
                    _ => { h_new.remove(&[x]); }
                }
                h_new.insert(&[x + 10], Key::from(&[op][..]));
            }
            let new: Vec<u8> = new.into_iter().collect();
            if !new.is_empty() {
                let (o, n) = (list(&old), list(&new));
                if let Some(edits) = diff(&o, &n) {
                    let mut v = o;
                    edits.iter().for_each(|e| apply_edit(&mut v, e));
                    proptest::prop_assert_eq!(v, n);
                }
            }
            let (o, n) = (Value::Hash(Box::new(h_old)), Value::Hash(Box::new(h_new)));
            if let Some(edits) = diff(&o, &n) {
                let mut v = o;
                edits.iter().for_each(|e| apply_edit(&mut v, e));
                proptest::prop_assert_eq!(format!("{:?}", sorted(&v)), format!("{:?}", sorted(&n)));
            }
        }
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
