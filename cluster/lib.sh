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

# One field of a shard's line in `INFO raft` (`shardN:role=leader,term=3,...`), empty
# when the node does not answer. Field names may carry the old `raft_` prefix.
raft_field() { # port field [shard]
    local shard=${3:-1} field=${2#raft_}
    redis-cli -h 127.0.0.1 -p "$1" info raft 2>/dev/null | tr -d '\r' |
        awk -F: -v s="shard$shard" '$1 == s { print $2 }' | tr ',' '\n' |
        awk -F= -v k="$field" '$1 == k { print $2 }' || true
}

# One field of `CLUSTER INFO` on a node (cluster_state, ...), empty when it does not
# answer.
cluster_info_field() { # port field
    redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | tr -d '\r' |
        awk -F: -v k="$2" '$1 == k { print $2 }' || true
}

# --- a cluster of N nodes --------------------------------------------------------------
# After sourcing, the caller sets NODE_PORTS and NODE_PEER_PORTS (arrays indexed by node
# id, 1..N), NODE_ROOT (node N's data in $NODE_ROOT/nodeN, its log in
# $NODE_ROOT/nodeN.log), SHARDS (shards of a new cluster) and optionally NODE_SETTINGS
# (extra `--name value` flags for every node).
NODE_PIDS=()
NODE_SETTINGS=()

node_ids() { echo "${!NODE_PORTS[@]}"; }

node_log() { echo "$NODE_ROOT/node$1.log"; }

# The --initial-cluster list of every node.
initial_cluster() {
    local id list=
    for id in $(node_ids); do
        list+="${list:+,}$id=127.0.0.1:${NODE_PORTS[$id]}@${NODE_PEER_PORTS[$id]}"
    done
    echo "$list"
}

# Starts node N in the background, in its own session so that a Ctrl-C on the terminal
# reaches only the script, which then stops the nodes in order with SIGTERM. The
# initial member list only matters on a cluster's first start; a restarted node reads
# its cluster from its data directory.
node_start() { # id [extra flags...]
    local id=$1
    shift
    mkdir -p "$NODE_ROOT/node$id"
    "${pin_server[@]}" setsid "$SHARDIS" server --node-id "$id" \
        --port "${NODE_PORTS[$id]}" --peer-port "${NODE_PEER_PORTS[$id]}" \
        --dir "$NODE_ROOT/node$id" --initial-cluster "$(initial_cluster)" --shards "${SHARDS:-1}" \
        ${NODE_SETTINGS[@]+"${NODE_SETTINGS[@]}"} "$@" \
        </dev/null >>"$(node_log "$id")" 2>&1 &
    NODE_PIDS[$id]=$!
}

node_alive() { # id
    [ -n "${NODE_PIDS[$1]:-}" ] && kill -0 "${NODE_PIDS[$1]}" 2>/dev/null
}

# Starts every node.
cluster_start() {
    local id
    for id in $(node_ids); do
        port_free "${NODE_PORTS[$id]}" || die "client port ${NODE_PORTS[$id]} is in use"
        port_free "${NODE_PEER_PORTS[$id]}" || die "peer port ${NODE_PEER_PORTS[$id]} is in use"
    done
    for id in $(node_ids); do
        node_start "$id"
    done
    for id in $(node_ids); do
        wait_ping "${NODE_PORTS[$id]}" "node $id" "${NODE_PIDS[$id]}" "$(node_log "$id")"
    done
}

# One line per node: id, port, cluster state, shards hosted and led, keys held.
cluster_status() {
    local id p
    for id in $(node_ids); do
        p=${NODE_PORTS[$id]}
        if node_alive "$id" || redis-cli -p "$p" ping >/dev/null 2>&1; then
            printf 'node %s port %s: cluster_state=%s replicas=%s leads=%s keys=%s\n' "$id" "$p" \
                "$(cluster_info_field "$p" cluster_state)" \
                "$(redis-cli -p "$p" info raft 2>/dev/null | tr -d '\r' | awk -F: '$1 == "raft_shards" { print $2 }')" \
                "$(redis-cli -p "$p" info raft 2>/dev/null | tr -d '\r' | awk -F: '$1 == "raft_leaderships" { print $2 }')" \
                "$(redis-cli -p "$p" info keyspace 2>/dev/null | tr -d '\r' | sed -n 's/^db0:keys=\([0-9]*\).*/\1/p')"
        else
            printf 'node %s port %s: not running\n' "$id" "$p"
        fi
    done
}

# Shard 1's leader when every node names the same one and that node says it leads;
# empty otherwise.
cluster_agreed_leader() {
    local id p leader= l
    for id in $(node_ids); do
        p=${NODE_PORTS[$id]}
        l=$(raft_field "$p" leader_id 1)
        [ -n "$l" ] || continue # not a replica of shard 1
        case "$l" in -1) return 0 ;; esac
        [ -z "$leader" ] || [ "$leader" = "$l" ] || return 0
        leader=$l
    done
    [ -n "$leader" ] || return 0
    [ "$(raft_field "${NODE_PORTS[$leader]}" role 1)" = leader ] || return 0
    echo "$leader"
}

# Waits until every node says cluster_state:ok (every slot's shard has a leader) and
# prints shard 1's leader.
cluster_wait_ready() { # timeout_s
    local end=$((SECONDS + $1)) leader id ok
    while [ "$SECONDS" -lt "$end" ]; do
        ok=yes
        for id in $(node_ids); do
            node_alive "$id" || {
                tail -n 20 "$(node_log "$id")" >&2
                die "node $id exited while waiting for the cluster (log: $(node_log "$id"))"
            }
            [ "$(cluster_info_field "${NODE_PORTS[$id]}" cluster_state)" = ok ] || ok=
        done
        leader=$(cluster_agreed_leader)
        if [ -n "$ok" ] && [ -n "$leader" ]; then
            echo "$leader"
            return 0
        fi
        sleep 0.1
    done
    cluster_status >&2
    die "the cluster did not reach cluster_state:ok within $1 s (logs: $NODE_ROOT/node*.log)"
}

# Waits (up to timeout_s, not fatal) until leaderships are spread: no node leads more
# than one shard more than another. The balancer moves them within seconds of startup.
cluster_wait_balanced() { # timeout_s
    local end=$((SECONDS + $1)) id n lo hi
    while [ "$SECONDS" -lt "$end" ]; do
        lo= hi=
        for id in $(node_ids); do
            n=$(redis-cli -p "${NODE_PORTS[$id]}" info raft 2>/dev/null | tr -d '\r' |
                awk -F: '$1 == "raft_leaderships" { print $2 }')
            n=${n:-0}
            [ -z "$lo" ] || [ "$n" -lt "$lo" ] && lo=$n
            [ -z "$hi" ] || [ "$n" -gt "$hi" ] && hi=$n
        done
        [ $((hi - lo)) -le 1 ] && return 0
        sleep 0.2
    done
    return 0
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

# Stops the nodes one at a time; each SIGTERM hands the node's leaderships to nodes
# that are still running.
cluster_stop() {
    local id
    for id in $(node_ids); do
        node_alive "$id" && node_stop "$id" 15
    done
    return 0
}
