#!/usr/bin/env bash
# Pipeline benchmark, one command: ./bench/pipeline.sh
#
# Needs the Elasticsearch of `./setup.sh dev` (ELASTICSEARCH_URL); starts its own private
# redis-server (no persistence, so disk speed does not skew it), and, through the launcher
# (`conveyor-stack up`, free ports, each process with exactly its service's environment), the
# release consumer and 2 workers per round, and measures in one run:
#   1. POST /messages requests/s         producer --bench (single packets, CONCURRENCY in flight)
#   2. POST /messages/batch packets/s    producer --bench --batch BATCH_SIZE
#   3. whole pipeline stored messages/s  producer --bench --batch 100 until the workers stored all
#      PIPELINE_MESSAGES (their /metrics) and a _refresh + _count sees them all, against a plain
#      _bulk load of the same documents with the workers' batch size and parallelism
#      (producer/examples/bulk_baseline.rs), timed the same way (all bulk requests answered, then
#      _refresh + _count sees them all)
#   4. peak RSS (VmHWM) of the consumer and the workers after all of that
#   5. redis-benchmark XADD on the same redis-server, for ratios
# Knobs (env): REQUESTS CONCURRENCY BATCH_PACKETS BATCH_SIZE PIPELINE_MESSAGES WORKER_BATCH WORKER_CONC
# ROUNDS (phase 3 alternates pipeline and baseline ROUNDS times and keeps the best of each)
# CHART=<file.svg> receives a chart of the CPU per process and the rates (default: a full run with
# the script's own build refreshes bench/results/pipeline.svg, other runs write a new file of
# their own, named by mktemp, in $TMPDIR or /tmp);
# ONLY_PIPELINE=1 skips phases 1, 2 and 5 (API and redis-benchmark figures);
# BIN=<dir> runs prebuilt binaries from <dir> (with examples/bulk_baseline) instead of building,
# e.g. to compare two versions of the code on the same machine state (its conveyor-stack, or
# this checkout's when <dir> has none).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS="${REQUESTS:-100000}"
CONCURRENCY="${CONCURRENCY:-64}"
BATCH_PACKETS="${BATCH_PACKETS:-1000000}"
BATCH_SIZE="${BATCH_SIZE:-500}"
PIPELINE_MESSAGES="${PIPELINE_MESSAGES:-200000}"
WORKERS=2
WORKER_BATCH="${WORKER_BATCH:-500}"
WORKER_CONC="${WORKER_CONC:-4}"
ROUNDS="${ROUNDS:-2}"
if ! [ "$ROUNDS" -ge 1 ] 2>/dev/null; then echo "ROUNDS must be a whole number >= 1" >&2; exit 1; fi

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

BIN_GIVEN="${BIN:-}"
. bench/lib.sh
bench_binaries --example bulk_baseline
ONLY_PIPELINE="${ONLY_PIPELINE:-0}"


RUN="bench-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PREFIX="$RUN-"
DIR="$(mktemp -d)"
PIDS=()
STACK_DIRS=()
cleanup() {
  for d in "${STACK_DIRS[@]}"; do "$STACK" stop --dir "$d" >/dev/null 2>&1 || true; done
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  curl -s -XDELETE "$ES/${PREFIX}*" >/dev/null || true
  curl -s -XDELETE "$ES/_index_template/${PREFIX}*" >/dev/null || true # the daily indices' template
  rm -rf "$DIR"
}
trap cleanup EXIT

REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" \
  --logfile "$DIR/redis.log" &
REDIS_PID=$!; PIDS+=($REDIS_PID)
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
# The launcher passes these tunables on to the services it starts (the rest at their defaults).
export RUST_LOG=warn BACKLOG_LIMIT=100000000 WORKER_BATCH_SIZE="$WORKER_BATCH" WORKER_CONCURRENCY="$WORKER_CONC"
stack_up() { # dir index_prefix up-args...: start processes through the launcher; fail loudly
  local dir=$1 prefix=$2; shift 2
  STACK_DIRS+=("$dir")
  "$STACK" up --dir "$dir" --bin-dir "$BIN" --free-ports --redis-url "redis://127.0.0.1:$REDIS_PORT" \
    --elasticsearch-url "$ES" --namespace "$RUN" --index-prefix "$prefix" "$@" >"$dir.log" \
    || { cat "$dir.log" >&2; exit 1; }
}

count_docs() {
  curl -s -XPOST "$ES/$1/_refresh" >/dev/null
  curl -s "$ES/$1/_count" | grep -oE '"count":[0-9]+' | cut -d: -f2 || echo 0
}
wait_count() { # index want -> returns when the index holds `want` documents (gives up after 10 min)
  local deadline=$((SECONDS + 600))
  while [ "$(count_docs "$1")" != "$2" ]; do
    if [ "$SECONDS" -gt "$deadline" ]; then echo "$1 never reached $2 documents" >&2; exit 1; fi
    sleep 0.2
  done
}
# Messages the workers have stored (Elasticsearch acknowledged), from their /metrics: polling
# this costs Elasticsearch nothing, unlike a `_refresh` every poll, which would force a tiny
# segment (and merges) every 0.2 s on the pipeline's index but not on the baseline's.
stored_by_workers() {
  local total=0 n port
  for port in "$@"; do
    n="$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^conveyor_messages_stored_total/ {printf "%d", $2}' | head -1)"
    total=$((total + ${n:-0}))
  done
  echo "$total"
}
wait_stored() { # want port... -> returns when the workers have stored `want` messages (10 min max)
  local want="$1" deadline=$((SECONDS + 600)); shift
  while [ "$(stored_by_workers "$@")" -lt "$want" ]; do
    if [ "$SECONDS" -gt "$deadline" ]; then echo "workers never stored $want messages" >&2; exit 1; fi
    sleep 0.1
  done
}
field() { grep -oE "$1=[0-9.]+" | head -1 | cut -d= -f2; }
ES_PID="$(es_pid "$ES")"
if [ "$ES_PID" = 0 ]; then
  echo "note: no process listening on $ES is visible here, so Elasticsearch's CPU is not measured (no ceilings, no chart)" >&2
fi
hwm_mb() { calc "%.1f" "$(grep VmHWM "/proc/$1/status" | awk '{print $2}')/1024"; }

stack_up "$DIR/api" "$PREFIX" --workers 0 --without webhook,dashboard,producer
CONSUMER_PID="$(cat "$DIR/api/pids/consumer.pid")"
eval "$("$STACK" urls --dir "$DIR/api")"

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB; $(redis-server --version | cut -d' ' -f1-3)"
echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg)"
API_RPS=0; API_P99=-; BATCH_PPS=0; RB1=1; RB100=1
if [ "$ONLY_PIPELINE" != 1 ]; then
echo "== 1. POST /messages: $REQUESTS requests, concurrency $CONCURRENCY (no workers running)"
OUT="$("$BIN/producer" --bench --consumer-url "$CONSUMER_URL" --count "$REQUESTS" \
  --concurrency "$CONCURRENCY" --resources off --producer single)"
echo "$OUT"
API_RPS="$(echo "$OUT" | grep ^BENCH | field req_per_s)"
API_P99="$(echo "$OUT" | grep ^BENCH | field p99_ms)"
redis-cli -p "$REDIS_PORT" flushall >/dev/null

echo "== 2. POST /messages/batch: $BATCH_PACKETS packets, $BATCH_SIZE per request, concurrency 8"
OUT="$("$BIN/producer" --bench --consumer-url "$CONSUMER_URL" --count "$BATCH_PACKETS" \
  --batch "$BATCH_SIZE" --concurrency 8 --resources off --producer batch)"
echo "$OUT"
BATCH_PPS="$(echo "$OUT" | grep ^BENCH | field packets_per_s)"
redis-cli -p "$REDIS_PORT" flushall >/dev/null
fi

# Phase 3 runs ROUNDS times, pipeline and baseline alternating, and keeps the best of each: the
# machine is shared, and alternating exposes both to the same background load.
PIPE_RATE=0; BASE_RATE=0; RSS_WORKERS=""
# CPU seconds summed over the rounds: what bounds the ratio when both loads saturate the cores.
SUM_PIPE_ALL=0; SUM_PIPE_ES=0; SUM_PIPE_REDIS=0; SUM_BASE_ES=0
SUM_PIPE_P=0; SUM_PIPE_C=0; SUM_PIPE_W=0
for round in $(seq 1 "$ROUNDS"); do
  echo "== 3a. whole pipeline, round $round: $PIPELINE_MESSAGES messages, $WORKERS workers (batch $WORKER_BATCH, concurrency $WORKER_CONC)"
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  # the workers of this round (their webhook URL points at a free port: resources are off)
  WEBHOOK_SECRET=bench-unused-secret-of-at-least-32-bytes stack_up "$DIR/round$round" "${PREFIX}r$round-" \
    --workers "$WORKERS" --without consumer,webhook,dashboard,producer
  WORKER_PIDS=(); for i in $(seq 1 "$WORKERS"); do WORKER_PIDS+=("$(cat "$DIR/round$round/pids/worker-$i.pid")"); done
  unset WORKER_PORTS; eval "$("$STACK" urls --dir "$DIR/round$round")"
  read -r -a WORKER_PORTS <<<"$WORKER_PORTS"
  C0="$(cpu_s "$CONSUMER_PID")"; R0="$(cpu_s "$REDIS_PID")"; E0="$(cpu_s "$ES_PID")"
  T0="$(now)"
  /usr/bin/time -f "PRODUCER_CPU %U %S" -o "$DIR/producer.time" \
    "$BIN/producer" --bench --consumer-url "$CONSUMER_URL" --count "$PIPELINE_MESSAGES" --batch 100 \
    --concurrency 4 --resources off --producer pipe >"$DIR/pipe_producer.log" 2>&1 &
  PRODUCER_PID=$!
  # Timed like the baseline: until every bulk request was answered, then until `_refresh` +
  # `_count` sees every document.
  wait_stored "$PIPELINE_MESSAGES" "${WORKER_PORTS[@]}"
  wait_count "${PREFIX}r$round-messages" "$PIPELINE_MESSAGES"
  T1="$(now)"
  wait "$PRODUCER_PID" || true
  grep ^BENCH "$DIR/pipe_producer.log" || true
  rate="$(calc "%.0f" "$PIPELINE_MESSAGES/($T1-$T0)")"
  echo "stored $PIPELINE_MESSAGES messages in $(calc "%.2f" "$T1-$T0") s -> $rate messages/s"
  if [ "$rate" -gt "$PIPE_RATE" ]; then PIPE_RATE="$rate"; fi
  E1="$(cpu_s "$ES_PID")"
  W=0; for pid in "${WORKER_PIDS[@]}"; do W="$(calc "%.2f" "$W+$(cpu_s "$pid")")"; done
  P="$(awk '/PRODUCER_CPU/ {printf "%.2f", $2 + $3}' "$DIR/producer.time")"
  CC="$(calc "%.2f" "$(cpu_s "$CONSUMER_PID")-$C0")"; RC="$(calc "%.2f" "$(cpu_s "$REDIS_PID")-$R0")"
  EC="$(calc "%.2f" "$E1-$E0")"
  echo "CPU seconds: producer $P, consumer $CC, redis $RC, workers $W, elasticsearch $EC"
  SUM_PIPE_ALL="$(calc "%.2f" "$SUM_PIPE_ALL+$P+$CC+$RC+$W+$EC")"
  SUM_PIPE_ES="$(calc "%.2f" "$SUM_PIPE_ES+$EC")"; SUM_PIPE_REDIS="$(calc "%.2f" "$SUM_PIPE_REDIS+$RC")"
  SUM_PIPE_P="$(calc "%.2f" "$SUM_PIPE_P+$P")"; SUM_PIPE_C="$(calc "%.2f" "$SUM_PIPE_C+$CC")"; SUM_PIPE_W="$(calc "%.2f" "$SUM_PIPE_W+$W")"
  BATCHES=0
  for port in "${WORKER_PORTS[@]}"; do
    n="$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^conveyor_worker_batch_seconds_count/ {print $2}' | head -1)"
    BATCHES=$((BATCHES + ${n:-0}))
  done
  if [ "$BATCHES" -gt 0 ]; then
    echo "worker batches (= _bulk requests): $BATCHES, $(calc "%.0f" "$PIPELINE_MESSAGES/$BATCHES") messages per batch on average"
  fi
  RSS_WORKERS=""
  for pid in "${WORKER_PIDS[@]}"; do RSS_WORKERS="$RSS_WORKERS $(hwm_mb "$pid")"; done
  "$STACK" stop --dir "$DIR/round$round" >/dev/null

  echo "== 3b. plain _bulk baseline, round $round: same $PIPELINE_MESSAGES documents, batch $WORKER_BATCH, $((WORKERS * WORKER_CONC)) in parallel"
  E0="$(cpu_s "$ES_PID")"
  OUT="$(/usr/bin/time -f "BASELINE_CPU %U %S" "$BIN/examples/bulk_baseline" "$ES" "${PREFIX}r$round-baseline" \
    "$PIPELINE_MESSAGES" "$WORKER_BATCH" "$((WORKERS * WORKER_CONC))" 2>&1)"
  echo "$OUT" | grep -v BASELINE_CPU
  EC="$(calc "%.2f" "$(cpu_s "$ES_PID")-$E0")"
  echo "CPU seconds: baseline tool $(echo "$OUT" | awk '/BASELINE_CPU/ {printf "%.2f", $2 + $3}') (renders the documents before its clock starts), elasticsearch $EC"
  SUM_BASE_ES="$(calc "%.2f" "$SUM_BASE_ES+$EC")"
  rate="$(echo "$OUT" | field docs_per_s)"
  if [ "$rate" -gt "$BASE_RATE" ]; then BASE_RATE="$rate"; fi
done
RSS_CONSUMER="$(hwm_mb "$CONSUMER_PID")"
"$STACK" stop --dir "$DIR/api" >/dev/null

if [ "$ONLY_PIPELINE" != 1 ]; then
echo "== 5. redis-benchmark on the same redis-server: XADD of a 300-byte payload"
PAYLOAD="$(head -c 300 /dev/zero | tr '\0' x)"
RB1="$(redis-benchmark -p "$REDIS_PORT" -n 200000 -c "$CONCURRENCY" -q XADD rb '*' payload "$PAYLOAD" \
  | grep -oE '[0-9.]+ requests per second' | cut -d' ' -f1)"
redis-cli -p "$REDIS_PORT" del rb >/dev/null
RB100="$(redis-benchmark -p "$REDIS_PORT" -n 1000000 -c 8 -P 100 -q XADD rb '*' payload "$PAYLOAD" \
  | grep -oE '[0-9.]+ requests per second' | cut -d' ' -f1)"
echo "XADD $RB1/s (-c $CONCURRENCY), $RB100/s pipelined (-c 8 -P 100)"
fi

echo
echo "== results ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores shared by every process)"
printf '%-44s %14s %12s %10s\n' measure value target ratio
printf '%-44s %14s %12s %10s\n' "POST /messages requests/s (p99 ${API_P99} ms)" "$API_RPS" ">= 30000" \
  "$(calc "%.2f" "$API_RPS/$RB1") xadd"
printf '%-44s %14s %12s %10s\n' "POST /messages/batch packets/s (x$BATCH_SIZE)" "$BATCH_PPS" ">= 200000" \
  "$(calc "%.2f" "$BATCH_PPS/$RB100") xadd-P"
printf '%-44s %14s %12s %10s\n' "pipeline stored messages/s (best of $ROUNDS)" "$PIPE_RATE" "" ""
printf '%-44s %14s %12s %10s\n' "plain _bulk documents/s (best of $ROUNDS)" "$BASE_RATE" "" ""
RATIO=-; if [ "$BASE_RATE" -gt 0 ]; then RATIO="$(calc "%.2f" "$PIPE_RATE/$BASE_RATE")"; fi
printf '%-44s %14s %12s %10s\n' "pipeline / plain _bulk" "$RATIO" ">= 0.8" ""
# What bounds the ratio on these cores: the baseline's wall time against the shortest time the
# pipeline's CPU could take with every core busy. The first ceiling uses every process's CPU; the
# second pretends producer, consumer and workers cost nothing (Elasticsearch and the Redis
# server's own stream work remain); the budget is what those three could spend per message, all
# together, for a ratio of 0.8, next to what they spend.
CORES="$(nproc)"
if [ "$ES_PID" != 0 ] && [ "$BASE_RATE" -gt 0 ] && [ "$(calc "%d" "($SUM_PIPE_ES+$SUM_PIPE_REDIS)*100")" -gt 0 ]; then
  BASE_WALL="$(calc "%.4f" "$PIPELINE_MESSAGES/$BASE_RATE")"
  printf '%-44s %14s %12s %10s\n' "ceiling from CPU, every process" \
    "$(calc "%.2f" "$BASE_WALL*$CORES*$ROUNDS/$SUM_PIPE_ALL")" "" ""
  printf '%-44s %14s %12s %10s\n' "ceiling if producer+consumer+workers cost 0" \
    "$(calc "%.2f" "$BASE_WALL*$CORES*$ROUNDS/($SUM_PIPE_ES+$SUM_PIPE_REDIS)")" "" ""
  printf '%-44s %14s %12s %10s\n' "CPU us/msg left to them for 0.8 / spent" \
    "$(calc "%.1f" "(($BASE_WALL/0.8)*$CORES-($SUM_PIPE_ES+$SUM_PIPE_REDIS)/$ROUNDS)*1000000/$PIPELINE_MESSAGES") / $(calc "%.1f" "($SUM_PIPE_P+$SUM_PIPE_C+$SUM_PIPE_W)/$ROUNDS*1000000/$PIPELINE_MESSAGES")" "" ""
fi
printf '%-44s %14s %12s %10s\n' "consumer peak RSS MB" "$RSS_CONSUMER" "< 50" ""
printf '%-44s %14s %12s %10s\n' "worker peak RSS MB (each)" "$(echo $RSS_WORKERS)" "< 50" ""
printf '%-44s %14s %12s %10s\n' "redis-benchmark XADD/s (-c $CONCURRENCY)" "$RB1" "" ""
printf '%-44s %14s %12s %10s\n' "redis-benchmark XADD/s (-P 100)" "$RB100" "" ""

# The chart: CPU per process of an average round, and the two rates (bench/chart.py). A full
# default run refreshes the committed bench/results/pipeline.svg; partial runs write a fresh file
# (mktemp: no fixed name another user could have planted).
if [ "$ONLY_PIPELINE" = 1 ] || [ -n "${BIN_GIVEN:-}" ]; then
  CHART="${CHART:-$(mktemp -t "$RUN-pipeline.XXXXXX.svg")}"
else
  CHART="${CHART:-bench/results/pipeline.svg}"
fi
if [ "$ES_PID" != 0 ] && [ "$BASE_RATE" -gt 0 ]; then
  mkdir -p "$(dirname "$CHART")"
  avg() { calc "%.2f" "$1/$ROUNDS"; }
  if python3 bench/chart.py "$CHART" \
    "Pipeline vs plain _bulk, $PIPELINE_MESSAGES messages, $(date -u +%Y-%m-%d), $(nproc) shared cores" \
    "$PIPE_RATE" "$BASE_RATE" \
    elasticsearch="$(avg "$SUM_PIPE_ES")" workers="$(avg "$SUM_PIPE_W")" redis="$(avg "$SUM_PIPE_REDIS")" \
    consumer="$(avg "$SUM_PIPE_C")" producer="$(avg "$SUM_PIPE_P")" -- elasticsearch="$(avg "$SUM_BASE_ES")"; then
    echo "chart: $CHART"
  else
    echo "chart skipped (bench/chart.py failed)" >&2
  fi
fi
