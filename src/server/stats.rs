//! Server counters for INFO stats, commandstats and errorstats.

use crate::resp::Reply;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct Stats {
    pub connections_received: AtomicU64,
    pub commands_processed: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    pub total_error_replies: AtomicU64,
    /// The highest used_memory seen after a command (INFO used_memory_peak).
    pub memory_peak: AtomicU64,
    /// Per command (full name, `client|list` for subcommands).
    pub commands: Mutex<HashMap<&'static str, CommandStats>>,
    /// Error replies by their prefix (`ERR`, `WRONGTYPE`, ...), for INFO errorstats.
    pub errors: Mutex<BTreeMap<String, u64>>,
}

#[derive(Default, Clone, Copy, Debug, PartialEq)]
pub struct CommandStats {
    pub calls: u64,
    pub usec: u64,
    pub rejected_calls: u64,
    pub failed_calls: u64,
}

/// The error code Redis files an error reply under: its first word.
fn error_code(reply: &Reply) -> Option<&str> {
    match reply {
        Reply::Error(t) => Some(t.split(' ').next().unwrap_or("")),
        _ => None,
    }
}

impl Stats {
    /// A command that ran; `error` is its error reply if it failed.
    pub fn record(&self, name: &'static str, usec: u64, error: Option<&Reply>) {
        self.commands_processed.fetch_add(1, Ordering::Relaxed);
        {
            let mut m = self.commands.lock().unwrap();
            let s = m.entry(name).or_default();
            s.calls += 1;
            s.usec += usec;
            if error.is_some() {
                s.failed_calls += 1;
            }
        }
        if let Some(e) = error {
            self.error_reply(e);
        }
    }

    /// A command refused before it ran (auth, subscribed mode, OOM, ...).
    pub fn reject(&self, name: &'static str, reply: &Reply) {
        self.commands
            .lock()
            .unwrap()
            .entry(name)
            .or_default()
            .rejected_calls += 1;
        self.error_reply(reply);
    }

    /// Counts an error reply sent to a client.
    pub fn error_reply(&self, reply: &Reply) {
        if let Some(code) = error_code(reply) {
            self.total_error_replies.fetch_add(1, Ordering::Relaxed);
            *self
                .errors
                .lock()
                .unwrap()
                .entry(code.to_string())
                .or_default() += 1;
        }
    }

    pub fn track_memory_peak(&self, used: u64) {
        // A plain load first: the peak rarely moves, and an RMW on every command would
        // bounce the cache line between cores.
        if used > self.memory_peak.load(Ordering::Relaxed) {
            self.memory_peak.fetch_max(used, Ordering::Relaxed);
        }
    }

    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        for c in [
            &self.connections_received,
            &self.commands_processed,
            &self.rejected_connections,
            &self.net_input_bytes,
            &self.net_output_bytes,
            &self.total_error_replies,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.memory_peak.store(
            crate::keyspace::memory::used_memory() as u64,
            Ordering::Relaxed,
        );
        self.commands.lock().unwrap().clear();
        self.errors.lock().unwrap().clear();
    }
}

/// A connection's command counts since its last flush into [`Stats`]. Counting
/// locally and flushing once per read batch keeps the global lock off the per-command
/// path (a pipeline of 16 commands takes it once).
#[derive(Default)]
pub struct LocalStats {
    commands: Vec<(&'static str, CommandStats)>,
}

impl LocalStats {
    pub fn record(&mut self, name: &'static str, usec: u64, failed: bool) {
        let i = match self
            .commands
            .iter()
            .position(|(n, _)| std::ptr::eq(*n, name) || *n == name)
        {
            Some(i) => i,
            None => {
                self.commands.push((name, CommandStats::default()));
                self.commands.len() - 1
            }
        };
        let s = &mut self.commands[i].1;
        s.calls += 1;
        s.usec += usec;
        if failed {
            s.failed_calls += 1;
        }
    }

    pub fn flush(&mut self, into: &Stats) {
        if self.commands.is_empty() {
            return;
        }
        let mut total = 0;
        let mut m = into.commands.lock().unwrap();
        for (name, s) in self.commands.drain(..) {
            let g = m.entry(name).or_default();
            g.calls += s.calls;
            g.usec += s.usec;
            g.failed_calls += s.failed_calls;
            total += s.calls;
        }
        into.commands_processed.fetch_add(total, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_failures_rejections_and_error_codes() {
        let s = Stats::default();
        s.record("get", 5, None);
        s.record("get", 7, Some(&Reply::error("WRONGTYPE Operation")));
        s.reject("get", &Reply::error("NOAUTH Authentication required."));
        s.error_reply(&Reply::error("ERR unknown command"));
        s.error_reply(&Reply::ok());
        let get = s.commands.lock().unwrap()["get"];
        assert_eq!(
            get,
            CommandStats {
                calls: 2,
                usec: 12,
                rejected_calls: 1,
                failed_calls: 1
            }
        );
        assert_eq!(s.total_error_replies.load(Ordering::Relaxed), 3);
        assert_eq!(s.commands_processed.load(Ordering::Relaxed), 2);
        let errors = s.errors.lock().unwrap().clone();
        assert_eq!(
            errors.into_iter().collect::<Vec<_>>(),
            vec![
                ("ERR".to_string(), 1),
                ("NOAUTH".to_string(), 1),
                ("WRONGTYPE".to_string(), 1)
            ]
        );
        s.reset();
        assert!(s.commands.lock().unwrap().is_empty());
        assert_eq!(s.total_error_replies.load(Ordering::Relaxed), 0);
    }
}
