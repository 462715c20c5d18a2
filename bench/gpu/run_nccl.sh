#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# NCCL all-reduce with torchrun, one rank per GPU, natively and under gpucap
# (all ranks share one region file, a cap per device), alternating, 2 runs
# each; then one more gpucap run that checks what the region charged against
# NVML and that the cap holds (see nccl_allreduce.py).
#
#   bench/gpu/run_nccl.sh BUILD_DIR OUTDIR NRANKS
#
# For machines with NRANKS GPUs or more. Prints a markdown section; exits 1
# when a run fails or a check fails (the bandwidth ratio is reported against
# its target, never a failure).
# Environment: GPUCAP_NCCL_CAP (16g), GPUCAP_NCCL_RUNS (2).
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
usage="usage: bench/gpu/run_nccl.sh BUILD_DIR OUTDIR NRANKS"
build="$(cd "${1:?$usage}" && pwd)" || exit 2
out="${2:?$usage}"
nranks="${3:?$usage}"
mkdir -p "$out" && out="$(cd "$out" && pwd)" || exit 2
lib="$build/lib/libgpucap.so"
gpucap="$build/bin/gpucap"
cap="${GPUCAP_NCCL_CAP:-16g}"
runs="${GPUCAP_NCCL_RUNS:-2}"
export NCCL_NVLS_ENABLE=0
# CUDA's ordinals in nvidia-smi's order, so a rank can find its GPU's UUID
# even where torch cannot tell it.
export CUDA_DEVICE_ORDER=PCI_BUS_ID
export OMP_NUM_THREADS=1
log="$out/nccl.log"
: >"$log"

echo "## NCCL all-reduce, $nranks ranks (one per GPU, torchrun)"
echo
for f in "$lib" "$gpucap"; do
  [ -e "$f" ] || { echo "FAIL $f is missing (build gpucap first: tests/gpu/run.sh builds build-gpu)"; exit 1; }
done
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if [ "$gpus" -lt "$nranks" ]; then
  echo "FAIL $nranks ranks need $nranks GPUs; this machine has $gpus"
  exit 1
fi
if command -v torchrun >/dev/null; then launcher=(torchrun); else launcher=(python3 -m torch.distributed.run); fi
scratch=$(mktemp -d /tmp/gpucap-nccl.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

failures=0
one_run() { # label, capped (0|1), extra arguments for the benchmark...
  local label=$1 capped=$2 pre=() rc t0
  shift 2
  rm -f "$out/$label.json"
  if [ "$capped" = 1 ]; then
    local region="$scratch/$label.region"
    pre=(env LD_PRELOAD="$lib" CUDA_DEVICE_MEMORY_LIMIT="$cap" CUDA_DEVICE_MEMORY_SHARED_CACHE="$region"
      GPUCAP_BIN="$gpucap" GPUCAP_REGION="$region")
  fi
  t0=$(date +%s%N)
  GPUCAP_T0_NS=$t0 timeout 240 "${pre[@]}" "${launcher[@]}" --standalone --nproc_per_node="$nranks" \
    "$repo/bench/gpu/nccl_allreduce.py" --label "$label" --out "$out" "$@" >"$out/$label.log" 2>&1
  rc=$?
  echo "$label rc=$rc $(grep -h '^RESULT' "$out/$label.log")" >>"$log"
  if [ "$capped" = 1 ]; then
    "$gpucap" status --json --file "$region" >"$out/$label-region.json" 2>>"$log"
  fi
  if [ $rc -ne 0 ]; then
    failures=$((failures + 1))
    echo "$label: exited $rc; last lines:" >>"$log"
    tail -20 "$out/$label.log" >>"$log"
  fi
  return 0
}

for run in $(seq 1 "$runs"); do
  one_run "native-$run" 0
  one_run "gpucap-$run" 1
done
one_run gpucap-check 1 --check

python3 - "$out" "$runs" "$cap" "$nranks" <<'EOF'
import json, os, statistics, sys

out, runs, cap, nranks = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
MiB = 1 << 20


def load(label):
    try:
        return json.load(open(os.path.join(out, f"{label}.json")))
    except (OSError, ValueError):
        return None


def show(value, digits=1):
    return "n/a" if value is None else f"{value:.{digits}f}"


print(f"Start = from a timestamp the shell takes just before torchrun to the first all-reduce "
      f"completing (python and torch start-up included). Bus bandwidth of a 256 MiB float32 "
      f"all-reduce, 20 timed iterations after 5 warm-up. gpucap: one region for all ranks, "
      f"cap {cap} per device.")
print()
print("| run | first all-reduce, rank 0 (ms) | first all-reduce, max over ranks (ms) | busbw (GB/s) | algbw (GB/s) |")
print("| --- | --- | --- | --- | --- |")
columns = {"native": {"first": [], "max": [], "busbw": []}, "gpucap": {"first": [], "max": [], "busbw": []}}
for run in range(1, runs + 1):
    for kind in ("native", "gpucap"):
        doc = load(f"{kind}-{run}")
        if doc is None:
            print(f"| {kind} {run} | failed | | | |")
            continue
        columns[kind]["first"].append(doc["first_allreduce_rank0_ms"])
        columns[kind]["max"].append(doc["first_allreduce_max_ms"])
        columns[kind]["busbw"].append(doc["busbw_gbps"])
        print(f"| {kind} {run} | {show(doc['first_allreduce_rank0_ms'])} | "
              f"{show(doc['first_allreduce_max_ms'])} | {show(doc['busbw_gbps'], 2)} | {show(doc['algbw_gbps'], 2)} |")
means = {k: {m: (statistics.mean(v) if v else None) for m, v in c.items()} for k, c in columns.items()}
for kind in ("native", "gpucap"):
    m = means[kind]
    print(f"| {kind} mean | {show(m['first'])} | {show(m['max'])} | {show(m['busbw'], 2)} | |")
print()
nb, gb = means["native"]["busbw"], means["gpucap"]["busbw"]
if nb and gb:
    ratio = gb / nb
    print(f"busbw ratio gpucap/native: {ratio:.3f} (target >= 0.98: **{'met' if ratio >= 0.98 else 'MISSED'}**). "
          f"Start, max over ranks: gpucap - native = {means['gpucap']['max'] - means['native']['max']:.0f} ms.")
else:
    print("busbw ratio gpucap/native: n/a (a run failed)")
print()

check = load("gpucap-check")
ok = check is not None
print(f"### Under gpucap after the benchmark (check run: busbw {show(check and check['busbw_gbps'], 2)} GB/s)")
print()
if check is None:
    print("FAIL the check run wrote no result (see nccl.log)")
else:
    print("Growth = since just before the process group was created (context and a first tensor already "
          "there on both sides).")
    print()
    print("| rank | GPU | torch reserved | region: device charged | region: rank's process | NVML: rank's process "
          "| growth: torch reserved | growth: region (process) | growth: NVML | non-torch growth: region / NVML |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")

    def mib(v):
        return "n/a" if v is None else f"{v / MiB:.0f} MiB"

    def grown(r, key):
        b, a = r["baseline"].get(key), r["after"].get(key)
        return None if b is None or a is None else a - b

    for r in sorted(check["per_rank"], key=lambda r: r["rank"]):
        a = r["after"]
        gr, gc, gn = grown(r, "reserved"), grown(r, "process_charged"), grown(r, "nvml_used")
        other = (f"{mib(gc - gr)} / {mib(gn - gr)}" if None not in (gr, gc, gn) else "n/a")
        print(f"| {r['rank']} | {(r.get('uuid') or '?')[:12]} | {mib(a['reserved'])} | {mib(a['device_charged'])} "
              f"| {mib(a['process_charged'])} | {mib(a['nvml_used'])} | {mib(gr)} | {mib(gc)} | {mib(gn)} | {other} |")
    print()
    print("The region charges each context a fixed 640 MiB (GPUCAP_CONTEXT_BYTES), so absolute values differ "
          "from NVML's by the real context size; the growth columns compare like with like. NVML also counts "
          "driver memory no allocation call asks for (kernel code, local memory), which the region cannot see.")
    print()
    for c in check["checks"]:
        ok = ok and c["ok"]
        print(f"{'PASS' if c['ok'] else 'FAIL'} {c['name']}" + (f": {c['detail']}" if c.get("detail") else ""))
for run in range(1, runs + 1):
    for kind in ("native", "gpucap"):
        doc = load(f"{kind}-{run}")
        for c in (doc or {}).get("checks", []):
            if not c["ok"]:
                ok = False
                print(f"FAIL {kind} {run}: {c['name']}")
sys.exit(0 if ok else 1)
EOF
checks_rc=$?
if [ "$failures" -eq 0 ]; then
  echo "PASS every torchrun exited 0 ($runs native, $runs gpucap, 1 gpucap check run)"
else
  echo "FAIL $failures torchrun runs failed (see $log)"
fi
[ "$failures" -eq 0 ] && [ "$checks_rc" -eq 0 ]
