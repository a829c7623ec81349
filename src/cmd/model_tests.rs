//! Model-based test: seeded random command sequences run through the command table and,
//! side by side, through a plain BTreeMap model of typed values with deadlines. Every
//! reply must match the model's, and every so often TYPE/PTTL of every key must agree.
//! The clock is manual, so expiry and PTTL are exact.

use super::testing::run;
use crate::keyspace::rng::Rng;
use crate::keyspace::Keyspace;
use crate::resp::Reply;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

type Bytes = Vec<u8>;

#[derive(Clone, Debug)]
enum ModelValue {
    Str(Bytes),
    List(VecDeque<Bytes>),
    Hash(BTreeMap<Bytes, Bytes>),
    Set(BTreeSet<Bytes>),
    ZSet(BTreeMap<Bytes, f64>),
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// Keys whose deadline has passed stay in `keys` until replaced: the real keyspace also
/// keeps them until a write path deletes them, which bounds DBSIZE from above.
struct Model {
    keys: BTreeMap<Bytes, (ModelValue, Option<u64>)>,
    now: u64,
}

fn b(s: &str) -> Bytes {
    s.as_bytes().to_vec()
}

fn int(n: usize) -> Reply {
    Reply::Int(n as i64)
}

fn bulks<'a>(items: impl IntoIterator<Item = &'a Bytes>) -> Vec<Reply> {
    items.into_iter().map(Reply::bulk).collect()
}

fn wrongtype() -> Reply {
    Reply::error(WRONGTYPE)
}

/// Integer parsing as Redis's string2ll: only the canonical decimal form is a number.
fn as_int(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    s.parse::<i64>().ok().filter(|n| n.to_string() == s)
}

impl ModelValue {
    fn is_empty(&self) -> bool {
        match self {
            ModelValue::Str(_) => false,
            ModelValue::List(l) => l.is_empty(),
            ModelValue::Hash(h) => h.is_empty(),
            ModelValue::Set(s) => s.is_empty(),
            ModelValue::ZSet(z) => z.is_empty(),
        }
    }
}

impl Model {
    fn live(&self, k: &[u8]) -> Option<&(ModelValue, Option<u64>)> {
        self.keys
            .get(k)
            .filter(|(_, d)| d.is_none_or(|d| self.now <= d))
    }

    fn live_mut(&mut self, k: &[u8]) -> Option<&mut (ModelValue, Option<u64>)> {
        let now = self.now;
        self.keys
            .get_mut(k)
            .filter(|(_, d)| d.is_none_or(|d| now <= d))
    }

    fn remove(&mut self, k: &[u8]) -> Option<(ModelValue, Option<u64>)> {
        self.live(k)?;
        self.keys.remove(k)
    }

    fn type_name(&self, k: &[u8]) -> &'static str {
        match self.live(k).map(|e| &e.0) {
            None => "none",
            Some(ModelValue::Str(_)) => "string",
            Some(ModelValue::List(_)) => "list",
            Some(ModelValue::Hash(_)) => "hash",
            Some(ModelValue::Set(_)) => "set",
            Some(ModelValue::ZSet(_)) => "zset",
        }
    }

    fn pttl(&self, k: &[u8]) -> i64 {
        match self.live(k) {
            None => -2,
            Some((_, None)) => -1,
            Some((_, Some(d))) => (d - self.now) as i64,
        }
    }

    /// Applies a command of a collection family: `get` extracts the typed value of a live
    /// key, `new` (empty) stands for a missing key and is stored if `create`, `f`
    /// answers. A value left empty is deleted, as Redis does.
    fn coll<T>(
        &mut self,
        k: &[u8],
        create: bool,
        mut new: ModelValue,
        get: fn(&mut ModelValue) -> Option<&mut T>,
        f: impl FnOnce(&mut T) -> Reply,
    ) -> Reply {
        if self.live(k).is_none() {
            if !create {
                return f(get(&mut new).unwrap());
            }
            self.keys.insert(k.to_vec(), (new, None));
        }
        let entry = &mut self.keys.get_mut(k).unwrap().0;
        let Some(v) = get(entry) else {
            return wrongtype();
        };
        let reply = f(v);
        if entry.is_empty() {
            self.keys.remove(k);
        }
        reply
    }

    /// The model's answer to one command (mutating the model as the server would).
    fn apply(&mut self, c: &[String]) -> Reply {
        let a: Vec<Bytes> = c.iter().map(|s| b(s)).collect();
        let k = a.get(1).cloned().unwrap_or_default();
        let now = self.now;
        macro_rules! typed {
            ($variant:ident, $create:expr, $f:expr) => {
                self.coll(
                    &k,
                    $create,
                    ModelValue::$variant(Default::default()),
                    |v| match v {
                        ModelValue::$variant(x) => Some(x),
                        _ => None,
                    },
                    $f,
                )
            };
        }
        let str_of = |m: &Model| match m.live(&k) {
            None => Ok(None),
            Some((ModelValue::Str(s), d)) => Ok(Some((s.clone(), *d))),
            Some(_) => Err(wrongtype()),
        };
        match c[0].as_str() {
            "SET" => {
                let deadline = c.get(4).map(|px| now + px.parse::<u64>().unwrap());
                self.keys
                    .insert(k, (ModelValue::Str(a[2].clone()), deadline));
                Reply::ok()
            }
            "GET" => match str_of(self) {
                Ok(v) => v.map_or(Reply::Nil, |(s, _)| Reply::bulk(s)),
                Err(e) => e,
            },
            "APPEND" | "INCRBY" => {
                let (cur, deadline) = match str_of(self) {
                    // A missing key counts as "0" for INCRBY and as "" for APPEND.
                    Ok(None) if c[0] == "INCRBY" => (b("0"), None),
                    Ok(v) => v.unwrap_or_default(),
                    Err(e) => return e,
                };
                let (new, reply) = if c[0] == "APPEND" {
                    let s = [cur, a[2].clone()].concat();
                    let n = s.len();
                    (s, int(n))
                } else {
                    let by: i64 = c[2].parse().unwrap();
                    let Some(n) = as_int(&cur) else {
                        return Reply::error("ERR value is not an integer or out of range");
                    };
                    let Some(n) = n.checked_add(by) else {
                        return Reply::error("ERR increment or decrement would overflow");
                    };
                    (b(&n.to_string()), Reply::Int(n))
                };
                self.keys.insert(k, (ModelValue::Str(new), deadline));
                reply
            }
            "DEL" => int(a[1..].iter().filter(|k| self.remove(k).is_some()).count()),
            "EXISTS" => int(a[1..].iter().filter(|k| self.live(k).is_some()).count()),
            "TYPE" => Reply::simple(self.type_name(&k)),
            "PTTL" => Reply::Int(self.pttl(&k)),
            "PEXPIRE" => {
                let ms: i64 = c[2].parse().unwrap();
                let Some(e) = self.live_mut(&k) else {
                    return int(0);
                };
                if ms <= 0 {
                    self.keys.remove(&k);
                } else {
                    e.1 = Some(now + ms as u64);
                }
                int(1)
            }
            "PERSIST" => match self.live_mut(&k) {
                Some(e) if e.1.is_some() => {
                    e.1 = None;
                    int(1)
                }
                _ => int(0),
            },
            "RENAME" => match self.remove(&k) {
                None => Reply::error("ERR no such key"),
                Some(e) => {
                    self.keys.insert(a[2].clone(), e);
                    Reply::ok()
                }
            },
            "HSET" => typed!(Hash, true, |h| {
                int(a[2..]
                    .chunks(2)
                    .filter(|p| h.insert(p[0].clone(), p[1].clone()).is_none())
                    .count())
            }),
            "HDEL" => typed!(Hash, false, |h| {
                int(a[2..].iter().filter(|f| h.remove(*f).is_some()).count())
            }),
            "HGET" => typed!(Hash, false, |h| {
                h.get(&a[2]).map_or(Reply::Nil, Reply::bulk)
            }),
            "HLEN" => typed!(Hash, false, |h| int(h.len())),
            "HGETALL" => typed!(Hash, false, |h| {
                Reply::Map(
                    h.iter()
                        .map(|(f, v)| (Reply::bulk(f), Reply::bulk(v)))
                        .collect(),
                )
            }),
            "LPUSH" => typed!(List, true, |l| {
                a[2..].iter().for_each(|v| l.push_front(v.clone()));
                int(l.len())
            }),
            "RPUSH" => typed!(List, true, |l| {
                l.extend(a[2..].iter().cloned());
                int(l.len())
            }),
            "LPOP" => typed!(List, false, |l| l
                .pop_front()
                .map_or(Reply::Nil, Reply::bulk)),
            "RPOP" => typed!(List, false, |l| l
                .pop_back()
                .map_or(Reply::Nil, Reply::bulk)),
            "LRANGE" => typed!(List, false, |l| Reply::Array(bulks(&*l))),
            "LLEN" => typed!(List, false, |l| int(l.len())),
            "LREM" => typed!(List, false, |l| {
                let count: i64 = c[2].parse().unwrap();
                let mut hits: Vec<usize> = (0..l.len()).filter(|&i| l[i] == a[3]).collect();
                if count < 0 {
                    hits.reverse();
                }
                hits.truncate(if count == 0 {
                    usize::MAX
                } else {
                    count.unsigned_abs() as usize
                });
                hits.sort_unstable();
                hits.iter().rev().for_each(|&i| drop(l.remove(i)));
                int(hits.len())
            }),
            "SADD" => typed!(Set, true, |s| {
                int(a[2..].iter().filter(|m| s.insert(m.to_vec())).count())
            }),
            "SREM" => typed!(Set, false, |s| {
                int(a[2..].iter().filter(|m| s.remove(*m)).count())
            }),
            "SCARD" => typed!(Set, false, |s| int(s.len())),
            "SISMEMBER" => typed!(Set, false, |s| int(s.contains(&a[2]) as usize)),
            "SMEMBERS" => typed!(Set, false, |s| Reply::Set(bulks(&*s))),
            "ZADD" => typed!(ZSet, true, |z| {
                int(z.insert(a[3].clone(), c[2].parse().unwrap()).is_none() as usize)
            }),
            "ZINCRBY" => typed!(ZSet, true, |z| {
                let s = z.entry(a[3].clone()).or_insert(0.0);
                *s += c[2].parse::<f64>().unwrap();
                Reply::Double(*s)
            }),
            "ZREM" => typed!(ZSet, false, |z| {
                int(a[2..].iter().filter(|m| z.remove(*m).is_some()).count())
            }),
            "ZSCORE" => typed!(ZSet, false, |z| {
                z.get(&a[2]).map_or(Reply::Nil, |s| Reply::Double(*s))
            }),
            "ZCARD" => typed!(ZSet, false, |z| int(z.len())),
            "ZRANGE" => typed!(ZSet, false, |z| {
                let mut v: Vec<(&Bytes, f64)> = z.iter().map(|(m, s)| (m, *s)).collect();
                v.sort_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(y.0)));
                Reply::Pairs(
                    v.into_iter()
                        .map(|(m, s)| (Reply::bulk(m), Reply::Double(s)))
                        .collect(),
                )
            }),
            other => panic!("model has no {other}"),
        }
    }
}

/// Unordered replies compared in sorted order; an empty pairs reply is the same empty
/// array on the wire as any other.
fn normalize(r: Reply) -> Reply {
    let key = |r: &Reply| format!("{r:?}");
    match r {
        Reply::Set(mut v) => {
            v.sort_by_key(key);
            Reply::Set(v)
        }
        Reply::Map(mut v) => {
            v.sort_by_key(|p| key(&p.0));
            Reply::Map(v)
        }
        Reply::Pairs(v) if v.is_empty() => Reply::Array(v.into_iter().map(|p| p.0).collect()),
        r => r,
    }
}

/// A random command over 8 keys and 6 members, so that members and deadlines collide
/// often. Each type's commands prefer their own keys, so that values grow beyond one
/// element, and stray to any key one time in eight to meet other types; the
/// type-agnostic commands (DEL, RENAME, TTLs) pick any key.
fn random_command(r: &mut Rng) -> Vec<String> {
    let key = |r: &mut Rng| format!("k{}", r.below(8));
    let m = |r: &mut Rng| format!("m{}", r.below(6));
    let num = |r: &mut Rng| match r.below(20) {
        0 => i64::MAX.to_string(),
        1 => i64::MIN.to_string(),
        _ => (r.below(41) as i64 - 20).to_string(),
    };
    // The extra draws favour adds, so that collections grow to several elements.
    let op = match r.below(48) {
        40 | 41 => 13,
        42 => 18,
        43 => 19,
        44 | 45 => 25,
        46 | 47 => 30,
        op => op,
    };
    let family = match op {
        4 | 5 | 8..=12 => 5,
        0..=12 => 0,
        13..=17 => 1,
        18..=24 | 37 => 2,
        25..=29 | 38 => 3,
        _ => 4,
    };
    let k = match (r.below(8), family) {
        (0, _) | (_, 5) => key(r),
        (_, 0..=2) => format!("k{}", 2 * family + r.below(2)),
        _ => format!("k{}", 3 + family),
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match op {
        0 | 1 => vec!["SET".into(), k, if r.below(2) == 0 { num(r) } else { m(r) }],
        2 => s(&["SET", &k, &m(r), "PX", &(1 + r.below(60)).to_string()]),
        3 => s(&["GET", &k]),
        4 if r.below(4) == 0 => s(&["DEL", &k, &key(r), &k]),
        4 => s(&["DEL", &k]),
        5 => s(&["EXISTS", &k, &key(r), &k]),
        6 => s(&["INCRBY", &k, &num(r)]),
        7 => s(&["APPEND", &k, &m(r)]),
        8 => s(&["PEXPIRE", &k, &(r.below(70) as i64 - 5).to_string()]),
        9 => s(&["PERSIST", &k]),
        10 => s(&["PTTL", &k]),
        11 => s(&["TYPE", &k]),
        12 => s(&["RENAME", &k, &key(r)]),
        13 => s(&["HSET", &k, &m(r), &num(r), &m(r), &m(r)]),
        14 => s(&["HDEL", &k, &m(r), &m(r)]),
        15 => s(&["HGET", &k, &m(r)]),
        16 => s(&["HLEN", &k]),
        17 => s(&["HGETALL", &k]),
        18 => s(&["LPUSH", &k, &m(r), &m(r)]),
        19 => s(&["RPUSH", &k, &m(r)]),
        20 => s(&["LPOP", &k]),
        21 => s(&["RPOP", &k]),
        22 => s(&["LRANGE", &k, "0", "-1"]),
        23 => s(&["LLEN", &k]),
        24 => s(&["LREM", &k, &(r.below(5) as i64 - 2).to_string(), &m(r)]),
        25 => s(&["SADD", &k, &m(r), &m(r), &m(r)]),
        26 => s(&["SREM", &k, &m(r), &m(r)]),
        27 => s(&["SCARD", &k]),
        28 => s(&["SISMEMBER", &k, &m(r)]),
        29 => s(&["SMEMBERS", &k]),
        30 | 31 => {
            let score = (r.below(21) as f64 - 10.0) / 2.0;
            s(&["ZADD", &k, &score.to_string(), &m(r)])
        }
        32 => s(&["ZREM", &k, &m(r), &m(r)]),
        33 => s(&["ZSCORE", &k, &m(r)]),
        34 => s(&["ZRANGE", &k, "0", "-1", "WITHSCORES"]),
        35 => s(&["ZCARD", &k]),
        36 => s(&["ZINCRBY", &k, &(r.below(9) as i64 - 4).to_string(), &m(r)]),
        37 => s(&["LPOP", &k]),
        38 => s(&["SREM", &k, &m(r)]),
        _ => s(&["ZREM", &k, &m(r)]),
    }
}

/// What the run exercised, so that a test comparing nothing cannot pass.
#[derive(Default, Debug)]
struct Seen {
    wrongtype: usize,
    other_errors: usize,
    /// Replies other than errors, nil, 0 and empty collections.
    nontrivial: usize,
    /// Collection replies with at least 3 elements.
    large: usize,
    /// Deadlines passed by the clock while the key was in the model.
    expired: usize,
}

fn run_seed(seed: u64, steps: usize, seen: &mut Seen) {
    let mut r = Rng::new(seed);
    let mut ks = Keyspace::new();
    let mut model = Model {
        keys: BTreeMap::new(),
        now: 1_000_000,
    };
    for step in 0..steps {
        let before = model.now;
        model.now += r.below(31);
        let now = model.now;
        seen.expired += (model.keys.values())
            .filter(|(_, d)| d.is_some_and(|d| before <= d && d < now))
            .count();
        let c = random_command(&mut r);
        let expected = normalize(model.apply(&c));
        let args: Vec<&str> = c.iter().map(String::as_str).collect();
        let got = normalize(run(&mut ks, now, &args));
        assert_eq!(
            got,
            expected,
            "seed {seed} step {step} now {now}: {}",
            c.join(" ")
        );
        let len = match &got {
            Reply::Array(v) | Reply::Set(v) => v.len(),
            Reply::Map(v) | Reply::Pairs(v) => v.len(),
            _ => 0,
        };
        seen.large += (len >= 3) as usize;
        match &got {
            Reply::Error(e) if e.starts_with("WRONGTYPE") => seen.wrongtype += 1,
            Reply::Error(_) => seen.other_errors += 1,
            Reply::Nil | Reply::Int(0) => {}
            Reply::Array(v) | Reply::Set(v) if v.is_empty() => {}
            Reply::Map(v) if v.is_empty() => {}
            _ => seen.nontrivial += 1,
        }
        if step % 25 == 0 {
            check_invariants(&mut ks, &model, seed, step);
        }
    }
    check_invariants(&mut ks, &model, seed, steps);
}

/// TYPE and PTTL agree for every key; DBSIZE lies between the live keys and all keys
/// the model has not seen replaced (expired keys linger until a write path meets them).
fn check_invariants(ks: &mut Keyspace, model: &Model, seed: u64, step: usize) {
    let now = model.now;
    for i in 0..8 {
        let k = format!("k{i}");
        let ctx = format!("seed {seed} step {step} now {now} key {k}");
        let t = run(ks, now, &["TYPE", &k]);
        assert_eq!(t, Reply::simple(model.type_name(k.as_bytes())), "{ctx}");
        let p = run(ks, now, &["PTTL", &k]);
        assert_eq!(p, Reply::Int(model.pttl(k.as_bytes())), "{ctx}");
    }
    let live = model
        .keys
        .keys()
        .filter(|k| model.live(k).is_some())
        .count() as i64;
    let Reply::Int(n) = run(ks, now, &["DBSIZE"]) else {
        panic!("DBSIZE is not an integer");
    };
    assert!(
        live <= n && n <= model.keys.len() as i64,
        "seed {seed} step {step}: DBSIZE {n}, live {live}, model {}",
        model.keys.len()
    );
}

#[test]
fn commands_agree_with_a_btreemap_model() {
    let mut seen = Seen::default();
    for seed in 1..=8 {
        run_seed(seed, 4000, &mut seen);
    }
    assert!(seen.wrongtype > 1000, "{seen:?}");
    assert!(seen.other_errors > 100, "{seen:?}");
    assert!(seen.nontrivial > 6000, "{seen:?}");
    assert!(seen.large > 300, "{seen:?}");
    assert!(seen.expired > 300, "{seen:?}");
}
