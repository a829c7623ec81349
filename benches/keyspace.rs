//! Command execution without the network: SET through `cmd::apply` (the write path's
//! state transition) and GET through `cmd::execute_read`, on a keyspace of 100k keys.
//! And what a slot migration does under its fence for a changed big value (a
//! 1M-element list, a 100k-field hash): its edits from the target's copy, against
//! sending it whole.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use proto::{Op, WriteEntry};
use shardis::cmd::{self, ApplyLimits, ReadCtx};
use shardis::keyspace::migrate::ExportCursor;
use shardis::keyspace::Keyspace;

const KEYS: usize = 100_000;

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key:{i:08}"))
}

fn filled() -> Keyspace {
    let mut ks = Keyspace::new();
    let cmds: Vec<Vec<Bytes>> = (0..KEYS)
        .map(|i| {
            vec![
                Bytes::from_static(b"SET"),
                key(i),
                Bytes::from_static(b"value-0123456789"),
            ]
        })
        .collect();
    let entry = WriteEntry {
        time_ms: 1_700_000_000_000,
        seed: 1,
        op: Op::Exec(cmds),
    };
    cmd::apply(&mut ks, &entry, ApplyLimits::default());
    ks
}

fn set_get(c: &mut Criterion) {
    let mut ks = filled();
    let set = cmd::lookup(b"set").unwrap();
    let get = cmd::lookup(b"get").unwrap();
    assert!(set.is_write() && !get.is_write());
    let mut i = 0usize;
    c.bench_function("apply_set_existing_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let entry = WriteEntry {
                time_ms: 1_700_000_000_000,
                seed: i as u64,
                op: Op::Exec(vec![vec![
                    Bytes::from_static(b"SET"),
                    key(i),
                    Bytes::from_static(b"value-9876543210"),
                ]]),
            };
            cmd::apply(&mut ks, &entry, ApplyLimits::default())
        })
    });
    let mut ctx = ReadCtx::new(1_700_000_000_000);
    c.bench_function("execute_read_get_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let args = [Bytes::from_static(b"GET"), key(i)];
            cmd::execute_read(&ks, &mut ctx, get, &args)
        })
    });
    c.bench_function("execute_read_get_miss_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let args = [Bytes::from_static(b"GET"), key(i + KEYS)];
            cmd::execute_read(&ks, &mut ctx, get, &args)
        })
    });
}

fn exec(ks: &mut Keyspace, cmds: Vec<Vec<Bytes>>) {
    let entry = WriteEntry {
        time_ms: 1_700_000_000_000,
        seed: 1,
        op: Op::Exec(cmds),
    };
    cmd::apply(ks, &entry, ApplyLimits::default());
}

fn args(xs: &[&str]) -> Vec<Bytes> {
    xs.iter().map(|x| Bytes::from(x.to_string())).collect()
}

fn big_value_delta(c: &mut Criterion) {
    let mut ks = Keyspace::new();
    let (list, hash) = ("{big}list", "{big}hash");
    for lo in (0..1_000_000).step_by(10_000) {
        let mut l = args(&["RPUSH", list]);
        l.extend((lo..lo + 10_000).map(|i| Bytes::from(format!("element-{i}"))));
        exec(&mut ks, vec![l]);
    }
    for lo in (0..100_000).step_by(10_000) {
        let mut h = args(&["HSET", hash]);
        for i in lo..lo + 10_000 {
            h.push(Bytes::from(format!("field-{i}")));
            h.push(Bytes::from(format!("value-{i}")));
        }
        exec(&mut ks, vec![h]);
    }
    let slot = proto::key_slot(b"{big}");
    ks.track_slots(slot, slot);
    let mut cur = ExportCursor::new(slot);
    while !cur.done {
        ks.export_chunk(&mut cur, slot, 256 * 1024, 0);
    }
    let mut n = 0u64;
    let mut change = |ks: &mut Keyspace| {
        n += 1;
        let x = n.to_string();
        exec(
            ks,
            vec![
                args(&["LPOP", list]),
                args(&["RPUSH", list, &x]),
                args(&["HSET", hash, "field-7", &x]),
            ],
        );
        ks.take_changed().unwrap()
    };
    let mut g = c.benchmark_group("migration_delta");
    g.sample_size(20);
    g.bench_function("edits_1m_list_100k_hash", |b| {
        b.iter(|| {
            let keys = change(&mut ks);
            keys.iter()
                .map(|k| ks.export_changed(k, 0).len())
                .sum::<usize>()
        })
    });
    g.bench_function("whole_1m_list_100k_hash", |b| {
        b.iter(|| {
            let keys = change(&mut ks);
            keys.iter()
                .map(|k| ks.export_key(k, 0).len())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, set_get, big_value_delta);
criterion_main!(benches);
