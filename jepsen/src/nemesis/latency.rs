//! Slow network: every link into and out of some nodes gets 20–300 ms of extra delay
//! (each direction) through the proxy. Stop clears the delays.

use super::{pick, Applied, Ctx, Fault, TARGETS};
use std::time::Duration;

#[derive(Default)]
pub struct Latency;

impl Fault for Latency {
    fn name(&self) -> &'static str {
        "latency"
    }

    fn start(&mut self, ctx: &mut Ctx) -> Result<Applied, String> {
        let target = *ctx.rng.pick(TARGETS);
        let (nodes, who) = pick(ctx, target);
        let ms = ctx.rng.range(20, 300);
        let d = Duration::from_millis(ms);
        for &x in &nodes {
            for y in ctx.cluster.ids() {
                if x != y {
                    ctx.net.set_delay(x, y, d);
                    ctx.net.set_delay(y, x, d);
                }
            }
        }
        Ok(Applied {
            description: format!("{ms} ms delay on every link of {who}"),
            nodes,
        })
    }

    fn stop(&mut self, ctx: &mut Ctx) -> Result<(), String> {
        ctx.net.clear_delays();
        Ok(())
    }
}
