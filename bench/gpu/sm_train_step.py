#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Training steps per second of a small transformer, to measure what the
preload library costs a real training loop.

usage: sm_train_step.py [--batch N] [SECONDS]   (default 6)
       sm_train_step.py [--batch N] --serve     (turns driven by interleaved.py)

Model: token embedding, nn.TransformerEncoder (d_model 512, 8 heads,
feed-forward 2048, 6 layers, batch_first), a linear head over a vocabulary
of 8192 tokens and cross-entropy loss; batch N (32 unless --batch) x
sequence 256 of random tokens; AdamW; bf16 autocast. At batch 32 an H100
is busy about a third of the time (the host's Python and launches set the
pace); batch 128 gives the GPU four times the work per step. One step =
forward, backward, optimizer step,
synchronised every BLOCK (10) steps, as a loop that reads its loss now and
then does.

After 30 warm-up steps it runs blocks for SECONDS, synchronises (so queued
work counts with the time it took) and prints one line:

  steps=510 seconds=6.011 steps_per_s=84.84 block_median_steps_per_s=85.30

block_median_steps_per_s is the median over the run's blocks. A host hiccup
(another process, a page fault storm) slows a few blocks and moves the mean,
not the median, so paired runs compare the cost of the code, not the host.

With --serve it warms up, prints "ready", then answers each line "run S"
on stdin with one such line for S seconds of steps, until "quit" or the end
of its input: several of these, one per side, take turns on the GPU.

Lines starting with '#' are comments. Only torch and the standard library
are used.
"""
import os
import sys
import time

BLOCK = 10


def parse_args(argv):
    """(mode, seconds, batch): mode 'serve' or 'once'; exits with usage on anything else."""
    usage = "usage: sm_train_step.py [--batch N] [SECONDS | --serve]"
    batch = 32
    if len(argv) >= 2 and argv[0] == "--batch":
        try:
            batch = int(argv[1])
        except ValueError:
            batch = 0
        if batch <= 0:
            print("sm_train_step: --batch must be a positive whole number, not %r" % argv[1], file=sys.stderr)
            sys.exit(2)
        argv = argv[2:]
    if len(argv) > 1 or (argv and argv[0] in ("-h", "--help", "--batch")):
        print(usage, file=sys.stderr)
        sys.exit(2)
    if argv and argv[0] == "--serve":
        return "serve", None, batch
    if not argv:
        return "once", 6.0, batch
    try:
        return "once", float(argv[0]), batch
    except ValueError:
        print("sm_train_step: SECONDS must be a number, not %r" % argv[0], file=sys.stderr)
        sys.exit(2)


def make_step(torch, batch):
    from transformer import VOCAB as vocab, build

    torch.manual_seed(0)
    cuda = torch.device("cuda")
    seq = 256
    model, optimizer, loss_fn = build(torch)
    tokens = torch.randint(0, vocab, (batch, seq), device=cuda)
    targets = torch.randint(0, vocab, (batch, seq), device=cuda)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            logits = model(tokens)
            loss = loss_fn(logits.reshape(-1, vocab).float(), targets.reshape(-1))
        loss.backward()
        optimizer.step()

    return step


def run_blocks(torch, step, seconds):
    """Blocks of BLOCK steps for about SECONDS; the result line."""
    steps = 0
    block_rates = []
    t0 = time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        b0 = time.monotonic()
        for _ in range(BLOCK):
            step()
        torch.cuda.synchronize()
        block_rates.append(BLOCK / (time.monotonic() - b0))
        steps += BLOCK
    elapsed = time.monotonic() - t0
    block_rates.sort()
    n = len(block_rates)
    median = block_rates[n // 2] if n % 2 else (block_rates[n // 2 - 1] + block_rates[n // 2]) / 2
    return "steps=%d seconds=%.3f steps_per_s=%.2f block_median_steps_per_s=%.2f" % (
        steps, elapsed, steps / elapsed, median)


def serve(torch, step):
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] != "run" or len(words) != 2:
            print("sm_train_step: expected 'run SECONDS' or 'quit', got %r" % line.strip(), file=sys.stderr)
            sys.exit(2)
        print(run_blocks(torch, step, float(words[1])), flush=True)


def main():
    mode, seconds, batch = parse_args(sys.argv[1:])
    import torch

    if not torch.cuda.is_available():
        print("sm_train_step: torch sees no CUDA device", file=sys.stderr)
        sys.exit(1)
    step = make_step(torch, batch)
    for _ in range(30):
        step()
    torch.cuda.synchronize()
    print("# sm_train_step device=%s torch=%s preload=%s sm_limit=%s batch=%d pid=%d"
          % (torch.cuda.get_device_name(0).replace(" ", "_"), torch.__version__,
             "yes" if "gpucap" in os.environ.get("LD_PRELOAD", "") else "no",
             os.environ.get("CUDA_DEVICE_SM_LIMIT", "none"), batch, os.getpid()), flush=True)
    if mode == "serve":
        serve(torch, step)
    else:
        print(run_blocks(torch, step, seconds), flush=True)


if __name__ == "__main__":
    main()
