#!/usr/bin/env bash
# The example systems' benchmark, one command: ./bench/examples.sh
# Starts a private redis-server on a free port, then
#   1. request/reply: 3 `request-reply server` replicas; `request-reply bench` sends RR_REQUESTS
#      (default 5000) requests one at a time (low load) and, interleaved in the same run, as many
#      bare Redis round trips (PING on a pooled connection); prints p50/p99/max of both (HDR
#      histograms);
#   2. batch sender: 2 executors (--batch-size 7, --linger-ms 2, no simulated work) and 2 front
#      ends; `batch-sender bench` sends BATCH_ORDERS (default 20000) orders, BATCH_CONCURRENCY
#      (default 64) at a time, over both; prints orders/s and p50/p99 of the HTTP round trip, and
#      the batch sizes the executors ran.
# BIN=<dir> runs prebuilt binaries from <dir> instead of building. The load average is printed
# before and after: on a busy machine the tails measure CPU contention.
set -euo pipefail
cd "$(dirname "$0")/.."
RR_REQUESTS="${RR_REQUESTS:-5000}"
BATCH_ORDERS="${BATCH_ORDERS:-20000}"
BATCH_CONCURRENCY="${BATCH_CONCURRENCY:-64}"
. bench/lib.sh
bench_binaries

REDIS_PORT="$(free_port)"
DIR="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" \
  --logfile "$DIR/redis.log" &
PIDS+=($!)
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT" QUEUE_NAMESPACE="bench-ex" RUST_LOG=warn
echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== request/reply: 3 replicas, one request at a time, $RR_REQUESTS requests"
for i in 1 2 3; do
  "$BIN/request-reply" server --name "replica-$i" >"$DIR/server-$i.log" 2>&1 &
  PIDS+=($!)
done
sleep 1
"$BIN/request-reply" bench --requests "$RR_REQUESTS"

echo "== batch sender: 2 executors (--batch-size 7), 2 front ends, $BATCH_ORDERS orders, $BATCH_CONCURRENCY at a time"
for i in 1 2; do
  RUST_LOG=info "$BIN/batch-sender" executor --batch-size 7 --linger-ms 2 --exec-ms 0 \
    --name "executor-$i" >"$DIR/executor-$i.log" 2>&1 &
  PIDS+=($!)
done
URLS=()
for i in 1 2; do
  port="$(free_port)"
  "$BIN/batch-sender" front --addr "127.0.0.1:$port" --max-in-flight 10000 --backlog-limit 100000 \
    >"$DIR/front-$i.log" 2>&1 &
  PIDS+=($!)
  URLS+=(--url "http://127.0.0.1:$port")
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
done
"$BIN/batch-sender" bench "${URLS[@]}" --orders "$BATCH_ORDERS" --concurrency "$BATCH_CONCURRENCY"
echo "== batch sizes the executors ran (batches, size)"
cat "$DIR"/executor-*.log | grep -o 'size=[0-9]*' | sort | uniq -c | sort -rn | head -8
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
