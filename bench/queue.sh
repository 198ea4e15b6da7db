#!/usr/bin/env bash
# Queue throughput benchmark, one command: ./bench/queue.sh   (JOBS=200000 by default)
# Builds the `queue_bench` example in release mode, starts a private redis-server on a free port
# (no persistence, so disk speed does not skew it), runs redis-benchmark's pipelined XADD as the
# raw server figure, then the example: bare stream limits, bulk enqueue, drain by 1 and 2 worker
# processes. Prints jobs/s and the ratio to the bare limits.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-200000}"
BATCH="${BATCH:-500}"

echo "== building queue_bench (release)"
cargo build --release -p queue --example queue_bench
BIN="${CARGO_TARGET_DIR:-target}/release/examples/queue_bench"

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
DIR="$(mktemp -d)"
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" \
  --logfile "$DIR/redis.log" &
REDIS_PID=$!
cleanup() { kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
  sleep 0.05
done

echo "== machine: $(nproc) cores; $(redis-server --version | cut -d' ' -f1-3)"
echo "== redis-benchmark: pipelined XADD (-P 100, 50 clients)"
redis-benchmark -p "$PORT" -n 200000 -P 100 -q XADD bench '*' f v
redis-cli -p "$PORT" del bench >/dev/null

echo "== queue_bench: $JOBS jobs, worker batch $BATCH"
"$BIN" bench --url "redis://127.0.0.1:$PORT" --jobs "$JOBS" --batch "$BATCH"
