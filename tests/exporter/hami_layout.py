#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""`gpucap exporter` on a node laid out as HAMi's device plugin lays it out.

Region files live at <root>/usr/local/vgpu/containers/<pod uid>_<container>/
<device uuid>.cache and the kubelet's pod log directories at
<root>/var/log/pods/<namespace>_<pod>_<pod uid>. One scrape must label each
series with the namespace and pod of its UID (a UID without a log directory
keeps its container label only), emit HAMi's current metric names with its
labels, and pass `promtool check metrics`. With --hami-legacy-metrics the
pre-2026 names come too, with HAMi's legacy labels; promtool's only remarks
on them are HAMi's own camelCase names.

usage: hami_layout.py --gpucap PATH --actor PATH
Without promtool on PATH the test fails (it never skips): install it
(Debian: apt-get install prometheus).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prometheus_e2e import Failure, check, parse_exposition  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30

PODS = [
    # (uid, namespace, pod, container, device uuid, limit, sm, context, module, data)
    ("0b6f3c1e-2d4a-4f7b-9c1d-3e5f7a9b1c2d", "team-a", "trainer-7d9f8c-x2x4q", "main",
     "GPU-11111111-2222-3333-4444-555555555555", 8 * GiB, 30, 300 * MiB, 20 * MiB, 2 * GiB),
    ("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "ml", "infer-0", "server",
     "GPU-66666666-7777-8888-9999-000000000000", 4 * GiB, 0, 280 * MiB, 0, 512 * MiB),
]
ORPHAN_UID = "ffffffff-0000-4000-8000-000000000001"


def one(samples, name, **labels):
    want = {(k, str(v)) for k, v in labels.items()}
    found = [(ls, v) for (n, ls), v in samples.items() if n == name and want <= ls]
    check(len(found) == 1, "%s%s: %d series, want 1: %s" % (name, labels, len(found), found))
    return dict(found[0][0]), found[0][1]


class Node:
    def __init__(self, gpucap, actor):
        self.gpucap, self.actor = gpucap, actor
        self.root = tempfile.mkdtemp(prefix="gpucap-hami-layout-")
        self.containers = os.path.join(self.root, "usr/local/vgpu/containers")
        self.pod_logs = os.path.join(self.root, "var/log/pods")
        os.makedirs(self.containers)
        os.makedirs(self.pod_logs)
        self.procs = []

    def start_actor(self, path, *steps):
        proc = subprocess.Popen([self.actor, path, "python3", *[str(s) for s in steps]],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        line = proc.stdout.readline()
        if not line.startswith("ready "):
            raise Failure("actor did not start: %r %s" % (line, proc.stderr.read()))

    def scrape(self, *flags):
        log_path = os.path.join(self.root, "exporter.log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [self.gpucap, "exporter", "--listen", "127.0.0.1:0", "--regions",
                 os.path.join(self.containers, "*", "*.cache"), "--pod-log-root", self.pod_logs, *flags],
                stdout=subprocess.DEVNULL, stderr=log)
        try:
            port = None
            for _ in range(400):  # bounded wait for the "listening" line
                check(proc.poll() is None, "exporter exited: " + open(log_path).read())
                marker = "listening on http://127.0.0.1:"
                for line in open(log_path).read().splitlines():
                    if marker in line:
                        port = int(line.split(marker)[1].split("/")[0])
                if port:
                    break
                time.sleep(0.025)
            check(port is not None, "exporter did not say where it listens: " + open(log_path).read())
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
                return r.read().decode()
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    def cleanup(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        shutil.rmtree(self.root, ignore_errors=True)


def promtool(text):
    tool = shutil.which("promtool")
    check(tool is not None, "promtool is not on PATH (Debian: apt-get install prometheus)")
    out = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    return out.returncode, (out.stdout + out.stderr).strip()


def run(args):
    node = Node(args.gpucap, args.actor)
    try:
        regions = {}
        for uid, namespace, pod, container, uuid, limit, sm, context, module, data in PODS:
            os.makedirs(os.path.join(node.pod_logs, "%s_%s_%s" % (namespace, pod, uid)))
            directory = os.path.join(node.containers, "%s_%s" % (uid, container))
            os.makedirs(directory)
            path = os.path.join(directory, uuid + ".cache")
            steps = ["device", uuid, limit, sm, "reserve", "context", context, "reserve", "data", data,
                     "launch", time.time_ns() - 5 * 10**9]
            if module:
                steps += ["reserve", "module", module]
            node.start_actor(path, *steps)
            regions[uid] = path
        # HAMi also leaves log directories of other pods, and pods whose
        # log directory is gone.
        os.makedirs(os.path.join(node.pod_logs, "kube-system_coredns-5d78c9869d-abcde_"
                                 "12345678-1234-4234-8234-123456789abc"))
        orphan_dir = os.path.join(node.containers, ORPHAN_UID + "_lone")
        os.makedirs(orphan_dir)
        orphan_uuid = "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
        node.start_actor(os.path.join(orphan_dir, orphan_uuid + ".cache"),
                         "device", orphan_uuid, GiB, 0, "reserve", "data", 64 * MiB)

        # HAMi's device plugin makes the per-container directories 0777:
        # doctor warns and says what that permits, it does not fail.
        os.chmod(os.path.dirname(regions[PODS[0][0]]), 0o777)
        out = subprocess.run([args.gpucap, "doctor", "--file", regions[PODS[0][0]]], capture_output=True,
                             text=True, timeout=30)
        lines = out.stdout.splitlines()
        check(any(line.startswith("warn  permissions: directory %s is HAMi's, mode 0777: any process that "
                                  "can reach it" % os.path.dirname(regions[PODS[0][0]])) for line in lines) and
              not any(line.startswith("fail  permissions") for line in lines),
              "doctor on HAMi's 0777 directory:\n" + out.stdout + out.stderr)

        text = node.scrape("--hami-metrics")
        samples = parse_exposition(text)
        for uid, namespace, pod, container, uuid, limit, sm, context, module, data in PODS:
            status = json.loads(subprocess.run([args.gpucap, "status", "--json", "--file", regions[uid]],
                                               capture_output=True, text=True, check=True).stdout)
            charged = status["devices"][0]["charged_bytes"]
            names = dict(namespace=namespace, pod=pod, container=container)
            hami = dict(names, vdevice_index=0, device_uuid=uuid)
            _, used = one(samples, "hami_vgpu_memory_used_bytes", **hami)
            check(used == charged, "hami_vgpu_memory_used_bytes %s: %d, status says %d" % (pod, used, charged))
            check(one(samples, "hami_container_device_memory_bytes", **hami)[1] == charged,
                  "hami_container_device_memory_bytes %s" % pod)
            check(one(samples, "hami_vgpu_memory_limit_bytes", **hami)[1] == limit,
                  "hami_vgpu_memory_limit_bytes %s" % pod)
            check(one(samples, "hami_vgpu_memory_context_bytes", **hami)[1] == context,
                  "hami_vgpu_memory_context_bytes %s" % pod)
            check(one(samples, "hami_vgpu_memory_module_bytes", **hami)[1] == module,
                  "hami_vgpu_memory_module_bytes %s" % pod)
            check(one(samples, "hami_vgpu_memory_buffer_bytes", **hami)[1] == data,
                  "hami_vgpu_memory_buffer_bytes %s" % pod)
            _, since = one(samples, "hami_container_last_kernel_elapsed_seconds", **hami)
            check(since >= 5, "hami_container_last_kernel_elapsed_seconds %s: %s, want >= 5" % (pod, since))
            # gpucap's own series carry the same names.
            one(samples, "gpucap_device_memory_charged_bytes", device_uuid=uuid, **names)
            one(samples, "gpucap_region_up", region=regions[uid], **names)
        labels, _ = one(samples, "hami_vgpu_memory_used_bytes", device_uuid=orphan_uuid)
        check(labels.get("container") == "lone" and "pod" not in labels and "namespace" not in labels,
              "a pod UID without a log directory: labels %s" % labels)
        check(not any(n.startswith("vGPU_") or n.startswith("Device_") for n, _ in samples),
              "legacy names without --hami-legacy-metrics")
        rc, out = promtool(text)
        check(rc == 0 and out == "", "promtool check metrics (rc %d): %s" % (rc, out))
        print("ok: %d series labelled from HAMi's layout; promtool check metrics passes" % len(samples))

        text = node.scrape("--hami-legacy-metrics")
        samples = parse_exposition(text)
        uid, namespace, pod, container, uuid, limit, sm, context, module, data = PODS[0]
        legacy = dict(podnamespace=namespace, podname=pod, ctrname=container, vdeviceid=0, deviceuuid=uuid)
        charged = one(samples, "hami_vgpu_memory_used_bytes", device_uuid=uuid)[1]
        check(one(samples, "vGPU_device_memory_usage_in_bytes", **legacy)[1] == charged,
              "vGPU_device_memory_usage_in_bytes")
        check(one(samples, "vGPU_device_memory_limit_in_bytes", **legacy)[1] == limit,
              "vGPU_device_memory_limit_in_bytes")
        labels, value = one(samples, "Device_memory_desc_of_container", **legacy)
        check(value == charged and labels["context"] == str(context) and labels["module"] == str(module) and
              labels["data"] == str(data) and labels["offset"] == str(int(charged) - context - module - data),
              "Device_memory_desc_of_container: %s %s" % (labels, value))
        one(samples, "Device_last_kernel_of_container", **legacy)
        rc, out = promtool(text)
        remarks = [line for line in out.splitlines() if line]
        check(remarks and all("camelCase" in line for line in remarks),
              "promtool on the legacy names (rc %d): %s" % (rc, out))
        print("ok: legacy names with HAMi's legacy labels; promtool's only remarks are their camelCase")
    finally:
        node.cleanup()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpucap", required=True)
    parser.add_argument("--actor", required=True)
    try:
        run(parser.parse_args())
    except Failure as e:
        print("FAIL: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
