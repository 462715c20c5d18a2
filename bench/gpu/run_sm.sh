#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# SM (compute) cap benchmarks: how closely a cap holds a workload to its
# share, how two capped tenants share one GPU, and what the preload costs.
#
#   bench/gpu/run_sm.sh BUILD_DIR [OUTDIR]
#
# BUILD_DIR holds lib/libgpucap.so. OUTDIR (default BUILD_DIR/bench-sm) gets
# every raw log and report.md, a copy of the markdown printed on stdout;
# progress goes to stderr. Needs python3 with torch (CUDA), nvidia-smi and,
# for the launch-latency part, a C compiler and the CUDA headers
# ($CUDA_HOME, default /usr/local/cuda). About 6-7 minutes on an H100.
#
# Each "container" is a process with its own region file:
#   LD_PRELOAD=BUILD_DIR/lib/libgpucap.so CUDA_DEVICE_SM_LIMIT=PCT
#   CUDA_DEVICE_MEMORY_SHARED_CACHE=REGION
# GPU_CORE_UTILIZATION_POLICY is passed through when set (default: strict).
#
# Knobs (environment): SM_WORKLOADS ("gemm short graph"), SM_CAPS
# ("10 20 30 50 70 90"), SM_SECONDS (6, per run), SM_TENANT_SECONDS (15),
# SM_TENANT_CAPS ("30 70"), SM_TENANT_MODES ("turns apart": with and
# without a shared GPUCAP_NODE_DIR), SM_TRAIN_SECONDS (6), SM_TRAIN_RUNS (3),
# SM_LAUNCH_RUNS (3), SM_BENCH_WARMUP_S (5: seconds each run runs before it
# measures; the controller calibrates the work weight in its first ~4 s),
# SM_PARTS ("accuracy tenants overhead": which sections run), PYTHON (python3).
set -uo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
here="$repo/bench/gpu"
build="${1:?usage: bench/gpu/run_sm.sh BUILD_DIR [OUTDIR]}"
out="${2:-$build/bench-sm}"
mkdir -p "$out" || exit 1
out="$(cd "$out" && pwd)"
lib="$(cd "$build" && pwd)/lib/libgpucap.so"
if [ ! -r "$lib" ]; then
  echo "run_sm.sh: $lib not found: build gpucap first (cmake --build $build)" >&2
  exit 1
fi
py="${PYTHON:-python3}"
workloads="${SM_WORKLOADS:-gemm short graph}"
caps="${SM_CAPS:-10 20 30 50 70 90}"
secs="${SM_SECONDS:-6}"
export SM_BENCH_WARMUP_S="${SM_BENCH_WARMUP_S:-5}"
tenant_secs="${SM_TENANT_SECONDS:-15}"
tenant_caps="${SM_TENANT_CAPS:-30 70}"
tenant_modes="${SM_TENANT_MODES:-turns apart}"
parts="${SM_PARTS:-accuracy tenants overhead}"
has_part() { [[ " $parts " == *" $1 "* ]]; }
has_part accuracy || workloads=""
has_part tenants || tenant_modes=""
train_secs="${SM_TRAIN_SECONDS:-6}"
train_runs="${SM_TRAIN_RUNS:-3}"
launch_runs="${SM_LAUNCH_RUNS:-3}"
cuda="${CUDA_HOME:-/usr/local/cuda}"

# Nothing inherited may cap, or un-cap, a run behind our back.
unset CUDA_DEVICE_SM_LIMIT GPUCAP_REGION CUDA_DEVICE_MEMORY_LIMIT
for v in $(env | grep -oE '^(CUDA_DEVICE_SM_LIMIT|CUDA_DEVICE_MEMORY_LIMIT|GPUCAP_MEMORY_LIMIT|GPUCAP_SM_LIMIT)[A-Z0-9_]*'); do
  unset "$v"
done

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
t_start=$(date +%s)
failures=0

progress() { printf '[%3ds] %s\n' $(( $(date +%s) - t_start )) "$*" >&2; }

# native CMD...: without the library.
native() { env -u LD_PRELOAD "$@"; }
# preloaded NAME CAP CMD...: with the library and a fresh region file of its
# own (one "container"); CAP is a percentage or "none" (no SM limit).
preloaded() {
  local region="$scratch/$1.region" cap="$2"
  shift 2
  rm -f "$region" "$region.audit"
  if [ "$cap" = none ]; then
    env LD_PRELOAD="$lib" CUDA_DEVICE_MEMORY_SHARED_CACHE="$region" "$@"
  else
    env LD_PRELOAD="$lib" CUDA_DEVICE_SM_LIMIT="$cap" CUDA_DEVICE_MEMORY_SHARED_CACHE="$region" "$@"
  fi
}
# field NAME LOG: the last NAME=value in LOG (empty when missing).
field() { grep -oE "(^| )$1=[0-9.]+" "$2" 2>/dev/null | tail -n 1 | cut -d= -f2; }
# run_logged LOG CMD...: run, keep stdout and stderr in LOG, count failures.
run_logged() {
  local log="$1"
  shift
  "$@" >"$log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then
    failures=$((failures + 1))
    progress "FAILED (exit $rc), see $log: $(tail -n 1 "$log")"
  fi
  return $rc
}
mean() { awk '{s += $1; n++} END {if (n) printf "%.2f", s / n}'; }

main() {
  echo "# SM cap benchmarks: $(date -u +%FT%TZ), $(hostname)"
  echo
  local gpu="${CUDA_VISIBLE_DEVICES:-0}"
  echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader -i "${gpu%%,*}" 2>/dev/null ||
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 1)"
  echo "- torch: $($py -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)' 2>&1 | tail -n 1)"
  echo "- library: $lib"
  echo "- policy: GPU_CORE_UTILIZATION_POLICY=${GPU_CORE_UTILIZATION_POLICY:-(unset: strict)}"
  echo "- runs of ${secs} s after ${SM_BENCH_WARMUP_S} s of warm-up; caps: $caps"
  others=$(nvidia-smi --query-compute-apps=pid,process_name --format=csv,noheader 2>/dev/null)
  if [ -n "$others" ]; then
    echo "- **warning**: other processes use the GPU and will skew every figure: $(echo "$others" | tr '\n' ';')"
  fi
  [ -e /etc/gpucap/limits.conf ] && echo "- **note**: /etc/gpucap/limits.conf exists and applies to every preloaded run"
  echo

  # ---- 1. accuracy of one capped process ------------------------------------
  echo "## Accuracy: one process under a cap"
  echo
  echo "Throughput (completed units per second) relative to the uncapped run"
  echo "with the library preloaded, in the same invocation; error = relative"
  echo "throughput - cap, in percentage points. Target: mean absolute error"
  echo "<= 3 points and no cap off by more than 5."
  echo
  for w in $workloads; do
    log="$out/acc-$w"
    progress "$w: native (no preload)"
    run_logged "$log-native.log" native "$py" "$here/sm_accuracy.py" "$w" "$secs"
    progress "$w: preloaded, no cap"
    run_logged "$log-uncapped.log" preloaded "$w-uncapped" none "$py" "$here/sm_accuracy.py" "$w" "$secs"
    for c in $caps; do
      progress "$w: cap $c%"
      run_logged "$log-cap$c.log" preloaded "$w-cap$c" "$c" "$py" "$here/sm_accuracy.py" "$w" "$secs"
    done
    nat=$(field iters_per_s "$log-native.log")
    base=$(field iters_per_s "$log-uncapped.log")
    unit=$(grep -ho 'unit=[^ ]*' "$log-uncapped.log" "$log-native.log" 2>/dev/null | head -n 1 | cut -d= -f2 | tr '_' ' ')
    echo "### $w${unit:+ (unit: $unit)}"
    echo
    echo "| run | units/s | relative to uncapped (%) | error (points) |"
    echo "| --- | --- | --- | --- |"
    echo "| native, no preload | ${nat:-failed} | $(awk -v a="$base" -v b="$nat" 'BEGIN {if (a > 0 && b > 0) printf "%.1f", 100 * b / a; else print "n/a"}') | |"
    echo "| preloaded, no cap (baseline) | ${base:-failed} | ${base:+100.0} | |"
    busy_n=$(field gpu_busy "$log-native.log")
    busy_b=$(field gpu_busy "$log-uncapped.log")
    errs=""
    for c in $caps; do
      v=$(field iters_per_s "$log-cap$c.log")
      row=$(awk -v a="$base" -v b="$v" -v c="$c" 'BEGIN {
        if (a > 0 && b > 0) { r = 100 * b / a; printf "%.1f %+.1f", r, r - c } else print "n/a n/a" }')
      rel=${row% *}
      err=${row#* }
      [ "$err" != n/a ] && errs="$errs $err"
      echo "| cap $c% | ${v:-failed} | $rel | $err |"
    done
    echo
    echo "GPU busy (share of the run spent in this workload's kernels): native ${busy_n:-n/a}, uncapped ${busy_b:-n/a}."
    awk -v b="$busy_b" 'BEGIN {if (b != "" && b < 0.95) print "**Warning**: the uncapped run did not keep the GPU busy, so the relative figures understate what a cap does; see the log."}'
    echo
    if [ -n "$errs" ]; then
      echo "$errs" | tr ' ' '\n' | awk 'NF {e = $1 + 0; if (e < 0) e = -e; s += e; n++; if (e > m) m = e}
        END {printf "%s: mean absolute error %.1f points, max %.1f points over %d caps: %s\n\n", w, s / n, m, n,
             (s / n <= 3 && m <= 5) ? "**meets the target**" : "**misses the target** (MAE <= 3, max <= 5)"}' w="$w"
    else
      echo "$w: no capped run produced a figure"
      echo
    fi
  done

  # ---- 2. two tenants ------------------------------------------------------
  base_log="$out/acc-gemm-uncapped.log"
  if [ -n "$tenant_modes" ] && [ -z "$(field iters_per_s "$base_log")" ]; then
    progress "two tenants: solo uncapped gemm baseline"
    run_logged "$base_log" preloaded gemm-solo none "$py" "$here/sm_accuracy.py" gemm "$secs"
  fi
  # "turns": the tenants share a node directory (GPUCAP_NODE_DIR) and take
  # turns; "apart": each holds its cap on its own.
  for mode in $tenant_modes; do
  echo "## Tenants ($mode): gemm in $(echo "$tenant_caps" | wc -w) capped processes at once (caps $tenant_caps)"
  echo
  node_dir=""
  if [ "$mode" = turns ]; then
    node_dir="$scratch/node"
    echo "The tenants share GPUCAP_NODE_DIR and take turns in a common period."
  else
    echo "No GPUCAP_NODE_DIR: each tenant holds its cap on its own."
  fi
  echo
  rm -rf "$scratch/node" && mkdir -p "$scratch/node"
  progress "two tenants ($mode): caps $tenant_caps, ${tenant_secs} s together"
  rm -rf "$scratch/barrier"
  pids=""
  n_tenants=$(echo "$tenant_caps" | wc -w)
  for c in $tenant_caps; do
    GPUCAP_NODE_DIR="$node_dir" preloaded "tenant-$c" "$c" "$py" "$here/sm_accuracy.py" gemm "$tenant_secs" \
      --ticks 0.25 --barrier "$scratch/barrier:$n_tenants" >"$out/tenant-$mode-cap$c.log" 2>&1 &
    pids="$pids $!"
  done
  for p in $pids; do
    wait "$p" || { failures=$((failures + 1)); progress "FAILED: a tenant exited with an error (logs $out/tenant-$mode-cap*.log)"; }
  done
  tenant_logs=""
  for c in $tenant_caps; do tenant_logs="$tenant_logs $c=$out/tenant-$mode-cap$c.log"; done
  # shellcheck disable=SC2086 # one argument per tenant
  "$py" "$here/tenant_shares.py" "$base_log" $tenant_logs
  done

  # ---- 3. overhead -----------------------------------------------------------
  if has_part overhead; then
  echo "## Overhead of the preload without a cap"
  echo
  echo "### cuLaunchKernel of an empty kernel, 200000 launches, $launch_runs alternating runs each (ns)"
  echo
  if cc -std=c11 -O2 -I"$cuda/include" "$here/launch_latency.c" -L"$cuda/lib64/stubs" -L"$cuda/lib64" -lcuda \
      -o "$out/launch_latency" 2>"$out/launch_latency.build.log"; then
    : >"$out/launch-native.log"; : >"$out/launch-nocap.log"; : >"$out/launch-cap100.log"
    for run in $(seq 1 "$launch_runs"); do
      progress "launch latency: run $run of $launch_runs (native, no cap, cap 100)"
      native "$out/launch_latency" 200000 >>"$out/launch-native.log" 2>&1 || failures=$((failures + 1))
      preloaded "launch-$run" none "$out/launch_latency" 200000 >>"$out/launch-nocap.log" 2>&1 || failures=$((failures + 1))
      preloaded "launch100-$run" 100 "$out/launch_latency" 200000 >>"$out/launch-cap100.log" 2>&1 || failures=$((failures + 1))
    done
    p50() { grep -oE "p50_ns=[0-9]+" "$1" | cut -d= -f2 | mean; }
    p99() { grep -oE "p99_ns=[0-9]+" "$1" | cut -d= -f2 | mean; }
    n50=$(p50 "$out/launch-native.log"); n99=$(p99 "$out/launch-native.log")
    echo "| run | p50 | p99 | added p50 | added p99 |"
    echo "| --- | --- | --- | --- | --- |"
    echo "| native, no preload | ${n50:-failed} | ${n99:-failed} | | |"
    for kind in nocap cap100; do
      g50=$(p50 "$out/launch-$kind.log"); g99=$(p99 "$out/launch-$kind.log")
      label=$([ $kind = nocap ] && echo "preloaded, no SM limit" || echo "preloaded, CUDA_DEVICE_SM_LIMIT=100")
      echo "| $label | ${g50:-failed} | ${g99:-failed} | $(awk -v a="$n50" -v b="$g50" 'BEGIN {if (a != "" && b != "") printf "%+.0f", b - a; else print "n/a"}') | $(awk -v a="$n99" -v b="$g99" 'BEGIN {if (a != "" && b != "") printf "%+.0f", b - a; else print "n/a"}') |"
    done
    echo
    echo "Each run's p50 (ns): native $(grep -oE 'p50_ns=[0-9]+' "$out/launch-native.log" | cut -d= -f2 | tr '\n' ' ')/" \
      "no SM limit $(grep -oE 'p50_ns=[0-9]+' "$out/launch-nocap.log" | cut -d= -f2 | tr '\n' ' ')/" \
      "SM limit 100 $(grep -oE 'p50_ns=[0-9]+' "$out/launch-cap100.log" | cut -d= -f2 | tr '\n' ' ')"
    echo
    g50=$(p50 "$out/launch-nocap.log")
    awk -v a="$n50" -v b="$g50" 'BEGIN {if (a != "" && b != "") printf "Added p50 without a cap: %.2f us: %s\n\n", (b - a) / 1000,
      (b - a <= 200) ? "**meets the target** (<= 0.2 us)" : "**misses the target** (<= 0.2 us)"}'
  else
    failures=$((failures + 1))
    echo "Could not compile launch_latency.c (see $out/launch_latency.build.log): $(head -n 1 "$out/launch_latency.build.log")"
    echo
  fi

  echo "### Training steps of a small transformer (d_model 512, 6 layers, batch 32 x 256, AdamW, bf16), steps/s"
  echo
  : >"$out/train-native.txt"; : >"$out/train-preloaded.txt"
  for run in $(seq 1 "$train_runs"); do
    progress "train step: run $run of $train_runs, native"
    run_logged "$out/train-native-$run.log" native "$py" "$here/sm_train_step.py" "$train_secs" &&
      field steps_per_s "$out/train-native-$run.log" >>"$out/train-native.txt"
    progress "train step: run $run of $train_runs, preloaded, CUDA_DEVICE_SM_LIMIT=100"
    run_logged "$out/train-preloaded-$run.log" preloaded "train-$run" 100 "$py" "$here/sm_train_step.py" "$train_secs" &&
      field steps_per_s "$out/train-preloaded-$run.log" >>"$out/train-preloaded.txt"
  done
  tn=$(mean <"$out/train-native.txt"); tg=$(mean <"$out/train-preloaded.txt")
  echo "| run | steps/s (mean) | each run |"
  echo "| --- | --- | --- |"
  echo "| native, no preload | ${tn:-failed} | $(tr '\n' ' ' <"$out/train-native.txt") |"
  echo "| preloaded, CUDA_DEVICE_SM_LIMIT=100 | ${tg:-failed} | $(tr '\n' ' ' <"$out/train-preloaded.txt") |"
  echo
  awk -v a="$tn" -v b="$tg" 'BEGIN {if (a > 0 && b > 0) printf "Preloaded / native: %.4f (%.2f%% slower): %s\n\n", b / a, 100 * (1 - b / a),
    (1 - b / a <= 0.01) ? "**meets the target** (<= 1% slower)" : "**misses the target** (<= 1% slower)"; else print "No result (see the logs).\n"}'

  fi

  echo "Raw logs: $out ($(( $(date +%s) - t_start )) s in all; $failures failed runs)"
  [ "$failures" -eq 0 ]
}

# main runs in a subshell of the pipe: its exit status says whether every
# run worked (targets missed do not fail the script; the report says so).
main | tee "$out/report.md"
status=${PIPESTATUS[0]}
progress "done: report in $out/report.md"
exit "$status"
