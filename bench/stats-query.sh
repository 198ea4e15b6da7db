#!/usr/bin/env bash
# Stats-query benchmark, one command: ./bench/stats-query.sh
#
# Does the per-second stats query cost the same at 10k and at 5M stored messages? Loads synthetic
# messages in bulk through the real write path (daily indices behind the alias, sent_at spread
# over DAYS days so several day indices exist) into a scratch index prefix of the Elasticsearch
# at ELASTICSEARCH_URL, and at each size prints the latency (median and p99 of RUNS runs, 100 ms
# apart) of the two queries run once a second — the consumer's /stats (Store::stats) and the
# dashboard's poll (StatsReader::read), the real query code — while 10 messages a second are
# written as the producer does (a live 10 s window; Elasticsearch's request cache cannot answer
# from an unchanged index, and the dashboard's window moves every run). Deletes its indices and
# template at the end (also after a failure). Code: dashboard/examples/stats_query.rs.
#
# Knobs (env): SIZES (default 10000,1000000,5000000; cumulative), RUNS (50), DAYS (3),
# BIN=<dir> runs a prebuilt examples/stats_query from <dir> instead of building it; KEEP=1 leaves
# the indices (and the prefix's template) for a closer look.
# Disk: about 100 bytes of index per message here (5M ≈ 0.5 GB); the script refuses to start with
# less than 2 GB free where it runs (the dev Elasticsearch's data lives on the same disk).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES="${SIZES:-10000,1000000,5000000}"
RUNS="${RUNS:-50}"
DAYS="${DAYS:-3}"

ES="${ELASTICSEARCH_URL:-}"
if [ -z "$ES" ]; then
  echo "ELASTICSEARCH_URL is not set. Start Elasticsearch with \`./setup.sh dev\` first and export"
  echo "the ELASTICSEARCH_URL it prints (e.g. ELASTICSEARCH_URL=http://127.0.0.1:19200)." >&2
  exit 1
fi
ES="${ES%/}"
if ! curl -sf "$ES/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null; then
  echo "Elasticsearch at $ES does not answer: run \`./setup.sh dev\` first." >&2
  exit 1
fi

echo "== disk"
df -h . | sed 's/^/   /'
FREE_KB=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "$FREE_KB" -lt 2000000 ]; then
  echo "less than 2 GB free here: lower SIZES (e.g. SIZES=10000,1000000)" >&2
  exit 1
fi

if [ -z "${BIN:-}" ]; then
  echo "== building the stats_query example (release)"
  cargo build --release -p dashboard --example stats_query
  BIN="${CARGO_TARGET_DIR:-target}/release"
fi

PREFIX="bench-stats-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')-"
echo "== $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg), Elasticsearch $ES," \
  "prefix $PREFIX, sizes $SIZES, $RUNS runs each, sent_at over $DAYS days"
"$BIN/examples/stats_query" "$ES" "$PREFIX" "$SIZES" "$RUNS" "$DAYS"
echo "== done, load average $(cut -d' ' -f1-3 /proc/loadavg)"
