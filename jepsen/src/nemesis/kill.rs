//! kill -9 and restart: the leader of a random shard, one node, a minority or a
//! majority. Stop restarts them (same flags, same data directory).

use super::{pick, Applied, Ctx, Fault, Target, TARGETS};

#[derive(Default)]
pub struct Kill {
    killed: Vec<u64>,
}

impl Fault for Kill {
    fn name(&self) -> &'static str {
        "kill"
    }

    fn start(&mut self, ctx: &mut Ctx) -> Result<Applied, String> {
        // Leader-biased: half the kills take a shard's leader.
        let target = if ctx.rng.chance(0.5) {
            Target::Leader
        } else {
            *ctx.rng.pick(TARGETS)
        };
        let (nodes, who) = pick(ctx, target);
        for &id in &nodes {
            ctx.cluster.kill(id);
        }
        self.killed = nodes.clone();
        Ok(Applied {
            description: format!("kill -9 {who}"),
            nodes,
        })
    }

    fn stop(&mut self, ctx: &mut Ctx) -> Result<(), String> {
        for id in std::mem::take(&mut self.killed) {
            ctx.cluster.start_node(id)?;
        }
        Ok(())
    }
}
