//! The on-disk format of the node's shared Raft log ([`super::log_engine`]): records,
//! checkpoints, segment files and the scan that recovers them. No state, no policy.
//!
//! Disk format (a contract: only ever extended):
//! - segment files `dir/seg-<sequence number, 20 digits>.wal`, numbered from 1 up; a
//!   segment's records are a run of
//!   `len: u32 LE | crc: u32 LE | kind: u8 | group: u64 LE | body (len bytes)`, where
//!   `crc` is the crc32 of every byte of the record but the crc itself, so a zero-filled
//!   tail (what a crash can leave after a file grew but before its data landed) never
//!   passes as a record;
//! - record bodies by kind (all integers LE):
//!   - `ENTRY` (1): `index: u64 | the entry` (openraft's entry, bincode, standard config);
//!   - `TRUNCATE` (2): `from: u64`, the group's entries >= from are gone;
//!   - `PURGE` (3): `index: u64 | log id`, entries <= index are gone; the log id (bincode)
//!     keeps its term for openraft;
//!   - `VOTE` (4): the vote (bincode);
//!   - `COMMITTED` (5): the committed log id (bincode of an `Option`);
//!   - `CHECKPOINT` (6, group 0): `version: u16 | segment sequence: u64 | count: u32 |
//!     count x group state`, a group state being `group: u64 | flags: u8 | vote? | committed?
//!     | purged? | last?` where flags bit 0/1/2/3 says vote/committed/purged/last follows;
//!     vote and committed are `len: u32 | bytes`, purged is `index: u64 | len: u32 | log id`,
//!     last is `index: u64` (the group's last entry then; absent when it had none).
//!
//! Every segment starts with a checkpoint of every group's hard state, so a segment is
//! needed only for the entries it holds.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Bytes before a record's body.
pub(crate) const HEADER: usize = 4 + 4 + 1 + 8;
/// No record is bigger; a larger length field is garbage, not a record.
pub(crate) const MAX_BODY: usize = 1 << 30;
const CHECKPOINT_VERSION: u16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Entry = 1,
    Truncate = 2,
    Purge = 3,
    Vote = 4,
    Committed = 5,
    Checkpoint = 6,
    /// The group left the node: everything it had is forgotten.
    Drop = 7,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Entry,
            2 => Kind::Truncate,
            3 => Kind::Purge,
            4 => Kind::Vote,
            5 => Kind::Committed,
            6 => Kind::Checkpoint,
            7 => Kind::Drop,
            _ => return None,
        })
    }
}

pub(crate) fn invalid_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:020}.wal"))
}

pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".wal")?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

fn crc(head: &[u8], body: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    for part in body {
        h.update(part);
    }
    h.finalize()
}

/// Appends one record whose body is the concatenation of `body`; returns its length.
pub(crate) fn encode_record(
    buf: &mut Vec<u8>,
    kind: Kind,
    group: u64,
    body: &[&[u8]],
) -> io::Result<u64> {
    let len: usize = body.iter().map(|p| p.len()).sum();
    if len > MAX_BODY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("log record of {len} bytes is too large"),
        ));
    }
    // The crc covers len | kind | group | body: the header minus the crc itself.
    let mut head = [0u8; 13];
    head[..4].copy_from_slice(&(len as u32).to_le_bytes());
    head[4] = kind as u8;
    head[5..].copy_from_slice(&group.to_le_bytes());
    buf.extend_from_slice(&head[..4]);
    buf.extend_from_slice(&crc(&head, body).to_le_bytes());
    buf.extend_from_slice(&head[4..]);
    for part in body {
        buf.extend_from_slice(part);
    }
    Ok((HEADER + len) as u64)
}

/// One checked record.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    pub kind: Kind,
    pub group: u64,
    pub body: &'a [u8],
}

impl Record<'_> {
    pub fn len(&self) -> u64 {
        (HEADER + self.body.len()) as u64
    }
}

/// Checks the record at the start of `rest`: the record, or why it is not one.
pub(crate) fn decode_record(rest: &[u8]) -> Result<Record<'_>, String> {
    if rest.len() < HEADER {
        return Err("short record header".into());
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
    let stored = u32::from_le_bytes(rest[4..8].try_into().unwrap());
    if len > MAX_BODY || rest.len() - HEADER < len {
        return Err(format!("short record ({len} bytes of body announced)"));
    }
    let body = &rest[HEADER..HEADER + len];
    let mut head = [0u8; 13];
    head[..4].copy_from_slice(&rest[0..4]);
    head[4..].copy_from_slice(&rest[8..HEADER]);
    if crc(&head, &[body]) != stored {
        return Err("CRC mismatch".into());
    }
    let kind = Kind::from_u8(rest[8]).ok_or_else(|| format!("unknown record kind {}", rest[8]))?;
    let group = u64::from_le_bytes(rest[9..17].try_into().unwrap());
    Ok(Record { kind, group, body })
}

/// A record found by [`scan`], at `offset` in its segment.
pub(crate) struct Found<'a> {
    pub offset: u64,
    pub record: Record<'a>,
}

/// What a scan of one segment found: its records, the end of the valid prefix, and why
/// the scan stopped before the end of the data (if it did).
pub(crate) struct Scan<'a> {
    pub records: Vec<Found<'a>>,
    pub valid: u64,
    pub problem: Option<String>,
}

/// Scans a segment's records, stopping at the first short or corrupt one.
pub(crate) fn scan(data: &[u8]) -> Scan<'_> {
    let mut records = Vec::new();
    let mut pos = 0usize;
    let problem = loop {
        if pos == data.len() {
            break None;
        }
        match decode_record(&data[pos..]) {
            Ok(record) => {
                let len = record.len() as usize;
                records.push(Found {
                    offset: pos as u64,
                    record,
                });
                pos += len;
            }
            Err(problem) => break Some(problem),
        }
    };
    Scan {
        records,
        valid: pos as u64,
        problem,
    }
}

/// Little-endian reader over a record body; every short read is corruption.
pub(crate) struct Body<'a>(pub &'a [u8]);

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(invalid_data("log record body too short"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }

    pub fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    pub fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    pub fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub fn rest(self) -> &'a [u8] {
        self.0
    }

    pub fn end(self) -> io::Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(invalid_data("trailing bytes in a log record"))
        }
    }
}

/// One group's hard state as a checkpoint carries it (opaque encoded values).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupCheckpoint {
    pub group: u64,
    pub vote: Option<Vec<u8>>,
    pub committed: Option<Vec<u8>>,
    pub purged: Option<(u64, Vec<u8>)>,
    pub last: Option<u64>,
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
    buf.extend_from_slice(b);
}

pub(crate) fn encode_checkpoint(seq: u64, groups: &[GroupCheckpoint]) -> Vec<u8> {
    let mut buf = Vec::new();
    buf.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&(groups.len() as u32).to_le_bytes());
    for g in groups {
        buf.extend_from_slice(&g.group.to_le_bytes());
        let flags = u8::from(g.vote.is_some())
            | u8::from(g.committed.is_some()) << 1
            | u8::from(g.purged.is_some()) << 2
            | u8::from(g.last.is_some()) << 3;
        buf.push(flags);
        if let Some(v) = &g.vote {
            put_bytes(&mut buf, v);
        }
        if let Some(c) = &g.committed {
            put_bytes(&mut buf, c);
        }
        if let Some((index, id)) = &g.purged {
            buf.extend_from_slice(&index.to_le_bytes());
            put_bytes(&mut buf, id);
        }
        if let Some(last) = g.last {
            buf.extend_from_slice(&last.to_le_bytes());
        }
    }
    buf
}

/// The segment sequence number a checkpoint names, and its group states.
pub(crate) fn decode_checkpoint(body: &[u8]) -> io::Result<(u64, Vec<GroupCheckpoint>)> {
    let mut b = Body(body);
    let version = b.u16()?;
    if version != CHECKPOINT_VERSION {
        return Err(invalid_data(format!(
            "unknown checkpoint version {version}"
        )));
    }
    let seq = b.u64()?;
    let count = b.u32()?;
    let mut groups = Vec::new();
    for _ in 0..count {
        let group = b.u64()?;
        let flags = b.u8()?;
        if flags & !0b1111 != 0 {
            return Err(invalid_data(format!("unknown checkpoint flags {flags:#x}")));
        }
        let mut g = GroupCheckpoint {
            group,
            ..GroupCheckpoint::default()
        };
        if flags & 1 != 0 {
            g.vote = Some(b.bytes()?.to_vec());
        }
        if flags & 2 != 0 {
            g.committed = Some(b.bytes()?.to_vec());
        }
        if flags & 4 != 0 {
            let index = b.u64()?;
            g.purged = Some((index, b.bytes()?.to_vec()));
        }
        if flags & 8 != 0 {
            g.last = Some(b.u64()?);
        }
        groups.push(g);
    }
    b.end()?;
    Ok((seq, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(specs: &[(Kind, u64, &[u8])]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (kind, group, body) in specs {
            encode_record(&mut buf, *kind, *group, &[body]).unwrap();
        }
        buf
    }

    #[test]
    fn records_round_trip() {
        let data = records(&[
            (Kind::Entry, 7, b"\x01\0\0\0\0\0\0\0hello"),
            (Kind::Vote, u64::MAX, b""),
            (Kind::Truncate, 0, &5u64.to_le_bytes()),
        ]);
        let s = scan(&data);
        assert!(s.problem.is_none());
        assert_eq!(s.valid, data.len() as u64);
        let got: Vec<(Kind, u64, &[u8], u64)> = s
            .records
            .iter()
            .map(|f| (f.record.kind, f.record.group, f.record.body, f.offset))
            .collect();
        assert_eq!(
            got,
            vec![
                (Kind::Entry, 7, &b"\x01\0\0\0\0\0\0\0hello"[..], 0),
                (Kind::Vote, u64::MAX, &b""[..], 30),
                (Kind::Truncate, 0, &5u64.to_le_bytes()[..], 47),
            ]
        );
    }

    #[test]
    fn zero_filled_tail_is_not_a_record() {
        // A crash after the file grew but before its data landed leaves zeros: an
        // all-zero header must not check out as an empty record.
        let mut data = records(&[(Kind::Vote, 1, b"v")]);
        let valid = data.len() as u64;
        data.extend_from_slice(&[0u8; 64]);
        let s = scan(&data);
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.valid, valid);
        assert!(s.problem.is_some());
        assert!(scan(&[0u8; HEADER]).records.is_empty());
    }

    #[test]
    fn every_flipped_bit_or_cut_is_detected() {
        let data = records(&[(Kind::Purge, 3, b"\x09\0\0\0\0\0\0\0id")]);
        for byte in 0..data.len() {
            for bit in 0..8 {
                let mut bad = data.clone();
                bad[byte] ^= 1 << bit;
                let s = scan(&bad);
                assert!(s.records.is_empty(), "flip {byte}.{bit} passed");
                assert_eq!(s.valid, 0);
            }
        }
        for cut in 0..data.len() {
            let s = scan(&data[..cut]);
            assert!(s.records.is_empty() && s.valid == 0, "cut at {cut} passed");
            assert_eq!(s.problem.is_some(), cut > 0);
        }
    }

    #[test]
    fn checkpoint_round_trip() {
        let groups = vec![
            GroupCheckpoint {
                group: 1,
                vote: Some(b"vote".to_vec()),
                committed: Some(b"c".to_vec()),
                purged: Some((10, b"p".to_vec())),
                last: Some(20),
            },
            GroupCheckpoint {
                group: 9,
                ..GroupCheckpoint::default()
            },
            GroupCheckpoint {
                group: 10,
                vote: None,
                committed: None,
                purged: None,
                last: Some(0),
            },
        ];
        let body = encode_checkpoint(42, &groups);
        assert_eq!(decode_checkpoint(&body).unwrap(), (42, groups));
        assert!(decode_checkpoint(&body[..body.len() - 1]).is_err());
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode_checkpoint(&longer).is_err());
    }

    #[test]
    fn segment_names() {
        let p = segment_path(Path::new("/x"), 17);
        assert_eq!(p, Path::new("/x/seg-00000000000000000017.wal"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_name(name), Some(17));
        assert_eq!(parse_segment_name("seg-17.wal"), None);
        assert_eq!(parse_segment_name("wal-00000000000000000017.log"), None);
    }
}
