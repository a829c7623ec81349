//! The set checker: adds of unique elements `[k, e]`, then final reads `[k, [e...]]`.
//! Every acknowledged add must be in its key's last final read; an element that was
//! never attempted, or whose add definitely failed, must not be; no element twice.
//! Adds that ended unknown may or may not be there.

use super::{Outcome, Verdict};
use crate::history::{pairs, Kind, Op};
use std::collections::{BTreeMap, BTreeSet};

pub fn check_set(history: &[Op]) -> Verdict {
    match check(history) {
        Ok(v) => v,
        Err(e) => verdict(
            Outcome::Unknown,
            format!("malformed history: {e}"),
            Vec::new(),
        ),
    }
}

fn verdict(outcome: Outcome, explanation: String, stats: Vec<(String, u64)>) -> Verdict {
    Verdict {
        checker: "set".into(),
        outcome,
        explanation,
        stats,
    }
}

#[derive(Default)]
struct Key {
    ok: BTreeSet<i64>,
    failed: BTreeSet<i64>,
    unknown: BTreeSet<i64>,
    read: Option<Vec<i64>>,
}

fn key_of(op: &Op) -> Result<String, String> {
    op.value
        .get(0)
        .and_then(|k| k.as_str())
        .map(String::from)
        .ok_or_else(|| format!("op {}: no key in {}", op.index, op.value))
}

fn check(history: &[Op]) -> Result<Verdict, String> {
    let mut keys: BTreeMap<String, Key> = BTreeMap::new();
    for p in pairs(history)? {
        let k = key_of(p.invoke)?;
        let key = keys.entry(k).or_default();
        match p.invoke.f.as_str() {
            "add" => {
                let e = p.invoke.value[1]
                    .as_i64()
                    .ok_or_else(|| format!("op {}: element is not an integer", p.invoke.index))?;
                match p.complete.map(|c| c.kind) {
                    Some(Kind::Ok) => key.ok.insert(e),
                    Some(Kind::Fail) => key.failed.insert(e),
                    _ => key.unknown.insert(e),
                };
            }
            "read" => {
                if let Some(c) = p.complete.filter(|c| c.kind == Kind::Ok) {
                    let list = c.value[1]
                        .as_array()
                        .ok_or_else(|| format!("op {}: read value is not a list", c.index))?
                        .iter()
                        .map(|v| {
                            v.as_i64()
                                .ok_or_else(|| format!("op {}: element is not an integer", c.index))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    key.read = Some(list);
                }
            }
            f => return Err(format!("op {}: unknown f {f}", p.invoke.index)),
        }
    }
    let (mut attempted, mut acknowledged, mut recovered) = (0u64, 0u64, 0u64);
    let mut lost: Vec<String> = Vec::new();
    let mut unexpected: Vec<String> = Vec::new();
    let mut unread: Vec<String> = Vec::new();
    for (k, key) in &keys {
        attempted += (key.ok.len() + key.failed.len() + key.unknown.len()) as u64;
        acknowledged += key.ok.len() as u64;
        let Some(read) = &key.read else {
            if !key.ok.is_empty() {
                unread.push(k.clone());
            }
            continue;
        };
        let mut seen = BTreeSet::new();
        for &e in read {
            if !seen.insert(e) {
                unexpected.push(format!("{k}: {e} twice"));
            } else if key.failed.contains(&e) {
                unexpected.push(format!("{k}: {e}, whose add failed"));
            } else if key.unknown.contains(&e) {
                recovered += 1;
            } else if !key.ok.contains(&e) {
                unexpected.push(format!("{k}: {e}, never added"));
            }
        }
        lost.extend(key.ok.difference(&seen).map(|e| format!("{k}: {e}")));
    }
    let stats = vec![
        ("attempted".to_string(), attempted),
        ("acknowledged".to_string(), acknowledged),
        ("lost".to_string(), lost.len() as u64),
        ("unexpected".to_string(), unexpected.len() as u64),
        ("recovered".to_string(), recovered),
    ];
    let few = |v: &[String]| {
        let mut s = v.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
        if v.len() > 10 {
            s.push_str(&format!(" and {} more", v.len() - 10));
        }
        s
    };
    Ok(if !lost.is_empty() || !unexpected.is_empty() {
        let mut why = Vec::new();
        if !lost.is_empty() {
            why.push(format!(
                "{} acknowledged adds lost ({})",
                lost.len(),
                few(&lost)
            ));
        }
        if !unexpected.is_empty() {
            why.push(format!(
                "{} unexpected elements ({})",
                unexpected.len(),
                few(&unexpected)
            ));
        }
        verdict(Outcome::Invalid, why.join("; "), stats)
    } else if !unread.is_empty() {
        verdict(
            Outcome::Unknown,
            format!("no final read of {}", unread.join(", ")),
            stats,
        )
    } else {
        verdict(
            Outcome::Valid,
            format!(
                "all {acknowledged} acknowledged adds present in {} keys' final reads, {recovered} of the unknown ones too",
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

    #[test]
    fn acknowledged_adds_present_is_valid() {
        let mut h = H::default();
        h.op(1, "add", json!(["s", 1]), "ok");
        h.op(2, "add", json!(["s", 2]), "info");
        h.op(3, "add", json!(["s", 3]), "fail");
        h.op(4, "add", json!(["s", 4]), "info");
        h.op(9, "read", json!(["s", [1, 2]]), "ok");
        let v = check_set(&h.ops);
        assert_eq!(v.outcome, Outcome::Valid, "{}", v.explanation);
        assert!(v.stats.contains(&("recovered".into(), 1)));
    }

    #[test]
    fn a_lost_add_is_invalid() {
        let mut h = H::default();
        h.op(1, "add", json!(["s", 1]), "ok");
        h.op(1, "add", json!(["s", 2]), "ok");
        h.op(9, "read", json!(["s", [2]]), "ok");
        let v = check_set(&h.ops);
        assert_eq!(v.outcome, Outcome::Invalid);
        assert!(v.explanation.contains("lost (s: 1)"), "{}", v.explanation);
    }

    #[test]
    fn invented_failed_and_duplicated_elements_are_invalid() {
        for (read, why) in [
            (json!(["s", [1, 7]]), "never added"),
            (json!(["s", [1, 3]]), "whose add failed"),
            (json!(["s", [1, 1]]), "twice"),
        ] {
            let mut h = H::default();
            h.op(1, "add", json!(["s", 1]), "ok");
            h.op(2, "add", json!(["s", 3]), "fail");
            h.op(9, "read", read, "ok");
            let v = check_set(&h.ops);
            assert_eq!(v.outcome, Outcome::Invalid);
            assert!(v.explanation.contains(why), "{}", v.explanation);
        }
    }

    #[test]
    fn no_final_read_is_unknown() {
        let mut h = H::default();
        h.op(1, "add", json!(["s", 1]), "ok");
        h.op(9, "read", json!(["s", null]), "fail");
        assert_eq!(check_set(&h.ops).outcome, Outcome::Unknown);
    }
}
