//! Sorted sets: members ordered by (score, member) with rank queries.
//!
//! PLACEHOLDER layout (BTreeSet + map); rank is O(n). To be replaced by an
//! order-statistic structure with O(log n) rank.

use super::slab_map::SlabMap;
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score(pub f64);

impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.partial_cmp(&other.0).expect("scores are never NaN")
    }
}

#[derive(Debug, Default)]
pub struct ZSet {
    scores: SlabMap<f64>,
    order: BTreeSet<(Score, Box<[u8]>)>,
}

impl PartialEq for ZSet {
    fn eq(&self, other: &Self) -> bool {
        self.scores == other.scores
    }
}

impl ZSet {
    pub fn new() -> ZSet {
        ZSet::default()
    }

    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Inserts or updates; returns the previous score.
    pub fn insert(&mut self, member: &[u8], score: f64) -> Option<f64> {
        let old = self.scores.insert(member, score);
        if let Some(o) = old {
            self.order.remove(&(Score(o), Box::from(member)));
        }
        self.order.insert((Score(score), Box::from(member)));
        old
    }

    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let old = self.scores.remove(member)?;
        self.order.remove(&(Score(old), Box::from(member)));
        Some(old)
    }

    /// 0-based rank in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let s = self.score(member)?;
        Some(self.order.range(..(Score(s), Box::from(member))).count())
    }

    /// Members by ascending rank in `start..=end` (already clamped by the caller).
    pub fn range_by_rank(&self, start: usize, end: usize) -> impl Iterator<Item = (&[u8], f64)> {
        self.order
            .iter()
            .skip(start)
            .take(end + 1 - start)
            .map(|(s, m)| (&**m, s.0))
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], f64)> {
        self.order.iter().map(|(s, m)| (&**m, s.0))
    }

    pub fn members(&self) -> &SlabMap<f64> {
        &self.scores
    }

    pub fn max_member_len(&self) -> usize {
        self.scores.keys().map(|k| k.len()).max().unwrap_or(0)
    }

    pub fn memory_usage(&self) -> usize {
        self.scores.capacity_slots() * 40
            + self.scores.keys().map(|k| 2 * k.len() + 48).sum::<usize>()
    }
}
