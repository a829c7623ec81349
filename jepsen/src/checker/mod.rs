//! Checkers: each reads the history of one workload and gives a verdict.
//!
//! - `linear.rs`: linearizability (Wing–Gong search, Porcupine's per-key partitioning
//!   and state caching, a time budget) and the register model.
//! - `set.rs`, `list_append.rs`, `ttl.rs`: the other workloads' invariants.

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
