#!/usr/bin/env bash
# Conveyor — one script to install, run, stop and test the whole stack.
#
#   ./setup.sh          run the stack (Docker when an engine answers, native otherwise)
#   ./setup.sh stop     stop what `./setup.sh` started, and only that
#   ./setup.sh status   list the processes of the native stack
#   ./setup.sh test     install what is missing, start a private Redis + Elasticsearch,
#                       run fmt, clippy and every test, stop them again; exit code = verdict
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
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save "" --appendonly "$aof" \
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

cmd_run() { warn "not yet: the run mode arrives with the 'run it like a user' issue"; }
cmd_stop() { warn "not yet: nothing to stop"; }
cmd_status() { warn "not yet: nothing runs"; }

case "${1:-run}" in
  test) cmd_test ;;
  dev) cmd_dev ;;
  run|up|start) cmd_run ;;
  stop|down) cmd_stop ;;
  status) cmd_status ;;
  -h|--help|help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown verb '$1' (use: ./setup.sh [run|stop|status|test])" ;;
esac
