#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Is an SM cap a share of the GPU's work, delivered, also for work that
# leaves gaps on the GPU? For each workload of bench/gpu/sm_share.py: its
# native busy share B (NVML utilization.gpu, sampled from outside), and its
# throughput at each cap; delivered share = throughput ratio x B.
#
#   bench/gpu/run_share.sh BUILD_DIR [OUTDIR]
#
# BUILD_DIR holds lib/libgpucap.so and bin/gpucap. OUTDIR (default
# BUILD_DIR/bench-share) gets the raw logs and report.md (also printed).
# Knobs: SHARE_WORKLOADS ("train launch graphs gemm long"), SHARE_CAPS
# ("10 30 50 70"), SHARE_BRACKET (workloads with a native run after each
# cap: "train launch"), SHARE_SECONDS (5), SM_SHARE_WARMUP_S (20), SHARE_PARTS
# ("caps tenants overhead"), SHARE_TENANT_WORKLOAD (train), SHARE_TENANT_MODES
# ("turns apart free"), SHARE_TENANT_LATE_S (8: the cap-70 tenant starts that
# long after the cap-30 one), SHARE_OVERHEAD_RUNS (3), SHARE_LOG_LEVEL
# (4: each capped run's log holds the controller's steps), PYTHON.
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
here="$repo/bench/gpu"
build="$(cd "${1:?usage: bench/gpu/run_share.sh BUILD_DIR [OUTDIR]}" && pwd)"
out="${2:-$build/bench-share}"
mkdir -p "$out" && out="$(cd "$out" && pwd)"
lib="$build/lib/libgpucap.so"
cli="$build/bin/gpucap"
[ -r "$lib" ] || { echo "run_share.sh: $lib not found: build gpucap first" >&2; exit 1; }
py="${PYTHON:-python3}"
workloads="${SHARE_WORKLOADS:-train launch graphs gemm long}"
caps="${SHARE_CAPS:-10 30 50 70}"
secs="${SHARE_SECONDS:-5}"
export SM_SHARE_WARMUP_S="${SM_SHARE_WARMUP_S:-20}"
parts="${SHARE_PARTS:-caps tenants overhead}"
tenant_workload="${SHARE_TENANT_WORKLOAD:-train}"
bracket="${SHARE_BRACKET-train launch}"
gpu="${CUDA_VISIBLE_DEVICES:-0}"
gpu="${gpu%%,*}"
unset CUDA_DEVICE_SM_LIMIT CUDA_DEVICE_MEMORY_LIMIT GPUCAP_SM_LIMIT GPUCAP_MEMORY_LIMIT GPUCAP_REGION
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
t0=$(date +%s)
progress() { printf '[%4ds] %s\n' $(($(date +%s) - t0)) "$*" >&2; }

# sampled NAME CMD...: run CMD with the busy sampler beside it; CMD's output
# goes to OUT/NAME.log, the samples to OUT/NAME.busy.
sampled() {
  local name="$1"
  shift
  "$py" "$here/busy_sampler.py" "$gpu" 600 >"$out/$name.busy" 2>&1 &
  local sampler=$!
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  kill "$sampler" 2>/dev/null
  wait "$sampler" 2>/dev/null
  [ $rc -eq 0 ] || progress "FAILED (exit $rc): $name, see $out/$name.log"
  return $rc
}
# capped NAME CAP CMD...: one "container" (its own region) under CAP; its
# status is saved at the middle of the measured window (sm_share.py takes
# it), and its log holds the controller's steps (SHARE_LOG_LEVEL, default 4).
capped() {
  local name="$1" cap="$2"
  shift 2
  local region="$scratch/$name.region"
  rm -f "$region"
  local status=(SM_SHARE_STATUS_CMD="'$cli' status --json --file '$region'" SM_SHARE_STATUS_OUT="$out/$name.status.json")
  if [ "$cap" = none ]; then
    env "${status[@]}" LD_PRELOAD="$lib" CUDA_DEVICE_MEMORY_SHARED_CACHE="$region" "$@"
  else
    env "${status[@]}" LD_PRELOAD="$lib" CUDA_DEVICE_SM_LIMIT="$cap" CUDA_DEVICE_MEMORY_SHARED_CACHE="$region" \
      GPUCAP_LOG_LEVEL="${SHARE_LOG_LEVEL:-4}" "$@"
  fi
}

if [[ " $parts " == *" caps "* ]]; then
  for w in $workloads; do
    progress "$w: native"
    sampled "$w-native" "$py" "$here/sm_share.py" "$w" "$secs"
    for c in $caps; do
      progress "$w: cap $c"
      sampled "$w-cap$c" capped "$w-cap$c" "$c" "$py" "$here/sm_share.py" "$w" "$secs"
      # Work paced by the host's CPU drifts by more than the 3% a cap at
      # or above B may cost (an H100 host: two native runs of the launch
      # loop 32% apart), so each of its caps is judged against the native
      # runs just before and after it.
      if [[ " $bracket " == *" $w "* ]]; then
        progress "$w: native after cap $c"
        sampled "$w-native-after$c" "$py" "$here/sm_share.py" "$w" "$secs"
      fi
    done
    # Native again after the caps: the two runs bracket the capped ones.
    if [[ " $bracket " != *" $w "* ]]; then
      progress "$w: native again"
      sampled "$w-native2" "$py" "$here/sm_share.py" "$w" "$secs"
    fi
  done
fi
if [[ " $parts " == *" tenants "* ]]; then
  # The tenants' shares are judged against their workload's native run.
  if [[ " $parts " != *" caps "* || " $workloads " != *" $tenant_workload "* ]]; then
    progress "$tenant_workload: native (for the tenants)"
    sampled "$tenant_workload-native" "$py" "$here/sm_share.py" "$tenant_workload" "$secs"
  fi
  # free: the same two, preloaded without caps: what the GPU gives two such
  # tenants side by side at all (time-slicing between their contexts), the
  # ceiling any cap on them works under.
  for mode in ${SHARE_TENANT_MODES:-turns apart free}; do
    progress "tenants ($mode): $tenant_workload at 30 and 70"
    node="$scratch/node-$mode"
    mkdir -p "$node"
    [ "$mode" = turns ] || node=""
    low=30 high=70
    [ "$mode" = free ] && low=none high=none
    rm -rf "$scratch/barrier-$mode"
    GPUCAP_NODE_DIR="$node" sampled "tenants-$mode-cap30" capped "tenants-$mode-cap30" $low \
      "$py" "$here/sm_share.py" "$tenant_workload" "$secs" --barrier "$scratch/barrier-$mode:2" &
    a=$!
    # Tenants seldom start at the same instant: the cap-30 one works alone
    # first, which is when its controller learns what its launches cost.
    SM_SHARE_LATE_S="${SHARE_TENANT_LATE_S:-8}" GPUCAP_NODE_DIR="$node" capped "tenants-$mode-cap70" $high \
      "$py" "$here/sm_share.py" "$tenant_workload" "$secs" --barrier "$scratch/barrier-$mode:2" \
      >"$out/tenants-$mode-cap70.log" 2>&1
    wait $a
  done
fi
if [[ " $parts " == *" overhead "* ]]; then
  for run in $(seq 1 "${SHARE_OVERHEAD_RUNS:-3}"); do
    progress "overhead: $tenant_workload native / preloaded without a cap, run $run"
    sampled "overhead-native-$run" "$py" "$here/sm_share.py" "$tenant_workload" "$secs"
    sampled "overhead-preloaded-$run" capped "overhead-preloaded-$run" none "$py" "$here/sm_share.py" \
      "$tenant_workload" "$secs"
  done
fi
"$py" "$here/share_report.py" "$out" "$workloads" "$caps" "$tenant_workload" | tee "$out/report.md"
