//! The list-append checker: appends `[k, v]` (v unique per key) whose ok completion
//! carries the list right after the append (RPUSH + LRANGE in one MULTI), and final
//! reads `[k, [v...]]`. Per key, every observed list must be free of duplicates and
//! of values never appended (or whose append failed); an append's own list must end
//! with its value; all observed lists must be prefixes of the longest (one order);
//! every acknowledged append must be in the final read; and an append acknowledged
//! before another was invoked must come first in that order.

use super::{Outcome, Verdict};
use crate::history::{pairs, Kind, Op};
use std::collections::{BTreeMap, HashMap, HashSet};

pub fn check_list_append(history: &[Op]) -> Verdict {
    match check(history) {
        Ok((outcome, explanation, stats)) => Verdict {
            checker: "list-append".into(),
            outcome,
            explanation,
            stats,
        },
        Err(e) => Verdict {
            checker: "list-append".into(),
            outcome: Outcome::Unknown,
            explanation: format!("malformed history: {e}"),
            stats: Vec::new(),
        },
    }
}

struct Append {
    index: usize,
    kind: Option<Kind>,
    invoked: u64,
    completed: Option<u64>,
}

#[derive(Default)]
struct Key {
    appends: HashMap<i64, Append>,
    /// (op index, list) for every ok append and ok read, in history order.
    observed: Vec<(usize, Vec<i64>)>,
    final_read: Option<(usize, Vec<i64>)>,
}

fn list(v: &serde_json::Value, index: usize) -> Result<Vec<i64>, String> {
    v.as_array()
        .ok_or_else(|| format!("op {index}: not a list: {v}"))?
        .iter()
        .map(|x| {
            x.as_i64()
                .ok_or_else(|| format!("op {index}: not an integer: {x}"))
        })
        .collect()
}

type Stats = Vec<(String, u64)>;

fn check(history: &[Op]) -> Result<(Outcome, String, Stats), String> {
    let mut keys: BTreeMap<String, Key> = BTreeMap::new();
    for p in pairs(history)? {
        let i = p.invoke.index;
        let k = p.invoke.value[0]
            .as_str()
            .ok_or_else(|| format!("op {i}: no key"))?
            .to_string();
        let key = keys.entry(k).or_default();
        let ok = p.complete.filter(|c| c.kind == Kind::Ok);
        match p.invoke.f.as_str() {
            "append" => {
                let v = p.invoke.value[1]
                    .as_i64()
                    .ok_or_else(|| format!("op {i}: value is not an integer"))?;
                key.appends.insert(
                    v,
                    Append {
                        index: i,
                        kind: p.complete.map(|c| c.kind),
                        invoked: p.invoke.time,
                        completed: p.complete.map(|c| c.time),
                    },
                );
                if let Some(c) = ok {
                    let l = list(&c.value[2], c.index)?;
                    if l.last() != Some(&v) {
                        return Ok((
                            Outcome::Invalid,
                            format!(
                                "op {} appended {v} but the list right after it was {l:?}: it does not end with {v}",
                                c.index
                            ),
                            Vec::new(),
                        ));
                    }
                    key.observed.push((c.index, l));
                }
            }
            "read" => {
                if let Some(c) = ok {
                    let l = list(&c.value[1], c.index)?;
                    key.observed.push((c.index, l.clone()));
                    key.final_read = Some((c.index, l));
                }
            }
            f => return Err(format!("op {i}: unknown f {f}")),
        }
    }
    let mut problems: Vec<String> = Vec::new();
    let (mut acked, mut lost_n, mut unread) = (0u64, 0u64, Vec::new());
    for (k, key) in &keys {
        acked += key
            .appends
            .values()
            .filter(|a| a.kind == Some(Kind::Ok))
            .count() as u64;
        // Each observed list: no duplicates, nothing unappended or failed.
        for (idx, l) in &key.observed {
            let mut seen = HashSet::new();
            for v in l {
                if !seen.insert(v) {
                    problems.push(format!("key {k}: op {idx} saw {v} twice: {l:?}"));
                }
                match key.appends.get(v) {
                    None => problems.push(format!("key {k}: op {idx} saw {v}, never appended")),
                    Some(a) if a.kind == Some(Kind::Fail) => problems.push(format!(
                        "key {k}: op {idx} saw {v}, whose append (op {}) failed",
                        a.index
                    )),
                    _ => {}
                }
            }
        }
        // One order: every list a prefix of the longest.
        let Some((longest_idx, longest)) = key.observed.iter().max_by_key(|(_, l)| l.len()) else {
            continue;
        };
        for (idx, l) in &key.observed {
            if !longest.starts_with(l) {
                let at = l.iter().zip(longest).position(|(a, b)| a != b).unwrap_or(0);
                problems.push(format!(
                    "key {k}: op {idx} saw {l:?} and op {longest_idx} saw {longest:?}: they differ at position {at}, so no single order explains both"
                ));
            }
        }
        // Real-time order: acknowledged before invoked means earlier in the list.
        let position: HashMap<i64, usize> =
            longest.iter().enumerate().map(|(i, v)| (*v, i)).collect();
        for (vb, b) in &key.appends {
            let Some(&pb) = position.get(vb) else {
                continue;
            };
            for (va, a) in &key.appends {
                if a.kind != Some(Kind::Ok) || a.completed.is_none_or(|t| t >= b.invoked) {
                    continue;
                }
                match position.get(va) {
                    Some(&pa) if pa > pb => problems.push(format!(
                        "key {k}: append {va} (op {}) was acknowledged before append {vb} (op {}) was invoked, yet comes after it",
                        a.index, b.index
                    )),
                    _ => {}
                }
            }
        }
        // Lost: acknowledged but not in the final read.
        match &key.final_read {
            None => {
                if key.appends.values().any(|a| a.kind == Some(Kind::Ok)) {
                    unread.push(k.clone());
                }
            }
            Some((idx, fin)) => {
                let present: HashSet<&i64> = fin.iter().collect();
                let mut lost: Vec<i64> = key
                    .appends
                    .iter()
                    .filter(|(v, a)| a.kind == Some(Kind::Ok) && !present.contains(v))
                    .map(|(v, _)| *v)
                    .collect();
                lost.sort();
                if !lost.is_empty() {
                    lost_n += lost.len() as u64;
                    problems.push(format!(
                        "key {k}: acknowledged appends {lost:?} missing from the final read (op {idx})"
                    ));
                }
            }
        }
    }
    let stats = vec![
        ("keys".to_string(), keys.len() as u64),
        ("acknowledged".to_string(), acked),
        ("lost".to_string(), lost_n),
        ("anomalies".to_string(), problems.len() as u64),
    ];
    Ok(if !problems.is_empty() {
        let n = problems.len();
        let mut text = problems.into_iter().take(5).collect::<Vec<_>>().join("; ");
        if n > 5 {
            text.push_str(&format!("; and {} more", n - 5));
        }
        (Outcome::Invalid, text, stats)
    } else if !unread.is_empty() {
        (
            Outcome::Unknown,
            format!("no final read of {}", unread.join(", ")),
            stats,
        )
    } else {
        (
            Outcome::Valid,
            format!(
                "{acked} acknowledged appends to {} keys, all in one order per key, none lost",
                keys.len()
            ),
            stats,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::H;
    use serde_json::json;

    fn append(h: &mut H, p: u64, k: &str, v: i64, after: serde_json::Value, outcome: &str) {
        h.event(p, "invoke", "append", json!([k, v]));
        let value = if outcome == "ok" {
            json!([k, v, after])
        } else {
            json!([k, v])
        };
        h.event(p, outcome, "append", value);
    }

    #[test]
    fn one_order_nothing_lost_is_valid() {
        let mut h = H::default();
        append(&mut h, 1, "l", 1, json!([1]), "ok");
        append(&mut h, 2, "l", 2, json!([1, 2]), "ok");
        append(&mut h, 3, "l", 3, json!(null), "info");
        append(&mut h, 4, "l", 4, json!(null), "fail");
        h.op(9, "read", json!(["l", [1, 2, 3]]), "ok");
        let v = check_list_append(&h.ops);
        assert_eq!(v.outcome, Outcome::Valid, "{}", v.explanation);
    }

    #[test]
    fn anomalies_are_invalid() {
        type Build = Box<dyn Fn(&mut H)>;
        let cases: Vec<(&str, Build)> = vec![
            (
                "missing from the final read",
                Box::new(|h| {
                    append(h, 1, "l", 1, json!([1]), "ok");
                    append(h, 2, "l", 2, json!([1, 2]), "ok");
                    h.op(9, "read", json!(["l", [1]]), "ok");
                }),
            ),
            (
                "twice",
                Box::new(|h| {
                    append(h, 1, "l", 1, json!([1]), "ok");
                    h.op(9, "read", json!(["l", [1, 1]]), "ok");
                }),
            ),
            (
                "never appended",
                Box::new(|h| {
                    append(h, 1, "l", 1, json!([1]), "ok");
                    h.op(9, "read", json!(["l", [1, 5]]), "ok");
                }),
            ),
            (
                "failed",
                Box::new(|h| {
                    append(h, 1, "l", 1, json!([1]), "ok");
                    append(h, 2, "l", 2, json!(null), "fail");
                    h.op(9, "read", json!(["l", [1, 2]]), "ok");
                }),
            ),
            (
                "no single order",
                Box::new(|h| {
                    append(h, 1, "l", 1, json!([1]), "ok");
                    append(h, 2, "l", 2, json!([2]), "ok");
                    h.op(9, "read", json!(["l", [1, 2]]), "ok");
                }),
            ),
            (
                "yet comes after it",
                Box::new(|h| {
                    // 1 is acknowledged (seeing [2, 1]) before 2 is even invoked.
                    h.at(1, 1, "invoke", "append", json!(["l", 1]));
                    h.at(2, 1, "ok", "append", json!(["l", 1, [2, 1]]));
                    h.at(3, 2, "invoke", "append", json!(["l", 2]));
                    h.at(4, 2, "ok", "append", json!(["l", 2, [2]]));
                    h.at(5, 9, "invoke", "read", json!(["l", null]));
                    h.at(6, 9, "ok", "read", json!(["l", [2, 1]]));
                }),
            ),
            (
                "does not end with",
                Box::new(|h| {
                    append(h, 1, "l", 1, json!([1]), "ok");
                    append(h, 2, "l", 2, json!([2, 1]), "ok");
                }),
            ),
        ];
        for (why, build) in cases {
            let mut h = H::default();
            build(&mut h);
            let v = check_list_append(&h.ops);
            assert_eq!(v.outcome, Outcome::Invalid, "{why}: {}", v.explanation);
            assert!(v.explanation.contains(why), "{why}: {}", v.explanation);
        }
    }
}
