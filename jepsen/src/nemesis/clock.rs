//! Clock skew: libfaketime moves the wall clock of some nodes by up to ±10 s (their
//! monotonic clocks keep running, as when NTP steps a clock). Stop resets them.

use super::{pick, Applied, Ctx, Fault, TARGETS};

#[derive(Default)]
pub struct Clock {
    skewed: Vec<u64>,
}

impl Fault for Clock {
    fn name(&self) -> &'static str {
        "clock"
    }

    fn start(&mut self, ctx: &mut Ctx) -> Result<Applied, String> {
        let target = *ctx.rng.pick(TARGETS);
        let (nodes, who) = pick(ctx, target);
        let mut parts = Vec::new();
        for &id in &nodes {
            // 0.1 s to 10 s, either way.
            let ms = ctx.rng.range(100, 10_000) as f64;
            let offset = if ctx.rng.chance(0.5) { ms } else { -ms } / 1000.0;
            ctx.cluster.set_clock(id, offset)?;
            parts.push(format!("node {id} {offset:+.1}s"));
        }
        self.skewed = nodes.clone();
        Ok(Applied {
            description: format!("clock skew on {who}: {}", parts.join(", ")),
            nodes,
        })
    }

    fn stop(&mut self, ctx: &mut Ctx) -> Result<(), String> {
        for id in std::mem::take(&mut self.skewed) {
            ctx.cluster.set_clock(id, 0.0)?;
        }
        Ok(())
    }
}
