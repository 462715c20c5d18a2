#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A workload set for SM caps on work that leaves gaps on the GPU.

usage: sm_share.py WORKLOAD SECONDS [--barrier DIR:N]

WORKLOAD is one of
  train   a training step of a 6-layer transformer (d_model 512, 8 heads,
          feed-forward 2048), bf16 autocast, batch 16 x 256, AdamW, then the
          host work a real loop does between steps: the loss is read back
          (a synchronisation) and the next batch is made on the CPU and
          copied over; one unit = one step
  launch  a launch-bound loop: 200 small elementwise kernels on a 64K-element
          tensor, then a synchronisation; one unit = one loop of 200
  graphs  inference-style: a CUDA graph of 40 small kernels (matmuls of
          512 x 512 and elementwise ops) replayed once per request, each
          request synchronised; one unit = one replay
  gemm    saturating: bf16 4096 x 4096 matmuls on 4 streams, never
          synchronised inside the loop; one unit = 4 matmuls (at 2048 x
          2048 a matmul took about as long on an H100 as Python took to
          issue it, and the native busy share moved from 61% to 99% with
          the host's load)
  long    one kernel of about 50 ms (torch.cuda._sleep), back to back,
          synchronised every 4; one unit = one kernel

The program sets up, waits at the barrier if one is given (the processes of
a group start together), warms up for SM_SHARE_WARMUP_S seconds (default 20:
a cap's controller settles and calibrates its weight in its first ~6 s, and
a figure that moved the duty is measured again 3 s after it, up to twice.
On an H100 a GEMM capped at 30% started the hold for its third figure
14.9 s into the warm-up; with the hold (2 s) and the burst (0.86 s) that
figure comes near 18 s. An 11 s warm-up left its second burst and most of
that hold, but not the burst that pays the hold back, in the window), then runs for SECONDS and
synchronises so that queued work counts with the time it took. It prints

  window start=<unix s> end=<unix s>
  workload=train seconds=6.002 units=300 units_per_s=49.98

SM_SHARE_LATE_S (default 0) makes it arrive late: it idles that long after
the barrier and warms up for the rest of the warm-up, so that a group whose
members start at different times still measures one window.

With SM_SHARE_STATUS_CMD and SM_SHARE_STATUS_OUT set, it runs that shell
command once at the middle of the measured window, its output to that file
(run_share.sh takes `gpucap status --json` so: the controller's state while
the window runs, not after it).

Lines starting with '#' are comments. Only torch and the standard library.
"""
import os
import sys
import time

WORKLOADS = ("train", "launch", "graphs", "gemm", "long")


def fail(message, code=2):
    print("sm_share: " + message, file=sys.stderr)
    sys.exit(code)


def parse_args(argv):
    if len(argv) < 2 or argv[0] not in WORKLOADS:
        fail("usage: sm_share.py %s SECONDS [--barrier DIR:N]" % "|".join(WORKLOADS))
    try:
        seconds = float(argv[1])
    except ValueError:
        fail("SECONDS must be a number, not %r" % argv[1])
    barrier = None
    rest = argv[2:]
    if rest:
        if len(rest) != 2 or rest[0] != "--barrier" or ":" not in rest[1]:
            fail("expected --barrier DIR:N, got %r" % " ".join(rest))
        directory, parties = rest[1].rsplit(":", 1)
        barrier = (directory, int(parties))
    return argv[0], seconds, barrier


def wait_at_barrier(directory, parties, timeout_s=300.0):
    os.makedirs(directory, exist_ok=True)
    open(os.path.join(directory, str(os.getpid())), "w").close()
    deadline = time.monotonic() + timeout_s
    while len(os.listdir(directory)) < parties:
        if time.monotonic() > deadline:
            fail("barrier %s: fewer than %d processes arrived" % (directory, parties), 1)
        time.sleep(0.01)


def make_train(torch):
    from transformer import VOCAB as vocab, build

    cuda = torch.device("cuda")
    batch, seq = 16, 256
    model, optimizer, loss_fn = build(torch)
    generator = torch.Generator().manual_seed(0)

    def next_batch():
        # Host work between steps: a batch made on the CPU (tokenising,
        # shuffling) and copied over.
        tokens = torch.randint(0, vocab, (batch, seq + 1), generator=generator)
        tokens = tokens.sort(dim=1).values.flip(1)
        return tokens[:, :-1].to(cuda, non_blocking=True), tokens[:, 1:].to(cuda, non_blocking=True)

    data = [next_batch()]

    def step():
        tokens, targets = data[0]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            logits = model(tokens)
            loss = loss_fn(logits.reshape(-1, vocab).float(), targets.reshape(-1))
        loss.backward()
        optimizer.step()
        loss.item()  # logged every step: a synchronisation
        data[0] = next_batch()

    return step


def make_launch(torch):
    x = torch.zeros(65536, device="cuda")

    def step():
        for _ in range(200):
            x.add_(1.0)
        torch.cuda.synchronize()

    return step


def make_graphs(torch):
    cuda = torch.device("cuda")
    w = [torch.randn(512, 512, device=cuda, dtype=torch.float16) for _ in range(20)]
    x = torch.randn(512, 512, device=cuda, dtype=torch.float16)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            y = x
            for m in w:
                y = torch.relu(y @ m)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = x
        for m in w:
            y = torch.relu(y @ m)

    def step():
        graph.replay()
        torch.cuda.synchronize()

    return step


def make_gemm(torch):
    cuda = torch.device("cuda")
    streams = [torch.cuda.Stream() for _ in range(4)]
    a = [torch.randn(4096, 4096, device=cuda, dtype=torch.bfloat16) for _ in streams]
    b = [torch.randn(4096, 4096, device=cuda, dtype=torch.bfloat16) for _ in streams]
    out = [None] * len(streams)
    count = [0]

    def step():
        for i, s in enumerate(streams):
            with torch.cuda.stream(s):
                out[i] = a[i] @ b[i]
        count[0] += 1
        if count[0] % 16 == 0:
            # Keep the queue bounded so the end-of-run drain is short.
            for s in streams:
                s.synchronize()

    return step


def make_long(torch):
    # Cycles for about 50 ms, measured once on this GPU.
    probe = 10_000_000
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(probe)
    start.record()
    torch.cuda._sleep(probe)
    end.record()
    end.synchronize()
    cycles = int(probe * 50.0 / max(start.elapsed_time(end), 1e-3))
    print("# long: %d cycles per kernel" % cycles, flush=True)
    count = [0]

    def step():
        torch.cuda._sleep(cycles)
        count[0] += 1
        if count[0] % 4 == 0:
            torch.cuda.synchronize()

    return step


def status_at(when):
    """SM_SHARE_STATUS_CMD at monotonic time `when`, on a thread; None if unset."""
    command = os.environ.get("SM_SHARE_STATUS_CMD")
    path = os.environ.get("SM_SHARE_STATUS_OUT")
    if not command or not path:
        return None
    import subprocess
    import threading

    def run():
        time.sleep(max(0.0, when - time.monotonic()))
        with open(path, "w") as out:
            subprocess.run(command, shell=True, stdout=out, stderr=subprocess.STDOUT, check=False)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def main():
    workload, seconds, barrier = parse_args(sys.argv[1:])
    import torch

    if not torch.cuda.is_available():
        fail("torch sees no CUDA device", 1)
    torch.manual_seed(0)
    step = {"train": make_train, "launch": make_launch, "graphs": make_graphs, "gemm": make_gemm,
            "long": make_long}[workload](torch)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    print("# sm_share %s preload=%s sm_limit=%s pid=%d" % (
        workload, "yes" if "gpucap" in os.environ.get("LD_PRELOAD", "") else "no",
        os.environ.get("CUDA_DEVICE_SM_LIMIT", "none"), os.getpid()), flush=True)
    if barrier:
        wait_at_barrier(*barrier)
    warmup = float(os.environ.get("SM_SHARE_WARMUP_S", "20"))
    late = float(os.environ.get("SM_SHARE_LATE_S", "0"))
    if not 0 <= late < warmup:
        fail("SM_SHARE_LATE_S=%s: give seconds from 0 to less than the warm-up (%s)" % (late, warmup))
    # Arriving late, the warm-up is shorter: the group measures one window.
    time.sleep(late)
    deadline = time.monotonic() + warmup - late
    while time.monotonic() < deadline:
        step()
    torch.cuda.synchronize()
    units = 0
    t0 = time.monotonic()
    wall0 = time.time()
    deadline = t0 + seconds
    snapshot = status_at(t0 + seconds / 2)
    while time.monotonic() < deadline:
        step()
        units += 1
    torch.cuda.synchronize()
    elapsed = time.monotonic() - t0
    if snapshot:
        snapshot.join(timeout=10)
    print("window start=%.3f end=%.3f" % (wall0, wall0 + elapsed), flush=True)
    print("workload=%s seconds=%.3f units=%d units_per_s=%.3f" % (workload, elapsed, units, units / elapsed),
          flush=True)


if __name__ == "__main__":
    main()
