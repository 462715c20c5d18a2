#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Run every benchmark in sequence and print their tables. Builds nothing.
#   usage: bash bench/run.sh BUILD_DIR [--dir DIR]
# BUILD_DIR is a CMake build of this repository (Release recommended);
# --dir picks where region files are created (default: $TMPDIR or /tmp).
# Save the output as bench/results/YYYY-MM-DD-<machine>-<what>.md.
set -u

if [ $# -lt 1 ] || [ ! -d "$1/bench" ]; then
	echo "usage: bash bench/run.sh BUILD_DIR [--dir DIR]" >&2
	echo "BUILD_DIR must contain bench/ (configure and build the repository first)" >&2
	exit 2
fi
bin="$1/bench"
shift
extra=("$@")

status=0
run() {
	echo
	echo "\$ $*"
	"$@" || { echo "(exit status $?)"; status=1; }
}

echo "# gpucap benchmarks: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), nproc $(nproc)"
echo "# kernel: $(uname -srm)"
if rev=$(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null); then
	echo "# commit: $rev"
fi
cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')
[ -n "$cpu" ] && echo "# cpu: $cpu"

# About 30 s on 16 cores: 40 points x 0.5 s for the pair benchmark, a few
# seconds of forks for attach, 10 points x 0.5 s of thread scaling.
run "$bin/bench_reserve" --contenders 1,2,4,8,16 --duration-ms 500 ${extra[@]+"${extra[@]}"}
run "$bin/bench_attach" --processes 1,8,64 --reps 10 ${extra[@]+"${extra[@]}"}
run "$bin/bench_exact_counting" --threads 100 --pairs 1000 --scaling 1,2,4,8,12 --duration-ms 500 ${extra[@]+"${extra[@]}"}
exit $status
