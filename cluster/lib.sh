# Helpers shared by the scripts in cluster/ (sourced, never run): tool checks, ports,
# CPU pinning, and a 3-node shardis cluster on loopback that they start, watch and stop.
# The sourcing script runs from the repository root under `set -euo pipefail`.

PROG=${0##*/}
SHARDIS=./target/release/shardis

die() {
    echo "$PROG: $*" >&2
    exit 1
}

need_tools() { # tool...
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool not found"
    done
}

build_release() {
    echo "building release..." >&2
    cargo build --release --quiet
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port_free() { # port
    python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1])))' "$1" \
        2>/dev/null
}

# n distinct free ports, space-separated
free_ports() { # n
    local -A seen=()
    local out=() p
    while [ "${#out[@]}" -lt "$1" ]; do
        p=$(free_port)
        [ -n "${seen[$p]:-}" ] && continue
        seen[$p]=1
        out+=("$p")
    done
    echo "${out[*]}"
}

wait_ping() { # port name pid [log]
    for _ in $(seq 1 500); do
        if redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; then return 0; fi
        if ! kill -0 "$3" 2>/dev/null; then
            [ -n "${4:-}" ] && tail -n 20 "$4" >&2
            die "$2 exited during startup"
        fi
        sleep 0.02
    done
    die "$2 on port $1 did not answer PING within 10 s"
}

# With two or more cores the servers share core 1 and the load generator gets core 0,
# so no server competes with redis-benchmark (the ratios are far steadier). PIN=no
# turns this off.
pin_server=()
pin_client=()
PINNING="no pinning (PIN=no, taskset missing or a single core)"
if [ "${PIN:-yes}" != no ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_server=(taskset -c 1)
    pin_client=(taskset -c 0)
    PINNING="servers pinned to core 1, clients to core 0 (taskset)"
fi

# One field of `INFO raft` on a node, empty when it does not answer.
raft_field() { # port field
    redis-cli -h 127.0.0.1 -p "$1" info raft 2>/dev/null | tr -d '\r' |
        awk -F: -v k="$2" '$1 == k { print $2 }' || true
}

# --- a 3-node cluster ----------------------------------------------------------------
# After sourcing, the caller sets NODE_PORTS, NODE_PEER_PORTS (arrays indexed 1..3),
# NODE_ROOT (node N's data in $NODE_ROOT/nodeN, its log in $NODE_ROOT/nodeN.log) and
# optionally NODE_SETTINGS (extra `--name value` flags for every node).
NODE_IDS=(1 2 3)
NODE_PIDS=()
NODE_SETTINGS=()

node_log() { echo "$NODE_ROOT/node$1.log"; }

# Starts node N in the background, in its own session so that a Ctrl-C on the terminal
# reaches only the script, which then stops the nodes in order with SIGTERM.
node_start() { # id [extra flags...]
    local id=$1
    shift
    mkdir -p "$NODE_ROOT/node$id"
    "${pin_server[@]}" setsid "$SHARDIS" server --node-id "$id" \
        --port "${NODE_PORTS[$id]}" --peer-port "${NODE_PEER_PORTS[$id]}" \
        --dir "$NODE_ROOT/node$id" ${NODE_SETTINGS[@]+"${NODE_SETTINGS[@]}"} "$@" \
        </dev/null >>"$(node_log "$id")" 2>&1 &
    NODE_PIDS[$id]=$!
}

node_alive() { # id
    [ -n "${NODE_PIDS[$1]:-}" ] && kill -0 "${NODE_PIDS[$1]}" 2>/dev/null
}

# Starts all three: node 1 bootstraps on a first start (no data yet), the others join
# through it; with data, every node rejoins from its own directory.
cluster_start() {
    local id first=
    [ -d "$NODE_ROOT/node1/shard-0" ] || first=yes
    for id in "${NODE_IDS[@]}"; do
        port_free "${NODE_PORTS[$id]}" || die "client port ${NODE_PORTS[$id]} is in use"
        port_free "${NODE_PEER_PORTS[$id]}" || die "peer port ${NODE_PEER_PORTS[$id]} is in use"
    done
    if [ -n "$first" ]; then
        node_start 1 --bootstrap
    else
        node_start 1
    fi
    wait_ping "${NODE_PORTS[1]}" "node 1" "${NODE_PIDS[1]}" "$(node_log 1)"
    for id in 2 3; do
        # --join only acts on a node without data, so passing it always is safe.
        node_start "$id" --join "127.0.0.1:${NODE_PEER_PORTS[1]}"
    done
    for id in 2 3; do
        wait_ping "${NODE_PORTS[$id]}" "node $id" "${NODE_PIDS[$id]}" "$(node_log "$id")"
    done
}

# One line per node: id, port, role, leader, voters, applied index.
cluster_status() {
    local id p
    for id in "${NODE_IDS[@]}"; do
        p=${NODE_PORTS[$id]}
        if node_alive "$id"; then
            printf 'node %s port %s: role=%s leader=%s voters=%s applied=%s\n' "$id" "$p" \
                "$(raft_field "$p" raft_role)" "$(raft_field "$p" raft_leader_id)" \
                "$(raft_field "$p" raft_voters)" "$(raft_field "$p" raft_applied_index)"
        else
            printf 'node %s port %s: not running\n' "$id" "$p"
        fi
    done
}

# The leader's id when every node is up, names the same leader, that leader says it
# leads and the voters are 1,2,3; empty otherwise.
cluster_agreed_leader() {
    local id p leader= l
    for id in "${NODE_IDS[@]}"; do
        p=${NODE_PORTS[$id]}
        [ "$(raft_field "$p" raft_voters)" = "1,2,3" ] || return 0
        l=$(raft_field "$p" raft_leader_id)
        case "$l" in '' | -1) return 0 ;; esac
        [ -z "$leader" ] || [ "$leader" = "$l" ] || return 0
        leader=$l
    done
    [ "$(raft_field "${NODE_PORTS[$leader]}" raft_role)" = leader ] || return 0
    echo "$leader"
}

# Waits until the cluster agrees on a leader with voters 1,2,3 and prints its id.
cluster_wait_ready() { # timeout_s
    local end=$((SECONDS + $1)) leader id
    while [ "$SECONDS" -lt "$end" ]; do
        for id in "${NODE_IDS[@]}"; do
            node_alive "$id" || {
                tail -n 20 "$(node_log "$id")" >&2
                die "node $id exited while waiting for the cluster (log: $(node_log "$id"))"
            }
        done
        leader=$(cluster_agreed_leader)
        if [ -n "$leader" ]; then
            echo "$leader"
            return 0
        fi
        sleep 0.1
    done
    cluster_status >&2
    die "the nodes did not agree on a leader with voters 1,2,3 within $1 s (logs: $NODE_ROOT/node*.log)"
}

# SIGTERM and wait for the exit (SIGKILL after timeout_s, with a warning).
node_stop() { # id timeout_s
    local pid=${NODE_PIDS[$1]:-} end=$((SECONDS + $2))
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$PROG: node $1 (pid $pid) still running $2 s after SIGTERM, killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    NODE_PIDS[$1]=
}

# Stops the nodes one at a time, the current leader first, so that each SIGTERM hands
# leadership to a node that is still running.
cluster_stop() {
    local id leader
    for _ in "${NODE_IDS[@]}"; do
        leader=
        for id in "${NODE_IDS[@]}"; do
            node_alive "$id" || continue
            [ "$(raft_field "${NODE_PORTS[$id]}" raft_role)" = leader ] && leader=$id
        done
        if [ -z "$leader" ]; then
            for id in "${NODE_IDS[@]}"; do node_alive "$id" && leader=$id && break; done
        fi
        [ -n "$leader" ] || break
        node_stop "$leader" 15
    done
}
