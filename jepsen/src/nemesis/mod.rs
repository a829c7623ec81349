//! Faults. Each fault is one small file implementing `Fault`: `start` switches it on
//! against some targets and says what it did, `stop` switches it off. The schedule
//! (`schedule.rs`) picks a fault, holds it for a few seconds, stops it, waits, and so
//! on; `heal` at the end undoes anything left. Adding a fault is a new file here and a
//! line in `by_name`.

pub mod clock;
pub mod kill;
pub mod latency;
pub mod member;
pub mod migrate;
pub mod partition;
pub mod pause;
pub mod schedule;

use crate::cluster::Cluster;
use crate::rng::Rng;
use std::time::Duration;

/// What the faults may do to the network (the proxy implements it; tests use a fake).
pub trait Network: Send + Sync {
    /// Bytes from `from` to `to` are lost from now on.
    fn block(&self, from: u64, to: u64);
    /// Every link forwards again.
    fn heal(&self);
    fn set_delay(&self, from: u64, to: u64, delay: Duration);
    fn clear_delays(&self);
}

pub struct Ctx<'a> {
    pub cluster: &'a mut Cluster,
    pub net: &'a dyn Network,
    pub rng: &'a mut Rng,
}

/// What a fault did when switched on.
pub struct Applied {
    /// For people: "kill -9 node 2 (leader of shard 1)".
    pub description: String,
    pub nodes: Vec<u64>,
}

pub trait Fault: Send {
    fn name(&self) -> &'static str;
    fn start(&mut self, ctx: &mut Ctx) -> Result<Applied, String>;
    fn stop(&mut self, ctx: &mut Ctx) -> Result<(), String>;
}

pub const NAMES: &[&str] = &[
    "kill",
    "pause",
    "partition",
    "clock",
    "latency",
    "member",
    "migrate",
];

pub fn by_name(name: &str) -> Option<Box<dyn Fault>> {
    Some(match name {
        "kill" => Box::new(kill::Kill::default()),
        "pause" => Box::new(pause::Pause::default()),
        "partition" => Box::new(partition::Partition),
        "clock" => Box::new(clock::Clock::default()),
        "latency" => Box::new(latency::Latency),
        "member" => Box::new(member::Member),
        "migrate" => Box::new(migrate::Migrate),
        _ => return None,
    })
}

/// Which nodes a fault hits, as Jepsen's node specs: the leader of a shard, one
/// node, a minority, a majority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Leader,
    One,
    Minority,
    Majority,
}

pub const TARGETS: &[Target] = &[
    Target::Leader,
    Target::One,
    Target::Minority,
    Target::Majority,
];

/// Picks the nodes for `target` among the running ones, with a phrase saying why.
pub fn pick(ctx: &mut Ctx, target: Target) -> (Vec<u64>, String) {
    let up: Vec<u64> = ctx
        .cluster
        .ids()
        .into_iter()
        .filter(|&id| ctx.cluster.is_running(id) && !ctx.cluster.is_paused(id))
        .collect();
    if up.is_empty() {
        return (Vec::new(), "no node is up".into());
    }
    let n = ctx.cluster.ids().len();
    match target {
        Target::Leader => {
            let leaders: Vec<(u64, u64)> = ctx.cluster.leaders().into_iter().collect();
            if leaders.is_empty() {
                let id = *ctx.rng.pick(&up);
                return (vec![id], format!("node {id} (no shard had a leader)"));
            }
            let (shard, id) = *ctx.rng.pick(&leaders);
            (vec![id], format!("node {id} (leader of shard {shard})"))
        }
        Target::One => {
            let id = *ctx.rng.pick(&up);
            (vec![id], format!("node {id}"))
        }
        Target::Minority => {
            let k = ((n - 1) / 2).clamp(1, up.len());
            let mut nodes = ctx.rng.sample(&up, k);
            nodes.sort();
            let d = format!("minority {nodes:?}");
            (nodes, d)
        }
        Target::Majority => {
            let k = (n / 2 + 1).min(up.len());
            let mut nodes = ctx.rng.sample(&up, k);
            nodes.sort();
            let d = format!("majority {nodes:?}");
            (nodes, d)
        }
    }
}

impl Network for crate::proxy::Proxy {
    fn block(&self, from: u64, to: u64) {
        crate::proxy::Proxy::block(self, from, to)
    }
    fn heal(&self) {
        crate::proxy::Proxy::heal(self)
    }
    fn set_delay(&self, from: u64, to: u64, delay: Duration) {
        crate::proxy::Proxy::set_delay(self, from, to, delay)
    }
    fn clear_delays(&self) {
        crate::proxy::Proxy::clear_delays(self)
    }
}
