#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""`gpucap reap` on a region whose counters a broken or hostile writer
damaged (region_damage writes the file's words directly):

  reap_repairs    a dead slot whose state is out of range (hiding its
                  charges), a negative ledger in a dead slot, a live slot's
                  state out of range and a device total that disagrees with
                  the ledgers: reap repairs each, says so, and `status --json`
                  is consistent afterwards.
  reap_unrepaired a live process's negative ledger: reap says, in one line,
                  that it cannot repair that total and what to do, exits 1;
                  once the process is stopped, reap repairs it.

usage: repair_test.py TEST --gpucap PATH --actor PATH --damage PATH
                           --fake-preload PATH --version X.Y.Z --libdir DIR
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_test import case_main, MiB, UUID_A, UUID_B, Failure, check, check_equal  # noqa: E402


def damage(h, region, *steps):
    res = subprocess.run([h.damage_path, region, *steps], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=20)
    check_equal((res.returncode, res.stderr), (0, ""), f"region_damage {' '.join(steps)}")


def device_index(h, region, uuid):
    for d in h.status_json(region)["devices"]:
        if d["uuid"] == uuid:
            return d["index"]
    raise Failure(f"device {uuid} not in the region")


def check_consistent(h, region, live_pids, what):
    """status --json agrees with itself: every device total is the sum of
    what the live processes hold on it, and only they hold slots."""
    doc = h.status_json(region)
    check(doc["consistent"], f"{what}: status must be consistent: {doc}")
    check_equal(sorted(p["pid"] for p in doc["processes"]), sorted(live_pids), f"{what}: processes")
    check(all(p["alive"] for p in doc["processes"]), f"{what}: a process is not alive: {doc['processes']}")
    for device in doc["devices"]:
        held = sum(pd["charged_bytes"] for p in doc["processes"] for pd in p["devices"]
                   if pd["index"] == device["index"])
        check_equal(device["charged_bytes"], held, f"{what}: device {device['uuid']} total vs its processes")
    return doc


def reap_json(h, region):
    res = h.cli("reap", "--json", "--file", region)
    check(res.stdout.endswith("\n") and res.stdout.count("\n") == 1, f"reap --json must print one line: {res.stdout!r}")
    return res, json.loads(res.stdout)


def test_reap_repairs(h):
    region = os.path.join(h.tmp, "damaged.cache")
    a, _ = h.actor(region, "device", UUID_A, "1g", "reserve", "data", "10m")
    d, d_slot = h.actor(region, "device", UUID_A, "1g", "reserve", "data", "3m")
    b, b_slot = h.actor(region, "device", UUID_A, "1g", "reserve", "data", "20m")
    c, c_slot = h.actor(region, "device", UUID_A, "1g", "reserve", "data", "5m")
    index = device_index(h, region, UUID_A)
    h.kill(b)
    h.kill(c)
    damage(h, region,
           "state", str(b_slot), "7",                  # dead, out of range: hides B's 20 MiB
           "ledger", str(c_slot), str(index), "-20m",  # dead C now sums to -15 MiB
           "state", str(d_slot), "9",                  # live D, out of range
           "total", str(index), "138m")                # 38 MiB held, 100 MiB more charged

    res = h.cli("reap", "--file", region)
    check_equal((res.returncode, res.stderr), (0, ""), "reap exit code and stderr")
    check_equal(res.stdout.splitlines(), [
        f"reclaimed 2 dead slots, returned 20 MiB (device {index}: 20 MiB)",
        "repaired: 1 dead slot with a state word out of range (reclaimed above)",
        "repaired: wrote off 15 MiB of negative ledgers in dead slots",
        "repaired: set the state word of 1 live process back to live",
        "repaired: set 1 device total to the sum of the processes' ledgers (removed 105 MiB, added 0 B)",
    ], "reap's report")
    doc = check_consistent(h, region, [a.pid, d.pid], "after reap")
    check_equal([x["charged_bytes"] for x in doc["devices"] if x["uuid"] == UUID_A], [13 * MiB],
                "device total after reap")
    check(a.poll() is None and d.poll() is None, "reap must leave live processes alone")

    # Sound now: a second reap finds nothing, in either form.
    res = h.cli("reap", "--file", region)
    check_equal((res.returncode, res.stdout, res.stderr), (0, "reclaimed 0 dead slots, returned 0 B\n", ""),
                "a second reap")
    res, doc = reap_json(h, region)
    check_equal((res.returncode, res.stderr), (0, ""), "reap --json on a sound region")
    check_equal(doc["repaired"], {"damaged_dead_slots": 0, "negative_ledger_bytes_written_off": 0,
                                  "live_slot_states": 0, "device_totals": 0, "bytes_removed": 0,
                                  "bytes_added": 0}, "nothing repaired")
    check_equal(doc["unrepaired"], {"live_negative_ledgers": 0, "unsettled_device_totals": 0}, "nothing left")

    # The JSON form of the same repairs.
    e, e_slot = h.actor(region, "device", UUID_A, "1g", "reserve", "data", "7m")
    h.kill(e)
    damage(h, region, "state", str(e_slot), "12345", "total", str(index), "40m")
    res, doc = reap_json(h, region)
    check_equal((res.returncode, res.stderr), (0, ""), "reap --json exit code and stderr")
    check_equal((doc["reclaimed_slots"], doc["returned_bytes"]), (1, 7 * MiB), "reap --json reclaimed")
    # The total read 40 MiB for 20 MiB of ledgers; returning E's 7 MiB
    # leaves 33, and the repair sets it to the 13 MiB still held.
    check_equal(doc["repaired"], {"damaged_dead_slots": 1, "negative_ledger_bytes_written_off": 0,
                                  "live_slot_states": 0, "device_totals": 1, "bytes_removed": 20 * MiB,
                                  "bytes_added": 0}, "reap --json repaired")
    check_equal(doc["unrepaired"], {"live_negative_ledgers": 0, "unsettled_device_totals": 0},
                "reap --json unrepaired")
    check_consistent(h, region, [a.pid, d.pid], "after reap --json")


def test_reap_unrepaired(h):
    region = os.path.join(h.tmp, "negative.cache")
    a, _ = h.actor(region, "device", UUID_A, "1g", "reserve", "data", "10m")
    e, e_slot = h.actor(region, "device", UUID_B, "unlimited", "reserve", "data", "4m")
    index_b = device_index(h, region, UUID_B)
    damage(h, region, "ledger", str(e_slot), str(index_b), "-10m")  # live E now sums to -6 MiB

    for form in ("text", "json"):
        res = h.cli("reap", *(["--json"] if form == "json" else []), "--file", region)
        check_equal(res.returncode, 1, f"reap ({form}) with damage it cannot repair: exit code")
        lines = res.stderr.splitlines()
        check_equal(len(lines), 1, f"reap ({form}): one line on stderr: {res.stderr!r}")
        for needle in ("gpucap reap: cannot repair 1 device total", region, "negative ledger",
                       "stop the processes", "remove the file"):
            check(needle in lines[0], f"reap ({form}) must say {needle!r}: {lines[0]!r}")
        if form == "json":
            doc = json.loads(res.stdout)
            check_equal(doc["unrepaired"], {"live_negative_ledgers": 1, "unsettled_device_totals": 0},
                        "reap --json unrepaired")
        else:
            check_equal(res.stdout, "reclaimed 0 dead slots, returned 0 B\n", "reap text report")
    check(e.poll() is None, "reap must leave the live process alone")

    # What the line says to do: stop the process, reap again.
    h.kill(e)
    res, doc = reap_json(h, region)
    check_equal((res.returncode, res.stderr), (0, ""), "reap after the process stopped")
    check_equal((doc["reclaimed_slots"], doc["returned_bytes"]), (1, 0), "E's slot reclaimed, nothing returned")
    check_equal((doc["repaired"]["negative_ledger_bytes_written_off"], doc["repaired"]["device_totals"],
                 doc["repaired"]["bytes_removed"]), (6 * MiB, 1, 4 * MiB), "E's damage repaired")
    check_equal(doc["unrepaired"], {"live_negative_ledgers": 0, "unsettled_device_totals": 0}, "nothing left")
    check_consistent(h, region, [a.pid], "after the process stopped")


TESTS = {name[len("test_"):]: fn for name, fn in globals().items() if name.startswith("test_")}


def with_damage(h, args):
    h.damage_path = args.damage


if __name__ == "__main__":
    sys.exit(case_main(TESTS, "repair", options=("--damage",), setup=with_damage))
