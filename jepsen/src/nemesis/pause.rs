//! SIGSTOP and SIGCONT: a paused node keeps its sockets open but answers nothing, as a
//! long GC pause or a stalled VM would; a paused leader wakes up deposed.

use super::{pick, Applied, Ctx, Fault, Target, TARGETS};

#[derive(Default)]
pub struct Pause {
    paused: Vec<u64>,
}

impl Fault for Pause {
    fn name(&self) -> &'static str {
        "pause"
    }

    fn start(&mut self, ctx: &mut Ctx) -> Result<Applied, String> {
        let target = if ctx.rng.chance(0.5) {
            Target::Leader
        } else {
            *ctx.rng.pick(TARGETS)
        };
        let (nodes, who) = pick(ctx, target);
        for &id in &nodes {
            ctx.cluster.pause(id);
        }
        self.paused = nodes.clone();
        Ok(Applied {
            description: format!("SIGSTOP {who}"),
            nodes,
        })
    }

    fn stop(&mut self, ctx: &mut Ctx) -> Result<(), String> {
        for id in std::mem::take(&mut self.paused) {
            ctx.cluster.resume(id);
        }
        Ok(())
    }
}
