//! Determinism of apply: two replicas applying the same log reach the same state and
//! give the same replies, whatever their local soft state (LRU/LFU metadata, read
//! traffic, hash seeds, WATCH interest) is.

use super::{apply, execute_read, lookup, ApplyLimits, Handler, ReadCtx};
use crate::keyspace::rng::Rng;
use crate::keyspace::Keyspace;
use bytes::Bytes;
use proto::{Op, WriteEntry};

/// A random write command over a small key pool, touching every family.
fn random_command(r: &mut Rng) -> Vec<String> {
    let key = |r: &mut Rng| format!("k{}", r.below(8));
    let member = |r: &mut Rng| format!("m{}", r.below(12));
    let num = |r: &mut Rng| (r.below(200) as i64 - 100).to_string();
    let k = key(r);
    let words: Vec<String> = match r.below(30) {
        0 => vec!["SET".into(), k, num(r)],
        1 => vec![
            "SET".into(),
            k,
            "v".into(),
            "PX".into(),
            (1 + r.below(50)).to_string(),
        ],
        2 => vec!["INCRBY".into(), k, num(r)],
        3 => vec!["APPEND".into(), k, member(r)],
        4 => vec!["DEL".into(), k, key(r)],
        5 => vec!["PEXPIRE".into(), k, (1 + r.below(50)).to_string()],
        6 => vec!["PERSIST".into(), k],
        7 => vec!["RENAME".into(), k, key(r)],
        8 => vec!["HSET".into(), k, member(r), num(r)],
        9 => vec!["HDEL".into(), k, member(r)],
        10 => vec!["HINCRBYFLOAT".into(), k, member(r), "0.1".into()],
        11 => vec!["LPUSH".into(), k, member(r), member(r)],
        12 => vec!["RPOP".into(), k],
        13 => vec!["LREM".into(), k, "0".into(), member(r)],
        14 => vec!["LMOVE".into(), k, key(r), "LEFT".into(), "RIGHT".into()],
        15 => vec!["SADD".into(), k, member(r), member(r), member(r)],
        16 => vec!["SPOP".into(), k],
        17 => vec!["SPOP".into(), k, r.below(4).to_string()],
        18 => vec!["SMOVE".into(), k, key(r), member(r)],
        19 => vec!["SINTERSTORE".into(), k, key(r), key(r)],
        20 => vec!["ZADD".into(), k, num(r), member(r)],
        21 => vec!["ZINCRBY".into(), k, num(r), member(r)],
        22 => vec!["ZPOPMIN".into(), k],
        23 => vec!["ZUNIONSTORE".into(), k, "2".into(), key(r), key(r)],
        24 => vec!["ZREMRANGEBYRANK".into(), k, "0".into(), "1".into()],
        25 => vec!["COPY".into(), k, key(r)],
        26 => vec![
            "GETEX".into(),
            k,
            "PX".into(),
            (1 + r.below(50)).to_string(),
        ],
        27 => vec!["SETRANGE".into(), k, r.below(10).to_string(), member(r)],
        28 => vec!["BLPOP".into(), k, key(r), "0".into()],
        _ => vec!["SREM".into(), k, member(r)],
    };
    words
}

fn argv(words: &[String]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

/// Reads that touch access metadata and stats on one replica only.
fn random_read(ks: &Keyspace, r: &mut Rng, now: u64) {
    let k = format!("k{}", r.below(8));
    let cmds: [&[&str]; 6] = [
        &["GET", &k],
        &["HGETALL", &k],
        &["LRANGE", &k, "0", "-1"],
        &["SRANDMEMBER", &k, "-3"],
        &["ZRANGE", &k, "0", "-1"],
        &["EXISTS", &k],
    ];
    let words: Vec<String> = cmds[r.below(6) as usize]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let args = argv(&words);
    if let Some(spec) = lookup(&args[0]) {
        if matches!(spec.handler, Handler::Read(_)) {
            let mut ctx = ReadCtx {
                now,
                rng: Rng::new(r.next_u64()),
                no_touch: false,
            };
            execute_read(ks, &mut ctx, spec, &args);
        }
    }
}

#[test]
fn replicas_applying_the_same_log_stay_identical() {
    for seed in 0..20u64 {
        let mut gen = Rng::new(seed);
        let mut a = Keyspace::new();
        let mut b = Keyspace::new();
        // Replica A has clients watching keys and a different access policy.
        a.access_config.lfu = true;
        for i in 0..4 {
            a.add_interest(format!("k{i}").as_bytes());
        }
        let mut now = 1_700_000_000_000u64;
        for step in 0..1500 {
            now += gen.below(5);
            let op = match gen.below(20) {
                0 => Op::ExpireKeys((0..3).map(|i| Bytes::from(format!("k{i}"))).collect()),
                1 => Op::EvictKeys(vec![Bytes::from(format!("k{}", gen.below(8)))]),
                2 => Op::Exec((0..3).map(|_| argv(&random_command(&mut gen))).collect()),
                _ => Op::Exec(vec![argv(&random_command(&mut gen))]),
            };
            let entry = WriteEntry {
                time_ms: now,
                seed: gen.next_u64(),
                op,
            };
            let ra = apply(&mut a, &entry, ApplyLimits::default());
            let rb = apply(&mut b, &entry, ApplyLimits::default());
            assert_eq!(
                ra, rb,
                "seed {seed} step {step}: replies differ for {entry:?}"
            );
            for r in &ra {
                if let crate::resp::Reply::Error(t) = r {
                    assert!(
                        !t.starts_with("ERR unknown command"),
                        "generator uses a missing command: {t}"
                    );
                    assert!(
                        !t.starts_with("ERR wrong number"),
                        "generator sends a bad arity: {t}"
                    );
                }
            }
            assert!(
                a.same_state(&b),
                "seed {seed} step {step}: state differs after {entry:?}"
            );
            let _ = a.take_dirty();
            for _ in 0..gen.below(3) {
                let at = now + gen.below(100);
                random_read(&a, &mut gen, at);
            }
        }
    }
}
