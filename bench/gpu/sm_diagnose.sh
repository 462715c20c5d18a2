#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Diagnostic for the SM cap: SM clock and power during an uncapped and a
# 50%-capped gemm run, then two tenants (30, 70) with gpucap status sampled
# every 2 s (duty and measured share). Run from the repo root after
# tests/gpu/run.sh has built build-gpu. About 40 s.
B=build-gpu; L=$B/lib/libgpucap.so; D=/tmp/dg; rm -rf $D; mkdir -p $D
echo "== clocks: uncapped gemm, then cap 50"
for cap in 0 50; do
  env LD_PRELOAD=$L CUDA_DEVICE_SM_LIMIT=$cap CUDA_DEVICE_MEMORY_SHARED_CACHE=$D/c$cap python3 bench/gpu/sm_accuracy.py gemm 6 > $D/g$cap.log 2>&1 &
  sleep 3; nvidia-smi --query-gpu=clocks.sm,power.draw,utilization.gpu --format=csv,noheader; sleep 1; nvidia-smi --query-gpu=clocks.sm,power.draw,utilization.gpu --format=csv,noheader; wait; grep iters $D/g$cap.log
done
echo "== two tenants with status samples"
env LD_PRELOAD=$L CUDA_DEVICE_SM_LIMIT=30 CUDA_DEVICE_MEMORY_SHARED_CACHE=$D/a GPUCAP_LOG_LEVEL=3 python3 bench/gpu/sm_accuracy.py gemm 14 > $D/a.log 2>&1 &
env LD_PRELOAD=$L CUDA_DEVICE_SM_LIMIT=70 CUDA_DEVICE_MEMORY_SHARED_CACHE=$D/b GPUCAP_LOG_LEVEL=3 python3 bench/gpu/sm_accuracy.py gemm 14 > $D/b.log 2>&1 &
for i in 1 2 3 4 5 6 7; do sleep 2; for r in a b; do $B/bin/gpucap status --json --file $D/$r 2>&1 | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sys.argv[1], [(x.get("sm_limit_percent"), x.get("sm_duty_ratio"), x.get("sm_share_ratio")) for x in d["devices"]])' $r; done; nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader; done
wait; grep -h iters $D/a.log $D/b.log; grep -h "gpucap" $D/a.log | head -20
