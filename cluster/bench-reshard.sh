#!/usr/bin/env bash
# Online resharding under load: a 3-node, 3-shard shardis cluster on free loopback
# ports; shard 1's whole range (slots 0-5461) is loaded with KEYS keys of 100-byte
# values, then moved to shard 2 with `shardis admin reshard` while redis-benchmark
# writes random keys over the whole keyspace through one node (forward mode). Then a
# 4th node is added with `shardis admin add-node`, which waits until the replicas are
# balanced onto it, still under the writer, with a GET latency probe before and during
# the replica moves. Prints: keys moved, total time, the
# longest write pause at cutover (fence to flip), the writer's throughput before and
# during the move (median and lowest quarter-second sample), the time until balanced,
# and the probe's p99 before and during the replica moves. It never fails on a number.
#
#   cluster/bench-reshard.sh                 # KEYS=1000000
#   KEYS=200000 cluster/bench-reshard.sh
#   KEEP=1 cluster/bench-reshard.sh          # keep the temp dir (node logs) afterwards
#   REBALANCE_RATE=0 cluster/bench-reshard.sh # replica moves unpaced (default 8mb a second)
#   MIGRATION_RATE=8mb cluster/bench-reshard.sh # the move's bulk copy paced (default unpaced)
set -euo pipefail

cd "$(dirname "$0")/.."
PIN=no
# shellcheck source=cluster/lib.sh
. cluster/lib.sh

KEYS=${KEYS:-1000000}
SHARDS=3
need_tools cargo redis-benchmark redis-cli python3 setsid
build_release

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-reshard.XXXXXX")
NODE_ROOT=$TMP/cluster
mkdir -p "$NODE_ROOT"
read -r p1 p2 p3 p4 q1 q2 q3 q4 <<<"$(free_ports 8)"
NODE_PORTS=([1]=$p1 [2]=$p2 [3]=$p3)
NODE_PEER_PORTS=([1]=$q1 [2]=$q2 [3]=$q3)
NODE_SETTINGS=(--loglevel verbose)
bench_pid=
node4_pid=
cleanup() {
    [ -n "$bench_pid" ] && kill "$bench_pid" 2>/dev/null || true
    [ -n "$node4_pid" ] && kill "$node4_pid" 2>/dev/null || true
    cluster_stop
    if [ -n "${KEEP:-}" ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cluster_start
cluster_wait_ready 30 >/dev/null

echo "loading $KEYS keys (100-byte values) into slots 0-5461 (shard 1)..."
python3 - "$KEYS" >"$TMP/load.resp" <<'EOF'
import sys
n = int(sys.argv[1])
tab = []
for i in range(256):
    c = i << 8
    for _ in range(8):
        c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
    tab.append(c & 0xFFFF)
def slot(k):
    c = 0
    for b in k:
        c = ((c << 8) ^ tab[((c >> 8) ^ b) & 0xFF]) & 0xFFFF
    return c & 16383
v = b"x" * 100
out = sys.stdout.buffer
i = got = 0
while got < n:
    k = b"key:%d" % i
    i += 1
    if slot(k) <= 5461:
        out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(k), k, v))
        got += 1
EOF
t0=$SECONDS
redis-cli -p "$p1" --pipe <"$TMP/load.resp" | tail -1
echo "loaded in $((SECONDS - t0)) s; dbsize $(redis-cli -p "$p1" dbsize)"

# The writer: SET of random keys over the whole keyspace through node 3, with its
# progress lines (every 250 ms) kept for the throughput samples.
redis-benchmark -p "$p3" -t set -n 100000000 -r 1000000 -d 100 -c 50 -P 1 \
    >"$TMP/bench.out" 2>&1 &
bench_pid=$!
# Foreground latency: GETs through node 1 (10 clients, the writer running), once
# before any change and then one probe after another while the new node's replicas
# catch up (paced by rebalance-rate). redis-benchmark stops at the first error reply:
# such a probe is reported and run again, up to three times.
probe() { # name
    local try
    for try in 1 2 3; do
        redis-benchmark -p "$p1" -t get -n "${PROBE_N:-20000}" -c 10 -r 1000000 -d 100 --csv \
            >"$TMP/probe-$1.csv" 2>&1 || true
        if grep -q '^"GET"' "$TMP/probe-$1.csv"; then
            awk -F'"' '$2 == "GET" { print $14 }' "$TMP/probe-$1.csv"
            return
        fi
        echo "probe $1 (try $try): $(grep -m1 -i error "$TMP/probe-$1.csv")" >&2
        sleep 1
    done
}
sleep 6
p99_idle=$(probe idle)
mark() { wc -c <"$TMP/bench.out"; }
# MIGRATION_RATE=8mb (say) paces the move's bulk copy (default: unpaced).
if [ -n "${MIGRATION_RATE:-}" ]; then
    for p in "$p1" "$p2" "$p3"; do redis-cli -p "$p" config set migration-rate "$MIGRATION_RATE" >/dev/null; done
    sleep 1
fi
before_end=$(mark)
S="$SHARDIS"
"$S" admin --node "127.0.0.1:$p1" --json reshard --slots 0-5461 --to 2 >"$TMP/move.json"
during_end=$(mark)
sleep 3
# A 4th node (started on its own, outside the cluster) is added; add-node waits until
# the replicas are balanced.
# REBALANCE_RATE=0 (unpaced) or e.g. 16mb sets every node's rebalance-rate first.
if [ -n "${REBALANCE_RATE:-}" ]; then
    for p in "$p1" "$p2" "$p3"; do redis-cli -p "$p" config set rebalance-rate "$REBALANCE_RATE" >/dev/null; done
fi
mkdir -p "$NODE_ROOT/node4"
setsid "$SHARDIS" server --node-id 4 --port "$p4" --peer-port "$q4" --dir "$NODE_ROOT/node4" \
    --loglevel verbose </dev/null >>"$NODE_ROOT/node4.log" 2>&1 &
node4_pid=$!
wait_ping "$p4" "node 4" "$node4_pid" "$NODE_ROOT/node4.log"
"$S" admin --node "127.0.0.1:$p1" --json add-node "127.0.0.1:$p4" >"$TMP/add.json" &
add_pid=$!
sleep 0.5
# Probes one after another for as long as replicas move (bounded: 60 probes).
p99_moving=()
for i in $(seq 1 60); do
    kill -0 "$add_pid" 2>/dev/null || break
    p99_moving+=("$(probe "moving-$i")")
done
wait "$add_pid"
moving_json=$(printf '"%s",' "${p99_moving[@]}")
echo "{\"idle\": \"$p99_idle\", \"moving\": [${moving_json%,}]}" >"$TMP/p99.json"
kill "$bench_pid" 2>/dev/null || true
wait "$bench_pid" 2>/dev/null || true
bench_pid=

python3 - "$TMP/bench.out" "$before_end" "$during_end" "$TMP/move.json" "$TMP/add.json" "$TMP/p99.json" <<'EOF'
import json, re, statistics, sys
raw = open(sys.argv[1], "rb").read()
before_end, during_end = int(sys.argv[2]), int(sys.argv[3])
def samples(lo, hi):
    text = raw[lo:hi].decode("latin1")
    return [float(m) for m in re.findall(r"rps=([0-9.]+) \(overall", text)]
before = samples(0, before_end)[4:]  # skip the warm-up
during = samples(before_end, during_end)
move = json.load(open(sys.argv[4]))
add = json.load(open(sys.argv[5]))
print()
print("move of slots 0-5461 (shard 1 -> shard 2): %d keys in %.1f s (%.0f keys/s), longest write pause at cutover %.1f ms"
      % (move.get("keys_moved", 0), move["seconds"], move.get("keys_moved", 0) / max(move["seconds"], 1e-9),
         move.get("pause_us", 0) / 1000))
if before and during:
    print("writer SET rps: before median %.0f; during the move median %.0f (%.0f%%), lowest 250 ms sample %.0f (%.0f%%)"
          % (statistics.median(before), statistics.median(during),
             100 * statistics.median(during) / statistics.median(before), min(during),
             100 * min(during) / statistics.median(before)))
print("add a 4th node until balanced (replicas moved onto it): %.1f s" % add["seconds"])
p99 = json.load(open(sys.argv[6]))
try:
    idle = float(p99["idle"])
    moving = [float(x) for x in p99["moving"]]
    print("foreground GET p99 (10 clients, with the writer): %.2f ms before any change; while replicas move to the new node, %d probes: worst %.2f ms (%.1fx), median %.2f ms (%.1fx)"
          % (idle, len(moving), max(moving), max(moving) / idle,
             statistics.median(moving), statistics.median(moving) / idle))
except (ValueError, TypeError):
    print("foreground GET p99: no reading (%r); see probe-*.csv in the temp dir (KEEP=1)" % p99)
EOF
echo "status after:"
"$SHARDIS" admin --node "127.0.0.1:$p1" status
