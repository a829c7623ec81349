#!/usr/bin/env bash
# Builds shardis (release) and runs a 3-node cluster on loopback in the foreground:
# waits until the three agree on a leader with voters 1,2,3, says how to connect, and on
# Ctrl-C or SIGTERM stops the nodes with SIGTERM (leader first, so leadership is handed
# over) and waits for them. Data stays in $DIR, so a restart keeps the data.
#
#   cluster/start-cluster.sh            # client ports 7001-7003, peer ports 17001-17003
#   cluster/start-cluster.sh --fresh    # wipe $DIR first: a new, empty cluster
#   PORTS=8001,8002,8003 PEER_PORTS=18001,18002,18003 DIR=/tmp/c cluster/start-cluster.sh
#   SETTINGS="--appendfsync everysec --election-timeout 500" cluster/start-cluster.sh
set -euo pipefail

cd "$(dirname "$0")/.."
PIN=${PIN:-no} # a development cluster: the nodes use every core unless PIN=yes
# shellcheck source=cluster/lib.sh
. cluster/lib.sh

fresh=
for arg in "$@"; do
    case "$arg" in
    --fresh) fresh=yes ;;
    -h | --help)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument '$arg' (only --fresh)" ;;
    esac
done

DIR=${DIR:-./cluster-data}
READY_TIMEOUT=${READY_TIMEOUT:-30}
IFS=, read -r -a ports <<<"${PORTS:-7001,7002,7003}"
IFS=, read -r -a peer_ports <<<"${PEER_PORTS:-17001,17002,17003}"
[ "${#ports[@]}" = 3 ] && [ "${#peer_ports[@]}" = 3 ] ||
    die "PORTS and PEER_PORTS take three comma-separated ports each"
NODE_PORTS=([1]="${ports[0]}" [2]="${ports[1]}" [3]="${ports[2]}")
NODE_PEER_PORTS=([1]="${peer_ports[0]}" [2]="${peer_ports[1]}" [3]="${peer_ports[2]}")
read -r -a NODE_SETTINGS <<<"${SETTINGS:-}"

need_tools cargo redis-cli python3 setsid
build_release

if [ -n "$fresh" ] && [ -d "$DIR" ]; then
    echo "wiping $DIR" >&2
    rm -rf "$DIR"
fi
mkdir -p "$DIR"
NODE_ROOT=$(cd "$DIR" && pwd)

stopping=
cleanup() {
    [ -n "$stopping" ] && return
    stopping=yes
    echo "stopping the nodes (SIGTERM, leader first)..." >&2
    cluster_stop
    echo "stopped; data kept in $NODE_ROOT" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -d "$NODE_ROOT/node1/shard-0" ]; then
    echo "restarting the cluster from $NODE_ROOT (use --fresh for an empty one)" >&2
else
    echo "starting a new cluster in $NODE_ROOT" >&2
fi
cluster_start
leader=$(cluster_wait_ready "$READY_TIMEOUT")

echo
cluster_status
echo
echo "cluster up: node $leader leads, voters 1,2,3; data in $NODE_ROOT, logs in $NODE_ROOT/node*.log"
echo "connect to any node:  redis-cli -p ${NODE_PORTS[1]}   (or -p ${NODE_PORTS[2]}, -p ${NODE_PORTS[3]})"
echo "leader:               redis-cli -p ${NODE_PORTS[$leader]}"
echo "raft state:           redis-cli -p ${NODE_PORTS[1]} info raft"
echo "Ctrl-C stops the cluster."

# In the foreground until a signal, or until a node exits on its own.
set +e
wait -n "${NODE_PIDS[1]}" "${NODE_PIDS[2]}" "${NODE_PIDS[3]}"
status=$?
set -e
for id in "${NODE_IDS[@]}"; do
    if ! node_alive "$id"; then
        echo "$PROG: node $id exited on its own (status $status); last lines of its log:" >&2
        tail -n 20 "$(node_log "$id")" >&2
        NODE_PIDS[$id]=
    fi
done
exit 1
