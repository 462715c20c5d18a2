#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Sample the GPU's busy share from outside every process under test.

usage: busy_sampler.py GPU_INDEX SECONDS

Prints one line per 100 ms until SECONDS have passed (or SIGTERM):

  <unix s> <utilization.gpu percent> [<pid>:<smUtil percent> ...]

utilization.gpu is NVML's share of the last sample period during which a
kernel was running (what `nvidia-smi --query-gpu=utilization.gpu` reports).
Each pid:smUtil is the mean of the per-process samples NVML took since the
line before (nvmlDeviceGetProcessUtilization): whose kernels ran, as two
tenants' controllers see it, so a report can set each tenant's part of the
device's busy time beside the work it got. NVML is loaded with ctypes; this
process never loads gpucap.
"""
import ctypes
import signal
import sys
import time


class Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class ProcessSample(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint), ("timeStamp", ctypes.c_ulonglong), ("smUtil", ctypes.c_uint),
                ("memUtil", ctypes.c_uint), ("encUtil", ctypes.c_uint), ("decUtil", ctypes.c_uint)]


NVML_ERROR_INSUFFICIENT_SIZE = 7


def process_samples(nvml, handle, since):
    """{pid: mean smUtil} of NVML's per-process samples newer than since (us), and the newest stamp."""
    count = ctypes.c_uint(0)
    rc = nvml.nvmlDeviceGetProcessUtilization(handle, None, ctypes.byref(count), ctypes.c_ulonglong(since))
    if rc != NVML_ERROR_INSUFFICIENT_SIZE or count.value == 0:
        return {}, since
    samples = (ProcessSample * count.value)()
    if nvml.nvmlDeviceGetProcessUtilization(handle, samples, ctypes.byref(count), ctypes.c_ulonglong(since)):
        return {}, since
    sums = {}
    for sample in samples[:count.value]:
        total, n = sums.get(sample.pid, (0, 0))
        sums[sample.pid] = (total + sample.smUtil, n + 1)
        since = max(since, sample.timeStamp)
    return {pid: total / n for pid, (total, n) in sums.items()}, since


def main():
    if len(sys.argv) != 3:
        print("usage: busy_sampler.py GPU_INDEX SECONDS", file=sys.stderr)
        sys.exit(2)
    index, seconds = int(sys.argv[1]), float(sys.argv[2])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    nvml = ctypes.CDLL("libnvidia-ml.so.1")
    if nvml.nvmlInit_v2() != 0:
        print("busy_sampler: nvmlInit failed", file=sys.stderr)
        sys.exit(1)
    handle = ctypes.c_void_p()
    if nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)) != 0:
        print("busy_sampler: no GPU %d" % index, file=sys.stderr)
        sys.exit(1)
    util = Utilization()
    since = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if nvml.nvmlDeviceGetUtilizationRates(handle, ctypes.byref(util)) == 0:
            processes, since = process_samples(nvml, handle, since)
            print(" ".join(["%.3f %u" % (time.time(), util.gpu)] +
                           ["%u:%.1f" % (pid, sm) for pid, sm in sorted(processes.items())]), flush=True)
        time.sleep(0.1)


if __name__ == "__main__":
    main()
