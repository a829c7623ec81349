//! Network partitions through the proxy: a clean majority/minority split, an isolated
//! shard leader, or a one-way cut (one node's messages to the others are lost while
//! it still hears them, or the reverse). Stop heals every link.

use super::{pick, Applied, Ctx, Fault, Target};

#[derive(Default)]
pub struct Partition;

/// Cuts every link between `a` and `b`, both ways.
fn split(ctx: &Ctx, a: &[u64], b: &[u64]) {
    for &x in a {
        for &y in b {
            ctx.net.block(x, y);
            ctx.net.block(y, x);
        }
    }
}

impl Fault for Partition {
    fn name(&self) -> &'static str {
        "partition"
    }

    fn start(&mut self, ctx: &mut Ctx) -> Result<Applied, String> {
        let all = ctx.cluster.ids();
        let others = |side: &[u64]| -> Vec<u64> {
            all.iter()
                .copied()
                .filter(|id| !side.contains(id))
                .collect()
        };
        Ok(match ctx.rng.below(4) {
            0 => {
                let (minority, _) = pick(ctx, Target::Minority);
                let majority = others(&minority);
                split(ctx, &minority, &majority);
                Applied {
                    description: format!("partition {minority:?} | {majority:?}"),
                    nodes: minority,
                }
            }
            1 => {
                let (leader, who) = pick(ctx, Target::Leader);
                split(ctx, &leader, &others(&leader));
                Applied {
                    description: format!("isolate {who}"),
                    nodes: leader,
                }
            }
            2 => {
                let (node, who) = pick(ctx, Target::Leader);
                for &x in &node {
                    for y in others(&node) {
                        ctx.net.block(x, y);
                    }
                }
                Applied {
                    description: format!("one-way: {who} cannot send to the others"),
                    nodes: node,
                }
            }
            _ => {
                let (node, who) = pick(ctx, Target::Leader);
                for &x in &node {
                    for y in others(&node) {
                        ctx.net.block(y, x);
                    }
                }
                Applied {
                    description: format!("one-way: {who} hears nobody"),
                    nodes: node,
                }
            }
        })
    }

    fn stop(&mut self, ctx: &mut Ctx) -> Result<(), String> {
        ctx.net.heal();
        Ok(())
    }
}
