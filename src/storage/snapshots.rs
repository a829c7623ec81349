//! The snapshot directory of one Raft group: `snap-<last index, 20 digits>.snap` files,
//! each written to a temp file, fsynced, then renamed into place (and the directory
//! fsynced), so a crash leaves either the old snapshot or the new one, never half of
//! one. Only the newest snapshot is kept; temp files left by a crash are removed on
//! open. What a snapshot file contains is the caller's business.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct SnapshotDir {
    dir: PathBuf,
    temps: AtomicU64,
}

fn parse_name(name: &str) -> Option<u64> {
    name.strip_prefix("snap-")?
        .strip_suffix(".snap")?
        .parse()
        .ok()
}

impl SnapshotDir {
    pub fn open(dir: impl AsRef<Path>) -> io::Result<SnapshotDir> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        for e in fs::read_dir(&dir)? {
            let e = e?;
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                fs::remove_file(e.path())?;
            }
        }
        Ok(SnapshotDir {
            dir,
            temps: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A new temp file to write a snapshot into (then [`SnapshotDir::commit`] it).
    pub fn create_temp(&self) -> io::Result<(PathBuf, File)> {
        let n = self.temps.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir
            .join(format!("incoming-{}-{n}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok((path, file))
    }

    /// Makes a fully written temp file the current snapshot for `index`: fsync, rename,
    /// fsync the directory, then remove older snapshots. Returns the final path.
    pub fn commit(&self, temp: &Path, index: u64) -> io::Result<PathBuf> {
        File::open(temp)?.sync_all()?;
        let path = self.dir.join(format!("snap-{index:020}.snap"));
        fs::rename(temp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        for (i, p) in self.list()? {
            if i != index {
                fs::remove_file(p)?;
            }
        }
        Ok(path)
    }

    /// The newest snapshot file, if any.
    pub fn latest(&self) -> io::Result<Option<PathBuf>> {
        Ok(self
            .list()?
            .into_iter()
            .max_by_key(|(i, _)| *i)
            .map(|(_, p)| p))
    }

    fn list(&self) -> io::Result<Vec<(u64, PathBuf)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            let e = e?;
            if let Some(i) = parse_name(&e.file_name().to_string_lossy()) {
                out.push((i, e.path()));
            }
        }
        Ok(out)
    }

    /// Bytes in snapshot files.
    pub fn size(&self) -> u64 {
        self.list()
            .unwrap_or_default()
            .iter()
            .filter_map(|(_, p)| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shardis-snapdir-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn commit_keeps_only_the_newest_and_open_drops_temps() {
        let d = tmpdir("commit");
        let s = SnapshotDir::open(&d).unwrap();
        assert!(s.latest().unwrap().is_none());
        for (i, body) in [(10u64, b"ten"), (20, b"two")] {
            let (p, mut f) = s.create_temp().unwrap();
            f.write_all(body).unwrap();
            s.commit(&p, i).unwrap();
        }
        let latest = s.latest().unwrap().unwrap();
        assert!(latest.ends_with("snap-00000000000000000020.snap"));
        assert_eq!(fs::read(&latest).unwrap(), b"two");
        assert_eq!(s.list().unwrap().len(), 1, "the older snapshot is gone");
        // A crash mid-write leaves a temp file: reopening removes it, keeps the snapshot.
        let (p, _f) = s.create_temp().unwrap();
        drop(s);
        let s = SnapshotDir::open(&d).unwrap();
        assert!(!p.exists());
        assert_eq!(s.latest().unwrap().unwrap(), latest);
        fs::remove_dir_all(&d).unwrap();
    }
}
