//! A shard's replicated record of the slot migrations it takes part in (DESIGN.md,
//! online resharding), changed only by [`MigrateOp`] entries in its log, and part of
//! its snapshots:
//! - the slots it refuses (`away`): a range fenced for its final delta, or moved away;
//!   commands on their keys get `-TRYAGAIN`, in apply for writes and under the shard
//!   lock for reads, so nothing is served from here once the fence is in the log;
//! - per migration, the newest driver attempt seen (steps of older attempts are
//!   refused) and, on the target, the last chunk applied (chunks apply once, in
//!   order).

use crate::cmd;
use crate::keyspace::Keyspace;
use crate::resp::Reply;
use bytes::Bytes;
use proto::MigrateOp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Keys deleted per `Release` entry, so one entry never holds the shard for long.
pub const RELEASE_BATCH: usize = 10_000;

/// The error a command on a refused slot gets: retryable, as during a Redis Cluster
/// resharding.
pub const TRYAGAIN: &str = "TRYAGAIN Slot is being migrated or has moved, try again later";

/// Whether a transaction's replies are the refusal of a migrating slot.
pub fn refused(replies: &[Reply]) -> bool {
    matches!(replies.first(), Some(Reply::Error(e)) if e.as_ref() == TRYAGAIN)
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub attempt: u64,
    /// Target: the last chunk applied in this attempt.
    pub seq: u64,
    pub start: u16,
    pub end: u16,
    pub source: bool,
    /// The migration is over on this shard (owned, or released): later steps of it
    /// are stale and change nothing.
    pub finished: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migrations {
    /// Sorted, disjoint slot ranges this shard refuses.
    pub away: Vec<(u16, u16)>,
    pub steps: BTreeMap<u64, Step>,
}

/// `ranges` plus `start..=end`, kept sorted, disjoint and merged.
fn add(ranges: &mut Vec<(u16, u16)>, start: u16, end: u16) {
    ranges.push((start, end));
    ranges.sort();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
    for &(s, e) in ranges.iter() {
        match out.last_mut() {
            Some(l) if s as u32 <= l.1 as u32 + 1 => l.1 = l.1.max(e),
            _ => out.push((s, e)),
        }
    }
    *ranges = out;
}

/// `ranges` minus `start..=end`.
fn remove(ranges: &mut Vec<(u16, u16)>, start: u16, end: u16) {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    for &(s, e) in ranges.iter() {
        if e < start || s > end {
            out.push((s, e));
            continue;
        }
        if s < start {
            out.push((s, start - 1));
        }
        if e > end {
            out.push((end + 1, e));
        }
    }
    *ranges = out;
}

fn stale(what: &str, id: u64) -> Reply {
    Reply::Error(format!("ERR stale migration step: {what} of migration {id}").into())
}

impl Migrations {
    pub fn is_empty(&self) -> bool {
        self.away.is_empty() && self.steps.is_empty()
    }

    /// Whether this shard refuses `slot`.
    pub fn refuses(&self, slot: u16) -> bool {
        !self.away.is_empty() && self.away.iter().any(|&(s, e)| s <= slot && slot <= e)
    }

    /// Whether any key of the commands is in a refused slot.
    pub fn refuses_any(&self, cmds: &[Vec<Bytes>]) -> bool {
        if self.away.is_empty() {
            return false;
        }
        cmds.iter().any(|argv| self.refuses_command(argv))
    }

    pub fn refuses_command(&self, argv: &[Bytes]) -> bool {
        if self.away.is_empty() || argv.is_empty() {
            return false;
        }
        let Some(spec) = cmd::lookup(&argv[0]) else {
            return false;
        };
        let spec = match argv.get(1).and_then(|s| cmd::lookup_sub(spec, s)) {
            Some(sub) => sub,
            None => spec,
        };
        spec.key_positions(argv)
            .unwrap_or_default()
            .into_iter()
            .any(|i| self.refuses(proto::key_slot(&argv[i])))
    }

    /// Applies one migration step (every replica, in log order).
    pub fn apply(&mut self, ks: &mut Keyspace, op: &MigrateOp, now: u64) -> Reply {
        match op {
            MigrateOp::Begin {
                id,
                attempt,
                start,
                end,
                source,
            } => {
                if let Some(s) = self.steps.get(id) {
                    if s.attempt > *attempt || s.finished {
                        return stale("begin", *id);
                    }
                }
                if *source {
                    // An earlier attempt's fence is lifted: the copy starts over.
                    remove(&mut self.away, *start, *end);
                } else {
                    // Whatever an earlier attempt copied goes; the range stays refused
                    // here until the map says this shard owns it.
                    ks.drop_slots(*start, *end, usize::MAX);
                    add(&mut self.away, *start, *end);
                }
                self.steps.insert(
                    *id,
                    Step {
                        attempt: *attempt,
                        seq: 0,
                        start: *start,
                        end: *end,
                        source: *source,
                        finished: false,
                    },
                );
                Reply::ok()
            }
            MigrateOp::Chunk {
                id,
                attempt,
                seq,
                items,
            } => {
                let Some(s) = self.steps.get_mut(id) else {
                    return stale("chunk", *id);
                };
                if s.source || s.finished || s.attempt != *attempt || *seq > s.seq + 1 {
                    return stale("chunk", *id);
                }
                if *seq == s.seq + 1 {
                    if let Err(e) = ks.import(items, now) {
                        return Reply::Error(e.into());
                    }
                    s.seq = *seq;
                }
                Reply::Int(s.seq as i64)
            }
            MigrateOp::Fence { id, attempt } => match self.steps.get(id) {
                Some(s) if s.source && !s.finished && s.attempt == *attempt => {
                    let (start, end) = (s.start, s.end);
                    add(&mut self.away, start, end);
                    Reply::ok()
                }
                _ => stale("fence", *id),
            },
            MigrateOp::Own { id, start, end } => match self.steps.get_mut(id) {
                Some(s) if !s.source => {
                    if !s.finished {
                        s.finished = true;
                        remove(&mut self.away, *start, *end);
                    }
                    Reply::ok()
                }
                _ => stale("own", *id),
            },
            MigrateOp::Release { id, start, end } => match self.steps.get_mut(id) {
                Some(s) if s.source => {
                    if s.finished {
                        return Reply::Int(0);
                    }
                    add(&mut self.away, *start, *end);
                    ks.drop_slots(*start, *end, RELEASE_BATCH);
                    let left = ks.count_in_slots(*start, *end);
                    if left == 0 {
                        s.finished = true;
                    }
                    Reply::Int(left as i64)
                }
                _ => stale("release", *id),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::value::Value;
    use proto::{Item, Piece};

    #[test]
    fn range_sets_merge_and_split() {
        let mut r = Vec::new();
        add(&mut r, 10, 20);
        add(&mut r, 21, 30);
        add(&mut r, 40, 50);
        assert_eq!(r, vec![(10, 30), (40, 50)]);
        remove(&mut r, 15, 45);
        assert_eq!(r, vec![(10, 14), (46, 50)]);
        remove(&mut r, 0, 16383);
        assert!(r.is_empty());
    }

    fn key_in(slot_lo: u16, slot_hi: u16) -> Bytes {
        (0..)
            .map(|i| Bytes::from(format!("key{i}")))
            .find(|k| (slot_lo..=slot_hi).contains(&proto::key_slot(k)))
            .unwrap()
    }

    #[test]
    fn steps_apply_once_in_order_and_stale_attempts_are_refused() {
        let (mut src, mut dst) = (Migrations::default(), Migrations::default());
        let (mut sks, mut dks) = (Keyspace::new(), Keyspace::new());
        let k = key_in(0, 99);
        sks.set(&k, Value::Str(b"v".to_vec()), 0);
        let begin = |attempt, source| MigrateOp::Begin {
            id: 7,
            attempt,
            start: 0,
            end: 99,
            source,
        };
        assert_eq!(src.apply(&mut sks, &begin(1, true), 0), Reply::ok());
        assert!(!src.refuses(50));
        assert_eq!(dst.apply(&mut dks, &begin(1, false), 0), Reply::ok());
        assert!(
            dst.refuses(50),
            "a target refuses the range until it owns it"
        );
        let chunk = |attempt, seq| MigrateOp::Chunk {
            id: 7,
            attempt,
            seq,
            items: vec![Item::Put {
                key: k.clone(),
                expire_at: 0,
                first: true,
                value: Piece::Str(Bytes::from(format!("v{seq}"))),
            }],
        };
        assert_eq!(dst.apply(&mut dks, &chunk(1, 1), 0), Reply::Int(1));
        // A resent chunk is a no-op; a gap is refused.
        assert_eq!(dst.apply(&mut dks, &chunk(1, 1), 0), Reply::Int(1));
        assert!(dst.apply(&mut dks, &chunk(1, 3), 0).is_error());
        // A new attempt drops what the old one copied; the old one's chunks are stale.
        assert_eq!(dst.apply(&mut dks, &begin(2, false), 0), Reply::ok());
        assert_eq!(dks.len(), 0);
        assert!(dst.apply(&mut dks, &chunk(1, 2), 0).is_error());
        assert!(dst.apply(&mut dks, &begin(1, false), 0).is_error());
        assert_eq!(dst.apply(&mut dks, &chunk(2, 1), 0), Reply::Int(1));
        // A chunk that does not fit the copy (a patch of a key it lacks) is refused
        // whole and leaves the sequence where it was.
        let misfit = MigrateOp::Chunk {
            id: 7,
            attempt: 2,
            seq: 2,
            items: vec![Item::Patch {
                key: Bytes::from_static(b"absent"),
                edit: proto::Edit::SetAdd(vec![Bytes::from_static(b"x")]),
            }],
        };
        let r = dst.apply(&mut dks, &misfit, 0);
        assert!(
            r.is_error() && format!("{r:?}").contains("does not fit"),
            "{r:?}"
        );
        assert_eq!(dst.apply(&mut dks, &chunk(2, 2), 0), Reply::Int(2));
        // The fence of an old attempt is refused; the current one refuses the range.
        assert!(src
            .apply(&mut sks, &MigrateOp::Fence { id: 7, attempt: 0 }, 0)
            .is_error());
        assert_eq!(
            src.apply(&mut sks, &MigrateOp::Fence { id: 7, attempt: 1 }, 0),
            Reply::ok()
        );
        assert!(src.refuses(0) && src.refuses(99) && !src.refuses(100));
        let set = vec![Bytes::from("SET"), k.clone(), Bytes::from("x")];
        assert!(src.refuses_any(&[set.clone()]));
        let other = key_in(100, 16383);
        assert!(!src.refuses_any(&[vec![Bytes::from("GET"), other]]));
        // A new attempt lifts the fence.
        assert_eq!(src.apply(&mut sks, &begin(2, true), 0), Reply::ok());
        assert!(!src.refuses(50));
        src.apply(&mut sks, &MigrateOp::Fence { id: 7, attempt: 2 }, 0);
        // Cutover: the target serves, the source releases.
        let own = MigrateOp::Own {
            id: 7,
            start: 0,
            end: 99,
        };
        assert_eq!(dst.apply(&mut dks, &own, 0), Reply::ok());
        assert!(!dst.refuses(50));
        let release = MigrateOp::Release {
            id: 7,
            start: 0,
            end: 99,
        };
        assert_eq!(src.apply(&mut sks, &release, 0), Reply::Int(0));
        assert_eq!(sks.len(), 0);
        assert!(src.refuses(50));
        // Finished: late steps change nothing.
        assert!(src.apply(&mut sks, &begin(3, true), 0).is_error());
        assert!(src.refuses(50));
        assert!(dst.apply(&mut dks, &chunk(2, 3), 0).is_error());
        assert_eq!(dks.len(), 1);
    }
}
