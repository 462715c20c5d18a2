#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Sides of a benchmark that take turns on one GPU, each in a process that
lives through the whole run, so that a ratio compares the code and not two
processes.

usage: interleaved.py [--rounds N] [--seconds S] [--settle K] [--logdir DIR]
                      --side 'LABEL=[VAR=VALUE ...]' [--side ...] -- CMD ...

Every side starts CMD once, with its VAR=VALUE pairs added to the
environment (the first side is the baseline; give it none for native). CMD
speaks sm_train_step.py's --serve protocol: it prints "ready" after its
warm-up, then answers each "run S" with one line of NAME=NUMBER fields.
Then N rounds (after K rounds left out while clocks settle): in each, every
side runs S seconds in turn, in an order rotated each round so that no side
always follows the same one, while the others wait idle.

Why: on the device machines a training step's rate moved by up to 65% from
one process to the next, the same code on the same GPU, so runs in separate
processes could not show a 1% cost. Here every side keeps its process, and
each round's ratio compares turns seconds apart; the spread of those ratios
(the printed interval) says what the run resolves. The sides' idle
processes stay resident; a preloaded one's background thread (the memory
reconciler's NVML query) then runs during the others' turns too.

Prints each turn's line, then per side and field the mean and the paired
ratio to the baseline with its 95% interval (paired_ratio.py). Lines
starting with '#' from CMD are copied to DIR/side-N.log with its stderr.
Exits 1 if a side fails to start or answer in time (bounded: 120 s for the
warm-up, 4 x S + 60 s for a turn).
"""
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paired_ratio import summary  # noqa: E402

READY_TIMEOUT_S = 120.0


def parse_args(argv):
    opts = {"rounds": 20, "seconds": 1.0, "settle": 1, "logdir": None, "sides": []}
    usage = ("usage: interleaved.py [--rounds N] [--seconds S] [--settle K] [--logdir DIR] "
             "--side 'LABEL=[VAR=VALUE ...]' ... -- CMD ...")
    i = 0
    try:
        while i < len(argv) and argv[i] != "--":
            name = argv[i]
            value = argv[i + 1]
            if name == "--rounds":
                opts["rounds"] = int(value)
            elif name == "--seconds":
                opts["seconds"] = float(value)
            elif name == "--settle":
                opts["settle"] = int(value)
            elif name == "--logdir":
                opts["logdir"] = value
            elif name == "--side":
                label, _, spec = value.partition("=")
                env = dict(pair.split("=", 1) for pair in spec.split())
                opts["sides"].append((label, env))
            else:
                raise ValueError(name)
            i += 2
    except (IndexError, ValueError):
        print(usage, file=sys.stderr)
        sys.exit(2)
    cmd = argv[i + 1:]
    if not cmd or len(opts["sides"]) < 2 or opts["rounds"] < 2 or opts["seconds"] <= 0:
        print(usage + "\n(two sides at least, two rounds at least, a command)", file=sys.stderr)
        sys.exit(2)
    return opts, cmd


class Side:
    def __init__(self, index, label, env, cmd, logdir):
        self.label = label
        self.log = open(os.path.join(logdir, "side-%d.log" % index), "w") if logdir else subprocess.DEVNULL
        full_env = dict(os.environ)
        full_env.update(env)
        self.proc = subprocess.Popen(cmd, env=full_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log)
        self.pending = b""
        self.values = {}  # field -> [value per counted round]

    def read_line(self, timeout_s):
        """The next line that is not a comment, or None at the deadline or the end.
        Reads the pipe itself: a buffered reader would hold lines that select
        no longer sees."""
        deadline = time.monotonic() + timeout_s
        while True:
            while b"\n" not in self.pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                ready, _, _ = select.select([self.proc.stdout], [], [], left)
                if not ready:
                    return None
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    return None
                self.pending += chunk
            raw, _, self.pending = self.pending.partition(b"\n")
            line = raw.decode(errors="replace")
            if line.startswith("#"):
                if self.log is not subprocess.DEVNULL:
                    self.log.write(line + "\n")
                    self.log.flush()
                continue
            return line.strip()

    def turn(self, seconds):
        self.proc.stdin.write(b"run %g\n" % seconds)
        self.proc.stdin.flush()
        return self.read_line(4 * seconds + 60)

    def stop(self):
        try:
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def fields(line):
    out = {}
    for word in line.split():
        name, eq, value = word.partition("=")
        if eq:
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def main():
    opts, cmd = parse_args(sys.argv[1:])
    if opts["logdir"]:
        os.makedirs(opts["logdir"], exist_ok=True)
    sides = [Side(i, label, env, cmd, opts["logdir"]) for i, (label, env) in enumerate(opts["sides"])]
    status = 0
    try:
        for side in sides:
            line = side.read_line(READY_TIMEOUT_S)
            if line != "ready":
                print("interleaved: side %r did not start (said %r); see its log" % (side.label, line),
                      file=sys.stderr)
                return 1
        total = opts["settle"] + opts["rounds"]
        for r in range(total):
            counted = r >= opts["settle"]
            order = sides[r % len(sides):] + sides[:r % len(sides)]
            for side in order:
                line = side.turn(opts["seconds"])
                if line is None:
                    print("interleaved: side %r gave no answer to its turn in round %d" % (side.label, r),
                          file=sys.stderr)
                    return 1
                print("round=%d%s side=%r %s" % (r, "" if counted else " (settling)", side.label, line),
                      flush=True)
                if counted:
                    for name, value in fields(line).items():
                        side.values.setdefault(name, []).append(value)
        base = sides[0]
        for name in sorted(base.values):
            if not name.endswith("_per_s"):
                continue
            print("%s, mean per side: %s" % (name, "; ".join(
                "%s %.2f" % (s.label, sum(s.values.get(name, [0])) / max(1, len(s.values.get(name, []))))
                for s in sides)))
            for side in sides[1:]:
                pairs = zip(base.values[name], side.values.get(name, []))
                ratios = [other / b for b, other in pairs if b > 0]
                print(summary("%s, %s / %s" % (name, side.label, base.label), ratios))
    finally:
        for side in sides:
            side.stop()
    return status


if __name__ == "__main__":
    sys.exit(main())
