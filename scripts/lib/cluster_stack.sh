# Native cluster mode (sourced by scripts/run.sh): `./setup.sh --cluster [--workers N]` runs the
# topology of docker-compose.cluster.yml without Docker:
# - six `redis-server --cluster-enabled yes` on 127.0.0.1:REDIS_CLUSTER_PORT..+5 (default
#   6391-6396), joined by `redis-cli --cluster create --cluster-replicas 1` (3 masters + 3
#   replicas), each configured as native mode's single Redis (password, AOF fsynced on every
#   write, memory ceiling) and run as the service user: scripts/lib/redis_cluster.sh;
# - two Elasticsearch nodes on ES_CLUSTER_PORT and +1 (default 9210/9211; transport
#   ES_CLUSTER_TRANSPORT_PORT, default 9310/9311): scripts/lib/es_cluster.sh;
# - every Conveyor service through the launcher with REDIS_URL=redis+cluster://…, both
#   Elasticsearch URLs, QUEUE_PARTITIONS=12 and ES_REPLICAS=1 (the environment or .env wins).
# What it started is recorded in <run dir>/cluster.env, so `./setup.sh stop` and `status` in a
# later shell find exactly those nodes (and stop one only if its pidfile names a live process with
# that node's command line and user).
# shellcheck shell=bash
# shellcheck source=scripts/lib/redis_cluster.sh
. "$ROOT/scripts/lib/redis_cluster.sh"
# shellcheck source=scripts/lib/es_cluster.sh
. "$ROOT/scripts/lib/es_cluster.sh"

# The services' defaults on the cluster, as docker-compose.cluster.yml's (tests/tests/compose.rs
# compares them): 12 partitions so each queue spreads over the 3 masters (README "Scaling out"),
# and one replica of every index so each Elasticsearch node holds a copy of every shard.
CLUSTER_QUEUE_PARTITIONS=12
CLUSTER_ES_REPLICAS=1

# cluster_run_native: starts (or reuses) the two clusters, then the services.
cluster_run_native() {
  log "no Docker engine answers: native cluster mode (a 6-node Redis Cluster, a 2-node Elasticsearch cluster, the services; logs and pids in $RUN_DIR)"
  native_prepare
  echo native-cluster >"$RUN_DIR/mode"
  local rbase="${REDIS_CLUSTER_PORT:-6391}" esport="${ES_CLUSTER_PORT:-9210}"
  local estport="${ES_CLUSTER_TRANSPORT_PORT:-9310}"
  local rdir="$STATE_HOME/redis-cluster-$rbase" esdir="$STATE_HOME/es-cluster-$esport"
  [[ "$rbase" =~ ^[0-9]+$ ]] && [ "$rbase" -ge 1 ] && [ "$rbase" -le 55529 ] \
    || die "REDIS_CLUSTER_PORT must be a port of six free ones whose bus ports (+10000) are free too, not '$rbase'"
  # Recorded first: a start that fails half-way is still stopped by ./setup.sh stop.
  (umask 077; printf 'CLUSTER_REDIS_BASE=%s\nCLUSTER_REDIS_DIR=%s\nCLUSTER_ES_PORT=%s\nCLUSTER_ES_DIR=%s\n' \
    "$rbase" "$rdir" "$esport" "$esdir" >"$RUN_DIR/cluster.env")
  local p answering=0
  for p in $(seq "$rbase" $((rbase + 5))); do redis_answers "$p" && answering=$((answering + 1)); done
  if [ $answering -eq 6 ] && redis_cluster_ok "$rbase" "$NATIVE_REDIS_PW"; then
    log "a Redis Cluster already answers on 127.0.0.1:$rbase-$((rbase + 5)) (reused)"
  elif [ $answering -gt 0 ]; then
    die "$answering of the ports $rbase-$((rbase + 5)) already answer, but not as one healthy cluster that takes our password: stop what holds them or set REDIS_CLUSTER_PORT"
  else
    log "starting a 6-node Redis Cluster on 127.0.0.1:$rbase-$((rbase + 5)) as $(as_service id -un) (data in $rdir)"
    mkdir -p "$rdir"; chmod 755 "$rdir"
    start_redis_cluster "$rbase" "$rdir" "$NATIVE_REDIS_PW"
    log "Redis Cluster ready: 3 masters + 3 replicas, cluster_state:ok"
    # Each node at native mode's Redis priority (docker-compose.cluster.yml: cpu_shares alike).
    for p in $(seq "$rbase" $((rbase + 5))); do weigh_redis "$(cat "$rdir/$p/redis.pid")"; done
  fi
  for p in $(seq "$rbase" $((rbase + 5))); do ln -sf "$rdir/$p/redis.log" "$RUN_DIR/logs/redis-$p.log"; done
  start_es_cluster "$esport" "$estport" "$esdir"
  ln -sf "$esdir/node0/logs/conveyor-cluster-$esport.log" "$RUN_DIR/logs/es-1.log"
  ln -sf "$esdir/node1/logs/conveyor-cluster-$esport.log" "$RUN_DIR/logs/es-2.log"
  export QUEUE_PARTITIONS="${QUEUE_PARTITIONS:-$CLUSTER_QUEUE_PARTITIONS}"
  export ES_REPLICAS="${ES_REPLICAS:-$CLUSTER_ES_REPLICAS}"
  log "the services get QUEUE_PARTITIONS=$QUEUE_PARTITIONS and ES_REPLICAS=$ES_REPLICAS"
  SHOWN_REDIS="$(redis_cluster_url "$rbase") (nodes $rbase-$((rbase + 5)))"
  SHOWN_ES=$(es_cluster_urls "$esport")
  native_services "$(redis_cluster_url "$rbase")" "$(es_cluster_urls "$esport")"
}

# redis_cluster_ok BASE PASSWORD_FILE: all six nodes say cluster_state:ok with that password.
redis_cluster_ok() {
  local p
  for p in $(seq "$1" $(($1 + 5))); do
    cluster_cli "$2" -p "$p" cluster info 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok' || return 1
  done
}

# cluster_var NAME: a value recorded in <run dir>/cluster.env (empty when there is none).
cluster_var() {
  sed -n "s/^$1=//p" "$RUN_DIR/cluster.env" 2>/dev/null | head -n 1
}

# cluster_stop_native: stops the nodes a `./setup.sh --cluster` run started (none if the last run
# was not one): Elasticsearch's as its user, Redis's as the run dir's owner (the service user).
cluster_stop_native() {
  [ -f "$RUN_DIR/cluster.env" ] || return 0
  local esdir rdir
  esdir=$(cluster_var CLUSTER_ES_DIR) rdir=$(cluster_var CLUSTER_REDIS_DIR)
  [ -z "$esdir" ] || stop_es_cluster "$esdir" "$ES_USER"
  [ -z "$rdir" ] || stop_redis_cluster "$rdir" "$(stat -c %U "$RUN_DIR")"
  rm -f "$RUN_DIR/cluster.env"
}

# cluster_status_native: one line per Redis node (its role, as the node says) and per
# Elasticsearch node, in cmd_status's columns.
cluster_status_native() {
  local rbase rdir esport esdir user pw="$RUN_DIR/secrets/redis_password" i p pid state log
  rbase=$(cluster_var CLUSTER_REDIS_BASE) rdir=$(cluster_var CLUSTER_REDIS_DIR)
  esport=$(cluster_var CLUSTER_ES_PORT) esdir=$(cluster_var CLUSTER_ES_DIR)
  user=$(stat -c %U "$RUN_DIR")
  for i in 0 1 2 3 4 5; do
    p=$((rbase + i)) log="$rdir/$p/redis.log"
    if pid=$(owned_pid "$rdir/$p/redis.pid" "redis-server 127.0.0.1:$p" "$user"); then
      state=$(cluster_cli "$pw" -p "$p" role 2>/dev/null | head -n 1 | tr -d '\r')
      [ -n "$state" ] || state=running
    elif redis_answers "$p"; then pid=- state=external log="(not started by ./setup.sh)"
    else pid=$(cat "$rdir/$p/redis.pid" 2>/dev/null || echo -) state=dead; fi
    printf '%-14s %-8s %-9s %-6s %s\n' "redis-$((i + 1))" "$pid" "$state" "$p" "$log"
  done
  for i in 0 1; do
    p=$((esport + i)) log="$esdir/node$i/logs/conveyor-cluster-$esport.log"
    if pid=$(owned_pid "$esdir/node$i/es.pid" "$ES_PATTERN" "$ES_USER"); then state=running
    elif es_up "$p"; then pid=- state=external log="(not started by ./setup.sh)"
    else pid=$(cat "$esdir/node$i/es.pid" 2>/dev/null || echo -) state=dead; fi
    printf '%-14s %-8s %-9s %-6s %s\n' "es-$((i + 1))" "$pid" "$state" "$p" "$log"
  done
}
