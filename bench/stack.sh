#!/usr/bin/env bash
# The stack as users run it, one command: ./bench/stack.sh
#
# For each worker count in WORKER_COUNTS (default "2 4"), in one run: a fresh redis-server with
# native mode's own configuration (scripts/provision.sh write_native_redis_conf: AOF with fsync
# always, maxmemory, a password) and priority (weigh_redis: nice REDIS_NICE), the whole native
# stack through the launcher as `./setup.sh` starts it (consumer with API keys, N workers with
# collation, the webhook service storing every delivered resource, the dashboard polling
# /stats), and the producer at full speed for COUNT packets (`producer --bench --batch BATCH
# --concurrency CONCURRENCY`, resources on). Timed until every message is stored (the workers'
# /metrics, then an exact `_count`) and every completed resource is delivered (the resources
# index). Printed per worker count:
#   stored messages/s and delivered resources/s, end to end (from the first POST);
#   p50/p99 from POST (the packet's sent_at) to stored (its stored_at), over every document;
#   p50/p99 from a resource's last packet to its delivery (the webhook's latency_ms);
#   dead letters (must be 0), job retries, duplicate deliveries;
#   CPU µs per message of Redis, Elasticsearch and every service (with the kernel's share), and
#   the Redis commands that took most of Redis's time (INFO commandstats), and with SAMPLE=1,
#   from a 2 s sample of every command (SLOWLOG at threshold 0, once a third is stored), the
#   busiest ones with Lua scripts by name (bench/redis_sample.py); peak RSS (VmHWM) of every service and its RSS 10 s
#   after the run;
#   the _bulk requests Elasticsearch received and documents per _bulk (from its node stats: other
#   users of the same Elasticsearch count too);
#   redis-benchmark XADD on the same redis-server (fsync always, pipelined like the API's batches),
#   for a ratio. Last, with the stacks stopped: Elasticsearch alone indexing the stack's message
#   documents in _bulk requests of 500, 100 and 20 (bench/es_bulk_cost.py), CPU µs per document —
#   what its share of the stack's CPU is made of.
# Needs the Elasticsearch of `./setup.sh dev` (ELASTICSEARCH_URL). Knobs (env): COUNT CONCURRENCY
# BATCH WORKER_COUNTS DEADLINE (seconds to wait for the stores, default 600) SAMPLE; KEEP=1 keeps the
# last worker count's stack (and its Redis) running and every log on exit (the Elasticsearch-alone
# figures then share the machine with that stack); BIN=<dir> runs prebuilt binaries instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. scripts/lib/common.sh
. scripts/provision.sh
. bench/lib.sh

COUNT="${COUNT:-200000}"
CONCURRENCY="${CONCURRENCY:-32}"
BATCH="${BATCH:-50}"
WORKER_COUNTS="${WORKER_COUNTS:-2 4}"
ES="${ELASTICSEARCH_URL:-}"
[ -n "$ES" ] || die "ELASTICSEARCH_URL is not set: start Elasticsearch with ./setup.sh dev and export what it prints"
ES="${ES%/}"
curl -sf "$ES/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null \
  || die "Elasticsearch at $ES does not answer: run ./setup.sh dev first"
bench_binaries

kb_mb() { calc "%.1f" "$(grep "$2" "/proc/$1/status" 2>/dev/null | awk '{print $2}')/1024"; }
scrape() { # PORT...: the /metrics of every given port, concatenated (one request each)
  local port; for port in "$@"; do curl -s "http://127.0.0.1:$port/metrics"; done
}
metric_sum() { # NAME LABEL-FILTER < scraped metrics: the sum of one metric over its lines
  awk -v m="$1" -v f="$2" 'index($0, m) == 1 && index($0, f) > 0 { s += $NF } END { printf "%d", s }'
}
ES_PID="$(es_pid "$ES")"
es_bulks() { # "<_bulk requests> <documents indexed>" of the node so far
  curl -s "$ES/_nodes/_local/stats/indices/indexing,bulk?filter_path=**.indexing.index_total,**.bulk.total_operations" \
    | python3 -c 'import json,sys; n=list(json.load(sys.stdin)["nodes"].values())[0]["indices"]; print(n["bulk"]["total_operations"], n["indexing"]["index_total"])'
}

RUN="stack-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
DIR="$(mktemp -d)"
STACK_DIRS=(); REDIS_PIDFILES=()
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $DIR: the last stack, its Redis, the logs and the indices" >&2; return; fi
  for d in "${STACK_DIRS[@]}"; do "$STACK" stop --dir "$d" >/dev/null 2>&1 || true; done
  for f in "${REDIS_PIDFILES[@]}"; do [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  curl -s -XDELETE "$ES/${RUN}-*" >/dev/null || true
  curl -s -XDELETE "$ES/_index_template/${RUN}-*" >/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB; $(redis-server --version | cut -d' ' -f1-3); load $(cut -d' ' -f1-3 /proc/loadavg)"
RESULTS=()
for N in $WORKER_COUNTS; do
  D="$DIR/w$N"; mkdir -p "$D/redis" "$D/secrets"; chmod 700 "$D/secrets"
  PREFIX="${RUN}-w$N-"
  (umask 077
   od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$D/secrets/redis_password"
   od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$D/secrets/api_key"
   printf '%s producer:*,read\n' "$(cat "$D/secrets/api_key")" >"$D/secrets/api_keys"
   printf 'whsec_%s' "$(head -c 32 /dev/urandom | base64 -w0)" >"$D/secrets/webhook_secret")
  REDIS_PORT="$(free_port)"
  write_native_redis_conf "$REDIS_PORT" "$D/redis" "$D/redis.conf" "$D/secrets/redis_password" \
    "$D/redis.pid" "$D/redis.log"
  redis-server "$D/redis.conf" >/dev/null
  REDIS_PIDFILES+=("$D/redis.pid")
  export REDISCLI_AUTH; REDISCLI_AUTH="$(cat "$D/secrets/redis_password")"
  for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
  REDIS_PID="$(cat "$D/redis.pid")"
  weigh_redis "$REDIS_PID" 2>&1 | sed 's/\x1b\[[0-9;]*m//g; s/^/   /' # as native mode does (scripts/provision.sh)

  echo "== $N workers: $COUNT packets, producer --bench --batch $BATCH --concurrency $CONCURRENCY (resources on)"
  STACK_DIRS+=("$D/stack")
  RUST_LOG="${RUST_LOG:-warn}" "$STACK" up --dir "$D/stack" --bin-dir "$BIN" --free-ports --workers "$N" \
    --redis-url "redis://127.0.0.1:$REDIS_PORT" --redis-password-file "$D/secrets/redis_password" \
    --elasticsearch-url "$ES" --namespace conveyor --index-prefix "$PREFIX" \
    --webhook-secret-file "$D/secrets/webhook_secret" --api-keys-file "$D/secrets/api_keys" \
    --api-key-file "$D/secrets/api_key" --without producer >"$D/up.log" || { cat "$D/up.log" >&2; exit 1; }
  unset CONSUMER_URL WEBHOOK_BASE_URL DASHBOARD_URL WORKER_PORTS
  eval "$("$STACK" urls --dir "$D/stack")"
  read -r -a WPORTS <<<"$WORKER_PORTS"
  WEBHOOK_PORT="$(echo "$WEBHOOK_BASE_URL" | sed -E 's#.*:([0-9]+).*#\1#')"
  declare -A PID=()
  for f in "$D"/stack/pids/*.pid; do PID[$(basename "$f" .pid)]="$(cat "$f")"; done
  PID[redis]=$REDIS_PID; PID[elasticsearch]=$ES_PID
  declare -A CPU0=() SYS0=()
  for name in "${!PID[@]}"; do CPU0[$name]="$(cpu_s "${PID[$name]}")"; SYS0[$name]="$(sys_s "${PID[$name]}")"; done
  redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
  read -r BULKS0 DOCS0 <<<"$(es_bulks)"

  T0="$(now)"
  /usr/bin/time -f "PRODUCER_CPU %U %S" -o "$D/producer.time" \
    "$BIN/producer" --bench --consumer-url "$CONSUMER_URL" --api-key-file "$D/secrets/api_key" \
    --producer soak --count "$COUNT" --batch "$BATCH" --concurrency "$CONCURRENCY" >"$D/producer.log" 2>&1 &
  PRODUCER=$!
  # Progress, once every 5 s, until every message is stored and every completed resource is
  # delivered (10 minutes at most).
  T_STORED=""; T_DELIVERED=""; SAMPLED=""; deadline=$((SECONDS + ${DEADLINE:-600})); last_report=0
  SCRAPE_URLS=()
  for port in "${WPORTS[@]}" "$WEBHOOK_PORT"; do SCRAPE_URLS+=("http://127.0.0.1:$port/metrics"); done
  while :; do
    # One curl and one awk per poll (the stack shares the two cores with this loop): stored and
    # completed from the workers, delivered from the webhook service. A delivery whose worker gave
    # up waiting (its request timed out) is stored all the same and counted `duplicate` when
    # delivered again: the hint counts both, the resources index decides.
    read -r stored completed delivered < <(curl -s "${SCRAPE_URLS[@]}" | awk '
      index($0, "conveyor_messages_stored_total") == 1 { s += $NF }
      index($0, "conveyor_resources_completed_total") == 1 { c += $NF }
      index($0, "conveyor_webhook_deliveries_total") == 1 && ($0 ~ /outcome="(stored|duplicate)"/) { d += $NF }
      END { printf "%d %d %d\n", s, c, d }')
    if [ -z "$T_STORED" ] && [ "$stored" -ge "$COUNT" ]; then T_STORED="$(now)"; fi
    if [ "${SAMPLE:-0}" = 1 ] && [ -z "$SAMPLED" ] && [ "$stored" -ge $((COUNT / 3)) ]; then
      # A 2 s sample of every command Redis runs (SLOWLOG with threshold 0), in the background.
      # Opt-in: logging every command and fetching 200,000 entries costs Redis and this machine
      # CPU the stack would otherwise have (~10 % of the two cores in one run).
      SAMPLED=1
      (redis-cli -p "$REDIS_PORT" config set slowlog-max-len 200000 >/dev/null
       redis-cli -p "$REDIS_PORT" slowlog reset >/dev/null
       redis-cli -p "$REDIS_PORT" config set slowlog-log-slower-than 0 >/dev/null
       sleep 2
       redis-cli -p "$REDIS_PORT" config set slowlog-log-slower-than 10000 >/dev/null
       redis-cli -p "$REDIS_PORT" --json slowlog get 200000 >"$D/slowlog.json") &
    fi
    producing=1; kill -0 "$PRODUCER" 2>/dev/null || producing=0
    if [ -n "$T_STORED" ] && [ "$producing" = 0 ] && [ "$delivered" -ge "$completed" ]; then
      T_CHECK="$(now)"
      curl -s -XPOST "$ES/${PREFIX}resources/_refresh" >/dev/null
      indexed="$(curl -s "$ES/${PREFIX}resources/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))')"
      if [ "$indexed" -ge "$completed" ]; then T_DELIVERED="$T_CHECK"; break; fi
    fi
    if [ $((SECONDS - last_report)) -ge 5 ]; then
      last_report=$SECONDS
      printf '   %4.0f s  stored %8d / %d   resources completed %7d delivered %7d\n' \
        "$(calc "%.0f" "$(now)-$T0")" "$stored" "$COUNT" "$completed" "$delivered"
    fi
    [ "$SECONDS" -lt "$deadline" ] || { echo "   webhook outcomes: $(scrape "$WEBHOOK_PORT" | grep ^conveyor_webhook_deliveries_total | tr "\n" " ")" >&2; echo "   worker warnings: $(cat "$D"/stack/logs/worker-*.log 2>/dev/null | grep -c WARN)" >&2; die "not done after ${DEADLINE:-600} s (stored $stored of $COUNT; see $D)"; }
    sleep 0.2
  done
  wait "$PRODUCER" || die "the producer failed: $(tail -5 "$D/producer.log")"
  read -r BULKS1 DOCS1 <<<"$(es_bulks)"
  grep -E "^  (requests|packets|errors|latency)" "$D/producer.log" | sed 's/^/   producer:/'
  declare -A CPU=() SYS=()
  for name in "${!PID[@]}"; do
    CPU[$name]="$(calc "%.2f" "$(cpu_s "${PID[$name]}")-${CPU0[$name]}")"
    SYS[$name]="$(calc "%.2f" "$(sys_s "${PID[$name]}")-${SYS0[$name]}")"
  done
  # Where Redis's time went: the commands (and scripts) with the most time, per message.
  COMMANDS="$(redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' \
    | awk -F'[:,=]' -v n="$COUNT" '/^cmdstat_/ { sub(/^cmdstat_/, "", $1); printf "%s %.1f µs (%.2f calls)\n", $1, $5 / n, $3 / n }' \
    | sort -k2 -nr | head -8 | paste -sd ';' | sed 's/;/; /g')"
  CPU[producer]="$(awk '/PRODUCER_CPU/ {printf "%.2f", $2 + $3}' "$D/producer.time")"
  declare -A HWM=()
  for name in "${!PID[@]}"; do
    case $name in redis|elasticsearch) ;; *) HWM[$name]="$(kb_mb "${PID[$name]}" VmHWM)";; esac
  done
  # The exact record, from the stores themselves.
  REPORT="$(python3 bench/stack_report.py "$ES" "${PREFIX}messages" "${PREFIX}resources" "$COUNT")"
  retries="$(scrape "${WPORTS[@]}" | metric_sum conveyor_jobs_processed_total 'outcome="retry"')"
  WEBHOOK_METRICS="$(scrape "$WEBHOOK_PORT")"
  dups="$(metric_sum conveyor_webhook_deliveries_total 'outcome="duplicate"' <<<"$WEBHOOK_METRICS")"
  # Who sent the _bulk requests: a worker sends one per batch it handled, the webhook service
  # one per group of deliveries (group.rs).
  batches="$(scrape "${WPORTS[@]}" | metric_sum conveyor_worker_batch_seconds_count "")"
  WH_BULKS="$(metric_sum conveyor_webhook_bulk_size_count "" <<<"$WEBHOOK_METRICS")"
  WH_DOCS="$(metric_sum conveyor_webhook_bulk_size_sum "" <<<"$WEBHOOK_METRICS")"
  dead=0
  for k in $(redis-cli -p "$REDIS_PORT" --scan --pattern '*:dead'); do
    dead=$((dead + $(redis-cli -p "$REDIS_PORT" xlen "$k")))
  done
  sleep 10
  declare -A RSS_AFTER=()
  for name in "${!HWM[@]}"; do RSS_AFTER[$name]="$(kb_mb "${PID[$name]}" VmRSS)"; done
  XADD="$(redis-benchmark -p "$REDIS_PORT" -a "$REDISCLI_AUTH" -n 200000 -c 8 -P "$BATCH" -q \
    XADD rbench '*' payload "$(head -c 200 /dev/zero | tr '\0' x)" 2>/dev/null \
    | grep -oE '[0-9.]+ requests per second' | cut -d' ' -f1)"
  if [ "${KEEP:-0}" != 1 ] || [ "$N" != "${WORKER_COUNTS##* }" ]; then
    "$STACK" stop --dir "$D/stack" >/dev/null
    kill "$REDIS_PID" 2>/dev/null || true
  fi

  stored_s="$(calc "%.2f" "$T_STORED-$T0")"; delivered_s="$(calc "%.2f" "$T_DELIVERED-$T0")"
  resources="$(echo "$REPORT" | awk -F= '/^resources=/ {print $2}')"
  echo "   stored $COUNT messages in $stored_s s; delivered $resources resources in $delivered_s s"
  echo "$REPORT" | sed 's/^/   /'
  echo "   dead letters $dead   job retries $retries   duplicate deliveries $dups"
  line="   CPU µs/message:"
  for name in redis elasticsearch consumer $(printf '%s\n' "${!PID[@]}" | grep '^worker-' | sort -V) webhook dashboard producer; do
    [ -n "${CPU[$name]:-}" ] && line="$line $name $(calc "%.1f" "${CPU[$name]}*1000000/$COUNT")"
    [ -n "${SYS[$name]:-}" ] && line="$line ($(calc "%.0f" "${SYS[$name]}*100/(${CPU[$name]}+0.001)")% sys)"
  done
  echo "$line"
  echo "   Redis per message by command: $COMMANDS"
  [ -s "$D/slowlog.json" ] && echo "   Redis's busiest during a 2 s sample: $(python3 bench/redis_sample.py "$D/slowlog.json")"
  line="   peak RSS MB (after 10 s idle):"
  for name in consumer $(printf '%s\n' "${!HWM[@]}" | grep '^worker-' | sort -V) webhook dashboard; do
    [ -n "${HWM[$name]:-}" ] && line="$line $name ${HWM[$name]} (${RSS_AFTER[$name]})"
  done
  echo "$line"
  echo "   Elasticsearch: $((BULKS1 - BULKS0)) _bulk requests, $((DOCS1 - DOCS0)) documents, $(calc "%.0f" "($DOCS1-$DOCS0)/($BULKS1-$BULKS0+0.001)") per _bulk"
  echo "   of them: workers $batches batches ($(calc "%.0f" "$COUNT/($batches+0.001)") messages each), webhook service $WH_BULKS _bulk requests ($(calc "%.0f" "$WH_DOCS/($WH_BULKS+0.001)") resources each)"
  echo "   redis-benchmark XADD -P $BATCH on this redis-server: $XADD/s"
  RESULTS+=("$N|$(calc "%.0f" "$COUNT/$stored_s")|$(calc "%.0f" "$resources/$delivered_s")|$(echo "$REPORT" | awk -F= '/^post_to_stored_ms=/ {print $2}')|$(echo "$REPORT" | awk -F= '/^last_packet_to_delivery_ms=/ {print $2}')|$dead|$retries|$dups|$(printf '%s\n' "${HWM[@]}" | sort -n | tail -1)|$XADD")
  unset PID CPU0 CPU SYS0 SYS HWM RSS_AFTER
done

echo
echo "== results ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores shared by every process, $COUNT packets)"
printf '%-8s %12s %12s %18s %18s %6s %8s %6s %10s %10s\n' workers "stored/s" "resources/s" \
  "POST→stored p50/p99" "last→deliv p50/p99" dead retries dups "max RSS MB" "÷ XADD -P"
for r in "${RESULTS[@]}"; do
  IFS='|' read -r n rate rrate p1 p2 dead retries dups rss xadd <<<"$r"
  printf '%-8s %12s %12s %18s %18s %6s %8s %6s %10s %10s\n' "$n" "$rate" "$rrate" "$p1" "$p2" \
    "$dead" "$retries" "$dups" "$rss" "$(calc "%.3f" "$rate/$xadd")"
done

echo
echo "== Elasticsearch alone (stacks stopped): the stack's message documents, by _bulk size"
python3 bench/es_bulk_cost.py "$ES" "$ES_PID" "${RUN}-" "${ES_DOCS:-20000}" 500 100 20
