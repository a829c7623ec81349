//! The fault schedule: wait, switch a randomly chosen fault on, hold it, switch it
//! off, and again until the time is up. Runs on the harness's main thread, which
//! owns the cluster. Nodes that exit on their own are noted and restarted.

use super::{Ctx, Fault};
use crate::history::FaultSpan;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct Schedule {
    pub faults: Vec<Box<dyn Fault>>,
    /// Mean time a fault is held, and mean time between faults (each drawn in
    /// 0.5..1.5 of it).
    pub interval: Duration,
}

pub struct Timeline {
    pub spans: Vec<FaultSpan>,
    /// Nodes that exited without being killed: (node, exit status, when).
    pub crashes: Vec<(u64, String, u64)>,
}

impl Schedule {
    /// Runs faults from now until `until`; `origin` is the history's time zero.
    pub fn run(
        &mut self,
        ctx: &mut Ctx,
        origin: Instant,
        until: Instant,
        stop: &AtomicBool,
    ) -> Timeline {
        let mut t = Timeline {
            spans: Vec::new(),
            crashes: Vec::new(),
        };
        let now_ns = || origin.elapsed().as_nanos() as u64;
        loop {
            if !self.wait(ctx, &mut t, until, stop, now_ns) || self.faults.is_empty() {
                return t;
            }
            let i = ctx.rng.below(self.faults.len() as u64) as usize;
            let fault = &mut self.faults[i];
            let start = now_ns();
            let span = match fault.start(ctx) {
                Ok(a) => FaultSpan {
                    fault: fault.name().into(),
                    description: a.description,
                    nodes: a.nodes,
                    start,
                    end: None,
                },
                Err(e) => FaultSpan {
                    fault: fault.name().into(),
                    description: format!("failed to start: {e}"),
                    nodes: Vec::new(),
                    start,
                    end: Some(start),
                },
            };
            eprintln!(
                "[{:7.2}s] nemesis: {}",
                start as f64 / 1e9,
                span.description
            );
            t.spans.push(span);
            let held = self.wait(ctx, &mut t, until, stop, now_ns);
            let fault = &mut self.faults[i];
            if let Err(e) = fault.stop(ctx) {
                eprintln!("nemesis: stopping {} failed: {e}", fault.name());
            }
            let end = now_ns();
            let span = t.spans.last_mut().expect("span");
            span.end.get_or_insert(end);
            eprintln!("[{:7.2}s] nemesis: {} off", end as f64 / 1e9, fault.name());
            if !held {
                return t;
            }
        }
    }

    /// Sleeps about one interval; false when the time is up or the run was stopped.
    fn wait(
        &self,
        ctx: &mut Ctx,
        t: &mut Timeline,
        until: Instant,
        stop: &AtomicBool,
        now_ns: impl Fn() -> u64,
    ) -> bool {
        let ms = self.interval.as_millis() as u64;
        let d = Duration::from_millis(ctx.rng.range(ms / 2, ms + ms / 2));
        let end = (Instant::now() + d).min(until);
        while Instant::now() < end {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            for (id, status) in ctx.cluster.crashed() {
                let at = now_ns();
                eprintln!(
                    "[{:7.2}s] node {id} exited on its own: {status}; restarting",
                    at as f64 / 1e9
                );
                t.crashes.push((id, status, at));
                if let Err(e) = ctx.cluster.start_node(id) {
                    eprintln!("restart of node {id} failed: {e}");
                }
            }
            std::thread::sleep(Duration::from_millis(50).min(end - Instant::now().min(end)));
        }
        Instant::now() < until && !stop.load(Ordering::Relaxed)
    }
}
