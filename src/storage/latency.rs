//! A lock-free latency histogram in microseconds, for fsync timings shown by INFO.
//!
//! Log-linear buckets: values below 8 µs are exact, above that each power of two is
//! split into 8 equal buckets, so a reported percentile is at most 12.5% above the
//! true value (it reports the bucket's upper bound, never an underestimate). Recording
//! is one relaxed atomic add, so the fsync path never takes a lock for it.

use std::sync::atomic::{AtomicU64, Ordering};

const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets for every u64: 8 exact ones, then 8 per power of two from 2^3 to 2^63.
const BUCKETS: usize = ((64 - SUB_BITS + 1) as usize) * SUB as usize;

pub struct LatencyHistogram {
    counts: Box<[AtomicU64]>,
}

fn bucket_of(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let msb = 63 - us.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (us >> shift) & (SUB - 1);
    ((shift as u64 + 1) * SUB + sub) as usize
}

/// The largest value that falls in bucket `b`.
fn bucket_max(b: usize) -> u64 {
    let b = b as u64;
    if b < SUB {
        return b;
    }
    let shift = b / SUB - 1;
    let low = (SUB + b % SUB) << shift;
    low + ((1u64 << shift) - 1)
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LatencyHistogram {
    pub fn record(&self, us: u64) {
        self.counts[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The smallest bucket bound that at least `q` (0..=1) of the samples are under;
    /// 0 when nothing was recorded.
    pub fn percentile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_max(b);
            }
        }
        bucket_max(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_u64_in_order() {
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_max(BUCKETS - 1), u64::MAX);
        let mut prev = 0;
        for v in (0..5000u64).chain([1 << 40, (1 << 40) + 12345, u64::MAX / 3]) {
            let b = bucket_of(v);
            assert!(b >= prev, "bucket order at {v}");
            prev = b;
            assert!(bucket_max(b) >= v, "{v} above its bucket's max");
            assert!(
                b == 0 || bucket_max(b - 1) < v,
                "{v} belongs to an earlier bucket"
            );
            // Relative error bound of the reported value.
            assert!(bucket_max(b) - v <= v / 8 + 1, "{v} -> {}", bucket_max(b));
        }
    }

    #[test]
    fn percentiles() {
        let h = LatencyHistogram::default();
        assert_eq!(h.percentile(0.5), 0);
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.count(), 1000);
        let p50 = h.percentile(0.5);
        assert!((500..=500 + 500 / 8).contains(&p50), "{p50}");
        let p99 = h.percentile(0.99);
        assert!((990..=990 + 990 / 8).contains(&p99), "{p99}");
        assert!(h.percentile(1.0) >= 1000);
        h.record(1_000_000);
        assert!(h.percentile(1.0) >= 1_000_000);
    }
}
