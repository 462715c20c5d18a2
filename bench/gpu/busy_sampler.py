#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Sample the GPU's busy share from outside every process under test.

usage: busy_sampler.py GPU_INDEX SECONDS

Prints one line per 100 ms until SECONDS have passed (or SIGTERM):

  <unix s> <utilization.gpu percent>

utilization.gpu is NVML's share of the last sample period during which a
kernel was running (what `nvidia-smi --query-gpu=utilization.gpu` reports).
NVML is loaded with ctypes; this process never loads gpucap.
"""
import ctypes
import signal
import sys
import time


class Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


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
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if nvml.nvmlDeviceGetUtilizationRates(handle, ctypes.byref(util)) == 0:
            print("%.3f %u" % (time.time(), util.gpu), flush=True)
        time.sleep(0.1)


if __name__ == "__main__":
    main()
