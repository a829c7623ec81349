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
}

impl std::fmt::Display for WriteEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.op {
            Op::Exec(cmds) => format!("exec({} commands)", cmds.len()),
            Op::ExpireKeys(k) => format!("expire({} keys)", k.len()),
            Op::EvictKeys(k) => format!("evict({} keys)", k.len()),
            Op::ExecWatched { cmds, .. } => format!("exec-watched({} commands)", cmds.len()),
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
        assert_eq!(WriteEntry::decode(&[1, 5, 7, 1, 1, 1, b'a']).unwrap(), e);
        assert!(WriteEntry::decode(&[2, 0]).is_err());
    }
}
