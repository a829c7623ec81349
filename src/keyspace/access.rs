//! LRU clock and LFU counter per key, as Redis keeps them in the 24 `lru` bits of an
//! object: LRU is a seconds clock; LFU is 16 bits of minutes (last decrement time)
//! and an 8-bit logarithmic counter.

use std::sync::atomic::{AtomicU32, Ordering};

pub const LRU_CLOCK_MAX: u32 = (1 << 24) - 1;
pub const LFU_INIT_VAL: u8 = 5;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AccessConfig {
    pub lfu: bool,
    pub lfu_log_factor: u32,
    pub lfu_decay_time: u32,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            lfu: false,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
        }
    }
}

#[derive(Debug, Default)]
pub struct AccessMeta(AtomicU32);

pub fn lru_clock(now_ms: u64) -> u32 {
    ((now_ms / 1000) as u32) & LRU_CLOCK_MAX
}

fn minutes(now_ms: u64) -> u32 {
    ((now_ms / 1000 / 60) as u32) & 65535
}

fn minutes_elapsed(ldt: u32, now_ms: u64) -> u32 {
    let now = minutes(now_ms);
    if now >= ldt {
        now - ldt
    } else {
        65535 - ldt + now
    }
}

/// Redis's LFULogIncr: the higher the counter, the less likely an increment.
pub fn lfu_log_incr(counter: u8, log_factor: u32, r: f64) -> u8 {
    if counter == 255 {
        return 255;
    }
    let baseval = (counter as f64 - LFU_INIT_VAL as f64).max(0.0);
    let p = 1.0 / (baseval * log_factor as f64 + 1.0);
    if r < p {
        counter + 1
    } else {
        counter
    }
}

/// Redis's LFUDecrAndReturn: one decrement per `decay_time` minutes elapsed.
pub fn lfu_decayed(packed: u32, decay_time: u32, now_ms: u64) -> u8 {
    let ldt = packed >> 8;
    let counter = (packed & 255) as u8;
    let periods = if decay_time > 0 {
        minutes_elapsed(ldt, now_ms) / decay_time
    } else {
        0
    };
    if periods == 0 {
        counter
    } else if periods > counter as u32 {
        0
    } else {
        counter - periods as u8
    }
}

fn local_unit() -> f64 {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = Cell::new(super::rng::Rng::local_seed() | 1));
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

impl AccessMeta {
    pub fn new(cfg: &AccessConfig, now_ms: u64) -> AccessMeta {
        let v = if cfg.lfu {
            (minutes(now_ms) << 8) | LFU_INIT_VAL as u32
        } else {
            lru_clock(now_ms)
        };
        AccessMeta(AtomicU32::new(v))
    }

    pub fn raw(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    /// Records an access (Redis's updateLFU / LRU clock refresh).
    pub fn touch(&self, cfg: &AccessConfig, now_ms: u64) {
        let v = if cfg.lfu {
            let c = lfu_decayed(self.raw(), cfg.lfu_decay_time, now_ms);
            let c = lfu_log_incr(c, cfg.lfu_log_factor, local_unit());
            (minutes(now_ms) << 8) | c as u32
        } else {
            lru_clock(now_ms)
        };
        self.0.store(v, Ordering::Relaxed);
    }

    /// Milliseconds since the last access (LRU mode), as Redis's estimateObjectIdleTime.
    pub fn idle_ms(&self, now_ms: u64) -> u64 {
        let clock = lru_clock(now_ms);
        let lru = self.raw() & LRU_CLOCK_MAX;
        let secs = if clock >= lru {
            clock - lru
        } else {
            clock + (LRU_CLOCK_MAX - lru)
        };
        secs as u64 * 1000
    }

    /// The decayed LFU counter (LFU mode): OBJECT FREQ.
    pub fn frequency(&self, cfg: &AccessConfig, now_ms: u64) -> u8 {
        lfu_decayed(self.raw(), cfg.lfu_decay_time, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfu_increment_probability_follows_redis() {
        // At or below LFU_INIT_VAL every hit increments.
        assert_eq!(lfu_log_incr(3, 10, 0.999), 4);
        assert_eq!(lfu_log_incr(5, 10, 0.999), 6);
        // counter 6, factor 10: p = 1/11.
        assert_eq!(lfu_log_incr(6, 10, 0.09), 7);
        assert_eq!(lfu_log_incr(6, 10, 0.091), 6);
        assert_eq!(lfu_log_incr(255, 0, 0.0), 255);
        // Redis's table: factor 10 reaches ~10 after 100 hits, ~18 after 1000.
        let mut seed = 12345u64;
        let mut c = LFU_INIT_VAL;
        for _ in 0..1000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            c = lfu_log_incr(c, 10, (seed >> 11) as f64 / (1u64 << 53) as f64);
        }
        assert!((14..=22).contains(&c), "counter after 1000 hits: {c}");
    }

    #[test]
    fn lfu_decays_one_per_period() {
        let now = 10 * 60_000; // minute 10
        let packed = (7 << 8) | 20; // last decrement at minute 7, counter 20
        assert_eq!(lfu_decayed(packed, 1, now), 17);
        assert_eq!(lfu_decayed(packed, 2, now), 19);
        assert_eq!(lfu_decayed(packed, 0, now), 20);
        assert_eq!(lfu_decayed((7 << 8) | 2, 1, now), 0);
    }

    #[test]
    fn lru_idle_time_wraps() {
        let cfg = AccessConfig::default();
        let m = AccessMeta::new(&cfg, 5_000);
        assert_eq!(m.idle_ms(12_500), 7_000);
        let m = AccessMeta(AtomicU32::new(LRU_CLOCK_MAX - 1));
        assert_eq!(m.idle_ms(2_000), 3_000);
    }
}
