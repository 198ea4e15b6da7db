# Provisioning (sourced by setup.sh): what Conveyor needs on the machine, installed as root when
# missing (apt packages, a JDK, Elasticsearch from Maven Central, the notebook's venv), and the
# Redis and Elasticsearch servers started and stopped on loopback, each in its own state dir.
# `./setup.sh dev` / `./setup.sh dev stop` live here too: the test servers for `cargo test`.
# It never starts a Conveyor service: that is the launcher's job (scripts/run.sh, scripts/test.sh).
# shellcheck shell=bash

# Pinned versions. Elasticsearch comes from Maven Central's integration-test distribution
# (a real, stripped Elasticsearch). 9.3.0 is not published there; 9.2.4 is the newest 9.x that is.
# The zip is checked against ES_ZIP_SHA512 before anything is unpacked. The pin was computed once
# from the artifact as fetched on 2026-12-02 (trust on first use: the repository reached from here
# serves no checksum files for it, so Maven could not check it, and --strict-checksums fails);
# another version needs its own digest: ES_ZIP_SHA512=<sha512 of elasticsearch-<version>.zip>.
ES_VERSION="${ES_VERSION:-9.2.4}"
case "$ES_VERSION" in
  9.2.4) ES_ZIP_SHA512_PINNED="5da6465950f7d26ca293794ead3d840f0698ce99bb15b5db7d10c19199e3431dba21c83c737f4befa4fc282e12e5f215343a4cb7da52ac85e52b0c488e7b7057" ;;
  *) ES_ZIP_SHA512_PINNED="" ;;
esac
ES_ZIP_SHA512="${ES_ZIP_SHA512:-$ES_ZIP_SHA512_PINNED}"
ES_JAVA_HOME_DEFAULT="/usr/lib/jvm/temurin-25-jdk-amd64"
ES_USER="conveyor-es"
CONVEYOR_HOME="${CONVEYOR_HOME:-/opt/conveyor}"     # unpacked Elasticsearch (outside /root: ES user must read it)
STATE_HOME="${CONVEYOR_STATE:-/var/lib/conveyor}"   # ES data/logs (owned by the ES user)
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"

# The test servers (`./setup.sh test`, `./setup.sh dev`).
TEST_REDIS_PORT="${TEST_REDIS_PORT:-16379}"
TEST_ES_PORT="${TEST_ES_PORT:-19200}"
TEST_ES_TRANSPORT_PORT="${TEST_ES_TRANSPORT_PORT:-19300}"
DEV_DIR="${CONVEYOR_DEV_DIR:-$STATE_HOME/dev}"    # pids, data and logs of `./setup.sh dev`

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
    [ -n "$ES_ZIP_SHA512" ] || die "no pinned SHA-512 for Elasticsearch $ES_VERSION: set ES_ZIP_SHA512"
    log "fetching Elasticsearch $ES_VERSION (Maven Central integ-test-zip, ~95 MB, cached in ~/.m2)"
    local tmp; tmp="$(mktemp -d)"
    mvn -B -q "$DEP_PLUGIN:copy" \
      -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" \
      -DoutputDirectory="$tmp" -Dmdep.stripVersion=false >/dev/null \
      || { rm -rf "$tmp"; die "could not fetch Elasticsearch $ES_VERSION from Maven Central"; }
    mkdir -p "$CONVEYOR_HOME"
    unpack_verified_zip "$tmp/elasticsearch-$ES_VERSION.zip" "$ES_ZIP_SHA512" "$CONVEYOR_HOME" \
      || { rm -rf "$tmp"; die "Elasticsearch $ES_VERSION not installed: its zip failed the SHA-512 check"; }
    rm -rf "$tmp"
  fi
  ensure_system_user "$ES_USER" "Elasticsearch refuses to run as root"
  chown -R "$ES_USER:$ES_USER" "$ES_HOME"
  mkdir -p "$STATE_HOME"; chmod 755 "$STATE_HOME" # the ES and service users enter their dirs in it
}

# unpack_verified_zip ZIP SHA512 DEST: unzip ZIP into DEST only if its SHA-512 is SHA512;
# otherwise say so and return 1 with nothing unpacked (a test flips a byte and checks both).
unpack_verified_zip() {
  local zip=$1 want=$2 dest=$3 got
  got=$(sha512sum "$zip" | cut -d' ' -f1) || return 1
  if [ -z "$want" ] || [ "$got" != "$want" ]; then
    warn "refusing $(basename "$zip"): SHA-512 $got, pinned ${want:-(none)}"
    return 1
  fi
  unzip -q "$zip" -d "$dest"
}

ensure_system_user() { # NAME WHY: a system user + group without home or login shell
  id "$1" >/dev/null 2>&1 && return 0
  log "creating system user $1 ($2)"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$1"
}

ensure_test_tools() { # what `./setup.sh test` needs besides Redis and Elasticsearch
  apt_install curl ca-certificates chromium chromium-driver python3-venv
  command -v cargo >/dev/null || die "cargo is missing: install Rust (rustup) first"
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
}

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

# ---------------------------------------------------------------------------------------------
# Redis and Elasticsearch on loopback, each in its own state dir
# ---------------------------------------------------------------------------------------------
redis_up() { redis-cli -p "$1" ping 2>/dev/null | grep -q PONG; }
# redis_answers PORT: a Redis answers there, password or not (NOAUTH counts)
redis_answers() { redis-cli -p "$1" ping 2>/dev/null | grep -Eq 'PONG|NOAUTH'; }
# redis_up_auth PORT PASSWORD_FILE: PONG with that password (REDISCLI_AUTH: not on a command line)
redis_up_auth() {
  REDISCLI_AUTH="$(cat "$2" 2>/dev/null)" redis-cli --no-auth-warning -p "$1" ping 2>/dev/null | grep -q PONG
}

# wait_redis PORT PIDFILE LOGFILE [PASSWORD_FILE]: until the Redis just started there answers PING.
# While it replays its append-only file (PING answers LOADING) it is waited for as long as its
# process lives, up to REDIS_START_TIMEOUT seconds (default 300): after a heavy run the AOF can
# hold up to auto-aof-rewrite-min-size (1 GB) of since-deleted stream entries, tens of seconds
# of replay on a slow machine. A Redis whose pidfile names no live redis-server 5 s after the
# start (it exited, or never wrote one) fails then.
wait_redis() {
  local port=$1 pidfile=$2 logfile=$3 pwfile=${4:-} start=$SECONDS said=0 reply pid
  local limit=${REDIS_START_TIMEOUT:-300}
  [[ "$limit" =~ ^[0-9]+$ ]] || die "REDIS_START_TIMEOUT must be a number of seconds, not '$limit'"
  while (( SECONDS - start < limit )); do
    if [ -n "$pwfile" ]; then
      reply=$(REDISCLI_AUTH="$(cat "$pwfile" 2>/dev/null)" redis-cli --no-auth-warning -p "$port" ping 2>/dev/null || true)
    else
      reply=$(redis-cli -p "$port" ping 2>/dev/null || true)
    fi
    case "$reply" in
      PONG) return 0 ;;
      LOADING*) [ "$said" = 1 ] || log "Redis on $port is loading its data (append-only file); waiting"; said=1 ;;
    esac
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if (( SECONDS - start >= 5 )) && ! grep -qa redis-server "/proc/${pid:-0}/cmdline" 2>/dev/null; then break; fi
    sleep 0.1
  done
  die "Redis did not start on $port (see $logfile)"
}

start_redis() { # port dir aof(yes|no)
  local port=$1 dir=$2 aof=${3:-no}
  if redis_up "$port"; then log "Redis already answers on 127.0.0.1:$port"; return; fi
  mkdir -p "$dir"
  log "starting Redis on 127.0.0.1:$port"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save "" --appendonly "$aof" --appendfsync always \
    --maxmemory "${REDIS_MAXMEMORY:-1gb}" --maxmemory-policy noeviction \
    --protected-mode yes >/dev/null
  wait_redis "$port" "$dir/redis.pid" "$dir/redis.log"
}

# REDIS_NICE: native mode's Redis runs at this nice value (its session group and its threads).
# Redis runs every command of every service on one thread: on a busy machine each wait of that
# thread for a core delays every service at once (the API's answers, the workers' reads and
# acks). -5 weighs it about three services (docker-compose gives it cpu_shares 3072 alike).
# bench/stack.sh, default command, same hour: 2 workers 22,422 stored/s with it, 19,512
# without; 4 workers 21,834 and 22,321 with, 18,467 and 18,674 without. 0 leaves it alone.
REDIS_NICE="${REDIS_NICE:--5}"

# weigh_redis PID: gives Redis REDIS_NICE (its session group, where the kernel has them, and
# each of its threads). Raising a priority takes root: otherwise Redis keeps the default weight,
# and this says so.
weigh_redis() {
  local pid=$1 t ok=1
  [ "$REDIS_NICE" != 0 ] || return 0
  if [ -z "$pid" ] || [ ! -d "/proc/$pid" ]; then
    warn "Redis's pid ('$pid') names no process: its CPU weight is left alone"; return 0
  fi
  if [ -e "/proc/$pid/autogroup" ]; then
    echo "$REDIS_NICE" 2>/dev/null >"/proc/$pid/autogroup" || ok=0
  fi
  for t in /proc/"$pid"/task/*; do
    renice -n "$REDIS_NICE" -p "${t##*/}" >/dev/null 2>&1 || ok=0
  done
  if [ "$ok" = 1 ]; then
    log "Redis (pid $pid) runs at nice $REDIS_NICE: the thread every service waits on"
  else
    warn "Redis (pid $pid) keeps the default CPU weight: nice $REDIS_NICE takes root"
  fi
}

# start_native_redis PORT DATA_DIR CONF PASSWORD_FILE PIDFILE LOGFILE: native mode's Redis, run as
# $SERVICE_USER (as_service) with AOF fsynced on every write (appendfsync always) and a password:
# requirepass is written into CONF (created private, 0600) from PASSWORD_FILE, never on a command
# line, where ps would show it to every user.
start_native_redis() {
  local port=$1 dir=$2 conf=$3 pwfile=$4 pidfile=$5 logfile=$6
  if redis_answers "$port"; then log "Redis already answers on 127.0.0.1:$port"; return; fi
  mkdir -p "$dir"; chmod 700 "$dir"
  [ "$(id -u)" -ne 0 ] || chown -R "$SERVICE_USER:$SERVICE_USER" "$dir" # data of a Redis run as root before
  write_native_redis_conf "$port" "$dir" "$conf" "$pwfile" "$pidfile" "$logfile"
  [ "$(id -u)" -ne 0 ] || chown "$SERVICE_USER:$SERVICE_USER" "$conf"
  log "starting Redis on 127.0.0.1:$port as $(as_service id -un), with a password ($pwfile)"
  (umask 077; as_service redis-server "$conf" >/dev/null) # its pidfile and log private too
  wait_redis "$port" "$pidfile" "$logfile" "$pwfile"
  weigh_redis "$(cat "$pidfile")"
}

# write_native_redis_conf PORT DIR CONF PWFILE PIDFILE LOGFILE: native mode's Redis configuration
# (every write on disk before its answer: AOF with fsync always; a memory ceiling that refuses
# writes instead of evicting jobs; a password), also used by bench/stack.sh so that its figures
# are the default stack's.
write_native_redis_conf() {
  local port=$1 dir=$2 conf=$3 pwfile=$4 pidfile=$5 logfile=$6
  (umask 077; : >"$conf")
  cat >"$conf" <<EOT
port $port
bind 127.0.0.1
protected-mode yes
dir $dir
daemonize yes
pidfile $pidfile
logfile $logfile
save ""
appendonly yes
appendfsync always
auto-aof-rewrite-min-size 1gb
maxmemory ${REDIS_MAXMEMORY:-1gb}
maxmemory-policy noeviction
requirepass $(cat "$pwfile")
EOT
}

# owned_pid PIDFILE PATTERN [USER]: the pid in PIDFILE if that process is alive, its command line
# contains PATTERN (a fixed string) and, given USER, it runs as USER (pids are reused; a pidfile
# alone proves nothing).
owned_pid() {
  local pf=$1 pattern=$2 user=${3:-} pid
  [ -s "$pf" ] || return 1
  pid=$(cat "$pf" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[1-9][0-9]*$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern" || return 1
  [ -z "$user" ] || [ "$(stat -c %U "/proc/$pid")" = "$user" ] || return 1
  echo "$pid"
}

stop_pidfile() { # pidfile pattern [name [user]]: TERM, wait, then KILL, if the pid is ours; drop the pidfile
  local pf=$1 pattern=$2 name=${3:-} user=${4:-} pid
  [ -f "$pf" ] || return 0
  if pid=$(owned_pid "$pf" "$pattern" "$user"); then
    [ -z "$name" ] || log "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  elif [ -n "$name" ] && [ -s "$pf" ]; then
    log "$name: pid $(head -c 20 "$pf") is not ours (command line, user); left alone"
  fi
  rm -f "$pf"
}
REDIS_PATTERN="redis-server"
ES_PATTERN="org.elasticsearch.bootstrap.Elasticsearch"

es_up() { curl -fsS "http://127.0.0.1:$1/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1; }

start_elasticsearch() { # http_port transport_port state_dir
  local port=$1 tport=$2 dir=$3
  if es_up "$port"; then log "Elasticsearch already answers on 127.0.0.1:$port"; return; fi
  mkdir -p "$dir/data" "$dir/logs"
  rm -rf "$dir/config"; cp -r "$ES_HOME/config" "$dir/config"
  cat > "$dir/config/elasticsearch.yml" <<EOT
cluster.name: conveyor
node.name: conveyor-1
discovery.type: single-node
network.host: 127.0.0.1
http.port: $port
transport.port: $tport
EOT
  es_shared_settings "$dir" >> "$dir/config/elasticsearch.yml"
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
# ./setup.sh dev [stop]: the test Redis + Elasticsearch left running for `cargo test` by hand
# ---------------------------------------------------------------------------------------------
cmd_dev() {
  ensure_redis; ensure_java; ensure_elasticsearch
  mkdir -p "$DEV_DIR"; chmod 755 "$DEV_DIR"
  start_redis "$TEST_REDIS_PORT" "$DEV_DIR/redis"
  start_elasticsearch "$TEST_ES_PORT" "$TEST_ES_TRANSPORT_PORT" "$DEV_DIR/es"
  log "stop them with ./setup.sh dev stop"
  echo "export REDIS_URL=redis://127.0.0.1:$TEST_REDIS_PORT ELASTICSEARCH_URL=http://127.0.0.1:$TEST_ES_PORT"
}

cmd_dev_stop() { # stops what `./setup.sh dev` started (its pidfiles in $DEV_DIR), and only that
  local any=0
  if owned_pid "$DEV_DIR/redis/redis.pid" "$REDIS_PATTERN" >/dev/null; then any=1; fi
  if owned_pid "$DEV_DIR/es/es.pid" "$ES_PATTERN" >/dev/null; then any=1; fi
  stop_pidfile "$DEV_DIR/redis/redis.pid" "$REDIS_PATTERN" "the dev Redis"
  stop_pidfile "$DEV_DIR/es/es.pid" "$ES_PATTERN" "the dev Elasticsearch"
  if [ $any -eq 0 ]; then log "nothing to stop: no Redis or Elasticsearch started by ./setup.sh dev runs"; fi
}

# es_shared_settings DIR: the elasticsearch.yml lines every Elasticsearch node of ours shares (the
# single node and each node of the 2-node cluster, scripts/lib/es_cluster.sh): data and logs under
# DIR, security off on loopback, and disk watermarks on, as absolute free space: shards stop being
# allocated below 2 GB free and indices turn read-only below 500 MB (writes then fail loudly, and
# the workers retry), instead of the disk filling up. Absolute values keep a small dev disk at 51%
# use from tripping them.
es_shared_settings() {
  cat <<EOT
path.data: $1/data
path.logs: $1/logs
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: true
cluster.routing.allocation.disk.watermark.low: 2gb
cluster.routing.allocation.disk.watermark.high: 1gb
cluster.routing.allocation.disk.watermark.flood_stage: 500mb
action.destructive_requires_name: false
EOT
}
