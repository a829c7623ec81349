//! A byte-string-keyed map whose entries live at stable slab positions.
//!
//! Positions never move while an entry lives, which gives Redis's SCAN guarantee (an
//! element present for a whole scan is returned at least once) with a plain index as
//! cursor, and O(1) random sampling (eviction, RANDOMKEY, SPOP). The slab layout is a
//! deterministic function of the operations applied (the free list is LIFO), so two
//! replicas applying the same log make the same random choices from the same seed;
//! snapshots keep the layout.

use hashbrown::HashTable;
use std::hash::BuildHasher;

pub type Key = Box<[u8]>;

#[derive(Clone, Debug)]
pub struct SlabMap<V> {
    slots: Vec<Option<(Key, V)>>,
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: foldhash::quality::RandomState,
    len: usize,
}

impl<V> Default for SlabMap<V> {
    fn default() -> Self {
        SlabMap {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: Default::default(),
            len: 0,
        }
    }
}

impl<V: PartialEq> PartialEq for SlabMap<V> {
    /// Equal contents and equal layout (what determinism requires).
    fn eq(&self, other: &Self) -> bool {
        self.slots == other.slots && self.free == other.free
    }
}

impl<V> SlabMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of slab positions (live or free); cursors and samples range over these.
    pub fn capacity_slots(&self) -> usize {
        self.slots.len()
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    pub fn find(&self, key: &[u8]) -> Option<u32> {
        let h = self.hash(key);
        let slots = &self.slots;
        self.index
            .find(h, |&i| {
                slots[i as usize].as_ref().is_some_and(|(k, _)| &**k == key)
            })
            .copied()
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.find(key).is_some()
    }

    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.find(key)
            .map(|i| &self.slots[i as usize].as_ref().unwrap().1)
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        let i = self.find(key)?;
        Some(&mut self.slots[i as usize].as_mut().unwrap().1)
    }

    pub fn at(&self, pos: u32) -> Option<(&Key, &V)> {
        self.slots
            .get(pos as usize)
            .and_then(|s| s.as_ref())
            .map(|(k, v)| (k, v))
    }

    pub fn at_mut(&mut self, pos: u32) -> Option<(&Key, &mut V)> {
        self.slots
            .get_mut(pos as usize)
            .and_then(|s| s.as_mut())
            .map(|(k, v)| (&*k, v))
    }

    /// Inserts or replaces; returns the old value if the key existed.
    pub fn insert(&mut self, key: &[u8], value: V) -> Option<V> {
        if let Some(i) = self.find(key) {
            let slot = self.slots[i as usize].as_mut().unwrap();
            return Some(std::mem::replace(&mut slot.1, value));
        }
        self.insert_new(key.into(), value);
        None
    }

    /// Inserts a key known to be absent; returns its position.
    pub fn insert_new(&mut self, key: Key, value: V) -> u32 {
        let h = self.hash(&key);
        let pos = match self.free.pop() {
            Some(p) => {
                self.slots[p as usize] = Some((key, value));
                p
            }
            None => {
                self.slots.push(Some((key, value)));
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        let hasher = &self.hasher;
        self.index.insert_unique(h, pos, |&i| {
            hasher.hash_one(&*slots[i as usize].as_ref().unwrap().0)
        });
        self.len += 1;
        pos
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        let pos = self.find(key)?;
        self.remove_at(pos).map(|(_, v)| v)
    }

    pub fn remove_at(&mut self, pos: u32) -> Option<(Key, V)> {
        let (key, value) = self.slots.get_mut(pos as usize)?.take()?;
        let h = self.hash(&key);
        if let Ok(e) = self.index.find_entry(h, |&i| i == pos) {
            e.remove();
        }
        self.len -= 1;
        if self.len == 0 {
            // Deterministic reset: the layout depends only on the operations applied.
            self.slots.clear();
            self.free.clear();
            self.index = HashTable::new();
        } else {
            self.free.push(pos);
        }
        Some((key, value))
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
        self.index = HashTable::new();
        self.len = 0;
    }

    /// Entries in slab order (deterministic for a given history).
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &V)> {
        self.slots
            .iter()
            .filter_map(|s| s.as_ref().map(|(k, v)| (k, v)))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Key, &mut V)> {
        self.slots
            .iter_mut()
            .filter_map(|s| s.as_mut().map(|(k, v)| (&*k, v)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.iter().map(|(k, _)| k)
    }

    /// A uniformly chosen live position, from `r` (a random number the caller drew).
    /// Probes a few random positions, then walks forward from the last one.
    pub fn random_pos(&self, mut next_random: impl FnMut() -> u64) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let n = self.slots.len() as u64;
        let mut r = 0;
        for _ in 0..16 {
            r = next_random() % n;
            if self.slots[r as usize].is_some() {
                return Some(r as u32);
            }
        }
        (0..n)
            .map(|d| ((r + d) % n) as u32)
            .find(|&p| self.slots[p as usize].is_some())
    }

    /// One SCAN step: visits positions from `cursor`, calling `f` for live entries,
    /// until `count` entries were seen (or 10x that many positions); returns the next
    /// cursor, 0 when the scan is complete.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&Key, &V)) -> u64 {
        let mut pos = cursor as usize;
        let mut seen = 0;
        let budget = count.max(1).saturating_mul(10);
        let mut visited = 0;
        while pos < self.slots.len() && seen < count.max(1) && visited < budget {
            if let Some((k, v)) = &self.slots[pos] {
                f(k, v);
                seen += 1;
            }
            pos += 1;
            visited += 1;
        }
        if pos >= self.slots.len() {
            0
        } else {
            pos as u64
        }
    }

    /// The slab layout for snapshots: positions with their entries, and the free list.
    pub fn layout(&self) -> (&[Option<(Key, V)>], &[u32]) {
        (&self.slots, &self.free)
    }

    /// Rebuilds a map from a snapshot layout.
    pub fn from_layout(slots: Vec<Option<(Key, V)>>, free: Vec<u32>) -> Self {
        let mut m = SlabMap {
            slots,
            free,
            index: HashTable::new(),
            hasher: Default::default(),
            len: 0,
        };
        let hasher = m.hasher.clone();
        for (i, s) in m.slots.iter().enumerate() {
            if let Some((k, _)) = s {
                let h = hasher.hash_one(&**k);
                let slots = &m.slots;
                m.index.insert_unique(h, i as u32, |&j| {
                    hasher.hash_one(&*slots[j as usize].as_ref().unwrap().0)
                });
                m.len += 1;
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_like_a_map() {
        let mut m = SlabMap::new();
        let mut model = BTreeMap::new();
        let mut x: u64 = 1;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = format!("k{}", x % 500).into_bytes();
            match x % 3 {
                0 => assert_eq!(m.remove(&k), model.remove(&k)),
                _ => assert_eq!(m.insert(&k, x), model.insert(k.clone(), x)),
            }
            assert_eq!(m.len(), model.len());
        }
        for (k, v) in &model {
            assert_eq!(m.get(k), Some(v));
        }
        let mut all: Vec<_> = m.iter().map(|(k, v)| (k.to_vec(), *v)).collect();
        all.sort();
        assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn scan_returns_every_stable_element_despite_churn() {
        let mut m = SlabMap::new();
        for i in 0..1000u32 {
            m.insert(format!("stable{i}").as_bytes(), ());
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut step = 0;
        loop {
            cursor = m.scan(cursor, 10, |k, _| {
                seen.insert(k.clone());
            });
            // Churn between calls: add and delete other keys.
            m.insert(format!("tmp{step}").as_bytes(), ());
            if step % 2 == 0 {
                m.remove(format!("tmp{}", step / 2).as_bytes());
            }
            step += 1;
            if cursor == 0 {
                break;
            }
        }
        for i in 0..1000u32 {
            assert!(
                seen.contains(format!("stable{i}").as_bytes()),
                "missed stable{i}"
            );
        }
    }

    #[test]
    fn layout_roundtrip_and_sampling_are_deterministic() {
        let mut a = SlabMap::new();
        for i in 0..100u32 {
            a.insert(format!("{i}").as_bytes(), i);
        }
        for i in (0..100u32).step_by(3) {
            a.remove(format!("{i}").as_bytes());
        }
        let (slots, free) = a.layout();
        let b = SlabMap::from_layout(slots.to_vec(), free.to_vec());
        assert!(a == b);
        assert_eq!(b.len(), a.len());
        let mut r1 = 7u64;
        let mut r2 = 7u64;
        let pa = a.random_pos(|| {
            r1 = r1.wrapping_mul(6364136223846793005).wrapping_add(1);
            r1
        });
        let pb = b.random_pos(|| {
            r2 = r2.wrapping_mul(6364136223846793005).wrapping_add(1);
            r2
        });
        assert_eq!(pa, pb);
        assert!(a.at(pa.unwrap()).is_some());
    }
}
