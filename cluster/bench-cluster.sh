#!/usr/bin/env bash
# Durable throughput: a 3-node shardis cluster of SHARDS shards (default 3: one leader
# per node once balanced; appendfsync always: a write is acknowledged once it is
# fsynced on a majority of its shard) next to a real redis-server with appendonly yes,
# appendfsync always, in one run on free loopback ports. redis-benchmark SET and GET
# with random keys (-r), at pipeline depth 1 and 16, 50 clients: against redis, against
# the cluster with `redis-benchmark --cluster` (clients go to each slot's leader), and
# plain against one node (forward mode: writes for shards it does not lead are
# forwarded). Prints rps, ratios to redis and p99 per side; it never fails on a number.
#
#   cluster/bench-cluster.sh                  # -n 50000 at -P 1, 200000 at -P 16
#   N1=50000 N16=300000 cluster/bench-cluster.sh
#   KEEP=1 cluster/bench-cluster.sh           # keep the temp dir (node logs) afterwards
#   PIN=no cluster/bench-cluster.sh           # no taskset (by default servers share core 1)
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=cluster/lib.sh
. cluster/lib.sh

N1=${N1:-50000}
N16=${N16:-200000}
NWARM=${NWARM:-20000}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
SHARDS=${SHARDS:-3}

need_tools cargo redis-server redis-benchmark redis-cli python3 setsid
build_release

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-cluster.XXXXXX")
NODE_ROOT=$TMP/cluster
mkdir -p "$TMP/redis" "$NODE_ROOT"
read -r REDIS_PORT p1 p2 p3 q1 q2 q3 <<<"$(free_ports 7)"
NODE_PORTS=([1]=$p1 [2]=$p2 [3]=$p3)
NODE_PEER_PORTS=([1]=$q1 [2]=$q2 [3]=$q3)
NODE_SETTINGS=(--appendfsync always --loglevel warning)

redis_pid=
cleanup() {
    cluster_stop
    if [ -n "$redis_pid" ]; then
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
    if [ -n "${KEEP:-}" ]; then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"${pin_server[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP/redis" \
    --appendonly yes --appendfsync always --save '' --loglevel warning \
    </dev/null >"$TMP/redis.log" 2>&1 &
redis_pid=$!
wait_ping "$REDIS_PORT" redis-server "$redis_pid" "$TMP/redis.log"
cluster_start
cluster_wait_ready 30 >/dev/null
# Leaderships move to their balanced places within seconds of startup.
leaders_now() {
    local id s out=
    for s in $(seq 1 "$SHARDS"); do
        for id in $(node_ids); do
            [ "$(raft_field "${NODE_PORTS[$id]}" role "$s")" = leader ] && out+="$s:$id "
        done
    done
    echo "$out"
}
balanced() {
    local id n want=$(((SHARDS + 2) / 3))
    for id in $(node_ids); do
        n=$(redis-cli -p "${NODE_PORTS[$id]}" info raft | tr -d '\r' | awk -F: '$1 == "raft_leaderships" { print $2 }')
        [ "${n:-0}" -le "$want" ] || return 1
    done
}
end=$((SECONDS + 30))
until balanced || [ "$SECONDS" -ge "$end" ]; do sleep 0.2; done
LEADERS=$(leaders_now)
PORT1=${NODE_PORTS[1]}

echo "redis-server $(redis-server --version | awk '{ sub(/^v=/, "", $3); print $3 }') (appendonly yes, appendfsync always) on port $REDIS_PORT"
echo "shardis: 3 nodes, $SHARDS shards (shard:leader $LEADERS), appendfsync always"
echo "$PINNING; redis-benchmark -c $CLIENTS -r $KEYSPACE, -n $N1 at -P 1, -n $N16 at -P 16"
echo

# "name rps p99_ms" per test from redis-benchmark's CSV (7.x: test, rps, avg, min, p50,
# p95, p99, max); server errors go to $TMP/bench.err and are counted afterwards.
run() { # port n pipeline tests [--cluster]
    "${pin_client[@]}" redis-benchmark -h 127.0.0.1 -p "$1" -q -n "$2" -c "$CLIENTS" -P "$3" \
        -r "$KEYSPACE" -t "$4" ${5:+"$5"} --csv 2>>"$TMP/bench.err" |
        awk -F, 'NR > 1 { gsub(/"/, ""); print $1, $2, $7 }'
}

# Leaderships must not move during a run.
check_leaders() {
    local now
    now=$(leaders_now)
    if [ "$now" != "$LEADERS" ]; then
        echo "$PROG: WARNING: leaderships moved during the run: $LEADERS -> $now" >&2
        LEADERS=$now
    fi
}

# Warm both up (allocator arenas, page faults, connections between the nodes).
run "$REDIS_PORT" "$NWARM" 16 set,get >/dev/null
run "$PORT1" "$NWARM" 16 set,get --cluster >/dev/null
check_leaders

declare -A RPS=() P99=()
measure() { # side port n pipeline tests [--cluster]
    local name rps p99
    while read -r name rps p99; do
        RPS[$1:$name:$4]=$rps
        P99[$1:$name:$4]=$p99
    done < <(run "$2" "$3" "$4" "$5" "${6:-}")
    check_leaders
}

for P in 1 16; do
    n=$N1
    [ "$P" = 16 ] && n=$N16
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    redis-cli -p "$PORT1" flushall >/dev/null
    measure redis "$REDIS_PORT" "$n" "$P" set,get
    measure cluster "$PORT1" "$n" "$P" set,get --cluster
    measure node "$PORT1" "$n" "$P" set,get
done

printf '%-5s %-3s %10s %12s %6s %12s %6s %9s %11s %11s\n' \
    test P "redis rps" "--cluster" ratio "one node" ratio "redis p99" "cluster p99" "node p99"
row() { # test pipeline
    local r=${RPS[redis:$1:$2]:-0} c=${RPS[cluster:$1:$2]:-0} n=${RPS[node:$1:$2]:-0}
    local ratio
    ratio() { awk -v s="$1" -v r="$2" 'BEGIN { if (r > 0) printf "%.2f", s / r; else print "-" }'; }
    printf '%-5s %-3s %10s %12s %6s %12s %6s %9s %11s %11s\n' "$1" "$2" "$r" \
        "$c" "$(ratio "$c" "$r")" "$n" "$(ratio "$n" "$r")" \
        "${P99[redis:$1:$2]:--}" "${P99[cluster:$1:$2]:--}" "${P99[node:$1:$2]:--}"
}
for P in 1 16; do
    row SET "$P"
    row GET "$P"
done
echo "(p99 in ms; --cluster: redis-benchmark --cluster, each slot's leader; one node: plain against node 1, forwarding)"
# The Raft log is one per node (all its shards), so its fsync figures are per node.
for id in $(node_ids); do
    p=${NODE_PORTS[$id]}
    printf 'node %s log fsyncs: %s, p50 %s us, p99 %s us\n' "$id" "$(raft_field "$p" fsync_count 1)" \
        "$(raft_field "$p" fsync_p50_us 1)" "$(raft_field "$p" fsync_p99_us 1)"
done

if [ -s "$TMP/bench.err" ]; then
    echo
    echo "redis-benchmark reported $(wc -l <"$TMP/bench.err") error lines, first ones:"
    head -n 5 "$TMP/bench.err"
fi
