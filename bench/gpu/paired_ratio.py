#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Paired ratios of a benchmark's alternating runs.

usage: paired_ratio.py LABEL < pairs   (one "native other" pair per line)

Prints one line: the mean of the per-pair ratios other/native and its 95%
confidence interval (Student's t), so that a claim such as "within 1% of
native" is made only where the interval allows it.
"""
import math
import sys

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
       2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
       2.045, 2.042]


def summary(label, ratios):
    """One line: the mean of RATIOS (other/native) and its 95% interval."""
    n = len(ratios)
    if n == 0:
        return "%s: no complete pair" % label
    mean = sum(ratios) / n
    if n == 1:
        return "%s: 1 pair, ratio %.3f (no interval from one pair)" % (label, mean)
    sd = math.sqrt(sum((r - mean) ** 2 for r in ratios) / (n - 1))
    half = (T95[n - 2] if n - 1 <= len(T95) else 1.96) * sd / math.sqrt(n)
    return "%s: %d pairs, mean ratio %.4f, 95%% interval %.4f to %.4f (pairs: %s)" % (
        label, n, mean, mean - half, mean + half, " ".join("%.3f" % r for r in ratios))


def main():
    label = sys.argv[1] if len(sys.argv) > 1 else "other"
    ratios = []
    for line in sys.stdin:
        parts = line.split()
        if len(parts) == 2 and float(parts[0]) > 0:
            ratios.append(float(parts[1]) / float(parts[0]))
    print(summary(label, ratios))


if __name__ == "__main__":
    main()
