#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Offline checks of deploy/kubernetes.

  check_manifests.py static DEPLOY_DIR    every YAML parses; what the docs promise holds
  check_manifests.py rendered DEPLOY_DIR  the same on `kubectl kustomize` output of the
                                          base, the HAMi overlay and the example (exit 77,
                                          reported as skipped, without kubectl)
"""

import glob
import os
import shutil
import subprocess
import sys

import yaml


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def load_all(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def container(pod_spec, name):
    found = [c for c in pod_spec["containers"] if c["name"] == name]
    check(len(found) == 1, "no container %s" % name)
    return found[0]


def mount(c, path):
    found = [m for m in c.get("volumeMounts", []) if m["mountPath"] == path]
    check(len(found) == 1, "container %s has no mount at %s" % (c["name"], path))
    return found[0]


def env(c):
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def check_agent(docs, hami):
    ds = by_kind(docs, "DaemonSet")
    check(len(ds) == 1, "one DaemonSet, found %d" % len(ds))
    spec = ds[0]["spec"]["template"]["spec"]
    check(not spec.get("hostPID"), "the agent needs no hostPID")
    for c in spec["containers"]:
        added = c.get("securityContext", {}).get("capabilities", {}).get("add", [])
        check("DAC_OVERRIDE" not in added and "SYS_PTRACE" not in added,
              "container %s adds %s" % (c["name"], added))
        check(c["securityContext"].get("allowPrivilegeEscalation") is False,
              "container %s may escalate privileges" % c["name"])
        check("ALL" in c["securityContext"]["capabilities"].get("drop", []),
              "container %s does not drop all capabilities" % c["name"])
    exporter = container(spec, "exporter")
    check(exporter["securityContext"]["capabilities"].get("add") == ["DAC_READ_SEARCH"],
          "the exporter's capabilities: %s" % exporter["securityContext"]["capabilities"])
    for m in exporter["volumeMounts"]:
        check(m.get("readOnly") is True, "the exporter mounts %s writable" % m["mountPath"])
    check("--resolve-host-pids" not in exporter["args"], "the exporter writes regions (--resolve-host-pids)")
    installer = container(spec, "library-installer")
    check(installer["command"] == ["gpucap-install-library"], "installer command %s" % installer["command"])
    args = installer["args"]
    check("--watch" in args, "the installer does not watch: %s" % args)
    if hami:
        check("--hami-path" in args and "/host/usr/local/vgpu/libvgpu.so" in args,
              "the HAMi installer does not keep HAMi's path: %s" % args)
        check("/usr/local/vgpu/containers/*/*.cache" in exporter["args"] and
              "--pod-log-root" in exporter["args"], "the HAMi exporter args: %s" % exporter["args"])
        mount(exporter, "/usr/local/vgpu/containers")
        mount(exporter, "/var/log/pods")


def check_example(docs):
    check(not by_kind(docs, "Pod"), "the example has a hand-named Pod")
    deployments = by_kind(docs, "Deployment")
    check(len(deployments) == 1, "the example has %d Deployments" % len(deployments))
    spec = deployments[0]["spec"]["template"]["spec"]
    main = container(spec, "main")
    variables = env(main)
    check(variables.get("CUDA_DEVICE_SM_LIMIT") == "30", "no SM cap: %s" % variables)
    check(variables.get("GPUCAP_NODE_DIR") == "/var/run/gpucap-node", "no node directory: %s" % variables)
    region = variables.get("GPUCAP_REGION") or variables.get("CUDA_DEVICE_MEMORY_SHARED_CACHE")
    check(region == "/var/run/gpucap/cudevshr.cache", "region path %s" % region)
    regions = mount(main, "/var/run/gpucap")
    check(regions.get("subPathExpr") == "$(POD_NAMESPACE)_$(POD_NAME)_main",
          "the region directory is not per pod: %s" % regions)
    check(mount(main, "/etc/gpucap/limits.conf").get("readOnly") is True, "the limits file is writable")
    check(mount(main, "/etc/ld.so.preload").get("readOnly") is True, "ld.so.preload is writable")
    mount(main, "/var/run/gpucap-node")
    for volume in spec["volumes"]:
        path = volume.get("hostPath", {}).get("path", "")
        check("cuda-demo" not in path, "a hostPath names the pod: %s" % path)


def static(deploy):
    kube = os.path.join(deploy, "kubernetes")
    files = sorted(glob.glob(os.path.join(kube, "**", "*.yaml"), recursive=True))
    check(files, "no YAML under %s" % kube)
    parsed = {}
    for path in files:
        try:
            parsed[path] = load_all(path)
        except yaml.YAMLError as e:
            raise Failure("%s does not parse: %s" % (path, e))
    for path, docs in parsed.items():
        if os.path.basename(path) != "kustomization.yaml":
            continue
        k = docs[0]
        here = os.path.dirname(path)
        for entry in k.get("resources", []) + [p["path"] for p in k.get("patches", [])]:
            check(os.path.exists(os.path.join(here, entry)), "%s names %s, which is missing" % (path, entry))
        for gen in k.get("configMapGenerator", []):
            for f in gen.get("files", []):
                check(os.path.exists(os.path.join(here, f)), "%s names %s, which is missing" % (path, f))
    check_agent(parsed[os.path.join(kube, "base", "agent-daemonset.yaml")], hami=False)
    check_example(parsed[os.path.join(kube, "example", "deployment.yaml")])
    print("ok: %d manifests parse; agent and example checked" % len(files))


def rendered(deploy):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        print("SKIPPED: kubectl is not installed (its kustomize renders the manifests)")
        sys.exit(77)
    kube = os.path.join(deploy, "kubernetes")

    def render(directory):
        out = subprocess.run([kubectl, "kustomize", os.path.join(kube, directory)], capture_output=True,
                             text=True, timeout=60)
        check(out.returncode == 0, "kubectl kustomize %s: %s" % (directory, out.stderr))
        return [d for d in yaml.safe_load_all(out.stdout) if d]

    base = render("base")
    check_agent(base, hami=False)
    check(all(d["metadata"].get("namespace") == "gpucap-system" for d in base if d["kind"] != "Namespace"),
          "the base is not in gpucap-system")
    hami = render("overlays/hami")
    check_agent(hami, hami=True)
    spec = by_kind(hami, "DaemonSet")[0]["spec"]["template"]["spec"]
    installer = container(spec, "library-installer")
    mount(installer, "/host/usr/local/gpucap")
    mount(installer, "/host/usr/local/vgpu")
    example = render("example")
    check_example(example)
    maps = by_kind(example, "ConfigMap")
    check(len(maps) == 1 and "sm = 50" in maps[0]["data"]["limits.conf"], "the limits ConfigMap: %s" % maps)
    volume = [v for v in by_kind(example, "Deployment")[0]["spec"]["template"]["spec"]["volumes"]
              if v["name"] == "limits"][0]
    check(volume["configMap"]["name"] == maps[0]["metadata"]["name"], "the limits volume names another map")
    print("ok: kubectl kustomize renders the base, the HAMi overlay and the example as checked")


def main():
    mode, deploy = sys.argv[1], sys.argv[2]
    try:
        {"static": static, "rendered": rendered}[mode](deploy)
    except (Failure, KeyError, TypeError) as e:
        print("FAIL: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
