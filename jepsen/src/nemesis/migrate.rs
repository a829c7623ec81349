//! Slot migrations in flight: moves a random number of slots from one shard to
//! another (`SHARDIS MOVE`), or splits a shard (`SHARDIS SPLIT`, while there are
//! fewer than twice the initial shards). The migration runs on in the cluster while
//! the next faults hit it.

use super::{Applied, Ctx, Fault};
use crate::cluster::command;
use std::time::Duration;

#[derive(Default)]
pub struct Migrate;

impl Fault for Migrate {
    fn name(&self) -> &'static str {
        "migrate"
    }

    fn start(&mut self, ctx: &mut Ctx) -> Result<Applied, String> {
        let up: Vec<u64> = ctx
            .cluster
            .ids()
            .into_iter()
            .filter(|&n| ctx.cluster.is_running(n) && !ctx.cluster.is_paused(n))
            .collect();
        let via = *up.first().ok_or("no node is up")?;
        let addr = ctx.cluster.spec(via).client;
        let status = command(addr, &["SHARDIS", "STATUS"], Duration::from_secs(5))?;
        let s: serde_json::Value = serde_json::from_str(&status).map_err(|e| e.to_string())?;
        // Shards with slots, and each one's last range's size.
        let shards: Vec<(u64, u64)> = s["shards"]
            .as_array()
            .ok_or("no shards in the status")?
            .iter()
            .filter_map(|sh| {
                let last = sh["ranges"].as_array()?.last()?.as_str()?.to_string();
                let (a, b) = last.split_once('-')?;
                let size = b.parse::<u64>().ok()? - a.parse::<u64>().ok()? + 1;
                Some((sh["id"].as_u64()?, size))
            })
            .collect();
        let all: Vec<u64> = s["shards"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|sh| sh["id"].as_u64())
            .collect();
        let (from, size) = *ctx.rng.pick(&shards);
        let split =
            (all.len() as u64) < 2 * ctx.cluster.shards() && size > 1 && ctx.rng.chance(0.3);
        let (args, what) = if split {
            (
                vec!["SHARDIS".to_string(), "SPLIT".into(), from.to_string()],
                format!("split shard {from}"),
            )
        } else {
            let others: Vec<u64> = all.iter().copied().filter(|&x| x != from).collect();
            let to = *ctx.rng.pick(&others);
            let count = (1 + ctx.rng.below(size.min(400))).min(size);
            (
                vec![
                    "SHARDIS".to_string(),
                    "MOVE".into(),
                    count.to_string(),
                    from.to_string(),
                    to.to_string(),
                ],
                format!("move {count} slots from shard {from} to shard {to}"),
            )
        };
        let refs: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
        match command(addr, &refs, Duration::from_secs(20)) {
            Ok(id) => Ok(Applied {
                description: format!("{what} (migration {id})"),
                nodes: Vec::new(),
            }),
            // Another migration holds one of the shards: nothing started.
            Err(e) => Err(format!("{what}: {e}")),
        }
    }

    fn stop(&mut self, _ctx: &mut Ctx) -> Result<(), String> {
        Ok(())
    }
}
