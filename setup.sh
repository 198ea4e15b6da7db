#!/usr/bin/env bash
# Conveyor — one script to install, run, stop and test the whole stack.
#
#   ./setup.sh [--workers N]   run the stack (Docker when an engine answers, native otherwise):
#                       Redis :6379, Elasticsearch :9200, consumer :8000, N workers (default 2),
#                       webhook :8001, dashboard http://localhost:5000, producer; logs in .run/logs
#   ./setup.sh stop     stop what `./setup.sh` started, and only that
#   ./setup.sh status   list each process of the stack: pid, state, port, log file
#   ./setup.sh test     install what is missing, start a private Redis + Elasticsearch,
#                       run fmt, clippy and every test, execute the notebook against a private
#                       stack, stop everything again; exit code = verdict
#
# Everything this script needs it installs itself (apt, Maven Central, crates.io, PyPI), so it
# works on a fresh machine. Re-running any verb is safe.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

# Pinned versions. Elasticsearch comes from Maven Central's integration-test distribution
# (a real, stripped Elasticsearch). 9.3.0 is not published there; 9.2.4 is the newest 9.x that is.
ES_VERSION="${ES_VERSION:-9.2.4}"
ES_JAVA_HOME_DEFAULT="/usr/lib/jvm/temurin-25-jdk-amd64"
ES_USER="conveyor-es"
CONVEYOR_HOME="${CONVEYOR_HOME:-/opt/conveyor}"     # unpacked Elasticsearch (outside /root: ES user must read it)
STATE_HOME="${CONVEYOR_STATE:-/var/lib/conveyor}"   # ES data/logs (owned by the ES user)
RUN_DIR="${CONVEYOR_RUN_DIR:-$ROOT/.run}"           # pids + logs of the native stack
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"

log()  { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
warn() { printf '\033[1;33m!!\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[1;31mxx\033[0m %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------------------------
APT_UPDATED=0
apt_install() { # pkg...: install the Debian packages that are missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "need these packages but apt-get is missing: ${missing[*]}"
  log "installing ${missing[*]} (apt)"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ $APT_UPDATED -eq 0 ]; then $sudo apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_redis() { apt_install redis-server redis-tools; }

ensure_java() {
  if [ -x "$ES_JAVA_HOME_DEFAULT/bin/java" ]; then ES_JAVA_HOME="${ES_JAVA_HOME:-$ES_JAVA_HOME_DEFAULT}"; return; fi
  # ES 9.x needs Java 21+. Debian's openjdk-21 is not in every release; fall back to what apt offers.
  for pkg in openjdk-25-jdk-headless openjdk-21-jdk-headless; do
    if apt-cache show "$pkg" >/dev/null 2>&1; then apt_install "$pkg"; break; fi
  done
  ES_JAVA_HOME="${ES_JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")}"
  "$ES_JAVA_HOME/bin/java" -version 2>&1 | grep -Eq 'version "(2[1-9]|[3-9][0-9])' \
    || die "Elasticsearch $ES_VERSION needs Java 21+; set ES_JAVA_HOME"
}

ensure_elasticsearch() {
  ES_HOME="$CONVEYOR_HOME/elasticsearch-$ES_VERSION"
  if [ ! -x "$ES_HOME/bin/elasticsearch" ]; then
    command -v mvn >/dev/null || apt_install maven
    command -v unzip >/dev/null || apt_install unzip
    log "fetching Elasticsearch $ES_VERSION (Maven Central integ-test-zip, ~95 MB, cached in ~/.m2)"
    local tmp; tmp="$(mktemp -d)"
    mvn -B -q "$DEP_PLUGIN:copy" \
      -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" \
      -DoutputDirectory="$tmp" -Dmdep.stripVersion=false >/dev/null \
      || die "could not fetch Elasticsearch $ES_VERSION from Maven Central"
    mkdir -p "$CONVEYOR_HOME"
    unzip -q "$tmp/elasticsearch-$ES_VERSION.zip" -d "$CONVEYOR_HOME"
    rm -rf "$tmp"
  fi
  if ! id "$ES_USER" >/dev/null 2>&1; then
    log "creating system user $ES_USER (Elasticsearch refuses to run as root)"
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$ES_USER"
  fi
  chown -R "$ES_USER:$ES_USER" "$ES_HOME"
  mkdir -p "$STATE_HOME"
}

# ---------------------------------------------------------------------------------------------
# Services: Redis and Elasticsearch on loopback, each in its own state dir
# ---------------------------------------------------------------------------------------------
redis_up() { redis-cli -p "$1" ping 2>/dev/null | grep -q PONG; }

start_redis() { # port dir aof(yes|no)
  local port=$1 dir=$2 aof=${3:-no}
  if redis_up "$port"; then log "Redis already answers on 127.0.0.1:$port"; return; fi
  mkdir -p "$dir"
  log "starting Redis on 127.0.0.1:$port"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save "" --appendonly "$aof" --appendfsync always \
    --protected-mode yes >/dev/null
  for _ in $(seq 1 50); do redis_up "$port" && return; sleep 0.1; done
  die "Redis did not start on $port (see $dir/redis.log)"
}

stop_pidfile() { # pidfile [name]: TERM, wait, then KILL
  local pf=$1 pid
  [ -f "$pf" ] || return 0
  pid=$(cat "$pf" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pf"
}

es_up() { curl -fsS "http://127.0.0.1:$1/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1; }

start_elasticsearch() { # http_port transport_port state_dir
  local port=$1 tport=$2 dir=$3
  if es_up "$port"; then log "Elasticsearch already answers on 127.0.0.1:$port"; return; fi
  mkdir -p "$dir/data" "$dir/logs"
  rm -rf "$dir/config"; cp -r "$ES_HOME/config" "$dir/config"
  cat > "$dir/config/elasticsearch.yml" <<EOF
cluster.name: conveyor
node.name: conveyor-1
discovery.type: single-node
network.host: 127.0.0.1
http.port: $port
transport.port: $tport
path.data: $dir/data
path.logs: $dir/logs
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
EOF
  chown -R "$ES_USER:$ES_USER" "$dir"
  log "starting Elasticsearch $ES_VERSION on 127.0.0.1:$port (JDK: $ES_JAVA_HOME)"
  runuser -u "$ES_USER" -- env ES_JAVA_HOME="$ES_JAVA_HOME" ES_PATH_CONF="$dir/config" \
    ES_JAVA_OPTS="${ES_JAVA_OPTS:--Xms512m -Xmx512m}" \
    "$ES_HOME/bin/elasticsearch" -d -p "$dir/es.pid" >"$dir/logs/startup.out" 2>&1 \
    || die "Elasticsearch failed to start (see $dir/logs/conveyor.log)"
  local t=0
  until es_up "$port"; do
    t=$((t + 1)); [ $t -le 180 ] || die "Elasticsearch not ready after 180 s (see $dir/logs/conveyor.log)"
    [ $((t % 15)) -eq 0 ] && log "  still waiting for Elasticsearch ($t s)"
    sleep 1
  done
  log "Elasticsearch ready on 127.0.0.1:$port"
}

# ---------------------------------------------------------------------------------------------
# The Conveyor stack: one implementation for `./setup.sh` (native run mode) and for the notebook
# step of `./setup.sh test`. Set the S_* variables (stack_config_* below), then stack_up /
# stack_down / stack_status. Every process runs in the background in its own session, with its
# log in $S_DIR/logs/<name>.log and its pid in $S_DIR/pids/<name>.pid.
# ---------------------------------------------------------------------------------------------
STACK_SERVICES="consumer worker webhook dashboard producer"

# Tunables, overridable from the environment or a `.env` file (see .env.example). docker-compose.yml
# uses the same names and the same defaults.
stack_defaults() {
  : "${RUST_LOG:=info}"
  : "${BACKLOG_LIMIT:=100000}"
  : "${WORKER_CONCURRENCY:=4}"
  : "${WORKER_BATCH_SIZE:=500}"
  : "${WORKER_BATCH_LINGER_MS:=0}"
  : "${LEASE_MS:=5000}"
  : "${MAX_ATTEMPTS:=5}"
  : "${RESOURCE_TIMEOUT_MS:=60000}"
  : "${RUNTIME_THREADS:=1}"
}

# service_env SERVICE [N]: the NAME=value lines that SERVICE's processes (worker number N) get.
# The names are exactly those docker-compose.yml sets for the service (tests/tests/compose.rs
# checks both ways).
service_env() {
  local wport=0
  if [ "$1" = worker ]; then wport=$(worker_port "${2:-1}"); fi
  case $1 in
    consumer) printf '%s\n' \
      "REDIS_URL=$S_REDIS_URL" \
      "ELASTICSEARCH_URL=$S_ES_URL" \
      "QUEUE_NAMESPACE=$S_NAMESPACE" \
      "ES_INDEX_PREFIX=$S_INDEX_PREFIX" \
      "RUST_LOG=$RUST_LOG" \
      "LOG_FORMAT=$S_LOG_FORMAT" \
      "RUNTIME_THREADS=$RUNTIME_THREADS" \
      "CONSUMER_ADDR=127.0.0.1:$S_CONSUMER_PORT" \
      "BACKLOG_LIMIT=$BACKLOG_LIMIT"
      ;;
    worker) printf '%s\n' \
      "REDIS_URL=$S_REDIS_URL" \
      "ELASTICSEARCH_URL=$S_ES_URL" \
      "QUEUE_NAMESPACE=$S_NAMESPACE" \
      "ES_INDEX_PREFIX=$S_INDEX_PREFIX" \
      "RUST_LOG=$RUST_LOG" \
      "LOG_FORMAT=$S_LOG_FORMAT" \
      "RUNTIME_THREADS=$RUNTIME_THREADS" \
      "WORKER_CONCURRENCY=$WORKER_CONCURRENCY" \
      "WORKER_BATCH_SIZE=$WORKER_BATCH_SIZE" \
      "WORKER_BATCH_LINGER_MS=$WORKER_BATCH_LINGER_MS" \
      "WORKER_METRICS_ADDR=127.0.0.1:$wport" \
      "LEASE_MS=$LEASE_MS" \
      "MAX_ATTEMPTS=$MAX_ATTEMPTS" \
      "WEBHOOK_URL=http://127.0.0.1:$S_WEBHOOK_PORT/webhooks/resources" \
      "WEBHOOK_SECRET=$S_SECRET" \
      "RESOURCE_TIMEOUT_MS=$RESOURCE_TIMEOUT_MS"
      ;;
    webhook) printf '%s\n' \
      "ELASTICSEARCH_URL=$S_ES_URL" \
      "ES_INDEX_PREFIX=$S_INDEX_PREFIX" \
      "RUST_LOG=$RUST_LOG" \
      "LOG_FORMAT=$S_LOG_FORMAT" \
      "RUNTIME_THREADS=$RUNTIME_THREADS" \
      "WEBHOOK_ADDR=127.0.0.1:$S_WEBHOOK_PORT" \
      "WEBHOOK_SECRET=$S_SECRET" \
      "OUTPUT_DIR=$S_DIR/output"
      ;;
    dashboard) printf '%s\n' \
      "REDIS_URL=$S_REDIS_URL" \
      "ELASTICSEARCH_URL=$S_ES_URL" \
      "QUEUE_NAMESPACE=$S_NAMESPACE" \
      "ES_INDEX_PREFIX=$S_INDEX_PREFIX" \
      "RUST_LOG=$RUST_LOG" \
      "LOG_FORMAT=$S_LOG_FORMAT" \
      "RUNTIME_THREADS=$RUNTIME_THREADS" \
      "DASHBOARD_ADDR=127.0.0.1:$S_DASHBOARD_PORT"
      ;;
    producer) printf '%s\n' \
      "RUST_LOG=$RUST_LOG" \
      "LOG_FORMAT=$S_LOG_FORMAT" \
      "RUNTIME_THREADS=$RUNTIME_THREADS" \
      "CONSUMER_URL=http://127.0.0.1:$S_CONSUMER_PORT"
      ;;
    *) die "no such service: $1" ;;
  esac
}

worker_port() { # N: the health/metrics port of worker N (run mode 9100+N, tests: free ports)
  if [ -n "${S_WORKER_PORTS:-}" ]; then
    local ports=($S_WORKER_PORTS); echo "${ports[$(($1 - 1))]:-0}"
  else
    echo $((9100 + $1))
  fi
}

proc_port() { # name: the port it listens on, or "-"
  case $1 in
    consumer) echo "$S_CONSUMER_PORT" ;; webhook) echo "$S_WEBHOOK_PORT" ;;
    dashboard) echo "$S_DASHBOARD_PORT" ;; worker-*) worker_port "${1#worker-}" ;; *) echo "-" ;;
  esac
}

proc_pid() { # name: the pid of a live process started as <name> from $S_BIN, or nothing
  local pf="$S_DIR/pids/$1.pid" pid svc=${1%%-[0-9]*}
  [ -s "$pf" ] || return 1
  pid=$(cat "$pf" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # the pid must still be our binary (pids are reused after a reboot or a crash)
  local cmd; cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmd" == *"$S_BIN/$svc "* ]] || return 1
  echo "$pid"
}

start_proc() { # name: start one process (service = name without its -N suffix) unless it runs
  local name=$1 svc=${1%%-[0-9]*} pid envs=()
  if pid=$(proc_pid "$name"); then log "$name already running (pid $pid)"; return 0; fi
  [ -x "$S_BIN/$svc" ] || die "$S_BIN/$svc is missing: build with cargo build --release --bins"
  mapfile -t envs < <(service_env "$svc" "${name#worker-}")
  [ ${#envs[@]} -gt 0 ] || die "no environment for $name"
  # Each process gets exactly its service's variables (as in a container), nothing inherited.
  # setsid: its own session, so a closed terminal or Ctrl-C does not reach it; exec keeps the pid.
  setsid env -i PATH="$PATH" HOME="${HOME:-/root}" "${envs[@]}" "$S_BIN/$svc" \
    </dev/null >>"$S_DIR/logs/$name.log" 2>&1 &
  echo $! >"$S_DIR/pids/$name.pid"
  log "started $name (pid $!, log $S_DIR/logs/$name.log)"
}

stop_proc() { # name: stop it if it is ours and alive; drop its pidfile
  local pid
  if pid=$(proc_pid "$1"); then log "stopping $1 (pid $pid)"; stop_pidfile "$S_DIR/pids/$1.pid"; fi
  rm -f "$S_DIR/pids/$1.pid"
}

wait_healthy() { # name url [timeout_s]: poll until 2xx; fail with the log's tail if it dies or times out
  local name=$1 url=$2 limit=${3:-90} t=0
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    if ! proc_pid "$name" >/dev/null; then
      warn "$name exited; last lines of $S_DIR/logs/$name.log:"; tail -n 30 "$S_DIR/logs/$name.log" >&2 || true
      die "$name did not come up"
    fi
    t=$((t + 1)); if [ $t -gt $((limit * 5)) ]; then
      tail -n 30 "$S_DIR/logs/$name.log" >&2 || true
      die "$name not healthy at $url after $limit s"
    fi
    sleep 0.2
  done
  log "$name healthy ($url)"
}

stack_up() { # start what is missing of the stack, wait until it is healthy
  mkdir -p "$S_DIR/pids" "$S_DIR/logs" "$S_DIR/output"
  start_proc consumer
  local i
  for i in $(seq 1 "$S_WORKERS"); do start_proc "worker-$i"; done
  for pf in "$S_DIR"/pids/worker-*.pid; do # fewer workers asked for than run: stop the extra ones
    [ -e "$pf" ] || continue
    i=$(basename "$pf" .pid); i=${i#worker-}
    [ "$i" -le "$S_WORKERS" ] || stop_proc "worker-$i"
  done
  start_proc webhook
  start_proc dashboard
  wait_healthy consumer "http://127.0.0.1:$S_CONSUMER_PORT/readyz"
  wait_healthy webhook "http://127.0.0.1:$S_WEBHOOK_PORT/healthz"
  wait_healthy dashboard "http://127.0.0.1:$S_DASHBOARD_PORT/healthz"
  for i in $(seq 1 "$S_WORKERS"); do
    wait_healthy "worker-$i" "http://127.0.0.1:$(worker_port "$i")/readyz"
  done
  if [ "$S_PRODUCER" = yes ]; then start_proc producer; fi
}

stack_names() { # the process names that have a pidfile, in start order
  local n
  for n in consumer $(ls "$S_DIR/pids" 2>/dev/null | sed -n 's/^\(worker-[0-9]*\)\.pid$/\1/p' | sort -t- -k2 -n) \
           webhook dashboard producer; do
    [ -e "$S_DIR/pids/$n.pid" ] && echo "$n"
  done
  return 0
}

stack_down() { # stop every process of the stack: producer first, then the API, workers, the rest
  local n
  [ -d "$S_DIR/pids" ] || return 0
  stop_proc producer
  stop_proc consumer
  for n in $(stack_names); do case $n in worker-*) stop_proc "$n" ;; esac; done
  stop_proc webhook
  stop_proc dashboard
}

stack_status_lines() { # one line per process: name, pid, state, port, log
  local n pid
  for n in $(stack_names); do
    if pid=$(proc_pid "$n"); then state=running; else pid=$(cat "$S_DIR/pids/$n.pid" 2>/dev/null || echo -); state=dead; fi
    printf '%-14s %-8s %-8s %-6s %s\n' "$n" "$pid" "$state" "$(proc_port "$n")" "$S_DIR/logs/$n.log"
  done
}

# Native run mode: fixed ports on loopback, the same ones docker-compose.yml publishes.
RUN_REDIS_PORT=6379
RUN_ES_PORT=9200
RUN_ES_TRANSPORT_PORT=9300

stack_config_run() {
  S_DIR="$RUN_DIR"
  S_BIN="$ROOT/target/release"
  S_REDIS_URL="redis://127.0.0.1:$RUN_REDIS_PORT"
  S_ES_URL="http://127.0.0.1:$RUN_ES_PORT"
  S_NAMESPACE="${QUEUE_NAMESPACE:-conveyor}"
  S_INDEX_PREFIX="${ES_INDEX_PREFIX:-}"
  S_LOG_FORMAT="${LOG_FORMAT:-pretty}"
  S_CONSUMER_PORT=8000 S_WEBHOOK_PORT=8001 S_DASHBOARD_PORT=5000
  S_PRODUCER=yes
  S_WORKER_PORTS=""
  S_SECRET=""
  [ -s "$RUN_DIR/webhook_secret" ] && S_SECRET=$(cat "$RUN_DIR/webhook_secret")
  stack_defaults
}

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

# ---------------------------------------------------------------------------------------------
# The notebook step of `./setup.sh test`: a private stack (random free ports, unique namespace and
# index prefix, against the test Redis + Elasticsearch), a cached Python venv, nbclient.
# ---------------------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

ensure_notebook_venv() { # sets NB_VENV: a venv with notebooks/requirements.txt, cached by its hash
  local hash; hash=$(sha256sum "$ROOT/notebooks/requirements.txt" | cut -c1-12)
  NB_VENV="$CONVEYOR_HOME/venv-$hash"
  if [ -f "$NB_VENV/.complete" ]; then log "reusing the notebook venv $NB_VENV"; return; fi
  apt_install python3-venv
  log "creating the notebook venv $NB_VENV (pip install -r notebooks/requirements.txt)"
  rm -rf "$NB_VENV"; mkdir -p "$CONVEYOR_HOME"
  python3 -m venv "$NB_VENV" || die "python3 -m venv failed"
  "$NB_VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/notebooks/requirements.txt" \
    || die "pip install -r notebooks/requirements.txt failed"
  # a kernel spec of its own, found first through JUPYTER_PATH, so the notebook runs on this venv
  "$NB_VENV/bin/python" -m ipykernel install --prefix "$NB_VENV" --name conveyor-notebook \
    --display-name "Conveyor notebook" >/dev/null || die "ipykernel install failed"
  touch "$NB_VENV/.complete"
}

stack_config_notebook() { # a private stack for the notebook, against the test Redis/ES
  local id; id=$(od -An -tx1 -N4 /dev/urandom | tr -d ' \n')
  S_DIR="$TEST_STATE/stack"
  S_BIN="$ROOT/target/release"
  S_REDIS_URL="$REDIS_URL" S_ES_URL="$ELASTICSEARCH_URL"
  S_NAMESPACE="nb-$id" S_INDEX_PREFIX="nb-$id-"
  S_LOG_FORMAT=json
  S_CONSUMER_PORT=$(free_port) S_WEBHOOK_PORT=$(free_port) S_DASHBOARD_PORT=$(free_port)
  S_WORKERS=2 S_PRODUCER=no
  S_WORKER_PORTS="$(free_port) $(free_port)"
  S_SECRET="nb-secret-$id"
  stack_defaults
}

stack_cleanup_data() { # drop the stack's Redis keys and Elasticsearch indices (shared servers stay clean)
  local host port
  host=$(sed -E 's#redis://([^:/]+):?([0-9]*).*#\1#' <<<"$S_REDIS_URL")
  port=$(sed -E 's#redis://([^:/]+):?([0-9]*).*#\2#' <<<"$S_REDIS_URL"); port=${port:-6379}
  redis-cli -h "$host" -p "$port" --scan --pattern "$S_NAMESPACE:*" 2>/dev/null \
    | xargs -r -n 500 redis-cli -h "$host" -p "$port" unlink >/dev/null 2>&1 || true
  curl -fsS -X DELETE "$S_ES_URL/$S_INDEX_PREFIX*" >/dev/null 2>&1 || true
}

run_notebook() { # execute notebooks/producer_consumer.ipynb against a fresh private stack
  local out="$TEST_STATE/producer_consumer.out.ipynb" rc=0
  ensure_notebook_venv
  stack_config_notebook
  NB_STACK_UP=1
  log "starting a private stack for the notebook (consumer :$S_CONSUMER_PORT, 2 workers, webhook :$S_WEBHOOK_PORT, dashboard :$S_DASHBOARD_PORT, namespace $S_NAMESPACE)"
  stack_up
  log "executing notebooks/producer_consumer.ipynb (output: $out)"
  env CONSUMER_URL="http://127.0.0.1:$S_CONSUMER_PORT" ELASTICSEARCH_URL="$S_ES_URL" \
    WEBHOOK_BASE_URL="http://127.0.0.1:$S_WEBHOOK_PORT" ES_INDEX_PREFIX="$S_INDEX_PREFIX" \
    JUPYTER_PATH="$NB_VENV/share/jupyter" MPLBACKEND=Agg \
    "$NB_VENV/bin/python" "$ROOT/notebooks/execute.py" "$ROOT/notebooks/producer_consumer.ipynb" "$out" \
    || rc=$?
  stack_down_notebook
  return $rc
}

stop_test_stack() { stack_down_notebook || true; }

stack_down_notebook() {
  [ "${NB_STACK_UP:-0}" = 1 ] || return 0
  log "stopping the notebook's stack"
  stack_down
  stack_cleanup_data
  NB_STACK_UP=0
}

# ---------------------------------------------------------------------------------------------
# Verbs
# ---------------------------------------------------------------------------------------------
TEST_REDIS_PORT="${TEST_REDIS_PORT:-16379}"
TEST_ES_PORT="${TEST_ES_PORT:-19200}"
TEST_ES_TRANSPORT_PORT="${TEST_ES_TRANSPORT_PORT:-19300}"

ensure_test_tools() {
  apt_install curl ca-certificates chromium chromium-driver python3-venv
  command -v cargo >/dev/null || die "cargo is missing: install Rust (rustup) first"
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
}

cmd_test() {
  local started=$SECONDS
  ensure_test_tools
  ensure_redis
  ensure_java
  ensure_elasticsearch
  TEST_STATE="$(mktemp -d /tmp/conveyor-test.XXXXXX)"
  chmod 755 "$TEST_STATE"
  stop_test_services() {
    stop_test_stack
    log "stopping the test Redis and Elasticsearch"
    stop_pidfile "$TEST_STATE/redis/redis.pid"
    stop_pidfile "$TEST_STATE/es/es.pid"
    rm -rf "$TEST_STATE"
  }
  trap stop_test_services EXIT
  start_redis "$TEST_REDIS_PORT" "$TEST_STATE/redis"
  start_elasticsearch "$TEST_ES_PORT" "$TEST_ES_TRANSPORT_PORT" "$TEST_STATE/es"

  export REDIS_URL="redis://127.0.0.1:$TEST_REDIS_PORT"
  export ELASTICSEARCH_URL="http://127.0.0.1:$TEST_ES_PORT"
  export RUST_LOG="${RUST_LOG:-warn}"
  export CONVEYOR_TEST_STATE="$TEST_STATE"

  log "cargo fmt --check"
  cargo fmt --all -- --check
  log "cargo clippy (warnings are errors)"
  cargo clippy --workspace --all-targets --quiet -- -D warnings
  log "building release binaries used by the end-to-end tests"
  cargo build --workspace --bins --release --quiet
  export CONVEYOR_BIN_DIR="$ROOT/target/release"
  log "cargo test (Redis $REDIS_URL, Elasticsearch $ELASTICSEARCH_URL)"
  local rc=0
  cargo test --workspace --quiet -- --test-threads="${TEST_THREADS:-4}" || rc=$?
  [ $rc -eq 0 ] || warn "cargo test failed (exit code $rc); running the notebook step anyway"
  log "notebook: notebooks/producer_consumer.ipynb against a private stack"
  local nb_rc=0
  run_notebook || nb_rc=$?
  if [ $nb_rc -eq 0 ]; then log "notebook ran clean"; else warn "notebook failed (exit code $nb_rc)"; fi
  [ $rc -ne 0 ] || rc=$nb_rc
  log "tests finished in $((SECONDS - started)) s with exit code $rc"
  return $rc
}

cmd_dev() { # start the test Redis + Elasticsearch and leave them running, for `cargo test` by hand
  ensure_redis; ensure_java; ensure_elasticsearch
  local dir=/tmp/conveyor-dev; mkdir -p "$dir"; chmod 755 "$dir"
  start_redis "$TEST_REDIS_PORT" "$dir/redis"
  start_elasticsearch "$TEST_ES_PORT" "$TEST_ES_TRANSPORT_PORT" "$dir/es"
  echo "export REDIS_URL=redis://127.0.0.1:$TEST_REDIS_PORT ELASTICSEARCH_URL=http://127.0.0.1:$TEST_ES_PORT"
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

print_urls() {
  cat <<EOT

Conveyor is running ($1 mode, $WORKERS workers).
  dashboard      http://localhost:5000
  consumer API   http://localhost:8000   (POST /messages, GET /stats, /openapi.json)
  workers        /metrics on http://localhost:9101 ... (native mode)
  webhook        http://localhost:8001   (GET /resources/{id})
  Redis          redis://localhost:6379
  Elasticsearch  http://localhost:9200
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
    print_urls docker
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
  stack_config_run
  S_WORKERS=$WORKERS
  stack_up
  print_urls native
  echo "  logs           $RUN_DIR/logs/"
  echo "  status / stop  ./setup.sh status | ./setup.sh stop"
  log "up in $((SECONDS - started)) s"
}

server_pid() { # name: pid of Redis/Elasticsearch if this script started it and it still runs
  local pf="$RUN_DIR/pids/$1.pid" pid
  [ -s "$pf" ] && pid=$(cat "$pf") && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

cmd_stop() {
  local mode; mode=$(cat "$RUN_DIR/mode" 2>/dev/null || echo none)
  if [ "$mode" = docker ]; then
    log "docker compose down"
    WEBHOOK_SECRET="$(webhook_secret)" docker compose down
    rm -f "$RUN_DIR/mode"
    return
  fi
  stack_config_run
  stack_down
  local s
  for s in elasticsearch redis; do
    if server_pid "$s" >/dev/null; then log "stopping $s (pid $(cat "$RUN_DIR/pids/$s.pid"))"; fi
    stop_pidfile "$RUN_DIR/pids/$s.pid"
  done
  rm -f "$RUN_DIR/mode"
  log "stopped (logs kept in $RUN_DIR/logs)"
}

cmd_status() {
  local mode; mode=$(cat "$RUN_DIR/mode" 2>/dev/null || echo none)
  if [ "$mode" = docker ]; then WEBHOOK_SECRET="$(webhook_secret)" docker compose ps; return; fi
  stack_config_run
  printf '%-14s %-8s %-8s %-6s %s\n' NAME PID STATE PORT LOG
  local s port pid log
  for s in redis elasticsearch; do
    if [ $s = redis ]; then port=$RUN_REDIS_PORT; else port=$RUN_ES_PORT; fi
    log="$RUN_DIR/logs/$s.log"
    if pid=$(server_pid "$s"); then
      printf '%-14s %-8s %-8s %-6s %s\n' "$s" "$pid" running "$port" "$log"
    elif { [ $s = redis ] && redis_up "$port"; } || { [ $s = elasticsearch ] && es_up "$port"; }; then
      printf '%-14s %-8s %-8s %-6s %s\n' "$s" - external "$port" "(not started by ./setup.sh)"
    elif [ -e "$RUN_DIR/pids/$s.pid" ]; then
      printf '%-14s %-8s %-8s %-6s %s\n' "$s" "$(cat "$RUN_DIR/pids/$s.pid")" dead "$port" "$log"
    fi
  done
  stack_status_lines
  [ -e "$RUN_DIR/pids/consumer.pid" ] || echo "(the native stack is not running: ./setup.sh)"
}

case "${1:-run}" in
  test) cmd_test ;;
  dev) cmd_dev ;;
  run|up|start) [ $# -gt 0 ] && shift; cmd_run "$@" ;;
  --workers|--workers=*) cmd_run "$@" ;;
  stop|down) cmd_stop ;;
  status) cmd_status ;;
  -h|--help|help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown verb '$1' (use: ./setup.sh [run|stop|status|test])" ;;
esac
