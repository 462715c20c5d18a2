#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Tests of the gpucap command-line tool against real region files.

Each test runs in its own temporary directory. Live and dead processes are
played by region_actor (dead = SIGKILLed, so its slot awaits reclaiming).

usage: cli_test.py TEST --gpucap PATH --actor PATH --fake-preload PATH
                        --version X.Y.Z --libdir DIR [--real-preload PATH]
"""
import argparse
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile

MiB = 1 << 20
GiB = 1 << 30
UUID_A = "GPU-cli-test-aaaa"
UUID_B = "GPU-cli-test-bbbb"

# Variables that would steer the CLI or the preload away from what a test
# sets up; the CI environment must not leak them in.
STEERING = ("GPUCAP_REGION", "CUDA_DEVICE_MEMORY_SHARED_CACHE", "GPUCAP_LIBRARY", "LD_PRELOAD",
            "CUDA_VISIBLE_DEVICES")
LIMIT_PREFIXES = ("CUDA_DEVICE_MEMORY_LIMIT", "GPUCAP_MEMORY_LIMIT")


class Failure(Exception):
    pass


class Skip(Exception):
    """The test cannot run here: exit 77, which CTest reports as skipped."""


def check(condition, message):
    if not condition:
        raise Failure(message)


def check_equal(got, want, what):
    check(got == want, f"{what}: got {got!r}, want {want!r}")


class Harness:
    def __init__(self, args, tmp):
        self.gpucap = args.gpucap
        self.actor_path = args.actor
        self.fake_preload = args.fake_preload
        self.version = args.version
        self.libdir = args.libdir
        self.real_preload = args.real_preload
        self.tmp = tmp
        self.actors = []
        self.base_env = {k: v for k, v in os.environ.items()
                         if k not in STEERING and not k.startswith(LIMIT_PREFIXES)}
        # Some tests hand gpucap itself an LD_PRELOAD; in a sanitizer build
        # that must not make the sanitizer runtime refuse to start.
        asan = self.base_env.get("ASAN_OPTIONS", "")
        self.base_env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "verify_asan_link_order=0"

    def env(self, **extra):
        env = dict(self.base_env)
        env.update(extra)
        return env

    def cli(self, *args, env=None, binary=None, cwd=None):
        return subprocess.run([binary or self.gpucap, *args], env=env or self.env(), cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)

    def actor(self, region, *steps):
        """Start an actor; returns (process, slot) once it reports ready."""
        proc = subprocess.Popen([self.actor_path, region, *steps], env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.actors.append(proc)
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("ready "):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise Failure(f"region_actor {' '.join(steps)} did not get ready: {line!r} {err.strip()!r}")
        return proc, int(line.split()[1])

    def kill(self, proc):
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def cleanup(self):
        for proc in self.actors:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    def status_json(self, region, **env):
        res = self.cli("status", "--json", "--file", region, env=self.env(**env) if env else None)
        check_equal(res.returncode, 0, f"status --json exit code (stderr {res.stderr.strip()!r})")
        check_equal(res.stderr, "", "status --json stderr")
        check(res.stdout.endswith("\n") and res.stdout.count("\n") == 1,
              f"status --json must print one line: {res.stdout!r}")
        return json.loads(res.stdout)


def check_one_line_error(res, code, *needles):
    check_equal(res.returncode, code, f"exit code (stderr {res.stderr!r})")
    check_equal(res.stdout, "", "stdout of a failing command")
    check(res.stderr.count("\n") == 1 and res.stderr.endswith("\n"),
          f"the error must be exactly one line: {res.stderr!r}")
    check(res.stderr.startswith("gpucap"), f"the error must name gpucap: {res.stderr!r}")
    for needle in needles:
        check(needle in res.stderr, f"the error must mention {needle!r}: {res.stderr!r}")


def check_usage_errors(h, cases):
    """Each (args, needles) of cases: gpucap args exits 2 with one error line
    that mentions every needle."""
    for args, needles in cases:
        res = h.cli(*args)
        try:
            check_one_line_error(res, 2, *needles)
        except Failure as failure:
            raise Failure(f"gpucap {' '.join(args)}: {failure}")


# ---- a populated region ------------------------------------------------------

class Populated:
    """Live actor A on device A; actor B on devices A and B, killed."""

    def __init__(self, h):
        self.region = os.path.join(h.tmp, "region.cache")
        self.a, self.a_slot = h.actor(self.region, "device", UUID_A, "1g",
                                      "reserve", "context", "2m", "reserve", "data", "100m")
        self.b, self.b_slot = h.actor(self.region, "device", UUID_A, "1g",
                                      "reserve", "module", "1m", "reserve", "data", "50m",
                                      "device", UUID_B, "unlimited", "reserve", "data", "10m")
        h.kill(self.b)
        # What each actor holds, per device uuid: (context, module, data).
        self.kinds = {
            self.a.pid: {UUID_A: (2 * MiB, 0, 100 * MiB), UUID_B: (0, 0, 0)},
            self.b.pid: {UUID_A: (0, 1 * MiB, 50 * MiB), UUID_B: (0, 0, 10 * MiB)},
        }


def device_by_uuid(doc):
    return {d["uuid"]: d for d in doc["devices"]}


def check_types(obj, spec, where):
    check(isinstance(obj, dict), f"{where} must be an object")
    for key, types in spec.items():
        check(key in obj, f"{where} lacks {key!r}")
        value = obj[key]
        ok = any((value is None) if t is None else
                 (isinstance(value, t) and not (t is int and isinstance(value, bool))) for t in types)
        check(ok, f"{where}.{key} has type {type(value).__name__}, want one of {types}")


STATUS_SPEC = {"schema_version": (int,), "path": (str,), "format_version": (int,),
               "slot_capacity": (int,), "device_capacity": (int,), "created_unix_ns": (int,),
               "consistent": (bool,), "reclaimed_slots_total": (int,),
               "reclaimed_bytes_total": (int,), "devices": (list,), "processes": (list,)}
DEVICE_SPEC = {"index": (int,), "uuid": (str,), "limit_bytes": (int, None), "charged_bytes": (int,),
               "in_use_bytes": (int,), "peak_bytes": (int,), "sm_limit_percent": (int, None),
               "sm_duty_ratio": (int, float), "sm_share_ratio": (int, float, None),
               "sm_share_source": (str, None), "sm_asked_ratio": (int, float, None), "refusals_total": (int,)}
PROCESS_SPEC = {"slot": (int,), "generation": (int,), "pid": (int,), "host_pid": (int, None),
                "host_pid_source": (str,), "alive": (bool,), "comm": (str,),
                "started_unix_ns": (int,), "last_launch_unix_ns": (int, None), "refusals": (int,),
                "devices": (list,)}
PROCESS_DEVICE_SPEC = {"index": (int,), "charged_bytes": (int,), "in_use_bytes": (int,),
                       "context_bytes": (int,), "module_bytes": (int,), "data_bytes": (int,)}
REAP_SPEC = {"schema_version": (int,), "path": (str,), "reclaimed_slots": (int,),
             "returned_bytes": (int,), "devices": (list,)}
REAP_DEVICE_SPEC = {"index": (int,), "uuid": (str,), "returned_bytes": (int,)}


def check_status_schema(doc):
    check_types(doc, STATUS_SPEC, "status")
    for d in doc["devices"]:
        check_types(d, DEVICE_SPEC, "device")
    for p in doc["processes"]:
        check_types(p, PROCESS_SPEC, "process")
        for d in p["devices"]:
            check_types(d, PROCESS_DEVICE_SPEC, "process device")


# ---- tests -------------------------------------------------------------------

def test_version_and_help(h):
    res = h.cli("--version")
    check_equal((res.returncode, res.stderr), (0, ""), "--version exit code and stderr")
    check(re.fullmatch(rf"gpucap {re.escape(h.version)} \(build ([0-9a-f]{{4,}}|unknown), "
                       r"\d{4}-\d{2}-\d{2}\)\n", res.stdout), f"--version: {res.stdout!r}")
    res = h.cli("--help")
    check_equal(res.returncode, 0, "--help exit code")
    for command in ("status", "reap", "run"):
        check(re.search(rf"^  {command} ", res.stdout, re.M), f"--help must list {command}: {res.stdout}")
        for args in ((command, "--help"), (command, "-h"), ("help", command)):
            res2 = h.cli(*args)
            check_equal(res2.returncode, 0, f"{' '.join(args)} exit code")
            check(res2.stdout.startswith(f"usage: gpucap {command}"), f"{' '.join(args)}: {res2.stdout!r}")
    res = h.cli()
    check_equal(res.returncode, 2, "no command exit code")
    check(res.stdout == "" and "usage: gpucap" in res.stderr, "no command prints the usage on stderr")


def test_usage_errors(h):
    cases = [
        (["bogus"], ["unknown command 'bogus'", "gpucap --help"]),
        (["--bogus"], ["unknown option '--bogus'"]),
        (["status", "--bogus"], ["unknown option '--bogus'", "gpucap status --help"]),
        (["status", "extra"], ["unexpected argument 'extra'"]),
        (["status", "--", "extra"], ["unexpected argument 'extra'"]),
        (["status", "--file"], ["'--file' needs a value"]),
        (["status", "--json=yes"], ["'--json' takes no value"]),
        (["reap", "-x"], ["unknown option '-x'", "gpucap reap --help"]),
        (["reap", "--json", "now"], ["unexpected argument 'now'"]),
        (["run"], ["missing the command"]),
        (["run", "-m"], ["'-m' needs a value"]),
        (["run", "-m", "bogus", "--", "true"], ["-m/--memory", "'bogus'", "k, m, g or t"]),
        (["run", "--memory=1.5g", "--", "true"], ["-m/--memory", "'1.5g'"]),
        (["run", "--memory=0", "--", "true"], ["-m/--memory", "more than 0"]),
        (["run", "-m", "300t", "--", "true"], ["-m/--memory", "largest limit"]),
        (["run", "-m", "256t", "--", "true"], ["-m/--memory", "largest limit"]),
        (["run", "-m", str((1 << 48) - 1), "--", "true"], ["-m/--memory", "largest limit"]),
        (["run", "--devices=", "--", "true"], ["--devices"]),
        (["run", "--gpus", "1", "--", "true"], ["unknown option '--gpus'"]),
    ]
    check_usage_errors(h, cases)


def test_status_json(h):
    pop = Populated(h)
    doc = h.status_json(pop.region)
    check_status_schema(doc)
    check_equal(doc["schema_version"], 1, "schema_version")
    check_equal(doc["path"], pop.region, "path")
    check_equal(doc["format_version"], 2, "format_version")
    check(doc["consistent"], "a quiet region must read consistently")
    check(doc["created_unix_ns"] > 0, "created_unix_ns must be set")
    devices = device_by_uuid(doc)
    check_equal(sorted(devices), [UUID_A, UUID_B], "device uuids")
    dev_a, dev_b = devices[UUID_A], devices[UUID_B]
    check_equal(dev_a["limit_bytes"], GiB, "device A limit")
    check_equal(dev_b["limit_bytes"], None, "device B limit (unlimited)")
    check_equal(dev_a["sm_limit_percent"], None, "device A SM limit (none)")
    # No SM limit: nothing is throttled (duty 1); nothing measured yet.
    check_equal((dev_a["sm_duty_ratio"], dev_a["sm_share_ratio"], dev_a["sm_asked_ratio"]), (1, None, None),
                "device A SM duty, delivered and asked share")
    check_equal(dev_a["charged_bytes"], 153 * MiB, "device A charged (both actors, the dead one too)")
    check_equal(dev_a["in_use_bytes"], 153 * MiB, "device A in use")
    check(dev_a["peak_bytes"] >= 153 * MiB, f"device A peak {dev_a['peak_bytes']} below charged")
    check_equal(dev_b["charged_bytes"], 10 * MiB, "device B charged")

    procs = {p["pid"]: p for p in doc["processes"]}
    check_equal(sorted(procs), sorted([pop.a.pid, pop.b.pid]), "process pids")
    check_equal(procs[pop.a.pid]["alive"], True, "actor A alive")
    check_equal(procs[pop.b.pid]["alive"], False, "actor B (killed) alive")
    check_equal(procs[pop.a.pid]["slot"], pop.a_slot, "actor A slot")
    check_equal(procs[pop.b.pid]["slot"], pop.b_slot, "actor B slot")
    index_to_uuid = {d["index"]: d["uuid"] for d in doc["devices"]}
    for pid, proc in procs.items():
        check_equal(proc["comm"], "region_actor", "comm")
        check_equal((proc["host_pid"], proc["host_pid_source"]), (pid, "same_namespace"), "host pid")
        check(proc["started_unix_ns"] > 0, "started_unix_ns must be set")
        check_equal(proc["last_launch_unix_ns"], None, f"pid {pid} never launched a kernel")
        seen = {index_to_uuid[d["index"]]: d for d in proc["devices"]}
        check_equal(sorted(seen), [UUID_A, UUID_B], f"pid {pid} device entries")
        for uuid, (context, module, data) in pop.kinds[pid].items():
            d = seen[uuid]
            got = (d["context_bytes"], d["module_bytes"], d["data_bytes"], d["charged_bytes"],
                   d["in_use_bytes"])
            total = context + module + data
            check_equal(got, (context, module, data, total, total), f"pid {pid} on {uuid}")

    # SM limit, duty and share in JSON: the limit as set, the duty a ratio,
    # the share null while unmeasured.
    res = h.cli("set", "--file", pop.region, "--sm", "45", "--device", str(dev_b["index"]))
    check_equal(res.returncode, 0, f"set --sm ({res.stderr!r})")
    doc = h.status_json(pop.region)
    check_status_schema(doc)
    devices = device_by_uuid(doc)
    dev_a, dev_b = devices[UUID_A], devices[UUID_B]
    check_equal((dev_b["sm_limit_percent"], dev_b["sm_share_ratio"]), (45, None), "device B SM limit and share")
    check(0 <= dev_b["sm_duty_ratio"] <= 1, f"device B SM duty ratio {dev_b['sm_duty_ratio']!r}")
    check_equal((dev_a["sm_limit_percent"], dev_a["sm_duty_ratio"], dev_a["sm_share_ratio"]), (None, 1, None),
                "device A keeps no SM limit")


def split_row(line):
    return re.split(r"\s{2,}", line.strip())


def test_status_text(h):
    pop = Populated(h)
    res = h.cli("status", "--file", pop.region)
    check_equal((res.returncode, res.stderr), (0, ""), "status exit code and stderr")
    lines = res.stdout.splitlines()
    check(lines[0].startswith(f"region:    {pop.region} (format 2, created "), f"first line: {lines[0]!r}")
    check(any(l.startswith("slots:     2 in use of ") and l.endswith(", 1 dead awaiting reclaim")
              for l in lines), "slots summary line")
    check(any(l.startswith("hint:") and "gpucap reap" in l for l in lines), "the reap hint for a dead slot")

    header = next((l for l in lines if l.startswith("DEVICE")), None)
    check(header is not None, f"no device table in:\n{res.stdout}")
    check_equal(split_row(header), ["DEVICE", "UUID", "LIMIT", "CHARGED", "IN USE", "PEAK", "SM LIMIT",
                                    "SM DUTY", "SM DELIVERED", "SM ASKED", "REFUSED"], "device header")
    rows = {r[1]: r for r in (split_row(l) for l in lines) if len(r) == 11 and r[1].startswith("GPU-")}
    check_equal(rows[UUID_A][2:5], ["1 GiB", "153 MiB", "153 MiB"], "device A row")
    check_equal(rows[UUID_A][6:], ["none", "-", "n/a", "n/a", "0"],
                "device A SM limit, duty, delivered and asked share and refusals")
    check_equal(rows[UUID_B][2:5], ["unlimited", "10 MiB", "10 MiB"], "device B row")
    dev_a_index, dev_b_index = rows[UUID_A][0], rows[UUID_B][0]

    header = next((l for l in lines if l.startswith("SLOT")), None)
    check(header is not None, f"no process table in:\n{res.stdout}")
    check_equal(split_row(header), ["SLOT", "PID", "HOST PID", "STATE", "COMMAND", "LAST KERNEL", "REFUSED",
                                    "DEVICE", "CHARGED", "IN USE", "CONTEXT", "MODULE", "DATA", "DRIVER"],
                "process header")
    start = lines.index(header)
    table = [split_row(l) for l in lines[start + 1:]]
    a_rows = [r for r in table if len(r) == 14 and r[1] == str(pop.a.pid)]
    check_equal(a_rows, [[str(pop.a_slot), str(pop.a.pid), f"{pop.a.pid} (same pid namespace)", "alive",
                          "region_actor", "-", "0", dev_a_index, "102 MiB", "102 MiB", "2 MiB", "0 B", "100 MiB",
                          "0 B"]],
                "actor A row")
    b_at = next((i for i, r in enumerate(table) if len(r) == 14 and r[1] == str(pop.b.pid)), None)
    check(b_at is not None, f"no row for actor B in:\n{res.stdout}")
    b_rows = [table[b_at]] + ([table[b_at + 1]] if b_at + 1 < len(table) else [])
    by_device = {r[-7]: r[-7:] for r in b_rows}
    check_equal(table[b_at][3], "dead, awaiting reclaim", "actor B state")
    check_equal(by_device.get(dev_a_index), [dev_a_index, "51 MiB", "51 MiB", "0 B", "1 MiB", "50 MiB", "0 B"],
                "actor B on device A")
    check_equal(by_device.get(dev_b_index), [dev_b_index, "10 MiB", "10 MiB", "0 B", "0 B", "10 MiB", "0 B"],
                "actor B on device B (continuation row)")
    check_equal(len(table[b_at + 1]) if b_at + 1 < len(table) else 0, 7, "continuation row width")

    # An SM limit set live shows with the throttle's duty; the share stays
    # n/a until the library has measured it.
    res = h.cli("set", "--file", pop.region, "--sm", "30", "--device", UUID_A)
    check_equal(res.returncode, 0, f"set --sm ({res.stderr!r})")
    res = h.cli("status", "--file", pop.region)
    check_equal((res.returncode, res.stderr), (0, ""), "status after set --sm")
    rows = {r[1]: r for r in (split_row(l) for l in res.stdout.splitlines())
            if len(r) == 11 and r[1].startswith("GPU-")}
    check_equal(rows[UUID_A][6], "30%", "device A SM limit after set --sm")
    check(re.fullmatch(r"\d{1,3}\.\d%", rows[UUID_A][7]), f"device A SM duty: {rows[UUID_A]!r}")
    check_equal(rows[UUID_A][8:10], ["n/a", "n/a"], "device A SM shares before any measurement")
    check_equal(rows[UUID_B][6:], ["none", "-", "n/a", "n/a", "0"], "device B keeps no SM limit")


def test_sm_delivery(h):
    """The SM share delivered and the share the work asked for, as a
    controller publishes them through the region's API: device A held at
    its cap (cap 30, delivered 30%, asked 75%), device B using less than its
    cap (cap 50, delivered and asked 20%), device C published by a
    controller that writes no demand (delivered 25%, asked unknown), device
    D measured by its launches beside a neighbour (delivered 31%, asked
    45%)."""
    uuid_c = "GPU-cli-test-cccc"
    tree = os.path.join(h.tmp, "node")
    os.mkdir(tree)
    region = os.path.join(tree, "region.cache")
    h.actor(region, "device", UUID_A, "1g", "share", "300000", "750000")
    h.actor(region, "device", UUID_B, "1g", "share", "200000", "200000")
    h.actor(region, "device", uuid_c, "1g", "share", "250000", "0")
    uuid_d = "GPU-cli-test-dddd"
    h.actor(region, "device", uuid_d, "1g", "share-by-launches", "310000", "450000")
    for uuid, percent in ((UUID_A, "30"), (UUID_B, "50")):
        res = h.cli("set", "--file", region, "--sm", percent, "--device", uuid)
        check_equal(res.returncode, 0, f"set --sm {percent} on {uuid} ({res.stderr!r})")

    doc = h.status_json(region)
    check_status_schema(doc)
    devices = device_by_uuid(doc)
    got = {u: (d["sm_limit_percent"], d["sm_duty_ratio"], d["sm_share_ratio"], d["sm_asked_ratio"])
           for u, d in devices.items()}
    check_equal(got, {UUID_A: (30, 0.3, 0.3, 0.75), UUID_B: (50, 0.5, 0.2, 0.2), uuid_c: (None, 1, 0.25, None),
                      uuid_d: (None, 1, 0.31, 0.45)},
                "status --json: SM limit, duty, delivered and asked share")
    check_equal({u: d["sm_share_source"] for u, d in devices.items()},
                {UUID_A: "gates", UUID_B: "gates", uuid_c: "gates", uuid_d: "launches"},
                "status --json: how each delivered share was measured")

    res = h.cli("status", "--file", region)
    check_equal((res.returncode, res.stderr), (0, ""), "status exit code and stderr")
    rows = {r[1]: r for r in (split_row(l) for l in res.stdout.splitlines())
            if len(r) == 11 and r[1].startswith("GPU-")}
    check_equal({u: r[6:10] for u, r in rows.items()},
                {UUID_A: ["30%", "30.0%", "30.0%", "75.0%"], UUID_B: ["50%", "50.0%", "20.0%", "20.0%"],
                 uuid_c: ["none", "-", "25.0%", "n/a"], uuid_d: ["none", "-", "31.0%", "45.0%"]},
                "status: SM LIMIT, SM DUTY, SM DELIVERED, SM ASKED")

    res = h.cli("top", "--once", "--file", region)
    check_equal((res.returncode, res.stderr), (0, ""), "top exit code and stderr")
    rows = {r[1]: r for r in (split_row(l) for l in res.stdout.splitlines())
            if len(r) == 9 and r[1].startswith("GPU-")}
    check_equal({u: r[6:] for u, r in rows.items()},
                {UUID_A: ["30%", "30.0%", "75.0%"], UUID_B: ["50%", "20.0%", "20.0%"],
                 uuid_c: ["none", "25.0%", "n/a"], uuid_d: ["none", "31.0%", "45.0%"]},
                "top: SM LIMIT, SM DELIVERED, SM ASKED")

    # A narrow terminal leaves out the UUID before the shares.
    res = h.cli("top", "--once", "--file", region, env=h.env(COLUMNS="64"))
    check_equal((res.returncode, res.stderr), (0, ""), "narrow top exit code and stderr")
    header = next((l for l in res.stdout.splitlines() if l.startswith("DEVICE")), "")
    check_equal(split_row(header), ["DEVICE", "LIMIT", "IN USE", "SM LIMIT", "SM DELIVERED", "SM ASKED"],
                f"device header in 64 columns:\n{res.stdout}")

    res = h.cli("top", "--once", "--json", "--file", region)
    check_equal((res.returncode, res.stderr), (0, ""), "top --json exit code and stderr")
    devices = device_by_uuid(json.loads(res.stdout)["regions"][0])
    got = {u: (d["sm_share_ratio"], d["sm_asked_ratio"], d["sm_share_percent"], d["sm_asked_percent"])
           for u, d in devices.items()}
    check_equal(got, {UUID_A: (0.3, 0.75, 30, 75), UUID_B: (0.2, 0.2, 20, 20), uuid_c: (0.25, None, 25, None),
                      uuid_d: (0.31, 0.45, 31, 45)},
                "top --json: delivered and asked share, as ratios and percentages")

    # The per-GPU lines of a node view: one region per GPU here, so its
    # figures are the region's.
    res = h.cli("top", "--once", "--dir", tree)
    check_equal((res.returncode, res.stderr), (0, ""), "top --dir exit code and stderr")
    lines = res.stdout.splitlines()
    header = next((l for l in lines if l.startswith("GPU ")), None)
    check(header is not None, f"no per-GPU table in:\n{res.stdout}")
    check_equal(split_row(header)[-3:], ["SM CAPS", "SM DELIVERED", "SM ASKED"], "per-GPU header")
    rows = {r[0]: r for r in (split_row(l) for l in lines) if len(r) == 9 and r[0].startswith("GPU-")}
    check_equal({u: r[6:] for u, r in rows.items()},
                {UUID_A: ["30%", "30.0%", "75.0%"], UUID_B: ["50%", "20.0%", "20.0%"],
                 uuid_c: ["none", "25.0%", "n/a"], uuid_d: ["none", "31.0%", "45.0%"]},
                "top --dir per-GPU SM CAPS, SM DELIVERED, SM ASKED")


def test_status_empty_region(h):
    region = os.path.join(h.tmp, "empty.cache")
    proc, _ = h.actor(region)
    h.kill(proc)
    res = h.cli("reap", "--file", region)
    check_equal(res.returncode, 0, f"reap exit code ({res.stderr!r})")
    doc = h.status_json(region)
    check_status_schema(doc)
    check_equal((doc["devices"], doc["processes"]), ([], []), "empty region")
    res = h.cli("status", "--file", region)
    check_equal(res.returncode, 0, "status exit code")
    check("devices: none registered yet" in res.stdout, f"empty device table: {res.stdout}")
    check("processes: none attached" in res.stdout, f"empty process table: {res.stdout}")
    check("hint:" not in res.stdout, "no reap hint without dead slots")


def test_region_path_precedence(h):
    region = os.path.join(h.tmp, "real.cache")
    missing = os.path.join(h.tmp, "missing.cache")
    h.actor(region, "device", UUID_A, "1g")

    def status(*args, **env):
        return h.cli("status", "--json", *args, env=h.env(**env))

    cases = [
        ({"CUDA_DEVICE_MEMORY_SHARED_CACHE": region}, [], None),
        ({"GPUCAP_REGION": region, "CUDA_DEVICE_MEMORY_SHARED_CACHE": missing}, [], None),
        ({"GPUCAP_REGION": "", "CUDA_DEVICE_MEMORY_SHARED_CACHE": region}, [], None),
        ({"GPUCAP_REGION": missing}, ["--file", region], None),
        ({"GPUCAP_REGION": missing, "CUDA_DEVICE_MEMORY_SHARED_CACHE": region}, [], "GPUCAP_REGION"),
        ({"CUDA_DEVICE_MEMORY_SHARED_CACHE": missing}, [], "CUDA_DEVICE_MEMORY_SHARED_CACHE"),
        ({"GPUCAP_REGION": region}, ["--file", missing], "--file"),
    ]
    for env, args, failing_origin in cases:
        res = status(*args, **env)
        what = f"env {env} args {args}"
        if failing_origin is None:
            check_equal(res.returncode, 0, f"{what}: exit code ({res.stderr!r})")
            check_equal(json.loads(res.stdout)["path"], region, f"{what}: region used")
        else:
            try:
                check_one_line_error(res, 1, missing, failing_origin)
            except Failure as failure:
                raise Failure(f"{what}: {failure}")


def test_reap(h):
    pop = Populated(h)
    res = h.cli("reap", "--json", "--file", pop.region)
    check_equal((res.returncode, res.stderr), (0, ""), "reap exit code and stderr")
    doc = json.loads(res.stdout)
    check_types(doc, REAP_SPEC, "reap")
    for d in doc["devices"]:
        check_types(d, REAP_DEVICE_SPEC, "reap device")
    check_equal(doc["path"], pop.region, "reap path")
    check_equal(doc["reclaimed_slots"], 1, "slots reclaimed")
    check_equal(doc["returned_bytes"], 61 * MiB, "bytes returned (exactly actor B's)")
    check_equal(sorted((d["uuid"], d["returned_bytes"]) for d in doc["devices"]),
                [(UUID_A, 51 * MiB), (UUID_B, 10 * MiB)], "bytes returned per device")

    res = h.cli("reap", "--json", "--file", pop.region)
    doc = json.loads(res.stdout)
    check_equal((res.returncode, doc["reclaimed_slots"], doc["returned_bytes"], doc["devices"]),
                (0, 0, 0, []), "a second reap")

    status = h.status_json(pop.region)
    check_equal([p["pid"] for p in status["processes"]], [pop.a.pid], "processes after reap")
    devices = device_by_uuid(status)
    check_equal(devices[UUID_A]["charged_bytes"], 102 * MiB, "device A charged after reap")
    check_equal(devices[UUID_B]["charged_bytes"], 0, "device B charged after reap")
    check_equal((status["reclaimed_slots_total"], status["reclaimed_bytes_total"]), (1, 61 * MiB),
                "reclaimed totals")

    # The human form.
    c, _ = h.actor(pop.region, "device", UUID_A, "1g", "reserve", "data", "5m")
    index = devices[UUID_A]["index"]
    h.kill(c)
    res = h.cli("reap", "--file", pop.region)
    check_equal((res.returncode, res.stdout, res.stderr),
                (0, f"reclaimed 1 dead slot, returned 5 MiB (device {index}: 5 MiB)\n", ""), "reap text")
    res = h.cli("reap", "--file", pop.region)
    check_equal((res.returncode, res.stdout), (0, "reclaimed 0 dead slots, returned 0 B\n"), "reap text again")
    check(pop.a.poll() is None, "reap must leave live processes alone")


def test_region_errors(h):
    missing = os.path.join(h.tmp, "missing.cache")
    for command in ("status", "reap"):
        check_one_line_error(h.cli(command, "--file", missing), 1, missing)
        check(not os.path.exists(missing), f"{command} must not create a missing region")

    corrupt = os.path.join(h.tmp, "corrupt.cache")
    noise = os.urandom(1 << 16)
    with open(corrupt, "wb") as f:
        f.write(noise)
    os.chmod(corrupt, 0o600)
    for command in ("status", "reap"):
        check_one_line_error(h.cli(command, "--file", corrupt), 1, corrupt)
    with open(corrupt, "rb") as f:
        check(f.read() == noise, "a corrupt region must be left as it was")

    region = os.path.join(h.tmp, "real.cache")
    h.actor(region, "device", UUID_A, "1g")
    link = os.path.join(h.tmp, "link.cache")
    os.symlink(region, link)
    for command in ("status", "reap"):
        check_one_line_error(h.cli(command, "--file", link), 1, link)

    check_one_line_error(h.cli("status", "--file", h.tmp), 1, h.tmp)


def run_env(h, *args, env=None, cwd=None, binary=None):
    res = h.cli("run", *args, env=env, cwd=cwd, binary=binary)
    check_equal(res.returncode, 0, f"gpucap run {' '.join(args)} exit code ({res.stderr!r})")
    return dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)


def test_run_environment(h):
    fake = os.path.realpath(h.fake_preload)
    env = h.env(GPUCAP_LIBRARY=h.fake_preload)
    got = run_env(h, "-m", "1g", "--devices", "1", "--", "env", env=env)
    check_equal(got.get("LD_PRELOAD"), fake, "LD_PRELOAD")
    check_equal(got.get("CUDA_DEVICE_MEMORY_LIMIT"), str(GiB), "CUDA_DEVICE_MEMORY_LIMIT")
    check_equal(got.get("CUDA_VISIBLE_DEVICES"), "1", "CUDA_VISIBLE_DEVICES")
    check("CUDA_DEVICE_MEMORY_SHARED_CACHE" not in got, "no region variable without --file")

    for form, want in ((["-m512m"], 512 * MiB), (["--memory=2g"], 2 * GiB), (["--memory", "4096"], 4096)):
        got = run_env(h, *form, "env", env=env)
        check_equal(got.get("CUDA_DEVICE_MEMORY_LIMIT"), str(want), f"limit from {form}")

    # -m must win: the library prefers these over CUDA_DEVICE_MEMORY_LIMIT.
    inherited = {"GPUCAP_MEMORY_LIMIT": "5g", "GPUCAP_MEMORY_LIMIT_1": "2g",
                 "CUDA_DEVICE_MEMORY_LIMIT_0": "3g", "CUDA_DEVICE_MEMORY_LIMIT_12": "3g",
                 "CUDA_DEVICE_MEMORY_LIMIT_X": "kept", "GPUCAP_MEMORY_LIMITS": "kept"}
    got = run_env(h, "-m", "1g", "env", env=h.env(GPUCAP_LIBRARY=h.fake_preload, **inherited))
    check_equal({k: v for k, v in got.items() if k.startswith(LIMIT_PREFIXES)},
                {"CUDA_DEVICE_MEMORY_LIMIT": str(GiB), "CUDA_DEVICE_MEMORY_LIMIT_X": "kept",
                 "GPUCAP_MEMORY_LIMITS": "kept"}, "limit variables after -m")
    got = run_env(h, "env", env=h.env(GPUCAP_LIBRARY=h.fake_preload, **inherited))
    check_equal({k: v for k, v in got.items() if k.startswith(LIMIT_PREFIXES)}, inherited,
                "limit variables without -m")

    other = os.path.join(h.tmp, "other.so")
    shutil.copy(h.fake_preload, other)
    got = run_env(h, "--file", "sub/region.cache", "--", "env", cwd=h.tmp,
                  env=h.env(GPUCAP_LIBRARY=h.fake_preload, LD_PRELOAD=f"{other} {fake}",
                            GPUCAP_REGION="/elsewhere.cache"))
    check_equal(got.get("LD_PRELOAD"), f"{fake}:{other}", "LD_PRELOAD prepended, without a second copy")
    region = os.path.join(h.tmp, "sub/region.cache")
    check_equal(got.get("CUDA_DEVICE_MEMORY_SHARED_CACHE"), region, "region path made absolute")
    check_equal(got.get("GPUCAP_REGION"), region, "an inherited GPUCAP_REGION follows --file")
    check("CUDA_DEVICE_MEMORY_LIMIT" not in got, "no limit variable without -m")

    bad = os.path.join(h.tmp, "nothing.so")
    check_one_line_error(h.cli("run", "--", "env", env=h.env(GPUCAP_LIBRARY=bad)), 1, bad, "GPUCAP_LIBRARY")


def test_run_exit_status(h):
    env = h.env(GPUCAP_LIBRARY=h.fake_preload)
    res = h.cli("run", "--", "sh", "-c", "exit 7", env=env)
    check_equal(res.returncode, 7, "the command's exit status")
    proc = subprocess.Popen([h.gpucap, "run", "--", "sh", "-c", "echo $$"], env=env,
                            stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=20)
    check_equal(out.strip(), str(proc.pid), "the command replaces gpucap (same pid)")
    missing = os.path.join(h.tmp, "no-such-command")
    check_one_line_error(h.cli("run", "--", missing, env=env), 127, missing)
    not_executable = os.path.join(h.tmp, "plain-file")
    with open(not_executable, "w") as f:
        f.write("#!/bin/sh\n")
    check_one_line_error(h.cli("run", "--", not_executable, env=env), 127, not_executable)


def install_copy(h, root, lib_subdir):
    bindir = os.path.join(root, "bin")
    os.makedirs(bindir)
    binary = os.path.join(bindir, "gpucap")
    shutil.copy(h.gpucap, binary)
    if lib_subdir is not None:
        libdir = os.path.normpath(os.path.join(bindir, lib_subdir))
        os.makedirs(libdir, exist_ok=True)
        shutil.copy(h.fake_preload, os.path.join(libdir, "libgpucap.so"))
        return binary, os.path.realpath(os.path.join(libdir, "libgpucap.so"))
    return binary, None


def test_run_finds_library(h):
    layouts = [(".", "next to the binary"), ("../lib", "in ../lib")]
    if h.libdir not in ("lib", ""):
        layouts.append((os.path.join("..", h.libdir), f"in ../{h.libdir}"))
    for n, (sub, what) in enumerate(layouts):
        binary, lib = install_copy(h, os.path.join(h.tmp, f"layout{n}"), sub)
        got = run_env(h, "--", "env", binary=binary)
        check_equal(got.get("LD_PRELOAD"), lib, f"library {what}")

    # A symlink to the binary (e.g. /usr/local/bin/gpucap) still finds the
    # library next to the real binary.
    binary, lib = install_copy(h, os.path.join(h.tmp, "linked"), "../lib")
    link = os.path.join(h.tmp, "gpucap-link")
    os.symlink(binary, link)
    check_equal(run_env(h, "--", "env", binary=link).get("LD_PRELOAD"), lib, "library through a symlink")

    # The directory of the binary wins over ../lib.
    binary, lib = install_copy(h, os.path.join(h.tmp, "both"), ".")
    os.makedirs(os.path.join(h.tmp, "both", "lib"))
    shutil.copy(h.fake_preload, os.path.join(h.tmp, "both", "lib", "libgpucap.so"))
    check_equal(run_env(h, "--", "env", binary=binary).get("LD_PRELOAD"), lib, "bindir before ../lib")

    binary, _ = install_copy(h, os.path.join(h.tmp, "lonely"), None)
    check_one_line_error(h.cli("run", "--", "env", binary=binary), 1, "libgpucap.so", "GPUCAP_LIBRARY")

    binary, _ = install_copy(h, os.path.join(h.tmp, "with blank"), ".")
    check_one_line_error(h.cli("run", "--", "env", binary=binary), 1, "LD_PRELOAD")


def test_run_real_library(h):
    if not h.real_preload:
        raise Skip("libgpucap.so is not built here (or this is a sanitizer build)")
    region = os.path.join(h.tmp, "region.cache")
    env = h.env(GPUCAP_LIBRARY=h.real_preload)
    res = h.cli("run", "-m", "1g", "--file", region, "--", "sh", "-c", "echo $LD_PRELOAD; exit 3", env=env)
    check_equal(res.returncode, 3, f"exit status through the real library ({res.stderr!r})")
    check_equal(res.stdout, os.path.realpath(h.real_preload) + "\n", "LD_PRELOAD with the real library")
    check("cannot be preloaded" not in res.stderr, f"the loader refused the library: {res.stderr!r}")


def run_case(tests, name, h, tmp, skips=(Skip,)):
    """Run one test case: 0 passed, 1 failed, 77 skipped (CTest's code for a
    skip, never a pass). A case skips by raising one of skips or returning 77.
    The harness and the scratch directory go away either way."""
    try:
        if tests[name](h) == 77:
            print(f"SKIPPED {name}: its requirements are not met here")
            return 77
    except skips as why:
        print(f"SKIPPED {name}: {why}")
        return 77
    except Failure as failure:
        print(f"FAIL {name}: {failure}", file=sys.stderr)
        return 1
    finally:
        h.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"ok {name}")
    return 0


def case_main(tests, prefix, options=(), skips=(Skip,), tmp_mode=None, setup=None):
    """The main of a CLI test script: parse the arguments every script takes
    plus options (each a required --NAME), make the scratch directory
    (gpucap-PREFIX-CASE-*, chmod tmp_mode if given) and the harness, let
    setup(h, args) add to it, and run the case named; returns the exit code."""
    parser = argparse.ArgumentParser()
    parser.add_argument("test", choices=sorted(tests))
    parser.add_argument("--gpucap", required=True)
    parser.add_argument("--actor", required=True)
    parser.add_argument("--fake-preload", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--libdir", default="lib")
    parser.add_argument("--real-preload", default=None)
    for option in options:
        parser.add_argument(option, required=True)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix=f"gpucap-{prefix}-{args.test}-")
    if tmp_mode is not None:
        os.chmod(tmp, tmp_mode)
    h = Harness(args, tmp)
    if setup:
        setup(h, args)
    return run_case(tests, args.test, h, tmp, skips)


TESTS = {name[len("test_"):]: fn for name, fn in globals().items() if name.startswith("test_")}


if __name__ == "__main__":
    sys.exit(case_main(TESTS, "cli"))
