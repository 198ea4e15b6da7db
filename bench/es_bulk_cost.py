"""Elasticsearch alone, for bench/stack.sh: what indexing the stack's documents costs it, per
document, by `_bulk` size. The stack's message documents (same mapping as the messages' indices,
explicit `_id`s as the workers write them, refresh every second) go into a fresh index in `_bulk`
requests of each size, one after the other with nothing else running; the Elasticsearch process's
CPU time (user + system, /proc) is read before and after (2 s after the last answer, so the
refresh of what was written counts too). Prints one line per size and deletes its indices.

python3 bench/es_bulk_cost.py ES_URL ES_PID INDEX_PREFIX DOCS SIZE...
"""

import json
import os
import sys
import time
import urllib.request

from datetime import datetime, timezone


def call(method, url, body=None, content_type="application/json"):
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.load(resp)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mapping():
    date = {"type": "date", "format": "strict_date_optional_time||epoch_millis"}
    return {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
        "mappings": {"dynamic": "strict", "properties": {
            "producer": {"type": "keyword"}, "number": {"type": "long"}, "sent_at": date,
            "received_at": date, "stored_at": dict(date, index=False),
            "transit_ms": {"type": "double", "index": False},
            "word_lengths": {"type": "integer", "index": False}, "text": {"type": "text", "index": False},
            "resource_id": {"type": "keyword"}, "seq": {"type": "integer", "index": False},
            "total": {"type": "integer", "index": False}}},
    }


def main():
    es, pid, prefix, docs = sys.argv[1].rstrip("/"), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    for size in [int(s) for s in sys.argv[5:]]:
        index = f"{prefix}bulk{size}"
        call("PUT", f"{es}/{index}", json.dumps(mapping()).encode())
        bodies = []
        for start in range(0, docs, size):
            lines = []
            for n in range(start, min(docs, start + size)):
                lines.append(json.dumps({"index": {"_id": f"soak:{n}"}}))
                lines.append(json.dumps({
                    "producer": "soak", "number": n, "sent_at": now, "received_at": now, "stored_at": now,
                    "transit_ms": 3.9, "word_lengths": [2, 6, 3, 5, 7, 5, 7, 6],
                    "text": "ok stream ack lease backoff reply backoff résumé",
                    "resource_id": f"soak-r{n // 3}", "seq": n % 3, "total": 3}))
            bodies.append(("\n".join(lines) + "\n").encode())
        before, started = cpu_seconds(pid), time.monotonic()
        for body in bodies:
            answer = call("POST", f"{es}/{index}/_bulk?filter_path=errors", body, "application/x-ndjson")
            if answer.get("errors"):
                sys.exit(f"_bulk of {size} reported errors")
        elapsed = time.monotonic() - started
        time.sleep(2)
        spent = cpu_seconds(pid) - before
        print(f"   _bulk of {size:4d}: {docs} documents in {elapsed:5.1f} s, "
              f"Elasticsearch CPU {spent * 1e6 / docs:6.1f} µs per document")
        call("DELETE", f"{es}/{index}")


if __name__ == "__main__":
    main()
