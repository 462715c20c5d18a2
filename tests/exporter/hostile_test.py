#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""`gpucap exporter` against tenants that attack it.

  fifo_swap         a tenant keeps exchanging its region file with a FIFO
                    (renameat2 RENAME_EXCHANGE) while the exporter scrapes:
                    no scrape may hang, and the regions read again once the
                    swapping stops.
  connection_flood  one client address holds many idle, half-sent
                    connections: a scrape from another address is still
                    answered.

Timeouts here only turn a hang into a failure; nothing is timed.

usage: hostile_test.py TEST --gpucap PATH --actor PATH
"""

import argparse
import ctypes
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prometheus_e2e import Failure, check  # noqa: E402

HANG_GUARD_S = 20  # a scrape that takes this long is taken to hang
RENAME_EXCHANGE = 2
AT_FDCWD = -100


class Harness:
    def __init__(self, args):
        self.gpucap = args.gpucap
        self.actor = args.actor
        self.tmp = tempfile.mkdtemp(prefix="gpucap-hostile-")
        self.procs = []
        self.log_path = os.path.join(self.tmp, "exporter.log")

    def start_actor(self, path, comm, *steps):
        proc = subprocess.Popen([self.actor, path, comm, *[str(s) for s in steps]],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        line = proc.stdout.readline()
        if not line.startswith("ready "):
            proc.kill()
            raise Failure("actor did not start: %r %s" % (line, proc.stderr.read()))
        return proc

    def start_exporter(self, pattern, listen="127.0.0.1:0"):
        log = open(self.log_path, "w")
        proc = subprocess.Popen([self.gpucap, "exporter", "--listen", listen, "--regions", pattern],
                                stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        self.procs.append(proc)
        self.exporter = proc
        deadline = time.monotonic() + HANG_GUARD_S
        marker = "listening on http://127.0.0.1:"
        while time.monotonic() < deadline:
            check(proc.poll() is None, "exporter exited with %s: %s" % (proc.returncode, self.log()))
            for line in self.log().splitlines():
                if marker in line:
                    return int(line.split(marker)[1].split("/")[0])
            time.sleep(0.05)
        raise Failure("exporter did not say where it listens: " + self.log())

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def scrape(self, port):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=HANG_GUARD_S) as r:
                check(r.status == 200, "scrape answered %d" % r.status)
                return r.read().decode()
        except OSError as e:
            raise Failure("scrape failed or hung (%s); exporter log: %s" % (e, self.log()[-2000:]))

    def cleanup(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)


def region_is_up(text, region):
    """Whether the scrape says region was read. Other labels may stand beside
    region=: a temporary directory whose random name happens to read as
    NAMESPACE_POD_CONTAINER (two underscores) gets namespace, pod and
    container labels from the exporter's default directory rule."""
    want = 'region="%s"' % region
    for line in text.splitlines():
        if line.startswith("gpucap_region_up{") and line.endswith("} 1"):
            labels = line[len("gpucap_region_up{"):-len("} 1")]
            if want in labels.split(","):
                return True
    return False


def test_fifo_swap(h):
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = libc.renameat2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    pairs = []
    for i in range(16):
        region = os.path.join(h.tmp, "tenant%d.cache" % i)
        h.start_actor(region, "victim", "device", "GPU-hostile-%d" % i, 1 << 30, 0, "reserve", "data", 1 << 20)
        fifo = os.path.join(h.tmp, "tenant%d.fifo" % i)
        os.mkfifo(fifo)
        pairs.append((region.encode(), fifo.encode()))
    port = h.start_exporter(os.path.join(h.tmp, "*.cache"))

    stop = threading.Event()
    swaps = [0]

    def swapper():
        while not stop.is_set():
            for region, fifo in pairs:
                if renameat2(AT_FDCWD, region, AT_FDCWD, fifo, RENAME_EXCHANGE) != 0:
                    raise OSError(ctypes.get_errno(), "renameat2")
                swaps[0] += 1

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    try:
        for _ in range(800):
            h.scrape(port)
            check(thread.is_alive(), "the swapper stopped (renameat2 failed?)")
    finally:
        stop.set()
        thread.join(timeout=HANG_GUARD_S)
    check(swaps[0] > 0, "no exchange happened")
    print("%d exchanges" % swaps[0])
    # Put every region back under its own name, then every one reads.
    for region, fifo in pairs:
        if not os.path.isfile(region):
            check(renameat2(AT_FDCWD, region, AT_FDCWD, fifo, RENAME_EXCHANGE) == 0, "swap back")
    text = h.scrape(port)
    for region, _ in pairs:
        check(region_is_up(text, region.decode()),
              "after the swapping stopped, %s is not up:\n%s" % (region.decode(), text))
    check(h.exporter.poll() is None, "the exporter died: " + h.log())


def test_connection_flood(h):
    region = os.path.join(h.tmp, "tenant.cache")
    h.start_actor(region, "victim", "device", "GPU-hostile-flood", 1 << 30, 0, "reserve", "data", 1 << 20)
    port = h.start_exporter(os.path.join(h.tmp, "*.cache"))
    held = []
    try:
        for _ in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            s.settimeout(HANG_GUARD_S)
            try:
                s.bind(("127.0.0.2", 0))  # the flooding client's own address
                s.connect(("127.0.0.1", port))
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
            except OSError:
                pass  # refused once over the client's limit: that is the point
        for _ in range(5):
            text = h.scrape(port)
            check(region_is_up(text, region), "a scrape during the flood does not show the region:\n" + text)
    finally:
        for s in held:
            s.close()
    check(h.exporter.poll() is None, "the exporter died: " + h.log())


TESTS = {"fifo_swap": test_fifo_swap, "connection_flood": test_connection_flood}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("test", choices=sorted(TESTS))
    parser.add_argument("--gpucap", required=True)
    parser.add_argument("--actor", required=True)
    args = parser.parse_args()
    h = Harness(args)
    try:
        TESTS[args.test](h)
    except Failure as e:
        print("FAIL %s: %s" % (args.test, e), file=sys.stderr)
        return 1
    finally:
        h.cleanup()
    print("ok %s" % args.test)
    return 0


if __name__ == "__main__":
    sys.exit(main())
