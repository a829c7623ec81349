//! The shard as an openraft state machine: the type configuration, the log payload,
//! and [`ShardSm`], which applies committed entries to the shard's keyspace, builds
//! snapshots into files and installs them.
//!
//! Snapshot file (version 1): `SHDSNAPF`, the snapshot meta (last log id and
//! membership) as a u32-LE-length-prefixed bincode record with its CRC32, then the
//! keyspace snapshot stream (its own magic and CRC32 trailer). Both are written and read
//! as streams: a snapshot never needs a serialized copy of the keyspace in memory.

use super::{Shard, ShardState};
use crate::keyspace::snapshot as ks_snapshot;
use crate::resp::Reply;
use crate::shard::migration::Migrations;
use crate::storage::SnapshotDir;
use futures_util::TryStreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use proto::WriteEntry;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub type NodeId = u64;

/// The log payload: a [`WriteEntry`] in its own versioned encoding (proto's contract),
/// so the log stays readable whatever openraft's envelope does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged(pub WriteEntry);

impl fmt::Display for Logged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Logged {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0.encode())
    }
}

impl<'de> Deserialize<'de> for Logged {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Logged, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Logged;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an encoded write entry")
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Logged, E> {
                WriteEntry::decode(b).map(Logged).map_err(E::custom)
            }
            fn visit_byte_buf<E: serde::de::Error>(self, b: Vec<u8>) -> Result<Logged, E> {
                self.visit_bytes(&b)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Logged, A::Error> {
                let mut b = Vec::new();
                while let Some(x) = a.next_element::<u8>()? {
                    b.push(x);
                }
                self.visit_bytes(&b)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// What apply returned for an entry: one reply per command.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied(pub Vec<Reply>);

openraft::declare_raft_types!(
    /// shardis's Raft types: keyspace write entries, their replies, nodes with a peer
    /// and a client address.
    pub TypeConfig:
        D = Logged,
        R = Applied,
        NodeId = NodeId,
        Node = proto::NodeAddr,
);

pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapFile>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type Raft = openraft::Raft<TypeConfig, ShardSm>;

/// A snapshot file, open for reading from the start.
#[derive(Debug)]
pub struct SnapFile {
    pub path: PathBuf,
    pub file: File,
}

impl SnapFile {
    pub fn open(path: PathBuf) -> io::Result<SnapFile> {
        let file = File::open(&path)?;
        Ok(SnapFile { path, file })
    }
}

const SNAP_MAGIC: &[u8; 8] = b"SHDSNAPF";
const CFG: bincode::config::Configuration = bincode::config::standard();

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Writes a whole snapshot file body: header with the meta, then the keyspace.
pub fn write_snapshot(st: &ShardState, meta: &SnapshotMeta, w: impl Write) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(256 * 1024, w);
    let m = bincode::serde::encode_to_vec(meta, CFG).map_err(|e| invalid(e.to_string()))?;
    w.write_all(SNAP_MAGIC)?;
    w.write_all(&(m.len() as u32).to_le_bytes())?;
    w.write_all(&m)?;
    w.write_all(&crc32fast::hash(&m).to_le_bytes())?;
    ks_snapshot::write(&st.ks, &mut w)?;
    // The migration record, after the keyspace: absent from older files and when
    // there is none.
    if !st.migrations.is_empty() {
        let m = bincode::serde::encode_to_vec(&st.migrations, CFG)
            .map_err(|e| invalid(e.to_string()))?;
        w.write_all(MIGRATIONS_MAGIC)?;
        w.write_all(&(m.len() as u32).to_le_bytes())?;
        w.write_all(&m)?;
        w.write_all(&crc32fast::hash(&m).to_le_bytes())?;
    }
    w.flush()
}

const MIGRATIONS_MAGIC: &[u8; 8] = b"SHDMIGR1";

/// Reads the optional migration record that follows the keyspace.
fn read_migrations(r: &mut impl Read) -> io::Result<Migrations> {
    let mut magic = [0u8; 8];
    let mut got = 0;
    while got < magic.len() {
        match r.read(&mut magic[got..])? {
            0 if got == 0 => return Ok(Migrations::default()),
            0 => return Err(invalid("truncated migration record")),
            n => got += n,
        }
    }
    if &magic != MIGRATIONS_MAGIC {
        return Err(invalid("unknown record after the keyspace"));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > 64 * 1024 * 1024 {
        return Err(invalid("migration record too large"));
    }
    let mut m = vec![0u8; len];
    r.read_exact(&mut m)?;
    let mut crc = [0u8; 4];
    r.read_exact(&mut crc)?;
    if crc32fast::hash(&m) != u32::from_le_bytes(crc) {
        return Err(invalid("migration record checksum mismatch"));
    }
    bincode::serde::decode_from_slice(&m, CFG)
        .map(|(x, _)| x)
        .map_err(|e| invalid(format!("bad migration record: {e}")))
}

/// Reads a snapshot file's meta, leaving the reader at the keyspace stream.
pub fn read_snapshot_meta(r: &mut impl Read) -> io::Result<SnapshotMeta> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != SNAP_MAGIC {
        return Err(invalid("not a shardis snapshot file"));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > 64 * 1024 * 1024 {
        return Err(invalid("snapshot meta too large"));
    }
    let mut m = vec![0u8; len];
    r.read_exact(&mut m)?;
    let mut crc = [0u8; 4];
    r.read_exact(&mut crc)?;
    if crc32fast::hash(&m) != u32::from_le_bytes(crc) {
        return Err(invalid("snapshot meta checksum mismatch"));
    }
    bincode::serde::decode_from_slice(&m, CFG)
        .map(|(meta, _)| meta)
        .map_err(|e| invalid(format!("bad snapshot meta: {e}")))
}

/// Reads a whole snapshot file: its meta and keyspace.
fn read_snapshot(path: &Path) -> io::Result<(SnapshotMeta, crate::keyspace::Keyspace, Migrations)> {
    let mut r = BufReader::with_capacity(256 * 1024, File::open(path)?);
    let meta = read_snapshot_meta(&mut r)?;
    let ks = ks_snapshot::read(&mut r).map_err(|e| invalid(format!("{e:?}")))?;
    let migrations = read_migrations(&mut r)?;
    Ok((meta, ks, migrations))
}

pub type Hook = Arc<dyn Fn(&mut ShardState) + Send + Sync>;

/// The state machine of one shard: applies entries to the shared [`Shard`].
#[derive(Clone)]
pub struct ShardSm {
    shard: Arc<Shard>,
    snaps: Arc<SnapshotDir>,
    current: Arc<Mutex<Option<(SnapshotMeta, PathBuf)>>>,
    /// Run after each applied entry under the shard lock (the server marks WATCHed
    /// keys and wakes blocked clients here).
    after_apply: Hook,
}

impl ShardSm {
    /// Opens the state machine, loading the newest snapshot in `snaps` (if any) into the
    /// shard: restart = snapshot + replay of the log after it.
    pub fn open(shard: Arc<Shard>, snaps: SnapshotDir, after_apply: Hook) -> io::Result<ShardSm> {
        let mut current = None;
        if let Some(path) = snaps.latest()? {
            let (meta, ks, migrations) = read_snapshot(&path)?;
            let mut st = shard.lock();
            st.ks.replace_with(ks);
            st.migrations = migrations;
            st.raft_applied = meta.last_log_id.clone();
            st.membership = meta.last_membership.clone();
            after_apply(&mut st);
            drop(st);
            tracing::info!(snapshot = %path.display(), last = ?meta.last_log_id, "loaded snapshot");
            current = Some((meta, path));
        }
        Ok(ShardSm {
            shard,
            snaps: Arc::new(snaps),
            current: Arc::new(Mutex::new(current)),
            after_apply,
        })
    }

    pub fn shard(&self) -> &Arc<Shard> {
        &self.shard
    }

    /// The last snapshot's log index, for INFO.
    pub fn snapshot_index(&self) -> Option<u64> {
        let cur = self.current.lock().unwrap();
        cur.as_ref()
            .and_then(|(m, _)| m.last_log_id.as_ref().map(|l| l.index))
    }

    pub fn snapshot_dir(&self) -> &Arc<SnapshotDir> {
        &self.snaps
    }
}

impl RaftSnapshotBuilder<TypeConfig> for ShardSm {
    type SnapshotData = SnapFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (tmp, file) = self.snaps.create_temp()?;
        // The meta is read under the same lock as the keyspace, so they match.
        // TODO(perf): serialization holds the shard lock; a fork-less copy-on-write
        // snapshot would let clients run meanwhile.
        let meta = {
            let st = self.shard.lock();
            let meta = SnapshotMeta {
                last_log_id: st.raft_applied.clone(),
                last_membership: st.membership.clone(),
            };
            write_snapshot(&st, &meta, &file)?;
            meta
        };
        drop(file);
        let index = meta.last_log_id.as_ref().map(|l| l.index).unwrap_or(0);
        let path = self.snaps.commit(&tmp, index)?;
        tracing::info!(
            index,
            size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            "snapshot built"
        );
        *self.current.lock().unwrap() = Some((meta.clone(), path.clone()));
        Ok(Snapshot {
            meta,
            snapshot: SnapFile::open(path)?,
        })
    }
}

impl RaftStateMachine<TypeConfig> for ShardSm {
    type SnapshotData = SnapFile;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let st = self.shard.lock();
        Ok((st.raft_applied.clone(), st.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: futures_util::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        // A long backlog (a restart's replay, a migration's chunks) must not hold the
        // node's runtime: with one serving thread, heartbeats and votes of every group
        // wait behind it, and a node busy applying looked dead to its peers.
        let mut since_yield = std::time::Instant::now();
        while let Some((entry, responder)) = entries.try_next().await? {
            if since_yield.elapsed() >= std::time::Duration::from_millis(2) {
                tokio::task::yield_now().await;
                since_yield = std::time::Instant::now();
            }
            let replies = {
                let mut st = self.shard.lock();
                let replies = match &entry.payload {
                    EntryPayload::Blank => Vec::new(),
                    EntryPayload::Normal(Logged(e)) => st.apply(e),
                    EntryPayload::Membership(m) => {
                        st.membership =
                            StoredMembership::new(Some(entry.log_id.clone()), m.clone());
                        Vec::new()
                    }
                };
                st.raft_applied = Some(entry.log_id.clone());
                (self.after_apply)(&mut st);
                replies
            };
            if let Some(r) = responder {
                r.send(Applied(replies));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapFile,
    ) -> Result<(), io::Error> {
        let index = meta.last_log_id.as_ref().map(|l| l.index).unwrap_or(0);
        // A snapshot received into one of our temp files is renamed into place; one from
        // elsewhere (another group's directory) is copied, never moved.
        let ours = snapshot.path.parent() == Some(self.snaps_dir_path().as_path())
            && snapshot.path.extension().is_some_and(|e| e == "tmp");
        let tmp = if ours {
            snapshot.path.clone()
        } else {
            let (tmp, mut out) = self.snaps.create_temp()?;
            let mut src = snapshot.file;
            io::copy(&mut src, &mut out)?;
            tmp
        };
        // Validate the whole file before it replaces anything.
        let (file_meta, ks, migrations) = read_snapshot(&tmp)?;
        if file_meta.last_log_id != meta.last_log_id {
            return Err(invalid(format!(
                "snapshot file is for {:?}, expected {:?}",
                file_meta.last_log_id, meta.last_log_id
            )));
        }
        let path = self.snaps.commit(&tmp, index)?;
        {
            let mut st = self.shard.lock();
            st.ks.replace_with(ks);
            st.migrations = migrations;
            st.raft_applied = meta.last_log_id.clone();
            st.membership = meta.last_membership.clone();
            (self.after_apply)(&mut st);
        }
        tracing::info!(index, "snapshot installed");
        *self.current.lock().unwrap() = Some((meta.clone(), path));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let cur = self.current.lock().unwrap().clone();
        match cur {
            None => Ok(None),
            Some((meta, path)) => Ok(Some(Snapshot {
                meta,
                snapshot: SnapFile::open(path)?,
            })),
        }
    }
}

impl ShardSm {
    fn snaps_dir_path(&self) -> PathBuf {
        self.snaps.path().to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::testing::argv;
    use crate::shard::Clock;
    use crate::storage::FsyncPolicy;
    use openraft::storage::RaftStateMachine;
    use proto::Op;
    use std::sync::atomic::{AtomicU64, Ordering};

    static DIRS: AtomicU64 = AtomicU64::new(0);

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "shardis-sm-{tag}-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn sm_in(dir: &Path) -> ShardSm {
        let shard = Arc::new(Shard::with(Clock::manual(1_000), |ks| ks.len() * 100));
        ShardSm::open(shard, SnapshotDir::open(dir).unwrap(), Arc::new(|_| {})).unwrap()
    }

    /// openraft's storage conformance suite: our log store with the keyspace state
    /// machine.
    #[tokio::test]
    async fn conformance_suite_with_the_keyspace_state_machine() {
        let base = temp_dir("conformance");
        let n = AtomicU64::new(0);
        crate::storage::raft_log::conformance::run_suite::<TypeConfig, _, _>(
            FsyncPolicy::Always,
            false,
            || sm_in(&base.join(n.fetch_add(1, Ordering::Relaxed).to_string())),
        )
        .await
        .unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }

    fn entry(index: u64, time_ms: u64, seed: u64, op: Op) -> Entry {
        openraft::Entry {
            log_id: openraft::testing::log_id::<TypeConfig>(1, 1, index),
            payload: EntryPayload::Normal(Logged(WriteEntry { time_ms, seed, op })),
        }
    }

    async fn apply_all(sm: &mut ShardSm, entries: &[Entry]) {
        let stream = futures_util::stream::iter(entries.iter().cloned().map(|e| Ok((e, None))));
        sm.apply(stream).await.unwrap();
    }

    /// Two state machines applying the same log produce byte-identical snapshots, and
    /// a third restored from one of them goes on identically (random choices included).
    #[tokio::test]
    async fn same_log_same_snapshot_bytes() {
        let exec = |cmds: &[&[&str]]| Op::Exec(cmds.iter().map(|c| argv(c)).collect());
        let mut log = vec![openraft::testing::membership_ent::<TypeConfig>(
            1,
            1,
            1,
            vec![[1, 2, 3].into()],
        )];
        let mut i = 2;
        for round in 0..40u64 {
            let k = format!("k{round}");
            let ops = [
                exec(&[&["SADD", "s", &k, "a", "b", "c"], &["HSET", "h", &k, "v"]]),
                exec(&[&["SPOP", "s"]]),
                exec(&[&["SET", &k, "v", "PX", "500"], &["INCRBYFLOAT", "f", "0.1"]]),
                exec(&[
                    &["ZADD", "z", &round.to_string(), &k],
                    &["SRANDMEMBER", "s", "-3"],
                ]),
                Op::ExpireKeys(vec![bytes::Bytes::from(format!(
                    "k{}",
                    round.saturating_sub(3)
                ))]),
                exec(&[
                    &["HRANDFIELD", "h", "2"],
                    &["RPUSH", "l", &k],
                    &["LPOP", "l"],
                ]),
            ];
            for op in ops {
                log.push(entry(i, 10_000 + round * 200, round * 7919 + i, op));
                i += 1;
            }
        }
        let (da, db, dc) = (temp_dir("a"), temp_dir("b"), temp_dir("c"));
        let (mut a, mut b) = (sm_in(&da), sm_in(&db));
        let half = log.len() / 2;
        apply_all(&mut a, &log).await;
        apply_all(&mut b, &log[..half]).await;
        apply_all(&mut b, &log[half..]).await;
        let sa = a.build_snapshot().await.unwrap();
        let sb = b.build_snapshot().await.unwrap();
        assert_eq!(sa.meta, sb.meta);
        let (ba, bb) = (
            std::fs::read(&sa.snapshot.path).unwrap(),
            std::fs::read(&sb.snapshot.path).unwrap(),
        );
        assert!(ba.len() > 500, "the snapshot holds the state");
        assert!(ba == bb, "same log, different snapshot bytes");
        // A replica restored from the snapshot applies the rest of a longer log like the
        // original (SPOP and SRANDMEMBER pick the same members).
        let mut c = sm_in(&dc);
        c.install_snapshot(&sa.meta, SnapFile::open(sa.snapshot.path.clone()).unwrap())
            .await
            .unwrap();
        let more: Vec<Entry> = (0..30)
            .map(|j| {
                entry(
                    i + j,
                    50_000 + j,
                    j,
                    exec(&[&["SPOP", "s"], &["SADD", "s", &format!("x{j}")]]),
                )
            })
            .collect();
        apply_all(&mut a, &more).await;
        apply_all(&mut c, &more).await;
        let sa = a.build_snapshot().await.unwrap();
        let sc = c.build_snapshot().await.unwrap();
        assert!(
            std::fs::read(&sa.snapshot.path).unwrap() == std::fs::read(&sc.snapshot.path).unwrap(),
            "a restored replica diverged"
        );
        for d in [da, db, dc] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    /// A fence in the log refuses later writes to its slots (only those commands of a
    /// merged batch), and the migration record survives a snapshot and a restart.
    #[tokio::test]
    async fn a_fence_refuses_writes_in_apply_and_survives_snapshots() {
        use proto::MigrateOp;
        let d = temp_dir("fence");
        let mut sm = sm_in(&d);
        let inside = (0..)
            .map(|i| format!("in{i}"))
            .find(|k| proto::key_slot(k.as_bytes()) < 100)
            .unwrap();
        let outside = (0..)
            .map(|i| format!("out{i}"))
            .find(|k| proto::key_slot(k.as_bytes()) >= 100)
            .unwrap();
        let begin = Op::Migrate(MigrateOp::Begin {
            id: 3,
            attempt: 1,
            start: 0,
            end: 99,
            source: true,
        });
        let fence = Op::Migrate(MigrateOp::Fence { id: 3, attempt: 1 });
        let batch = Op::Exec(vec![
            argv(&["SET", &outside, "1"]),
            argv(&["SET", &inside, "1"]),
        ]);
        apply_all(
            &mut sm,
            &[entry(1, 1_000, 1, begin), entry(2, 1_000, 2, fence)],
        )
        .await;
        apply_all(&mut sm, &[entry(3, 1_000, 3, batch)]).await;
        {
            let st = sm.shard().lock();
            assert!(
                st.ks.exists(outside.as_bytes(), 1_000),
                "the other slot's write ran"
            );
            assert!(
                !st.ks.exists(inside.as_bytes(), 1_000),
                "the fenced slot's write was refused"
            );
            assert!(st.migrations.refuses(50));
        }
        let snap = sm.build_snapshot().await.unwrap();
        drop(snap);
        let restarted = sm_in(&d);
        let st = restarted.shard().lock();
        assert!(st.migrations.refuses(50) && !st.migrations.refuses(100));
        assert_eq!(st.migrations.steps.get(&3).map(|s| s.attempt), Some(1));
        drop(st);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[tokio::test]
    async fn watched_exec_aborts_when_a_digest_changed() {
        let d = temp_dir("watch");
        let mut sm = sm_in(&d);
        let digest = |sm: &ShardSm| sm.shard().lock().ks.digest(b"w", 2_000);
        apply_all(
            &mut sm,
            &[entry(1, 1_000, 1, Op::Exec(vec![argv(&["SET", "w", "1"])]))],
        )
        .await;
        let seen = digest(&sm);
        assert_ne!(seen, 0);
        let guarded = |idx, val: &str| {
            entry(
                idx,
                2_000,
                idx,
                Op::ExecWatched {
                    watched: vec![(bytes::Bytes::from_static(b"w"), seen)],
                    cmds: vec![argv(&["SET", "w", val])],
                },
            )
        };
        // Unchanged: runs. Then the value differs from what was watched: aborts.
        apply_all(&mut sm, &[guarded(2, "2")]).await;
        assert_eq!(
            sm.shard()
                .lock()
                .ks
                .peek(b"w", 2_000)
                .map(|e| e.value.type_name()),
            Some("string")
        );
        assert_ne!(digest(&sm), seen, "the guarded EXEC ran");
        let after = digest(&sm);
        apply_all(&mut sm, &[guarded(3, "3")]).await;
        assert_eq!(digest(&sm), after, "a stale guard aborts the EXEC");
        std::fs::remove_dir_all(d).unwrap();
    }
}
