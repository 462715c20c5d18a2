#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The layering of libgpucap.so, checked on its object files.

    layering.py SRC_ROOT OBJECT...

Each object belongs to a folder (src/hook, src/memory, src/compute). An edge
A -> B means A calls a function B defines (from `nm`). The check fails when
  - the calls form a cycle between files,
  - src/memory or src/compute calls into src/hook, or into each other,
  - src/hook calls a function of src/memory or src/compute that is not
    declared in that folder's public header (memory.h, compute.h).
"""
import os
import re
import subprocess
import sys

PUBLIC = {"memory": "memory.h", "compute": "compute.h"}


def nm(path, *flags):
    out = subprocess.run(["nm", "-P", *flags, path], check=True, capture_output=True, text=True).stdout
    return [line.split() for line in out.splitlines() if line.strip()]


def folder_of(obj):
    # .../gpucap_memory_objects.dir/alloc.c.o -> memory
    m = re.search(r"gpucap_(hook|memory|compute)_objects\.dir", obj)
    if not m:
        sys.exit(f"layering: cannot tell the folder of {obj}")
    return m.group(1)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    # CMake may hand a list of objects as one argument, separated by ';'.
    root, objects = sys.argv[1], [o for arg in sys.argv[2:] for o in arg.split(";") if o]
    defines = {}  # function -> object
    uses = {}  # object -> functions it calls
    for obj in objects:
        for fields in nm(obj, "--defined-only"):
            if len(fields) >= 2 and fields[1] in ("T", "t"):
                defines[fields[0]] = obj
        uses[obj] = {f[0] for f in nm(obj, "--undefined-only")}
    headers = {name: open(os.path.join(root, "src", name, header)).read() for name, header in PUBLIC.items()}

    problems = []
    edges = {obj: set() for obj in objects}
    for obj, names in uses.items():
        for fn in sorted(names):
            target = defines.get(fn)
            if not target or target == obj:
                continue
            edges[obj].add(target)
            a, b = folder_of(obj), folder_of(target)
            where = f"{os.path.basename(obj)} calls {fn} ({os.path.basename(target)})"
            if a == b:
                continue
            if a != "hook":
                problems.append(f"{where}: src/{a} must not call src/{b}")
            elif not re.search(r"\b" + re.escape(fn) + r"\s*\(", headers[b]):
                problems.append(f"{where}: not declared in src/{b}/{PUBLIC[b]}")

    # Cycles: strongly connected components of more than one file.
    index, low, stack, on_stack, sccs = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(scc)

    sys.setrecursionlimit(10000)
    for v in objects:
        if v not in index:
            visit(v)
    for scc in sccs:
        problems.append("files call each other in a circle: " + ", ".join(sorted(os.path.basename(s) for s in scc)))

    for p in problems:
        print("layering:", p)
    print(f"layering: {len(objects)} files, {sum(len(e) for e in edges.values())} call edges, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
