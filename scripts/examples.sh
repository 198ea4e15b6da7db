# The three example systems on the queue (sourced by setup.sh): `./setup.sh example NAME` builds
# the example, starts its processes against a Redis on loopback, shows what it does, and stops
# them on Ctrl-C (or when the demo is over). NAME is one of:
#   scheduler      2 scheduler replicas + data service + API service; prints each decision and
#                  follow-up as it happens (period 5 s, follow-up 3 s) until Ctrl-C
#   request-reply  3 server replicas, then a client sends 10,000 requests; prints the summary
#   batch-sender   2 executors (--batch-size 7) + 2 front ends on :8100 and :8101 (ports from
#                  EXAMPLE_PORT, default 8100), one curl order, one failing order, then a
#                  5,000-order bench; prints throughput, latency and the batch sizes
# Redis: REDIS_URL when it answers, else the stack's (127.0.0.1:6379) when it answers, else a
# private redis-server on 127.0.0.1:6390 (stopped again at the end). Keys live under the
# namespace `example-<name>` (QUEUE_NAMESPACE overrides) and are deleted at the end.
# shellcheck shell=bash

EXAMPLE_PIDS=()

example_cleanup() { # stop what the example started, and only that; drop its keys
  local pid
  for pid in "${EXAMPLE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${EXAMPLE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  EXAMPLE_PIDS=()
  if [ -n "${EXAMPLE_NS:-}" ] && [ -n "${EXAMPLE_REDIS_PORT:-}" ]; then
    redis-cli -p "$EXAMPLE_REDIS_PORT" --scan --pattern "$EXAMPLE_NS:*" 2>/dev/null \
      | xargs -r -n 500 redis-cli -p "$EXAMPLE_REDIS_PORT" unlink >/dev/null 2>&1 || true
  fi
  if [ -n "${EXAMPLE_PRIVATE_REDIS:-}" ]; then
    redis-cli -p "$EXAMPLE_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  fi
}

example_bg() { # NAME CMD...: run CMD in the background, log to .run/examples/NAME.log
  local name=$1; shift
  mkdir -p "$ROOT/.run/examples"
  "$@" >"$ROOT/.run/examples/$name.log" 2>&1 &
  EXAMPLE_PIDS+=("$!")
}

example_redis() { # sets REDIS_URL and EXAMPLE_REDIS_PORT to a Redis that answers
  ensure_redis
  local url=${REDIS_URL:-redis://127.0.0.1:6379}
  local port=${url##*:}; port=${port%%/*}
  if redis_up "$port"; then
    EXAMPLE_REDIS_PORT=$port
  else
    EXAMPLE_REDIS_PORT=6390 EXAMPLE_PRIVATE_REDIS=1
    start_redis "$EXAMPLE_REDIS_PORT" "$ROOT/.run/examples/redis"
  fi
  export REDIS_URL="redis://127.0.0.1:$EXAMPLE_REDIS_PORT"
  log "Redis: $REDIS_URL, namespace $EXAMPLE_NS"
}

cmd_example() { # NAME
  local name=${1:-} bin
  case "$name" in
    scheduler|request-reply|batch-sender) ;;
    *) die "unknown example '$name' (use: ./setup.sh example scheduler|request-reply|batch-sender)" ;;
  esac
  export QUEUE_NAMESPACE=${QUEUE_NAMESPACE:-example-$name} RUST_LOG=${RUST_LOG:-info}
  EXAMPLE_NS=$QUEUE_NAMESPACE
  trap example_cleanup EXIT
  trap 'exit 130' INT TERM
  example_redis
  log "building (cargo build --release --workspace --bins, as ./setup.sh does)"
  cargo build --release -q --workspace --bins || die "build failed"
  bin="$ROOT/target/release/$name"
  case "$name" in
    scheduler)
      example_bg data-service "$bin" data-service
      example_bg api-service "$bin" api-service
      example_bg scheduler-1 "$bin" run --period 5s --follow-up 3s
      example_bg scheduler-2 "$bin" run --period 5s --follow-up 3s
      log "2 schedulers, data service, API service running; decisions and follow-ups below (Ctrl-C stops)"
      tail -F "$ROOT"/.run/examples/{scheduler-1,scheduler-2,api-service}.log 2>/dev/null \
        | grep --line-buffered -E '"event":"(decision|follow_up)"|no answer' ;;
    request-reply)
      for i in 1 2 3; do example_bg "server-$i" "$bin" server --name "replica-$i" --work-ms 1; done
      sleep 1
      log "3 server replicas running; a client sends 10,000 requests (1 in 21 divides by zero)"
      # RUST_LOG=warn: its log lines (stdout, like every binary) stay out of the JSON summary
      RUST_LOG=warn "$bin" client --requests 10000 --concurrency 32 | python3 -m json.tool ;;
    batch-sender)
      local p1=${EXAMPLE_PORT:-8100}; local p2=$((p1 + 1))
      example_bg executor-1 "$bin" executor --batch-size 7 --linger-ms 20 --name executor-1
      example_bg executor-2 "$bin" executor --batch-size 7 --linger-ms 20 --name executor-2
      example_bg front-1 "$bin" front --addr "127.0.0.1:$p1"
      example_bg front-2 "$bin" front --addr "127.0.0.1:$p2"
      for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$p2/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
      log "curl -d '{\"order_id\":\"demo-1\",\"item\":\"widget\",\"quantity\":2}' http://127.0.0.1:$p1/orders"
      curl -sS -H 'content-type: application/json' \
        -d '{"order_id":"demo-1","item":"widget","quantity":2}' "http://127.0.0.1:$p1/orders"; echo
      log "an order whose batch fails (item \"fail\") answers 502 with the batch's error"
      curl -sS -H 'content-type: application/json' \
        -d '{"order_id":"demo-2","item":"fail","quantity":1}' "http://127.0.0.1:$p1/orders"; echo
      log "5,000 orders, 64 at a time, over both front ends"
      "$bin" bench --url "http://127.0.0.1:$p1" --url "http://127.0.0.1:$p2" --orders 5000 --concurrency 64
      log "batch sizes the executors ran (size: batches)"
      cat "$ROOT"/.run/examples/executor-*.log | grep -o 'size=[0-9]*' | sort | uniq -c | sort -rn ;;
  esac
}
