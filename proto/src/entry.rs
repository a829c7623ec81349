//! The payload of one replicated write: what the leader proposes and every replica
//! applies in log order.
//!
//! Apply must be a pure function of (state, entry), so the leader stamps into the
//! entry everything that is not in the state: the time (`time_ms`, unix ms; relative
//! expiries are resolved against it into absolute deadlines) and a `seed` from which
//! apply derives every random choice (SPOP). Expiry and eviction decisions are made on
//! the leader and travel as explicit key lists.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Version 1 of the entry encoding. Bumped only by adding variants or an envelope.
pub const ENTRY_VERSION: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteEntry {
    pub time_ms: u64,
    pub seed: u64,
    pub op: Op,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Commands (argv) executed atomically in order: one for a plain command,
    /// several for a MULTI/EXEC block. One reply per command.
    Exec(Vec<Vec<Bytes>>),
    /// Delete these keys if they are still expired at `time_ms` (active expiry).
    ExpireKeys(Vec<Bytes>),
    /// Delete these keys: eviction victims chosen by the leader.
    EvictKeys(Vec<Bytes>),
    /// An EXEC whose client WATCHed keys: runs the commands only if every watched key's
    /// digest (see the keyspace) is still what the client saw; otherwise nothing runs
    /// and apply returns no replies (the transaction aborted).
    ExecWatched {
        watched: Vec<(Bytes, u64)>,
        cmds: Vec<Vec<Bytes>>,
    },
    /// A step of a slot migration (DESIGN.md, online resharding), in the source's or
    /// the target's log.
    Migrate(MigrateOp),
}

/// The steps of moving slots `start..=end` from a source shard to a target shard.
/// Every step names the migration and the driver's attempt; a shard ignores steps of
/// an attempt older than the newest it has seen for that migration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrateOp {
    /// Target: (re)start importing: drop whatever an earlier attempt left of the range.
    /// Source: (re)start exporting: lift a fence an earlier attempt left.
    Begin {
        id: u64,
        attempt: u64,
        start: u16,
        end: u16,
        source: bool,
    },
    /// Target: keys of the range, chunk `seq` of the attempt (chunks apply in order and
    /// at most once, so a resent chunk is a no-op).
    Chunk {
        id: u64,
        attempt: u64,
        seq: u64,
        items: Vec<Item>,
    },
    /// Source: stop serving the range (reads and writes get TRYAGAIN) so the final
    /// delta can be read and sent.
    Fence { id: u64, attempt: u64 },
    /// Target, after the map flipped ownership: serve the range.
    Own { id: u64, start: u16, end: u16 },
    /// Source, after the map flipped ownership: delete the range's keys; it stays
    /// refused here.
    Release { id: u64, start: u16, end: u16 },
}

/// One key's part in a migration chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Item {
    /// The key does not exist (any more) on the source.
    Del(Bytes),
    /// The key's value, or a piece of it: `first` replaces whatever the target has;
    /// later pieces of a big collection add their elements to it.
    Put {
        key: Bytes,
        expire_at: u64,
        first: bool,
        value: Piece,
    },
    /// Edits that turn the target's copy of a big collection (sent in pieces, no
    /// deadline) into the source's current value: a change to a big key goes as
    /// what changed rather than whole again. The target refuses the chunk if its
    /// copy is missing or of another type.
    Patch { key: Bytes, edit: Edit },
}

/// One edit of a collection (zset scores as `f64::to_bits`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Edit {
    /// Drops `front` elements from the head and `back` from the tail of a list.
    ListTrim {
        front: u64,
        back: u64,
    },
    /// Adds elements before the head, in the order given (the first is the new head).
    ListPrepend(Vec<Bytes>),
    ListAppend(Vec<Bytes>),
    HashSet(Vec<(Bytes, Bytes)>),
    HashDel(Vec<Bytes>),
    SetAdd(Vec<Bytes>),
    SetRem(Vec<Bytes>),
    ZAdd(Vec<(Bytes, u64)>),
    ZRem(Vec<Bytes>),
}

/// Elements of a value (zset scores as `f64::to_bits`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Piece {
    Str(Bytes),
    List(Vec<Bytes>),
    Hash(Vec<(Bytes, Bytes)>),
    Set(Vec<Bytes>),
    ZSet(Vec<(Bytes, u64)>),
}

impl std::fmt::Display for WriteEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.op {
            Op::Exec(cmds) => format!("exec({} commands)", cmds.len()),
            Op::ExpireKeys(k) => format!("expire({} keys)", k.len()),
            Op::EvictKeys(k) => format!("evict({} keys)", k.len()),
            Op::ExecWatched { cmds, .. } => format!("exec-watched({} commands)", cmds.len()),
            Op::Migrate(m) => format!("migrate({m:?})").chars().take(80).collect(),
        };
        write!(f, "{what}@{}", self.time_ms)
    }
}

impl WriteEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENTRY_VERSION];
        bincode::serde::encode_into_std_write(self, &mut out, bincode::config::standard())
            .expect("encoding into a Vec cannot fail");
        out
    }

    pub fn decode(buf: &[u8]) -> Result<WriteEntry, String> {
        match buf.split_first() {
            Some((&ENTRY_VERSION, rest)) => {
                bincode::serde::decode_from_slice(rest, bincode::config::standard())
                    .map(|(e, _)| e)
                    .map_err(|e| format!("bad entry: {e}"))
            }
            Some((v, _)) => Err(format!("unknown entry version {v}")),
            None => Err("empty entry".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let e = WriteEntry {
            time_ms: 1_700_000_000_000,
            seed: 42,
            op: Op::Exec(vec![vec![
                Bytes::from_static(b"SET"),
                Bytes::from_static(b"k"),
                Bytes::from_static(b"v"),
            ]]),
        };
        assert_eq!(WriteEntry::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn version_one_encoding_is_stable() {
        // Golden bytes: a version-1 ExpireKeys entry. If this changes, old logs break.
        let e = WriteEntry {
            time_ms: 5,
            seed: 7,
            op: Op::ExpireKeys(vec![Bytes::from_static(b"a")]),
        };
        assert_eq!(e.encode(), vec![1, 5, 7, 1, 1, 1, b'a']);
        // Migration steps came later as a new variant; the old ones keep their tags.
        let m = WriteEntry {
            time_ms: 5,
            seed: 7,
            op: Op::Migrate(MigrateOp::Fence { id: 3, attempt: 2 }),
        };
        assert_eq!(m.encode(), vec![1, 5, 7, 4, 2, 3, 2]);
        assert_eq!(WriteEntry::decode(&m.encode()).unwrap(), m);
        assert_eq!(WriteEntry::decode(&[1, 5, 7, 1, 1, 1, b'a']).unwrap(), e);
        assert!(WriteEntry::decode(&[2, 0]).is_err());
    }

    #[test]
    fn item_tags_are_stable() {
        // Patch came after Del and Put: their tags stay 0 and 1.
        let enc = |i: &Item| bincode::serde::encode_to_vec(i, bincode::config::standard()).unwrap();
        assert_eq!(enc(&Item::Del(Bytes::from_static(b"k"))), vec![0, 1, b'k']);
        let put = Item::Put {
            key: Bytes::from_static(b"k"),
            expire_at: 0,
            first: true,
            value: Piece::Str(Bytes::from_static(b"v")),
        };
        assert_eq!(enc(&put), vec![1, 1, b'k', 0, 1, 0, 1, b'v']);
        let patch = Item::Patch {
            key: Bytes::from_static(b"k"),
            edit: Edit::ListTrim { front: 1, back: 2 },
        };
        assert_eq!(enc(&patch), vec![2, 1, b'k', 0, 1, 2]);
        let m = WriteEntry {
            time_ms: 5,
            seed: 7,
            op: Op::Migrate(MigrateOp::Chunk {
                id: 1,
                attempt: 1,
                seq: 1,
                items: vec![put, patch],
            }),
        };
        assert_eq!(WriteEntry::decode(&m.encode()).unwrap(), m);
    }
}
