#!/usr/bin/env python3
"""Per-node Redis counters for bench/cluster.sh, read with redis-cli (no client library).

  node_stats.py snap PORT...            JSON on stdout: each node's role, CPU seconds (user + sys)
                                        and calls per command (INFO commandstats)
  node_stats.py report JOBS BEFORE AFTER  the queue's share of commands per master (cluster
                                        bookkeeping left out) and CPU per job of every node

The share is what the issue's balance check reads: with 12 partitions over 3 masters each master
should serve 33 % ± 8 % of the queue's commands.
"""
import json
import subprocess
import sys

# Commands of the cluster's own bookkeeping and of this measurement, not of the queue.
NOT_QUEUE = {"cluster", "info", "config", "ping", "client", "hello", "command", "select",
             "auth", "readonly", "readwrite", "asking", "script", "slowlog", "replconf", "psync",
             "sync", "wait", "time"}


def info(port, section):
    out = subprocess.run(["redis-cli", "-p", str(port), "info", section], capture_output=True,
                         text=True, check=True).stdout
    return [line.strip() for line in out.splitlines() if line and not line.startswith("#")]


def snap(ports):
    nodes = {}
    for port in ports:
        role = next(l.split(":", 1)[1] for l in info(port, "replication") if l.startswith("role:"))
        cpu = {l.split(":")[0]: float(l.split(":")[1]) for l in info(port, "cpu") if ":" in l}
        calls = {}
        for line in info(port, "commandstats"):
            name, rest = line.split(":", 1)
            fields = dict(kv.split("=") for kv in rest.split(","))
            calls[name.removeprefix("cmdstat_")] = int(fields["calls"])
        nodes[str(port)] = {"role": role, "cpu": cpu.get("used_cpu_user", 0) +
                            cpu.get("used_cpu_sys", 0), "calls": calls}
    json.dump(nodes, sys.stdout)


def report(jobs, before_file, after_file):
    before = json.load(open(before_file))
    after = json.load(open(after_file))
    rows, total = [], 0
    for port, a in after.items():
        b = before.get(port, {"cpu": 0, "calls": {}})
        queue_calls = sum(n - b["calls"].get(c, 0) for c, n in a["calls"].items()
                          if c.split("|")[0] not in NOT_QUEUE)
        cpu = a["cpu"] - b["cpu"]
        rows.append((port, a["role"], queue_calls, cpu))
        if a["role"] == "master":
            total += queue_calls
    shares = []
    print(f"  {'node':>6} {'role':>7} {'queue commands':>15} {'share':>7} {'CPU s':>7} {'CPU µs/job':>11}")
    for port, role, calls, cpu in sorted(rows, key=lambda r: (r[1] != "master", r[0])):
        share = 100.0 * calls / total if role == "master" and total else None
        if share is not None:
            shares.append(share)
        share_text = f"{share:6.1f}%" if share is not None else "      -"
        print(f"  {port:>6} {role:>7} {calls:>15} {share_text} {cpu:7.2f} {1e6 * cpu / jobs:11.1f}")
    masters_cpu = sum(r[3] for r in rows if r[1] == "master")
    all_cpu = sum(r[3] for r in rows)
    print(f"  CPU per job: masters together {1e6 * masters_cpu / jobs:.1f} µs, "
          f"all nodes (with replication) {1e6 * all_cpu / jobs:.1f} µs")
    if len(shares) > 1:
        ok = all(abs(s - 100.0 / len(shares)) <= 8.0 for s in shares)
        print(f"RESULT balance: {' / '.join(f'{s:.1f}' for s in shares)} % of the queue's commands "
              f"per master (target {100.0 / len(shares):.0f} % ± 8 %): {'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "snap":
        snap(sys.argv[2:])
    else:
        sys.exit(report(int(sys.argv[2]), sys.argv[3], sys.argv[4]))
