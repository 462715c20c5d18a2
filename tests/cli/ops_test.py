#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Tests of the operator commands: gpucap top, set and doctor.

Uses the harness of cli_test.py (region_actor plays the limited processes).
A test that needs root (a limits file must be owned by root) exits 77, which
CTest reports as skipped.

usage: ops_test.py TEST --gpucap PATH --actor PATH --fake-preload PATH
                        --version X.Y.Z --libdir DIR [--real-preload PATH]
"""
import ctypes
import json
import os
import re
import shutil
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_test import (case_main, GiB, MiB, UUID_A, UUID_B, Failure, Populated, check,  # noqa: E402
                      check_equal, check_one_line_error, check_usage_errors, device_by_uuid, split_row)

SKIP = 77


class Skip(Exception):
    pass


def need_root(why):
    if os.geteuid() != 0:
        raise Skip(f"needs root: {why}")
    if os.path.lexists("/etc/gpucap/limits.conf"):
        raise Skip("/etc/gpucap/limits.conf exists here and always applies")


def write_limits(path, text, owner=0, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chown(path, owner, 0)
    os.chmod(path, mode)


# ---- help and usage ------------------------------------------------------------

def test_ops_help(h):
    res = h.cli("--help")
    for command in ("top", "set", "doctor"):
        check(re.search(rf"^  {command} ", res.stdout, re.M), f"--help must list {command}")
        for args in ((command, "--help"), (command, "-h"), ("help", command)):
            res2 = h.cli(*args)
            check_equal((res2.returncode, res2.stderr), (0, ""), f"{' '.join(args)}")
            check(res2.stdout.startswith(f"usage: gpucap {command}"), f"{' '.join(args)}: {res2.stdout!r}")


def test_ops_usage_errors(h):
    cases = [
        (["top", "--file", "a", "--dir", "b"], ["--file and --dir"]),
        (["top", "--interval", "0"], ["--interval", "'0'"]),
        (["top", "--interval=abc"], ["--interval", "'abc'"]),
        (["top", "extra"], ["unexpected argument 'extra'"]),
        (["set"], ["nothing to change"]),
        (["set", "-m", "lots"], ["-m/--memory", "'lots'"]),
        (["set", "-m", "0"], ["more than 0", "unlimited"]),
        (["set", "-m", "256t"], ["largest limit"]),
        (["set", "--sm", "101"], ["--sm", "'101'"]),
        (["set", "-m", "1g", "--device="], ["--device"]),
        (["doctor", "--bogus"], ["unknown option '--bogus'", "gpucap doctor --help"]),
        (["doctor", "now"], ["unexpected argument 'now'"]),
    ]
    check_usage_errors(h, cases)


# ---- top -------------------------------------------------------------------------

def test_top_once(h):
    pop = Populated(h)
    res = h.cli("top", "--once", "--file", pop.region)
    check_equal((res.returncode, res.stderr), (0, ""), "top --once exit code and stderr")
    check("\033" not in res.stdout, "--once must not print terminal escapes")
    lines = res.stdout.splitlines()
    check(lines[0].startswith("gpucap top  "), f"first line: {lines[0]!r}")
    check(any(l == f"region {pop.region}: 2 processes (1 dead), 2 devices" for l in lines),
          f"region line in:\n{res.stdout}")
    header = next((l for l in lines if l.startswith("DEVICE")), None)
    check_equal(split_row(header), ["DEVICE", "UUID", "LIMIT", "CHARGED", "IN USE", "PEAK", "SM LIMIT",
                                    "SM DELIVERED", "SM ASKED"], "device header")
    rows = {r[1]: r for r in (split_row(l) for l in lines) if len(r) == 9 and r[1].startswith("GPU-")}
    check_equal(rows[UUID_A][2:], ["1 GiB", "153 MiB", "153 MiB", rows[UUID_A][5], "none", "n/a", "n/a"],
                "device A")
    header = next((l for l in lines if l.lstrip().startswith("PID")), None)
    check_equal(split_row(header), ["PID", "HOST PID", "COMMAND", "MEMORY", "STATE", "DEVICES", "LAST KERNEL"],
                "process header")
    procs = {r[0]: r for r in (split_row(l) for l in lines) if len(r) == 7 and r[0].isdigit()}
    a, b = procs[str(pop.a.pid)], procs[str(pop.b.pid)]
    check_equal(a[1:5], [str(pop.a.pid), "region_actor", "102 MiB", "alive"], "actor A row")
    check_equal(a[6], "-", "last kernel of a process that never launched one")
    check_equal(b[3:5], ["61 MiB", "dead"], "actor B row")

    res = h.cli("top", "--once", "--json", "--file", pop.region)
    check_equal((res.returncode, res.stderr), (0, ""), "top --json exit code and stderr")
    check(res.stdout.count("\n") == 1, "top --once --json prints one line")
    doc = json.loads(res.stdout)
    check_equal(doc["schema_version"], 1, "schema_version")
    check_equal(len(doc["regions"]), 1, "regions")
    region = doc["regions"][0]
    check_equal(region["path"], pop.region, "path")
    devices = device_by_uuid(region)
    check_equal((devices[UUID_A]["limit_bytes"], devices[UUID_A]["charged_bytes"],
                 devices[UUID_A]["sm_share_percent"], devices[UUID_A]["sm_asked_percent"]),
                (GiB, 153 * MiB, None, None), "device A")
    check_equal((devices[UUID_A]["sm_limit_percent"], devices[UUID_A]["sm_duty_ratio"],
                 devices[UUID_A]["sm_share_ratio"], devices[UUID_A]["sm_asked_ratio"]), (None, 1, None, None),
                "device A SM limit, duty, delivered and asked share")
    check_equal(devices[UUID_B]["limit_bytes"], None, "device B unlimited")
    procs = {p["pid"]: p for p in region["processes"]}
    check_equal((procs[pop.a.pid]["alive"], procs[pop.a.pid]["memory_bytes"],
                 procs[pop.a.pid]["last_kernel_unix_ns"], procs[pop.a.pid]["host_pid"]),
                (True, 102 * MiB, None, pop.a.pid), "actor A")
    check_equal((procs[pop.b.pid]["alive"], procs[pop.b.pid]["memory_bytes"]), (False, 61 * MiB), "actor B")

    # An SM limit set live: top shows it at once; the share stays n/a (and
    # null) until the library has measured one.
    res = h.cli("set", "--file", pop.region, "--sm", "40", "--device", UUID_A)
    check_equal(res.returncode, 0, f"set --sm ({res.stderr!r})")
    res = h.cli("top", "--once", "--file", pop.region)
    check_equal((res.returncode, res.stderr), (0, ""), "top after set --sm")
    rows = {r[1]: r for r in (split_row(l) for l in res.stdout.splitlines())
            if len(r) == 9 and r[1].startswith("GPU-")}
    check_equal(rows[UUID_A][6:], ["40%", "n/a", "n/a"], "device A SM limit and shares after set --sm")
    check_equal(rows[UUID_B][6:], ["none", "n/a", "n/a"], "device B SM limit and shares")
    doc = json.loads(h.cli("top", "--once", "--json", "--file", pop.region).stdout)
    devices = device_by_uuid(doc["regions"][0])
    dev = devices[UUID_A]
    check_equal((dev["sm_limit_percent"], dev["sm_share_ratio"], dev["sm_share_percent"], dev["sm_asked_ratio"],
                 dev["sm_asked_percent"]), (40, None, None, None, None), "device A in top --json after set --sm")
    check(isinstance(dev["sm_duty_ratio"], (int, float)) and 0 <= dev["sm_duty_ratio"] <= 1,
          f"device A SM duty ratio: {dev['sm_duty_ratio']!r}")

    missing = os.path.join(h.tmp, "missing.cache")
    check_one_line_error(h.cli("top", "--once", "--file", missing), 1, missing)
    check(not os.path.exists(missing), "top must not create a region")


def test_top_dir(h):
    one = os.path.join(h.tmp, "one.cache")
    two = os.path.join(h.tmp, "two.cache")
    h.actor(one, "device", UUID_A, "1g", "reserve", "data", "10m")
    h.actor(two, "device", UUID_B, "2g", "reserve", "data", "20m")
    with open(os.path.join(h.tmp, "notes.txt"), "w") as f:
        f.write("not a region\n" * 1000)
    before = sorted(os.listdir(h.tmp))
    res = h.cli("top", "--once", "--dir", h.tmp)
    check_equal((res.returncode, res.stderr), (0, ""), "top --dir exit code and stderr")
    # Regions are labelled by their path below --dir.
    check("region one.cache: 1 processes" in res.stdout and "region two.cache: 1 processes" in res.stdout,
          f"both regions shown:\n{res.stdout}")
    check(res.stdout.index("region one.cache") < res.stdout.index("region two.cache"), "regions in name order")
    check(f"(1 other file below {h.tmp} is not a gpucap region)" in res.stdout, f"other files:\n{res.stdout}")
    doc = json.loads(h.cli("top", "--once", "--json", "--dir", h.tmp).stdout)
    check_equal([r["path"] for r in doc["regions"]], [one, two], "regions in JSON")
    check_equal(doc["other_files"], 1, "other_files")
    check_equal(sorted(os.listdir(h.tmp)), before, "top --dir must not create or remove files")
    empty = os.path.join(h.tmp, "empty")
    os.mkdir(empty)
    res = h.cli("top", "--once", "--dir", empty)
    check_equal(res.returncode, 0, "an empty directory")
    check(f"no gpucap regions in {empty}" in res.stdout, res.stdout)
    check_one_line_error(h.cli("top", "--once", "--dir", os.path.join(h.tmp, "nodir")), 1, "nodir")


def test_top_refresh(h):
    """Without --once, top redraws until a signal and then exits 0."""
    import signal
    import subprocess
    import time
    region = os.path.join(h.tmp, "r.cache")
    h.actor(region, "device", UUID_A, "1g")
    proc = subprocess.Popen([h.gpucap, "top", "--json", "--interval", "0.1", "--file", region], env=h.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.6)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    check_equal((proc.returncode, err), (0, ""), "top exits 0 on SIGINT")
    frames = out.splitlines()
    check(len(frames) >= 2, f"several frames, one JSON object each: {out!r}")
    for frame in frames:
        check_equal(json.loads(frame)["regions"][0]["path"], region, "frame path")


# ---- set -------------------------------------------------------------------------

AUDIT_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ uid=(\d+) user=(\S+) pid=(\d+) device=(\d+) "
                        r"uuid=(\S+) (memory_bytes|sm_percent) (\S+) -> (\S+)")


def read_audit(region):
    with open(region + ".audit") as f:
        return [AUDIT_LINE.fullmatch(line.rstrip("\n")) for line in f]


def test_set_memory(h):
    region = os.path.join(h.tmp, "r.cache")
    h.actor(region, "device", UUID_A, "8g", "reserve", "data", "6g")
    h.actor(region, "device", UUID_B, "8g")
    index = {d["uuid"]: d["index"] for d in h.status_json(region)["devices"]}
    a = index[UUID_A]

    res = h.cli("set", "--file", region, "--memory", "4g", "--device", UUID_A)
    check_equal((res.returncode, res.stderr), (0, ""), "set exit code and stderr")
    check_equal(res.stdout, f"device {a} ({UUID_A}): memory limit 8 GiB -> 4 GiB\n"
                f"device {a}: limit 4 GiB is below the 6 GiB charged; new allocations are refused until "
                f"usage falls\n", "set output")
    devices = device_by_uuid(h.status_json(region))
    check_equal((devices[UUID_A]["limit_bytes"], devices[UUID_B]["limit_bytes"]), (4 * GiB, 8 * GiB),
                "only device A changed")
    # A live process sees the new limit at once.
    proc, _ = h.actor(region, "device", UUID_B, "8g", "reserve", "data", "1g")
    res = h.cli("set", "--file", region, "-m", "1g", "-d", str(index[UUID_B]), "--json")
    check_equal(res.returncode, 0, f"set --json ({res.stderr!r})")
    doc = json.loads(res.stdout)
    check_equal(doc["audit_log"], region + ".audit", "audit_log")
    check_equal([(d["uuid"], d["old_limit_bytes"], d["new_limit_bytes"], d["below_charged"])
                 for d in doc["devices"]], [(UUID_B, 8 * GiB, GiB, False)], "set --json devices")
    try:
        h.actor(region, "device", UUID_B, "8g", "reserve", "data", "1m")
        raise Failure("a reservation past the new limit must be refused")
    except Failure as failure:
        check("over the device limit" in str(failure), f"refused for the limit: {failure}")

    res = h.cli("set", "--file", region, "-m", "unlimited", "--sm", "30")
    check_equal(res.returncode, 0, f"set all ({res.stderr!r})")
    devices = device_by_uuid(h.status_json(region))
    check_equal([(devices[u]["limit_bytes"], devices[u]["sm_limit_percent"]) for u in (UUID_A, UUID_B)],
                [(None, 30), (None, 30)], "every device changed")
    check(f"device {a} ({UUID_A}): SM limit none -> 30%" in res.stdout, res.stdout)

    audit = read_audit(region)
    check(all(audit), f"every audit line has the documented form: {audit}")
    got = [(m.group(4), m.group(5), m.group(6), m.group(7), m.group(8)) for m in audit]
    want = [(str(a), UUID_A, "memory_bytes", str(8 * GiB), str(4 * GiB)),
            (str(index[UUID_B]), UUID_B, "memory_bytes", str(8 * GiB), str(GiB))]
    check_equal(got[:2], want, "the first two audit entries")
    check_equal(len(got), 6, "one audit line per change")
    check(all(m.group(1) == str(os.getuid()) for m in audit), "audit uid")
    mode = stat.S_IMODE(os.stat(region + ".audit").st_mode)
    check_equal(oct(mode), oct(0o600), "the audit log is private like the region")


def test_set_errors(h):
    region = os.path.join(h.tmp, "r.cache")
    missing = os.path.join(h.tmp, "missing.cache")
    check_one_line_error(h.cli("set", "--file", missing, "-m", "1g"), 1, missing)
    check(not os.path.exists(missing), "set must not create a region")
    proc, _ = h.actor(region)
    check_one_line_error(h.cli("set", "--file", region, "-m", "1g"), 1, "no devices are registered")
    h.actor(region, "device", UUID_A, "1g")
    check_one_line_error(h.cli("set", "--file", region, "-m", "1g", "-d", "GPU-nope"), 1, "GPU-nope",
                         "gpucap status")
    check_one_line_error(h.cli("set", "--file", region, "-m", "1g", "-d", "63"), 1, "no device '63'")
    # An audit log that is a link: nothing is changed.
    os.symlink("/dev/null", region + ".audit")
    check_one_line_error(h.cli("set", "--file", region, "-m", "2g"), 1, "audit log", "no limit was changed")
    check_equal(device_by_uuid(h.status_json(region))[UUID_A]["limit_bytes"], GiB, "limit unchanged")


def test_set_limits_file(h):
    need_root("the limits file must be owned by root")
    region = os.path.join(h.tmp, "r.cache")
    h.actor(region, "device", UUID_A, "1g")
    index = device_by_uuid(h.status_json(region))[UUID_A]["index"]
    limits = os.path.join(h.tmp, "limits.conf")
    write_limits(limits, "# node agent\nmemory = 2g\n")
    res = h.cli("set", "--file", region, "-m", "4g", env=h.env(GPUCAP_LIMITS_FILE=limits))
    check_equal(res.returncode, 0, f"set above the file's cap ({res.stderr!r})")
    check(f"device {index}: limit 4 GiB has no effect beyond the limits file's cap of 2 GiB ({limits}:2); "
          "processes keep the file's cap\n" in res.stdout, res.stdout)
    res = h.cli("set", "--file", region, "-m", "1g", "--json", env=h.env(GPUCAP_LIMITS_FILE=limits))
    check_equal(json.loads(res.stdout)["devices"][0]["limits_file_cap_bytes"], 2 * GiB, "cap in JSON")


# ---- doctor ----------------------------------------------------------------------

def loadable(soname):
    try:
        ctypes.CDLL(soname)
        return True
    except OSError:
        return False


FIX_DRIVER = "install the NVIDIA driver, or start the container with the NVIDIA runtime so that it is mounted"


def doctor_lines(h, *args, **env):
    res = h.cli("doctor", *args, env=h.env(**env))
    check(res.returncode in (0, 1), f"doctor exit code {res.returncode} ({res.stderr!r})")
    check_equal(res.stderr, "", "doctor stderr")
    lines = res.stdout.splitlines()
    for line in lines:
        check(re.match(r"(ok  |warn|fail)  [a-z-]+: ", line), f"line form: {line!r}")
    return res.returncode, lines


def test_doctor_drivers(h):
    _, lines = doctor_lines(h, "--file", os.path.join(h.tmp, "none.cache"))
    for check_name, soname, what in (("cuda-driver", "libcuda.so.1", "CUDA programs cannot run here"),
                                     ("nvml", "libnvidia-ml.so.1",
                                      "nvidia-smi and NVML memory queries cannot run here")):
        if loadable(soname):
            want = f"ok    {check_name}: {soname} loads"
        else:
            want = f"warn  {check_name}: {soname} cannot be loaded, so {what}; fix: {FIX_DRIVER}"
        check(want in lines, f"want {want!r} in:\n" + "\n".join(lines))


def test_doctor_region(h):
    pop = Populated(h)
    rc, lines = doctor_lines(h, "--file", pop.region, GPUCAP_LIBRARY=h.fake_preload)
    text = "\n".join(lines)
    check(f"ok    region: {pop.region} attaches (path from --file): format 2, 2 devices, 2 processes" in lines,
          text)
    check("warn  region: 1 dead slot awaiting reclaim still holds memory; fix: run 'gpucap reap'" in lines, text)
    check(f"ok    permissions: region {pop.region}: owner uid {os.geteuid()}, mode 0600" in lines, text)
    check("ok    host-pid: every process has a host PID (2 processes)" in lines, text)
    # The fake preload library is not libgpucap.so: the probe child says so.
    fake = os.path.realpath(h.fake_preload)
    check(any(l.startswith(f"fail  preload: {fake} was not loaded into a child") for l in lines), text)
    check_equal(rc, 1, "doctor exits 1 when a check fails")

    h.cli("reap", "--file", pop.region)
    _, lines = doctor_lines(h, "--file", pop.region, GPUCAP_LIBRARY=h.fake_preload)
    check("ok    region: no dead slots awaiting reclaim" in lines, "\n".join(lines))

    missing = os.path.join(h.tmp, "missing.cache")
    _, lines = doctor_lines(h, "--file", missing)
    check(any(l.startswith(f"warn  region: no region file at {missing} yet (path from --file)") for l in lines),
          "\n".join(lines))
    check(not os.path.exists(missing), "doctor must not create a region")

    corrupt = os.path.join(h.tmp, "corrupt.cache")
    with open(corrupt, "wb") as f:
        f.write(b"x" * 8192)
    os.chmod(corrupt, 0o606)
    rc, lines = doctor_lines(h, "--file", corrupt)
    text = "\n".join(lines)
    check(any(l.startswith("fail  region: ") and corrupt in l for l in lines), text)
    check(any(l.startswith(f"fail  permissions: region {corrupt} has mode 0606") for l in lines), text)
    check_equal(rc, 1, "exit code with a corrupt region")

    shared = os.path.join(h.tmp, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o777)
    region = os.path.join(shared, "r.cache")
    h.actor(region, "device", UUID_A, "1g")
    _, lines = doctor_lines(h, "--file", region)
    check(any(l.startswith(f"fail  permissions: directory {shared} is writable by everyone without the sticky")
              for l in lines), "\n".join(lines))

    res = h.cli("doctor", "--json", "--file", pop.region, env=h.env(GPUCAP_LIBRARY=h.fake_preload))
    doc = json.loads(res.stdout)
    check_equal((doc["schema_version"], doc["ok"]), (1, False), "doctor --json")
    for c in doc["checks"]:
        check(c["status"] in ("ok", "warn", "fail") and isinstance(c["message"], str) and
              (c["fix"] is None or isinstance(c["fix"], str)), f"check entry {c}")


def test_doctor_preload(h):
    if not h.real_preload:
        raise Skip("libgpucap.so is not built here (or this is a sanitizer build)")
    _, lines = doctor_lines(h, "--file", os.path.join(h.tmp, "none.cache"), GPUCAP_LIBRARY=h.real_preload)
    want = f"ok    preload: {os.path.realpath(h.real_preload)} is loaded into a child started with LD_PRELOAD"
    check(want in lines, f"want {want!r} in:\n" + "\n".join(lines))


def test_doctor_limits(h):
    none = os.path.join(h.tmp, "none.cache")
    _, lines = doctor_lines(h, "--file", none, CUDA_DEVICE_MEMORY_LIMIT="8g", GPUCAP_MEMORY_LIMIT_1="2g",
                            CUDA_DEVICE_MEMORY_LIMIT_1="1g")
    text = "\n".join(lines)
    check("ok    limits: device 1: memory 2 GiB from GPUCAP_MEMORY_LIMIT_1=2 GiB; SM none" in lines, text)
    check("ok    limits: other devices: memory 8 GiB from CUDA_DEVICE_MEMORY_LIMIT=8 GiB; SM none" in lines,
          text)
    rc, lines = doctor_lines(h, "--file", none, CUDA_DEVICE_MEMORY_LIMIT="12q")
    text = "\n".join(lines)
    check(any(l.startswith('fail  limits: CUDA_DEVICE_MEMORY_LIMIT="12q" is not valid') for l in lines), text)
    check("fail  limits: every device: capped at 0 bytes (fail closed) because CUDA_DEVICE_MEMORY_LIMIT is "
          "malformed; fix: fix the setting named here" in lines, text)
    check_equal(rc, 1, "a malformed limit fails doctor")


def test_doctor_limits_file(h):
    need_root("the limits file must be owned by root")
    none = os.path.join(h.tmp, "none.cache")
    limits = os.path.join(h.tmp, "limits.conf")
    write_limits(limits, "memory = 4g\nmemory.1 = 1g\nsm = 40\n")
    _, lines = doctor_lines(h, "--file", none, GPUCAP_LIMITS_FILE=limits, CUDA_DEVICE_MEMORY_LIMIT="8g",
                            GPUCAP_MEMORY_LIMIT_1="512m")
    text = "\n".join(lines)
    check(f"ok    limits-file: {limits} (from GPUCAP_LIMITS_FILE) is trusted: owned by root, not writable by "
          "others" in lines, text)
    check(f"ok    limits: device 1: memory 512 MiB from memory.1 ({limits}:2), GPUCAP_MEMORY_LIMIT_1=512 MiB "
          "(lower, wins); SM 40% from sm" in lines, text)
    check(f"ok    limits: other devices: memory 4 GiB from memory ({limits}:1), CUDA_DEVICE_MEMORY_LIMIT=8 GiB "
          "(cannot raise it); SM 40% from sm" in lines, text)
    os.chmod(limits, 0o664)
    rc, lines = doctor_lines(h, "--file", none, GPUCAP_LIMITS_FILE=limits)
    text = "\n".join(lines)
    check(f"fail  limits-file: limits file {limits} has mode 0664: writable by its group, so it is not "
          f"trusted; chmod go-w {limits}; limited processes fail closed (every device capped at 0)" in lines, text)
    check_equal(rc, 1, "a refused limits file fails doctor")


TESTS = {name[len("test_"):]: fn for name, fn in globals().items() if name.startswith("test_")}


def forget_limits_file(h, _args):
    # Nothing inherited may steer the limits under test.
    h.base_env.pop("GPUCAP_LIMITS_FILE", None)


if __name__ == "__main__":
    sys.exit(case_main(TESTS, "ops", skips=(Skip,), tmp_mode=0o755, setup=forget_limits_file))
