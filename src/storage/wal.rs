//! Segmented append-only log of opaque entries indexed by a u64 log index.
//!
//! Disk format (a contract: only ever extended):
//! - segment files `dir/wal-<first index, 20 digits>.log`, each a run of records
//!   `len: u32 LE | crc32(payload): u32 LE | index: u64 LE | payload`;
//! - `dir/wal.meta`: `magic "SWALMETA" | version: u32 LE | purged: u64 LE | crc32: u32 LE`,
//!   the purge point, so `first_index` survives a restart even when the segment holding
//!   it is kept partially.
//!
//! Invariants: indexes are contiguous across all records of all segments; a segment's
//! name is the index of its first record; only the last segment is written to.
//! Recovery cuts the log at the first record that is short, fails its CRC or breaks
//! contiguity — a torn tail is cut, never applied.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const HEADER: u64 = 16;
const META_FILE: &str = "wal.meta";
const META_MAGIC: &[u8; 8] = b"SWALMETA";
const META_VERSION: u32 = 1;
const META_LEN: usize = 8 + 4 + 8 + 4;

/// Tunables of a [`Wal`].
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Start a new segment once the current one has grown past this many bytes.
    pub segment_size: u64,
    /// `false` skips the fsync per append (appendfsync no / everysec); the caller then
    /// owns durability via [`Wal::sync`].
    pub sync: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: 64 * 1024 * 1024,
            sync: true,
        }
    }
}

struct Segment {
    first: u64,
    path: PathBuf,
    file: File,
    /// Bytes of valid records.
    len: u64,
    /// Record start offset of each entry; entry `first + k` is at `offsets[k]`.
    offsets: Vec<u64>,
}

impl Segment {
    fn last(&self) -> Option<u64> {
        (!self.offsets.is_empty()).then(|| self.first + self.offsets.len() as u64 - 1)
    }
}

/// The log. Entries at or below the purge point are hidden even if their segment is kept.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    segments: Vec<Segment>,
    /// Everything <= purged is gone (or logically gone); the next entry of an empty log
    /// must be purged + 1.
    purged: Option<u64>,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("wal-{first:020}.log"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn encode_record(buf: &mut Vec<u8>, index: u64, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| invalid("entry too large".into()))?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(payload);
    Ok(())
}

/// What a scan of one segment found: record offsets, the end of the valid prefix, and
/// why the scan stopped early (if it did).
struct Scan {
    offsets: Vec<u64>,
    valid: u64,
    problem: Option<String>,
}

/// Scans a segment's records, stopping at the first short, corrupt or out-of-sequence one.
fn scan(data: &[u8], first: u64) -> Scan {
    let mut offsets = Vec::new();
    let mut pos = 0usize;
    let mut expected = first;
    let h = HEADER as usize;
    let problem = loop {
        let rest = &data[pos..];
        if rest.is_empty() {
            break None;
        }
        if rest.len() < h {
            break Some("short record header".to_string());
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
        let index = u64::from_le_bytes(rest[8..16].try_into().unwrap());
        if rest.len() - h < len {
            break Some(format!("short record {index}"));
        }
        if crc32fast::hash(&rest[h..h + len]) != crc {
            break Some(format!("CRC mismatch at record {index}"));
        }
        if index != expected {
            break Some(format!("index {index} where {expected} was expected"));
        }
        offsets.push(pos as u64);
        pos += h + len;
        expected += 1;
    };
    Scan {
        offsets,
        valid: pos as u64,
        problem,
    }
}

fn read_meta(dir: &Path) -> io::Result<Option<u64>> {
    let mut buf = Vec::new();
    match File::open(dir.join(META_FILE)) {
        Ok(mut f) => f.read_to_end(&mut buf)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // The meta file is replaced by rename, so a bad one is real corruption, not a torn write.
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "corrupt wal.meta");
    if buf.len() != META_LEN || &buf[0..8] != META_MAGIC {
        return Err(bad());
    }
    let crc = u32::from_le_bytes(buf[20..24].try_into().unwrap());
    if crc32fast::hash(&buf[..20]) != crc {
        return Err(bad());
    }
    let version = u32::from_le_bytes(buf[8..12].try_into().unwrap());
    if version != META_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown wal.meta version {version}"),
        ));
    }
    Ok(Some(u64::from_le_bytes(buf[12..20].try_into().unwrap())))
}

fn write_meta(dir: &Path, purged: u64) -> io::Result<()> {
    let mut buf = Vec::with_capacity(META_LEN);
    buf.extend_from_slice(META_MAGIC);
    buf.extend_from_slice(&META_VERSION.to_le_bytes());
    buf.extend_from_slice(&purged.to_le_bytes());
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join("wal.meta.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&buf)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(META_FILE))?;
    sync_dir(dir)
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, cutting any torn or corrupt tail.
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> io::Result<Wal> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        let purged = read_meta(&dir)?;
        let mut firsts: Vec<u64> = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let name = entry?.file_name();
            if let Some(first) = name.to_str().and_then(parse_segment_name) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();

        let mut segments: Vec<Segment> = Vec::new();
        let mut cut = false;
        let mut dir_changed = false;
        for first in firsts {
            let path = segment_path(&dir, first);
            if cut {
                tracing::warn!(path = %path.display(), "wal: removing segment after a cut");
                fs::remove_file(&path)?;
                dir_changed = true;
                continue;
            }
            let expected = segments.last().and_then(Segment::last).map(|l| l + 1);
            if expected.is_some_and(|e| e != first) {
                tracing::warn!(
                    path = %path.display(),
                    ?expected,
                    "wal: segment breaks the index sequence; removing it and later ones"
                );
                fs::remove_file(&path)?;
                dir_changed = true;
                cut = true;
                continue;
            }
            let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
            let mut data = Vec::new();
            file.read_to_end(&mut data)?;
            let found = scan(&data, first);
            if let Some(problem) = found.problem {
                tracing::warn!(
                    path = %path.display(),
                    at = found.valid,
                    cut_bytes = data.len() as u64 - found.valid,
                    %problem,
                    "wal: cutting torn or corrupt tail"
                );
                file.set_len(found.valid)?;
                file.sync_all()?;
                cut = true;
            }
            if found.offsets.is_empty() {
                // A segment without records carries no information; the next append
                // makes a fresh one.
                drop(file);
                fs::remove_file(&path)?;
                dir_changed = true;
                continue;
            }
            segments.push(Segment {
                first,
                path,
                file,
                len: found.valid,
                offsets: found.offsets,
            });
        }
        let mut wal = Wal {
            dir,
            opts,
            segments,
            purged,
        };
        // Finishes a purge interrupted after its meta write.
        if let Some(p) = purged {
            dir_changed |= wal.drop_segments_upto(p)?;
        }
        if dir_changed {
            sync_dir(&wal.dir)?;
        }
        Ok(wal)
    }

    /// The oldest entry still readable.
    pub fn first_index(&self) -> Option<u64> {
        let seg = self.segments.first()?;
        let first = match self.purged {
            Some(p) => seg.first.max(p + 1),
            None => seg.first,
        };
        (Some(first) <= self.last_index()).then_some(first)
    }

    pub fn last_index(&self) -> Option<u64> {
        self.segments.last().and_then(Segment::last)
    }

    /// The purge point recorded by [`Wal::purge_to`], if any.
    pub fn purged_index(&self) -> Option<u64> {
        self.purged
    }

    /// The index the next appended entry must carry, if the log constrains it.
    fn next_index(&self) -> Option<u64> {
        match self.last_index() {
            Some(last) => Some(last + 1),
            None => self.purged.map(|p| p + 1),
        }
    }

    /// Appends entries with contiguous indexes as one write and (with `sync`) one fsync.
    pub fn append(&mut self, entries: &[(u64, &[u8])]) -> io::Result<()> {
        let Some(&(start, _)) = entries.first() else {
            return Ok(());
        };
        if let Some(next) = self.next_index() {
            if start != next {
                return Err(invalid(format!(
                    "wal append at index {start}, expected {next}"
                )));
            }
        }
        let mut buf = Vec::new();
        let mut rel = Vec::with_capacity(entries.len());
        for (k, &(index, payload)) in entries.iter().enumerate() {
            if index != start + k as u64 {
                return Err(invalid(format!(
                    "wal append batch not contiguous at index {index}"
                )));
            }
            rel.push(buf.len() as u64);
            encode_record(&mut buf, index, payload)?;
        }
        let roll = match self.segments.last() {
            None => true,
            Some(seg) => seg.len >= self.opts.segment_size,
        };
        if roll {
            let path = segment_path(&self.dir, start);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            if self.opts.sync {
                sync_dir(&self.dir)?;
            }
            self.segments.push(Segment {
                first: start,
                path,
                file,
                len: 0,
                offsets: Vec::new(),
            });
        }
        let seg = self
            .segments
            .last_mut()
            .expect("a segment exists after roll");
        seg.file.write_all_at(&buf, seg.len)?;
        if self.opts.sync {
            seg.file.sync_data()?;
        }
        let base = seg.len;
        seg.offsets.extend(rel.into_iter().map(|r| base + r));
        seg.len += buf.len() as u64;
        Ok(())
    }

    /// Forces appended data to disk; for callers running with `sync: false`.
    pub fn sync(&self) -> io::Result<()> {
        match self.segments.last() {
            Some(seg) => seg.file.sync_data(),
            None => Ok(()),
        }
    }

    fn locate(&self, index: u64) -> Option<(usize, usize)> {
        if self.first_index().is_none_or(|f| index < f) {
            return None;
        }
        let seg_i = self
            .segments
            .partition_point(|s| s.first <= index)
            .checked_sub(1)?;
        let k = (index - self.segments[seg_i].first) as usize;
        (k < self.segments[seg_i].offsets.len()).then_some((seg_i, k))
    }

    /// The payload at `index`, or None when it is purged or not yet written.
    pub fn read(&self, index: u64) -> io::Result<Option<Vec<u8>>> {
        let Some((s, k)) = self.locate(index) else {
            return Ok(None);
        };
        let seg = &self.segments[s];
        let offset = seg.offsets[k];
        let mut header = [0u8; HEADER as usize];
        seg.file.read_exact_at(&mut header, offset)?;
        let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
        let mut payload = vec![0u8; len];
        seg.file.read_exact_at(&mut payload, offset + HEADER)?;
        // Bit rot after open must surface as an error, never as a wrong entry.
        if crc32fast::hash(&payload) != crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("wal: CRC mismatch reading index {index}"),
            ));
        }
        Ok(Some(payload))
    }

    /// Payloads of `from..=to`; every index in the range must be in the log.
    pub fn read_range(&self, from: u64, to: u64) -> io::Result<Vec<Vec<u8>>> {
        if from > to {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((to - from + 1) as usize);
        for index in from..=to {
            match self.read(index)? {
                Some(p) => out.push(p),
                None => return Err(invalid(format!("wal: index {index} is not in the log"))),
            }
        }
        Ok(out)
    }

    /// Deletes entries >= `index` (a Raft follower overwriting a conflicting suffix).
    pub fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        let mut dir_changed = false;
        while self.segments.last().is_some_and(|s| s.first >= index) {
            let seg = self.segments.pop().expect("checked non-empty");
            drop(seg.file);
            fs::remove_file(&seg.path)?;
            dir_changed = true;
        }
        if let Some(seg) = self.segments.last_mut() {
            let k = (index - seg.first) as usize;
            if k < seg.offsets.len() {
                let cut = seg.offsets[k];
                seg.file.set_len(cut)?;
                seg.file.sync_all()?;
                seg.offsets.truncate(k);
                seg.len = cut;
            }
        }
        if self.purged.is_some_and(|p| p >= index) {
            // The purge point must stay below the next index so appends resume at `index`.
            let p = index.saturating_sub(1);
            write_meta(&self.dir, p)?;
            self.purged = Some(p);
        }
        if dir_changed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Forgets entries <= `index` (covered by a snapshot): records the purge point, then
    /// drops whole segments below it.
    pub fn purge_to(&mut self, index: u64) -> io::Result<()> {
        if self.purged.is_some_and(|p| p >= index) {
            return Ok(());
        }
        // Meta first: a crash before the deletions is finished by the next open.
        write_meta(&self.dir, index)?;
        self.purged = Some(index);
        if self.drop_segments_upto(index)? {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Removes segments whose entries are all <= `index`; returns whether any went.
    fn drop_segments_upto(&mut self, index: u64) -> io::Result<bool> {
        let n = self
            .segments
            .iter()
            .take_while(|s| s.last().is_some_and(|l| l <= index))
            .count();
        for seg in self.segments.drain(..n) {
            drop(seg.file);
            fs::remove_file(&seg.path)?;
        }
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "shardis-wal-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn payload(i: u64) -> Vec<u8> {
        format!("entry-{i}-{}", "x".repeat((i % 7) as usize)).into_bytes()
    }

    fn append_range(wal: &mut Wal, from: u64, to: u64) {
        let data: Vec<(u64, Vec<u8>)> = (from..=to).map(|i| (i, payload(i))).collect();
        let refs: Vec<(u64, &[u8])> = data.iter().map(|(i, p)| (*i, p.as_slice())).collect();
        wal.append(&refs).unwrap();
    }

    fn must_hold(wal: &Wal, from: u64, to: u64) {
        assert_eq!(wal.first_index(), Some(from));
        assert_eq!(wal.last_index(), Some(to));
        for i in from..=to {
            assert_eq!(wal.read(i).unwrap(), Some(payload(i)), "index {i}");
        }
        assert_eq!(wal.read(to + 1).unwrap(), None);
        if from > 0 {
            assert_eq!(wal.read(from - 1).unwrap(), None);
        }
    }

    fn tiny() -> WalOptions {
        WalOptions {
            segment_size: 100,
            sync: true,
        }
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn append_read_reopen() {
        let tmp = TempDir::new();
        let mut wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        assert_eq!(wal.first_index(), None);
        assert_eq!(wal.last_index(), None);
        append_range(&mut wal, 1, 5);
        append_range(&mut wal, 6, 6);
        must_hold(&wal, 1, 6);
        assert_eq!(
            wal.read_range(2, 4).unwrap(),
            vec![payload(2), payload(3), payload(4)]
        );
        assert!(wal.read_range(5, 7).is_err());
        drop(wal);
        let mut wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        must_hold(&wal, 1, 6);
        append_range(&mut wal, 7, 9);
        must_hold(&wal, 1, 9);
    }

    #[test]
    fn non_contiguous_append_is_refused() {
        let tmp = TempDir::new();
        let mut wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        append_range(&mut wal, 10, 12);
        assert!(wal.append(&[(14, b"a")]).is_err());
        assert!(wal.append(&[(12, b"a")]).is_err());
        assert!(wal.append(&[(13, b"a"), (15, b"b")]).is_err());
        must_hold(&wal, 10, 12);
        append_range(&mut wal, 13, 13);
        must_hold(&wal, 10, 13);
    }

    #[test]
    fn torn_tail_mid_record_is_cut() {
        let tmp = TempDir::new();
        let mut wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        append_range(&mut wal, 1, 5);
        drop(wal);
        let path = segment_path(&tmp.0, 1);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let mut wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        must_hold(&wal, 1, 4);
        append_range(&mut wal, 5, 7);
        drop(wal);
        let wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        must_hold(&wal, 1, 7);
    }

    #[test]
    fn flipped_byte_in_last_record_is_cut() {
        let tmp = TempDir::new();
        let mut wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        append_range(&mut wal, 1, 5);
        drop(wal);
        let path = segment_path(&tmp.0, 1);
        let mut data = fs::read(&path).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0x40;
        fs::write(&path, &data).unwrap();
        let mut wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        must_hold(&wal, 1, 4);
        append_range(&mut wal, 5, 6);
        drop(wal);
        let wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        must_hold(&wal, 1, 6);
    }

    #[test]
    fn corruption_in_early_segment_drops_later_segments() {
        let tmp = TempDir::new();
        let mut wal = Wal::open(&tmp.0, tiny()).unwrap();
        for i in 1..=30 {
            append_range(&mut wal, i, i);
        }
        drop(wal);
        let files = segment_files(&tmp.0);
        assert!(files.len() >= 3);
        let mut data = fs::read(&files[1]).unwrap();
        data[HEADER as usize] ^= 0xff; // payload of the segment's first record
        fs::write(&files[1], &data).unwrap();
        let name = files[1].file_name().unwrap().to_str().unwrap();
        let first_of_second = parse_segment_name(name).unwrap();
        let mut wal = Wal::open(&tmp.0, tiny()).unwrap();
        must_hold(&wal, 1, first_of_second - 1);
        assert_eq!(segment_files(&tmp.0).len(), 1);
        append_range(&mut wal, first_of_second, first_of_second + 3);
        must_hold(&wal, 1, first_of_second + 3);
    }

    #[test]
    fn truncate_from_then_append() {
        let tmp = TempDir::new();
        let mut wal = Wal::open(&tmp.0, tiny()).unwrap();
        for i in 1..=30 {
            append_range(&mut wal, i, i);
        }
        let before = segment_files(&tmp.0).len();
        wal.truncate_from(8).unwrap();
        must_hold(&wal, 1, 7);
        assert!(segment_files(&tmp.0).len() < before);
        assert!(wal.append(&[(9, b"x")]).is_err());
        append_range(&mut wal, 8, 12);
        must_hold(&wal, 1, 12);
        wal.truncate_from(100).unwrap();
        must_hold(&wal, 1, 12);
        drop(wal);
        let mut wal = Wal::open(&tmp.0, tiny()).unwrap();
        must_hold(&wal, 1, 12);
        wal.truncate_from(1).unwrap();
        assert_eq!(wal.last_index(), None);
        assert!(segment_files(&tmp.0).is_empty());
        append_range(&mut wal, 1, 2);
        must_hold(&wal, 1, 2);
    }

    #[test]
    fn purge_then_reopen_keeps_first_and_last() {
        let tmp = TempDir::new();
        let mut wal = Wal::open(&tmp.0, tiny()).unwrap();
        for i in 1..=30 {
            append_range(&mut wal, i, i);
        }
        let before = segment_files(&tmp.0).len();
        wal.purge_to(13).unwrap();
        must_hold(&wal, 14, 30);
        assert!(segment_files(&tmp.0).len() < before);
        drop(wal);
        let mut wal = Wal::open(&tmp.0, tiny()).unwrap();
        must_hold(&wal, 14, 30);
        assert_eq!(wal.purged_index(), Some(13));
        wal.purge_to(5).unwrap(); // behind the purge point: no-op
        must_hold(&wal, 14, 30);
        // Purging everything leaves an empty log that resumes after the purge point.
        wal.purge_to(40).unwrap();
        assert_eq!(wal.first_index(), None);
        assert_eq!(wal.last_index(), None);
        assert!(segment_files(&tmp.0).is_empty());
        assert!(wal.append(&[(31, b"x")]).is_err());
        drop(wal);
        let mut wal = Wal::open(&tmp.0, tiny()).unwrap();
        assert!(wal.append(&[(31, b"x")]).is_err());
        append_range(&mut wal, 41, 42);
        must_hold(&wal, 41, 42);
    }

    #[test]
    fn segments_roll_at_configured_size() {
        let tmp = TempDir::new();
        let mut wal = Wal::open(&tmp.0, tiny()).unwrap();
        for i in 1..=20 {
            append_range(&mut wal, i, i);
        }
        let files = segment_files(&tmp.0);
        assert!(files.len() >= 3, "{files:?}");
        assert_eq!(files[0], segment_path(&tmp.0, 1));
        for f in &files[..files.len() - 1] {
            // A segment overshoots the limit by at most one batch.
            assert!(fs::metadata(f).unwrap().len() < 100 + 64);
        }
        drop(wal);
        let wal = Wal::open(&tmp.0, tiny()).unwrap();
        must_hold(&wal, 1, 20);
        assert_eq!(wal.read_range(1, 20).unwrap().len(), 20);
    }

    #[test]
    fn unsynced_appends_are_readable_and_survive_clean_reopen() {
        let tmp = TempDir::new();
        let opts = WalOptions {
            sync: false,
            ..WalOptions::default()
        };
        let mut wal = Wal::open(&tmp.0, opts.clone()).unwrap();
        append_range(&mut wal, 1, 3);
        wal.sync().unwrap();
        drop(wal);
        let wal = Wal::open(&tmp.0, opts).unwrap();
        must_hold(&wal, 1, 3);
    }
}
