//! Keyspace snapshots: the replicated state (values, deadlines and the slab layouts
//! that seeded random choices index) streamed to and from any `Write`/`Read`, one
//! record at a time, so a snapshot never needs a second copy of the keyspace in memory.
//!
//! Format (version 1): `SHDSNAP1`, then bincode (serde) records — the slot count, one
//! `Option<SlotRecord>` per main-dict slot, the free list — then the CRC32 of every
//! byte before it. A bad checksum, magic or record is an error, never a partial load.
//! Access metadata (LRU/LFU) is local soft state and starts fresh on restore.

use super::slab_map::{Key, SlabMap};
use super::value::Value;
use super::zset::ZSet;
use super::{AccessMeta, Entry, Keyspace};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{self, Read, Write};

const MAGIC: &[u8; 8] = b"SHDSNAP1";

#[derive(Serialize, Deserialize)]
enum ValueRecord {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
    Hash {
        slots: Vec<Option<(Vec<u8>, Vec<u8>)>>,
        free: Vec<u32>,
    },
    Set {
        slots: Vec<Option<Vec<u8>>>,
        free: Vec<u32>,
    },
    ZSet {
        slots: Vec<Option<(Vec<u8>, f64)>>,
        free: Vec<u32>,
        compact: bool,
    },
}

#[derive(Serialize, Deserialize)]
struct SlotRecord {
    key: Vec<u8>,
    expire_at: u64,
    value: ValueRecord,
}

#[derive(Debug)]
pub enum SnapshotError {
    Io(io::Error),
    BadMagic,
    BadRecord(String),
    Checksum { stored: u32, computed: u32 },
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Io(e) => write!(f, "snapshot i/o: {e}"),
            SnapshotError::BadMagic => write!(f, "not a shardis snapshot (bad magic or version)"),
            SnapshotError::BadRecord(e) => write!(f, "corrupt snapshot record: {e}"),
            SnapshotError::Checksum { stored, computed } => {
                write!(
                    f,
                    "snapshot checksum mismatch: stored {stored:08x}, computed {computed:08x}"
                )
            }
        }
    }
}

impl std::error::Error for SnapshotError {}

fn layout_of<V, R>(m: &SlabMap<V>, f: impl Fn(&Key, &V) -> R) -> (Vec<Option<R>>, Vec<u32>) {
    let (slots, free) = m.layout();
    (
        slots
            .iter()
            .map(|s| s.as_ref().map(|(k, v)| f(k, v)))
            .collect(),
        free.to_vec(),
    )
}

fn map_from<V, R>(slots: Vec<Option<R>>, free: Vec<u32>, f: impl Fn(R) -> (Key, V)) -> SlabMap<V> {
    SlabMap::from_layout(slots.into_iter().map(|s| s.map(&f)).collect(), free)
}

fn record(value: &Value) -> ValueRecord {
    match value {
        Value::Str(s) => ValueRecord::Str(s.clone()),
        Value::List(l) => ValueRecord::List(l.iter().map(|e| e.to_vec()).collect()),
        Value::Hash(h) => {
            let (slots, free) = layout_of(h, |k, v| (k.to_vec(), v.to_vec()));
            ValueRecord::Hash { slots, free }
        }
        Value::Set(s) => {
            let (slots, free) = layout_of(s, |k, _| k.to_vec());
            ValueRecord::Set { slots, free }
        }
        Value::ZSet(z) => {
            let (members, compact) = z.parts();
            let (slots, free) = layout_of(members, |k, v| (k.to_vec(), *v));
            ValueRecord::ZSet {
                slots,
                free,
                compact,
            }
        }
    }
}

fn value(r: ValueRecord) -> Value {
    match r {
        ValueRecord::Str(s) => Value::Str(s),
        ValueRecord::List(l) => Value::List(Box::new(
            l.into_iter().map(Key::from).collect::<VecDeque<_>>(),
        )),
        ValueRecord::Hash { slots, free } => {
            Value::Hash(Box::new(map_from(slots, free, |(k, v)| {
                (Key::from(k), Key::from(v))
            })))
        }
        ValueRecord::Set { slots, free } => {
            Value::Set(Box::new(map_from(slots, free, |k| (Key::from(k), ()))))
        }
        ValueRecord::ZSet {
            slots,
            free,
            compact,
        } => {
            let members = map_from(slots, free, |(k, s)| (Key::from(k), s));
            Value::ZSet(Box::new(ZSet::from_parts(members, compact)))
        }
    }
}

/// A writer that keeps the CRC32 of what passes through.
struct Crc<W> {
    inner: W,
    hasher: crc32fast::Hasher,
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that keeps the CRC32 of what passes through.
struct CrcRead<R> {
    inner: R,
    hasher: crc32fast::Hasher,
}

impl<R: Read> Read for CrcRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn put<T: Serialize>(w: &mut impl Write, v: &T) -> io::Result<()> {
    bincode::serde::encode_into_std_write(v, w, bincode::config::standard())
        .map(|_| ())
        .map_err(io::Error::other)
}

fn get<T: serde::de::DeserializeOwned>(r: &mut impl Read) -> Result<T, SnapshotError> {
    bincode::serde::decode_from_std_read(r, bincode::config::standard()).map_err(|e| match e {
        bincode::error::DecodeError::Io { inner, .. } => SnapshotError::Io(inner),
        other => SnapshotError::BadRecord(other.to_string()),
    })
}

/// Streams the keyspace's replicated state to `w`; returns the bytes' CRC32.
pub fn write(ks: &Keyspace, w: impl Write) -> io::Result<u32> {
    let mut w = Crc {
        inner: w,
        hasher: crc32fast::Hasher::new(),
    };
    w.write_all(MAGIC)?;
    let (slots, free) = ks.dict.layout();
    put(&mut w, &(slots.len() as u64))?;
    for slot in slots {
        let rec = slot.as_ref().map(|(k, e)| SlotRecord {
            key: k.to_vec(),
            expire_at: e.expire_at,
            value: record(&e.value),
        });
        put(&mut w, &rec)?;
    }
    put(&mut w, &free.to_vec())?;
    let crc = w.hasher.clone().finalize();
    w.inner.write_all(&crc.to_le_bytes())?;
    w.flush()?;
    Ok(crc)
}

/// Reads a snapshot written by [`write`] into a new keyspace, checking it whole.
pub fn read(r: impl Read) -> Result<Keyspace, SnapshotError> {
    let mut r = CrcRead {
        inner: r,
        hasher: crc32fast::Hasher::new(),
    };
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(SnapshotError::Io)?;
    if &magic != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let n: u64 = get(&mut r)?;
    let mut slots = Vec::with_capacity(n.min(1 << 20) as usize);
    for _ in 0..n {
        let rec: Option<SlotRecord> = get(&mut r)?;
        slots.push(rec.map(|s| {
            let entry = Entry {
                value: value(s.value),
                expire_at: s.expire_at,
                volatile_pos: 0,
                access: AccessMeta::default(),
                slot_prev: super::NIL,
                slot_next: super::NIL,
            };
            (Key::from(s.key), entry)
        }));
    }
    let free: Vec<u32> = get(&mut r)?;
    if free
        .iter()
        .any(|&p| p as usize >= slots.len() || slots[p as usize].is_some())
    {
        return Err(SnapshotError::BadRecord(
            "free list names a live or missing slot".into(),
        ));
    }
    let computed = r.hasher.clone().finalize();
    let mut stored = [0u8; 4];
    r.inner.read_exact(&mut stored).map_err(SnapshotError::Io)?;
    let stored = u32::from_le_bytes(stored);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    let mut ks = Keyspace::new();
    ks.dict = SlabMap::from_layout(slots, free);
    ks.rebuild_volatile();
    ks.rebuild_slot_index();
    Ok(ks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::testing::{argv, run};
    use crate::cmd::{apply, ApplyLimits};
    use crate::keyspace::rng::Rng;
    use proto::{Op, WriteEntry};

    fn populated() -> Keyspace {
        let mut ks = Keyspace::new();
        let mut r = Rng::new(5);
        for i in 0..400u64 {
            let k = format!("k{}", r.below(60));
            let m = format!("m{}", r.below(30));
            let cmd: Vec<String> = match i % 9 {
                0 => vec![
                    "SET".into(),
                    k,
                    format!("v{i}"),
                    "PX".into(),
                    (1000 + i).to_string(),
                ],
                1 => vec!["HSET".into(), k, m, i.to_string()],
                2 => vec!["SADD".into(), k, m],
                3 => vec!["ZADD".into(), k, (i % 7).to_string(), m],
                4 => vec!["RPUSH".into(), k, m],
                5 => vec!["DEL".into(), k],
                6 => vec!["SREM".into(), k, m],
                7 => vec!["HDEL".into(), k, m],
                _ => vec!["ZREM".into(), k, m],
            };
            let words: Vec<&str> = cmd.iter().map(|s| s.as_str()).collect();
            run(&mut ks, 0, &words);
        }
        ks
    }

    #[test]
    fn roundtrip_keeps_state_layout_and_ttl_index() {
        let ks = populated();
        let mut buf = Vec::new();
        write(&ks, &mut buf).unwrap();
        let back = read(&buf[..]).unwrap();
        assert!(back.same_state(&ks));
        assert_eq!(back.len(), ks.len());
        assert_eq!(back.volatile_len(), ks.volatile_len());
        // Byte-identical snapshots of identical states.
        let mut again = Vec::new();
        write(&back, &mut again).unwrap();
        assert_eq!(again, buf);
    }

    #[test]
    fn a_restored_replica_makes_the_same_random_choices() {
        let mut a = populated();
        let mut buf = Vec::new();
        write(&a, &mut buf).unwrap();
        let mut b = read(&buf[..]).unwrap();
        let mut r = Rng::new(11);
        for step in 0..300u64 {
            let k = format!("k{}", r.below(60));
            let words: Vec<&str> = match step % 3 {
                0 => vec!["SPOP", &k, "2"],
                1 => vec!["SADD", &k, "x", "y", "z"],
                _ => vec!["HRANDFIELD", &k, "-2"],
            };
            let entry = WriteEntry {
                time_ms: 10,
                seed: r.next_u64(),
                op: Op::Exec(vec![argv(&words)]),
            };
            assert_eq!(
                apply(&mut a, &entry, ApplyLimits::default()),
                apply(&mut b, &entry, ApplyLimits::default())
            );
        }
        assert!(a.same_state(&b));
    }

    #[test]
    fn corruption_is_detected_never_loaded() {
        let ks = populated();
        let mut buf = Vec::new();
        write(&ks, &mut buf).unwrap();
        for pos in [8, buf.len() / 2, buf.len() - 5, buf.len() - 1] {
            let mut bad = buf.clone();
            bad[pos] ^= 0x40;
            assert!(read(&bad[..]).is_err(), "flipped byte {pos} went unnoticed");
        }
        assert!(matches!(
            read(&buf[..buf.len() - 3]),
            Err(SnapshotError::Io(_))
        ));
        assert!(matches!(
            read(&b"NOTASNAP...."[..]),
            Err(SnapshotError::BadMagic)
        ));
    }
}
