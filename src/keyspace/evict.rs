//! Eviction: Redis's approximated LRU/LFU/TTL with an eviction pool, and random
//! eviction. Only the leader chooses victims; they are deleted through the write path
//! (an `EvictKeys` entry), never by followers.

use super::access::AccessConfig;
use super::rng::Rng;
use super::slab_map::Key;
use super::Keyspace;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictionPolicy {
    NoEviction,
    AllKeysLru,
    AllKeysLfu,
    AllKeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

impl EvictionPolicy {
    pub const ALL: [(EvictionPolicy, &'static str); 8] = [
        (EvictionPolicy::NoEviction, "noeviction"),
        (EvictionPolicy::AllKeysLru, "allkeys-lru"),
        (EvictionPolicy::AllKeysLfu, "allkeys-lfu"),
        (EvictionPolicy::AllKeysRandom, "allkeys-random"),
        (EvictionPolicy::VolatileLru, "volatile-lru"),
        (EvictionPolicy::VolatileLfu, "volatile-lfu"),
        (EvictionPolicy::VolatileRandom, "volatile-random"),
        (EvictionPolicy::VolatileTtl, "volatile-ttl"),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(p, _)| *p == self).unwrap().1
    }

    pub fn parse(s: &str) -> Option<EvictionPolicy> {
        Self::ALL
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(s))
            .map(|(p, _)| *p)
    }

    pub fn is_lfu(self) -> bool {
        matches!(
            self,
            EvictionPolicy::AllKeysLfu | EvictionPolicy::VolatileLfu
        )
    }

    pub fn volatile_only(self) -> bool {
        matches!(
            self,
            EvictionPolicy::VolatileLru
                | EvictionPolicy::VolatileLfu
                | EvictionPolicy::VolatileRandom
                | EvictionPolicy::VolatileTtl
        )
    }
}

/// EVPOOL_SIZE in Redis.
pub const POOL_SIZE: usize = 16;

/// The best candidates seen across sampling rounds, ascending by idle score (the
/// last is evicted first). Kept between evictions as Redis does.
#[derive(Default, Debug)]
pub struct EvictionPool {
    entries: Vec<(u64, Key)>,
}

impl EvictionPool {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, idle: u64, key: &Key) {
        if self.entries.iter().any(|(_, k)| k == key) {
            return;
        }
        let pos = self.entries.partition_point(|(i, _)| *i < idle);
        if self.entries.len() == POOL_SIZE {
            if pos == 0 {
                return; // worse than everything in a full pool
            }
            self.entries.remove(0);
            self.entries.insert(pos - 1, (idle, key.clone()));
        } else {
            self.entries.insert(pos, (idle, key.clone()));
        }
    }

    /// evictionPoolPopulate: samples `samples` keys and keeps the best.
    pub fn populate(
        &mut self,
        ks: &Keyspace,
        policy: EvictionPolicy,
        samples: u32,
        cfg: &AccessConfig,
        now: u64,
        rng: &mut Rng,
    ) {
        for _ in 0..samples {
            let picked = if policy.volatile_only() {
                ks.random_volatile(|| rng.next_u64())
            } else {
                ks.random_entry(|| rng.next_u64())
            };
            let Some((key, e)) = picked else { return };
            let idle = match policy {
                EvictionPolicy::AllKeysLru | EvictionPolicy::VolatileLru => e.access.idle_ms(now),
                EvictionPolicy::AllKeysLfu | EvictionPolicy::VolatileLfu => {
                    255 - e.access.frequency(cfg, now) as u64
                }
                EvictionPolicy::VolatileTtl => u64::MAX - e.expire_at().unwrap_or(u64::MAX),
                _ => 0,
            };
            self.insert(idle, key);
        }
    }

    /// Takes the best candidate that still exists.
    fn pop_best(&mut self, ks: &Keyspace) -> Option<Key> {
        while let Some((_, key)) = self.entries.pop() {
            if ks.dict.contains(&key) {
                return Some(key);
            }
        }
        None
    }
}

/// Chooses the next victim under `policy`, or `None` if there is nothing to evict.
pub fn choose_victim(
    ks: &Keyspace,
    pool: &mut EvictionPool,
    policy: EvictionPolicy,
    samples: u32,
    cfg: &AccessConfig,
    now: u64,
    rng: &mut Rng,
) -> Option<Key> {
    match policy {
        EvictionPolicy::NoEviction => None,
        EvictionPolicy::AllKeysRandom => ks.random_entry(|| rng.next_u64()).map(|(k, _)| k.clone()),
        EvictionPolicy::VolatileRandom => ks
            .random_volatile(|| rng.next_u64())
            .map(|(k, _)| k.clone()),
        _ => {
            // Like Redis: sample until the pool yields a live key or the keyspace is empty.
            for _ in 0..16 {
                let candidates = if policy.volatile_only() {
                    ks.volatile_len()
                } else {
                    ks.len()
                };
                if candidates == 0 {
                    return None;
                }
                pool.populate(ks, policy, samples, cfg, now, rng);
                if let Some(k) = pool.pop_best(ks) {
                    return Some(k);
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::Value;

    #[test]
    fn pool_keeps_the_most_idle() {
        let mut p = EvictionPool::new();
        for i in 0..40u64 {
            p.insert((i * 7919) % 101, &Key::from(format!("k{i}").as_bytes()));
        }
        assert_eq!(p.len(), POOL_SIZE);
        let idles: Vec<u64> = p.entries.iter().map(|(i, _)| *i).collect();
        let mut sorted = idles.clone();
        sorted.sort();
        assert_eq!(idles, sorted);
        let mut all: Vec<u64> = (0..40u64).map(|i| (i * 7919) % 101).collect();
        all.sort();
        assert_eq!(idles, all[all.len() - POOL_SIZE..]);
    }

    #[test]
    fn lru_prefers_idle_keys() {
        let cfg = AccessConfig::default();
        let mut ks = Keyspace::new();
        // 100 old keys (touched at t=0), 100 fresh keys (t=100s).
        for i in 0..100 {
            ks.set(format!("old{i}").as_bytes(), Value::Str(b"v".to_vec()), 0);
        }
        for i in 0..100 {
            ks.set(
                format!("new{i}").as_bytes(),
                Value::Str(b"v".to_vec()),
                100_000,
            );
        }
        let mut pool = EvictionPool::new();
        let mut rng = Rng::new(1);
        let mut old = 0;
        for _ in 0..50 {
            let k = choose_victim(
                &ks,
                &mut pool,
                EvictionPolicy::AllKeysLru,
                5,
                &cfg,
                100_000,
                &mut rng,
            )
            .unwrap();
            if k.starts_with(b"old") {
                old += 1;
            }
            ks.delete_evicted(&[k]);
        }
        assert!(old >= 48, "evicted {old}/50 old keys");
    }

    #[test]
    fn volatile_ttl_prefers_nearest_deadline_and_skips_persistent() {
        let cfg = AccessConfig::default();
        let mut ks = Keyspace::new();
        for i in 0..20u64 {
            ks.set_with_expiry(
                format!("t{i}").as_bytes(),
                Value::Str(b"v".to_vec()),
                Some(1_000_000 + i * 1000),
                0,
            );
            ks.set(format!("p{i}").as_bytes(), Value::Str(b"v".to_vec()), 0);
        }
        let mut pool = EvictionPool::new();
        let mut rng = Rng::new(3);
        for _ in 0..20 {
            let k = choose_victim(
                &ks,
                &mut pool,
                EvictionPolicy::VolatileTtl,
                10,
                &cfg,
                0,
                &mut rng,
            )
            .unwrap();
            assert!(k.starts_with(b"t"));
            ks.delete_evicted(&[k]);
        }
        assert!(choose_victim(
            &ks,
            &mut pool,
            EvictionPolicy::VolatileTtl,
            10,
            &cfg,
            0,
            &mut rng
        )
        .is_none());
        assert!(choose_victim(
            &ks,
            &mut pool,
            EvictionPolicy::NoEviction,
            10,
            &cfg,
            0,
            &mut rng
        )
        .is_none());
    }
}
