# Running the stack (sourced by setup.sh): `./setup.sh [--cluster] [--workers N]`, `stop`, `status`.
# With a Docker engine: docker compose. Without one (native mode): Redis and Elasticsearch from
# scripts/provision.sh, then every Conveyor service through the launcher (`conveyor-stack up`),
# detached, with pidfiles and logs in .run/. The launcher owns each service's environment (the
# same names compose sets), refuses ports held by anything else, and counts a service as started
# only when the process it started answers /healthz with its own pid.
# `--cluster`: the same on a 6-node Redis Cluster and a 2-node Elasticsearch cluster
# (docker-compose.cluster.yml, or natively scripts/lib/cluster_stack.sh).
# shellcheck shell=bash
# shellcheck source=scripts/lib/cluster_stack.sh
. "$ROOT/scripts/lib/cluster_stack.sh"

# Native run mode: fixed ports on loopback, the same ones docker-compose.yml publishes. The
# services' ports move with CONSUMER_PORT, WEBHOOK_PORT, DASHBOARD_PORT, WORKER_BASE_PORT (read
# by the launcher); Redis's and Elasticsearch's with REDIS_PORT and ES_PORT, which load_dotenv
# turns into RUN_REDIS_PORT, RUN_ES_PORT and RUN_ES_TRANSPORT_PORT (run, stop and status call it).
load_dotenv() { # ./.env (optional) overrides the defaults, as docker compose reads it; then the ports
  if [ -f "$ROOT/.env" ]; then log "reading $ROOT/.env"; set -a; . "$ROOT/.env"; set +a; fi
  RUN_REDIS_PORT="${REDIS_PORT:-6379}"
  RUN_ES_PORT="${ES_PORT:-9200}"
  RUN_ES_TRANSPORT_PORT="${ES_TRANSPORT_PORT:-9300}"
}

# ensure_secret NAME [VALUE]: the path of <run dir>/secrets/NAME, created once and kept: VALUE if
# given, else 32 random bytes as hex. The directory (0700) and the file (0600) are created private
# under umask 077 before anything is written, and belong to the service user, which reads them
# (REDIS_PASSWORD_FILE=…); no other user can read or replace them. Used for the Redis password and
# the webhook secret; meant for any further secret (e.g. an API key).
ensure_secret() {
  local dir="$RUN_DIR/secrets" file="$RUN_DIR/secrets/$1"
  [[ "$1" =~ ^[a-z0-9_]+$ ]] || die "ensure_secret: bad secret name '$1'"
  (umask 077; mkdir -p "$dir")
  chmod 700 "$dir"
  if [ ! -s "$file" ]; then
    (
      umask 077
      if [ $# -ge 2 ] && [ -n "$2" ]; then printf '%s' "$2" >"$file.new"
      else od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$file.new"; fi
      mv -f "$file.new" "$file"
    )
  fi
  chmod 600 "$file"
  if [ "$(id -u)" -eq 0 ] && id "$SERVICE_USER" >/dev/null 2>&1; then
    chown -R "$SERVICE_USER:$SERVICE_USER" "$dir"
  fi
  printf '%s\n' "$file"
}

webhook_secret() { # the webhook secret (WEBHOOK_SECRET if set on the first run), kept in the run dir
  # a run dir from before secrets/ kept it in .run/webhook_secret: carry it over once
  # generated in the Standard Webhooks form (whsec_ + base64 of 32 random bytes), which a
  # receiver built on a Standard Webhooks library takes as it is
  local old="$RUN_DIR/webhook_secret" value="${WEBHOOK_SECRET:-}"
  [ -n "$value" ] || value="whsec_$(head -c 32 /dev/urandom | base64 -w0)"
  if [ -s "$old" ] && [ ! -s "$RUN_DIR/secrets/webhook_secret" ]; then value=$(cat "$old"); fi
  cat "$(ensure_secret webhook_secret "$value")"
  rm -f "$old"
}

api_keys() { # the API key of this installation: secrets/api_key (the producer's and the notebook's)
  # and secrets/api_keys, the consumer's table, granting it every producer and reads; add your own
  # `<key> <grants>` lines to that table (README "Security"): it is created once and then kept
  local key; key=$(cat "$(ensure_secret api_key)")
  local table; table=$(ensure_secret api_keys "$key producer:*,read")
  grep -q "^$key " "$table" || warn "$table does not list the key in secrets/api_key: the producer will be refused"
  # secrets/admin_key: the operator's key (grant admin: the dashboard's Queues page, its admin
  # API), added to a table made before it existed
  local admin; admin=$(cat "$(ensure_secret admin_key)")
  if ! grep -q "^$admin " "$table"; then
    [ -z "$(tail -c1 "$table")" ] || echo >> "$table"
    printf '%s admin\n' "$admin" >> "$table"
  fi
}

# prepare_run_dir: RUN_DIR private to whoever runs the services (0700; as root: $SERVICE_USER's,
# created in provision if missing). A checkout the service user cannot reach (under /root, say)
# keeps its run dir in $STATE_HOME/run instead, unless CONVEYOR_RUN_DIR says where.
prepare_run_dir() { # [native]: native mode also creates the service user and hands it the dir
  if [ "$(id -u)" -eq 0 ] && [ -z "${CONVEYOR_RUN_DIR:-}" ] && ! others_can_reach "$ROOT"; then
    RUN_DIR="$STATE_HOME/run"
  fi
  (umask 077; mkdir -p "$RUN_DIR")
  chmod 700 "$RUN_DIR"
  if [ "$(id -u)" -eq 0 ] && [ "${1:-}" = native ]; then
    ensure_system_user "$SERVICE_USER" "native mode runs the services and Redis as this user"
    chown -R "$SERVICE_USER:$SERVICE_USER" "$RUN_DIR"
  fi
}

# service_bin_dir: where the service user runs the binaries from: BIN_DIR if it can reach it, else
# a root-owned copy in $CONVEYOR_HOME/bin (replaced file by file: a running binary stays intact).
service_bin_dir() {
  if [ "$(id -u)" -ne 0 ] || others_can_reach "$BIN_DIR/conveyor-stack"; then echo "$BIN_DIR"; return; fi
  local dest="$CONVEYOR_HOME/bin" b
  mkdir -p "$dest"; chmod 755 "$dest"
  for b in conveyor-stack consumer worker webhook dashboard producer; do
    cmp -s "$BIN_DIR/$b" "$dest/$b" && continue
    install -m 755 "$BIN_DIR/$b" "$dest/.$b.new" && mv -f "$dest/.$b.new" "$dest/$b"
  done
  echo "$dest"
}

docker_ok() { # a Docker engine answers and compose is there
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1
}

parse_run_args() { # [--cluster] --workers N (default: the count of the previous run, else 2)
  WORKERS="${WORKERS:-$(cat "$RUN_DIR/workers" 2>/dev/null || echo 2)}"
  CLUSTER=0
  while [ $# -gt 0 ]; do
    case $1 in
      --workers) [ $# -ge 2 ] || die "--workers needs a number"; WORKERS=$2; shift 2 ;;
      --workers=*) WORKERS=${1#--workers=}; shift ;;
      --cluster) CLUSTER=1; shift ;;
      *) die "unknown option '$1' (run accepts --cluster and --workers N)" ;;
    esac
  done
  [[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive number, not '$WORKERS'"
  mkdir -p "$RUN_DIR"; echo "$WORKERS" >"$RUN_DIR/workers"
}

# What print_urls shows for Redis and Elasticsearch (the cluster run sets its own).
SHOWN_REDIS="" SHOWN_ES=""
print_urls() { # mode consumer_url webhook_url dashboard_url
  cat <<EOT

Conveyor is running ($1 mode, $WORKERS workers).
  dashboard      $4
  consumer API   $2   (POST /messages, GET /stats, /openapi.json)
  workers        /metrics on http://localhost:$((${WORKER_BASE_PORT:-9100} + 1)) ... (native mode)
  webhook        $3   (GET /resources/{key})
  API key        $RUN_DIR/secrets/api_key   (Authorization: Bearer <key> on POSTs)
  admin key      $RUN_DIR/secrets/admin_key   (type it into http://127.0.0.1:5000/queues to retry, delete, pause)
  Redis          ${SHOWN_REDIS:-redis://localhost:$RUN_REDIS_PORT}
  Elasticsearch  ${SHOWN_ES:-http://localhost:$RUN_ES_PORT}
EOT
}

# compose_file MODE: the compose file of a Docker run (docker-cluster: the cluster topology).
compose_file() { if [ "$1" = docker-cluster ]; then echo docker-compose.cluster.yml; else echo docker-compose.yml; fi; }

cmd_run() {
  load_dotenv # both modes: compose also reads .env itself, but WEBHOOK_SECRET's first value is ours
  prepare_run_dir
  parse_run_args "$@"
  local started=$SECONDS
  if docker_ok; then
    local mode=docker; [ "$CLUSTER" -eq 0 ] || mode=docker-cluster
    local file; file=$(compose_file "$mode")
    log "a Docker engine answers: docker compose -f $file up -d --build --scale worker=$WORKERS"
    echo "$mode" >"$RUN_DIR/mode"
    api_keys
    export CONVEYOR_SECRETS_DIR="$RUN_DIR/secrets"
    WEBHOOK_SECRET="$(webhook_secret)" docker compose -f "$file" up -d --build --scale worker="$WORKERS"
    local t=0
    until curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:5000/healthz 2>/dev/null; do
      t=$((t + 1)); [ $t -le 300 ] || die "the dashboard did not come up within 300 s (docker compose -f $file logs)"
      sleep 1
    done
    [ "$CLUSTER" -eq 0 ] || { SHOWN_REDIS="a 6-node Redis Cluster (redis-1 ... redis-6, not published)"; SHOWN_ES="http://localhost:9200,http://localhost:9201"; }
    print_urls "$mode" http://localhost:8000 http://localhost:8001 http://localhost:5000
    echo "  logs           docker compose -f $file logs -f [service]"
    echo "  stop           ./setup.sh stop"
    return
  fi
  if [ "$CLUSTER" -eq 1 ]; then cluster_run_native; log "up in $((SECONDS - started)) s"; return; fi
  log "no Docker engine answers: native mode (processes on loopback, logs and pids in $RUN_DIR)"
  native_prepare
  echo native >"$RUN_DIR/mode"
  if redis_answers "$RUN_REDIS_PORT"; then
    log "Redis already answers on 127.0.0.1:$RUN_REDIS_PORT (reused)"
    redis_up_auth "$RUN_REDIS_PORT" "$NATIVE_REDIS_PW" \
      || warn "that Redis does not take the password in $NATIVE_REDIS_PW: the services will be refused"
  else
    start_native_redis "$RUN_REDIS_PORT" "$STATE_HOME/redis" "$RUN_DIR/redis.conf" "$NATIVE_REDIS_PW" \
      "$RUN_DIR/pids/redis.pid" "$RUN_DIR/logs/redis.log"
  fi
  if es_up "$RUN_ES_PORT"; then
    log "Elasticsearch already answers on 127.0.0.1:$RUN_ES_PORT (reused)"
  else
    start_elasticsearch "$RUN_ES_PORT" "$RUN_ES_TRANSPORT_PORT" "$STATE_HOME/es"
    cp "$STATE_HOME/es/es.pid" "$RUN_DIR/pids/elasticsearch.pid"
    ln -sf "$STATE_HOME/es/logs/conveyor.log" "$RUN_DIR/logs/elasticsearch.log"
  fi
  native_services "redis://127.0.0.1:$RUN_REDIS_PORT" "http://127.0.0.1:$RUN_ES_PORT"
  log "up in $((SECONDS - started)) s"
}

# native_prepare: what every native run needs before its servers start (after load_dotenv): the packages,
# Redis, a JDK and Elasticsearch installed, the run dir handed to the service user, the release
# binaries, the secrets. Sets NATIVE_BINS (where the service user runs the binaries from) and
# NATIVE_REDIS_PW (the Redis password file).
native_prepare() {
  ensure_redis; ensure_java; ensure_elasticsearch
  prepare_run_dir native
  command -v cargo >/dev/null || die "cargo is missing: install Rust (rustup) first"
  apt_install curl ca-certificates
  log "cargo build --release --bins"
  cargo build --release --bins --quiet
  NATIVE_BINS=$(service_bin_dir)
  (umask 077; mkdir -p "$RUN_DIR/pids" "$RUN_DIR/logs")
  webhook_secret >/dev/null
  api_keys
  NATIVE_REDIS_PW=$(ensure_secret redis_password)
  [ "$(id -u)" -ne 0 ] || chown -R "$SERVICE_USER:$SERVICE_USER" "$RUN_DIR"
}

# native_services REDIS_URL ELASTICSEARCH_URL: every Conveyor service through the launcher, as
# the service user, pointed at them; then the URLs. The tunables (QUEUE_PARTITIONS, …) reach the
# launcher from this environment.
native_services() {
  local bins=$NATIVE_BINS
  log "starting the services as $(as_service id -un): conveyor-stack up --dir $RUN_DIR --workers $WORKERS"
  as_service "$bins/conveyor-stack" up --dir "$RUN_DIR" --bin-dir "$bins" --workers "$WORKERS" \
    --redis-url "$1" --redis-password-file "$NATIVE_REDIS_PW" --elasticsearch-url "$2" \
    --namespace "${QUEUE_NAMESPACE:-conveyor}" --index-prefix "${ES_INDEX_PREFIX:-}" \
    --log-format "${LOG_FORMAT:-pretty}" --webhook-secret-file "$RUN_DIR/secrets/webhook_secret" \
    --api-keys-file "$RUN_DIR/secrets/api_keys" --api-key-file "$RUN_DIR/secrets/api_key" \
    || die "the stack did not start (see above; ./setup.sh status, ./setup.sh stop)"
  local CONSUMER_URL WEBHOOK_BASE_URL DASHBOARD_URL WORKER_PORTS
  eval "$(as_service "$bins/conveyor-stack" urls --dir "$RUN_DIR")"
  print_urls "$(cat "$RUN_DIR/mode")" "$CONSUMER_URL" "$WEBHOOK_BASE_URL" "$DASHBOARD_URL"
  echo "  logs           $RUN_DIR/logs/"
  echo "  status / stop  ./setup.sh status | ./setup.sh stop"
}

# stack_cmd VERB: `conveyor-stack VERB --dir $RUN_DIR` as the user the stack runs as (the owner
# of the run dir), with the binaries the last `up` recorded in stack.json
stack_cmd() {
  local bins=$BIN_DIR
  [ -x "$CONVEYOR_HOME/bin/conveyor-stack" ] && ! others_can_reach "$BIN_DIR/conveyor-stack" \
    && bins="$CONVEYOR_HOME/bin"
  [ -x "$bins/conveyor-stack" ] || { conveyor_stack "$1" --dir "$RUN_DIR" --bin-dir "$bins"; return; }
  if [ "$(id -u)" -eq 0 ] && [ "$(stat -c %U "$RUN_DIR")" = "$SERVICE_USER" ]; then
    as_service "$bins/conveyor-stack" "$1" --dir "$RUN_DIR" --bin-dir "$bins"
  else
    "$bins/conveyor-stack" "$1" --dir "$RUN_DIR" --bin-dir "$bins"
  fi
}

# the pid of Redis / Elasticsearch if this script started it, it still runs, its command line is
# the one we started and it runs as the user we started it as
redis_pid() {
  local user; user=$(stat -c %U "$RUN_DIR")
  owned_pid "$RUN_DIR/pids/redis.pid" "redis-server 127.0.0.1:$RUN_REDIS_PORT" "$user"
}
server_pid() { # name
  if [ "$1" = redis ]; then redis_pid
  else owned_pid "$RUN_DIR/pids/elasticsearch.pid" "$ES_PATTERN" "$ES_USER"; fi
}

cmd_stop() {
  load_dotenv # REDIS_PORT, ES_PORT
  prepare_run_dir
  local mode; mode=$(cat "$RUN_DIR/mode" 2>/dev/null || echo none)
  if [ "$mode" = docker ] || [ "$mode" = docker-cluster ]; then
    local file; file=$(compose_file "$mode")
    log "docker compose -f $file down"
    CONVEYOR_SECRETS_DIR="$RUN_DIR/secrets" WEBHOOK_SECRET="$(webhook_secret)" docker compose -f "$file" down
    rm -f "$RUN_DIR/mode"
    return
  fi
  if [ -d "$RUN_DIR/pids" ]; then stack_cmd stop; fi
  cluster_stop_native # the servers of a `./setup.sh --cluster` run, if that is what ran
  stop_pidfile "$RUN_DIR/pids/elasticsearch.pid" "$ES_PATTERN" elasticsearch "$ES_USER"
  stop_pidfile "$RUN_DIR/pids/redis.pid" "redis-server 127.0.0.1:$RUN_REDIS_PORT" redis "$(stat -c %U "$RUN_DIR")"
  rm -f "$RUN_DIR/mode"
  log "stopped (logs kept in $RUN_DIR/logs)"
}

cmd_status() {
  load_dotenv
  prepare_run_dir
  local mode; mode=$(cat "$RUN_DIR/mode" 2>/dev/null || echo none)
  if [ "$mode" = docker ] || [ "$mode" = docker-cluster ]; then
    CONVEYOR_SECRETS_DIR="$RUN_DIR/secrets" WEBHOOK_SECRET="$(webhook_secret)" docker compose -f "$(compose_file "$mode")" ps
    return
  fi
  printf '%-14s %-8s %-9s %-6s %s\n' NAME PID STATE PORT LOG
  local s port pid log servers="redis elasticsearch"
  if [ -f "$RUN_DIR/cluster.env" ]; then cluster_status_native; servers=""; fi
  for s in $servers; do
    if [ $s = redis ]; then port=$RUN_REDIS_PORT; else port=$RUN_ES_PORT; fi
    log="$RUN_DIR/logs/$s.log"
    if pid=$(server_pid "$s"); then
      printf '%-14s %-8s %-9s %-6s %s\n' "$s" "$pid" running "$port" "$log"
    elif { [ $s = redis ] && redis_answers "$port"; } || { [ $s = elasticsearch ] && es_up "$port"; }; then
      printf '%-14s %-8s %-9s %-6s %s\n' "$s" - external "$port" "(not started by ./setup.sh)"
    elif [ -e "$RUN_DIR/pids/$s.pid" ]; then
      printf '%-14s %-8s %-9s %-6s %s\n' "$s" "$(cat "$RUN_DIR/pids/$s.pid")" dead "$port" "$log"
    fi
  done
  if [ -d "$RUN_DIR/pids" ]; then stack_cmd status; fi
  [ -e "$RUN_DIR/pids/consumer.pid" ] || echo "(the native stack is not running: ./setup.sh)"
}
