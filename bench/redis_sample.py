#!/usr/bin/env python3
"""Where Redis's time went during a sample of bench/stack.sh: reads a `SLOWLOG GET` taken with
`slowlog-log-slower-than 0` (every command logged, `redis-cli --json`) and prints the commands
that took the most time, Lua scripts by file name (their SHA1 matched against the project's
scripts). Commands a script runs are logged too, so their time also counts in their script's.

Usage: redis_sample.py SLOWLOG_JSON   (prints one line)
"""
import collections
import glob
import hashlib
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def script_names():
    names = {}
    for path in glob.glob(os.path.join(ROOT, "*", "src", "scripts", "*.lua")):
        with open(path, "rb") as f:
            names[hashlib.sha1(f.read()).hexdigest()] = os.path.basename(path)
    return names


def main():
    with open(sys.argv[1]) as f:
        entries = json.load(f)
    if not entries:
        print("no commands logged")
        return
    names = script_names()
    busy = collections.defaultdict(lambda: [0, 0, 0])  # calls, total µs, max µs
    for entry in entries:
        micros, args = entry[2], entry[3]
        name = args[0].lower()
        if name in ("evalsha", "eval") and len(args) > 1:
            name = names.get(args[1], "script " + args[1][:8])
        row = busy[name]
        row[0] += 1
        row[1] += micros
        row[2] = max(row[2], micros)
    span = max(1, entries[0][1] - entries[-1][1])
    top = sorted(busy.items(), key=lambda kv: -kv[1][1])[:8]
    print(f"{len(entries)} commands in ~{span} s; " + "; ".join(
        f"{name} {total / 1000:.0f} ms ({calls} calls, avg {total / calls:.0f} µs, max {peak / 1000:.1f} ms)"
        for name, (calls, total, peak) in top))


if __name__ == "__main__":
    main()
