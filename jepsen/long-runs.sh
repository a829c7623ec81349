#!/usr/bin/env bash
# Long chaos runs: RUNS runs of TIME seconds each with seeds SEED, SEED+1, ..., every
# fault and workload unless told otherwise, one summary line per run and a tally at
# the end. Each run's directory is kept under target/jepsen/long-<start>/.
#   jepsen/long-runs.sh [RUNS [TIME [SEED]]] [-- extra jepsen run flags]
# e.g. jepsen/long-runs.sh 20 300 1 -- --nodes 5 --shards 3
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}; time=${2:-300}; seed=${3:-1}
shift $(( $# < 3 ? $# : 3 )) || true
[ "${1:-}" = "--" ] && shift
cargo build --release -q -p jepsen -p shardis --bins
root=target/jepsen/long-$(date +%Y%m%dT%H%M%S)
mkdir -p "$root"
declare -A tally=()
for ((i = 0; i < runs; i++)); do
    s=$((seed + i))
    rc=0
    target/release/jepsen run --time "$time" --seed "$s" \
        --nemesis kill,pause,partition,clock,latency --workload register,set,list-append,ttl \
        --binary target/release/shardis --dir "$root/seed$s" "$@" >"$root/seed$s.out" 2>&1 || rc=$?
    case $rc in 0) v=valid ;; 1) v=INVALID ;; 2) v=unknown ;; *) v="harness-error($rc)" ;; esac
    tally[$v]=$(( ${tally[$v]:-0} + 1 ))
    ops=$(grep -o '"ops": [0-9]*' "$root/seed$s/verdict.json" 2>/dev/null | grep -o '[0-9]*' || echo -)
    faults=$(grep -o '"faults": [0-9]*' "$root/seed$s/verdict.json" 2>/dev/null | grep -o '[0-9]*' || echo -)
    printf 'seed %-4s %-8s ops %-7s faults %-4s %s\n' "$s" "$v" "$ops" "$faults" "$root/seed$s" | tee -a "$root/summary.txt"
done
for v in "${!tally[@]}"; do echo "$v: ${tally[$v]}"; done | sort | tee -a "$root/summary.txt"
