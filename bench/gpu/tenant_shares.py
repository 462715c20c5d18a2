#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Throughput shares of tenants that ran sm_accuracy.py --ticks at once.

usage: tenant_shares.py BASE_LOG CAP=LOG... [--within POINTS]

BASE_LOG is a solo uncapped run of the same workload (its iters_per_s line);
each CAP=LOG a capped tenant's log with "tick t=... units=..." lines. The
shares are taken over the time every tenant ran, less 1 s at each end, and
printed as a markdown table. With --within, exits 1 when a share is further
than POINTS from its cap (for tests/gpu/run.sh); the bench only reports.
"""
import re
import sys


def main(argv):
    within = None
    if "--within" in argv:
        i = argv.index("--within")
        within = float(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    base = None
    for line in open(argv[0], errors="replace"):
        m = re.search(r"iters_per_s=([0-9.]+)", line)
        if m:
            base = float(m.group(1))
    tenants = []
    for arg in argv[1:]:
        cap, path = arg.split("=", 1)
        ticks = []
        for line in open(path, errors="replace"):
            m = re.match(r"tick t=([0-9.]+) units=([0-9]+)", line)
            if m:
                ticks.append((float(m.group(1)), int(m.group(2))))
        tenants.append((int(cap), ticks))
    if base is None or any(len(t[1]) < 2 for t in tenants):
        print("No result: the solo baseline or a tenant's log has no figures (see the logs).\n")
        return 1
    lo = max(t[1][0][0] for t in tenants) + 1.0   # all running, past the start
    hi = min(t[1][-1][0] for t in tenants) - 1.0  # before any stops or drains
    if hi - lo < 3.0:
        print("No result: the tenants overlapped for only %.1f s\n" % (hi - lo + 2))
        return 1

    def units_at(ticks, t):
        for (t0, u0), (t1, u1) in zip(ticks, ticks[1:]):
            if t0 <= t <= t1:
                return u0 + (u1 - u0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0)
        return ticks[-1][1] if t > ticks[-1][0] else 0

    print("Each tenant's throughput over the %.1f s all ran (their overlap less" % (hi - lo))
    print("1 s at each end), relative to one uncapped process alone (%.2f units/s)." % base)
    print("Target: each share within 5 points of its cap.\n")
    print("| tenant cap | units/s | share of solo uncapped (%) | error (points) |")
    print("| --- | --- | --- | --- |")
    total, worst = 0.0, 0.0
    for cap, ticks in tenants:
        rate = (units_at(ticks, hi) - units_at(ticks, lo)) / (hi - lo)
        share = 100 * rate / base
        total += share
        worst = max(worst, abs(share - cap))
        print("| %d%% | %.2f | %.1f | %+.1f |" % (cap, rate, share, share - cap))
    print("| together | | %.1f | |\n" % total)
    print("Largest error %.1f points: %s\n" % (worst, "**meets the target**" if worst <= 5
                                                else "**misses the target** (within 5 points)"))
    return 1 if within is not None and worst > within else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
