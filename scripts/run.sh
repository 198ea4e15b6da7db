# Running the stack (sourced by setup.sh): `./setup.sh [--workers N]`, `stop`, `status`.
# With a Docker engine: docker compose. Without one (native mode): Redis and Elasticsearch from
# scripts/provision.sh, then every Conveyor service through the launcher (`conveyor-stack up`),
# detached, with pidfiles and logs in .run/. The launcher owns each service's environment (the
# same names compose sets), refuses ports held by anything else, and counts a service as started
# only when the process it started answers /healthz with its own pid.
# shellcheck shell=bash

# Native run mode: fixed ports on loopback, the same ones docker-compose.yml publishes. The
# services' ports move with CONSUMER_PORT, WEBHOOK_PORT, DASHBOARD_PORT, WORKER_BASE_PORT (read
# by the launcher); Redis's and Elasticsearch's with REDIS_PORT and ES_PORT.
RUN_REDIS_PORT="${REDIS_PORT:-6379}"
RUN_ES_PORT="${ES_PORT:-9200}"
RUN_ES_TRANSPORT_PORT="${ES_TRANSPORT_PORT:-9300}"

load_dotenv() { # ./.env (optional) overrides the defaults, as docker compose reads it
  if [ -f "$ROOT/.env" ]; then log "reading $ROOT/.env"; set -a; . "$ROOT/.env"; set +a; fi
}

webhook_secret() { # generated once, kept in the run dir (mode 600)
  mkdir -p "$RUN_DIR"
  if [ ! -s "$RUN_DIR/webhook_secret" ]; then
    if [ -n "${WEBHOOK_SECRET:-}" ]; then printf '%s' "$WEBHOOK_SECRET" >"$RUN_DIR/webhook_secret"
    else od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$RUN_DIR/webhook_secret"; fi
    chmod 600 "$RUN_DIR/webhook_secret"
  fi
  cat "$RUN_DIR/webhook_secret"
}

docker_ok() { # a Docker engine answers and compose is there
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1
}

parse_run_args() { # --workers N (default: the count of the previous run, else 2)
  WORKERS="${WORKERS:-$(cat "$RUN_DIR/workers" 2>/dev/null || echo 2)}"
  while [ $# -gt 0 ]; do
    case $1 in
      --workers) [ $# -ge 2 ] || die "--workers needs a number"; WORKERS=$2; shift 2 ;;
      --workers=*) WORKERS=${1#--workers=}; shift ;;
      *) die "unknown option '$1' (run accepts --workers N)" ;;
    esac
  done
  [[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive number, not '$WORKERS'"
  mkdir -p "$RUN_DIR"; echo "$WORKERS" >"$RUN_DIR/workers"
}

print_urls() { # mode consumer_url webhook_url dashboard_url
  cat <<EOT

Conveyor is running ($1 mode, $WORKERS workers).
  dashboard      $4
  consumer API   $2   (POST /messages, GET /stats, /openapi.json)
  workers        /metrics on http://localhost:$((${WORKER_BASE_PORT:-9100} + 1)) ... (native mode)
  webhook        $3   (GET /resources/{id})
  Redis          redis://localhost:$RUN_REDIS_PORT
  Elasticsearch  http://localhost:$RUN_ES_PORT
EOT
}

cmd_run() {
  parse_run_args "$@"
  local started=$SECONDS
  mkdir -p "$RUN_DIR"
  if docker_ok; then
    log "a Docker engine answers: docker compose up -d --build --scale worker=$WORKERS"
    echo docker >"$RUN_DIR/mode"
    WEBHOOK_SECRET="$(webhook_secret)" docker compose up -d --build --scale worker="$WORKERS"
    local t=0
    until curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:5000/healthz 2>/dev/null; do
      t=$((t + 1)); [ $t -le 300 ] || die "the dashboard did not come up within 300 s (docker compose logs)"
      sleep 1
    done
    print_urls docker http://localhost:8000 http://localhost:8001 http://localhost:5000
    echo "  logs           docker compose logs -f [service]"
    echo "  stop           ./setup.sh stop"
    return
  fi
  log "no Docker engine answers: native mode (processes on loopback, logs and pids in $RUN_DIR)"
  load_dotenv
  ensure_redis; ensure_java; ensure_elasticsearch
  command -v cargo >/dev/null || die "cargo is missing: install Rust (rustup) first"
  apt_install curl ca-certificates
  log "cargo build --release --bins"
  cargo build --release --bins --quiet
  echo native >"$RUN_DIR/mode"
  mkdir -p "$RUN_DIR/pids" "$RUN_DIR/logs"
  webhook_secret >/dev/null
  if redis_up "$RUN_REDIS_PORT"; then
    log "Redis already answers on 127.0.0.1:$RUN_REDIS_PORT (reused)"
  else
    start_redis "$RUN_REDIS_PORT" "$STATE_HOME/redis" yes
    cp "$STATE_HOME/redis/redis.pid" "$RUN_DIR/pids/redis.pid"
    ln -sf "$STATE_HOME/redis/redis.log" "$RUN_DIR/logs/redis.log"
  fi
  if es_up "$RUN_ES_PORT"; then
    log "Elasticsearch already answers on 127.0.0.1:$RUN_ES_PORT (reused)"
  else
    start_elasticsearch "$RUN_ES_PORT" "$RUN_ES_TRANSPORT_PORT" "$STATE_HOME/es"
    cp "$STATE_HOME/es/es.pid" "$RUN_DIR/pids/elasticsearch.pid"
    ln -sf "$STATE_HOME/es/logs/conveyor.log" "$RUN_DIR/logs/elasticsearch.log"
  fi
  log "starting the services: conveyor-stack up --dir $RUN_DIR --workers $WORKERS"
  conveyor_stack up --dir "$RUN_DIR" --bin-dir "$BIN_DIR" --workers "$WORKERS" \
    --redis-url "redis://127.0.0.1:$RUN_REDIS_PORT" --elasticsearch-url "http://127.0.0.1:$RUN_ES_PORT" \
    --namespace "${QUEUE_NAMESPACE:-conveyor}" --index-prefix "${ES_INDEX_PREFIX:-}" \
    --log-format "${LOG_FORMAT:-pretty}" --webhook-secret-file "$RUN_DIR/webhook_secret" \
    || die "the stack did not start (see above; ./setup.sh status, ./setup.sh stop)"
  local CONSUMER_URL WEBHOOK_BASE_URL DASHBOARD_URL WORKER_PORTS
  eval "$(conveyor_stack urls --dir "$RUN_DIR")"
  print_urls native "$CONSUMER_URL" "$WEBHOOK_BASE_URL" "$DASHBOARD_URL"
  echo "  logs           $RUN_DIR/logs/"
  echo "  status / stop  ./setup.sh status | ./setup.sh stop"
  log "up in $((SECONDS - started)) s"
}

server_pid() { # name: pid of Redis/Elasticsearch if this script started it and it still runs
  local pattern=$REDIS_PATTERN; [ "$1" = redis ] || pattern=$ES_PATTERN
  owned_pid "$RUN_DIR/pids/$1.pid" "$pattern"
}

cmd_stop() {
  local mode; mode=$(cat "$RUN_DIR/mode" 2>/dev/null || echo none)
  if [ "$mode" = docker ]; then
    log "docker compose down"
    WEBHOOK_SECRET="$(webhook_secret)" docker compose down
    rm -f "$RUN_DIR/mode"
    return
  fi
  if [ -d "$RUN_DIR/pids" ]; then conveyor_stack stop --dir "$RUN_DIR" --bin-dir "$BIN_DIR"; fi
  stop_pidfile "$RUN_DIR/pids/elasticsearch.pid" "$ES_PATTERN" elasticsearch
  stop_pidfile "$RUN_DIR/pids/redis.pid" "$REDIS_PATTERN" redis
  rm -f "$RUN_DIR/mode"
  log "stopped (logs kept in $RUN_DIR/logs)"
}

cmd_status() {
  local mode; mode=$(cat "$RUN_DIR/mode" 2>/dev/null || echo none)
  if [ "$mode" = docker ]; then WEBHOOK_SECRET="$(webhook_secret)" docker compose ps; return; fi
  printf '%-14s %-8s %-9s %-6s %s\n' NAME PID STATE PORT LOG
  local s port pid log
  for s in redis elasticsearch; do
    if [ $s = redis ]; then port=$RUN_REDIS_PORT; else port=$RUN_ES_PORT; fi
    log="$RUN_DIR/logs/$s.log"
    if pid=$(server_pid "$s"); then
      printf '%-14s %-8s %-9s %-6s %s\n' "$s" "$pid" running "$port" "$log"
    elif { [ $s = redis ] && redis_up "$port"; } || { [ $s = elasticsearch ] && es_up "$port"; }; then
      printf '%-14s %-8s %-9s %-6s %s\n' "$s" - external "$port" "(not started by ./setup.sh)"
    elif [ -e "$RUN_DIR/pids/$s.pid" ]; then
      printf '%-14s %-8s %-9s %-6s %s\n' "$s" "$(cat "$RUN_DIR/pids/$s.pid")" dead "$port" "$log"
    fi
  done
  if [ -d "$RUN_DIR/pids" ]; then conveyor_stack status --dir "$RUN_DIR" --bin-dir "$BIN_DIR"; fi
  [ -e "$RUN_DIR/pids/consumer.pid" ] || echo "(the native stack is not running: ./setup.sh)"
}
