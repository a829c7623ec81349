//! Membership (DESIGN.md): nodes join and leave while the cluster serves.
//!
//! - A node joins by being added to the map's `nodes` (`SHARDIS JOIN`, sent by a node
//!   started with `--join`, or by `shardis admin add-node`). The meta group's leader
//!   adds every map node its group lacks as a learner, so the new node receives the
//!   map, and keeps the meta voters at the placement of up to five active nodes.
//! - Placement: each shard's replicas belong on `router::place(shard, active nodes,
//!   R)`. The meta leader writes a shard's `targets` entry when its replicas differ
//!   (after a join or leave with auto-rebalance on, or on `SHARDIS REBALANCE`; always
//!   for a node that is leaving). The shard's leader then moves one replica at a time:
//!   the new node goes into the map's replica list (so it starts the group), is added
//!   as a learner and caught up (snapshot), then the voters change in one joint-
//!   consensus step (new in, old out), and the map's replica list follows.
//! - A node leaving (`SHARDIS REMOVENODE`) is drained that way; once it hosts no
//!   replica and is no meta voter, the meta leader takes it out of the map and the
//!   meta group, and the node exits.

use super::Node;
use crate::meta::MAX_VOTERS;
use crate::router;
use openraft::async_runtime::WatchReceiver;
use openraft::ChangeMembers;
use proto::map::ClusterMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often the meta leader and the shard leaders look at membership.
const INTERVAL: Duration = Duration::from_millis(500);
/// How long a new replica may go without catching up any entry before the move is
/// retried (a big shard takes long at `rebalance-rate`, but never stalls this long).
const CATCH_UP_STALL: Duration = Duration::from_secs(60);

/// The nodes that take replicas: in the map and not leaving.
pub fn active(map: &ClusterMap) -> Vec<u64> {
    map.nodes
        .keys()
        .copied()
        .filter(|n| !map.leaving.contains(n))
        .collect()
}

/// Where each shard's replicas belong now, for the shards whose replica set differs:
/// `r` replicas each (fewer with fewer active nodes), on the rendezvous placement,
/// keeping the current replicas' order (new ones go last: the first replica of a
/// shard is never a node that joined it later).
pub fn plan_targets(map: &ClusterMap, r: usize) -> BTreeMap<u64, Vec<u64>> {
    let nodes = active(map);
    let mut out = BTreeMap::new();
    for (shard, current) in &map.shards {
        let want = router::place(*shard, nodes.iter().copied(), r.min(nodes.len()).max(1));
        let want_set: BTreeSet<u64> = want.iter().copied().collect();
        let have: BTreeSet<u64> = current.iter().copied().collect();
        if want_set == have || want.is_empty() {
            continue;
        }
        let mut target: Vec<u64> = current
            .iter()
            .copied()
            .filter(|n| want_set.contains(n))
            .collect();
        target.extend(want.iter().filter(|n| !have.contains(n)));
        out.insert(*shard, target);
    }
    out
}

/// The meta group's voters: up to five active nodes, by placement.
pub fn meta_voters(map: &ClusterMap) -> BTreeSet<u64> {
    let nodes = active(map);
    router::place(0, nodes.iter().copied(), nodes.len().min(MAX_VOTERS))
        .into_iter()
        .collect()
}

impl Node {
    /// Runs forever: the meta leader's part (learners, voters, targets, removals) and
    /// every shard leader's part (replica moves).
    pub(super) async fn membership(self: Arc<Self>) {
        loop {
            tokio::time::sleep(INTERVAL).await;
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            {
                let config = self.server.config();
                self.pace
                    .rate
                    .store(config.rebalance_rate, Ordering::Relaxed);
                if let Some(r) = self.resharder.get() {
                    r.rate.store(config.migration_rate, Ordering::Relaxed);
                }
            }
            if let Err(e) = self.meta_duties().await {
                tracing::debug!(error = %e, "membership (meta)");
            }
            let map = self.meta.current();
            for shard in map.targets.keys().copied().collect::<Vec<_>>() {
                let Some(r) = self.groups.lock().unwrap().get(&shard).cloned() else {
                    continue;
                };
                if !r.is_leader() {
                    continue;
                }
                if let Err(e) = self.move_one_replica(shard).await {
                    tracing::warn!(shard, error = %e, "moving a replica; will retry");
                }
            }
        }
    }

    async fn meta_duties(self: &Arc<Self>) -> Result<(), String> {
        let Some(meta) = self.meta.replica().cloned() else {
            return Ok(());
        };
        if !meta.is_leader() {
            return Ok(());
        }
        let map = self.meta.current();
        if map.epoch == 0 {
            return Ok(());
        }
        let m = meta.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let known: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
        // Every map node follows the meta group.
        for (id, addr) in &map.nodes {
            if !known.contains(id) {
                tracing::info!(node = id, "adding a meta learner");
                meta.raft
                    .add_learner(*id, addr.clone(), false)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        // Voters: the placement of up to five active nodes, once the new ones caught up.
        let want = meta_voters(&map);
        if !want.is_empty() && want != voters {
            let last = m.last_log_index.unwrap_or(0);
            let ready = want.iter().all(|n| {
                voters.contains(n)
                    || m.replication
                        .as_ref()
                        .and_then(|r| r.get(n).cloned().flatten())
                        .is_some_and(|l| l.index + 100 >= last)
            });
            if ready && known.is_superset(&want) {
                tracing::info!(?voters, ?want, "changing the meta voters");
                meta.raft
                    .change_membership(ChangeMembers::ReplaceAllVoters(want.clone()), true)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        // Placement targets: for leaving nodes always, otherwise with auto-rebalance.
        let auto = self.server.config().auto_rebalance;
        let r = self.config.replicas.max(1) as usize;
        let plan = plan_targets(&map, r);
        let wanted: BTreeMap<u64, Vec<u64>> = plan
            .into_iter()
            .filter(|(shard, _)| {
                !map.targets.contains_key(shard)
                    && (auto || map.shards[shard].iter().any(|n| map.leaving.contains(n)))
            })
            .collect();
        if !wanted.is_empty() {
            self.meta
                .update(|m| {
                    let mut next = m.clone();
                    let mut changed = false;
                    for (s, t) in &wanted {
                        if m.shards.contains_key(s) && !m.targets.contains_key(s) {
                            next.targets.insert(*s, t.clone());
                            changed = true;
                        }
                    }
                    Ok(changed.then_some(next))
                })
                .await?;
        }
        // Drained nodes leave the map, then the meta group.
        for n in map.leaving.iter() {
            let hosts = map.shards.values().any(|r| r.contains(n))
                || map.targets.values().any(|r| r.contains(n));
            if hosts || voters.contains(n) {
                continue;
            }
            let id = *n;
            tracing::info!(node = id, "drained: removing from the cluster");
            self.meta
                .update(|m| {
                    if !m.nodes.contains_key(&id) {
                        return Ok(None);
                    }
                    let mut next = m.clone();
                    next.nodes.remove(&id);
                    next.leaving.remove(&id);
                    Ok(Some(next))
                })
                .await?;
        }
        // Learners of nodes no longer in the map go.
        let gone: BTreeSet<u64> = known
            .iter()
            .copied()
            .filter(|n| !map.nodes.contains_key(n) && !voters.contains(n))
            .collect();
        if !gone.is_empty() {
            meta.raft
                .change_membership(ChangeMembers::RemoveNodes(gone), false)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// One replica move toward the shard's target (run by the shard's leader).
    async fn move_one_replica(self: &Arc<Self>, shard: u64) -> Result<(), String> {
        let map = self.meta.current();
        let (true, Some(target)) = (map.shards.contains_key(&shard), map.targets.get(&shard))
        else {
            return Ok(());
        };
        let replica = self
            .groups
            .lock()
            .unwrap()
            .get(&shard)
            .cloned()
            .ok_or("no local replica")?;
        let want: BTreeSet<u64> = target.iter().copied().collect();
        // What to change is judged by the group's voters, not by the map's list: an
        // interrupted move leaves the list naming a node that is no voter yet (step 1),
        // and a move judged by the list would take a voter out with none in (found by
        // the chaos suite: a shard went down to one voter).
        let voters = voters_of(&replica);
        if voters == want {
            // Done, or step 4 was interrupted: the map's list takes the target (in its
            // order) and the target goes.
            return self
                .meta
                .update(|m| {
                    if m.targets
                        .get(&shard)
                        .map(|t| t.iter().copied().collect::<BTreeSet<_>>())
                        != Some(want.clone())
                    {
                        return Ok(None);
                    }
                    let mut next = m.clone();
                    next.targets.remove(&shard);
                    next.shards.insert(shard, target.clone());
                    Ok(Some(next))
                })
                .await
                .map(|_| ());
        }
        let Some((add, remove)) = next_step(&voters, target) else {
            return Ok(());
        };
        // A leader does not remove itself: it hands leadership to a replica that stays.
        if remove == Some(self.id) {
            if let Some(to) = voters
                .iter()
                .copied()
                .find(|n| want.contains(n) && *n != self.id)
            {
                replica.transfer_to(to, Duration::from_secs(2)).await;
            }
            return Ok(());
        }
        if let Some(add) = add {
            let addr = map
                .nodes
                .get(&add)
                .cloned()
                .ok_or("target node not in the map")?;
            // 1. The new node hosts the group (it starts it when it sees the map).
            self.meta
                .update(|m| {
                    let Some(r) = m.shards.get(&shard) else {
                        return Err(format!("shard {shard} left the map"));
                    };
                    if r.contains(&add) {
                        return Ok(None);
                    }
                    let mut next = m.clone();
                    next.shards.get_mut(&shard).unwrap().push(add);
                    Ok(Some(next))
                })
                .await?;
            // 2. Learner, caught up by snapshot and log, paced at `rebalance-rate`.
            tracing::info!(shard, node = add, "adding a replica (learner, catching up)");
            let _paced = Paced::start(&self.pace, shard, add);
            replica
                .raft
                .add_learner(add, addr, false)
                .await
                .map_err(|e| e.to_string())?;
            // openraft's own "up to date" allows thousands of entries of lag: wait
            // until the learner is within a few entries of the log's end.
            let mut progress: (Option<u64>, std::time::Instant) = (None, std::time::Instant::now());
            loop {
                let m = replica.raft.metrics().borrow_watched().clone();
                if m.replication.is_none() {
                    return Err("lost the shard's leadership while a replica caught up".into());
                }
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&add).cloned().flatten())
                    .map(|l| l.index);
                let last = m.last_log_index.unwrap_or(0);
                if matched.is_some_and(|i| i + 16 >= last) {
                    break;
                }
                if matched > progress.0 {
                    progress = (matched, std::time::Instant::now());
                } else if progress.1.elapsed() > CATCH_UP_STALL {
                    return Err(format!("node {add} caught up nothing for {CATCH_UP_STALL:?} (at {matched:?} of {last})"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // 3. One membership change (joint consensus): the new voter in, the old out.
        let mut voters = voters_of(&replica);
        if let Some(a) = add {
            voters.insert(a);
        }
        if let Some(r) = remove {
            voters.remove(&r);
        }
        tracing::info!(shard, ?add, ?remove, ?voters, "changing a shard's voters");
        replica
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
            .await
            .map_err(|e| e.to_string())?;
        // 4. The map follows: the old replica's node stops its group.
        self.meta
            .update(|m| {
                let Some(r) = m.shards.get(&shard) else {
                    return Ok(None);
                };
                let mut list = r.clone();
                if let Some(a) = add {
                    if !list.contains(&a) {
                        list.push(a);
                    }
                }
                if let Some(x) = remove {
                    list.retain(|n| *n != x);
                }
                if &list == r {
                    return Ok(None);
                }
                let mut next = m.clone();
                next.shards.insert(shard, list);
                Ok(Some(next))
            })
            .await?;
        Ok(())
    }
}

/// The group's voters as this replica (its leader) sees them.
fn voters_of(replica: &crate::shard::replica::Replica) -> BTreeSet<u64> {
    let m = replica.raft.metrics().borrow_watched().clone();
    m.membership_config.membership().voter_ids().collect()
}

/// The next replica move toward `target` from the group's `voters`: the node to add
/// (first wanted node that is no voter) and the voter to remove (first unwanted one).
/// A voter only goes with a new one coming in, unless there are more voters than
/// wanted, so a move never shrinks the group below its target. `None`: nothing to do.
pub fn next_step(voters: &BTreeSet<u64>, target: &[u64]) -> Option<(Option<u64>, Option<u64>)> {
    let add = target.iter().copied().find(|n| !voters.contains(n));
    let remove = voters
        .iter()
        .copied()
        .find(|n| !target.contains(n))
        .filter(|_| add.is_some() || voters.len() > target.len());
    (add.is_some() || remove.is_some()).then_some((add, remove))
}

/// Paces a shard's replication to a node while it lives (a replica catching up).
struct Paced<'a> {
    pace: &'a crate::shard::net::CatchUpPace,
    shard: u64,
    node: u64,
}

impl<'a> Paced<'a> {
    fn start(pace: &'a crate::shard::net::CatchUpPace, shard: u64, node: u64) -> Paced<'a> {
        pace.start(shard, node);
        Paced { pace, shard, node }
    }
}

impl Drop for Paced<'_> {
    fn drop(&mut self) {
        self.pace.stop(self.shard, self.node);
    }
}

/// What a node should do about a map without it (it was in earlier maps), given
/// the `(epoch, member ids)` the other nodes answered with: `Some(true)` stay (the
/// newest map at `epoch` or later has it again: the removal was history being
/// replayed), `Some(false)` leave, `None` no answer at `epoch` or later yet. The
/// newest answer decides, so one node still replaying old maps cannot outvote the
/// cluster's current map.
pub fn removal_verdict(me: u64, epoch: u64, answers: &[(u64, Vec<u64>)]) -> Option<bool> {
    let (e, members) = answers.iter().max_by_key(|(e, _)| *e)?;
    (*e >= epoch).then(|| members.contains(&me))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::NodeAddr;

    fn map(n: u64, shards: u64) -> ClusterMap {
        router::initial_map(
            (1..=n)
                .map(|i| {
                    (
                        i,
                        NodeAddr {
                            peer: format!("p{i}"),
                            client: format!("c{i}"),
                        },
                    )
                })
                .collect(),
            shards,
            3,
        )
    }

    #[test]
    fn the_newest_map_decides_a_removal() {
        // No answers, or only older maps: undecided.
        assert_eq!(removal_verdict(2, 10, &[]), None);
        assert_eq!(removal_verdict(2, 10, &[(9, vec![1, 3])]), None);
        // The removal is current: leave.
        assert_eq!(removal_verdict(2, 10, &[(10, vec![1, 3])]), Some(false));
        // Added again since (a replay of old history): stay, even when another
        // node still replaying answers with the old removal.
        assert_eq!(
            removal_verdict(2, 10, &[(10, vec![1, 3]), (14, vec![1, 2, 3])]),
            Some(true)
        );
        assert_eq!(
            removal_verdict(2, 10, &[(14, vec![1, 2, 3]), (10, vec![1, 3])]),
            Some(true)
        );
        // Removed again after that: leave.
        assert_eq!(
            removal_verdict(2, 10, &[(14, vec![1, 2, 3]), (17, vec![1, 3])]),
            Some(false)
        );
    }

    #[test]
    fn a_move_never_takes_a_voter_out_without_one_coming_in() {
        let set = |v: &[u64]| v.iter().copied().collect::<BTreeSet<u64>>();
        // The usual step: 4 in, 3 out.
        assert_eq!(
            next_step(&set(&[1, 2, 3]), &[1, 2, 4]),
            Some((Some(4), Some(3)))
        );
        // The map's list already names 4 (an interrupted step 1) but 4 is no voter:
        // still 4 in and 3 out, never 3 out alone.
        assert_eq!(
            next_step(&set(&[1, 2, 3]), &[1, 2, 4]),
            Some((Some(4), Some(3)))
        );
        // Fewer voters than wanted: only additions.
        assert_eq!(next_step(&set(&[1, 2]), &[1, 2, 4]), Some((Some(4), None)));
        // More voters than wanted (fewer nodes now): one goes.
        assert_eq!(next_step(&set(&[1, 2, 3]), &[1, 2]), Some((None, Some(3))));
        // Done.
        assert_eq!(next_step(&set(&[1, 2, 4]), &[1, 2, 4]), None);
    }

    #[test]
    fn a_fourth_node_takes_about_its_share_and_a_leaving_node_everything_moves() {
        let mut m = map(3, 6);
        assert!(
            plan_targets(&m, 3).is_empty(),
            "3 nodes, R=3: nothing to move"
        );
        m.nodes.insert(
            4,
            NodeAddr {
                peer: "p4".into(),
                client: "c4".into(),
            },
        );
        let plan = plan_targets(&m, 3);
        // About R/N of the replicas move: each moved shard swaps exactly one node.
        assert!(!plan.is_empty() && plan.len() <= 6);
        for (s, t) in &plan {
            assert_eq!(t.len(), 3);
            assert!(t.contains(&4), "shard {s}: the new node is the one added");
            assert_eq!(t.iter().filter(|n| !m.shards[s].contains(n)).count(), 1);
            assert_ne!(t[0], 4, "a joined node is never a shard's first replica");
        }
        let mut all = m.clone();
        for (s, t) in plan {
            all.shards.insert(s, t);
        }
        all.validate().unwrap();
        assert!(plan_targets(&all, 3).is_empty(), "stable once applied");
        // Node 2 leaves: every shard on it gets a target without it.
        all.leaving.insert(2);
        let plan = plan_targets(&all, 3);
        for (s, r) in &all.shards {
            assert_eq!(plan.contains_key(s), r.contains(&2), "shard {s}");
        }
        assert!(plan.values().all(|t| !t.contains(&2) && t.len() == 3));
        assert!(!meta_voters(&all).contains(&2));
        assert_eq!(meta_voters(&map(7, 1)).len(), MAX_VOTERS);
    }
}
