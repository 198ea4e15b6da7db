# shellcheck shell=bash
# A local Redis Cluster for `./setup.sh test` (sourced by scripts/test.sh): six Debian
# `redis-server --cluster-enabled yes` on 127.0.0.1:BASE..BASE+5 (cluster bus: port + 10000),
# joined by `redis-cli --cluster create --cluster-replicas 1` into 3 masters + 3 replicas.
# The queue's suite runs against it through TEST_REDIS_CLUSTER_URL (queue/tests/modes.rs).

TEST_REDIS_CLUSTER_PORT="${TEST_REDIS_CLUSTER_PORT:-17001}" # nodes on 17001..17006

# start_redis_cluster BASE DIR: starts the six nodes, creates the cluster and waits until every
# node says cluster_state:ok and knows all six nodes.
start_redis_cluster() {
  local base=$1 dir=$2 ports=() p i ok
  for i in 0 1 2 3 4 5; do
    p=$((base + i)); ports+=("$p")
    ! redis_answers "$p" || die "port $p already answers: set TEST_REDIS_CLUSTER_PORT to a free range of six ports"
    mkdir -p "$dir/$p"
    redis-server --port "$p" --bind 127.0.0.1 --dir "$dir/$p" --daemonize yes \
      --pidfile "$dir/$p/redis.pid" --logfile "$dir/$p/redis.log" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --save "" --appendonly yes --appendfsync everysec --protected-mode yes >/dev/null
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 1 50); do redis_up "$p" && break; sleep 0.1; done
    redis_up "$p" || die "cluster node $p did not start (see $dir/$p/redis.log)"
  done
  redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") \
    --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
    || die "redis-cli --cluster create failed (see $dir/create.log)"
  for _ in $(seq 1 300); do
    ok=1
    for p in "${ports[@]}"; do
      redis-cli -p "$p" cluster info 2>/dev/null | tr -d '\r' \
        | grep -qx 'cluster_state:ok' || ok=0
      redis-cli -p "$p" cluster info 2>/dev/null | tr -d '\r' \
        | grep -qx 'cluster_known_nodes:6' || ok=0
    done
    [ $ok -eq 0 ] || return 0
    sleep 0.1
  done
  die "the Redis Cluster on $base..$((base + 5)) did not reach cluster_state:ok within 30 s"
}

# stop_redis_cluster DIR: stops every node start_redis_cluster started there.
stop_redis_cluster() {
  local pf
  for pf in "$1"/*/redis.pid; do
    [ -e "$pf" ] && stop_pidfile "$pf" "$REDIS_PATTERN"
  done
  return 0
}

# redis_cluster_url BASE: the URL the services and tests take for it.
redis_cluster_url() {
  local base=$1
  echo "redis+cluster://127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
}
