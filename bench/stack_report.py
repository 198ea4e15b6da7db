"""bench/stack.sh's record of one run, read from Elasticsearch itself (not from the services):
the exact message count, POST-to-stored percentiles over every stored message (its stored_at
minus its sent_at, read page by page with search_after on `number`, unique for the bench's one producer: this
Elasticsearch has no scripting),
and the resources index's count and percentiles of latency_ms (last packet to delivery).

python3 bench/stack_report.py ES_URL MESSAGES_ALIAS RESOURCES_INDEX EXPECTED_MESSAGES
prints key=value lines; exits 1 when the message count is not EXPECTED_MESSAGES."""

import json
import sys
import urllib.request
from datetime import datetime


def call(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data or url.endswith("_refresh") else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


def millis(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000.0


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[i]


def main():
    es, messages, resources, expected = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3], int(sys.argv[4])
    call(f"{es}/{messages},{resources}/_refresh")
    count = call(f"{es}/{messages}/_count")["count"]
    lat = []
    after = None
    while True:
        body = {"size": 10000, "_source": False, "docvalue_fields": ["sent_at", "stored_at"],
                "sort": [{"number": "asc"}], "track_total_hits": False}
        if after is not None:
            body["search_after"] = after
        hits = call(f"{es}/{messages}/_search", body)["hits"]["hits"]
        if not hits:
            break
        for h in hits:
            f = h["fields"]
            lat.append(millis(f["stored_at"][0]) - millis(f["sent_at"][0]))
        after = hits[-1]["sort"]
    lat.sort()
    res = call(f"{es}/{resources}/_search", {
        "size": 0, "track_total_hits": True,
        "aggs": {"l": {"percentiles": {"field": "latency_ms", "percents": [50, 99]}}}})
    delivered = res["hits"]["total"]["value"]
    pct = res["aggregations"]["l"]["values"]
    print(f"messages={count}")
    print(f"post_to_stored_ms={percentile(lat, 0.5):.0f}/{percentile(lat, 0.99):.0f}")
    print(f"resources={delivered}")
    print(f"last_packet_to_delivery_ms={pct['50.0'] or 0:.0f}/{pct['99.0'] or 0:.0f}")
    if count != expected:
        print(f"error=the messages alias holds {count} documents, not {expected}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
