# SPDX-License-Identifier: Apache-2.0
"""Real-GPU test of a framework under gpucap.

    python3 framework_cap.py torch|cupy|jax

The cap comes from GPUCAP_TEST_CAP (bytes). For torch and cupy: the reported
total is the cap, allocating 256 MiB blocks past it raises the framework's
out-of-memory error, and the process's real device memory (NVML's process
list, which gpucap does not virtualise) never passes the cap. For jax: the
preallocated pool is the configured fraction of the cap, not of the card.
Prints one JSON line; exits 1 if a check fails.
"""
import json
import os
import sys

CAP = int(os.environ["GPUCAP_TEST_CAP"])
BLOCK = 256 << 20
result = {"framework": sys.argv[1], "cap": CAP,
          "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")}
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def real_usage():
    """This process's real device memory, from NVML's process list."""
    try:
        import pynvml
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == os.getpid():
                return proc.usedGpuMemory
    except Exception as error:  # reported, not fatal: the cap checks stand
        result["nvml_error"] = str(error)
    return None


def torch_test():
    import torch
    free, total = torch.cuda.mem_get_info()
    result.update(free=free, total=total)
    check(total == CAP, f"mem_get_info total {total} != cap {CAP}")
    blocks, error = [], None
    try:
        while len(blocks) < 100000:
            blocks.append(torch.empty(BLOCK, dtype=torch.uint8, device="cuda"))
    except torch.OutOfMemoryError as oom:
        error = type(oom).__name__
    result.update(blocks=len(blocks), error=error, reserved=torch.cuda.memory_reserved())
    check(error == "OutOfMemoryError", f"expected torch.OutOfMemoryError, got {error}")
    check(len(blocks) * BLOCK <= CAP, "allocated past the cap")
    return blocks


def cupy_test():
    import cupy
    free, total = cupy.cuda.runtime.memGetInfo()
    result.update(free=free, total=total)
    check(total == CAP, f"memGetInfo total {total} != cap {CAP}")
    blocks, error = [], None
    try:
        while len(blocks) < 100000:
            blocks.append(cupy.empty(BLOCK, dtype=cupy.uint8))
    except cupy.cuda.memory.OutOfMemoryError as oom:
        error = type(oom).__name__
    result.update(blocks=len(blocks), error=error)
    check(error == "OutOfMemoryError", f"expected cupy OutOfMemoryError, got {error}")
    check(len(blocks) * BLOCK <= CAP, "allocated past the cap")
    return blocks


def jax_test():
    import jax
    import jax.numpy as jnp
    x = jnp.ones((1024, 1024))
    x.block_until_ready()
    stats = jax.devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit", 0)
    fraction = float(os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.75"))
    result.update(bytes_limit=limit, fraction=fraction)
    check(0 < limit <= CAP, f"bytes_limit {limit} not within the cap {CAP}")
    check(limit >= 0.5 * fraction * CAP, f"bytes_limit {limit} far below {fraction} of the cap")
    return [x]


held = {"torch": torch_test, "cupy": cupy_test, "jax": jax_test}[sys.argv[1]]()
usage = real_usage()
result["real_usage"] = usage
if usage is not None:
    check(usage <= CAP, f"real device usage {usage} passed the cap {CAP}")
result["failures"] = failures
print(json.dumps(result))
sys.exit(1 if failures else 0)
