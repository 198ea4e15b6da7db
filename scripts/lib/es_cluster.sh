# A real 2-node Elasticsearch cluster on loopback (sourced by setup.sh): `./setup.sh test` runs
# tests/tests/es_cluster.rs against it, `./setup.sh dev cluster [stop]` leaves one running for
# `cargo test` by hand, and `./setup.sh --cluster` runs the stack on one
# (scripts/lib/cluster_stack.sh). Same install (ES_HOME), same user (conveyor-es) as the single node.
#
# Node 0 is the only master-eligible node (roles master + data, the one name in
# cluster.initial_master_nodes); node 1 is data-only. Two master-eligible nodes would need both
# for a quorum, so stopping either would stop the cluster; with one master, stopping the
# data-only node leaves the master and, with ES_REPLICAS=1, a copy of every shard (the cluster
# turns yellow and keeps serving). Stopping node 0 stops the cluster: that is not what the test
# shows. Node i listens on http_port+i and transport_port+i; heap 384m each.
# shellcheck shell=bash

# The test cluster (`./setup.sh test`) and the dev one (`./setup.sh dev cluster`): first node's
# ports, the second node adds one. They differ from the single test node (19200/19300).
TEST_ES_CLUSTER_PORT="${TEST_ES_CLUSTER_PORT:-19240}"
TEST_ES_CLUSTER_TRANSPORT_PORT="${TEST_ES_CLUSTER_TRANSPORT_PORT:-19340}"
DEV_ES_CLUSTER_PORT="${DEV_ES_CLUSTER_PORT:-19220}"
DEV_ES_CLUSTER_TRANSPORT_PORT="${DEV_ES_CLUSTER_TRANSPORT_PORT:-19320}"

# es_cluster_urls HTTP_PORT: the comma-separated node URLs (what ELASTICSEARCH_URL takes).
es_cluster_urls() { echo "http://127.0.0.1:$1,http://127.0.0.1:$(($1 + 1))"; }

# es_cluster_ready HTTP_PORT: both nodes joined and every shard assigned (green).
es_cluster_ready() {
  curl -fsS "http://127.0.0.1:$1/_cluster/health?wait_for_nodes=2&wait_for_status=green&timeout=1s" \
    >/dev/null 2>&1
}

# start_es_cluster_node I HTTP_PORT TRANSPORT_PORT DIR: starts node I (0 or 1) in the background,
# unless it already answers; does not wait for it.
start_es_cluster_node() {
  local i=$1 port=$2 tport=$3 dir=$4
  local nport=$((port + i)) ntport=$((tport + i)) ndir="$dir/node$i" roles
  if curl -fsS "http://127.0.0.1:$nport/_cluster/health?timeout=1s" >/dev/null 2>&1 \
    || owned_pid "$ndir/es.pid" "$ES_PATTERN" >/dev/null; then
    return 0
  fi
  if [ "$i" = 0 ]; then roles="[master, data]"; else roles="[data]"; fi
  mkdir -p "$ndir/data" "$ndir/logs"
  rm -rf "$ndir/config"; cp -r "$ES_HOME/config" "$ndir/config"
  cat > "$ndir/config/elasticsearch.yml" <<EOT
cluster.name: conveyor-cluster-$port
node.name: conveyor-cluster-$i
node.roles: $roles
network.host: 127.0.0.1
http.port: $nport
transport.port: $ntport
discovery.seed_hosts: ["127.0.0.1:$tport"]
EOT
  [ "$i" != 0 ] || echo "cluster.initial_master_nodes: [conveyor-cluster-0]" >> "$ndir/config/elasticsearch.yml"
  es_shared_settings "$ndir" >> "$ndir/config/elasticsearch.yml"
  # The start command as a script of its own: the test runs it to bring a stopped node back
  # (ES_CLUSTER_RESTART), with the same config and data.
  cat > "$ndir/start.sh" <<EOT
#!/bin/sh
exec runuser -u "$ES_USER" -- env ES_JAVA_HOME="$ES_JAVA_HOME" ES_PATH_CONF="$ndir/config" \\
  ES_JAVA_OPTS="-Xms384m -Xmx384m" "$ES_HOME/bin/elasticsearch" -d -p "$ndir/es.pid" \\
  >"$ndir/logs/startup.out" 2>&1
EOT
  chmod 755 "$ndir/start.sh"
  chown -R "$ES_USER:$ES_USER" "$dir"
  "$ndir/start.sh" \
    || die "Elasticsearch cluster node $i failed to start (see $ndir/logs/conveyor-cluster-$port.log)"
}

# start_es_cluster HTTP_PORT TRANSPORT_PORT DIR: both nodes (started at once, only those that do
# not answer yet), then waits up to 180 s for 2 nodes and green.
start_es_cluster() {
  local port=$1 tport=$2 dir=$3
  if es_cluster_ready "$port"; then log "the Elasticsearch cluster already answers on $(es_cluster_urls "$port")"; return; fi
  mkdir -p "$dir"; chmod 755 "$dir"
  log "starting a 2-node Elasticsearch $ES_VERSION cluster on $(es_cluster_urls "$port")"
  local p0 p1
  start_es_cluster_node 0 "$port" "$tport" "$dir" & p0=$!
  start_es_cluster_node 1 "$port" "$tport" "$dir" & p1=$!
  wait "$p0" || die "Elasticsearch cluster node 0 did not start (see $dir/node0/logs)"
  wait "$p1" || die "Elasticsearch cluster node 1 did not start (see $dir/node1/logs)"
  local t=0
  until es_cluster_ready "$port"; do
    t=$((t + 1)); [ $t -le 180 ] || die "Elasticsearch cluster not ready after 180 s (see $dir/node*/logs)"
    [ $((t % 15)) -eq 0 ] && log "  still waiting for the Elasticsearch cluster ($t s)"
    sleep 1
  done
  log "Elasticsearch cluster ready (2 nodes, green) on $(es_cluster_urls "$port")"
}

# stop_es_cluster DIR [USER]: stops both nodes (those whose pidfile is ours: Elasticsearch's
# command line and, given USER, running as USER; then each is named as it stops).
stop_es_cluster() {
  local dir=$1 user=${2:-}
  stop_pidfile "$dir/node1/es.pid" "$ES_PATTERN" "${user:+Elasticsearch node 1}" "$user"
  stop_pidfile "$dir/node0/es.pid" "$ES_PATTERN" "${user:+Elasticsearch node 0}" "$user"
}

# ./setup.sh dev cluster [stop]: the dev cluster left running (state in $DEV_DIR/es-cluster).
# Re-running it starts only a node that is down (e.g. after tests/tests/es_cluster.rs stopped one).
cmd_dev_cluster() {
  ensure_java; ensure_elasticsearch
  start_es_cluster "$DEV_ES_CLUSTER_PORT" "$DEV_ES_CLUSTER_TRANSPORT_PORT" "$DEV_DIR/es-cluster"
  log "stop it with ./setup.sh dev cluster stop"
  echo "export ES_CLUSTER_URL=$(es_cluster_urls "$DEV_ES_CLUSTER_PORT") ES_CLUSTER_RESTART=$DEV_DIR/es-cluster/node1/start.sh"
}
cmd_dev_cluster_stop() {
  log "stopping the dev Elasticsearch cluster"
  stop_es_cluster "$DEV_DIR/es-cluster"
}

# start_es_cluster_bg HTTP_PORT TRANSPORT_PORT DIR: start_es_cluster in the background (its
# output in DIR.log), so `./setup.sh test` builds while the nodes boot; es_cluster_join waits.
ES_CLUSTER_JOB=""
start_es_cluster_bg() {
  ES_CLUSTER_LOG="$3.log"
  ( t0=$SECONDS; start_es_cluster "$@"; echo $((SECONDS - t0)) > "$3.secs" ) > "$ES_CLUSTER_LOG" 2>&1 &
  ES_CLUSTER_JOB=$!
}

# es_cluster_join DIR: waits for start_es_cluster_bg, shows its output, and lists how long the
# cluster took to start among the parts' times (it ran beside the others).
es_cluster_join() {
  local rc=0 secs
  [ -n "$ES_CLUSTER_JOB" ] || return 0
  wait "$ES_CLUSTER_JOB" || rc=$?
  ES_CLUSTER_JOB=""
  cat "$ES_CLUSTER_LOG" 2>/dev/null || true
  secs=$(cat "$1.secs" 2>/dev/null || echo "?")
  TIMINGS+=("$(printf '%-44s %5s s%s' "2-node Elasticsearch cluster (in parallel)" "$secs" \
    "$([ $rc -eq 0 ] || echo "  (exit code $rc)")")")
  return $rc
}

# stop_es_cluster_bg DIR: ends a start still under way, then stops both nodes.
stop_es_cluster_bg() {
  if [ -n "$ES_CLUSTER_JOB" ]; then kill "$ES_CLUSTER_JOB" 2>/dev/null || true; ES_CLUSTER_JOB=""; fi
  stop_es_cluster "$1"
}
