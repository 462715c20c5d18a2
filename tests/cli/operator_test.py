#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Tests of what an operator meets on day one: run's conflicting limits,
doctor's limits in force, the per-user default region, top over a node
directory, resolve's missing files, run --sm/--node-dir, help and docs in
agreement, the example program and the ./gpucap wrapper.

Uses the harness of cli_test.py (region_actor plays the limited processes).
A test that cannot run here exits 77, which CTest reports as skipped.

usage: operator_test.py TEST --gpucap PATH --actor PATH --fake-preload PATH
                        --version X.Y.Z --libdir DIR --source DIR
                        --default-path-probe PATH --example PATH --fakedriver DIR
                        [--real-preload PATH]
"""
import json
import os
import pty
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_test import (case_main, UUID_A, UUID_B, Failure, Skip, check, check_equal,  # noqa: E402
                      check_one_line_error, split_row)

SKIP = 77


# ---- run and doctor: the region's limits hold -----------------------------------

def test_run_region_limits(h):
    region = os.path.join(h.tmp, "r.cache")
    h.actor(region, "device", UUID_A, "1g", "device", UUID_B, "1g")
    index = {d["uuid"]: d["index"] for d in h.status_json(region)["devices"]}
    env = h.env(GPUCAP_LIBRARY=h.fake_preload)
    res = h.cli("run", "-m", "3g", "--sm", "30", "--file", region, "--", "true", env=env)
    check_equal(res.returncode, 0, f"run exit code ({res.stderr!r})")
    lines = res.stderr.splitlines()
    check_equal(len(lines), 4, f"one warning per device and limit: {res.stderr!r}")
    for uuid in (UUID_A, UUID_B):
        i = index[uuid]
        memory = [l for l in lines if f"device {i} ({uuid})" in l and "-m 3g" in l]
        check_equal(len(memory), 1, f"memory warning for {uuid}: {res.stderr!r}")
        check("at 1 GiB" in memory[0] and f"gpucap set --memory 3g --device {i} --file {region}" in memory[0],
              f"the warning names the limit that holds and the command that changes it: {memory[0]!r}")
        check(memory[0].startswith("gpucap run: warning: "), memory[0])
        sm = [l for l in lines if f"device {i} ({uuid})" in l and "--sm 30" in l]
        check_equal(len(sm), 1, f"SM warning for {uuid}: {res.stderr!r}")
        check("no SM cap" in sm[0] and f"gpucap set --sm 30 --device {i} --file {region}" in sm[0], sm[0])
    # The same limit: nothing to say.
    res = h.cli("run", "-m", "1g", "--file", region, "--", "true", env=env)
    check_equal((res.returncode, res.stderr), (0, ""), "run with the region's own limit")
    # No region yet: nothing to say, and nothing is created.
    fresh = os.path.join(h.tmp, "fresh.cache")
    res = h.cli("run", "-m", "3g", "--file", fresh, "--", "true", env=env)
    check_equal((res.returncode, res.stderr, os.path.exists(fresh)), (0, "", False), "run before any region")


def test_doctor_limits_in_force(h):
    region = os.path.join(h.tmp, "r.cache")
    h.actor(region, "device", UUID_A, "1g")
    index = h.status_json(region)["devices"][0]["index"]
    res = h.cli("doctor", "--json", "--file", region, env=h.env(CUDA_DEVICE_MEMORY_LIMIT="3g"))
    checks = json.loads(res.stdout)["checks"]
    in_force = [c for c in checks if c["check"] == "limits" and "in force on device" in c["message"]]
    check_equal(len(in_force), 1, f"one in-force line per region device: {checks}")
    c = in_force[0]
    check_equal(c["status"], "warn", f"the shell asks for another limit: {c}")
    check(f"device {index} ({UUID_A})" in c["message"] and "memory 1 GiB" in c["message"] and
          "asks for memory 3 GiB" in c["message"], f"the limit in force and the one asked for: {c}")
    check(f"--device {index} --file {region}" in c["fix"], f"the fix names gpucap set: {c}")
    check("(CUDA_DEVICE_MEMORY_LIMIT)" in c["message"], f"names the variable: {c}")
    for env, what in (({"CUDA_DEVICE_MEMORY_LIMIT": "1g"}, "the same limit"), ({}, "no limit set in this shell")):
        res = h.cli("doctor", "--json", "--file", region, env=h.env(**env))
        c = [c for c in json.loads(res.stdout)["checks"] if "in force on device" in c["message"]][0]
        check_equal(c["status"], "ok", f"{what}: {c}")
        check("memory 1 GiB" in c["message"], f"{what}: the limit in force: {c}")


# ---- the default region ----------------------------------------------------------

def test_default_region_path(h):
    """gpucap names the same default region as the library's function, for
    root and for another user; a non-root user's is private or, in a
    container, the shared one."""
    users = [None]
    if os.geteuid() == 0:
        users.append(65534)
    for uid in users:
        def become(uid=uid):
            if uid is not None:
                os.setgid(65534)
                os.setuid(uid)
        probe = subprocess.run([h.default_path_probe, "--print"], env=h.env(), preexec_fn=become,
                               stdout=subprocess.PIPE, text=True, timeout=20)
        want = probe.stdout.strip()
        me = os.geteuid() if uid is None else uid
        if me == 0:
            check_equal(want, "/tmp/cudevshr.cache", "root's default")
        else:
            check(want in ("/tmp/cudevshr.cache", f"/tmp/gpucap-{me}/cudevshr.cache"),
                  f"uid {me}: shared only in a container, else private: {want}")
        res = subprocess.run([h.gpucap, "doctor", "--json"], env=h.env(), preexec_fn=become,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
        region = [c for c in json.loads(res.stdout)["checks"] if c["check"] == "region"][0]
        check(f"{want} " in region["message"] + " " and "(path from default)" in region["message"],
              f"uid {me}: doctor names the library's default {want}: {region}")
        if uid is not None and want != "/tmp/cudevshr.cache":
            library_creates_private_region(h, become, want, uid)


def library_creates_private_region(h, become, path, uid):
    """Outside a container, the library itself creates the user's private
    directory (0700) and the region in it, with no region variable set."""
    directory = os.path.dirname(path)
    if os.path.lexists(directory) or not h.real_preload:
        print(f"note: {directory} exists already, or no libgpucap.so here: the library's side is not checked")
        return
    fake = h.fakedriver
    env = h.env(GPUCAP_LIBRARY=h.real_preload, LD_LIBRARY_PATH=fake,
                GPUCAP_REAL_LIBCUDA=os.path.join(fake, "libcuda.so.1"),
                GPUCAP_REAL_LIBNVML=os.path.join(fake, "libnvidia-ml.so.1"))
    try:
        res = subprocess.run([h.gpucap, "run", "-m", "1g", "--", h.example], env=env, preexec_fn=become,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        check_equal(res.returncode, 0, f"the example as uid {uid} ({res.stderr!r})")
        st = os.lstat(directory)
        check(stat.S_ISDIR(st.st_mode) and st.st_uid == uid and stat.S_IMODE(st.st_mode) == 0o700,
              f"{directory}: a directory of uid {uid}, mode 0700 ({oct(st.st_mode)}, uid {st.st_uid})")
        check(os.path.exists(path), f"the library created its region at {path}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# ---- top over a node ---------------------------------------------------------------

def node_layout(h):
    """Regions as deployments lay them out, a symlink and a too-deep one."""
    node = os.path.join(h.tmp, "node")
    paths = {
        "main": os.path.join(node, "containers", "pod1_main", "GPU-a.cache"),
        "train": os.path.join(node, "containers", "pod2_train", "GPU-a.cache"),
        "infer": os.path.join(node, "containers", "pod3_infer", "GPU-b.cache"),
        "volcano": os.path.join(node, "vgpu", "GPU-c.cache"),
    }
    for p in paths.values():
        os.makedirs(os.path.dirname(p), exist_ok=True)
    h.actor(paths["main"], "device", UUID_A, "8g", "reserve", "data", "2g")
    train1, _ = h.actor(paths["train"], "device", UUID_A, "16g", "reserve", "data", "6g")
    train2, _ = h.actor(paths["train"], "device", UUID_A, "16g", "reserve", "data", "3g")
    h.actor(paths["infer"], "device", UUID_B, "4g", "reserve", "data", "1g")
    h.actor(paths["volcano"], "device", UUID_B, "unlimited", "reserve", "data", "10m")
    # Not shown: a region reached only through a symlink, and one below the
    # depth bound.
    outside = os.path.join(h.tmp, "outside")
    os.makedirs(outside)
    h.actor(os.path.join(outside, "hidden.cache"), "device", UUID_A, "1g")
    os.symlink(outside, os.path.join(node, "containers", "link"))
    deep = os.path.join(node, *[f"d{i}" for i in range(9)])
    os.makedirs(deep)
    h.actor(os.path.join(deep, "deep.cache"), "device", UUID_A, "1g")
    with open(os.path.join(node, "containers", "pod1_main", "notes.txt"), "w") as f:
        f.write("not a region\n")
    return node, paths, train1, train2


def test_top_node(h):
    node, paths, train1, train2 = node_layout(h)
    res = h.cli("top", "--once", "--dir", node)
    check_equal((res.returncode, res.stderr), (0, ""), "top --dir exit code and stderr")
    out = res.stdout
    for name, p in paths.items():
        label = os.path.relpath(p, node)
        check(f"region {label}: " in out, f"region {name} ({label}) shown:\n{out}")
    check("hidden.cache" not in out, f"a symlinked directory is not followed:\n{out}")
    check("deep.cache" not in out and "stopped at 8 directory levels" in out, f"the depth bound:\n{out}")
    check("(1 other file below" in out, f"other files counted:\n{out}")
    lines = out.splitlines()
    header = next(l for l in lines if l.startswith("GPU "))
    check_equal(split_row(header), ["GPU", "REGIONS", "CAPS", "CHARGED", "IN USE", "PROCESSES", "SM CAPS",
                                    "SM DELIVERED", "SM ASKED"], "summary header")
    rows = {r[0]: r for r in (split_row(l) for l in lines) if r and r[0] in (UUID_A, UUID_B)}
    check_equal(rows[UUID_A][1:3] + rows[UUID_A][4:6], ["2", "24 GiB", "11 GiB", "3"], "GPU A: 2 regions")
    check_equal(rows[UUID_B][1:3] + rows[UUID_B][4:6], ["2", "4 GiB +1 unlimited", "1.01 GiB", "2"],
                "GPU B: a capped and an uncapped region")

    doc = json.loads(h.cli("top", "--once", "--json", "--dir", node).stdout)
    check_equal(sorted(r["path"] for r in doc["regions"]), sorted(paths.values()), "regions in JSON")
    check_equal((doc["other_files"], doc["dir_truncated"]), (1, True), "other files and the depth bound in JSON")

    def train_pids(*args):
        text = h.cli("top", "--once", "--dir", node, *args).stdout
        section = text[text.index("pod2_train"):]
        section = section[:section.index("\n\n")]
        rows = (split_row(l) for l in section.splitlines())
        return [int(r[0]) for r in rows if len(r) == 7 and r[0].isdigit()]
    check_equal(train_pids(), [train1.pid, train2.pid], "default sort: most memory first")
    check_equal(train_pids("--sort", "pid"), sorted([train1.pid, train2.pid]), "--sort pid")
    check_one_line_error(h.cli("top", "--once", "--sort", "size", "--dir", node), 2, "--sort")

    narrow = h.cli("top", "--once", "--dir", node, env=h.env(COLUMNS="60")).stdout
    check(all(len(l) <= 60 for l in narrow.splitlines()), f"every line fits 60 columns:\n{narrow}")
    check("PEAK" not in narrow and "PID" in narrow and "MEMORY" in narrow,
          f"less useful columns left out first:\n{narrow}")


def test_top_keys(h):
    """On a terminal, top redraws until q, and s changes the sort."""
    region = os.path.join(h.tmp, "r.cache")
    h.actor(region, "device", UUID_A, "1g")
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.clear()
        os.environ.update(h.env(TERM="xterm"))
        os.execv(h.gpucap, [h.gpucap, "top", "--interval", "0.2", "--file", region])
    output = b""

    def read_until(needle, seconds=10):
        nonlocal output
        deadline = time.monotonic() + seconds
        while needle not in output and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    output += os.read(fd, 65536)
                except OSError:
                    break
        return needle in output
    try:
        check(read_until(b"sort: memory"), f"the first view names the sort and the keys: {output[-400:]!r}")
        os.write(fd, b"s")
        check(read_until(b"sort: pid"), f"s changes the sort: {output[-400:]!r}")
        os.write(fd, b"q")
        deadline = time.monotonic() + 10
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            read_until(b"\0", 0.1)
        check(status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
              f"q quits with status 0 ({status})")
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


# ---- resolve -------------------------------------------------------------------------

def test_resolve_missing_file(h):
    missing = os.path.join(h.tmp, "nonexistent.cache")
    check_one_line_error(h.cli("resolve", "--file", missing), 1, missing)
    # --watch must not idle forever on a typo.
    check_one_line_error(h.cli("resolve", "--watch", "--file", missing), 1, missing)
    check_one_line_error(h.cli("resolve", "--regions", os.path.join(h.tmp, "nothing", "*.cache")), 1,
                         "matches")
    check_one_line_error(h.cli("resolve", "--file", missing, "--regions", "x"), 2, "--regions")


# ---- run --sm and --node-dir ---------------------------------------------------------

def run_vars(h, *args, env=None, cwd=None):
    res = h.cli("run", *args, env=env, cwd=cwd)
    check_equal(res.returncode, 0, f"gpucap run {' '.join(args)} ({res.stderr!r})")
    return dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)


def test_run_sm_node_dir(h):
    inherited = {"GPUCAP_SM_LIMIT": "50", "GPUCAP_SM_LIMIT_1": "40", "CUDA_DEVICE_SM_LIMIT_0": "20"}
    env = h.env(GPUCAP_LIBRARY=h.fake_preload, **inherited)
    node = os.path.join(h.tmp, "node")
    os.mkdir(node)
    got = run_vars(h, "--sm", "30", "--node-dir", "node", "--", "env", env=env, cwd=h.tmp)
    check_equal({k: v for k, v in got.items() if "SM_LIMIT" in k}, {"CUDA_DEVICE_SM_LIMIT": "30"},
                "--sm sets CUDA_DEVICE_SM_LIMIT and drops the variables that would win over it")
    check_equal(got.get("GPUCAP_NODE_DIR"), node, "--node-dir made absolute")
    got = run_vars(h, "--sm", "100", "--", "env", env=env)
    check_equal(got.get("CUDA_DEVICE_SM_LIMIT"), "0", "--sm 100 is no cap")
    got = run_vars(h, "--", "env", env=env)
    check_equal({k: v for k, v in got.items() if "SM_LIMIT" in k}, inherited, "without --sm they pass through")
    check_one_line_error(h.cli("run", "--sm", "130", "--", "true", env=env), 2, "--sm")
    check_one_line_error(h.cli("run", "--sm", "x", "--", "true", env=env), 2, "--sm")
    missing = os.path.join(h.tmp, "no-node")
    check_one_line_error(h.cli("run", "--node-dir", missing, "--", "true", env=env), 1, missing)


# ---- help and docs -------------------------------------------------------------------

COMMANDS = ("run", "status", "reap", "top", "set", "doctor", "exporter", "resolve", "cdi")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")


def help_options(h, command):
    """Long and short options in the option list of COMMAND --help, and
    each long option's short form."""
    res = h.cli(command, "--help")
    check_equal(res.returncode, 0, f"{command} --help")
    found, short_of = set(), {}
    for line in res.stdout.splitlines():
        m = re.match(r"^\s+(?:(-[a-zA-Z]), )?(--[a-z][a-z0-9-]*)", line)
        if m:
            found.add(m.group(2))
            if m.group(1):
                found.add(m.group(1))
                short_of[m.group(2)] = m.group(1)
    usage = res.stdout.splitlines()[0]
    found.update(OPTION.findall(usage))
    return found - {"-h", "--help"}, short_of


def first_cell(row):
    """The first cell of a Markdown table row (an escaped \\| stays in it)."""
    return re.split(r"(?<!\\)\|", row)[1]


def doc_options(text, command):
    """Options docs/cli.md gives COMMAND: its synopsis line and the first
    column of the tables in its own section."""
    found = set()
    for line in text.splitlines():
        if line.startswith(f"gpucap {command} "):
            found.update(OPTION.findall(line))
    section = re.search(rf"^## `gpucap {command}`\n(.*?)(?=^## )", text, re.M | re.S)
    if section:
        for line in section.group(1).splitlines():
            if line.startswith("| `-"):
                found.update(OPTION.findall(first_cell(line)))
    return found - {"-h", "--help"}


def test_help_matches_docs(h):
    with open(os.path.join(h.source, "docs", "cli.md")) as f:
        cli_md = f.read()
    with open(os.path.join(h.source, "docs", "exporter.md")) as f:
        exporter_md = f.read()
    with open(os.path.join(h.source, "README.md")) as f:
        readme = f.read()
    problems = []
    for command in COMMANDS:
        in_help, short_of = help_options(h, command)
        text = cli_md + ("\n" + exporter_md.replace("## Options", "## `gpucap exporter`", 1)
                         if command == "exporter" else "")
        in_docs = doc_options(text, command)
        for option in sorted(in_help - in_docs):
            problems.append(f"{command}: {option} is in --help but not in the docs")
        for option in sorted(in_docs - in_help):
            problems.append(f"{command}: {option} is in the docs but not in --help")
        # The README's table lists every long option too.
        row = next((l for l in readme.splitlines() if l.startswith(f"| `gpucap {command} ")), None)
        if row is None:
            problems.append(f"README: no CLI table row for {command}")
            continue
        in_readme = set(OPTION.findall(first_cell(row))) - {"-h", "--help"}
        for option in sorted(o for o in in_help - in_readme if o.startswith("--")):
            if short_of.get(option) not in in_readme:
                problems.append(f"README: {command} row lacks {option}")
        for option in sorted(in_readme - in_help):
            problems.append(f"README: {command} row has {option}, which --help does not")
    check(not problems, "help and docs disagree:\n  " + "\n  ".join(problems))


def test_docs_agree_with_code(h):
    """The facts item by item that the docs once got wrong."""
    read = lambda *p: open(os.path.join(h.source, *p)).read()  # noqa: E731
    readme, cli_md, config_md, exporter_md = (read("README.md"), read("docs", "cli.md"),
                                              read("docs", "configuration.md"), read("docs", "exporter.md"))
    for var in ("CUDA_DEVICE_SM_LIMIT", "GPU_CORE_UTILIZATION_POLICY", "GPUCAP_NODE_DIR", "GPUCAP_CONTEXT_BYTES",
                "GPUCAP_REGION_GROUP", "CUDA_DEVICE_MEMORY_SHARED_CACHE"):
        check(f"| `{var}" in readme, f"README configuration table lacks {var}")
        check(var in config_md, f"docs/configuration.md lacks {var}")
    # host_pid_source: the values status --json can carry.
    produced = {"same_namespace", "host_procfs", "host_resolver", "unknown"}
    for name, text in (("README.md", readme), ("docs/cli.md", cli_md)):
        if name == "README.md":
            m = re.search(r'"host_pid_source": ([^,\n]*)', text)
            values = set(re.findall(r'"([a-z_]+)"', m.group(1))) if m else None
        else:
            m = re.search(r"\| `host_pid_source` \| string \| ([^|]*)\|", text)
            values = set(re.findall(r"`([a-z_]+)`", m.group(1).split("(")[0])) if m else None
        check(m, f"{name}: host_pid_source values not found")
        check_equal(values, produced, f"{name}: host_pid_source values")
    # doctor on a missing region: a warning, which never fails it (exit 1
    # comes only from a failed check), as docs/cli.md says.
    res = h.cli("doctor", "--json", "--file", os.path.join(h.tmp, "missing.cache"))
    doc = json.loads(res.stdout)
    region = [c for c in doc["checks"] if c["check"] == "region"]
    check_equal([c["status"] for c in region], ["warn"], f"a missing region is one warning: {region}")
    failed = [c for c in doc["checks"] if c["status"] == "fail"]
    check_equal(res.returncode, 1 if failed else 0, f"doctor fails only on a failed check: {failed}")
    check("a missing region is a warning, so `doctor` on a\nhost where nothing ran yet exits 0" in cli_md,
          "docs/cli.md says a missing region is a warning (exit 0)")
    # exporter --help: how many metric names --hami-metrics adds.
    exporter_help = h.cli("exporter", "--help").stdout
    check("--resolve-host-pids" in exporter_md, "docs/exporter.md lacks --resolve-host-pids")
    check("two" not in exporter_help.split("--hami-metrics", 1)[1].split("\n  -", 1)[0],
          "exporter --help still says --hami-metrics adds two names")
    limits_example = read("packaging", "limits.conf.example")
    check("not enforced" not in limits_example, "limits.conf.example says sm is not enforced")
    main_help = h.cli("--help").stdout
    check("SM" in main_help.split("commands:")[0], f"gpucap --help describes SM caps too: {main_help!r}")
    # One name for the last launch in both JSON outputs: top --json carries
    # status --json's name (and, until the next schema, its old one).
    region = os.path.join(h.tmp, "r.cache")
    h.actor(region, "device", UUID_A, "1g")
    status_proc = h.status_json(region)["processes"][0]
    top_proc = json.loads(h.cli("top", "--once", "--json", "--file", region).stdout)["regions"][0]["processes"][0]
    check("last_launch_unix_ns" in status_proc and "last_launch_unix_ns" in top_proc,
          f"both name last_launch_unix_ns: {status_proc} {top_proc}")
    check_equal(top_proc["last_launch_unix_ns"], top_proc["last_kernel_unix_ns"], "the old name, same value")
    top_doc = cli_md[cli_md.index("### `top --json`"):]
    check("`last_launch_unix_ns`" in top_doc[:top_doc.index("### `set --json`")],
          "docs/cli.md: top --json documents last_launch_unix_ns")


# ---- the example and the wrapper --------------------------------------------------

def test_example_program(h):
    no_driver = h.env(LD_LIBRARY_PATH=os.path.join(h.tmp, "empty"))
    res = subprocess.run([h.example], env=no_driver, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=20)
    check_equal(res.returncode, 1, f"no driver: exit 1 ({res.stderr!r})")
    check(res.stderr.count("\n") == 1 and "needs a machine with an NVIDIA GPU" in res.stderr,
          f"no driver: one line that says a GPU is needed: {res.stderr!r}")
    if not h.real_preload:
        raise Skip("libgpucap.so is not built here (or this is a sanitizer build)")
    region = os.path.join(h.tmp, "r.cache")
    fake = h.fakedriver
    env = h.env(GPUCAP_LIBRARY=h.real_preload, LD_LIBRARY_PATH=fake,
                GPUCAP_REAL_LIBCUDA=os.path.join(fake, "libcuda.so.1"),
                GPUCAP_REAL_LIBNVML=os.path.join(fake, "libnvidia-ml.so.1"), GPUCAP_CONTEXT_BYTES="0")
    res = h.cli("run", "-m", "1g", "--file", region, "--", h.example, env=env)
    check_equal(res.returncode, 0, f"the example under a 1 GiB cap ({res.stdout!r} {res.stderr!r})")
    check("device 0: 1024 MiB total" in res.stdout, f"the cap is the device's size: {res.stdout!r}")
    check("allocated 1024 MiB\n" in res.stdout and "refused at 1024 MiB held" in res.stdout and
          "CUDA_ERROR_OUT_OF_MEMORY" in res.stdout, f"refused exactly at the cap: {res.stdout!r}")


def fake_tree(h):
    root = os.path.join(h.tmp, "tree")
    for d in ("src", "include", "examples", "scripts", "fakebin"):
        os.makedirs(os.path.join(root, d))
    shutil.copy(os.path.join(h.source, "gpucap"), os.path.join(root, "gpucap"))
    log = os.path.join(root, "calls.log")

    def script(path, body):
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(path, 0o755)
    for name in ("src/a.c", "include/a.h", "examples/e.c", "CMakeLists.txt"):
        open(os.path.join(root, name), "w").close()
    script(os.path.join(root, "scripts", "install-deps"),
           f'echo install-deps >> {log}\ntouch {root}/deps-installed\n')
    # cmake: configure writes the cache; a build writes the binary and library.
    script(os.path.join(root, "fakebin", "cmake"), f'''echo "cmake $*" >> {log}
case "$1" in
  -S) mkdir -p {root}/build && touch {root}/build/CMakeCache.txt ;;
  --build) mkdir -p {root}/build/bin {root}/build/lib && touch {root}/build/lib/libgpucap.so &&
           printf '#!/bin/sh\\necho "built gpucap $*"\\n' > {root}/build/bin/gpucap && chmod +x {root}/build/bin/gpucap ;;
esac
''')
    script(os.path.join(root, "fakebin", "cc"), "exit 0\n")
    script(os.path.join(root, "fakebin", "pkg-config"), f"test -e {root}/deps-installed\n")
    return root, log


def test_wrapper_builds(h):
    root, log = fake_tree(h)
    env = h.env(PATH=os.path.join(root, "fakebin") + ":" + os.environ.get("PATH", "/usr/bin:/bin"))

    def wrapper(*args):
        if os.path.exists(log):
            os.remove(log)
        res = subprocess.run([os.path.join(root, "gpucap"), *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, timeout=60)
        calls = open(log).read().splitlines() if os.path.exists(log) else []
        return res, calls
    res, calls = wrapper("--version")
    check_equal((res.returncode, res.stdout), (0, "built gpucap --version\n"), f"first use ({res.stderr!r})")
    check(calls[0] == "install-deps", f"the dependencies are installed first: {calls}")
    check(any(c.startswith("cmake -S") for c in calls) and any(c.startswith("cmake --build") for c in calls),
          f"configure and build: {calls}")
    check("building" in res.stderr, f"says it is building, on stderr: {res.stderr!r}")
    res, calls = wrapper("status")
    check_equal((res.returncode, res.stdout, res.stderr, calls), (0, "built gpucap status\n", "", []),
                "up to date: no build, no message")
    binary = os.path.join(root, "build", "bin", "gpucap")
    later = os.stat(binary).st_mtime + 10
    os.utime(os.path.join(root, "src", "a.c"), (later, later))
    res, calls = wrapper("status")
    check_equal(res.stdout, "built gpucap status\n", "after a source change")
    check(calls == [c for c in calls if c.startswith("cmake --build")] and len(calls) == 1,
          f"a source change rebuilds (incremental, no reconfigure, no install): {calls}")
    check("building" in res.stderr, f"says it is building: {res.stderr!r}")


TESTS = {name[len("test_"):]: fn for name, fn in globals().items() if name.startswith("test_")}


def with_programs(h, args):
    h.source = args.source
    h.default_path_probe = args.default_path_probe
    h.example = args.example
    h.fakedriver = args.fakedriver


if __name__ == "__main__":
    # tmp_mode: another uid (test_default_region_path) looks around.
    sys.exit(case_main(TESTS, "op", options=("--source", "--default-path-probe", "--example", "--fakedriver"),
                       tmp_mode=0o755, setup=with_programs))
