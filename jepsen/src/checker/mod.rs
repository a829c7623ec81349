//! Checkers: each reads the history of one workload and gives a verdict.
//!
//! - `linear.rs`: linearizability (Wing–Gong search, Porcupine's per-key partitioning
//!   and state caching, a time budget) and the register model.
//! - `set.rs`, `list_append.rs`, `ttl.rs`: the other workloads' invariants.

pub mod linear;
pub mod list_append;
pub mod set;
pub mod ttl;

use serde::Serialize;

/// Valid < Unknown < Invalid: combining verdicts keeps the worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Valid,
    Unknown,
    Invalid,
}

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// The checker: "register", "set", ...
    pub checker: String,
    pub outcome: Outcome,
    /// For people: why invalid or unknown (the first bad operation, explained), or
    /// what was checked when valid.
    pub explanation: String,
    /// Counts worth reporting ("keys": 40, "ok": 1234, "lost": 0, ...).
    pub stats: Vec<(String, u64)>,
}

/// Hand-made histories for the checkers' tests.
#[cfg(test)]
pub mod testing {
    use crate::history::{Kind, Op};
    use serde_json::Value;

    #[derive(Default)]
    pub struct H {
        pub ops: Vec<Op>,
        /// The clock, in ms; each recorded event advances it by 1 unless set.
        pub t: u64,
    }

    fn kind(s: &str) -> Kind {
        match s {
            "invoke" => Kind::Invoke,
            "ok" => Kind::Ok,
            "fail" => Kind::Fail,
            "info" => Kind::Info,
            _ => panic!("kind {s}"),
        }
    }

    impl H {
        pub fn event(&mut self, process: u64, kind_: &str, f: &str, value: Value) {
            self.t += 1;
            self.at(self.t, process, kind_, f, value);
        }

        /// An event at an explicit time (ms).
        pub fn at(&mut self, t_ms: u64, process: u64, kind_: &str, f: &str, value: Value) {
            self.ops.push(Op {
                index: self.ops.len(),
                kind: kind(kind_),
                process,
                f: f.into(),
                value,
                time: t_ms * 1_000_000,
                node: None,
                error: None,
            });
        }

        /// A whole operation, alone in time: invoke then its completion. The invoke of
        /// a read carries `[k, null]`.
        pub fn op(&mut self, process: u64, f: &str, value: Value, outcome: &str) {
            let inv = if f == "read" {
                serde_json::json!([value[0].clone(), null])
            } else {
                value.clone()
            };
            self.event(process, "invoke", f, inv);
            self.event(process, outcome, f, value);
        }
    }
}
