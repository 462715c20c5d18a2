# SPDX-License-Identifier: Apache-2.0
"""NCCL all-reduce under torchrun, one rank per GPU, natively or under gpucap.

    GPUCAP_T0_NS=$(date +%s%N) torchrun --standalone --nproc_per_node=N \\
        nccl_allreduce.py --label NAME --out DIR [--check]

Measures, and rank 0 writes to DIR/NAME.json:
  - start: from GPUCAP_T0_NS (CLOCK_REALTIME, taken by the shell just before
    torchrun) to the completion of the first all-reduce, on rank 0 and the
    maximum over the ranks;
  - bus bandwidth of a 256 MiB float32 all-reduce (5 warm-up, 20 timed):
    busbw = bytes * 2 (n - 1) / n / time, as nccl-tests computes it.

--check (under gpucap; needs GPUCAP_BIN and GPUCAP_REGION) adds:
  - what each rank holds after the benchmark: torch.cuda.memory_reserved(),
    the region's charge for its device and for its own process, NVML's used
    memory for its process on its GPU (nvidia-smi), each also as the growth
    since just before the process group was created (after a first tensor,
    so both sides already count the context). NCCL's buffers are created
    with cuMem* and imported by the peers (cuMem* shareable handles or CUDA
    IPC); if the region charged an import as well, the region's growth
    would exceed NVML's by the peers' buffers. Check: it does not (by more
    than 64 MiB or 5%, the threads' idle reserves and rounding);
  - the cap holds: each rank asks torch.empty for 1 GiB more than remains
    under its cap and must get torch.cuda.OutOfMemoryError, and the region's
    charged_bytes stays within limit_bytes.
Exits 1 on rank 0 when a check fails.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import torch
import torch.distributed as dist

MiB = 1 << 20
SIZE = 256 * MiB
WARMUP, ITERATIONS = 5, 20


def without_preload():
    """The environment for helper commands: they must not load the hook."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def device_uuid(ordinal):
    """The GPU's UUID as NVML and the region write it ("GPU-...")."""
    rows = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"],
                          capture_output=True, text=True, env=without_preload()).stdout
    known = {}
    for row in rows.splitlines():
        index, _, value = row.partition(",")
        known[index.strip()] = value.strip()
    uuid = str(getattr(torch.cuda.get_device_properties(ordinal), "uuid", "") or "")
    if uuid and not uuid.startswith(("GPU-", "MIG-")):
        uuid = "GPU-" + uuid
    if uuid in known.values():
        return uuid
    # Older torch without the property: nvidia-smi's order is CUDA's under
    # CUDA_DEVICE_ORDER=PCI_BUS_ID, which run_nccl.sh sets.
    return known.get(str(ordinal))


def nvml_used(pid, uuid):
    """NVML's used memory (bytes) of process pid on GPU uuid; None if absent."""
    result = subprocess.run(["nvidia-smi", "--query-compute-apps=gpu_uuid,pid,used_memory",
                             "--format=csv,noheader,nounits"],
                            capture_output=True, text=True, env=without_preload())
    for row in result.stdout.splitlines():
        fields = [f.strip() for f in row.split(",")]
        if len(fields) == 3 and fields[0] == uuid and fields[1] == str(pid) and fields[2].isdigit():
            return int(fields[2]) * MiB
    return None


def region_status():
    command = [os.environ["GPUCAP_BIN"], "status", "--json", "--file", os.environ["GPUCAP_REGION"]]
    doc = None
    for _ in range(20):  # a snapshot that saw the region move says so; take another
        result = subprocess.run(command, capture_output=True, text=True, env=without_preload())
        if result.returncode == 0:
            doc = json.loads(result.stdout)
            if doc.get("consistent", True):
                break
        time.sleep(0.05)
    return doc


def region_view(uuid, pid):
    """(device entry, this process's charge on that device) from the region."""
    doc = region_status()
    if doc is None:
        return None, None
    device = next((d for d in doc["devices"] if d["uuid"] == uuid), None)
    if device is None:
        return None, None
    mine = next((p for p in doc["processes"] if p["pid"] == pid and p["alive"]), None)
    charge = None
    if mine is not None:
        charge = sum(d["charged_bytes"] for d in mine["devices"] if d["index"] == device["index"])
    return device, charge


def memory_snapshot(device, uuid):
    torch.cuda.synchronize(device)
    region_device, process_charge = region_view(uuid, os.getpid())
    return {
        "reserved": torch.cuda.memory_reserved(device),
        "device_charged": region_device["charged_bytes"] if region_device else None,
        "limit": region_device["limit_bytes"] if region_device else None,
        "process_charged": process_charge,
        "nvml_used": nvml_used(os.getpid(), uuid),
    }


def cap_holds(device, uuid):
    region_device, _ = region_view(uuid, os.getpid())
    if region_device is None or region_device["limit_bytes"] is None:
        return {"ok": False, "detail": "no limited device in the region for this GPU"}
    limit = region_device["limit_bytes"]
    ask = max(limit - region_device["charged_bytes"], 0) + (1 << 30)
    try:
        block = torch.empty(ask, dtype=torch.uint8, device=device)
        outcome = f"allocated {ask} bytes"
        del block
    except torch.cuda.OutOfMemoryError:
        outcome = "OutOfMemoryError"
    except RuntimeError as error:  # any other failure is not the cap's refusal
        outcome = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
    torch.cuda.synchronize(device)
    after, _ = region_view(uuid, os.getpid())
    charged = after["charged_bytes"] if after else None
    ok = outcome == "OutOfMemoryError" and charged is not None and charged <= limit
    return {"ok": ok, "asked": ask, "outcome": outcome, "charged_after": charged, "limit": limit}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    t0_ns = int(os.environ["GPUCAP_T0_NS"])
    local_rank, rank = int(os.environ["LOCAL_RANK"]), int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank)

    uuid, baseline = None, None
    if args.check:
        uuid = device_uuid(local_rank)
        torch.zeros(1, device=device)
        baseline = memory_snapshot(device, uuid)

    # A rank that died must not leave the others waiting for NCCL's default
    # ten minutes.
    dist.init_process_group(backend="nccl", timeout=datetime.timedelta(seconds=120))
    x = torch.ones(1, device=device)
    dist.all_reduce(x)
    torch.cuda.synchronize(device)
    first_ms = (time.time_ns() - t0_ns) / 1e6
    sum_ok = int(x.item()) == world

    buf = torch.zeros(SIZE // 4, dtype=torch.float32, device=device)
    for _ in range(WARMUP):
        dist.all_reduce(buf)
    torch.cuda.synchronize(device)
    dist.barrier(device_ids=[local_rank])
    start = time.perf_counter()
    for _ in range(ITERATIONS):
        dist.all_reduce(buf)
    torch.cuda.synchronize(device)
    per_iteration = (time.perf_counter() - start) / ITERATIONS

    mine = {"rank": rank, "local_rank": local_rank, "pid": os.getpid(), "first_ms": first_ms,
            "per_iteration_s": per_iteration, "sum_ok": sum_ok, "uuid": uuid}
    if args.check:
        dist.barrier(device_ids=[local_rank])
        mine["baseline"] = baseline
        mine["after"] = memory_snapshot(device, uuid)
        dist.barrier(device_ids=[local_rank])  # every snapshot before anyone probes the cap
        try:
            mine["cap"] = cap_holds(device, uuid)
        except Exception as error:  # reported as a failed check; the ranks still meet below
            mine["cap"] = {"ok": False, "outcome": f"{type(error).__name__}: {error}"[:200]}
    ranks = [None] * world
    dist.all_gather_object(ranks, mine)
    dist.barrier(device_ids=[local_rank])
    dist.destroy_process_group()
    if rank != 0:
        return 0

    slowest = max(r["per_iteration_s"] for r in ranks)
    factor = 2 * (world - 1) / world if world > 1 else 1.0
    result = {
        "label": args.label, "ranks": world, "bytes": SIZE, "iterations": ITERATIONS,
        "first_allreduce_rank0_ms": ranks[0]["first_ms"],
        "first_allreduce_max_ms": max(r["first_ms"] for r in ranks),
        "per_iteration_ms": slowest * 1e3,
        "algbw_gbps": SIZE / slowest / 1e9,
        "busbw_gbps": SIZE * factor / slowest / 1e9,
        "checks": [], "per_rank": ranks,
    }
    checks = result["checks"]
    checks.append({"name": "every rank's first all-reduce summed to the world size",
                   "ok": all(r["sum_ok"] for r in ranks)})
    if args.check:
        for r in ranks:
            b, a = r["baseline"], r["after"]
            known = all(v is not None for v in (b["process_charged"], a["process_charged"],
                                                 b["nvml_used"], a["nvml_used"]))
            if known:
                grown_charge = a["process_charged"] - b["process_charged"]
                grown_nvml = a["nvml_used"] - b["nvml_used"]
                slack = max(64 * MiB, grown_nvml // 20)
                ok = grown_charge <= grown_nvml + slack
                detail = (f"region grew {grown_charge / MiB:.0f} MiB, NVML {grown_nvml / MiB:.0f} MiB "
                          f"(allowed {slack / MiB:.0f} MiB more)")
            else:
                ok, detail = False, "a region or NVML reading is missing"
            checks.append({"name": f"rank {r['rank']}: NCCL's buffers charged once", "ok": ok,
                           "detail": detail})
            cap = r["cap"]
            checks.append({"name": f"rank {r['rank']}: the cap holds", "ok": cap["ok"],
                           "detail": f"asked {cap.get('asked', 0) / MiB:.0f} MiB: {cap.get('outcome')}; "
                                     f"charged {cap.get('charged_after')} <= limit {cap.get('limit')}"})
    with open(os.path.join(args.out, f"{args.label}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"RESULT {args.label} ranks={world} first_allreduce_rank0_ms={result['first_allreduce_rank0_ms']:.1f} "
          f"first_allreduce_max_ms={result['first_allreduce_max_ms']:.1f} "
          f"busbw_gbps={result['busbw_gbps']:.2f} algbw_gbps={result['algbw_gbps']:.2f}", flush=True)
    for check in checks:
        print(f"CHECK {'PASS' if check['ok'] else 'FAIL'} {check['name']}"
              + (f": {check['detail']}" if check.get("detail") else ""), flush=True)
    return 0 if all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
