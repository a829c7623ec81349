#!/usr/bin/env bash
# Durable throughput: a 3-node shardis cluster (appendfsync always: a write is
# acknowledged once it is fsynced on a majority) next to a real redis-server with
# appendonly yes, appendfsync always, in one run on free loopback ports. redis-benchmark
# SET and GET at pipeline depth 1 and 16, 50 clients, against redis and against the
# shardis leader, plus SET at -P 16 through a follower (the cost of forwarding).
# Prints test, pipeline, rps on each side, ratio, p99 on each side, and for SET whether
# the issue's target (>= 0.7x Redis-always) is met; it never fails on a number.
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
TARGET=${TARGET:-0.7}

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
leader=$(cluster_wait_ready 30)
follower=$((leader % 3 + 1))
LEADER_PORT=${NODE_PORTS[$leader]}
FOLLOWER_PORT=${NODE_PORTS[$follower]}

echo "redis-server $(redis-server --version | awk '{ sub(/^v=/, "", $3); print $3 }') (appendonly yes, appendfsync always) on port $REDIS_PORT"
echo "shardis: 3 nodes, appendfsync always, leader node $leader (port $LEADER_PORT), follower node $follower (port $FOLLOWER_PORT)"
echo "$PINNING; redis-benchmark -c $CLIENTS, -n $N1 at -P 1, -n $N16 at -P 16"
echo

# "name rps p99_ms" per test from redis-benchmark's CSV (7.x: test, rps, avg, min, p50,
# p95, p99, max); server errors go to $TMP/bench.err and are counted afterwards.
run() { # port n pipeline tests
    "${pin_client[@]}" redis-benchmark -h 127.0.0.1 -p "$1" -q -n "$2" -c "$CLIENTS" -P "$3" \
        -t "$4" --csv 2>>"$TMP/bench.err" |
        awk -F, 'NR > 1 { gsub(/"/, ""); print $1, $2, $7 }'
}

# Leadership must not move during a run, or "leader" numbers would be a follower's.
check_leader() {
    local now
    now=$(raft_field "$LEADER_PORT" raft_role)
    if [ "$now" != leader ]; then
        echo "$PROG: WARNING: node $leader is no longer the leader (role: ${now:-no answer})" >&2
        cluster_status >&2
    fi
}

# Warm both up (allocator arenas, page faults, connections between the nodes).
run "$REDIS_PORT" "$NWARM" 16 set,get >/dev/null
run "$LEADER_PORT" "$NWARM" 16 set,get >/dev/null
check_leader

declare -A RPS=() P99=()
measure() { # side port n pipeline tests [label]
    local name rps p99
    while read -r name rps p99; do
        RPS[$1:${6:-$name}:$4]=$rps
        P99[$1:${6:-$name}:$4]=$p99
    done < <(run "$2" "$3" "$4" "$5")
    check_leader
}

for P in 1 16; do
    n=$N1
    [ "$P" = 16 ] && n=$N16
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    redis-cli -p "$LEADER_PORT" flushall >/dev/null
    measure redis "$REDIS_PORT" "$n" "$P" set,get
    measure shardis "$LEADER_PORT" "$n" "$P" set,get
done
measure shardis "$FOLLOWER_PORT" "$N16" 16 set "SET(follower)"

printf '%-14s %-8s %11s %12s %6s %9s %11s  %s\n' \
    test pipeline "redis rps" "shardis rps" ratio "redis p99" "shardis p99" "target"
row() { # test pipeline
    local r=${RPS[redis:$1:$2]:-0} s=${RPS[shardis:$1:$2]:-0} ratio verdict=
    local rp=${P99[redis:$1:$2]:--} sp=${P99[shardis:$1:$2]:--}
    ratio=$(awk -v s="$s" -v r="$r" 'BEGIN { if (r > 0) printf "%.2f", s / r; else print "-" }')
    if [ "$1" = SET ] && [ "$ratio" != - ]; then
        verdict=$(awk -v x="$ratio" -v t="$TARGET" 'BEGIN { print (x >= t) ? "PASS" : "BELOW" }')
        verdict="$verdict (>= ${TARGET}x)"
    fi
    printf '%-14s %-8s %11s %12s %6s %9s %11s  %s\n' "$1" "$2" "$r" "$s" "$ratio" "$rp" "$sp" "$verdict"
}
for P in 1 16; do
    row SET "$P"
    row GET "$P"
done
# The follower line compares with redis SET at -P 16, as the leader's line does.
RPS[redis:SET(follower):16]=${RPS[redis:SET:16]:-0}
P99[redis:SET(follower):16]=${P99[redis:SET:16]:--}
row "SET(follower)" 16
echo "(p99 in ms; shardis: the leader node $leader, SET(follower): node $follower forwarding to it)"
printf 'shardis leader fsyncs: %s, p50 %s us, p99 %s us\n' "$(raft_field "$LEADER_PORT" raft_fsync_count)" \
    "$(raft_field "$LEADER_PORT" raft_fsync_p50_us)" "$(raft_field "$LEADER_PORT" raft_fsync_p99_us)"

if [ -s "$TMP/bench.err" ]; then
    echo
    echo "redis-benchmark reported $(wc -l <"$TMP/bench.err") error lines, first ones:"
    head -n 5 "$TMP/bench.err"
fi
