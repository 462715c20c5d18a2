#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Kill during start: 8 processes start together and 2 of them are SIGKILLed at
# random instants while the others start; then a fresh process starts alone.
# Native and gpucap rounds alternate and each pair shares a seed (same victims,
# same instants). The gpucap rounds share one region file, so the slots the
# victims leave must be reclaimed by the processes that come after them.
#
#   bench/gpu/run_start.sh BUILD_DIR OUTDIR
#
# BUILD_DIR holds lib/libgpucap.so and bin/gpucap. Prints a markdown section;
# logs go to OUTDIR. Exits 1 when a process failed to start or the region is
# not empty at the end (timings are reported against their target, never a
# failure: a noisy machine must not fail a correctness run).
# Environment: GPUCAP_START_ROUNDS (20), GPUCAP_START_CAP (8g).
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
usage="usage: bench/gpu/run_start.sh BUILD_DIR OUTDIR"
build="$(cd "${1:?$usage}" && pwd)" || exit 2
out="${2:?$usage}"
mkdir -p "$out" && out="$(cd "$out" && pwd)" || exit 2
cuda="${CUDA_HOME:-/usr/local/cuda}"
lib="$build/lib/libgpucap.so"
gpucap="$build/bin/gpucap"
export NCCL_NVLS_ENABLE=0
rounds="${GPUCAP_START_ROUNDS:-20}"
cap="${GPUCAP_START_CAP:-8g}"
n=8
kills=2
log="$out/start_kill.log"
: >"$log"

echo "## Kill during start: $n processes, $kills SIGKILLed at random instants, $rounds rounds"
echo
for f in "$lib" "$gpucap"; do
  [ -e "$f" ] || { echo "FAIL $f is missing (build gpucap first: tests/gpu/run.sh builds build-gpu)"; exit 1; }
done
if ! cc -std=c11 -O2 -Wall -Wextra -I"$cuda/include" "$repo/bench/gpu/start_kill.c" \
  -L"$cuda/lib64/stubs" -lcuda -o "$out/start_kill" >>"$log" 2>&1; then
  echo "FAIL compiling start_kill (see $log)"
  exit 1
fi

# A cap well above 8 contexts (8 x 640 MiB) but below what 3 rounds of
# unreclaimed victims would add on top: rounds go on only if dead slots are
# returned, by an attach-time sweep or before a refusal.
region="$out/start-kill.region"
rm -f "$region" "$region.audit"
capped=(env LD_PRELOAD="$lib" CUDA_DEVICE_MEMORY_LIMIT="$cap" CUDA_DEVICE_MEMORY_SHARED_CACHE="$region")
failures=0
one_round() { # file, round, kills, window, seed, [command prefix: capped]
  local file=$1 round=$2 victims=$3 window=$4 seed=$5 line rc
  shift 5
  line=$(timeout 120 "$@" "$out/start_kill" $n "$victims" "$window" "$seed" 2>>"$log")
  rc=$?
  echo "round=$round rc=$rc $line" >>"$file"
  echo "$(basename "$file" .txt) round=$round rc=$rc $line" >>"$log"
  [ $rc -eq 0 ] || failures=$((failures + 1))
}

# The kill window is the native start time of this machine: a victim may die
# anywhere from before cuInit to after its first allocation.
: >"$out/calibrate.txt"
for i in 1 2; do one_round "$out/calibrate.txt" "calibrate$i" 0 0 0; done
window=$(grep -o 'survivors_max_ms=[0-9.]*' "$out/calibrate.txt" | cut -d= -f2 |
  awk 'BEGIN {m = 0} {if ($1 > m) m = $1} END {printf "%d", (m < 1 ? 1 : m + 0.5)}')

: >"$out/native.txt"
: >"$out/gpucap.txt"
for round in $(seq 1 "$rounds"); do
  one_round "$out/native.txt" "$round" $kills "$window" "$round"
  one_round "$out/gpucap.txt" "$round" $kills "$window" "$round" "${capped[@]}"
done

# The region after every round: nothing alive, and once the dead slots are
# reaped nothing charged. Before the reap, how much the rounds reclaimed alone.
{
  "$gpucap" status --json --file "$region" >"$out/status-before-reap.json"
  "$gpucap" reap --json --file "$region" >"$out/reap.json"
  "$gpucap" status --json --file "$region" >"$out/status-after-reap.json"
} 2>>"$log"

python3 - "$out" "$window" "$cap" "$n" <<'EOF'
import json, re, statistics, sys

out, window, cap, processes = sys.argv[1:5]


def parse(name):
    rounds = {}
    for line in open(f"{out}/{name}"):
        fields = dict(re.findall(r"(\w+)=(\S+)", line))
        rounds[fields["round"]] = fields
    return rounds


def number(fields, key):
    try:
        value = float(fields.get(key, "-1"))
    except ValueError:
        return None
    return value if value >= 0 else None


native, capped = parse("native.txt"), parse("gpucap.txt")
calibrate = parse("calibrate.txt")
print(f"Kill window [0, {window}] ms (native start of {processes} processes, "
      f"calibration: {', '.join(f.get('survivors_max_ms', '?') for f in calibrate.values())} ms). "
      f"gpucap cap {cap}, one region file for all gpucap rounds.")
print()


def stats(rounds, key):
    values = [v for v in (number(f, key) for f in rounds.values()) if v is not None]
    if not values:
        return "n/a", "n/a"
    return f"{statistics.median(values):.1f}", f"{max(values):.1f}"


print("| start time (ms) | native p50 over rounds | native max | gpucap p50 over rounds | gpucap max |")
print("| --- | --- | --- | --- | --- |")
for label, key in (("survivors' max", "survivors_max_ms"), ("fresh single process", "fresh_ms")):
    n50, nmax = stats(native, key)
    g50, gmax = stats(capped, key)
    print(f"| {label} | {n50} | {nmax} | {g50} | {gmax} |")
print()

print("| round | victims (index@ms:phase in the gpucap round) | native survivors' max | gpucap survivors' max | gpucap - native "
      "| native fresh | gpucap fresh | failed (native/gpucap) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
worst, worst_round, worst_fresh, mid_kills = None, None, None, 0
for r in sorted(native, key=int):
    nf, gf = native[r], capped.get(r, {})
    nmax, gmax = number(nf, "survivors_max_ms"), number(gf, "survivors_max_ms")
    nfresh, gfresh = number(nf, "fresh_ms"), number(gf, "fresh_ms")
    diff = gmax - nmax if nmax is not None and gmax is not None else None
    if diff is not None and (worst is None or diff > worst):
        worst, worst_round = diff, r
    if nfresh is not None and gfresh is not None:
        d = gfresh - nfresh
        worst_fresh = d if worst_fresh is None else max(worst_fresh, d)
    mid_kills += int(gf.get("killed_mid_start", "0"))
    show = lambda v: "n/a" if v is None else f"{v:.1f}"
    print(f"| {r} | {gf.get('victims', nf.get('victims', '?'))} | {show(nmax)} | {show(gmax)} | "
          f"{show(diff)} | {show(nfresh)} | {show(gfresh)} | {nf.get('failed', '?')}/{gf.get('failed', '?')} |")
print()
if worst is None:
    print("TARGET n/a: no round has both a native and a gpucap time")
else:
    verdict = "met" if worst <= 100 else "MISSED"
    print(f"Worst round: gpucap - native = {worst:.1f} ms (round {worst_round}); "
          f"target no round slower by more than 100 ms: **{verdict}**. "
          f"Worst fresh-start difference: {'n/a' if worst_fresh is None else f'{worst_fresh:.1f}'} ms. "
          f"{mid_kills} of the gpucap victims died before finishing their start.")
print()


def load(name):
    try:
        return json.load(open(f"{out}/{name}"))
    except (OSError, ValueError) as error:
        return {"error": str(error)}


before, reap, after = load("status-before-reap.json"), load("reap.json"), load("status-after-reap.json")
ok = "error" not in before and "error" not in after and "error" not in reap
live_before = [p for p in before.get("processes", []) if p.get("alive")]
dead_before = [p for p in before.get("processes", []) if not p.get("alive")]
live_after = [p for p in after.get("processes", []) if p.get("alive")]
charged = {d["uuid"]: d["charged_bytes"] for d in after.get("devices", [])}
ok = ok and not live_before and not live_after and all(v == 0 for v in charged.values())
print(f"Region after all rounds: {len(live_before)} live processes, {len(dead_before)} dead slots awaiting "
      f"reclaim ({sum(sum(d['charged_bytes'] for d in p['devices']) for p in dead_before) >> 20} MiB), "
      f"{before.get('reclaimed_slots_total', '?')} slots ({before.get('reclaimed_bytes_total', 0) >> 20} MiB) "
      f"already reclaimed by the rounds themselves; gpucap reap returned {reap.get('reclaimed_slots', '?')} "
      f"slots ({reap.get('returned_bytes', 0) >> 20} MiB); after it charged_bytes = "
      f"{', '.join(f'{v}' for v in charged.values()) or 'n/a'}, peak "
      f"{', '.join(str(d['peak_bytes'] >> 20) + ' MiB' for d in after.get('devices', []))}.")
for name, doc in (("status before reap", before), ("reap", reap), ("status after reap", after)):
    if "error" in doc:
        print(f"({name}: {doc['error']})")
print()
print(f"{'PASS' if ok else 'FAIL'} region empty after {len(native)} gpucap rounds: no live process, "
      f"charged_bytes 0 after reap")
sys.exit(0 if ok else 1)
EOF
region_rc=$?
if [ "$failures" -ne 0 ]; then
  echo "FAIL $failures invocations had a process that failed to start or timed out (see $log)"
else
  echo "PASS every survivor and every fresh process started, native and under gpucap"
fi
[ "$failures" -eq 0 ] && [ "$region_rc" -eq 0 ]
