#!/usr/bin/env bash
# Idle cost of shard replicas: starts a cluster (default 3 nodes x 16 shards, so every
# node hosts 16 shard replicas plus the meta group), waits for cluster_state:ok and a
# settling period, then samples each node's CPU time (utime + stime from /proc) over a
# window with no client traffic and prints the % of one core per node.
#
#   cluster/idle-cpu.sh                     # NODES=3 SHARDS=16 WINDOW=10
#   NODES=5 SHARDS=32 cluster/idle-cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PIN=no
# shellcheck source=cluster/lib.sh
. cluster/lib.sh

NODES=${NODES:-3}
SHARDS=${SHARDS:-16}
WINDOW=${WINDOW:-10}
SETTLE=${SETTLE:-5}
need_tools cargo redis-cli python3 setsid
build_release
NODE_ROOT=$(mktemp -d /tmp/shardis-idle.XXXXXX)
read -r -a ports <<<"$(free_ports $((2 * NODES)))"
NODE_PORTS=() NODE_PEER_PORTS=()
for i in $(seq 1 "$NODES"); do
    NODE_PORTS[$i]=${ports[$((2 * i - 2))]}
    NODE_PEER_PORTS[$i]=${ports[$((2 * i - 1))]}
done
trap 'cluster_stop; rm -rf "$NODE_ROOT"' EXIT
cluster_start
cluster_wait_ready 60 >/dev/null
sleep "$SETTLE"
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
declare -A before
for id in $(node_ids); do before[$id]=$(ticks "${NODE_PIDS[$id]}"); done
sleep "$WINDOW"
hz=$(getconf CLK_TCK)
for id in $(node_ids); do
    after=$(ticks "${NODE_PIDS[$id]}")
    replicas=$(redis-cli -p "${NODE_PORTS[$id]}" info raft | tr -d '\r' | awk -F: '$1 == "raft_shards" { print $2 }')
    awk -v a="$after" -v b="${before[$id]}" -v hz="$hz" -v w="$WINDOW" -v id="$id" -v r="$replicas" \
        'BEGIN { printf "node %s: %s shard replicas + meta, idle CPU %.2f%% of one core\n", id, r, (a - b) / hz / w * 100 }'
done
