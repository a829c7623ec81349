//! Segmented append-only log of opaque entries indexed by a u64 log index.
//!
//! Disk format (a contract: only ever extended):
//! - segment files `dir/wal-<first index, 20 digits>.log`, each a run of records
//!   `len: u32 LE | crc: u32 LE | index: u64 LE | payload`, where `crc` is the crc32 of
//!   `len | index | payload` (every byte of the record but the crc itself), so a
//!   zero-filled tail — what a crash can leave after a file was extended but before its
//!   data reached the disk — never passes as an empty record;
//! - `dir/wal.meta`: `magic "SWALMETA" | version: u32 LE | purged: u64 LE | crc32: u32 LE`,
//!   the purge point, so `first_index` survives a restart even when the segment holding
//!   it is kept partially.
//!
//! Invariants: indexes are contiguous across all records of all segments; a segment's
//! name is the index of its first record; only the last segment is written to.
//! Recovery cuts the log at the first record that is short, fails its CRC or breaks
//! contiguity — a torn tail is cut, never applied.
//!
//! Durability: with `sync: false` writes are only marked unsynced; [`Wal::sync`] (or
//! [`Wal::take_unsynced`] + [`PendingSync::run`], to fsync without holding the caller's
//! lock) forces every unsynced segment and, after a segment was created, the directory.
//! A failed fsync poisons the log: the kernel may have dropped the dirty pages, so a
//! later fsync could succeed without the data ever reaching the disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// Shared so that a [`PendingSync`] can fsync it without the Wal borrowed.
    file: Arc<File>,
    /// Bytes of valid records.
    len: u64,
    /// Record start offset of each entry; entry `first + k` is at `offsets[k]`.
    offsets: Vec<u64>,
    /// Written since its last fsync.
    unsynced: bool,
}

impl Segment {
    fn last(&self) -> Option<u64> {
        (!self.offsets.is_empty()).then(|| self.first + self.offsets.len() as u64 - 1)
    }

    /// End offset of the record of entry `first + k`.
    fn record_end(&self, k: usize) -> u64 {
        self.offsets.get(k + 1).copied().unwrap_or(self.len)
    }
}

/// Fsyncs owed by a [`Wal`], detached from it so they can run outside the caller's lock.
#[must_use = "the data is not durable until run() returns Ok"]
pub struct PendingSync {
    files: Vec<Arc<File>>,
    dir: Option<PathBuf>,
}

impl PendingSync {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dir.is_none()
    }

    /// Fdatasyncs the files, then the directory. On error the caller must treat the log
    /// as failed ([`Wal::poison`]): the writes it covered may be lost.
    pub fn run(self) -> io::Result<()> {
        for f in &self.files {
            f.sync_data()?;
        }
        match &self.dir {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
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
    /// A segment was created or removed and the directory not yet fsynced.
    dir_unsynced: bool,
    /// Set by a failed fsync; every later write or sync fails with it.
    poisoned: Option<String>,
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

fn record_crc(len: &[u8], index: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(index);
    h.update(payload);
    h.finalize()
}

fn encode_record(buf: &mut Vec<u8>, index: u64, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| invalid("entry too large".into()))?;
    let (len, index) = (len.to_le_bytes(), index.to_le_bytes());
    buf.extend_from_slice(&len);
    buf.extend_from_slice(&record_crc(&len, &index, payload).to_le_bytes());
    buf.extend_from_slice(&index);
    buf.extend_from_slice(payload);
    Ok(())
}

/// Checks one record at the start of `rest`: its payload, or why it is not valid.
fn decode_record(rest: &[u8], expected: u64) -> Result<&[u8], String> {
    let h = HEADER as usize;
    if rest.len() < h {
        return Err("short record header".to_string());
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
    let index = u64::from_le_bytes(rest[8..16].try_into().unwrap());
    if rest.len() - h < len {
        return Err(format!("short record {index}"));
    }
    let payload = &rest[h..h + len];
    if record_crc(&rest[0..4], &rest[8..16], payload) != crc {
        return Err(format!("CRC mismatch at record {index}"));
    }
    if index != expected {
        return Err(format!("index {index} where {expected} was expected"));
    }
    Ok(payload)
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
    let problem = loop {
        let rest = &data[pos..];
        if rest.is_empty() {
            break None;
        }
        match decode_record(rest, expected) {
            Ok(payload) => {
                offsets.push(pos as u64);
                pos += HEADER as usize + payload.len();
                expected += 1;
            }
            Err(problem) => break Some(problem),
        }
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

fn remove_meta(dir: &Path) -> io::Result<()> {
    match fs::remove_file(dir.join(META_FILE)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, cutting any torn or corrupt tail.
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> io::Result<Wal> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            fs::create_dir_all(&dir)?;
            // The new directory's own entry must be durable before anything in it is.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
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
                file: Arc::new(file),
                len: found.valid,
                offsets: found.offsets,
                unsynced: false,
            });
        }
        let mut wal = Wal {
            dir,
            opts,
            segments,
            purged,
            dir_unsynced: false,
            poisoned: None,
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

    /// Bytes of records on disk (segments only; wal.meta is a few bytes).
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    fn check_poisoned(&self) -> io::Result<()> {
        match &self.poisoned {
            Some(why) => Err(io::Error::other(format!("wal failed earlier: {why}"))),
            None => Ok(()),
        }
    }

    /// Marks the log failed after an fsync error the caller saw (from [`PendingSync::run`]).
    pub fn poison(&mut self, why: String) {
        tracing::error!(dir = %self.dir.display(), %why, "wal: fsync failed; refusing further writes");
        self.poisoned.get_or_insert(why);
    }

    /// Appends entries with contiguous indexes as one write and (with `sync`) one fsync.
    pub fn append(&mut self, entries: &[(u64, &[u8])]) -> io::Result<()> {
        self.check_poisoned()?;
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
            self.dir_unsynced = true;
            self.segments.push(Segment {
                first: start,
                path,
                file: Arc::new(file),
                len: 0,
                offsets: Vec::new(),
                unsynced: false,
            });
        }
        let seg = self
            .segments
            .last_mut()
            .expect("a segment exists after roll");
        seg.file.write_all_at(&buf, seg.len)?;
        seg.unsynced = true;
        let base = seg.len;
        seg.offsets.extend(rel.into_iter().map(|r| base + r));
        seg.len += buf.len() as u64;
        if self.opts.sync {
            // The batch is in the log either way; a failed fsync poisons it.
            self.sync()?;
        }
        Ok(())
    }

    /// Detaches the fsyncs owed so far (every unsynced segment, the directory after a
    /// segment was created or removed) and marks them done; the caller must
    /// [`PendingSync::run`] them and [`Wal::poison`] the log if that fails.
    pub fn take_unsynced(&mut self) -> io::Result<PendingSync> {
        self.check_poisoned()?;
        let mut files = Vec::new();
        for seg in self.segments.iter_mut().filter(|s| s.unsynced) {
            seg.unsynced = false;
            files.push(Arc::clone(&seg.file));
        }
        let dir = std::mem::take(&mut self.dir_unsynced).then(|| self.dir.clone());
        Ok(PendingSync { files, dir })
    }

    /// Whether [`Wal::sync`] has anything to do.
    pub fn has_unsynced(&self) -> bool {
        self.dir_unsynced || self.segments.iter().any(|s| s.unsynced)
    }

    /// Forces appended data (in every segment written since the last sync, not only the
    /// current one) and new segments' directory entries to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        let pending = self.take_unsynced()?;
        pending.run().inspect_err(|e| self.poison(e.to_string()))
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
        if self.locate(index).is_none() {
            return Ok(None);
        }
        Ok(self.read_range(index, index)?.pop())
    }

    /// Payloads of `from..=to`; every index in the range must be in the log. Reads each
    /// segment's part of the range with one pread.
    pub fn read_range(&self, from: u64, to: u64) -> io::Result<Vec<Vec<u8>>> {
        if from > to {
            return Ok(Vec::new());
        }
        let missing = |index| invalid(format!("wal: index {index} is not in the log"));
        if self.locate(to).is_none() {
            return Err(missing(to));
        }
        let mut out = Vec::with_capacity((to - from + 1) as usize);
        let mut index = from;
        while index <= to {
            let (s, k) = self.locate(index).ok_or_else(|| missing(index))?;
            let seg = &self.segments[s];
            let k_last = ((to - seg.first) as usize).min(seg.offsets.len() - 1);
            let start = seg.offsets[k];
            let mut data = vec![0u8; (seg.record_end(k_last) - start) as usize];
            seg.file.read_exact_at(&mut data, start)?;
            for kk in k..=k_last {
                let at = (seg.offsets[kk] - start) as usize;
                // Bit rot after open must surface as an error, never as a wrong entry.
                let payload = decode_record(&data[at..], index).map_err(|problem| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("wal: reading index {index}: {problem}"),
                    )
                })?;
                out.push(payload.to_vec());
                index += 1;
            }
        }
        Ok(out)
    }

    /// Deletes entries >= `index` (a Raft follower overwriting a conflicting suffix).
    pub fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        self.check_poisoned()?;
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
                seg.unsynced = false;
                seg.offsets.truncate(k);
                seg.len = cut;
            }
        }
        if self.purged.is_some_and(|p| p >= index) {
            // The purge point must stay below the next index so appends resume at `index`.
            match index.checked_sub(1) {
                Some(p) => write_meta(&self.dir, p)?,
                None => remove_meta(&self.dir)?,
            }
            self.purged = index.checked_sub(1);
        }
        if dir_changed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Forgets entries <= `index` (covered by a snapshot): records the purge point, then
    /// drops whole segments below it.
    pub fn purge_to(&mut self, index: u64) -> io::Result<()> {
        self.check_poisoned()?;
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

    #[test]
    fn zero_filled_tail_is_not_a_record() {
        // A crash after the file grew but before its data landed leaves zeros; with a CRC
        // over the payload alone, an all-zero header at index 0 checked out as an empty
        // entry.
        let tmp = TempDir::new();
        fs::write(segment_path(&tmp.0, 0), [0u8; 64]).unwrap();
        let mut wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        assert_eq!(wal.last_index(), None);
        assert!(segment_files(&tmp.0).is_empty());
        append_range(&mut wal, 0, 2);
        drop(wal);
        let path = segment_path(&tmp.0, 0);
        let mut data = fs::read(&path).unwrap();
        data.extend_from_slice(&[0u8; 40]);
        fs::write(&path, &data).unwrap();
        let wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        must_hold(&wal, 0, 2);
    }

    #[test]
    fn bit_rot_after_open_is_an_error_not_an_entry() {
        let tmp = TempDir::new();
        let mut wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        append_range(&mut wal, 1, 5);
        let path = segment_path(&tmp.0, 1);
        let mut data = fs::read(&path).unwrap();
        let third = wal.segments[0].offsets[2] as usize;
        data[third + HEADER as usize] ^= 0x01;
        fs::write(&path, &data).unwrap();
        assert_eq!(wal.read(2).unwrap(), Some(payload(2)));
        let err = wal.read(3).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(wal.read_range(1, 5).is_err());
        assert_eq!(wal.read_range(4, 5).unwrap(), vec![payload(4), payload(5)]);
    }

    #[test]
    fn read_range_spans_segments() {
        let tmp = TempDir::new();
        let mut wal = Wal::open(&tmp.0, tiny()).unwrap();
        for i in 1..=30 {
            append_range(&mut wal, i, i);
        }
        assert!(wal.segments.len() >= 3);
        let want: Vec<Vec<u8>> = (3..=27).map(payload).collect();
        assert_eq!(wal.read_range(3, 27).unwrap(), want);
        wal.purge_to(10).unwrap();
        assert!(wal.read_range(9, 12).is_err());
        assert!(wal.read_range(25, 31).is_err());
        assert_eq!(wal.read_range(11, 11).unwrap(), vec![payload(11)]);
    }

    #[test]
    fn sync_covers_every_segment_written_since_the_last_one() {
        // sync() used to fsync only the newest segment: a batch written to the previous
        // segment just before a roll, and the new segment's directory entry, stayed
        // unsynced.
        let tmp = TempDir::new();
        let opts = WalOptions {
            segment_size: 100,
            sync: false,
        };
        let mut wal = Wal::open(&tmp.0, opts).unwrap();
        for i in 1..=12 {
            append_range(&mut wal, i, i);
        }
        assert!(wal.segments.len() >= 2);
        assert!(wal.has_unsynced());
        let pending = wal.take_unsynced().unwrap();
        assert_eq!(pending.files.len(), wal.segments.len());
        assert!(pending.dir.is_some());
        assert!(!wal.has_unsynced());
        pending.run().unwrap();
        append_range(&mut wal, 13, 13);
        let pending = wal.take_unsynced().unwrap();
        assert_eq!(pending.files.len(), 1);
        pending.run().unwrap();
        wal.sync().unwrap();
        assert!(!wal.has_unsynced());
    }

    #[test]
    fn poisoned_wal_refuses_writes() {
        let tmp = TempDir::new();
        let mut wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        append_range(&mut wal, 1, 3);
        wal.poison("injected fsync failure".into());
        assert!(wal.append(&[(4, b"x")]).is_err());
        assert!(wal.sync().is_err());
        assert!(wal.take_unsynced().is_err());
        assert!(wal.truncate_from(2).is_err());
        assert!(wal.purge_to(2).is_err());
        must_hold(&wal, 1, 3);
        drop(wal);
        let wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        must_hold(&wal, 1, 3);
    }

    #[test]
    fn truncate_from_zero_below_the_purge_point_clears_it() {
        let tmp = TempDir::new();
        let mut wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        append_range(&mut wal, 0, 10);
        wal.purge_to(5).unwrap();
        wal.truncate_from(0).unwrap();
        assert_eq!(wal.purged_index(), None);
        assert_eq!(wal.last_index(), None);
        append_range(&mut wal, 0, 1);
        drop(wal);
        let wal = Wal::open(&tmp.0, WalOptions::default()).unwrap();
        assert_eq!(wal.purged_index(), None);
        must_hold(&wal, 0, 1);
    }
}
