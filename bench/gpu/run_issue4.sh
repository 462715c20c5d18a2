#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The one-GPU part of issue 4, in one command: kill during start
# (bench/gpu/run_start.sh), identity in PID namespaces
# (tests/gpu/identity_ns.sh, as root) and 8 MPI ranks sharing a cap
# (bench/gpu/run_mpi.sh). Each prints its own markdown section.
#
#   bench/gpu/run_issue4.sh BUILD_DIR OUTDIR
#
# The multi-GPU part runs separately, on a machine with 2 or 4 GPUs:
#   bench/gpu/run_nccl.sh BUILD_DIR OUTDIR NRANKS
#
# Exits 1 when any of the three failed. About 4 minutes on an H100/H200.
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
usage="usage: bench/gpu/run_issue4.sh BUILD_DIR OUTDIR"
build="$(cd "${1:?$usage}" && pwd)" || exit 2
out="${2:?$usage}"
mkdir -p "$out" && out="$(cd "$out" && pwd)" || exit 2
export NCCL_NVLS_ENABLE=0

echo "# issue 4 on one GPU: $(date -u +%FT%TZ), $(hostname), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader -i 0 2>/dev/null)"
echo
status=0
for part in "bench/gpu/run_start.sh start" "tests/gpu/identity_ns.sh identity" "bench/gpu/run_mpi.sh mpi"; do
  script=${part% *}
  name=${part#* }
  began=$(date +%s)
  bash "$repo/$script" "$build" "$out/$name"
  rc=$?
  echo
  echo "($script: exit $rc, $(($(date +%s) - began)) s)"
  echo
  [ $rc -eq 0 ] || status=1
done
if [ $status -eq 0 ]; then echo "issue 4 (one GPU): all passed"; else echo "issue 4 (one GPU): FAILED"; fi
exit $status
