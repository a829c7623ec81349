//! Linearizability: Wing and Gong's search as improved by Lowe and used by Porcupine.
//!
//! The history is split by key (registers are independent), and each key is searched
//! on its own. Calls and returns form a doubly linked list in history order (the
//! recorder assigns history positions in real-time order, so there are no ties to
//! break). The search walks the list: at a call it tries to take the operation's
//! effect now (the model accepts its output from the current state, and the pair
//! (set of operations taken, state) has not been seen before) and lifts the call and
//! its return out of the list; at a return of an operation not yet taken it
//! backtracks. The list empties exactly when a linearization exists.
//!
//! Outcomes: `fail` operations did not happen and are dropped; `info` (or unfinished)
//! operations may have happened at any time after their invocation, so their return
//! goes at the end of the history; an `info` read is dropped (it changes nothing).
//! A cas whose outcome is unknown takes effect if the register holds its old value;
//! placed last it is indistinguishable from one that never happened.
//!
//! The search has a time budget; running out gives `Unknown`, never `Valid`.

use super::{Outcome, Verdict};
use crate::history::{pairs, Kind, Op};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// A register's value: None = the key does not exist (GET answers nil).
type State = Option<i64>;

#[derive(Clone, Debug, PartialEq)]
enum Input {
    Read,
    Write(i64),
    Cas(i64, i64),
}

#[derive(Clone, Debug, PartialEq)]
enum Output {
    /// What a read returned.
    Read(State),
    /// A write or a cas that succeeded.
    Done,
    /// The outcome is unknown.
    Unknown,
}

fn step(state: State, input: &Input, output: &Output) -> Option<State> {
    match (input, output) {
        (Input::Read, Output::Read(v)) => (*v == state).then_some(state),
        (Input::Read, _) => Some(state),
        (Input::Write(v), _) => Some(Some(*v)),
        (Input::Cas(old, new), Output::Unknown) => Some(if state == Some(*old) {
            Some(*new)
        } else {
            state
        }),
        (Input::Cas(old, new), _) => (state == Some(*old)).then_some(Some(*new)),
    }
}

fn show(s: State) -> String {
    s.map(|v| v.to_string()).unwrap_or_else(|| "nil".into())
}

/// One operation of one key, ready for the search.
#[derive(Clone, Debug)]
struct Operation {
    index: usize,
    process: u64,
    input: Input,
    output: Output,
    call: u64,
    ret: Option<u64>,
    node: Option<u64>,
}

impl Operation {
    fn describe(&self) -> String {
        let what = match (&self.input, &self.output) {
            (Input::Read, Output::Read(v)) => format!("read -> {}", show(*v)),
            (Input::Read, _) => "read -> ?".into(),
            (Input::Write(v), Output::Unknown) => format!("write {v} (unknown outcome)"),
            (Input::Write(v), _) => format!("write {v}"),
            (Input::Cas(a, b), Output::Unknown) => format!("cas {a}->{b} (unknown outcome)"),
            (Input::Cas(a, b), _) => format!("cas {a}->{b}"),
        };
        let ret = self
            .ret
            .map(|t| format!("{:.3} s", t as f64 / 1e9))
            .unwrap_or_else(|| "never".into());
        let node = self.node.map(|n| format!(", node {n}")).unwrap_or_default();
        format!(
            "op {} (process {}{node}, {what}, invoked {:.3} s, returned {ret})",
            self.index,
            self.process,
            self.call as f64 / 1e9,
        )
    }
}

fn int(v: &Value, index: usize) -> Result<i64, String> {
    v.as_i64()
        .ok_or_else(|| format!("op {index}: expected an integer, got {v}"))
}

/// Splits the history into operations per key.
fn operations(history: &[Op]) -> Result<BTreeMap<String, Vec<Operation>>, String> {
    let mut keys: BTreeMap<String, Vec<Operation>> = BTreeMap::new();
    for p in pairs(history)? {
        let inv = p.invoke;
        let key = inv.value[0]
            .as_str()
            .ok_or_else(|| format!("op {}: no key in {}", inv.index, inv.value))?;
        let kind = p.complete.map(|c| c.kind).unwrap_or(Kind::Info);
        if kind == Kind::Fail {
            continue;
        }
        let input = match inv.f.as_str() {
            "read" => Input::Read,
            "write" => Input::Write(int(&inv.value[1], inv.index)?),
            "cas" => Input::Cas(
                int(&inv.value[1][0], inv.index)?,
                int(&inv.value[1][1], inv.index)?,
            ),
            f => return Err(format!("op {}: unknown f {f}", inv.index)),
        };
        let output = match (kind, &input) {
            (Kind::Ok, Input::Read) => {
                let v = &p.complete.expect("ok").value[1];
                Output::Read(if v.is_null() {
                    None
                } else {
                    Some(int(v, inv.index)?)
                })
            }
            (Kind::Ok, _) => Output::Done,
            (_, Input::Read) => continue, // an unknown read changes nothing
            _ => Output::Unknown,
        };
        keys.entry(key.to_string()).or_default().push(Operation {
            index: inv.index,
            process: inv.process,
            input,
            output,
            call: inv.time,
            ret: (kind == Kind::Ok).then(|| p.complete.expect("ok").time),
            node: inv.node,
        });
    }
    Ok(keys)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Call(usize),
    Return(usize),
}

/// A set of operations as bits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// What the search of one key concluded.
#[derive(Debug)]
enum Search {
    Linearizable,
    /// The longest linearized prefix found (operation positions, in order), the
    /// state after it, and the operation whose return could not be passed there.
    NotLinearizable {
        prefix: Vec<usize>,
        state: State,
        stuck: usize,
    },
    OutOfTime,
}

/// Searches one key's operations for a linearization.
fn search(ops: &[Operation], deadline: Instant) -> Search {
    let n = ops.len();
    // The entries in history order: calls by invocation, returns by completion;
    // unknown returns after everything, in invocation order.
    let mut events: Vec<(u64, u8, Entry)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, 0, Entry::Call(i)));
        match op.ret {
            Some(t) => events.push((t, 0, Entry::Return(i))),
            None => events.push((u64::MAX, 1, Entry::Return(i))),
        }
    }
    // Distinct history positions never tie in time except for unknown returns.
    events.sort_by_key(|&(t, late, e)| {
        (
            late,
            t,
            match e {
                Entry::Call(i) => ops[i].index * 2,
                Entry::Return(i) => ops[i].index * 2 + 1,
            },
        )
    });
    // A doubly linked list over 0 (the head) and entries 1..=2n.
    let m = events.len();
    let entry: Vec<Entry> = std::iter::once(Entry::Call(usize::MAX))
        .chain(events.iter().map(|e| e.2))
        .collect();
    let mut next: Vec<usize> = (1..=m + 1).collect();
    let mut prev: Vec<usize> = (0..=m).map(|i| i.wrapping_sub(1)).collect();
    next[m] = usize::MAX;
    let mut ret_of = vec![0usize; n];
    for (pos, e) in entry.iter().enumerate().skip(1) {
        if let Entry::Return(i) = e {
            ret_of[*i] = pos;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, p: usize| {
        let (a, b) = (prev[p], next[p]);
        next[a] = b;
        if b != usize::MAX {
            prev[b] = a;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, p: usize| {
        let (a, b) = (prev[p], next[p]);
        next[a] = p;
        if b != usize::MAX {
            prev[b] = p;
        }
    };

    let mut state: State = None;
    let mut taken = Bits::new(n);
    let mut seen: HashSet<(Bits, State)> = HashSet::new();
    // (call position, state before it)
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut best: Option<(Vec<usize>, State, usize)> = None;
    let mut cur = next[0];
    let mut steps: u64 = 0;
    while next[0] != usize::MAX {
        steps += 1;
        if steps.is_multiple_of(4096) && Instant::now() >= deadline {
            return Search::OutOfTime;
        }
        match entry[cur] {
            Entry::Call(i) => {
                let mut lifted = false;
                if let Some(after) = step(state, &ops[i].input, &ops[i].output) {
                    taken.set(i);
                    if seen.insert((taken.clone(), after)) {
                        stack.push((cur, state));
                        state = after;
                        unlink(&mut next, &mut prev, cur);
                        unlink(&mut next, &mut prev, ret_of[i]);
                        lifted = true;
                        cur = next[0];
                    } else {
                        taken.clear(i);
                    }
                }
                if !lifted {
                    cur = next[cur];
                }
            }
            Entry::Return(i) => {
                if best.as_ref().is_none_or(|b| stack.len() > b.0.len()) {
                    let prefix = stack
                        .iter()
                        .map(|&(p, _)| match entry[p] {
                            Entry::Call(j) => j,
                            Entry::Return(j) => j,
                        })
                        .collect();
                    best = Some((prefix, state, i));
                }
                let Some((p, before)) = stack.pop() else {
                    let (prefix, state, stuck) = best.expect("recorded above");
                    return Search::NotLinearizable {
                        prefix,
                        state,
                        stuck,
                    };
                };
                let Entry::Call(j) = entry[p] else {
                    unreachable!("the stack holds calls")
                };
                state = before;
                taken.clear(j);
                relink(&mut next, &mut prev, ret_of[j]);
                relink(&mut next, &mut prev, p);
                cur = next[p];
            }
        }
    }
    Search::Linearizable
}

/// Checks register histories (`read`, `write`, `cas` on `[key, ...]`) for
/// linearizability, key by key, within `budget` overall.
pub fn check_register(history: &[Op], budget: Duration) -> Verdict {
    let verdict = |outcome, explanation: String, stats| Verdict {
        checker: "register".into(),
        outcome,
        explanation,
        stats,
    };
    let keys = match operations(history) {
        Ok(k) => k,
        Err(e) => {
            return verdict(
                Outcome::Unknown,
                format!("malformed history: {e}"),
                Vec::new(),
            )
        }
    };
    let count = |k: Kind| history.iter().filter(|o| o.kind == k).count() as u64;
    let stats = vec![
        ("keys".to_string(), keys.len() as u64),
        (
            "ops".to_string(),
            keys.values().map(|v| v.len() as u64).sum(),
        ),
        ("ok".to_string(), count(Kind::Ok)),
        ("info".to_string(), count(Kind::Info)),
        ("fail".to_string(), count(Kind::Fail)),
    ];
    let deadline = Instant::now() + budget;
    let mut unfinished = Vec::new();
    for (key, ops) in &keys {
        match search(ops, deadline) {
            Search::Linearizable => {}
            Search::OutOfTime => unfinished.push(key.clone()),
            Search::NotLinearizable {
                prefix,
                state,
                stuck,
            } => {
                let tail: Vec<String> = prefix
                    .iter()
                    .rev()
                    .take(4)
                    .rev()
                    .map(|&i| format!("  {}", ops[i].describe()))
                    .collect();
                let explanation = format!(
                    "key {key}: not linearizable. The longest linearizable prefix found takes {} of its {} operations, ending with:\n{}\nleaving the register at {}. Then {} cannot be placed: it must take effect before it returns, and no order of the operations still pending makes it legal (the register holds {} there).",
                    prefix.len(),
                    ops.len(),
                    tail.join("\n"),
                    show(state),
                    ops[stuck].describe(),
                    show(state),
                );
                return verdict(Outcome::Invalid, explanation, stats);
            }
        }
    }
    if !unfinished.is_empty() {
        return verdict(
            Outcome::Unknown,
            format!(
                "the search ran out of its {budget:?} budget; keys not decided: {}",
                unfinished.join(", ")
            ),
            stats,
        );
    }
    verdict(
        Outcome::Valid,
        format!("all {} keys linearizable", keys.len()),
        stats,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::H;
    use crate::rng::Rng;
    use serde_json::json;

    const BUDGET: Duration = Duration::from_secs(30);

    fn check(h: &H) -> Verdict {
        check_register(&h.ops, BUDGET)
    }

    #[test]
    fn sequential_history_is_valid() {
        let mut h = H::default();
        h.op(1, "read", json!(["r", null]), "ok");
        h.op(1, "write", json!(["r", 1]), "ok");
        h.op(2, "read", json!(["r", 1]), "ok");
        h.op(2, "cas", json!(["r", [1, 2]]), "ok");
        h.op(1, "read", json!(["r", 2]), "ok");
        h.op(1, "cas", json!(["r", [1, 3]]), "fail");
        h.op(1, "read", json!(["r", 2]), "ok");
        let v = check(&h);
        assert_eq!(v.outcome, Outcome::Valid, "{}", v.explanation);
    }

    #[test]
    fn concurrent_operations_may_be_reordered() {
        // The read overlaps both writes and sees the first, which must then be the
        // later one.
        let mut h = H::default();
        h.event(1, "invoke", "write", json!(["r", 1]));
        h.event(2, "invoke", "write", json!(["r", 2]));
        h.event(3, "invoke", "read", json!(["r", null]));
        h.event(2, "ok", "write", json!(["r", 2]));
        h.event(1, "ok", "write", json!(["r", 1]));
        h.event(3, "ok", "read", json!(["r", 1]));
        h.op(3, "read", json!(["r", 1]), "ok");
        let v = check(&h);
        assert_eq!(v.outcome, Outcome::Valid, "{}", v.explanation);
    }

    #[test]
    fn a_stale_read_is_invalid_and_explained() {
        let mut h = H::default();
        h.op(1, "write", json!(["r", 1]), "ok");
        h.op(1, "write", json!(["r", 2]), "ok");
        h.op(2, "read", json!(["r", 1]), "ok");
        let v = check(&h);
        assert_eq!(v.outcome, Outcome::Invalid);
        assert!(v.explanation.contains("key r"), "{}", v.explanation);
        assert!(
            v.explanation.contains("op 4 (process 2, read -> 1"),
            "names the stale read: {}",
            v.explanation
        );
        assert!(v.explanation.contains("holds 2"), "{}", v.explanation);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_invalid() {
        let mut h = H::default();
        h.op(1, "write", json!(["r", 1]), "ok");
        h.event(2, "invoke", "write", json!(["r", 3]));
        h.op(1, "read", json!(["r", 4]), "ok");
        h.event(2, "ok", "write", json!(["r", 3]));
        assert_eq!(check(&h).outcome, Outcome::Invalid);
    }

    #[test]
    fn unknown_writes_may_or_may_not_happen() {
        // Seen later: valid.
        let mut h = H::default();
        h.op(1, "write", json!(["r", 1]), "ok");
        h.op(2, "write", json!(["r", 2]), "info");
        h.op(3, "read", json!(["r", 1]), "ok");
        h.op(3, "read", json!(["r", 2]), "ok");
        assert_eq!(check(&h).outcome, Outcome::Valid);
        // Never seen: valid.
        let mut h = H::default();
        h.op(1, "write", json!(["r", 1]), "ok");
        h.op(2, "write", json!(["r", 2]), "info");
        h.op(3, "read", json!(["r", 1]), "ok");
        assert_eq!(check(&h).outcome, Outcome::Valid);
        // But not before its invocation.
        let mut h = H::default();
        h.op(1, "write", json!(["r", 1]), "ok");
        h.op(3, "read", json!(["r", 2]), "ok");
        h.op(2, "write", json!(["r", 2]), "info");
        assert_eq!(check(&h).outcome, Outcome::Invalid);
    }

    #[test]
    fn a_failed_write_never_happened() {
        let mut h = H::default();
        h.op(1, "write", json!(["r", 1]), "ok");
        h.op(2, "write", json!(["r", 2]), "fail");
        h.op(3, "read", json!(["r", 2]), "ok");
        assert_eq!(check(&h).outcome, Outcome::Invalid);
    }

    #[test]
    fn cas_needs_its_old_value() {
        let mut h = H::default();
        h.op(1, "write", json!(["r", 1]), "ok");
        h.op(1, "cas", json!(["r", [2, 3]]), "ok");
        assert_eq!(check(&h).outcome, Outcome::Invalid);
        // An unknown cas applies if it can, or is placed last.
        let mut h = H::default();
        h.op(1, "write", json!(["r", 1]), "ok");
        h.op(2, "cas", json!(["r", [1, 3]]), "info");
        h.op(1, "read", json!(["r", 1]), "ok");
        h.op(1, "read", json!(["r", 3]), "ok");
        assert_eq!(check(&h).outcome, Outcome::Valid);
    }

    #[test]
    fn only_the_bad_key_is_named() {
        let mut h = H::default();
        for k in ["a", "b", "c"] {
            h.op(1, "write", json!([k, 1]), "ok");
            h.op(2, "read", json!([k, 1]), "ok");
        }
        h.op(1, "write", json!(["b", 2]), "ok");
        h.op(2, "read", json!(["b", 1]), "ok");
        let v = check(&h);
        assert_eq!(v.outcome, Outcome::Invalid);
        assert!(v.explanation.starts_with("key b:"), "{}", v.explanation);
    }

    /// A real register with concurrent processes: each operation takes effect at a
    /// random instant inside its interval; some end unknown, having taken effect or
    /// not. Returns the history (and the positions of ok reads).
    fn simulate(seed: u64, keys: usize, ops_per_key: usize, processes: u64) -> H {
        let mut rng = Rng::new(seed);
        // (time, event) with events: invoke/complete per op, effects computed in
        // effect-time order.
        struct Sim {
            key: String,
            process: u64,
            f: &'static str,
            arg: (i64, i64),
            start: u64,
            effect: Option<u64>,
            end: u64,
            outcome: &'static str,
            result: Value,
        }
        let mut sims: Vec<Sim> = Vec::new();
        for k in 0..keys {
            let key = format!("k{k}");
            let mut free_at = vec![0u64; processes as usize];
            for _ in 0..ops_per_key {
                let p = rng.below(processes) as usize;
                let start = free_at[p] + rng.range(0, 20);
                let end = start + rng.range(1, 60);
                let unknown = rng.chance(0.05);
                let effect = if unknown && rng.chance(0.5) {
                    None
                } else if unknown {
                    Some(rng.range(start, end + 200))
                } else {
                    Some(rng.range(start, end))
                };
                free_at[p] = end + 1;
                let f = *rng.pick(&["read", "read", "write", "cas"]);
                sims.push(Sim {
                    key: key.clone(),
                    process: p as u64 + 100 * k as u64,
                    f,
                    arg: (rng.below(4) as i64, rng.below(4) as i64),
                    start,
                    effect,
                    end,
                    outcome: if unknown { "info" } else { "ok" },
                    result: Value::Null,
                });
            }
        }
        // Apply the effects in order, per key.
        let mut order: Vec<usize> = (0..sims.len())
            .filter(|&i| sims[i].effect.is_some())
            .collect();
        order.sort_by_key(|&i| (sims[i].effect, i));
        let mut regs: BTreeMap<String, State> = BTreeMap::new();
        for i in order {
            let s = &mut sims[i];
            let reg = regs.entry(s.key.clone()).or_default();
            match s.f {
                "read" => s.result = json!([s.key, *reg]),
                "write" => {
                    *reg = Some(s.arg.0);
                    s.result = json!([s.key, s.arg.0]);
                }
                _ => {
                    s.result = json!([s.key, [s.arg.0, s.arg.1]]);
                    if *reg == Some(s.arg.0) {
                        *reg = Some(s.arg.1);
                    } else if s.outcome == "ok" {
                        s.outcome = "fail";
                    }
                }
            }
        }
        for s in &mut sims {
            if s.effect.is_none() {
                s.result = match s.f {
                    "read" => json!([s.key, null]),
                    "write" => json!([s.key, s.arg.0]),
                    _ => json!([s.key, [s.arg.0, s.arg.1]]),
                };
            }
        }
        let mut events: Vec<(u64, u8, usize)> = Vec::new();
        for (i, s) in sims.iter().enumerate() {
            events.push((s.start, 0, i));
            events.push((s.end, 1, i));
        }
        // Same instant: completions first, so "end < next start" holds per process.
        events.sort_by_key(|&(t, kind, i)| (t, std::cmp::Reverse(kind), i));
        let mut h = H::default();
        for (t, kind, i) in events {
            let s = &sims[i];
            let invoke_value = match s.f {
                "read" => json!([s.key, null]),
                "write" => json!([s.key, s.arg.0]),
                _ => json!([s.key, [s.arg.0, s.arg.1]]),
            };
            if kind == 0 {
                h.at(t, s.process, "invoke", s.f, invoke_value);
            } else {
                h.at(t, s.process, s.outcome, s.f, s.result.clone());
            }
        }
        h
    }

    #[test]
    fn simulated_linearizable_histories_are_valid() {
        for seed in 0..40 {
            let h = simulate(seed, 3, 120, 6);
            let v = check(&h);
            assert_eq!(v.outcome, Outcome::Valid, "seed {seed}: {}", v.explanation);
        }
    }

    #[test]
    fn a_read_of_an_impossible_value_in_a_simulated_history_is_invalid() {
        for seed in 0..40 {
            let mut h = simulate(seed, 3, 120, 6);
            // Make one ok read return a value nobody ever writes (99).
            let reads: Vec<usize> = h
                .ops
                .iter()
                .filter(|o| o.f == "read" && o.kind == Kind::Ok)
                .map(|o| o.index)
                .collect();
            let i = reads[reads.len() / 2];
            h.ops[i].value[1] = json!(99);
            let v = check(&h);
            assert_eq!(v.outcome, Outcome::Invalid, "seed {seed}");
            assert!(
                v.explanation.contains("read -> 99"),
                "seed {seed}: {}",
                v.explanation
            );
        }
    }

    #[test]
    fn a_stale_read_in_a_simulated_history_is_invalid() {
        // After the simulated traffic (values 0..3), 50 then 51 are written, one after
        // the other; a read strictly after both that returns 50 is stale, whatever the
        // unknown operations did.
        for seed in 0..20 {
            let mut h = simulate(seed, 1, 100, 5);
            let t = h.ops.last().unwrap().time / 1_000_000 + 300;
            h.at(t, 901, "invoke", "write", json!(["k0", 50]));
            h.at(t + 1, 901, "ok", "write", json!(["k0", 50]));
            h.at(t + 2, 901, "invoke", "read", json!(["k0", null]));
            h.at(t + 3, 901, "ok", "read", json!(["k0", 50]));
            let v = check(&h);
            assert_eq!(v.outcome, Outcome::Valid, "seed {seed}: {}", v.explanation);
            h.at(t + 4, 901, "invoke", "write", json!(["k0", 51]));
            h.at(t + 5, 901, "ok", "write", json!(["k0", 51]));
            h.at(t + 6, 902, "invoke", "read", json!(["k0", null]));
            h.at(t + 7, 902, "ok", "read", json!(["k0", 50]));
            let v = check(&h);
            assert_eq!(
                v.outcome,
                Outcome::Invalid,
                "seed {seed}: {}",
                v.explanation
            );
            assert!(
                v.explanation.contains("read -> 50"),
                "seed {seed}: {}",
                v.explanation
            );
        }
    }

    #[test]
    fn running_out_of_budget_is_unknown_never_valid() {
        let h = simulate(7, 20, 200, 10);
        let v = check_register(&h.ops, Duration::ZERO);
        assert_eq!(v.outcome, Outcome::Unknown, "{}", v.explanation);
        assert!(v.explanation.contains("budget"));
    }

    #[test]
    fn many_keys_of_200_operations_are_checked() {
        let h = simulate(11, 50, 200, 10);
        let v = check(&h);
        assert_eq!(v.outcome, Outcome::Valid, "{}", v.explanation);
        assert!(v.stats.contains(&("keys".into(), 50)));
    }
}
