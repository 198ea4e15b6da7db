# shellcheck shell=bash
# A local Redis Cluster for `./setup.sh test` (sourced by scripts/test.sh) and for the native
# cluster run (`./setup.sh --cluster`, scripts/lib/cluster_stack.sh): six Debian
# `redis-server --cluster-enabled yes` on 127.0.0.1:BASE..BASE+5 (cluster bus: port + 10000),
# joined by `redis-cli --cluster create --cluster-replicas 1` into 3 masters + 3 replicas.
# The queue's suite runs against it through TEST_REDIS_CLUSTER_URL (queue/tests/modes.rs).

TEST_REDIS_CLUSTER_PORT="${TEST_REDIS_CLUSTER_PORT:-17001}" # nodes on 17001..17006

# start_redis_cluster BASE DIR [PASSWORD_FILE]: starts the six nodes, creates the cluster and
# waits until every node says cluster_state:ok and knows all six nodes. Without PASSWORD_FILE
# (the test cluster): no password, AOF fsynced every second, as whoever runs it. With it (native
# run mode, `./setup.sh --cluster`, scripts/lib/cluster_stack.sh): each node is configured as
# native mode's single Redis (write_native_redis_conf: AOF fsynced on every write, the memory
# ceiling, requirepass from the file in a private config file, never on a command line) plus the
# cluster settings and masterauth (a replica authenticates to its master with it), and runs as
# $SERVICE_USER. Nodes that already belong to a cluster (a restart: nodes.conf in DIR) are not
# created again, only waited for.
start_redis_cluster() {
  local base=$1 dir=$2 pwfile=${3:-} ports=() p i ok
  for i in 0 1 2 3 4 5; do
    p=$((base + i)); ports+=("$p")
    ! redis_answers "$p" || die "port $p already answers: choose a free range of six ports (TEST_REDIS_CLUSTER_PORT for the tests, REDIS_CLUSTER_PORT for ./setup.sh --cluster)"
    mkdir -p "$dir/$p"
    if [ -n "$pwfile" ]; then
      start_native_cluster_node "$p" "$dir/$p" "$pwfile"
    else
      redis-server --port "$p" --bind 127.0.0.1 --dir "$dir/$p" --daemonize yes \
        --pidfile "$dir/$p/redis.pid" --logfile "$dir/$p/redis.log" \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
        --save "" --appendonly yes --appendfsync everysec --protected-mode yes >/dev/null
    fi
  done
  for p in "${ports[@]}"; do
    wait_redis "$p" "$dir/$p/redis.pid" "$dir/$p/redis.log" "$pwfile" # its AOF replayed first
  done
  if ! cluster_cli "$pwfile" -p "$base" cluster info 2>/dev/null | tr -d '\r' | grep -qx 'cluster_known_nodes:6'; then
    cluster_cli "$pwfile" --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") \
      --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
      || die "redis-cli --cluster create failed (see $dir/create.log)"
  fi
  for _ in $(seq 1 300); do
    ok=1
    for p in "${ports[@]}"; do
      cluster_cli "$pwfile" -p "$p" cluster info 2>/dev/null | tr -d '\r' \
        | grep -qx 'cluster_state:ok' || ok=0
      cluster_cli "$pwfile" -p "$p" cluster info 2>/dev/null | tr -d '\r' \
        | grep -qx 'cluster_known_nodes:6' || ok=0
    done
    [ $ok -eq 0 ] || return 0
    sleep 0.1
  done
  die "the Redis Cluster on $base..$((base + 5)) did not reach cluster_state:ok within 30 s"
}

# cluster_cli PASSWORD_FILE ARGS...: redis-cli ARGS, authenticated with the password in the file
# when one is given (through REDISCLI_AUTH: never on a command line).
cluster_cli() {
  local pwfile=$1; shift
  if [ -n "$pwfile" ]; then REDISCLI_AUTH="$(cat "$pwfile")" redis-cli --no-auth-warning "$@"
  else redis-cli "$@"; fi
}

# start_native_cluster_node PORT DIR PASSWORD_FILE: one node of the native run's cluster, as
# $SERVICE_USER, its configuration (0600) in DIR/redis.conf, pidfile and log in DIR.
start_native_cluster_node() {
  local port=$1 dir=$2 pwfile=$3 conf=$2/redis.conf
  chmod 700 "$dir"
  write_native_redis_conf "$port" "$dir" "$conf" "$pwfile" "$dir/redis.pid" "$dir/redis.log"
  cat >>"$conf" <<EOT
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 5000
masterauth $(cat "$pwfile")
EOT
  [ "$(id -u)" -ne 0 ] || chown -R "$SERVICE_USER:$SERVICE_USER" "$dir"
  (umask 077; as_service redis-server "$conf" >/dev/null)
}

# stop_redis_cluster DIR [USER]: stops every node start_redis_cluster started there (a pidfile's
# process only if its command line is that node's and, given USER, it runs as USER).
stop_redis_cluster() {
  local pf p
  for pf in "$1"/*/redis.pid; do
    [ -e "$pf" ] || continue
    p=$(basename "$(dirname "$pf")")
    stop_pidfile "$pf" "redis-server 127.0.0.1:$p" "${2:+redis $p}" "${2:-}"
  done
  return 0
}

# redis_cluster_url BASE: the URL the services and tests take for it.
redis_cluster_url() {
  local base=$1
  echo "redis+cluster://127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
}
