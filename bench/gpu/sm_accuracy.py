#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Throughput of a steady GPU workload, for measuring SM (compute) caps.

usage: sm_accuracy.py WORKLOAD SECONDS [--ticks SEC] [--barrier DIR:N]

WORKLOAD is one of
  gemm   a steady loop of one fp16 N x N matmul (N = 8192, about 1.7 ms on an
         H200); one unit = one matmul
  short  many short elementwise kernels on a 4M-element fp32 tensor (about
         10 us each), launched without synchronising so the queue stays full;
         one unit = one kernel
  graph  a CUDA graph (torch.cuda.graph) of 10 fp16 4096 x 4096 matmuls and
         10 short elementwise ops, replayed; one unit = one replay

The program sets up, waits at the barrier if one is given (every process of
a group starts together), warms up for about a second, then runs the
workload for SECONDS. It counts a unit when the GPU has completed it (a CUDA
event recorded after every few units is seen done), never when it was merely
queued, and synchronises at the end so that queued work is counted with the
time it took. Last line:

  workload=gemm seconds=6.004 units=3512 iters_per_s=584.94 gpu_us_per_unit=1702.11 gpu_busy=0.996

gpu_us_per_unit is the GPU time of one unit when units run back to back
(timed once before the run, behind a blocker so the CPU cannot starve the
GPU); gpu_busy = units x that / seconds. Uncapped it should be near 1: a
lower figure means the CPU did not keep the GPU fed and the run cannot show
a cap's effect faithfully.

With --ticks SEC it also prints, while measuring, about every SEC seconds:

  tick t=1795240049.123456 units=1234

(t: Unix time of the observation, units: completed since the measurement
began; the first tick, units=0, marks the start and the last one the end),
so that the throughput of two processes running at once can be compared over
the time both ran. Lines starting with '#' are comments.

Only torch and the standard library are used. Environment (optional):
SM_BENCH_GEMM_N, SM_BENCH_SHORT_ELEMENTS, SM_BENCH_WARMUP_S.
"""
import collections
import os
import sys
import time

USAGE = "usage: sm_accuracy.py gemm|short|graph SECONDS [--ticks SEC] [--barrier DIR:N]"


def fail(message, code=2):
    print("sm_accuracy: " + message, file=sys.stderr)
    sys.exit(code)


def parse_args(argv):
    if len(argv) < 2:
        fail(USAGE)
    workload = argv[0]
    if workload not in ("gemm", "short", "graph"):
        fail("unknown workload %r; %s" % (workload, USAGE))
    try:
        seconds = float(argv[1])
    except ValueError:
        fail("SECONDS must be a number, not %r" % argv[1])
    if not seconds > 0:
        fail("SECONDS must be more than 0")
    ticks, barrier = None, None
    rest = argv[2:]
    while rest:
        option = rest.pop(0)
        if option == "--ticks" and rest:
            ticks = float(rest.pop(0))
        elif option == "--barrier" and rest:
            spec = rest.pop(0)
            directory, _, parties = spec.rpartition(":")
            if not directory or not parties.isdigit() or int(parties) < 1:
                fail("--barrier wants DIR:N, e.g. /tmp/start:2; got %r" % spec)
            barrier = (directory, int(parties))
        else:
            fail("unexpected argument %r; %s" % (option, USAGE))
    return workload, seconds, ticks, barrier


def wait_at_barrier(directory, parties, timeout_s=300.0):
    """A start gate across processes: each leaves a file, all go once there
    are `parties` files."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "ready.%d" % os.getpid()), "w") as f:
        f.write("ready\n")
    deadline = time.monotonic() + timeout_s
    while len([n for n in os.listdir(directory) if n.startswith("ready.")]) < parties:
        if time.monotonic() > deadline:
            fail("barrier %s: fewer than %d processes arrived in %.0f s" % (directory, parties, timeout_s), 1)
        time.sleep(0.002)


class Workload:
    """step() enqueues `per_step` units; steps are grouped `batch` at a time
    behind one event; at most `depth` groups are in flight."""

    def __init__(self, name, torch):
        self.name = name
        self.torch = torch
        cuda = torch.device("cuda")
        if name == "gemm":
            n = int(os.environ.get("SM_BENCH_GEMM_N", "8192"))
            self.a = torch.randn(n, n, dtype=torch.float16, device=cuda)
            self.b = torch.randn(n, n, dtype=torch.float16, device=cuda)
            self.c = torch.empty(n, n, dtype=torch.float16, device=cuda)
            self.step = self.gemm_step
            self.per_step, self.batch, self.depth = 1, 4, 4
            self.unit = "one %dx%d fp16 matmul" % (n, n)
        elif name == "short":
            n = int(os.environ.get("SM_BENCH_SHORT_ELEMENTS", str(1 << 22)))
            self.x = torch.ones(n, dtype=torch.float32, device=cuda)
            self.step = self.short_step
            self.per_step, self.batch, self.depth = 2, 128, 8
            self.unit = "one elementwise kernel over %d fp32 elements" % n
        else:
            n = 4096
            self.a = torch.randn(n, n, dtype=torch.float16, device=cuda)
            self.b = torch.randn(n, n, dtype=torch.float16, device=cuda)
            self.c = torch.empty(n, n, dtype=torch.float16, device=cuda)
            self.x = torch.ones(1 << 22, dtype=torch.float32, device=cuda)
            self.graph = self.capture()
            self.step = self.graph.replay
            self.per_step, self.batch, self.depth = 1, 2, 4
            self.unit = "one replay of a graph of 10 %dx%d fp16 matmuls and 10 elementwise ops" % (n, n)

    def gpu_seconds_per_unit(self):
        """GPU time of one unit when units run back to back: queue them
        behind a long blocker so that the CPU has enqueued them all before
        the GPU reaches the first, and time them with events. Used to tell
        whether a run kept the GPU busy (gpu_busy in the last line)."""
        torch = self.torch
        n = 8192
        blocker = [torch.randn(n, n, dtype=torch.float16, device="cuda") for _ in range(3)]
        steps = self.batch * 2
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        for _ in range(24):  # 30-40 ms of GPU work
            torch.matmul(blocker[0], blocker[1], out=blocker[2])
        start.record()
        for _ in range(steps):
            self.step()
        end.record()
        end.synchronize()
        del blocker
        return start.elapsed_time(end) / 1000.0 / (steps * self.per_step)

    def gemm_step(self):
        self.torch.matmul(self.a, self.b, out=self.c)

    def short_step(self):
        # Two in-place scalings that cancel out, so values stay near 1.
        self.x.mul_(1.0009765625)
        self.x.mul_(0.9990243902439024)

    def graph_body(self):
        for _ in range(10):
            self.torch.matmul(self.a, self.b, out=self.c)
            self.x.mul_(1.0)

    def capture(self):
        torch = self.torch
        # Warm up on a side stream first, as torch.cuda.graph requires.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self.graph_body()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.graph_body()
        torch.cuda.synchronize()
        return graph


def run(work, seconds, ticks=None):
    """Run for `seconds`; return (completed units, elapsed seconds)."""
    torch = work.torch
    inflight = collections.deque()
    done = 0
    t0 = time.monotonic()
    wall0 = time.time()
    last_tick = t0
    if ticks:
        print("tick t=%.6f units=0" % wall0, flush=True)

    def retire():
        nonlocal done, last_tick
        event, units = inflight.popleft()
        event.synchronize()
        done += units
        if ticks:
            now = time.monotonic()
            if now - last_tick >= ticks:
                print("tick t=%.6f units=%d" % (wall0 + (now - t0), done), flush=True)
                last_tick = now

    deadline = t0 + seconds
    while time.monotonic() < deadline:
        for _ in range(work.batch):
            work.step()
        event = torch.cuda.Event()
        event.record()
        inflight.append((event, work.batch * work.per_step))
        while inflight and (len(inflight) > work.depth or inflight[0][0].query()):
            retire()
    while inflight:
        retire()
    torch.cuda.synchronize()
    elapsed = time.monotonic() - t0
    if ticks:
        print("tick t=%.6f units=%d" % (wall0 + elapsed, done), flush=True)
    return done, elapsed


def main():
    workload, seconds, ticks, barrier = parse_args(sys.argv[1:])
    import torch

    if not torch.cuda.is_available():
        fail("torch sees no CUDA device", 1)
    work = Workload(workload, torch)
    torch.cuda.synchronize()
    run(work, 0.2)
    per_unit = work.gpu_seconds_per_unit()
    print("# sm_accuracy workload=%s unit=%s device=%s torch=%s preload=%s sm_limit=%s pid=%d"
          % (workload, work.unit.replace(" ", "_"), torch.cuda.get_device_name(0).replace(" ", "_"),
             torch.__version__, "yes" if "gpucap" in os.environ.get("LD_PRELOAD", "") else "no",
             os.environ.get("CUDA_DEVICE_SM_LIMIT", "none"), os.getpid()), flush=True)
    if barrier:
        wait_at_barrier(*barrier)
    run(work, float(os.environ.get("SM_BENCH_WARMUP_S", "1.0")))
    units, elapsed = run(work, seconds, ticks)
    # gpu_busy: the share of the run the GPU spent on this workload's kernels,
    # from the back-to-back time of one unit; near 1 when uncapped (a lower
    # figure means the CPU could not keep the GPU fed). Under a cap the
    # timing itself may be throttled: read it for uncapped runs only.
    print("workload=%s seconds=%.3f units=%d iters_per_s=%.2f gpu_us_per_unit=%.2f gpu_busy=%.3f"
          % (workload, elapsed, units, units / elapsed, per_unit * 1e6, units * per_unit / elapsed), flush=True)


if __name__ == "__main__":
    main()
