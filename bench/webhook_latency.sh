#!/usr/bin/env bash
# Webhook latency benchmark, one command: ./bench/webhook_latency.sh
# Latency = delivered_at (the webhook service received the delivery) - last_received_at (the
# consumer received the resource's last packet), read back from the `resources` documents.
# Starts a private redis-server, then the release consumer, 2 workers and the webhook service
# through the launcher (`conveyor-stack up`: free ports, each process with exactly its service's
# environment) against the Elasticsearch at ELASTICSEARCH_URL (unique index prefix, deleted
# afterwards), then measures
#   1. the default producer rate (10 packets/s in resources of 1-5) for PACED_SECS (default 60),
#   2. `producer --bench` load (BENCH_COUNT packets, default 20000),
# and prints p50/p90/p99/max of latency_ms for the resources completed in each phase.
# Worker settings come from the environment (e.g. WORKER_BATCH_LINGER_MS=2 to compare lingers);
# BIN=<dir> runs prebuilt binaries from <dir> instead of building (its conveyor-stack, or this
# checkout's when <dir> has none); PHASE2=0 skips phase 2.
# The load average is printed before and after: on a busy machine the tails measure CPU
# contention, not the pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
ES="${ELASTICSEARCH_URL:-http://127.0.0.1:19200}"
PACED_SECS="${PACED_SECS:-60}"
BENCH_COUNT="${BENCH_COUNT:-20000}"
PREFIX="bench-wh-$(date +%s)-"
NS="bench-wh-$$"

. bench/lib.sh
bench_binaries
PHASE2="${PHASE2:-1}"

REDIS_PORT="$(free_port)"
DIR="$(mktemp -d)"
PIDS=()
cleanup() {
  "$STACK" stop --dir "$DIR/stack" >/dev/null 2>&1 || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  curl -s -XDELETE "$ES/${PREFIX}*" >/dev/null || true
  curl -s -XDELETE "$ES/_index_template/${PREFIX}*" >/dev/null || true # the daily indices' template
  rm -rf "$DIR"
}
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" \
  --logfile "$DIR/redis.log" &
PIDS+=($!)
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

# Worker settings (WORKER_BATCH_LINGER_MS, ...) reach the workers from this environment; `up`
# returns once every process answers /healthz with its own pid and the consumer and workers
# answer /readyz (indices ensured, groups joined).
WEBHOOK_SECRET="bench-webhook-secret-of-at-least-32-bytes" RUST_LOG=warn "$STACK" up --dir "$DIR/stack" --bin-dir "$BIN" \
  --free-ports --workers 2 --without dashboard,producer \
  --redis-url "redis://127.0.0.1:$REDIS_PORT" --elasticsearch-url "$ES" \
  --namespace "$NS" --index-prefix "$PREFIX" >"$DIR/stack.log" \
  || { cat "$DIR/stack.log"; exit 1; }
eval "$("$STACK" urls --dir "$DIR/stack")"
export CONSUMER_URL RUST_LOG=warn

now_ms() { date +%s%3N; }
report() { # $1 = label, $2 = from ms, $3 = to ms (by last_received_at)
  curl -s -XPOST "$ES/${PREFIX}resources/_refresh" >/dev/null
  curl -s -XPOST "$ES/${PREFIX}resources/_search" -H 'content-type: application/json' -d "{
    \"size\": 10000, \"_source\": [\"latency_ms\", \"last_received_at\", \"completed_at\", \"delivered_at\"],
    \"query\": {\"range\": {\"last_received_at\": {\"gte\": $2, \"lt\": $3, \"format\": \"epoch_millis\"}}}}" |
  python3 -c "
import json, sys
from datetime import datetime
def t(s): return datetime.fromisoformat(s.replace('Z', '+00:00')).timestamp() * 1000
docs = [h['_source'] for h in json.load(sys.stdin)['hits']['hits']]
def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(q / 100 * len(xs)))] if xs else float('nan')
def line(name, xs):
    return '%s p50=%.2f p90=%.2f p99=%.2f max=%.2f ms' % (name, pct(xs, 50), pct(xs, 90), pct(xs, 99), max(xs or [float('nan')]))
total = [d['latency_ms'] for d in docs]
collate = [t(d['completed_at']) - t(d['last_received_at']) for d in docs]
deliver = [t(d['delivered_at']) - t(d['completed_at']) for d in docs]
print('$1: %d resources' % len(docs))
print('  ' + line('latency (last packet received -> webhook received):', total))
print('  ' + line('  of which packet -> resource complete (queue, ES bulk, collate):', collate))
print('  ' + line('  of which complete -> webhook received (delivery queue, POST):', deliver))"
}

echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg); worker batch linger ${WORKER_BATCH_LINGER_MS:-default} ms"
echo "== phase 1: default producer rate for ${PACED_SECS}s"
T0="$(now_ms)"
"$BIN/producer" --producer paced --duration-secs "$PACED_SECS" >"$DIR/paced.log" 2>&1
sleep 3
T1="$(now_ms)"
report "default rate" "$T0" "$T1"
echo "== load average after phase 1: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$PHASE2" = 1 ] || exit 0

echo "== phase 2: producer --bench --count $BENCH_COUNT"
"$BIN/producer" --producer bench --bench --count "$BENCH_COUNT" 2>&1 | tail -n 6
sleep 5
T2="$(now_ms)"
report "bench load" "$T1" "$T2"
