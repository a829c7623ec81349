//! Sorted sets: members ordered by (score, member bytes), as Redis's skiplist orders
//! them, with O(log n) rank queries.
//!
//! Layout: a `SlabMap<f64>` maps members to scores (ZSCORE, ZSCAN cursors, random
//! sampling) and a sorted list of bounded chunks holds `(score, slab position)` in
//! order. A Fenwick tree over the chunk lengths turns a rank into a chunk and an
//! offset in O(log n); finding a score or member bound is a binary search over the
//! chunks' last items, then inside one chunk. Chunks stay between `MIN_CHUNK` and
//! `MAX_CHUNK` items (split when too big, merged when too small), so an insert or a
//! removal moves at most `MAX_CHUNK` items.
//!
//! Only the slab layout and the encoding flag are replicated state: the chunk layout
//! is derived from them and never observable.

use super::slab_map::{Key, SlabMap};
use super::value::{ZSET_MAX_LISTPACK_ENTRIES, ZSET_MAX_LISTPACK_VALUE};
use std::cmp::Ordering;

// Small chunks under test so that splits and merges happen in every model test.
const MAX_CHUNK: usize = if cfg!(test) { 8 } else { 256 };
const MIN_CHUNK: usize = MAX_CHUNK / 4;

/// One ordered item: the score and the member's slab position.
type Item = (f64, u32);

#[derive(Clone, Debug)]
pub struct ZSet {
    members: SlabMap<f64>,
    chunks: Vec<Vec<Item>>,
    /// Fenwick tree (1-based) over `chunks[i].len()`.
    fen: Vec<usize>,
    /// Redis would hold this set as a listpack. Like Redis, a set converts to a
    /// skiplist when it grows past the limits and never converts back on its own.
    compact: bool,
}

impl Default for ZSet {
    fn default() -> Self {
        ZSet {
            members: SlabMap::new(),
            chunks: Vec::new(),
            fen: vec![0],
            compact: true,
        }
    }
}

impl PartialEq for ZSet {
    /// Same members, scores, member-map layout and encoding.
    fn eq(&self, other: &Self) -> bool {
        self.compact == other.compact && self.members == other.members
    }
}

/// Redis's ordering: by score, then by member bytes.
fn cmp_key(a: (f64, &[u8]), b: (f64, &[u8])) -> Ordering {
    if a.0 < b.0 {
        Ordering::Less
    } else if a.0 > b.0 {
        Ordering::Greater
    } else {
        a.1.cmp(b.1)
    }
}

impl ZSet {
    pub fn new() -> ZSet {
        ZSet::default()
    }

    /// A set in the skiplist encoding from the start, as Redis builds the results of
    /// ZUNION, ZINTER and ZDIFF (which keeps the sign of a zero score).
    pub fn new_unpacked() -> ZSet {
        ZSet {
            compact: false,
            ..ZSet::default()
        }
    }

    /// Rebuilds a set from its replicated state (snapshots).
    pub fn from_parts(members: SlabMap<f64>, compact: bool) -> ZSet {
        let mut z = ZSet {
            members,
            chunks: Vec::new(),
            fen: vec![0],
            compact,
        };
        let mut items: Vec<Item> = z
            .members
            .layout()
            .0
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|(_, v)| (*v, i as u32)))
            .collect();
        items.sort_by(|a, b| cmp_key((a.0, z.member_at(a.1)), (b.0, z.member_at(b.1))));
        z.chunks = items
            .chunks(MAX_CHUNK / 2)
            .map(|c| {
                let mut v = Vec::with_capacity(MAX_CHUNK + 1);
                v.extend_from_slice(c);
                v
            })
            .collect();
        z.rebuild_fen();
        z
    }

    /// The replicated state: members with their slab layout, and the encoding flag.
    pub fn parts(&self) -> (&SlabMap<f64>, bool) {
        (&self.members, self.compact)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// True while Redis would encode this set as a listpack.
    pub fn is_compact(&self) -> bool {
        self.compact
    }

    /// Redis's zsetConvertToListpackIfNeeded, applied to the results of the *STORE
    /// commands: back to the compact encoding when small enough.
    pub fn compact_if_small(&mut self) {
        if !self.compact
            && self.len() <= ZSET_MAX_LISTPACK_ENTRIES
            && self.max_member_len() <= ZSET_MAX_LISTPACK_VALUE
        {
            self.compact = true;
            // A listpack stores scores as text, which loses the sign of zero.
            for c in &mut self.chunks {
                for it in c.iter_mut().filter(|it| it.0 == 0.0) {
                    it.0 = 0.0;
                }
            }
            for (_, v) in self.members.iter_mut().filter(|(_, v)| **v == 0.0) {
                *v = 0.0;
            }
        }
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.members.get(member).copied()
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.members.contains(member)
    }

    fn member_at(&self, pos: u32) -> &[u8] {
        self.members.at(pos).expect("ordered item is live").0
    }

    fn item_key(&self, it: &Item) -> (f64, &[u8]) {
        (it.0, self.member_at(it.1))
    }

    /// Inserts or updates; returns the previous score. An update to an equal score
    /// changes nothing (as in Redis, where -0 and 0 are equal).
    pub fn insert(&mut self, member: &[u8], score: f64) -> Option<f64> {
        debug_assert!(!score.is_nan(), "scores are never NaN");
        let score = if self.compact && score == 0.0 {
            0.0
        } else {
            score
        };
        if let Some(pos) = self.members.find(member) {
            let old = *self.members.at(pos).unwrap().1;
            if old != score {
                self.remove_item(old, pos);
                *self.members.at_mut(pos).unwrap().1 = score;
                self.insert_item(score, pos);
            }
            return Some(old);
        }
        if self.len() + 1 > ZSET_MAX_LISTPACK_ENTRIES || member.len() > ZSET_MAX_LISTPACK_VALUE {
            self.compact = false;
        }
        let pos = self.members.insert_new(member.into(), score);
        self.insert_item(score, pos);
        None
    }

    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let pos = self.members.find(member)?;
        let score = *self.members.at(pos).unwrap().1;
        self.remove_item(score, pos);
        self.members.remove_at(pos);
        Some(score)
    }

    /// 0-based rank in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        Some(self.partition_point(|s, m| cmp_key((s, m), (score, member)) == Ordering::Less))
    }

    /// The member and score at rank `r` (ascending).
    pub fn get_by_rank(&self, r: usize) -> Option<(&[u8], f64)> {
        if r >= self.len() {
            return None;
        }
        let (ci, off) = self.locate(r);
        let it = &self.chunks[ci][off];
        Some((self.member_at(it.1), it.0))
    }

    /// The number of items for which `pred` holds, `pred` being true on a prefix of
    /// the order (e.g. "score below the minimum"): the rank where it turns false.
    pub fn partition_point(&self, pred: impl Fn(f64, &[u8]) -> bool) -> usize {
        let ci = self.chunks.partition_point(|c| {
            let (s, m) = self.item_key(c.last().expect("chunks are never empty"));
            pred(s, m)
        });
        if ci == self.chunks.len() {
            return self.len();
        }
        let off = self.chunks[ci].partition_point(|it| {
            let (s, m) = self.item_key(it);
            pred(s, m)
        });
        self.prefix(ci) + off
    }

    /// Members by ascending rank in `start..=end` (already clamped by the caller).
    pub fn range_by_rank(&self, start: usize, end: usize) -> Iter<'_> {
        self.range(start, end + 1)
    }

    /// Items with rank in `start..end`, in order, iterable from both ends.
    pub fn range(&self, start: usize, end: usize) -> Iter<'_> {
        let end = end.min(self.len());
        let start = start.min(end);
        Iter {
            zs: self,
            front: self.locate(start),
            back: self.locate(end),
            remaining: end - start,
        }
    }

    pub fn iter(&self) -> Iter<'_> {
        self.range(0, self.len())
    }

    /// Removes the items with rank in `start..end`; returns them in ascending order.
    pub fn remove_range(&mut self, start: usize, end: usize) -> Vec<(Key, f64)> {
        let end = end.min(self.len());
        if start >= end {
            return Vec::new();
        }
        let (mut ci, mut off) = self.locate(start);
        let mut left = end - start;
        let mut removed_items = Vec::with_capacity(left);
        let mut structure_changed = false;
        while left > 0 {
            let take = left.min(self.chunks[ci].len() - off);
            removed_items.extend(self.chunks[ci].drain(off..off + take));
            self.fen_add(ci, -(take as isize));
            left -= take;
            if self.chunks[ci].is_empty() {
                self.chunks.remove(ci);
                structure_changed = true;
            } else {
                ci += 1;
            }
            off = 0;
        }
        // Only the chunks at the two edges of the removed range can be short now.
        let edge = ci.min(self.chunks.len().saturating_sub(1));
        for c in [edge, edge.saturating_sub(1)] {
            if self.merge_if_small(c) {
                structure_changed = true;
            }
        }
        if structure_changed {
            self.rebuild_fen();
        }
        removed_items
            .into_iter()
            .map(|(s, pos)| (self.members.remove_at(pos).expect("live").0, s))
            .collect()
    }

    pub fn members(&self) -> &SlabMap<f64> {
        &self.members
    }

    pub fn max_member_len(&self) -> usize {
        self.members.keys().map(|k| k.len()).max().unwrap_or(0)
    }

    pub fn memory_usage(&self) -> usize {
        self.members.capacity_slots() * 40
            + self.members.keys().map(|k| k.len() + 16).sum::<usize>()
            + self
                .chunks
                .iter()
                .map(|c| c.capacity() * 16 + 24)
                .sum::<usize>()
    }

    // ---- chunk maintenance ----

    /// The chunk that holds (or would hold) `key`: the first whose last item is not
    /// below it, or the last chunk.
    fn chunk_for(&self, key: (f64, &[u8])) -> usize {
        let ci = self
            .chunks
            .partition_point(|c| cmp_key(self.item_key(c.last().unwrap()), key) == Ordering::Less);
        ci.min(self.chunks.len().saturating_sub(1))
    }

    fn insert_item(&mut self, score: f64, pos: u32) {
        if self.chunks.is_empty() {
            let mut c = Vec::with_capacity(MAX_CHUNK + 1);
            c.push((score, pos));
            self.chunks.push(c);
            self.rebuild_fen();
            return;
        }
        let key = (score, self.member_at(pos));
        let ci = self.chunk_for(key);
        let off =
            self.chunks[ci].partition_point(|it| cmp_key(self.item_key(it), key) == Ordering::Less);
        self.chunks[ci].insert(off, (score, pos));
        if self.chunks[ci].len() > MAX_CHUNK {
            let mut tail = Vec::with_capacity(MAX_CHUNK + 1);
            tail.extend(self.chunks[ci].drain(MAX_CHUNK / 2..));
            self.chunks.insert(ci + 1, tail);
            self.rebuild_fen();
        } else {
            self.fen_add(ci, 1);
        }
    }

    fn remove_item(&mut self, score: f64, pos: u32) {
        let key = (score, self.member_at(pos));
        let ci = self.chunk_for(key);
        let off =
            self.chunks[ci].partition_point(|it| cmp_key(self.item_key(it), key) == Ordering::Less);
        debug_assert_eq!(self.chunks[ci][off].1, pos);
        self.chunks[ci].remove(off);
        if self.chunks[ci].is_empty() {
            self.chunks.remove(ci);
            self.rebuild_fen();
        } else if self.merge_if_small(ci) {
            self.rebuild_fen();
        } else {
            self.fen_add(ci, -1);
        }
    }

    /// Merges chunk `ci` with a neighbour when it is short (splitting again evenly if
    /// the two together are too long). True if the chunk structure changed; the
    /// caller rebuilds the Fenwick tree.
    fn merge_if_small(&mut self, ci: usize) -> bool {
        if ci >= self.chunks.len() || self.chunks[ci].len() >= MIN_CHUNK || self.chunks.len() < 2 {
            return false;
        }
        let left = if ci + 1 < self.chunks.len() {
            ci
        } else {
            ci - 1
        };
        let right = self.chunks.remove(left + 1);
        let merged = &mut self.chunks[left];
        merged.extend(right);
        if merged.len() > MAX_CHUNK {
            let half = merged.len() / 2;
            let mut tail = Vec::with_capacity(MAX_CHUNK + 1);
            tail.extend(merged.drain(half..));
            self.chunks.insert(left + 1, tail);
        }
        true
    }

    fn rebuild_fen(&mut self) {
        let k = self.chunks.len();
        self.fen.clear();
        self.fen.resize(k + 1, 0);
        for i in 1..=k {
            self.fen[i] += self.chunks[i - 1].len();
            let j = i + (i & i.wrapping_neg());
            if j <= k {
                self.fen[j] += self.fen[i];
            }
        }
    }

    fn fen_add(&mut self, ci: usize, delta: isize) {
        let mut i = ci + 1;
        while i < self.fen.len() {
            self.fen[i] = (self.fen[i] as isize + delta) as usize;
            i += i & i.wrapping_neg();
        }
    }

    /// Total length of `chunks[..ci]`.
    fn prefix(&self, ci: usize) -> usize {
        let mut i = ci;
        let mut s = 0;
        while i > 0 {
            s += self.fen[i];
            i -= i & i.wrapping_neg();
        }
        s
    }

    /// (chunk, offset) of rank `r`; `(chunks.len(), 0)` for `r == len`.
    fn locate(&self, r: usize) -> (usize, usize) {
        let k = self.chunks.len();
        let mut pos = 0;
        let mut rem = r;
        let mut step = if k == 0 {
            0
        } else {
            1 << (usize::BITS - 1 - k.leading_zeros())
        };
        while step > 0 {
            if pos + step <= k && self.fen[pos + step] <= rem {
                pos += step;
                rem -= self.fen[pos];
            }
            step >>= 1;
        }
        (pos, rem)
    }
}

/// Ordered items of a rank range, from both ends.
pub struct Iter<'a> {
    zs: &'a ZSet,
    front: (usize, usize),
    /// Exclusive.
    back: (usize, usize),
    remaining: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        while self.front.1 >= self.zs.chunks[self.front.0].len() {
            self.front = (self.front.0 + 1, 0);
        }
        let it = &self.zs.chunks[self.front.0][self.front.1];
        self.front.1 += 1;
        self.remaining -= 1;
        Some((self.zs.member_at(it.1), it.0))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        while self.back.1 == 0 {
            self.back.0 -= 1;
            self.back.1 = self.zs.chunks[self.back.0].len();
        }
        self.back.1 -= 1;
        self.remaining -= 1;
        let it = &self.zs.chunks[self.back.0][self.back.1];
        Some((self.zs.member_at(it.1), it.0))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::rng::Rng;
    use std::collections::{BTreeSet, HashMap};

    /// Model key: an order-preserving integer image of the score, then the member.
    #[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Debug)]
    struct K(u64, Vec<u8>);

    fn ord_bits(f: f64) -> u64 {
        let b = f.to_bits();
        if b >> 63 == 1 {
            !b
        } else {
            b | (1 << 63)
        }
    }

    fn check(z: &ZSet, model: &BTreeSet<K>) {
        assert_eq!(z.len(), model.len());
        let got: Vec<(Vec<u8>, u64)> = z.iter().map(|(m, s)| (m.to_vec(), ord_bits(s))).collect();
        let want: Vec<(Vec<u8>, u64)> = model.iter().map(|k| (k.1.clone(), k.0)).collect();
        assert_eq!(got, want);
        let back: Vec<_> = z.iter().rev().map(|(m, _)| m.to_vec()).collect();
        let mut fwd: Vec<_> = want.iter().map(|(m, _)| m.clone()).collect();
        fwd.reverse();
        assert_eq!(back, fwd);
        let total: usize = z.chunks.iter().map(|c| c.len()).sum();
        assert_eq!(total, z.len());
        assert!(z
            .chunks
            .iter()
            .all(|c| !c.is_empty() && c.len() <= MAX_CHUNK));
        assert_eq!(z.prefix(z.chunks.len()), z.len());
    }

    #[test]
    fn behaves_like_an_ordered_set() {
        let mut z = ZSet::new();
        let mut model: BTreeSet<K> = BTreeSet::new();
        let mut scores: HashMap<Vec<u8>, f64> = HashMap::new();
        let mut rng = Rng::new(42);
        for step in 0..20_000 {
            let m = format!("m{}", rng.below(300)).into_bytes();
            let score = match rng.below(4) {
                0 => rng.below(5) as f64, // many ties: ordered by member
                1 => -(rng.below(1000) as f64) / 7.0,
                2 => [f64::INFINITY, f64::NEG_INFINITY, 0.5][rng.below(3) as usize],
                _ => rng.unit() * 1e6,
            } + 0.0; // -0 equals 0 in the order; the model would separate them

            match rng.below(10) {
                0..=4 => {
                    let old = z.insert(&m, score);
                    assert_eq!(old, scores.get(&m).copied());
                    if let Some(o) = old {
                        if o != score {
                            model.remove(&K(ord_bits(o), m.clone()));
                            model.insert(K(ord_bits(score), m.clone()));
                            scores.insert(m.clone(), score);
                        }
                    } else {
                        model.insert(K(ord_bits(score), m.clone()));
                        scores.insert(m.clone(), score);
                    }
                }
                5 | 6 => {
                    let old = z.remove(&m);
                    assert_eq!(old, scores.remove(&m));
                    if let Some(o) = old {
                        model.remove(&K(ord_bits(o), m.clone()));
                    }
                }
                7 => {
                    if let Some(s) = scores.get(&m) {
                        let want = model.range(..K(ord_bits(*s), m.clone())).count();
                        assert_eq!(z.rank(&m), Some(want));
                        assert_eq!(z.get_by_rank(want).unwrap().0, &m[..]);
                    } else {
                        assert_eq!(z.rank(&m), None);
                    }
                }
                8 => {
                    let n = z.len();
                    let a = rng.below(n as u64 + 2) as usize;
                    let b = a + rng.below(20) as usize;
                    let removed = z.remove_range(a, b);
                    let want: Vec<K> = model
                        .iter()
                        .skip(a)
                        .take(b.saturating_sub(a))
                        .cloned()
                        .collect();
                    assert_eq!(removed.len(), want.len());
                    for (k, (m2, s)) in want.iter().zip(&removed) {
                        assert_eq!(&k.1[..], &m2[..]);
                        assert_eq!(k.0, ord_bits(*s));
                        model.remove(k);
                        scores.remove(&k.1);
                    }
                }
                _ => {
                    let n = z.len();
                    let a = rng.below(n as u64 + 1) as usize;
                    let b = (a + rng.below(30) as usize).min(n);
                    let got: Vec<_> = z.range(a, b).map(|(m, _)| m.to_vec()).collect();
                    let want: Vec<_> = model
                        .iter()
                        .skip(a)
                        .take(b - a)
                        .map(|k| k.1.clone())
                        .collect();
                    assert_eq!(got, want);
                    let got_rev: Vec<_> = z.range(a, b).rev().map(|(m, _)| m.to_vec()).collect();
                    let mut want_rev = want.clone();
                    want_rev.reverse();
                    assert_eq!(got_rev, want_rev);
                    let t = rng.below(5) as f64;
                    let below = model.iter().filter(|k| scores[&k.1] < t).count();
                    assert_eq!(z.partition_point(|s, _| s < t), below);
                }
            }
            if step % 97 == 0 {
                check(&z, &model);
            }
        }
        check(&z, &model);
        let all = z.len();
        assert_eq!(z.remove_range(0, all).len(), all);
        assert!(z.is_empty());
        assert!(z.chunks.is_empty());
    }

    #[test]
    fn equal_scores_order_by_member_bytes() {
        let mut z = ZSet::new();
        for m in [&b"b"[..], b"a", b"c", b"", b"\xff", b"ab"] {
            z.insert(m, 1.0);
        }
        z.insert(b"neg", f64::NEG_INFINITY);
        z.insert(b"pos", f64::INFINITY);
        let order: Vec<&[u8]> = z.iter().map(|(m, _)| m).collect();
        let want: Vec<&[u8]> = vec![b"neg", b"", b"a", b"ab", b"b", b"c", b"\xff", b"pos"];
        assert_eq!(order, want);
        assert_eq!(z.rank(b"ab"), Some(3));
        assert_eq!(z.rank(b"zz"), None);
    }

    #[test]
    fn encoding_is_sticky_and_parts_roundtrip() {
        let mut z = ZSet::new();
        z.insert(b"a", -0.0);
        assert!(
            !z.score(b"a").unwrap().is_sign_negative(),
            "listpack drops -0"
        );
        for i in 0..200 {
            z.insert(format!("m{i}").as_bytes(), i as f64);
        }
        assert!(!z.is_compact());
        for i in 0..190 {
            z.remove(format!("m{i}").as_bytes());
        }
        assert!(!z.is_compact(), "Redis never converts back on removal");
        z.insert(b"z", -0.0);
        assert!(z.score(b"z").unwrap().is_sign_negative());
        let (members, compact) = z.parts();
        let copy = ZSet::from_parts(members.clone(), compact);
        assert!(copy == z);
        assert_eq!(
            copy.iter().collect::<Vec<_>>(),
            z.iter().collect::<Vec<_>>()
        );
        z.compact_if_small();
        assert!(z.is_compact());
        assert!(!z.score(b"z").unwrap().is_sign_negative());
        let mut long = ZSet::new();
        long.insert(&[b'x'; 65], 1.0);
        assert!(!long.is_compact());
    }
}
