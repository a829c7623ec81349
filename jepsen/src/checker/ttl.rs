//! The TTL checker: writes `[k, v, px]` (SET k v PX px, v unique per key) and reads
//! `[k, v|null]`. A write acknowledged at t set a deadline no later than t + px, so a
//! read invoked after t + px (+ slack) must not return v. Writes that ended unknown
//! may have been applied later, so they bound nothing, but a read may return them. A
//! read of a value never written to its key is invalid too.

use super::{Outcome, Verdict};
use crate::history::{pairs, Kind, Op};
use std::collections::HashMap;
use std::time::Duration;

pub fn check_ttl(history: &[Op], slack: Duration) -> Verdict {
    match check(history, slack) {
        Ok(v) => v,
        Err(e) => Verdict {
            checker: "ttl".into(),
            outcome: Outcome::Unknown,
            explanation: format!("malformed history: {e}"),
            stats: Vec::new(),
        },
    }
}

/// What is known of one write.
struct Write {
    index: usize,
    px_ms: u64,
    /// When it was acknowledged (ns); None if its outcome is unknown.
    acked: Option<u64>,
}

fn check(history: &[Op], slack: Duration) -> Result<Verdict, String> {
    let ps = pairs(history)?;
    let mut writes: HashMap<(String, i64), Write> = HashMap::new();
    for p in &ps {
        if p.invoke.f != "write" {
            continue;
        }
        let v = &p.invoke.value;
        let (Some(k), Some(val), Some(px)) = (v[0].as_str(), v[1].as_i64(), v[2].as_u64()) else {
            return Err(format!("op {}: write value {v}", p.invoke.index));
        };
        let kind = p.complete.map(|c| c.kind);
        if kind == Some(Kind::Fail) {
            continue; // definitely not written: reading it is "never written"
        }
        writes.insert(
            (k.to_string(), val),
            Write {
                index: p.invoke.index,
                px_ms: px,
                acked: p.complete.filter(|c| c.kind == Kind::Ok).map(|c| c.time),
            },
        );
    }
    let (mut reads, mut late) = (0u64, Vec::<String>::new());
    let mut invented = Vec::<String>::new();
    let mut worst: Option<(u64, String)> = None;
    for p in &ps {
        if p.invoke.f != "read" {
            continue;
        }
        let Some(c) = p.complete.filter(|c| c.kind == Kind::Ok) else {
            continue;
        };
        reads += 1;
        let k = c.value[0]
            .as_str()
            .ok_or_else(|| format!("op {}: no key", c.index))?;
        let Some(val) = c.value[1].as_i64() else {
            continue; // null: expired or never set, always fine
        };
        let Some(w) = writes.get(&(k.to_string(), val)) else {
            invented.push(format!(
                "op {} read {k} = {val}, which was never written (or whose write failed)",
                c.index
            ));
            continue;
        };
        let Some(acked) = w.acked else { continue };
        let deadline = acked + w.px_ms * 1_000_000;
        let after = p.invoke.time.saturating_sub(deadline);
        if p.invoke.time > deadline + slack.as_nanos() as u64 {
            let text = format!(
                "key {k}: op {} (process {}, invoked at {:.3} s on node {}) read {val}, written by op {} with PX {} acknowledged at {:.3} s: {:.1} ms after its deadline {:.3} s",
                c.index,
                c.process,
                p.invoke.time as f64 / 1e9,
                c.node.map(|n| n.to_string()).unwrap_or("?".into()),
                w.index,
                w.px_ms,
                acked as f64 / 1e9,
                after as f64 / 1e6,
                deadline as f64 / 1e9,
            );
            if worst.as_ref().is_none_or(|(a, _)| after > *a) {
                worst = Some((after, text.clone()));
            }
            late.push(text);
        }
    }
    let stats = vec![
        ("writes".to_string(), writes.len() as u64),
        ("reads".to_string(), reads),
        ("reads_after_deadline".to_string(), late.len() as u64),
        ("reads_of_unwritten".to_string(), invented.len() as u64),
    ];
    let mut why = Vec::new();
    if !late.is_empty() {
        why.push(format!(
            "{} reads after the deadline; first: {}; latest past its deadline: {}",
            late.len(),
            late[0],
            worst.map(|w| w.1).unwrap_or_default()
        ));
    }
    if !invented.is_empty() {
        why.push(format!(
            "{} reads of unwritten values; first: {}",
            invented.len(),
            invented[0]
        ));
    }
    Ok(Verdict {
        checker: "ttl".into(),
        outcome: if why.is_empty() {
            Outcome::Valid
        } else {
            Outcome::Invalid
        },
        explanation: if why.is_empty() {
            format!("no value read after its deadline in {reads} reads")
        } else {
            why.join("; ")
        },
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::H;
    use serde_json::json;

    const SLACK: Duration = Duration::from_millis(2);

    #[test]
    fn reads_before_the_deadline_and_nulls_after_are_valid() {
        let mut h = H::default();
        h.at(0, 1, "invoke", "write", json!(["t", 1, 100]));
        h.at(5, 1, "ok", "write", json!(["t", 1, 100]));
        h.at(50, 2, "invoke", "read", json!(["t", null]));
        h.at(51, 2, "ok", "read", json!(["t", 1]));
        // Invoked at 104: before 5 + 100 (+ slack).
        h.at(104, 2, "invoke", "read", json!(["t", null]));
        h.at(106, 2, "ok", "read", json!(["t", 1]));
        h.at(300, 2, "invoke", "read", json!(["t", null]));
        h.at(301, 2, "ok", "read", json!(["t", null]));
        let v = check_ttl(&h.ops, SLACK);
        assert_eq!(v.outcome, Outcome::Valid, "{}", v.explanation);
    }

    #[test]
    fn a_read_after_the_deadline_is_invalid() {
        let mut h = H::default();
        h.at(0, 1, "invoke", "write", json!(["t", 1, 100]));
        h.at(5, 1, "ok", "write", json!(["t", 1, 100]));
        h.at(150, 2, "invoke", "read", json!(["t", null]));
        h.at(151, 2, "ok", "read", json!(["t", 1]));
        let v = check_ttl(&h.ops, SLACK);
        assert_eq!(v.outcome, Outcome::Invalid);
        assert!(
            v.explanation.contains("45.0 ms after its deadline"),
            "{}",
            v.explanation
        );
    }

    #[test]
    fn unknown_writes_bound_nothing_and_failed_ones_are_never_written() {
        let mut h = H::default();
        h.at(0, 1, "invoke", "write", json!(["t", 1, 100]));
        h.at(5, 1, "info", "write", json!(["t", 1, 100]));
        h.at(500, 2, "invoke", "read", json!(["t", null]));
        h.at(501, 2, "ok", "read", json!(["t", 1]));
        assert_eq!(check_ttl(&h.ops, SLACK).outcome, Outcome::Valid);
        h.at(600, 3, "invoke", "write", json!(["t", 2, 100]));
        h.at(601, 3, "fail", "write", json!(["t", 2, 100]));
        h.at(602, 2, "invoke", "read", json!(["t", null]));
        h.at(603, 2, "ok", "read", json!(["t", 2]));
        let v = check_ttl(&h.ops, SLACK);
        assert_eq!(v.outcome, Outcome::Invalid);
        assert!(v.explanation.contains("never written"), "{}", v.explanation);
    }
}
