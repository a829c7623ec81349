#!/usr/bin/env bash
# Throughput of shardis next to a real redis-server on the same machine, same run:
# redis-benchmark at pipeline depth 1 and 16, 50 clients, both servers without
# persistence on free loopback ports. Prints test, redis rps, shardis rps, ratio.
#
#   cluster/bench.sh                 # -n 200000 at -P 1, 1000000 at -P 16
#   N1=50000 N16=200000 cluster/bench.sh
#   TESTS=set,get cluster/bench.sh
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=cluster/lib.sh
. cluster/lib.sh

N1=${N1:-200000}
N16=${N16:-1000000}
CLIENTS=${CLIENTS:-50}
TESTS=${TESTS:-set,get,incr,lpush,rpop,sadd,hset,zadd}

need_tools cargo redis-server redis-benchmark redis-cli python3
build_release

REDIS_PORT=$(free_port)
SHARDIS_PORT=$(free_port)
while [ "$SHARDIS_PORT" = "$REDIS_PORT" ]; do SHARDIS_PORT=$(free_port); done
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"${pin_server[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --loglevel warning >/dev/null &
pids+=($!)
wait_ping "$REDIS_PORT" redis-server "${pids[-1]}"
"${pin_server[@]}" ./target/release/shardis server --port "$SHARDIS_PORT" --loglevel warning >/dev/null 2>&1 &
pids+=($!)
wait_ping "$SHARDIS_PORT" shardis "${pids[-1]}"

# rps per test name from redis-benchmark's CSV output
run() { # port n pipeline
    "${pin_client[@]}" redis-benchmark -h 127.0.0.1 -p "$1" -q -n "$2" -c "$CLIENTS" -P "$3" -t "$TESTS" --csv \
        | awk -F'","' 'NR>1 { gsub(/"/, "", $1); gsub(/"/, "", $2); print $1, $2 }'
}

# Warm both servers up (allocator arenas, page faults, CPU caches) before measuring.
run "$REDIS_PORT" 200000 16 >/dev/null
run "$SHARDIS_PORT" 200000 16 >/dev/null

printf '%-8s %-4s %14s %14s %8s\n' test P "redis rps" "shardis rps" ratio
for P in 1 16; do
    n=$N1
    [ "$P" = 16 ] && n=$N16
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    redis-cli -p "$SHARDIS_PORT" flushall >/dev/null
    declare -A R=()
    while read -r name rps; do R[$name]=$rps; done < <(run "$REDIS_PORT" "$n" "$P")
    while read -r name rps; do
        r=${R[$name]:-0}
        ratio=$(awk -v s="$rps" -v r="$r" 'BEGIN { if (r > 0) printf "%.2f", s / r; else print "-" }')
        printf '%-8s %-4s %14s %14s %8s\n' "$name" "$P" "$r" "$rps" "$ratio"
    done < <(run "$SHARDIS_PORT" "$n" "$P")
    unset R
done
