# SPDX-License-Identifier: Apache-2.0
"""Real-GPU test of a framework under gpucap.

    python3 framework_cap.py torch|torch-graph|cupy|jax

The cap comes from GPUCAP_TEST_CAP (bytes). For torch and cupy: the reported
total is the cap, allocating 256 MiB blocks past it raises the framework's
out-of-memory error, and the process's real device memory (NVML's process
list, which gpucap does not virtualise) never passes the cap. For jax: the
preallocated pool is the configured fraction of the cap, not of the card.
For torch-graph: a CUDA graph (torch.cuda.graphs) whose capture allocates
runs and replays with the eager result; filling the cap past it raises
torch.OutOfMemoryError, and so does capturing a graph that would allocate
past the cap (with the cudaMallocAsync backend the capture makes an
allocation node and succeeds, as natively, and the graph's replay is refused
with out of memory); after each the process goes on (the first graph replays right,
new tensors allocate), and its real device memory never passes the cap.
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


def torch_graph_test():
    import torch
    torch.manual_seed(0)
    n = 2048
    x = torch.randn(n, n, device="cuda")
    w = torch.randn(n, n, device="cuda")

    def work(a):
        # Allocates its intermediates and its output inside the capture.
        return (a @ w).relu() + 1.0

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up off the capture, as torch asks
            work(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = work(x)
    expected = work(x)

    def replays_right():
        x.copy_(torch.randn(n, n, device="cuda"))
        graph.replay()
        torch.cuda.synchronize()
        return torch.allclose(y, work(x), rtol=1e-3, atol=1e-3)

    graph.replay()
    torch.cuda.synchronize()
    check(torch.allclose(y, expected, rtol=1e-3, atol=1e-3), "the captured graph's result differs from eager")
    check(all(replays_right() for _ in range(10)), "a replay's result differs from eager")
    result["graph_pool_reserved"] = torch.cuda.memory_reserved()

    # Past the cap with the graph's memory held: torch's own error.
    blocks, error = [], None
    try:
        while len(blocks) < 100000:
            blocks.append(torch.empty(BLOCK, dtype=torch.uint8, device="cuda"))
    except torch.OutOfMemoryError as oom:
        error = type(oom).__name__
    result.update(blocks=len(blocks), error=error)
    check(error == "OutOfMemoryError", f"expected torch.OutOfMemoryError filling the cap, got {error}")
    check(len(blocks) * BLOCK <= CAP, "allocated past the cap")
    usage = real_usage()
    result["real_usage_full"] = usage
    if usage is not None:
        check(usage <= CAP, f"real device usage {usage} passed the cap {CAP} with the cap full")
    del blocks
    torch.cuda.empty_cache()
    check(replays_right(), "the graph does not replay right after the out-of-memory error")

    # A capture whose allocation would pass the cap. The caching allocator
    # allocates the graph's private pool during the capture: torch's own
    # error. With cudaMallocAsync the capture makes a graph allocation node,
    # which takes no memory until the graph runs (the driver does not refuse
    # it natively either): the capture succeeds, and the process goes on.
    async_backend = torch.cuda.get_allocator_backend() == "cudaMallocAsync"
    capture_error = None
    big = None
    try:
        free, _ = torch.cuda.mem_get_info()
        elements = (free + CAP) // 4  # more than the room left, in float32
        big_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(big_graph):
            big = torch.empty(elements, dtype=torch.float32, device="cuda")
    except RuntimeError as error:  # torch.OutOfMemoryError is one
        # Ending the capture may raise its own error on top of the
        # allocation's: torch's OOM must be the one the program got, or the
        # one that error was raised during.
        chain = [error, error.__context__, error.__cause__]
        oom = any(isinstance(e, torch.OutOfMemoryError) for e in chain)
        capture_error = "OutOfMemoryError" if oom else f"{type(error).__name__}: {error}"
        result["capture_exception"] = f"{type(error).__name__}: {str(error)[:200]}"
    result["capture_error"] = capture_error
    kept = []
    if async_backend:
        check(capture_error is None,
              f"expected the capture to succeed (an allocation node holds no memory), got {capture_error}")
        # Its replay would take the memory: refused with the driver's
        # out-of-memory code before the driver sees it. The tensor stays
        # referenced: its memory never existed, and freeing an allocation
        # of a graph that never ran is an invalid free (the process exits
        # with os._exit, so no destructor tries).
        replay_error = None
        try:
            big_graph.replay()
            torch.cuda.synchronize()
        except RuntimeError as error:
            replay_error = str(error)[:200]
        result["replay_error"] = replay_error
        check(replay_error is not None and "out of memory" in replay_error,
              f"expected the replay past the cap to fail with out of memory, got {replay_error}")
        kept = [big_graph, big]
    else:
        check(capture_error == "OutOfMemoryError",
              f"expected torch.OutOfMemoryError capturing past the cap, got {capture_error}")
        del big
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    check(replays_right(), "the graph does not replay right after the refused capture")
    after = torch.ones(BLOCK // 4, dtype=torch.float32, device="cuda")
    check(bool((after == 1).all()), "a new tensor after the refusals is wrong")
    return [graph, x, w, y, after] + kept


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


held = {"torch": torch_test, "torch-graph": torch_graph_test, "cupy": cupy_test,
        "jax": jax_test}[sys.argv[1]]()
usage = real_usage()
result["real_usage"] = usage
if usage is not None:
    check(usage <= CAP, f"real device usage {usage} passed the cap {CAP}")
result["failures"] = failures
print(json.dumps(result), flush=True)
sys.stderr.flush()
# No interpreter teardown: objects a test keeps on purpose (a graph's
# allocation that never ran) must not be freed by destructors.
os._exit(1 if failures else 0)
