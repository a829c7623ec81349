//! Server counters for INFO stats and INFO commandstats.

use std::collections::HashMap;
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
    pub commands: Mutex<HashMap<&'static str, CommandStats>>,
}

#[derive(Default, Clone, Copy, Debug)]
pub struct CommandStats {
    pub calls: u64,
    pub usec: u64,
    pub rejected_calls: u64,
    pub failed_calls: u64,
}

impl Stats {
    pub fn record(&self, name: &'static str, usec: u64, failed: bool) {
        self.commands_processed.fetch_add(1, Ordering::Relaxed);
        let mut m = self.commands.lock().unwrap();
        let s = m.entry(name).or_default();
        s.calls += 1;
        s.usec += usec;
        if failed {
            s.failed_calls += 1;
            self.total_error_replies.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn reject(&self, name: &'static str) {
        self.commands
            .lock()
            .unwrap()
            .entry(name)
            .or_default()
            .rejected_calls += 1;
        self.total_error_replies.fetch_add(1, Ordering::Relaxed);
    }

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
        self.commands.lock().unwrap().clear();
    }
}
