//! Slot migrations (layer 3; DESIGN.md, online resharding): the driver that moves a
//! slot range from one shard to another while clients use it.
//!
//! A migration is created in the cluster map (meta group) and driven by whichever
//! node leads its source shard. One attempt of the driver:
//! 1. claims the migration by bumping its `attempt` in the map (a compare-and-set):
//!    steps of older attempts are refused by both shards from then on;
//! 2. `Begin` in the source's log (lifts an older attempt's fence) and in the
//!    target's (drops what an older attempt copied; the target refuses the range);
//! 3. tracks the range's changed keys on the source replica here and copies the
//!    range in chunks through the target's log (each chunk once, in order);
//! 4. sends the changed keys again, pass after pass, until few are left;
//! 5. `Fence` in the source's log: from that entry on the source refuses the range
//!    (`-TRYAGAIN`), so the keys changed before it are all the final delta; it is sent;
//! 6. flips ownership in the map (epoch + 1; guarded by the attempt), so clients go to
//!    the target;
//! 7. `Own` in the target's log (it serves the range), `Release` in the source's
//!    (deletes its copy, in bounded batches), and the migration leaves the map.
//!
//! Any failure ends the attempt; the next one (here or on the source's next leader)
//! starts over from step 1, or from step 7 once the map has flipped. The write pause
//! is the time from step 5 to step 6.

use crate::meta::Meta;
use crate::resp::Reply;
use crate::shard::replica::Replica;
use futures_util::future::BoxFuture;
use proto::map::{ClusterMap, Migration, Phase};
use proto::{Item, MigrateOp, Op};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes of keys per chunk entry.
const CHUNK_BYTES: usize = 256 * 1024;
/// Changed keys left below which the source is fenced for the final delta.
const FENCE_BELOW: usize = 2_000;
/// Delta passes before fencing whatever is left (a range written faster than it is
/// copied still moves, with a longer pause).
const MAX_PASSES: usize = 20;
/// How often the node looks for migrations to drive.
const SCAN_INTERVAL: Duration = Duration::from_millis(200);

/// Proposes an operation to a shard's log (wherever its leader is); the replies.
pub type Propose =
    Arc<dyn Fn(u64, Op) -> BoxFuture<'static, Result<Vec<Reply>, String>> + Send + Sync>;
/// The local replica of a shard, if this node hosts one.
pub type Local = Arc<dyn Fn(u64) -> Option<Arc<Replica>> + Send + Sync>;

/// Progress of a migration driven here, for `admin status`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Progress {
    pub id: u64,
    pub attempt: u64,
    pub phase: String,
    pub keys_total: u64,
    pub keys_copied: u64,
    pub bytes_copied: u64,
    pub started_ms: u64,
    /// The longest fence-to-flip pause of this migration so far, in microseconds.
    pub pause_us: u64,
}

pub struct Resharder {
    meta: Arc<Meta>,
    propose: Propose,
    local: Local,
    running: Mutex<BTreeSet<u64>>,
    progress: Mutex<BTreeMap<u64, Progress>>,
    /// Migrations finished here, for status: the last few.
    finished: Mutex<Vec<Progress>>,
    /// Total attempts started here (tests and INFO).
    pub attempts: AtomicU64,
    /// Bytes a second the bulk copy sends (`migration-rate`); 0: unpaced. The delta
    /// passes and the final delta are never paced (the fence is held meanwhile).
    pub rate: AtomicU64,
}

fn err_of(r: Result<Vec<Reply>, String>) -> Result<Reply, String> {
    match r {
        Ok(mut v) => match v.pop() {
            Some(Reply::Error(e)) => Err(e.to_string()),
            Some(x) => Ok(x),
            None => Err("no reply".into()),
        },
        Err(e) => Err(e),
    }
}

fn now_ms() -> u64 {
    crate::shard::now_ms()
}

impl Resharder {
    pub fn new(meta: Arc<Meta>, propose: Propose, local: Local) -> Arc<Resharder> {
        Arc::new(Resharder {
            meta,
            propose,
            local,
            running: Mutex::new(BTreeSet::new()),
            progress: Mutex::new(BTreeMap::new()),
            finished: Mutex::new(Vec::new()),
            attempts: AtomicU64::new(0),
            rate: AtomicU64::new(0),
        })
    }

    /// Progress of the migrations driven here (in flight, then recently finished).
    pub fn progress(&self) -> Vec<Progress> {
        let mut v: Vec<Progress> = self.progress.lock().unwrap().values().cloned().collect();
        v.extend(self.finished.lock().unwrap().iter().cloned());
        v
    }

    /// Runs forever: starts a driver for every migration whose source shard this
    /// node leads and that is not driven here yet.
    pub async fn run(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SCAN_INTERVAL).await;
            let map = self.meta.current();
            for m in &map.migrations {
                let Some(replica) = (self.local)(m.from) else {
                    continue;
                };
                if !replica.is_leader() || !self.running.lock().unwrap().insert(m.id) {
                    continue;
                }
                let me = self.clone();
                let id = m.id;
                tokio::spawn(async move {
                    if let Err(e) = me.drive(id).await {
                        tracing::warn!(migration = id, error = %e, "migration attempt failed; it will be retried");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    me.progress.lock().unwrap().remove(&id);
                    me.running.lock().unwrap().remove(&id);
                });
            }
        }
    }

    fn set_progress(&self, id: u64, f: impl FnOnce(&mut Progress)) {
        let mut p = self.progress.lock().unwrap();
        f(p.entry(id).or_insert_with(|| Progress {
            id,
            started_ms: now_ms(),
            ..Default::default()
        }));
    }

    async fn propose_ok(&self, shard: u64, op: Op) -> Result<Reply, String> {
        err_of((self.propose)(shard, op).await)
    }

    /// One attempt at migration `id`.
    async fn drive(self: &Arc<Self>, id: u64) -> Result<(), String> {
        let map = self.meta.current();
        let Some(m) = map.migrations.iter().find(|m| m.id == id).cloned() else {
            return Ok(());
        };
        if m.phase == Phase::Flipped {
            return self.finish(&m).await;
        }
        let source = (self.local)(m.from).ok_or("the source shard is not hosted here")?;
        // 1. Claim.
        let claimed = self
            .meta
            .update(|map| {
                let Some(x) = map.migrations.iter().find(|x| x.id == id) else {
                    return Err("the migration left the map".into());
                };
                if x.phase != Phase::Copying || x.attempt != m.attempt {
                    return Err("another driver took the migration".into());
                }
                let mut next = map.clone();
                next.migrations
                    .iter_mut()
                    .find(|x| x.id == id)
                    .unwrap()
                    .attempt += 1;
                Ok(Some(next))
            })
            .await?;
        let m = claimed
            .migrations
            .iter()
            .find(|x| x.id == id)
            .cloned()
            .ok_or("the migration left the map")?;
        let attempt = m.attempt;
        self.attempts.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            migration = id,
            attempt,
            from = m.from,
            to = m.to,
            start = m.start,
            end = m.end,
            "migration attempt"
        );
        let r = self.copy(&source, &m).await;
        source.shard.lock().ks.stop_tracking();
        match r {
            Ok(()) => self.finish(&self.flipped(&m)?).await,
            Err(e) => Err(e),
        }
    }

    /// The migration as the map has it after the flip (from the current map).
    fn flipped(&self, m: &Migration) -> Result<Migration, String> {
        self.meta
            .current()
            .migrations
            .iter()
            .find(|x| x.id == m.id)
            .cloned()
            .ok_or_else(|| "the migration left the map".into())
    }

    /// Steps 2 to 6.
    async fn copy(self: &Arc<Self>, source: &Arc<Replica>, m: &Migration) -> Result<(), String> {
        let (id, attempt) = (m.id, m.attempt);
        self.set_progress(id, |p| {
            p.attempt = attempt;
            p.phase = "begin".into();
        });
        let begin = |source| {
            Op::Migrate(MigrateOp::Begin {
                id,
                attempt,
                start: m.start,
                end: m.end,
                source,
            })
        };
        self.propose_ok(m.from, begin(true)).await?;
        self.propose_ok(m.to, begin(false)).await?;
        // 3. Bulk copy, tracking changes from before the first read.
        let shard = source.shard.clone();
        let total = {
            let mut st = shard.lock();
            st.ks.track_slots(m.start, m.end);
            st.ks.count_in_slots(m.start, m.end) as u64
        };
        self.set_progress(id, |p| {
            p.phase = "copying".into();
            p.keys_total = total;
        });
        let mut seq = 0u64;
        let mut cursor = crate::keyspace::migrate::ExportCursor::new(m.start);
        let mut next_send: Option<Instant> = None;
        while !cursor.done {
            if !source.is_leader() {
                return Err("lost the source's leadership".into());
            }
            let items = {
                let mut st = shard.lock();
                let now = st.now();
                st.ks.export_chunk(&mut cursor, m.end, CHUNK_BYTES, now)
            };
            if items.is_empty() {
                continue;
            }
            let bytes: usize = items.iter().map(crate::keyspace::migrate::item_size).sum();
            self.send_chunk(m, &mut seq, items).await?;
            let rate = self.rate.load(Ordering::Relaxed);
            if rate > 0 {
                let at = crate::shard::net::next_send(next_send, Instant::now(), bytes, rate);
                next_send = Some(at);
                tokio::time::sleep_until(at.into()).await;
            }
        }
        // 4. Delta passes.
        let mut passes = 0;
        loop {
            let changed = take_changed(&shard)?;
            let n = changed.len();
            self.set_progress(id, |p| {
                p.phase = format!("delta pass {} ({n} keys)", passes + 1)
            });
            self.send_keys(m, &mut seq, &shard, changed).await?;
            passes += 1;
            if n < FENCE_BELOW || passes >= MAX_PASSES {
                break;
            }
        }
        // 5. Fence and final delta.
        if !source.is_leader() {
            return Err("lost the source's leadership".into());
        }
        self.set_progress(id, |p| p.phase = "cutover".into());
        let paused = Instant::now();
        let result = self.cutover(source, m, &mut seq, &shard).await;
        if let Err(e) = &result {
            // Lift the fence at once rather than at the next attempt's begin.
            let _ = self.propose_ok(m.from, begin(true)).await;
            return Err(format!("cutover: {e}"));
        }
        let pause = paused.elapsed();
        tracing::info!(
            migration = id,
            attempt,
            pause_ms = pause.as_secs_f64() * 1000.0,
            "migration cut over"
        );
        self.set_progress(id, |p| {
            p.pause_us = p.pause_us.max(pause.as_micros() as u64);
            p.phase = "cleanup".into();
        });
        Ok(())
    }

    async fn cutover(
        &self,
        source: &Arc<Replica>,
        m: &Migration,
        seq: &mut u64,
        shard: &Arc<crate::shard::Shard>,
    ) -> Result<(), String> {
        let (id, attempt) = (m.id, m.attempt);
        self.propose_ok(m.from, Op::Migrate(MigrateOp::Fence { id, attempt }))
            .await?;
        // Every write before the fence is applied here once this returns.
        source
            .read_barrier()
            .await
            .map_err(|e| format!("{:?}", e.reply()))?;
        if !shard.lock().migrations.refuses(m.start) {
            return Err("the fence is not in the source's state".into());
        }
        test_hold("cutover").await;
        let changed = take_changed(shard)?;
        self.send_keys(m, seq, shard, changed).await?;
        // 6. Flip, guarded by the attempt.
        let (start, end, to) = (m.start, m.end, m.to);
        self.meta
            .update(|map| {
                let Some(x) = map.migrations.iter().find(|x| x.id == id) else {
                    return Err("the migration left the map".into());
                };
                if x.phase == Phase::Flipped && x.attempt == attempt {
                    return Ok(None);
                }
                if x.phase != Phase::Copying || x.attempt != attempt {
                    return Err("another driver took the migration".into());
                }
                let mut next = map.clone();
                next.assign(start, end, to);
                next.migrations
                    .iter_mut()
                    .find(|x| x.id == id)
                    .unwrap()
                    .phase = Phase::Flipped;
                Ok(Some(next))
            })
            .await?;
        Ok(())
    }

    async fn send_chunk(
        &self,
        m: &Migration,
        seq: &mut u64,
        items: Vec<Item>,
    ) -> Result<(), String> {
        let keys = items
            .iter()
            .filter(|i| matches!(i, Item::Put { first: true, .. }))
            .count() as u64;
        let bytes: usize = items.iter().map(crate::keyspace::migrate::item_size).sum();
        *seq += 1;
        let op = Op::Migrate(MigrateOp::Chunk {
            id: m.id,
            attempt: m.attempt,
            seq: *seq,
            items,
        });
        // A resent chunk is a no-op on the target, so an unknown outcome is retried.
        let mut tries = 0;
        loop {
            match self.propose_ok(m.to, op.clone()).await {
                Ok(_) => break,
                // A stale step or a chunk that does not fit fails the same way again.
                Err(e) if tries < 5 && !e.contains("stale") && !e.contains("does not fit") => {
                    tries += 1;
                    tracing::debug!(migration = m.id, error = %e, "chunk not confirmed, resending");
                    tokio::time::sleep(Duration::from_millis(100 * tries)).await;
                }
                Err(e) => return Err(format!("chunk {}: {e}", *seq)),
            }
        }
        self.set_progress(m.id, |p| {
            p.keys_copied += keys;
            p.bytes_copied += bytes as u64;
        });
        Ok(())
    }

    /// Sends the current state of `keys` in chunks.
    async fn send_keys(
        &self,
        m: &Migration,
        seq: &mut u64,
        shard: &Arc<crate::shard::Shard>,
        keys: Vec<Box<[u8]>>,
    ) -> Result<(), String> {
        let mut rest = &keys[..];
        while !rest.is_empty() {
            let mut items = Vec::new();
            let mut used = 0;
            {
                let mut st = shard.lock();
                let now = st.now();
                while let Some((k, tail)) = rest.split_first() {
                    if used >= CHUNK_BYTES {
                        break;
                    }
                    for i in st.ks.export_changed(k, now) {
                        used += crate::keyspace::migrate::item_size(&i);
                        items.push(i);
                    }
                    rest = tail;
                }
            }
            self.send_chunk(m, seq, items).await?;
        }
        Ok(())
    }

    /// Step 7: the target serves, the source deletes its copy, the map forgets the
    /// migration.
    async fn finish(&self, m: &Migration) -> Result<(), String> {
        let (id, start, end) = (m.id, m.start, m.end);
        self.set_progress(id, |p| p.phase = "cleanup".into());
        test_hold("cleanup").await;
        self.propose_ok(m.to, Op::Migrate(MigrateOp::Own { id, start, end }))
            .await?;
        loop {
            match self
                .propose_ok(m.from, Op::Migrate(MigrateOp::Release { id, start, end }))
                .await?
            {
                Reply::Int(0) => break,
                Reply::Int(_) => tokio::task::yield_now().await,
                other => return Err(format!("release answered {other:?}")),
            }
        }
        self.meta
            .update(|map| {
                if !map.migrations.iter().any(|x| x.id == id) {
                    return Ok(None);
                }
                let mut next = map.clone();
                next.migrations.retain(|x| x.id != id);
                Ok(Some(next))
            })
            .await?;
        tracing::info!(migration = id, "migration done");
        let done = self.progress.lock().unwrap().remove(&id);
        if let Some(mut p) = done {
            p.phase = "done".into();
            let mut f = self.finished.lock().unwrap();
            f.push(p);
            let n = f.len();
            if n > 16 {
                f.drain(..n - 16);
            }
        }
        Ok(())
    }
}

/// Tests only: `SHARDIS_TEST_MIGRATION_HOLD_MS=N` holds every migration for N ms with
/// its source fenced (before the final delta) and again after the flip (before the
/// target serves), so a test can kill a leader inside those short phases. Not a
/// setting; the node logs a warning when it is on.
async fn test_hold(phase: &str) {
    static HOLD: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let ms = *HOLD.get_or_init(|| {
        let ms = std::env::var("SHARDIS_TEST_MIGRATION_HOLD_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if ms > 0 {
            tracing::warn!(ms, "TEST HOLD ON: migrations pause at cutover and cleanup (SHARDIS_TEST_MIGRATION_HOLD_MS)");
        }
        ms
    });
    if ms > 0 {
        tracing::warn!(phase, ms, "test hold");
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

fn take_changed(shard: &Arc<crate::shard::Shard>) -> Result<Vec<Box<[u8]>>, String> {
    shard
        .lock()
        .ks
        .take_changed()
        .ok_or_else(|| "change tracking broke (the source's state was replaced)".to_string())
}

/// A new migration of `start..=end` to shard `to`, added to `map` (the range must lie
/// in one shard's ranges, and neither shard may be in another migration).
pub fn plan_move(map: &ClusterMap, start: u16, end: u16, to: u64) -> Result<ClusterMap, String> {
    if start > end || end as usize >= proto::SLOTS as usize {
        return Err(format!("ERR invalid slot range {start}-{end}"));
    }
    if !map.shards.contains_key(&to) {
        return Err(format!("ERR unknown shard {to}"));
    }
    let from = map
        .shard_of(start)
        .ok_or_else(|| format!("ERR slot {start} is not served"))?;
    if map
        .ranges
        .iter()
        .any(|r| r.start <= end && start <= r.end && r.shard != from)
    {
        return Err(format!(
            "ERR slots {start}-{end} are not all in shard {from}"
        ));
    }
    if from == to {
        return Err(format!("ERR slots {start}-{end} are already in shard {to}"));
    }
    if let Some(x) = map
        .migrations
        .iter()
        .find(|x| [x.from, x.to].iter().any(|s| *s == from || *s == to))
    {
        return Err(format!(
            "ERR shard {} is already in migration {} ({}-{} from {} to {})",
            if x.from == from || x.to == from {
                from
            } else {
                to
            },
            x.id,
            x.start,
            x.end,
            x.from,
            x.to
        ));
    }
    let mut next = map.clone();
    next.migrations.push(Migration {
        id: map.epoch + 1,
        start,
        end,
        from,
        to,
        attempt: 0,
        phase: Phase::Copying,
    });
    Ok(next)
}

/// The last `count` slots of `from`'s ranges (highest first taken), as one range if
/// they are contiguous; for the count form of `reshard`.
pub fn last_slots(map: &ClusterMap, from: u64, count: u32) -> Result<(u16, u16), String> {
    let r = map
        .ranges_of(from)
        .last()
        .ok_or_else(|| format!("ERR shard {from} owns no slots"))?;
    let size = r.end as u32 - r.start as u32 + 1;
    if count == 0 || count > size {
        return Err(format!(
            "ERR shard {from}'s last range {}-{} holds {size} slots; move at most that many at once",
            r.start, r.end
        ));
    }
    Ok(((r.end as u32 + 1 - count) as u16, r.end))
}

/// `split SHARD`: a new shard (id one above the highest) placed on `replicas`, and a
/// migration of the upper half of `shard`'s largest range into it.
pub fn plan_split(
    map: &ClusterMap,
    shard: u64,
    replicas: Vec<u64>,
) -> Result<(ClusterMap, u64), String> {
    let r = map
        .ranges_of(shard)
        .max_by_key(|r| r.end - r.start)
        .copied()
        .ok_or_else(|| format!("ERR shard {shard} owns no slots"))?;
    if r.start == r.end {
        return Err(format!(
            "ERR shard {shard}'s largest range is one slot: nothing to split"
        ));
    }
    let new_id = map.shards.keys().max().copied().unwrap_or(0) + 1;
    let mut next = map.clone();
    next.shards.insert(new_id, replicas);
    let mid = r.start + (r.end - r.start).div_ceil(2);
    let next = plan_move(&next, mid, r.end, new_id)?;
    Ok((next, new_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ClusterMap {
        crate::router::initial_map(
            (1..=3)
                .map(|n| {
                    (
                        n,
                        proto::NodeAddr {
                            peer: format!("p{n}"),
                            client: format!("c{n}"),
                        },
                    )
                })
                .collect(),
            3,
            3,
        )
    }

    #[test]
    fn plans_are_validated() {
        let m = map();
        let r0 = m.ranges[0];
        let next = plan_move(&m, r0.start, r0.start + 9, 2).unwrap();
        next.validate().unwrap();
        assert_eq!(next.migrations[0].from, r0.shard);
        assert!(plan_move(&m, r0.start, r0.start + 9, r0.shard)
            .unwrap_err()
            .contains("already"));
        assert!(plan_move(&m, r0.start, 16383, 2)
            .unwrap_err()
            .contains("not all"));
        assert!(plan_move(&m, 0, 10, 9)
            .unwrap_err()
            .contains("unknown shard"));
        assert!(plan_move(&next, r0.end, r0.end, 3)
            .unwrap_err()
            .contains("already in migration"));
        let (a, b) = last_slots(&m, 2, 100).unwrap();
        assert_eq!(b - a + 1, 100);
        assert_eq!(m.shard_of(a), Some(2));
        assert!(last_slots(&m, 2, 20_000).is_err());
        let (split, id) = plan_split(&m, 1, vec![1, 2, 3]).unwrap();
        split.validate().unwrap();
        assert_eq!(id, 4);
        let mig = &split.migrations[0];
        assert_eq!((mig.from, mig.to, mig.end), (1, 4, r0.end));
        assert_eq!(mig.start, r0.start + (r0.end - r0.start).div_ceil(2));
    }
}
