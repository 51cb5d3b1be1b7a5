#!/usr/bin/env python3
"""Small probes the cluster drills (scripts/e2e-cluster-faults.sh) run from the client namespace; standard library only.

  e2e_cluster_probe.py leader ADDR...            the PostgreSQL primary's member name, from the first Patroni that answers
  e2e_cluster_probe.py connects HOST PORT STOPFILE
        tries a TCP connect every 50 ms until STOPFILE exists; prints the longest time without a successful connect
        and the number of failed attempts
"""
import json
import os
import socket
import sys
import time
import urllib.request


def leader(addresses):
    for a in addresses:
        try:
            with urllib.request.urlopen(f"http://{a}:8008/cluster", timeout=2) as r:
                for m in json.load(r).get("members", []):
                    if m.get("role") == "leader" and m.get("state") == "running":
                        return m["name"]
        except OSError:
            continue
    return ""


def connects(host, port, stop):
    last_ok = time.monotonic()
    longest = 0.0
    failed = 0
    while not os.path.exists(stop):
        started = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=0.5):
                now = time.monotonic()
                longest = max(longest, now - last_ok)
                last_ok = now
        except OSError:
            failed += 1
        time.sleep(max(0.0, 0.05 - (time.monotonic() - started)))
    longest = max(longest, time.monotonic() - last_ok)
    print(f"longest-connect-gap={longest:.2f}s failed-connects={failed}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "leader":
        print(leader(sys.argv[2:]))
    elif len(sys.argv) == 5 and sys.argv[1] == "connects":
        connects(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(__doc__)
