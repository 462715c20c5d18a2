#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What an operator sees of a refusal and of a normal exit, end to end.

Runs tests/hook/refusaltest.c with libgpucap.so preloaded over the fake
driver, and reads the region with `gpucap status --json` and
`gpucap exporter`:

  warning  the first refusal prints one warning line with the device, the
           request, the cap, the use and where to look; later ones print
           nothing; status --json and the exporter count every one
  exit     a process that exits normally, its context alive, an allocation
           not freed and a thread still allocating, leaves no dead slot and
           no charge behind
  fork     a forked child that exits normally leaves its parent's slot and
           charges alone
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

MiB = 1 << 20
DEV_A = "GPU-00000000-0000-0000-0000-0000000000a0"


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Harness:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="gpucap-refusal-")
        self.region = os.path.join(self.dir, "region")
        self.procs = []

    def child_env(self, leaks=True):
        env = dict(os.environ)
        env.update({
            "LD_PRELOAD": self.args.preload,
            "LD_LIBRARY_PATH": self.args.fakedriver_dir,
            "GPUCAP_REAL_LIBCUDA": os.path.join(self.args.fakedriver_dir, "libcuda.so.1"),
            "GPUCAP_REAL_LIBNVML": os.path.join(self.args.fakedriver_dir, "libnvidia-ml.so.1"),
            "GPUCAP_REGION": self.region,
            "CUDA_DEVICE_MEMORY_LIMIT": "8m",
            "GPUCAP_CONTEXT_BYTES": "1m",
            "GPUCAP_LOG_LEVEL": "",
            "LIBCUDA_LOG_LEVEL": "",
            # A forked child forgets what its parent tracks (the parent frees
            # it), which LeakSanitizer would report at the child's exit.
            "ASAN_OPTIONS": "verify_asan_link_order=0:" + ("" if leaks else "detect_leaks=0:") +
                            os.environ.get("ASAN_OPTIONS", ""),
        })
        # The default log level: warnings and errors.
        del env["GPUCAP_LOG_LEVEL"]
        del env["LIBCUDA_LOG_LEVEL"]
        return env

    def tool_env(self):
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        return env

    def start_child(self, *args, leaks=True):
        proc = subprocess.Popen([self.args.program, *args], env=self.child_env(leaks), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(proc)
        line = proc.stdout.readline()
        if line != b"ready\n":
            proc.stdin.close()
            proc.wait(timeout=30)
            raise Failure(f"child {args} did not get ready (exit {proc.returncode}): "
                          f"{proc.stderr.read().decode(errors='replace')}")
        return proc

    def finish_child(self, proc):
        _, err = proc.communicate(input=b"", timeout=60)
        check(proc.returncode == 0, f"child exited {proc.returncode}: {err.decode(errors='replace')}")
        return err.decode(errors="replace")

    def status(self):
        res = subprocess.run([self.args.gpucap, "status", "--json", "--file", self.region], env=self.tool_env(),
                             capture_output=True, text=True, timeout=30)
        check(res.returncode == 0, f"gpucap status --json exited {res.returncode}: {res.stderr}")
        return json.loads(res.stdout)

    def scrape(self):
        log = open(os.path.join(self.dir, "exporter.log"), "w+")
        proc = subprocess.Popen([self.args.gpucap, "exporter", "--listen", "127.0.0.1:0", "--regions", self.region],
                                env=self.tool_env(), stdout=subprocess.DEVNULL, stderr=log)
        self.procs.append(proc)
        try:
            marker = "listening on http://127.0.0.1:"
            port = None
            # The exporter's own start-up: poll its log for the port (no
            # assertion on how long it takes; the CTest timeout bounds it).
            while port is None:
                check(proc.poll() is None, "the exporter stopped")
                log.seek(0)
                for line in log.read().splitlines():
                    if marker in line:
                        port = int(line.split(marker)[1].split("/")[0])
                time.sleep(0.05)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
                return resp.read().decode()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            log.close()

    def cleanup(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)


def device(doc, uuid):
    found = [d for d in doc["devices"] if d["uuid"] == uuid]
    check(len(found) == 1, f"device {uuid} in {doc['devices']}")
    return found[0]


def sample(metrics, name, **labels):
    """The value of the one sample of name whose labels include labels."""
    values = []
    for line in metrics.splitlines():
        m = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)))
        if all(have.get(k) == str(v) for k, v in labels.items()):
            values.append(float(m.group(3)))
    check(len(values) == 1, f"want one sample of {name} {labels}, got {values} in:\n{metrics}")
    return values[0]


def test_warning(h):
    refusals = 3
    child = h.start_child("refuse", str(refusals))
    doc = h.status()
    procs = [p for p in doc["processes"] if p["pid"] == child.pid]
    check(len(procs) == 1, f"the child in {doc['processes']}")
    check(procs[0]["refusals"] == refusals, f"process refusals: {procs[0]}")
    check(device(doc, DEV_A)["refusals_total"] == refusals, f"device refusals: {device(doc, DEV_A)}")
    metrics = h.scrape()
    check(sample(metrics, "gpucap_allocation_refusals_total", device_uuid=DEV_A, region=h.region) == refusals,
          "the device counter")
    check(sample(metrics, "gpucap_process_allocation_refusals_total", pid=child.pid, region=h.region) == refusals,
          "the process counter")
    check("# TYPE gpucap_allocation_refusals_total counter" in metrics, "the device family is a counter")
    check("# TYPE gpucap_process_allocation_refusals_total counter" in metrics, "the process family is a counter")

    err = h.finish_child(child)
    lines = err.splitlines()
    check(len(lines) == 1, f"want exactly one line on stderr for {refusals} refusals, got:\n{err}")
    line = lines[0]
    want = (rf"gpucap\[{child.pid}\]: warning: allocation refused: cuMemAlloc of 16\.00 MiB \(16777216 bytes\) "
            rf"on device 0 \({DEV_A}\) would pass its cap of 8\.00 MiB; "
            r"in use: 3\.\d\d MiB by this process, 3\.\d\d MiB by the container \(1 process\); "
            r"later refusals in this process are counted, not printed; "
            rf"see `gpucap status --file {re.escape(h.region)}`")
    check(re.fullmatch(want, line), f"the warning line:\n  {line}\ndoes not match\n  {want}")
    # The counts outlive the process on the device; its slot is gone.
    doc = h.status()
    check(device(doc, DEV_A)["refusals_total"] == refusals, "device refusals after exit")


def test_exit(h):
    child = h.start_child("refuse", "0", "churn")
    doc = h.status()
    check(device(doc, DEV_A)["charged_bytes"] >= 3 * MiB, f"charged while running: {device(doc, DEV_A)}")
    err = h.finish_child(child)
    check(err == "", f"a normal exit prints nothing: {err!r}")
    doc = h.status()
    check(doc["processes"] == [], f"no slot, dead or alive, after a normal exit: {doc['processes']}")
    dev = device(doc, DEV_A)
    check((dev["charged_bytes"], dev["in_use_bytes"]) == (0, 0), f"nothing charged after a normal exit: {dev}")
    check(dev["refusals_total"] == 0, f"allocations failing during exit are no refusals: {dev}")
    check(doc["reclaimed_slots_total"] == 0, "nothing was left for a sweeper")


def test_fork(h):
    parent = h.start_child("fork", leaks=False)
    doc = h.status()
    procs = doc["processes"]
    check([p["pid"] for p in procs] == [parent.pid], f"only the parent holds a slot: {procs}")
    check(procs[0]["alive"], "the parent is alive")
    dev = device(doc, DEV_A)
    mine = [d for d in procs[0]["devices"] if d["index"] == dev["index"]]
    check(len(mine) == 1 and mine[0]["in_use_bytes"] == 3 * MiB, f"the parent keeps its context and 2 MiB: {mine}")
    check(dev["in_use_bytes"] == 3 * MiB, f"the children took nothing of the parent's: {dev}")
    err = h.finish_child(parent)
    check(err == "", f"nothing printed: {err!r}")
    doc = h.status()
    check(doc["processes"] == [] and device(doc, DEV_A)["charged_bytes"] == 0, f"all returned: {doc}")


TESTS = {"warning": test_warning, "exit": test_exit, "fork": test_fork}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("test", choices=sorted(TESTS))
    parser.add_argument("--program", required=True)
    parser.add_argument("--preload", required=True)
    parser.add_argument("--fakedriver-dir", required=True)
    parser.add_argument("--gpucap", required=True)
    args = parser.parse_args()
    h = Harness(args)
    try:
        TESTS[args.test](h)
    except Failure as e:
        print(f"FAIL {args.test}: {e}", file=sys.stderr)
        return 1
    finally:
        h.cleanup()
    print(f"ok {args.test}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
