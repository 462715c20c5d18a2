#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End-to-end test of `gpucap exporter` against a real Prometheus server.

Builds regions under a temporary directory (two good ones, one corrupt, one
that is deleted mid-run), starts actor processes that charge known byte
counts, runs the exporter and a Prometheus that scrapes it every second, and
checks through Prometheus's HTTP API that what Prometheus stored equals what
`gpucap status --json` reads from the same regions.

Everything listens on 127.0.0.1 only. Without a `prometheus` binary on PATH
the test fails (it never skips): install it (Debian: apt-get install
prometheus).
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

DEADLINE_S = 30.0  # for each wait on Prometheus

MiB = 1 << 20
GiB = 1 << 30


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


class Harness:
    def __init__(self, gpucap, actor):
        self.gpucap = gpucap
        self.actor = actor
        self.tmp = tempfile.mkdtemp(prefix="gpucap-exporter-e2e-")
        self.regions = os.path.join(self.tmp, "regions")
        os.mkdir(self.regions)
        self.procs = []
        self.exporter = None
        self.exporter_log = os.path.join(self.tmp, "exporter.log")
        self.prometheus = None
        self.prometheus_log = os.path.join(self.tmp, "prometheus.log")
        self.prom_port = None

    # ---- processes -------------------------------------------------------

    def region(self, name):
        directory = os.path.join(self.regions, name)
        os.makedirs(directory, exist_ok=True)
        return os.path.join(directory, "region")

    def start_actor(self, path, comm, *steps):
        proc = subprocess.Popen([self.actor, path, comm, *[str(s) for s in steps]],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        line = proc.stdout.readline()
        if not line.startswith("ready "):
            proc.kill()
            raise Failure("actor did not start: %r %s" % (line, proc.stderr.read()))
        return proc

    def status(self, path):
        out = subprocess.run([self.gpucap, "status", "--json", "--file", path],
                             capture_output=True, text=True, timeout=10)
        check(out.returncode == 0, "gpucap status failed on %s: %s" % (path, out.stderr))
        return json.loads(out.stdout)

    def start_exporter(self):
        log = open(self.exporter_log, "w")
        self.exporter = subprocess.Popen(
            [self.gpucap, "exporter", "--listen", "127.0.0.1:0", "--regions",
             os.path.join(self.regions, "*", "region"), "--hami-metrics"],
            stdout=subprocess.DEVNULL, stderr=log)
        self.procs.append(self.exporter)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            check(self.exporter.poll() is None,
                  "exporter exited with %s: %s" % (self.exporter.returncode, self.read(self.exporter_log)))
            for line in self.read(self.exporter_log).splitlines():
                marker = "listening on http://127.0.0.1:"
                if marker in line:
                    return int(line.split(marker)[1].split("/")[0])
            time.sleep(0.05)
        raise Failure("exporter did not say where it listens: " + self.read(self.exporter_log))

    def start_prometheus(self, exporter_port):
        binary = shutil.which("prometheus")
        check(binary is not None,
              "the 'prometheus' binary is not on PATH; this test needs a real Prometheus server: "
              "install it (Debian/Ubuntu: apt-get install prometheus; CI: add 'prometheus' to "
              "scripts/install-deps)")
        config = os.path.join(self.tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n"
                    "  scrape_interval: 1s\n"
                    "  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: gpucap\n"
                    "    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % exporter_port)
        for _attempt in range(3):
            port = free_port()
            log = open(self.prometheus_log, "w")
            proc = subprocess.Popen(
                [binary, "--config.file=" + config,
                 "--storage.tsdb.path=" + os.path.join(self.tmp, "tsdb"),
                 "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
                stdout=log, stderr=log)
            log.close()
            self.procs.append(proc)
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % port, timeout=1) as r:
                        if r.status == 200:
                            self.prometheus, self.prom_port = proc, port
                            return
                except (urllib.error.URLError, ConnectionError, OSError):
                    pass
                time.sleep(0.2)
            stop(proc)  # lost the port to someone else, or too slow: try again
        raise Failure("prometheus did not become ready: " + self.read(self.prometheus_log)[-2000:])

    # ---- Prometheus API --------------------------------------------------

    def query(self, promql):
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (
            self.prom_port, urllib.parse.urlencode({"query": promql}))
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
        check(body.get("status") == "success", "query %s failed: %s" % (promql, body))
        return [(s["metric"], float(s["value"][1])) for s in body["data"]["result"]]

    def wait_for(self, what, predicate, promql):
        deadline = time.monotonic() + DEADLINE_S
        result = None
        while time.monotonic() < deadline:
            check(self.exporter.poll() is None,
                  "exporter died (status %s): %s" % (self.exporter.returncode, self.read(self.exporter_log)))
            result = self.query(promql)
            if predicate(result):
                return result
            time.sleep(0.25)
        raise Failure("timed out after %.0f s waiting for %s; last answer to %s: %s"
                      % (DEADLINE_S, what, promql, result))

    def one(self, promql):
        result = self.query(promql)
        check(len(result) == 1, "expected exactly one series for %s, got %s" % (promql, result))
        return result[0]

    def value(self, promql):
        return self.one(promql)[1]

    # ---- teardown --------------------------------------------------------

    @staticmethod
    def read(path):
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cleanup(self):
        for proc in reversed(self.procs):
            stop(proc)
        shutil.rmtree(self.tmp, ignore_errors=True)


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sel(**labels):
    """A PromQL label selector matching these values exactly."""
    parts = []
    for key, value in labels.items():
        escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append('%s="%s"' % (key, escaped))
    return "{" + ",".join(parts) + "}"


def assert_region_matches_status(h, path, status, pod):
    """Every per-device and per-process figure Prometheus holds for the region
    equals what `gpucap status --json` read from it."""
    base = dict(region=path, namespace=pod[0], pod=pod[1], container=pod[2])
    check(h.value("gpucap_region_up" + sel(**base)) == 1, "gpucap_region_up of %s is not 1" % path)
    check(h.value("gpucap_region_reclaimed_slots_total" + sel(**base)) == status["reclaimed_slots_total"],
          "reclaimed slots of %s" % path)
    check(h.value("gpucap_region_reclaimed_bytes_total" + sel(**base)) == status["reclaimed_bytes_total"],
          "reclaimed bytes of %s" % path)
    alive = sum(1 for p in status["processes"] if p["alive"])
    dead = len(status["processes"]) - alive
    check(h.value("gpucap_region_processes" + sel(state="alive", **base)) == alive, "alive count of %s" % path)
    check(h.value("gpucap_region_processes" + sel(state="dead", **base)) == dead, "dead count of %s" % path)

    for position, d in enumerate(status["devices"]):
        dl = dict(base, device_uuid=d["uuid"], device_index=d["index"])
        for metric, field in (("gpucap_device_memory_charged_bytes", "charged_bytes"),
                              ("gpucap_device_memory_in_use_bytes", "in_use_bytes"),
                              ("gpucap_device_memory_peak_bytes", "peak_bytes")):
            got = h.value(metric + sel(**dl))
            check(got == d[field], "%s of %s %s: prometheus %s, status %s" % (metric, path, d["uuid"], got, d[field]))
        limit = h.query("gpucap_device_memory_limit_bytes" + sel(**dl))
        hami_limit = h.query("hami_vgpu_memory_limit_bytes" + sel(
            region=path, namespace=pod[0], pod=pod[1], container=pod[2], device_uuid=d["uuid"]))
        if d["limit_bytes"] is None:
            check(limit == [] and hami_limit == [], "an unlimited device has a limit series: %s" % limit)
        else:
            check(len(limit) == 1 and limit[0][1] == d["limit_bytes"], "limit of %s: %s" % (d["uuid"], limit))
            check(len(hami_limit) == 1 and hami_limit[0][1] == d["limit_bytes"], "hami limit: %s" % hami_limit)
        sm = d["sm_limit_percent"]
        got = h.value("gpucap_device_sm_limit_ratio" + sel(**dl))
        check(abs(got - (1.0 if sm is None else sm / 100.0)) < 1e-9, "sm ratio of %s: %s" % (d["uuid"], got))
        got = h.value("gpucap_device_sm_duty_ratio" + sel(**dl))
        check(abs(got - d["sm_duty_ratio"]) < 1e-9, "sm duty of %s: prometheus %s, status %s"
              % (d["uuid"], got, d["sm_duty_ratio"]))
        share = h.query("gpucap_device_sm_share_ratio" + sel(**dl))
        hami_share = h.query("hami_container_device_utilization_ratio" + sel(
            region=path, namespace=pod[0], pod=pod[1], container=pod[2], device_uuid=d["uuid"]))
        if d["sm_share_ratio"] is None:
            check(share == [] and hami_share == [], "an unmeasured share has a series: %s %s" % (share, hami_share))
        else:
            check(len(share) == 1 and abs(share[0][1] - d["sm_share_ratio"]) < 1e-9, "share: %s" % share)
            check(len(hami_share) == 1 and abs(hami_share[0][1] - 100 * d["sm_share_ratio"]) < 1e-6,
                  "hami utilization: %s" % hami_share)
        asked = h.query("gpucap_device_sm_asked_ratio" + sel(**dl))
        if d["sm_asked_ratio"] is None:
            check(asked == [], "an unknown asked share has a series: %s" % asked)
        else:
            check(len(asked) == 1 and abs(asked[0][1] - d["sm_asked_ratio"]) < 1e-9, "asked: %s" % asked)
        # HAMi's names, with HAMi's labels.
        metric, labels = h.one("hami_vgpu_memory_used_bytes" + sel(
            namespace=pod[0], pod=pod[1], container=pod[2], device_uuid=d["uuid"]))
        check(labels == d["charged_bytes"], "hami_vgpu_memory_used_bytes of %s: %s" % (d["uuid"], labels))
        check(metric.get("vdevice_index") == str(position), "vdevice_index: %s" % metric)

    for p in status["processes"]:
        pl = dict(base, slot=p["slot"], pid=p["pid"], comm=p["comm"])
        if p["host_pid"] is not None:
            pl["host_pid"] = p["host_pid"]
        got = h.value("gpucap_process_alive" + sel(**pl))
        check(got == (1 if p["alive"] else 0), "gpucap_process_alive of slot %d: %s" % (p["slot"], got))
        launch = h.query("gpucap_process_last_launch_timestamp_seconds" + sel(**pl))
        if p["last_launch_unix_ns"] is None:
            check(launch == [], "a process that never launched has a last-launch series: %s" % launch)
        else:
            check(len(launch) == 1 and abs(launch[0][1] - p["last_launch_unix_ns"] / 1e9) < 1e-5,
                  "last launch of slot %d: prometheus %s, status %s" % (p["slot"], launch, p["last_launch_unix_ns"]))
        for pd in p["devices"]:
            uuid = next(d["uuid"] for d in status["devices"] if d["index"] == pd["index"])
            series = h.query("gpucap_process_memory_in_use_bytes" + sel(device_uuid=uuid, device_index=pd["index"], **pl))
            touched = pd["charged_bytes"] or pd["in_use_bytes"] or pd["context_bytes"] or pd["module_bytes"] \
                or pd["data_bytes"]
            if touched:
                check(len(series) == 1 and series[0][1] == pd["in_use_bytes"],
                      "process in use of slot %d on %s: %s vs %s" % (p["slot"], uuid, series, pd["in_use_bytes"]))
            else:
                check(series == [], "a device the process never touched has a series: %s" % series)


DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "grafana",
                         "gpucap-dashboard.json")


def check_dashboard(h):
    with open(DASHBOARD) as f:
        dashboard = json.load(f)  # must parse
    titles = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in (("$namespace", ".*"), ("$pod", ".*"), ("$__rate_interval", "1m")):
                expr = expr.replace(variable, value)
            check("$" not in expr, "unknown dashboard variable in %r" % expr)
            result = h.query(expr)  # a PromQL error fails the query
            titles.setdefault(panel["title"], []).append(result)
    for title in ("Memory limit vs charged, per device", "Memory in use, per process", "Regions up",
                  "Memory charged / limit", "Reclaimed slots (total)"):
        check(title in titles, "dashboard panel %r is missing" % title)
        check(all(r != [] for r in titles[title]), "dashboard panel %r shows no data" % title)
    # The SM panel: the limit line shows for good_a's capped device; the
    # share has no data until a GPU measured one.
    check("SM share vs limit, per device" in titles, "the SM share panel is missing")
    check(titles["SM share vs limit, per device"][1] != [], "the SM share panel shows no SM limit")


def run(args):
    started = time.monotonic()
    h = Harness(args.gpucap, args.actor)

    def on_signal(signum, _frame):
        h.cleanup()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        # Two good regions with live processes (one with a name that needs
        # escaping), one dead process, a corrupt file and a doomed region.
        good_a = h.region("team-a_trainer-0_main")
        good_b = h.region("team-b_server-1_side")
        corrupt = h.region("team-c_broken-2_ctr")
        doomed = h.region("team-d_gone-3_ctr")
        launched_a = time.time_ns() - 3 * 10**9
        h.start_actor(good_a, 'tr"ain\\er', "device", "GPU-aaaa-1111", 1 * GiB, 30,
                      "reserve", "data", 100 * MiB, "reserve", "context", 2 * MiB,
                      "launch", launched_a)
        h.start_actor(good_a, "worker", "device", "GPU-aaaa-1111", 1 * GiB, 30, "reserve", "data", 50 * MiB,
                      "device", "GPU-cccc-3333", "unlimited", 0, "reserve", "module", 1 * MiB)
        h.start_actor(good_b, "server", "device", "GPU-bbbb-2222", 512 * MiB, 0, "reserve", "data", 10 * MiB)
        victim = h.start_actor(good_b, "victim", "device", "GPU-bbbb-2222", 512 * MiB, 0,
                               "reserve", "data", 7 * MiB)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        with open(corrupt, "wb") as f:
            f.write(random.Random(7).randbytes(8192))
        doomed_actor = h.start_actor(doomed, "short", "device", "GPU-dddd-4444", GiB, 0, "reserve", "data", MiB)

        status_a, status_b = h.status(good_a), h.status(good_b)
        check(any(not p["alive"] for p in status_b["processes"]), "the killed actor's slot is not dead")

        exporter_started = time.time_ns()
        port = h.start_exporter()
        # The index page points at /metrics.
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5) as r:
            check("/metrics" in r.read().decode(), "the index page does not point at /metrics")
        h.start_prometheus(port)

        h.wait_for("Prometheus to scrape the exporter", lambda r: len(r) == 1 and r[0][1] == 1,
                   'up{job="gpucap"}')
        h.wait_for("all four regions", lambda r: len(r) == 4, "gpucap_region_up")

        # Good regions: up 1 and every figure equal to gpucap status.
        assert_region_matches_status(h, good_a, status_a, ("team-a", "trainer-0", "main"))
        assert_region_matches_status(h, good_b, status_b, ("team-b", "server-1", "side"))
        check(h.value('gpucap_process_alive{comm="victim"}') == 0, "the killed actor is not reported dead")
        check(h.value('gpucap_process_memory_in_use_bytes{comm="tr\\"ain\\\\er"}') == 102 * MiB,
              "the escaped process name did not survive the round trip")
        # HAMi's "seconds since the last kernel": the container of good_a
        # launched about 3 s before the actor said ready; good_b never did.
        # Prometheus scraped between the exporter's start and this query: the
        # elapsed time it holds lies between the clock's readings then.
        elapsed = h.value("hami_container_last_kernel_elapsed_seconds" + sel(region=good_a, device_uuid="GPU-aaaa-1111"))
        low, high = (exporter_started - launched_a) / 1e9 - 1, (time.time_ns() - launched_a) / 1e9 + 1
        check(low <= elapsed <= high, "hami last kernel elapsed of %s: %s, not within [%.1f, %.1f]" % (good_a, elapsed, low, high))
        check(h.query("hami_container_last_kernel_elapsed_seconds" + sel(region=good_b)) == [],
              "a container that never launched has a last-kernel series")

        # The corrupt region: up 0, errors counted, nothing else.
        check(h.value("gpucap_region_up" + sel(region=corrupt)) == 0, "the corrupt region is not down")
        check(h.value("gpucap_region_read_errors_total" + sel(region=corrupt)) >= 1, "no read error counted")
        check(h.query("gpucap_region_processes" + sel(region=corrupt)) == [], "the corrupt region has samples")
        check("not a gpucap region" in h.read(h.exporter_log), "the corrupt region was not logged")
        check(h.read(h.exporter_log).count(corrupt) == 1,
              "the corrupt region was logged more than once: " + h.read(h.exporter_log))
        check(len(h.query("gpucap_exporter_scrape_duration_seconds")) == 1, "no scrape duration")

        # Every query of the Grafana dashboard is valid PromQL, and the
        # panels for the memory figures show data.
        check_dashboard(h)

        # Reclaiming the dead slot shows in the counters.
        reap = subprocess.run([args.gpucap, "reap", "--file", good_b], capture_output=True, text=True, timeout=10)
        check(reap.returncode == 0, "gpucap reap failed: " + reap.stderr)
        h.wait_for("the reclaim to show", lambda r: len(r) == 1 and r[0][1] == 1,
                   "gpucap_region_reclaimed_slots_total" + sel(region=good_b))
        check(h.value("gpucap_region_reclaimed_bytes_total" + sel(region=good_b)) == 7 * MiB,
              "reclaimed bytes are not the victim's 7 MiB")
        time.sleep(1.2)  # one more scrape, so that every series shows the reaped state
        assert_region_matches_status(h, good_b, h.status(good_b), ("team-b", "server-1", "side"))

        # A region deleted mid-run disappears; the exporter lives on.
        stop(doomed_actor)
        os.unlink(doomed)
        h.wait_for("the deleted region to disappear", lambda r: r == [], "gpucap_region_up" + sel(region=doomed))
        check(h.exporter.poll() is None, "the exporter died")
        check(len(h.query("gpucap_region_up")) == 3, "regions left: %s" % h.query("gpucap_region_up"))
        check(h.value('up{job="gpucap"}') == 1, "the last scrape failed")

        # SIGTERM stops the exporter cleanly.
        h.exporter.send_signal(signal.SIGTERM)
        check(h.exporter.wait(timeout=10) == 0, "exporter exit status %s after SIGTERM" % h.exporter.returncode)
        print("exporter.prometheus_e2e: ok (%.1f s)" % (time.monotonic() - started))
        return 0
    except Failure as e:
        print("FAIL: %s" % e, file=sys.stderr)
        print("--- exporter log ---\n" + h.read(h.exporter_log)[-3000:], file=sys.stderr)
        print("--- prometheus log ---\n" + h.read(h.prometheus_log)[-3000:], file=sys.stderr)
        return 1
    finally:
        h.cleanup()


def cli_checks(args):
    """Options, usage errors and start-up failures of `gpucap exporter`:
    exit codes 0/1/2 and one-line messages (docs/exporter.md)."""

    def gpucap(*argv, timeout=10):
        return subprocess.run([args.gpucap, "exporter", *argv], capture_output=True, text=True,
                              timeout=timeout)

    try:
        out = gpucap("--help")
        check(out.returncode == 0 and "--regions GLOB" in out.stdout and out.stderr == "",
              "--help: %s %r" % (out.returncode, out.stderr))
        check("exporter" in subprocess.run([args.gpucap, "--help"], capture_output=True, text=True).stdout,
              "gpucap --help does not list exporter")
        for argv, needle in (((), "--regions GLOB is required"),
                             (("--regions", "/x/*", "--listen", "9394"), "has no port"),
                             (("--regions", "/x/*", "--listen", ":99999"), "port must be"),
                             (("--regions", "/x/*", "--listen", "::1:80"), "brackets"),
                             (("--regions", "/x/*", "--label-from-path", "^/a/(b"), "not a valid extended"),
                             (("--regions", "/x/*", "--label-from-path", "^/a/b"), "no capture group"),
                             (("--regions", "/x/*", "--bogus"), "unknown option"),
                             (("--regions", "/x/*", "extra"), "unexpected argument")):
            out = gpucap(*argv)
            check(out.returncode == 2, "%s: exit %s, want 2" % (argv, out.returncode))
            lines = out.stderr.splitlines()
            check(len(lines) == 1 and needle in lines[0] and lines[0].startswith("gpucap exporter: "),
                  "%s: stderr %r lacks %r" % (argv, out.stderr, needle))
            check(out.stdout == "", "%s wrote to stdout" % (argv,))
        # A port in use: exit 1, one line that says so.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            out = gpucap("--regions", "/x/*", "--listen", "127.0.0.1:%d" % port)
            check(out.returncode == 1, "port in use: exit %s, want 1" % out.returncode)
            check(len(out.stderr.splitlines()) == 1 and "Address already in use" in out.stderr,
                  "port in use: %r" % out.stderr)
        print("exporter.cli: ok")
        return 0
    except Failure as e:
        print("FAIL: %s" % e, file=sys.stderr)
        return 1


def fetch_metrics(port):
    """One scrape of the exporter: {(name, frozenset(labels)): value}."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return parse_exposition(r.read().decode())


def parse_exposition(text):
    """{(name, frozenset(labels)): value} of one exposition."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, _, rest = head.partition("{")
        labels = {}
        for part in rest.rstrip("}").split('",') if rest else []:
            if part:
                key, _, val = part.partition('="')
                labels[key] = val.rstrip('"')
        samples[(name, frozenset(labels.items()))] = float(value)
    return samples


def series(samples, name, **labels):
    want = {(k, str(v)) for k, v in labels.items()}
    return [v for (n, ls), v in samples.items() if n == name and want <= ls]


def sm_views(args):
    """SM limit, duty, delivered and asked share and the last kernel launch,
    as gpucap status, gpucap top and the exporter (one scrape, no Prometheus)
    show them. In the first region no share was measured: n/a, null, no
    series. In the second, actors publish shares as a controller does: one
    device held at its cap (cap 30, delivered 30%, asked 75%), one using
    less than its cap (cap 50, delivered and asked 20%)."""
    h = Harness(args.gpucap, args.actor)
    try:
        region = h.region("team-s_sm-0_main")
        launched = time.time_ns() - 2_500_000_000  # 2.5 s ago
        a = h.start_actor(region, "launcher", "device", "GPU-sm-aaaa", GiB, 30, "reserve", "data", 10 * MiB,
                          "launch", launched)
        b = h.start_actor(region, "idle", "device", "GPU-sm-bbbb", "unlimited", 0, "reserve", "data", MiB)
        measured = h.region("team-s_sm-1_main")
        h.start_actor(measured, "held", "device", "GPU-sm-cccc", GiB, 30, "share", 300000, 750000)
        h.start_actor(measured, "light", "device", "GPU-sm-dddd", GiB, 50, "share", 200000, 200000)

        doc = h.status(region)
        devices = {d["uuid"]: d for d in doc["devices"]}
        capped, free = devices["GPU-sm-aaaa"], devices["GPU-sm-bbbb"]
        check(capped["sm_limit_percent"] == 30 and capped["sm_share_ratio"] is None
              and capped["sm_asked_ratio"] is None and 0 <= capped["sm_duty_ratio"] <= 1,
              "capped device in status --json: %s" % capped)
        check(free["sm_limit_percent"] is None and free["sm_duty_ratio"] == 1 and free["sm_share_ratio"] is None
              and free["sm_asked_ratio"] is None, "uncapped device in status --json: %s" % free)
        measured_doc = {d["uuid"]: d for d in h.status(measured)["devices"]}
        got = {u: (d["sm_limit_percent"], d["sm_duty_ratio"], d["sm_share_ratio"], d["sm_asked_ratio"])
               for u, d in measured_doc.items()}
        check(got == {"GPU-sm-cccc": (30, 0.3, 0.3, 0.75), "GPU-sm-dddd": (50, 0.5, 0.2, 0.2)},
              "published shares in status --json: %s" % got)
        procs = {p["pid"]: p for p in doc["processes"]}
        check(procs[a.pid]["last_launch_unix_ns"] == launched, "last launch in status --json: %s" % procs[a.pid])
        check(procs[b.pid]["last_launch_unix_ns"] is None, "never launched in status --json: %s" % procs[b.pid])

        def age_seconds(cell):
            m = re.fullmatch(r"(\d+)\.(\d)s ago", cell)
            check(m is not None, "last kernel cell %r is not an age in seconds" % cell)
            return int(m.group(1)) + int(m.group(2)) / 10

        def cells(line):
            return re.split(r"\s{2,}", line.strip())

        def age_between(cell, before_ns, after_ns, what):
            # The age the tool printed lies between the clock's readings
            # taken around the call (to its 0.1 s rounding), however long
            # the call took on a loaded machine.
            age = age_seconds(cell)
            low, high = (before_ns - launched) / 1e9 - 0.1, (after_ns - launched) / 1e9 + 0.1
            check(low <= age <= high, "%s: %s s, not within [%.1f, %.1f]" % (what, age, low, high))

        before = time.time_ns()
        out = subprocess.run([h.gpucap, "status", "--file", region], capture_output=True, text=True, timeout=10)
        after = time.time_ns()
        check(out.returncode == 0, "gpucap status: %s" % out.stderr)
        rows = [cells(l) for l in out.stdout.splitlines()]
        dev = {r[1]: r for r in rows if len(r) == 11 and r[1].startswith("GPU-sm-")}
        check(dev["GPU-sm-aaaa"][6] == "30%" and dev["GPU-sm-aaaa"][8:10] == ["n/a", "n/a"],
              "status device row %s" % dev)
        check(dev["GPU-sm-bbbb"][6:] == ["none", "-", "n/a", "n/a", "0"], "status device row %s" % dev)
        proc = {r[1]: r for r in rows if len(r) == 14 and r[1].isdigit()}
        age_between(proc[str(a.pid)][5], before, after, "status last kernel")
        check(proc[str(b.pid)][5] == "-", "status last kernel of a process that never launched: %s" % proc)

        before = time.time_ns()
        out = subprocess.run([h.gpucap, "top", "--once", "--file", region], capture_output=True, text=True,
                             timeout=10)
        after = time.time_ns()
        check(out.returncode == 0, "gpucap top: %s" % out.stderr)
        rows = [cells(l) for l in out.stdout.splitlines()]
        dev = {r[1]: r for r in rows if len(r) == 9 and r[1].startswith("GPU-sm-")}
        check(dev["GPU-sm-aaaa"][6:] == ["30%", "n/a", "n/a"] and dev["GPU-sm-bbbb"][6:] == ["none", "n/a", "n/a"],
              "top device rows %s" % dev)
        proc = {r[0]: r for r in rows if len(r) == 7 and r[0].isdigit()}
        age_between(proc[str(a.pid)][6], before, after, "top last kernel")
        check(proc[str(b.pid)][6] == "-", "top last kernel of a process that never launched: %s" % proc)

        out = subprocess.run([h.gpucap, "top", "--once", "--json", "--file", region], capture_output=True,
                             text=True, timeout=10)
        top = json.loads(out.stdout)["regions"][0]
        procs = {p["pid"]: p for p in top["processes"]}
        check(procs[a.pid]["last_kernel_unix_ns"] == launched and procs[b.pid]["last_kernel_unix_ns"] is None,
              "top --json last kernel: %s" % procs)
        devices = {d["uuid"]: d for d in top["devices"]}
        check(devices["GPU-sm-aaaa"]["sm_share_ratio"] is None and devices["GPU-sm-aaaa"]["sm_share_percent"] is None
              and devices["GPU-sm-aaaa"]["sm_asked_ratio"] is None
              and devices["GPU-sm-aaaa"]["sm_asked_percent"] is None
              and devices["GPU-sm-bbbb"]["sm_duty_ratio"] == 1, "top --json devices: %s" % devices)

        # The published shares: held at the cap (asked above delivered)
        # and using less than the cap (asked equals delivered).
        out = subprocess.run([h.gpucap, "status", "--file", measured], capture_output=True, text=True, timeout=10)
        check(out.returncode == 0, "gpucap status: %s" % out.stderr)
        dev = {r[1]: r for r in (cells(l) for l in out.stdout.splitlines())
               if len(r) == 11 and r[1].startswith("GPU-sm-")}
        check(dev["GPU-sm-cccc"][6:10] == ["30%", "30.0%", "30.0%", "75.0%"]
              and dev["GPU-sm-dddd"][6:10] == ["50%", "50.0%", "20.0%", "20.0%"],
              "status rows with published shares: %s" % dev)
        out = subprocess.run([h.gpucap, "top", "--once", "--file", measured], capture_output=True, text=True,
                             timeout=10)
        check(out.returncode == 0, "gpucap top: %s" % out.stderr)
        dev = {r[1]: r for r in (cells(l) for l in out.stdout.splitlines())
               if len(r) == 9 and r[1].startswith("GPU-sm-")}
        check(dev["GPU-sm-cccc"][6:] == ["30%", "30.0%", "75.0%"] and dev["GPU-sm-dddd"][6:] == ["50%", "20.0%", "20.0%"],
              "top rows with published shares: %s" % dev)
        out = subprocess.run([h.gpucap, "top", "--once", "--json", "--file", measured], capture_output=True,
                             text=True, timeout=10)
        got = {d["uuid"]: (d["sm_share_percent"], d["sm_asked_percent"])
               for d in json.loads(out.stdout)["regions"][0]["devices"]}
        check(got == {"GPU-sm-cccc": (30, 75), "GPU-sm-dddd": (20, 20)}, "top --json published shares: %s" % got)

        port = h.start_exporter()
        before = time.time_ns()
        m = fetch_metrics(port)
        after = time.time_ns()
        la = dict(region=region, device_uuid="GPU-sm-aaaa")
        lb = dict(region=region, device_uuid="GPU-sm-bbbb")
        check(series(m, "gpucap_device_sm_limit_ratio", **la) == [0.3], "sm limit ratio: %s" % m)
        check(series(m, "gpucap_device_sm_limit_ratio", **lb) == [1.0], "sm limit ratio (none)")
        duty = series(m, "gpucap_device_sm_duty_ratio", **la)
        check(len(duty) == 1 and abs(duty[0] - capped["sm_duty_ratio"]) < 1e-9, "sm duty: %s" % duty)
        check(series(m, "gpucap_device_sm_duty_ratio", **lb) == [1.0], "sm duty without a limit")
        check(series(m, "gpucap_device_sm_share_ratio", region=region) == [], "an unmeasured share was exported")
        check(series(m, "gpucap_device_sm_asked_ratio", region=region) == [],
              "an unmeasured asked share was exported")
        for uuid, share, asked in (("GPU-sm-cccc", 0.3, 0.75), ("GPU-sm-dddd", 0.2, 0.2)):
            lm = dict(region=measured, device_uuid=uuid)
            check(series(m, "gpucap_device_sm_share_ratio", **lm) == [share], "delivered share of %s: %s"
                  % (uuid, series(m, "gpucap_device_sm_share_ratio", **lm)))
            check(series(m, "gpucap_device_sm_asked_ratio", **lm) == [asked], "asked share of %s: %s"
                  % (uuid, series(m, "gpucap_device_sm_asked_ratio", **lm)))
            check(series(m, "hami_container_device_utilization_ratio", **lm) == [100 * share],
                  "HAMi utilization of %s" % uuid)
        check(series(m, "hami_container_device_utilization_ratio", region=region) == [],
              "an unmeasured share was exported under HAMi's name")
        got = series(m, "gpucap_process_last_launch_timestamp_seconds", region=region, pid=a.pid, comm="launcher")
        check(len(got) == 1 and abs(got[0] - launched / 1e9) < 1e-5, "last launch timestamp: %s" % got)
        check(series(m, "gpucap_process_last_launch_timestamp_seconds", pid=b.pid) == [],
              "a process that never launched has a last-launch sample")
        for labels in (la, lb):
            got = series(m, "hami_container_last_kernel_elapsed_seconds", **labels)
            check(len(got) == 1 and (before - launched) / 1e9 - 1 <= got[0] <= (after - launched) / 1e9 + 1,
                  "hami last kernel elapsed: %s" % got)
        print("exporter.sm_views: ok")
        return 0
    except Failure as e:
        print("FAIL: %s" % e, file=sys.stderr)
        print("--- exporter log ---\n" + h.read(h.exporter_log)[-3000:], file=sys.stderr)
        return 1
    finally:
        h.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gpucap", required=True)
    parser.add_argument("--actor", required=True)
    parser.add_argument("--cli-only", action="store_true",
                        help="check options, usage errors and exit codes only (no Prometheus)")
    parser.add_argument("--sm-views", action="store_true",
                        help="check SM limit/duty/share and last-launch output of status, top and one "
                             "exporter scrape (no Prometheus)")
    args = parser.parse_args()
    if args.sm_views:
        return sm_views(args)
    return cli_checks(args) if args.cli_only else run(args)


if __name__ == "__main__":
    sys.exit(main())
