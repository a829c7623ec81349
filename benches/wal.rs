//! Durable appends: the node's shared Raft log ([`LogEngine`], through a group's
//! `RaftLogStore` under `appendfsync always`: one write, then the flusher's fdatasync
//! before the callback) against sled (apply the batch, then `flush()`), for batches of
//! 1, 16 and 128 entries of about 100 bytes, the shape of a Raft log under load. Then 16
//! groups of one engine appending one entry at a time concurrently (group commit across
//! groups): entries/s, and fsyncs per entry printed after it. Before the timings, the
//! disk footprint of each store after purging half of a log.
//!
//! Run: `cargo bench --bench wal -- --warm-up-time 1 --measurement-time 3`.
//! Data goes to a temp dir under std::env::temp_dir(): put that on the disk you care
//! about (a tmpfs makes every fsync free and the comparison meaningless).

use criterion::{BenchmarkId, Criterion, Throughput};
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::EntryPayload;
use shardis::storage::{FsyncPolicy, LogEngine, LogStoreOptions, RaftLogStore};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

openraft::declare_raft_types!(
    pub Bench:
        D = String,
        R = String,
);

type Entry = openraft::type_config::alias::EntryOf<Bench>;

const ENTRY: usize = 100;
const GROUPS: u64 = 16;

fn payload(i: u64) -> Vec<u8> {
    let mut p = vec![(i % 251) as u8; ENTRY];
    p[..8].copy_from_slice(&i.to_le_bytes());
    p
}

fn entry(i: u64) -> Entry {
    openraft::Entry {
        log_id: openraft::testing::log_id::<Bench>(1, 1, i),
        // ~100 bytes encoded, like the sled values.
        payload: EntryPayload::Normal(format!("{i:0>width$}", width = ENTRY - 8)),
    }
}

fn tempdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("shardis-bench-{name}-"))
        .tempdir()
        .expect("temp dir")
}

/// (apparent bytes, allocated bytes) of every file under `dir`.
fn dir_size(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("dir entry");
        let meta = entry.metadata().expect("metadata");
        if meta.is_dir() {
            let (a, b) = dir_size(&entry.path());
            total = (total.0 + a, total.1 + b);
        } else {
            total = (total.0 + meta.len(), total.1 + meta.blocks() * 512);
        }
    }
    total
}

fn open_sled(dir: &Path) -> sled::Db {
    sled::Config::new()
        .path(dir)
        // Only the flush() we call makes data durable (and costs time) in the timings.
        .flush_every_ms(None)
        .open()
        .expect("open sled")
}

fn open_engine(dir: &Path, policy: FsyncPolicy, segment_size: u64) -> Arc<LogEngine> {
    LogEngine::open(
        dir,
        LogStoreOptions {
            policy,
            segment_size,
            ..LogStoreOptions::default()
        },
    )
    .expect("open log engine")
}

/// Appends `batch` entries and waits until the flusher reports them durable.
async fn engine_append(store: &mut RaftLogStore<Bench>, next: &mut u64, batch: usize) {
    let entries: Vec<Entry> = (0..batch as u64).map(|k| entry(*next + k)).collect();
    let (tx, rx) = Bench::oneshot();
    store
        .append(entries, IOFlushed::signal(tx))
        .await
        .expect("append");
    rx.await.expect("callback").expect("durable");
    *next += batch as u64;
}

fn sled_append(db: &sled::Db, next: &mut u64, batch: usize) {
    let mut b = sled::Batch::default();
    for k in 0..batch as u64 {
        b.insert(&(*next + k).to_be_bytes(), payload(*next + k));
    }
    db.apply_batch(b).expect("sled batch");
    db.flush().expect("sled flush");
    *next += batch as u64;
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn durable_appends(c: &mut Criterion) {
    let rt = runtime(1);
    let mut group = c.benchmark_group("durable_append");
    for batch in [1usize, 16, 128] {
        group.throughput(Throughput::Elements(batch as u64));

        let dir = tempdir("engine");
        let engine = open_engine(dir.path(), FsyncPolicy::Always, 64 << 20);
        let mut store = engine.open_group::<Bench>(1).expect("open group");
        let mut next = 1;
        group.bench_with_input(BenchmarkId::new("engine", batch), &batch, |b, &batch| {
            b.iter(|| rt.block_on(engine_append(&mut store, &mut next, batch)))
        });
        drop(store);
        drop(engine);

        let dir = tempdir("sled");
        let db = open_sled(dir.path());
        let mut next = 1;
        group.bench_with_input(BenchmarkId::new("sled", batch), &batch, |b, &batch| {
            b.iter(|| sled_append(&db, &mut next, batch))
        });
    }
    group.finish();
}

/// 16 groups of one engine, each appending batches of one entry (waiting for each to be
/// durable, as a busy shard's Raft core keeps one flush in flight) concurrently under
/// `always`. One criterion iteration is one entry, so its throughput is entries/s.
fn many_groups(c: &mut Criterion) {
    let rt = runtime(2);
    let dir = tempdir("engine-groups");
    let engine = open_engine(dir.path(), FsyncPolicy::Always, 64 << 20);
    let stores: Vec<_> = (1..=GROUPS)
        .map(|g| {
            Arc::new(tokio::sync::Mutex::new((
                engine.open_group::<Bench>(g).expect("open group"),
                1u64,
            )))
        })
        .collect();
    let entries = Arc::new(AtomicU64::new(0));
    let fsyncs = AtomicU64::new(0);
    let mut group = c.benchmark_group("shared_log");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("groups_x_batch_1", GROUPS), |b| {
        b.iter_custom(|iters| {
            let per_group = iters.div_ceil(GROUPS);
            let before = engine.stats().fsync_count;
            let started = Instant::now();
            rt.block_on(async {
                let tasks: Vec<_> = stores
                    .iter()
                    .map(|s| {
                        let s = Arc::clone(s);
                        let entries = Arc::clone(&entries);
                        tokio::spawn(async move {
                            let mut s = s.lock().await;
                            let (store, next) = &mut *s;
                            for _ in 0..per_group {
                                engine_append(store, next, 1).await;
                            }
                            entries.fetch_add(per_group, Ordering::Relaxed);
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("group task");
                }
            });
            let elapsed = started.elapsed();
            fsyncs.fetch_add(engine.stats().fsync_count - before, Ordering::Relaxed);
            // Time per entry as criterion counts them (iters), though each group ran
            // per_group of them.
            elapsed.mul_f64(iters as f64 / (per_group * GROUPS) as f64)
        })
    });
    group.finish();
    let (e, f) = (
        entries.load(Ordering::Relaxed),
        fsyncs.load(Ordering::Relaxed),
    );
    println!(
        "shared_log/groups_x_batch_1/{GROUPS}: {e} entries, {f} fsyncs: {:.3} fsyncs per entry ({:.1} entries per fsync)",
        f as f64 / e.max(1) as f64,
        e as f64 / f.max(1) as f64
    );
}

/// Writes N entries, purges the older half (as a snapshot lets Raft do), and prints
/// the directory size before and after, for both stores.
fn disk_after_purge() {
    const N: u64 = 100_000;
    const BATCH: usize = 128;
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);

    let rt = runtime(1);
    let dir = tempdir("engine-size");
    let engine = open_engine(dir.path(), FsyncPolicy::No, 1024 * 1024);
    let mut store = engine.open_group::<Bench>(1).expect("open group");
    rt.block_on(async {
        let mut next = 1;
        while next <= N {
            engine_append(&mut store, &mut next, BATCH).await;
        }
    });
    engine.sync().expect("sync");
    let before = dir_size(dir.path());
    rt.block_on(store.purge(openraft::testing::log_id::<Bench>(1, 1, N / 2)))
        .expect("purge");
    engine.sync().expect("sync"); // dead segments go once the purge is durable
    let after = dir_size(dir.path());
    println!(
        "disk: engine {N} x {ENTRY} B entries: {:.1} MiB ({:.1} MiB allocated); \
         after purging half: {:.1} MiB ({:.1} MiB allocated)",
        mb(before.0),
        mb(before.1),
        mb(after.0),
        mb(after.1)
    );
    drop(store);
    drop(engine);

    let dir = tempdir("sled-size");
    let db = open_sled(dir.path());
    let mut next = 1;
    while next <= N {
        let mut b = sled::Batch::default();
        for k in 0..BATCH as u64 {
            b.insert(&(next + k).to_be_bytes(), payload(next + k));
        }
        db.apply_batch(b).expect("sled batch");
        next += BATCH as u64;
    }
    db.flush().expect("sled flush");
    let before = dir_size(dir.path());
    let mut b = sled::Batch::default();
    for i in 1..=N / 2 {
        b.remove(&i.to_be_bytes());
    }
    db.apply_batch(b).expect("sled remove");
    db.flush().expect("sled flush");
    let after = dir_size(dir.path());
    drop(db);
    let reopened = open_sled(dir.path());
    reopened.flush().expect("sled flush");
    let after_reopen = dir_size(dir.path());
    println!(
        "disk: sled {N} x {ENTRY} B entries: {:.1} MiB ({:.1} MiB allocated); \
         after removing half + flush: {:.1} MiB ({:.1} MiB allocated); \
         after reopen: {:.1} MiB ({:.1} MiB allocated)",
        mb(before.0),
        mb(before.1),
        mb(after.0),
        mb(after.1),
        mb(after_reopen.0),
        mb(after_reopen.1)
    );
}

fn main() {
    disk_after_purge();
    let mut c = Criterion::default().configure_from_args();
    durable_appends(&mut c);
    many_groups(&mut c);
    c.final_summary();
}
