#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The report of bench/gpu/run_share.sh (markdown on stdout).

usage: share_report.py OUTDIR "WORKLOADS" "CAPS" TENANT_WORKLOAD

Reads OUTDIR/<run>.log (sm_share.py's output), <run>.busy (busy_sampler.py)
and <run>.status.json (gpucap status --json at mid-run).
"""
import json
import os
import re
import sys


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def result(out, name):
    text = read(os.path.join(out, name + ".log"))
    rate = re.findall(r"units_per_s=([0-9.]+)", text)
    window = re.findall(r"window start=([0-9.]+) end=([0-9.]+)", text)
    if not rate or not window:
        return None, None
    return float(rate[-1]), (float(window[-1][0]), float(window[-1][1]))


def device_samples(out, name, window):
    """(time, utilization.gpu %) of the busy_sampler.py samples of run name inside window."""
    samples = []
    for line in read(os.path.join(out, name + ".busy")).splitlines():
        parts = line.split()
        if len(parts) >= 2 and ":" not in parts[1]:
            t, u = float(parts[0]), float(parts[1])
            if window[0] <= t <= window[1]:
                samples.append((t, u))
    return samples


def busy(out, name, window):
    """Mean utilization.gpu (0..1) of the samples inside window, first second skipped (NVML averages
    over its own sample period, which reaches back before the window)."""
    if window is None:
        return None
    values = [u for t, u in device_samples(out, name, window) if t >= window[0] + 1.0]
    return sum(values) / len(values) / 100.0 if values else None


def longest_idle(out, name, window):
    """The longest stretch (s) of samples at 0% utilization.gpu inside window. A capped run's
    calibration holds its launches for up to 2 s and pays that back with a burst: a window that holds
    such a stretch but not the burst measures the hold (on an H100, 1.6 s and 1.7 s of a GEMM's windows
    at caps 10 and 30 with an 11 s warm-up)."""
    if window is None:
        return None
    longest, start = 0.0, None
    for t, u in device_samples(out, name, window):
        if u > 0:
            start = None
        elif start is None:
            start = t
        if start is not None:
            longest = max(longest, t - start)
    return longest


def pid_of(out, name):
    found = re.findall(r"# sm_share .* pid=([0-9]+)", read(os.path.join(out, name + ".log")))
    return int(found[-1]) if found else None


def nvml_split(out, name, window, pids):
    """Each of pids' part (0..1) of the GPU's busy time inside window, as a tenant's controller splits
    it: utilization.gpu x the pid's per-process smUtil over that of all pids in the sample (the
    busy_sampler.py lines that have per-process samples; first second skipped)."""
    sums = dict((pid, 0.0) for pid in pids)
    lines = 0
    for line in read(os.path.join(out, name + ".busy")).splitlines():
        parts = line.split()
        if len(parts) < 3 or window is None or not window[0] + 1.0 <= float(parts[0]) <= window[1]:
            continue
        sm = dict((int(p), float(v)) for p, v in (part.split(":") for part in parts[2:]))
        total = sum(sm.get(pid, 0.0) for pid in pids)
        lines += 1
        for pid in pids:
            sums[pid] += float(parts[1]) / 100.0 * (sm.get(pid, 0.0) / total if total else 0.0)
    return dict((pid, v / lines) for pid, v in sums.items()) if lines else None


def controller(out, name):
    try:
        data = json.loads(read(os.path.join(out, name + ".status.json")))
        d = data["devices"][0]
        return "duty %s, share %s" % (d.get("sm_duty_ratio"), d.get("sm_share_ratio"))
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def native_runs(out, names):
    """(rate, B) of each of these native runs that has both."""
    runs = []
    for name in names:
        rate, window = result(out, name)
        b = busy(out, name, window)
        if rate and b:
            runs.append((rate, b))
    return runs


def native(out, w, caps):
    """The workload's native rate and B: the mean of all its native runs (the note names each)."""
    names = [w + "-native", w + "-native2"] + ["%s-native-after%d" % (w, c) for c in caps]
    runs = native_runs(out, names)
    if not runs:
        rate, _ = result(out, w + "-native")
        return rate, None, ""
    rate = sum(r for r, _ in runs) / len(runs)
    b = sum(x for _, x in runs) / len(runs)
    note = "" if len(runs) == 1 else " (mean of %d native runs: %s units/s, B %s)" % (
        len(runs), ", ".join("%.2f" % r for r, _ in runs), ", ".join("%.1f%%" % (x * 100) for _, x in runs))
    return rate, b, note


def bracket(out, w, caps, i):
    """The native runs just before and after cap i, where run_share.sh bracketed each cap; else None."""
    before = w + "-native" if i == 0 else "%s-native-after%d" % (w, caps[i - 1])
    runs = native_runs(out, [before, "%s-native-after%d" % (w, caps[i])])
    if len(runs) < 2:
        return None
    return sum(r for r, _ in runs) / 2, sum(x for _, x in runs) / 2


def fmt(x, spec="%.1f"):
    return spec % x if x is not None else "n/a"


def main():
    out, workloads, caps, tenant = sys.argv[1], sys.argv[2].split(), [int(c) for c in sys.argv[3].split()], \
        sys.argv[4]
    print("# SM caps on work that leaves gaps (bench/gpu/run_share.sh)\n")
    print("B = native busy share (NVML utilization.gpu from outside); delivered = throughput ratio x B.")
    print("Accuracy target: delivered within 3 points of the cap for caps below B (MAE <= 2);")
    print("caps at or above B: throughput >= 0.97 of native.\n")
    errors, unthrottled = [], []
    natives = {}
    for w in workloads:
        rate_w, b_w, note = native(out, w, caps)
        natives[w] = (rate_w, b_w)
        bracketed = bracket(out, w, caps, 0) is not None
        print("## %s: native %s units/s, B = %s%%%s\n" % (w, fmt(rate_w, "%.2f"), fmt(b_w * 100 if b_w else None),
                                                        note))
        if bracketed:
            print("Each cap is judged against the mean of the native runs just before and after it (its own")
            print("native rate and B in the last two columns).\n")
        print("| cap | units/s | ratio | delivered (%) | error (points) | busy at cap (%) | longest 0% (s) "
              "| controller at mid-run |" + (" native units/s | B (%) |" if bracketed else ""))
        print("| --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if bracketed else ""))
        for i, c in enumerate(caps):
            local = bracket(out, w, caps, i) if bracketed else None
            rate_n, b = local if local else (rate_w, b_w)
            name = "%s-cap%d" % (w, c)
            rate, win = result(out, name)
            ratio = rate / rate_n if rate and rate_n else None
            delivered = ratio * b * 100 if ratio is not None and b else None
            error = ""
            if delivered is not None and b is not None:
                if c < b * 100:
                    e = delivered - c
                    errors.append((w, c, e))
                    error = "%+.1f" % e
                else:
                    unthrottled.append((w, c, ratio))
                    error = "(cap >= B: ratio %s)" % ("ok" if ratio >= 0.97 else "LOW")
            print("| %d | %s | %s | %s | %s | %s | %s | %s |" % (
                c, fmt(rate, "%.2f"), fmt(ratio, "%.3f"), fmt(delivered), error,
                fmt(busy(out, name, win) * 100 if busy(out, name, win) is not None else None),
                fmt(longest_idle(out, name, win)), controller(out, name)) + (" %s | %s |" % (fmt(rate_n, "%.2f"), fmt(b * 100 if b else None))
                                          if bracketed else ""))
        print()
    if errors:
        mae = sum(abs(e) for _, _, e in errors) / len(errors)
        worst = max(errors, key=lambda x: abs(x[2]))
        within = sum(1 for _, _, e in errors if abs(e) <= 3)
        print("**Accuracy:** %d of %d caps below B within 3 points; mean absolute error %.2f points; worst %s "
              "at cap %d: %+.1f.\n" % (within, len(errors), mae, worst[0], worst[1], worst[2]))
    if unthrottled:
        ok = sum(1 for _, _, r in unthrottled if r >= 0.97)
        print("**Unthrottled at or above B:** %d of %d runs at >= 0.97 of native (lowest %.3f).\n" % (
            ok, len(unthrottled), min(r for _, _, r in unthrottled)))
    rate_n, b = natives.get(tenant, (None, None))
    if rate_n is None:
        rate_n, b, _ = native(out, tenant, caps)
    if rate_n is None:
        rate_n, window = result(out, "overhead-native-1")
        b = busy(out, "overhead-native-1", window)
    modes = {"turns": "GPUCAP_NODE_DIR shared", "apart": "no node directory",
             "free": "both uncapped, side by side: what the GPU gives them at all"}
    for mode in ("turns", "apart", "free"):
        rows = []
        work = 0.0
        for c in (30, 70):
            rate, _ = result(out, "tenants-%s-cap%d" % (mode, c))
            if rate and rate_n and b:
                want = min(c, b * 100) if mode != "free" else b * 100
                work += rate / rate_n * b * 100
                rows.append("%s: %.2f units/s, delivered %.1f%% (wants %.1f%%)" % (
                    "cap %d" % c if mode != "free" else "tenant %d" % (1 + (c == 70)),
                    rate, rate / rate_n * b * 100, want))
        if rows:
            # The GPU's busy time beside the work it delivered: two tenants
            # time-slicing take more busy time per unit of work than one.
            _, window = result(out, "tenants-%s-cap30" % mode)
            device = busy(out, "tenants-%s-cap30" % mode, window)
            # Each tenant's part of it as NVML's per-process figures split it
            # (what its controller holds at the cap), beside the work it got.
            pids = [pid_of(out, "tenants-%s-cap%d" % (mode, c)) for c in (30, 70)]
            split = nvml_split(out, "tenants-%s-cap30" % mode, window, pids) if None not in pids else None
            if split:
                rows.append("NVML's split of the busy time %s" % " / ".join(
                    "%.1f%%" % (split[pid] * 100) for pid in pids))
            print("**Two tenants (%s, %s):** %s; the GPU busy %s for %.1f%% of work.\n" % (
                mode, modes[mode], "; ".join(rows), "%.1f%%" % (device * 100) if device is not None else "n/a",
                work))
    pairs = []
    for run in (1, 2, 3):
        n, _ = result(out, "overhead-native-%d" % run)
        p, _ = result(out, "overhead-preloaded-%d" % run)
        if n and p:
            pairs.append((n, p))
    if pairs:
        print("**Overhead (%s, uncapped, preloaded vs native, alternating runs):** %s.\n" % (
            tenant, "; ".join("%.2f vs %.2f units/s (ratio %.3f)" % (p, n, p / n) for n, p in pairs)))


if __name__ == "__main__":
    main()
