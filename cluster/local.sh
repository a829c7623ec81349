#!/usr/bin/env bash
# A local shardis cluster on loopback, in the background.
#
#   cluster/local.sh up       # build (release), start 3 nodes on client ports 7001-7003
#                             # (peer ports +10000), wait for cluster_state:ok, say how
#                             # to connect
#   cluster/local.sh status   # per node: cluster state, shard replicas, leaderships, keys
#   cluster/local.sh down     # SIGTERM every node (each hands its leaderships over first)
#
# Options (for `up`; `down` and `status` read what `up` saved in the directory):
#   --nodes N        nodes (default 3)
#   --shards S       shards of a new cluster (default 2 x nodes)
#   --port P         first client port (default 7001); node i gets P+i-1, peer port +10000
#   --dir D          data and logs (default ./cluster-data): node i in D/nodei, D/nodei.log
#   --fresh          wipe D first: a new, empty cluster
#   -- FLAGS...      extra flags for every node, e.g. -- --appendfsync everysec
# A second `up` on the same directory restarts the same cluster with its data.
set -euo pipefail

cd "$(dirname "$0")/.."
PIN=no # a development cluster: the nodes use every core
# shellcheck source=cluster/lib.sh
. cluster/lib.sh

usage() {
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
}

cmd=${1:-}
[ -n "$cmd" ] || {
    usage
    exit 2
}
shift
nodes=3 shards= port=7001 dir=./cluster-data fresh= extra=()
while [ $# -gt 0 ]; do
    case "$1" in
    --nodes) nodes=${2:?--nodes takes a number} && shift ;;
    --shards) shards=${2:?--shards takes a number} && shift ;;
    --port) port=${2:?--port takes a port} && shift ;;
    --dir) dir=${2:?--dir takes a directory} && shift ;;
    --fresh) fresh=yes ;;
    --)
        shift
        extra=("$@")
        break
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
case "$nodes" in '' | *[!0-9]* | 0) die "--nodes takes a positive number" ;; esac

mkdir -p "$dir"
NODE_ROOT=$(cd "$dir" && pwd)
STATE=$NODE_ROOT/cluster.env

# What `up` chose, so that `down`, `status` and a later `up` use the same layout.
load_state() {
    [ -f "$STATE" ] || return 1
    # shellcheck disable=SC1090
    . "$STATE"
}

layout() {
    local i
    NODE_PORTS=() NODE_PEER_PORTS=()
    for i in $(seq 1 "$nodes"); do
        NODE_PORTS[$i]=$((port + i - 1))
        NODE_PEER_PORTS[$i]=$((port + i - 1 + 10000))
    done
}

read_pids() {
    local id
    for id in $(node_ids); do
        NODE_PIDS[$id]=$(cat "$NODE_ROOT/node$id.pid" 2>/dev/null || true)
    done
}

case "$cmd" in
up)
    if [ -n "$fresh" ]; then
        asked=("$nodes" "$shards" "$port")
        if load_state; then
            layout
            read_pids
            cluster_stop
        fi
        # A fresh cluster takes the options given now, not the saved ones.
        nodes=${asked[0]} shards=${asked[1]} port=${asked[2]}
        echo "wiping $NODE_ROOT" >&2
        rm -rf "$NODE_ROOT"
        mkdir -p "$NODE_ROOT"
    elif load_state; then
        echo "restarting the cluster in $NODE_ROOT ($nodes nodes from port $port; --fresh for a new one)" >&2
    fi
    shards=${shards:-$((2 * nodes))}
    printf 'nodes=%s\nshards=%s\nport=%s\n' "$nodes" "$shards" "$port" >"$STATE"
    layout
    SHARDS=$shards
    NODE_SETTINGS=(${extra[@]+"${extra[@]}"})
    read_pids
    for id in $(node_ids); do
        if node_alive "$id"; then
            die "node $id is already running (pid ${NODE_PIDS[$id]}); cluster/local.sh down first"
        fi
    done
    need_tools cargo redis-cli python3 setsid
    build_release
    cluster_start
    for id in $(node_ids); do echo "${NODE_PIDS[$id]}" >"$NODE_ROOT/node$id.pid"; done
    cluster_wait_ready "${READY_TIMEOUT:-60}" >/dev/null
    cluster_wait_balanced 15
    echo
    cluster_status
    echo
    echo "cluster up: $nodes nodes, $shards shards, all 16384 slots served (cluster_state:ok)"
    echo "plain client, any node:     redis-cli -p ${NODE_PORTS[1]}"
    echo "cluster-aware client:       redis-cli -c -p ${NODE_PORTS[1]}   (CLUSTER SLOTS names the shard leaders)"
    echo "state:                      redis-cli -p ${NODE_PORTS[1]} cluster info   |  cluster/local.sh status"
    echo "data and logs:              $NODE_ROOT/node*/, $NODE_ROOT/node*.log"
    echo "stop:                       cluster/local.sh down${dir:+ --dir $dir}"
    ;;
down)
    load_state || die "no cluster in $NODE_ROOT (nothing was started there with up)"
    layout
    read_pids
    cluster_stop
    rm -f "$NODE_ROOT"/node*.pid
    echo "stopped; data kept in $NODE_ROOT (cluster/local.sh up restarts it)"
    ;;
status)
    load_state || die "no cluster in $NODE_ROOT (nothing was started there with up)"
    layout
    read_pids
    cluster_status
    ;;
*) die "unknown command '$cmd': up, down or status" ;;
esac
