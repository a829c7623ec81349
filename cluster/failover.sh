#!/usr/bin/env bash
# Failover time of a fresh 3-node cluster: ROUNDS times, find the leader (INFO raft),
# kill -9 it and time until a SET sent through a surviving node in a tight loop first
# answers +OK; then restart the killed node from its data directory and wait until the
# three agree on a leader again. Prints each round, then the median and the maximum
# against the target (under 1000 ms with the default election timeout of 300 ms).
#
#   cluster/failover.sh                                    # 10 rounds, default settings
#   ROUNDS=20 SETTINGS="--election-timeout 150" cluster/failover.sh
#   KEEP=1 cluster/failover.sh                             # keep the node logs
#   VERBOSE=1 cluster/failover.sh       # also the first reply of each kind per round, timed
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=cluster/lib.sh
. cluster/lib.sh

ROUNDS=${ROUNDS:-10}
ROUND_TIMEOUT=${ROUND_TIMEOUT:-20}
TARGET_MS=${TARGET_MS:-1000}
read -r -a NODE_SETTINGS <<<"${SETTINGS:-}"

need_tools cargo redis-cli python3 setsid
build_release

TMP=$(mktemp -d "${TMPDIR:-/tmp}/failover.XXXXXX")
NODE_ROOT=$TMP/cluster
mkdir -p "$NODE_ROOT"
read -r p1 p2 p3 q1 q2 q3 <<<"$(free_ports 6)"
NODE_PORTS=([1]=$p1 [2]=$p2 [3]=$p3)
NODE_PEER_PORTS=([1]=$q1 [2]=$q2 [3]=$q3)

cleanup() {
    cluster_stop
    if [ -n "${KEEP:-}" ]; then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Kills the leader and times the first +OK through a survivor: one connection opened
# before the kill, one SET per try, reconnecting when the connection drops. Prints
# "ms tries errors" (errors: first word of each error reply, counted).
cat >"$TMP/probe.py" <<'EOF'
import os, signal, socket, sys, time
pid, port, rnd, timeout = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])

def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, s.makefile("rb")

def command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out

conn = connect()
errors = {}
first = []  # the first reply of each kind, with its time
tries = 0
start = time.monotonic()
deadline = start + timeout
os.kill(pid, signal.SIGKILL)
while time.monotonic() < deadline:
    tries += 1
    try:
        if conn is None:
            conn = connect()
        sock, reader = conn
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        sock.sendall(command("SET", "failover:%s" % rnd, str(tries)))
        line = reader.readline()
        if not line:
            raise ConnectionError("connection closed")
    except OSError as e:
        kind = type(e).__name__
        if kind not in errors:
            first.append("%.1f ms: %s" % ((time.monotonic() - start) * 1000, e))
        errors[kind] = errors.get(kind, 0) + 1
        conn = None
        time.sleep(0.001)
        continue
    if line.startswith(b"+OK"):
        ms = (time.monotonic() - start) * 1000
        summary = ",".join("%s:%d" % kv for kv in sorted(errors.items())) or "-"
        print("%.1f %d %s" % (ms, tries, summary))
        for f in first:
            print("  " + f, file=sys.stderr)
        sys.exit(0)
    kind = line[1:].split(b" ")[0].decode(errors="replace").strip()
    if kind not in errors:
        first.append("%.1f ms: %s" % ((time.monotonic() - start) * 1000, line.decode(errors="replace").strip()))
    errors[kind] = errors.get(kind, 0) + 1
    time.sleep(0.001)
summary = ",".join("%s:%d" % kv for kv in sorted(errors.items())) or "-"
print("timeout %d %s" % (tries, summary))
for f in first:
    print("  " + f, file=sys.stderr)
sys.exit(1)
EOF

cluster_start
leader=$(cluster_wait_ready 30)
echo "3-node cluster (settings: ${SETTINGS:-defaults}), $ROUNDS rounds; $PINNING (probe on the client core)"
printf '%-6s %-7s %-7s %10s %6s  %-10s %s\n' round killed via ms tries "new leader" "replies before +OK"

times=()
for round in $(seq 1 "$ROUNDS"); do
    leader=$(cluster_wait_ready 30)
    via=$((leader % 3 + 1))
    victim=${NODE_PIDS[$leader]}
    set +e
    result=$("${pin_client[@]}" python3 "$TMP/probe.py" "$victim" "${NODE_PORTS[$via]}" "$round" \
        "$ROUND_TIMEOUT" 2>"$TMP/first-replies")
    probe=$?
    set -e
    wait "$victim" 2>/dev/null || true
    NODE_PIDS[$leader]=
    read -r ms tries errs <<<"$result"
    if [ "$probe" != 0 ]; then
        cluster_status >&2
        die "round $round: no +OK through node $via within $ROUND_TIMEOUT s after killing node $leader ($tries tries, replies: $errs; logs: $NODE_ROOT)"
    fi
    new_leader=$(raft_field "${NODE_PORTS[$via]}" raft_leader_id)
    printf '%-6s %-7s %-7s %10s %6s  %-10s %s\n' "$round" "$leader" "$via" "$ms" "$tries" \
        "$new_leader" "$errs"
    [ -n "${VERBOSE:-}" ] && cat "$TMP/first-replies"
    times+=("$ms")
    # Back to three: the killed node rejoins from its data directory (no flags needed).
    node_start "$leader"
    wait_ping "${NODE_PORTS[$leader]}" "node $leader" "${NODE_PIDS[$leader]}" "$(node_log "$leader")"
    cluster_wait_ready 30 >/dev/null
done

printf '%s\n' "${times[@]}" | sort -g | awk -v target="$TARGET_MS" '
    { v[NR] = $1 }
    END {
        median = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "failover over %d kills: median %.1f ms (%s), max %.1f ms (%s), min %.1f ms; target < %d ms\n",
            NR, median, (median < target) ? "PASS" : "ABOVE", v[NR], (v[NR] < target) ? "PASS" : "ABOVE",
            v[1], target
    }'
