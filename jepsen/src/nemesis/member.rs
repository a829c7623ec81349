//! Membership changes: a node joins (a spare, or a node removed earlier, its data
//! wiped, with `--join`) or a node is drained and removed (`SHARDIS REMOVENODE`;
//! half the time the leader of a random shard). The cluster moves replicas and
//! leaderships on its own; the fault only starts the change. Removals keep at least
//! three members.

use super::{pick, Applied, Ctx, Fault, Target};

#[derive(Default)]
pub struct Member;

impl Fault for Member {
    fn name(&self) -> &'static str {
        "member"
    }

    fn start(&mut self, ctx: &mut Ctx) -> Result<Applied, String> {
        let members = ctx.cluster.ids();
        let outsiders = ctx.cluster.outsiders();
        let add = match (outsiders.first(), members.len()) {
            (None, _) => false,
            (Some(_), n) if n <= 3 => true,
            _ => ctx.rng.chance(0.5),
        };
        if add {
            let id = outsiders[0];
            ctx.cluster.add(id)?;
            return Ok(Applied {
                description: format!("add node {id} (--join)"),
                nodes: vec![id],
            });
        }
        if members.len() <= 3 {
            return Err("no spare node to add and too few members to remove one".into());
        }
        let target = if ctx.rng.chance(0.5) {
            Target::Leader
        } else {
            Target::One
        };
        let (nodes, who) = pick(ctx, target);
        let id = *nodes.first().ok_or("no node is up")?;
        let via = ctx
            .cluster
            .ids()
            .into_iter()
            .find(|&n| n != id && ctx.cluster.is_running(n) && !ctx.cluster.is_paused(n))
            .ok_or("no other running member")?;
        ctx.cluster.remove(id, via)?;
        Ok(Applied {
            description: format!("remove {who}"),
            nodes: vec![id],
        })
    }

    fn stop(&mut self, _ctx: &mut Ctx) -> Result<(), String> {
        // The change goes on in the cluster; the next faults hit it in flight.
        Ok(())
    }
}
