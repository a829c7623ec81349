//! Command execution without the network: SET through `cmd::apply` (the write path's
//! state transition) and GET through `cmd::execute_read`, on a keyspace of 100k keys.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use proto::{Op, WriteEntry};
use shardis::cmd::{self, ApplyLimits, ReadCtx};
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

criterion_group!(benches, set_get);
criterion_main!(benches);
