//! The history: every client operation as an invocation and a completion, in the
//! order they happened, written as JSON lines with Jepsen's field names (`process`,
//! `type`, `f`, `value`, `time`, `index`). The fault timeline is kept beside it.
//!
//! Value shapes, per workload (`k` is the key, a string):
//! - register: `read` `[k, null]` → ok `[k, v|null]`; `write` `[k, v]`; `cas` `[k, [old, new]]`.
//! - set: `add` `[k, e]`; the final `read` `[k, [e...]]`.
//! - list-append: `append` `[k, v]` → ok `[k, v, [list after the append]]`; the final
//!   `read` `[k, [v...]]`.
//! - ttl: `write` `[k, v, px]` (SET k v PX px); `read` `[k, null]` → ok `[k, v|null]`.
//!
//! Outcomes: `ok` happened, `fail` definitely did not happen, `info` unknown (it may
//! take effect at any time after its invocation). A process whose operation ended
//! `info` is retired and never used again, as in Jepsen.

use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, Write};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history, from 0.
    pub index: usize,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub process: u64,
    pub f: String,
    pub value: serde_json::Value,
    /// Nanoseconds since the run started (the client's monotonic clock).
    pub time: u64,
    /// The node (1-based id) the client talked to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    /// Why the operation failed or is unknown: the server's error text or the client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A fault switched on (`start`) and off (`end`), in the same clock as `Op::time`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultSpan {
    /// The nemesis: kill, pause, partition, clock, latency...
    pub fault: String,
    /// What it did, for people: "kill -9 node 2 (leader of shard 1)".
    pub description: String,
    /// The nodes it touched.
    pub nodes: Vec<u64>,
    pub start: u64,
    /// None: still on when the history ended (should not happen after the heal).
    pub end: Option<u64>,
}

/// An invocation paired with its completion (if any), by position in the history.
#[derive(Clone, Debug)]
pub struct Pair<'a> {
    pub invoke: &'a Op,
    /// None: the history ended before the operation completed (same as `info`).
    pub complete: Option<&'a Op>,
}

/// Pairs each invocation with the next operation of the same process.
pub fn pairs(history: &[Op]) -> Result<Vec<Pair<'_>>, String> {
    use std::collections::HashMap;
    let mut open: HashMap<u64, usize> = HashMap::new();
    let mut out: Vec<Pair> = Vec::new();
    for op in history {
        match op.kind {
            Kind::Invoke => {
                if let Some(&i) = open.get(&op.process) {
                    return Err(format!(
                        "process {} invoked op {} while op {} was still open",
                        op.process, op.index, out[i].invoke.index
                    ));
                }
                open.insert(op.process, out.len());
                out.push(Pair {
                    invoke: op,
                    complete: None,
                });
            }
            _ => {
                let Some(i) = open.remove(&op.process) else {
                    return Err(format!(
                        "op {} completes nothing: process {} has no open invocation",
                        op.index, op.process
                    ));
                };
                if out[i].invoke.f != op.f {
                    return Err(format!(
                        "op {} ({}) completes op {} ({})",
                        op.index, op.f, out[i].invoke.index, out[i].invoke.f
                    ));
                }
                out[i].complete = Some(op);
            }
        }
    }
    Ok(out)
}

pub fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> io::Result<()> {
    let mut w = io::BufWriter::new(std::fs::File::create(path)?);
    for item in items {
        serde_json::to_writer(&mut w, item)?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

pub fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<Vec<T>> {
    let r = io::BufReader::new(std::fs::File::open(path)?);
    let mut out = Vec::new();
    for (n, line) in r.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}:{}: {e}", path.display(), n + 1),
            )
        })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(index: usize, kind: Kind, process: u64, f: &str, value: serde_json::Value) -> Op {
        Op {
            index,
            kind,
            process,
            f: f.into(),
            value,
            time: index as u64 * 10,
            node: None,
            error: None,
        }
    }

    #[test]
    fn serializes_with_jepsen_field_names() {
        let o = op(3, Kind::Invoke, 7, "write", json!(["r1", 5]));
        let text = serde_json::to_string(&o).unwrap();
        assert_eq!(
            text,
            r#"{"index":3,"type":"invoke","process":7,"f":"write","value":["r1",5],"time":30}"#
        );
        assert_eq!(serde_json::from_str::<Op>(&text).unwrap(), o);
    }

    #[test]
    fn pairs_invocations_with_completions() {
        let h = vec![
            op(0, Kind::Invoke, 1, "write", json!(["k", 1])),
            op(1, Kind::Invoke, 2, "read", json!(["k", null])),
            op(2, Kind::Ok, 2, "read", json!(["k", 1])),
            op(3, Kind::Info, 1, "write", json!(["k", 1])),
            op(4, Kind::Invoke, 3, "read", json!(["k", null])),
        ];
        let p = pairs(&h).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].complete.unwrap().index, 3);
        assert_eq!(p[1].complete.unwrap().index, 2);
        assert!(p[2].complete.is_none());
        let bad = vec![
            op(0, Kind::Invoke, 1, "write", json!(["k", 1])),
            op(1, Kind::Invoke, 1, "read", json!(["k", null])),
        ];
        assert!(pairs(&bad).unwrap_err().contains("still open"));
    }
}
