#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# 8 MPI ranks on one GPU, each with its own context: start time natively and
# under gpucap (3 alternating runs each), and, under gpucap, 8 ranks sharing
# one cap fill it in 256 MiB chunks: the cap holds and the region's charge is
# exactly what the ranks were granted plus their contexts.
#
#   bench/gpu/run_mpi.sh BUILD_DIR OUTDIR
#
# Needs Open MPI's mpirun (the program links no MPI library: rank and size
# come from OMPI_COMM_WORLD_RANK/SIZE, barriers are files). Prints a markdown
# section; exits 1 when a run or a check fails.
# Environment: GPUCAP_MPI_RANKS (8), GPUCAP_MPI_CAP (8g), GPUCAP_MPI_RUNS (3).
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
usage="usage: bench/gpu/run_mpi.sh BUILD_DIR OUTDIR"
build="$(cd "${1:?$usage}" && pwd)" || exit 2
out="${2:?$usage}"
mkdir -p "$out" && out="$(cd "$out" && pwd)" || exit 2
cuda="${CUDA_HOME:-/usr/local/cuda}"
lib="$build/lib/libgpucap.so"
gpucap="$build/bin/gpucap"
export NCCL_NVLS_ENABLE=0
# Root is what the device machine gives; Open MPI refuses it without these.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
np="${GPUCAP_MPI_RANKS:-8}"
cap="${GPUCAP_MPI_CAP:-8g}"
runs="${GPUCAP_MPI_RUNS:-3}"
log="$out/mpi.log"
: >"$log"

echo "## $np MPI ranks on GPU 0, each its own context (mpirun, no MPI library)"
echo
for f in "$lib" "$gpucap"; do
  [ -e "$f" ] || { echo "FAIL $f is missing (build gpucap first: tests/gpu/run.sh builds build-gpu)"; exit 1; }
done
command -v mpirun >/dev/null || { echo "FAIL mpirun is not installed"; exit 1; }
if ! cc -std=c11 -O2 -Wall -Wextra -I"$cuda/include" "$repo/bench/gpu/mpi_ranks.c" \
  -L"$cuda/lib64/stubs" -lcuda -o "$out/mpi_ranks" >>"$log" 2>&1; then
  echo "FAIL compiling mpi_ranks (see $log)"
  exit 1
fi
scratch=$(mktemp -d /tmp/gpucap-mpi.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# Run by rank 0 while every rank still holds what it was granted.
cat >"$out/mpi_check.py" <<'EOF'
"""Checks a filled region: mpi_check.py GPUCAP REGION RANK_DIR RANKS."""
import glob, json, re, subprocess, sys, time

gpucap, region, rank_dir, ranks = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
CHUNK, RESERVE = 256 << 20, 4 << 20
doc = None
for _ in range(20):  # a snapshot taken while something moved says so; take another
    r = subprocess.run([gpucap, "status", "--json", "--file", region], capture_output=True, text=True)
    if r.returncode == 0:
        doc = json.loads(r.stdout)
        if doc.get("consistent", True):
            break
    time.sleep(0.05)
if doc is None:
    print(f"FAIL gpucap status --json --file {region}: {r.stderr.strip()}")
    sys.exit(1)
json.dump(doc, open(f"{rank_dir}/status.json", "w"))

fills = []
for path in glob.glob(f"{rank_dir}/fill.*"):
    fields = dict(re.findall(r"(\w+)=(-?\d+)", open(path).read()))
    fills.append({k: int(v) for k, v in fields.items()})
problems = []
if len(fills) != ranks:
    problems.append(f"{len(fills)} of {ranks} ranks reported what they were granted")
devices = doc["devices"]
if len(devices) != 1:
    problems.append(f"{len(devices)} devices in the region, expected 1 (every rank on GPU 0)")
device = devices[0] if devices else {"index": -1, "limit_bytes": None, "charged_bytes": 0}
limit, charged = device["limit_bytes"], device["charged_bytes"]
live = {p["pid"]: p for p in doc["processes"] if p["alive"]}


def on_device(process, key):
    return sum(d[key] for d in process["devices"] if d["index"] == device["index"])


context = module = data = 0
for fill in fills:
    process = live.get(fill.get("pid"))
    if process is None:
        problems.append(f"rank {fill.get('rank')} (pid {fill.get('pid')}) has no live slot in the region")
        continue
    context += on_device(process, "context_bytes")
    module += on_device(process, "module_bytes")
    data += on_device(process, "data_bytes")
granted = sum(f.get("granted_bytes", 0) for f in fills)
reserves = charged - granted - context - module
stops = sorted({f.get("stop") for f in fills})
if limit is None or charged > limit:
    problems.append(f"charged {charged} is over the limit {limit}")
if stops != [2]:
    problems.append(f"allocations stopped with codes {stops}, expected only 2 (CUDA_ERROR_OUT_OF_MEMORY)")
if data != granted:
    problems.append(f"the region's data bytes {data} differ from the {granted} bytes the ranks were granted")
if not 0 <= reserves <= ranks * RESERVE:
    problems.append(f"charged - (granted + contexts) = {reserves} bytes, expected 0..{ranks * RESERVE} "
                    f"(the threads' idle reserves)")
if limit is not None and limit - charged >= CHUNK + ranks * RESERVE:
    problems.append(f"{limit - charged} bytes left under the cap although every rank was refused a chunk")
mib = lambda v: f"{v / (1 << 20):.0f}"
print(f"chunks={','.join(str(f.get('chunks')) for f in sorted(fills, key=lambda f: f.get('rank', 0)))} "
      f"granted_mib={mib(granted)} context_mib={mib(context)} sum_mib={mib(granted + context + module)} "
      f"charged_mib={mib(charged)} limit_mib={mib(limit or 0)} slack_mib={mib((limit or 0) - charged)} "
      f"reserves_mib={reserves / (1 << 20):.1f} ok={0 if problems else 1}")
for p in problems:
    print(f"FAIL {p}")
sys.exit(1 if problems else 0)
EOF

failures=0
# One mpirun: mode start natively, mode fill under gpucap (the fill comes
# after each rank has recorded its start time, so it costs the timing
# nothing).
one_run() { # label, [capped]
  local label=$1 capped=${2:-} rdir="$scratch/$1" extra=() rc t0
  mkdir -p "$rdir"
  local mode=start
  if [ -n "$capped" ]; then
    mode=fill
    local region="$scratch/$label.region"
    printf '#!/bin/bash\nexec python3 %q %q %q %q %q >%q 2>&1\n' "$out/mpi_check.py" "$gpucap" "$region" \
      "$rdir" "$np" "$out/$label-check.txt" >"$rdir/check.sh"
    chmod +x "$rdir/check.sh"
    # -x, not the environment of mpirun itself: the launcher is no CUDA
    # process and stays outside the cap.
    extra=(-x LD_PRELOAD="$lib" -x CUDA_DEVICE_MEMORY_LIMIT="$cap"
      -x CUDA_DEVICE_MEMORY_SHARED_CACHE="$region" -x GPUCAP_MPI_CHECK="$rdir/check.sh")
  fi
  t0=$(date +%s%N)
  timeout 150 mpirun --allow-run-as-root --oversubscribe -np "$np" -x GPUCAP_T0_NS="$t0" "${extra[@]}" \
    "$out/mpi_ranks" "$mode" "$rdir" >"$out/$label.log" 2>&1
  rc=$?
  echo "$label rc=$rc $(grep -h '^mpi_ranks ' "$out/$label.log")" >>"$log"
  if [ $rc -ne 0 ]; then
    failures=$((failures + 1))
    echo "$label: mpirun exited $rc; last lines: $(tail -3 "$out/$label.log" | tr '\n' ' ')" >>"$log"
  fi
  return 0
}

for run in $(seq 1 "$runs"); do
  one_run "native-$run"
  one_run "gpucap-$run" capped
done

field() { grep -ho "^mpi_ranks .*" "$out/$1.log" 2>/dev/null | grep -o "$2=[0-9.-]*" | cut -d= -f2; }
mean() { awk '{s += $1; n++} END {if (n) printf "%.1f", s / n; else print "n/a"}'; }
echo "Start time = cuInit + primary context + first 1 MiB allocation, measured from a timestamp the shell takes"
echo "just before mpirun (so it includes mpirun's own start-up). gpucap: one region, cap $cap shared by the $np ranks."
echo
echo "| run | native p50 (ms) | native max (ms) | gpucap p50 (ms) | gpucap max (ms) |"
echo "| --- | --- | --- | --- | --- |"
for run in $(seq 1 "$runs"); do
  echo "| $run | $(field "native-$run" p50_ms) | $(field "native-$run" max_ms) | $(field "gpucap-$run" p50_ms) | $(field "gpucap-$run" max_ms) |"
done
n50=$(for r in $(seq 1 "$runs"); do field "native-$r" p50_ms; done | mean)
nmax=$(for r in $(seq 1 "$runs"); do field "native-$r" max_ms; done | mean)
g50=$(for r in $(seq 1 "$runs"); do field "gpucap-$r" p50_ms; done | mean)
gmax=$(for r in $(seq 1 "$runs"); do field "gpucap-$r" max_ms; done | mean)
echo "| mean | $n50 | $nmax | $g50 | $gmax |"
echo
echo "Ratio of the mean max, gpucap/native: $(awk -v a="$nmax" -v b="$gmax" 'BEGIN {if (a > 0) printf "%.3f", b / a; else print "n/a"}')"
echo
echo "### $np ranks fill one $cap cap in 256 MiB chunks (each gpucap run)"
echo
echo "| run | chunks per rank | granted (MiB) | contexts (MiB) | granted + contexts | charged | cap | left | idle reserves | check |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
checks_failed=0
for run in $(seq 1 "$runs"); do
  f="$out/gpucap-$run-check.txt"
  line=$(grep -h "^chunks=" "$f" 2>/dev/null)
  get() { echo "$line" | grep -o "$1=[^ ]*" | cut -d= -f2; }
  if [ -n "$line" ] && [ "$(get ok)" = 1 ]; then verdict=PASS; else verdict=FAIL; checks_failed=$((checks_failed + 1)); fi
  echo "| $run | $(get chunks) | $(get granted_mib) | $(get context_mib) | $(get sum_mib) | $(get charged_mib) | $(get limit_mib) | $(get slack_mib) | $(get reserves_mib) | $verdict |"
done
echo
for run in $(seq 1 "$runs"); do
  grep -h "^FAIL" "$out/gpucap-$run-check.txt" 2>/dev/null | sed "s/^FAIL /FAIL gpucap run $run: /"
done
[ "$failures" -eq 0 ]
record_runs=$?
if [ $record_runs -eq 0 ]; then echo "PASS every mpirun exited 0 ($runs native, $runs gpucap)"; else echo "FAIL $failures mpirun runs failed (see $log and $out/*.log)"; fi
if [ $checks_failed -eq 0 ]; then
  echo "PASS under gpucap the $np ranks never passed the cap, every rank stopped with CUDA_ERROR_OUT_OF_MEMORY, and charged = granted chunks + contexts (+ idle reserves <= 4 MiB a rank)"
else
  echo "FAIL $checks_failed of $runs capped fills failed their check"
fi
[ $record_runs -eq 0 ] && [ $checks_failed -eq 0 ]
