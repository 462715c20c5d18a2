#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""How an fp16 GEMM's GPU time per matmul depends on load, and how fast it settles
when a duty-cycled GPU goes to full load (the measurement behind the SM work
weight, docs/compute-caps.md). Native, no gpucap: python3 bench/gpu/sm_clock_settle.py"""
import torch, time, sys
torch.backends.cuda.matmul.allow_tf32 = False
n = 8192
a = torch.randn(n, n, device='cuda', dtype=torch.half)
b = torch.randn(n, n, device='cuda', dtype=torch.half)
c = torch.empty(n, n, device='cuda', dtype=torch.half)
def unit(): torch.matmul(a, b, out=c)
for _ in range(50): unit()
torch.cuda.synchronize()

def duty(d, seconds, on_units=2):
    """run on_units, wait for them, sleep to give duty d; returns per-unit GPU time"""
    t_end = time.time() + seconds
    evs = []
    while time.time() < t_end:
        s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
        t0 = time.time(); s.record()
        for _ in range(on_units): unit()
        e.record(); e.synchronize(); on = time.time() - t0
        evs.append(s.elapsed_time(e) / on_units)
        time.sleep(on * (1 / d - 1))
    return sum(evs[len(evs)//2:]) / len(evs[len(evs)//2:])

def burst(count):
    evs = [torch.cuda.Event(enable_timing=True) for _ in range(count + 1)]
    evs[0].record()
    for i in range(count):
        unit(); evs[i+1].record()
    torch.cuda.synchronize()
    t = [evs[0].elapsed_time(e) for e in evs[1:]]
    per = [t[0]] + [t[i] - t[i-1] for i in range(1, count)]
    return t, per

for d in (0.1, 0.3, 0.5, 0.7, 0.9):
    r = duty(d, 2.5)
    print(f"duty {d}: per-unit {r:.3f} ms", flush=True)
# full-load steady
t, per = burst(1500)
print(f"steady full: per-unit {sum(per[-500:])/500:.3f} ms")
for d in (0.1, 0.3, 0.5):
    for rep in range(2):
        r = duty(d, 2.0)
        t, per = burst(600)
        bins = {}
        for ti, p in zip(t, per):
            k = int(ti // 20)
            bins.setdefault(k, []).append(p)
        line = " ".join(f"{k*20}:{sum(v)/len(v):.3f}" for k, v in sorted(bins.items()) if k % 2 == 0 or k < 10)
        print(f"after duty {d} (unit {r:.3f}): burst ms:unit_ms {line}", flush=True)
