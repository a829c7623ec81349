//! Durable appends: our segmented WAL (one write + one fdatasync per batch) against sled
//! (apply the batch, then `flush()`), for batches of 1, 16 and 128 entries of 100 bytes,
//! the shape of a Raft log under load. Then, before the timings, the disk footprint of
//! each after purging half of a log.
//!
//! Run: `cargo bench --bench wal -- --warm-up-time 1 --measurement-time 3`.
//! Data goes to a temp dir under std::env::temp_dir(): put that on the disk you care
//! about (a tmpfs makes every fsync free and the comparison meaningless).

use criterion::{BenchmarkId, Criterion, Throughput};
use shardis::storage::{Wal, WalOptions};
use std::path::Path;

const ENTRY: usize = 100;

fn payload(i: u64) -> Vec<u8> {
    let mut p = vec![(i % 251) as u8; ENTRY];
    p[..8].copy_from_slice(&i.to_le_bytes());
    p
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

fn wal_append(wal: &mut Wal, next: &mut u64, batch: usize) {
    let data: Vec<Vec<u8>> = (0..batch as u64).map(|k| payload(*next + k)).collect();
    let records: Vec<(u64, &[u8])> = data
        .iter()
        .enumerate()
        .map(|(k, p)| (*next + k as u64, p.as_slice()))
        .collect();
    wal.append(&records).expect("wal append");
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

fn durable_appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_append");
    for batch in [1usize, 16, 128] {
        group.throughput(Throughput::Elements(batch as u64));

        let dir = tempdir("wal");
        let mut wal = Wal::open(
            dir.path(),
            WalOptions {
                sync: true,
                ..WalOptions::default()
            },
        )
        .expect("open wal");
        let mut next = 1;
        group.bench_with_input(BenchmarkId::new("wal", batch), &batch, |b, &batch| {
            b.iter(|| wal_append(&mut wal, &mut next, batch))
        });
        drop(wal);

        let dir = tempdir("sled");
        let db = open_sled(dir.path());
        let mut next = 1;
        group.bench_with_input(BenchmarkId::new("sled", batch), &batch, |b, &batch| {
            b.iter(|| sled_append(&db, &mut next, batch))
        });
    }
    group.finish();
}

/// Writes N entries, purges the older half (as a snapshot lets Raft do), and prints
/// the directory size before and after, for both stores.
fn disk_after_purge() {
    const N: u64 = 100_000;
    const BATCH: usize = 128;
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);

    let dir = tempdir("wal-size");
    let mut wal = Wal::open(
        dir.path(),
        WalOptions {
            segment_size: 1024 * 1024,
            sync: false,
        },
    )
    .expect("open wal");
    let mut next = 1;
    while next <= N {
        wal_append(&mut wal, &mut next, BATCH);
    }
    wal.sync().expect("wal sync");
    let before = dir_size(dir.path());
    wal.purge_to(N / 2).expect("wal purge");
    let after = dir_size(dir.path());
    println!(
        "disk: wal  {N} x {ENTRY} B entries: {:.1} MiB ({:.1} MiB allocated); \
         after purging half: {:.1} MiB ({:.1} MiB allocated)",
        mb(before.0),
        mb(before.1),
        mb(after.0),
        mb(after.1)
    );

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
    c.final_summary();
}
