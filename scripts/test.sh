# The test suite (sourced by setup.sh): `./setup.sh test` installs what is missing, starts a
# private Redis + Elasticsearch (and, beside them, a 2-node Elasticsearch cluster for
# tests/tests/es_cluster.rs: scripts/lib/es_cluster.sh), runs cargo fmt --check, clippy
# (warnings are errors), builds the release binaries (the launcher among them) once, runs every
# test with CONVEYOR_BIN_DIR pointing at them, runs the pipeline tests once more against a
# TLS-only Redis with an ACL user and an Elasticsearch with security on over HTTPS
# (scripts/lib/secured.sh), runs schemathesis (every check) against the consumer's
# /openapi.json on a private stack,
# then executes the notebook against a private stack started by the launcher; it prints
# how long each part took and stops everything it started. Exit code = verdict.
# shellcheck shell=bash
# shellcheck source=scripts/lib/secured.sh
. "$ROOT/scripts/lib/secured.sh"
# shellcheck source=scripts/lib/redis_cluster.sh
. "$ROOT/scripts/lib/redis_cluster.sh"
# shellcheck source=scripts/lib/es_cluster.sh
. "$ROOT/scripts/lib/es_cluster.sh"

stop_notebook_stack() { # stops the notebook's stack and drops its Redis keys and indices
  [ "${NB_STACK_DIR:-}" ] || return 0
  log "stopping the notebook's stack"
  conveyor_stack stop --dir "$NB_STACK_DIR" || true
  redis-cli -p "$TEST_REDIS_PORT" --scan --pattern "$NB_NAMESPACE:*" 2>/dev/null \
    | xargs -r -n 500 redis-cli -p "$TEST_REDIS_PORT" unlink >/dev/null 2>&1 || true
  curl -fsS -X DELETE "$ELASTICSEARCH_URL/$NB_NAMESPACE-*" >/dev/null 2>&1 || true
  curl -fsS -X DELETE "$ELASTICSEARCH_URL/_index_template/$NB_NAMESPACE-*" >/dev/null 2>&1 || true
  NB_STACK_DIR=""
}

# check_worker_weights STACK_DIR NICE: every worker the launcher started leads its own session
# whose group has nice NICE (the replicas together weigh about one service for the CPU:
# launcher/src/detached/weight.rs), where the kernel has session groups.
check_worker_weights() {
  local pf pid got n=0
  [ -e /proc/self/autogroup ] || { log "no session groups in this kernel: worker weights not checked"; return 0; }
  for pf in "$1"/pids/worker-*.pid; do
    pid=$(cat "$pf"); got=$(awk '{print $NF}' "/proc/$pid/autogroup")
    [ "$got" = "$2" ] || { warn "worker pid $pid: session nice $got, expected $2"; return 1; }
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || { warn "no worker pidfiles in $1/pids"; return 1; }
  log "$n workers, each in a session group of nice $2"
}

run_notebook() { # execute notebooks/producer_consumer.ipynb against a fresh private stack
  local out="$TEST_STATE/producer_consumer.out.ipynb" rc=0 id
  ensure_notebook_venv
  id=$(od -An -tx1 -N4 /dev/urandom | tr -d ' \n')
  NB_NAMESPACE="nb-$id" NB_STACK_DIR="$TEST_STATE/stack"
  log "starting a private stack for the notebook (free ports, 2 workers, namespace $NB_NAMESPACE)"
  WEBHOOK_SECRET="notebook-stack-secret-of-32-bytes-$id" conveyor_stack up --dir "$NB_STACK_DIR" --bin-dir "$BIN_DIR" \
    --free-ports --workers 2 --without producer \
    --redis-url "$REDIS_URL" --elasticsearch-url "$ELASTICSEARCH_URL" \
    --namespace "$NB_NAMESPACE" --index-prefix "$NB_NAMESPACE-" --log-format json || return 1
  check_worker_weights "$NB_STACK_DIR" 3 || { stop_notebook_stack; return 1; }
  local CONSUMER_URL WEBHOOK_BASE_URL DASHBOARD_URL WORKER_PORTS
  eval "$(conveyor_stack urls --dir "$NB_STACK_DIR")"
  log "executing notebooks/producer_consumer.ipynb against $CONSUMER_URL (output: $out)"
  env CONSUMER_URL="$CONSUMER_URL" ELASTICSEARCH_URL="$ELASTICSEARCH_URL" \
    WEBHOOK_BASE_URL="$WEBHOOK_BASE_URL" ES_INDEX_PREFIX="$NB_NAMESPACE-" \
    JUPYTER_PATH="$NB_VENV/share/jupyter" MPLBACKEND=Agg \
    "$NB_VENV/bin/python" "$ROOT/notebooks/execute.py" "$ROOT/notebooks/producer_consumer.ipynb" "$out" \
    || rc=$?
  stop_notebook_stack
  return $rc
}

# schemathesis (PyPI, pinned) against the consumer's /openapi.json: every check, a bounded number
# of examples per operation and a time bound; hooks.py + schemathesis.toml in scripts/schemathesis
# say why (the rules JSON Schema cannot state, the documented 504 of ?wait=true).
SCHEMATHESIS_VERSION="4.32.5"
# ensure_pip_venv DIR REQUIREMENT: a venv in DIR with one pinned PyPI requirement, created once
# (marked complete only after pip succeeded) and reused afterwards.
ensure_pip_venv() {
  if [ -f "$1/.complete" ]; then log "reusing the venv $1"; return; fi
  apt_install python3-venv
  log "creating the venv $1 (pip install $2)"
  rm -rf "$1"; mkdir -p "$CONVEYOR_HOME"
  python3 -m venv "$1" || die "python3 -m venv failed"
  "$1/bin/pip" install -q --disable-pip-version-check "$2" || die "pip install $2 failed"
  touch "$1/.complete"
}

ensure_schemathesis_venv() { # sets ST_VENV: a venv with schemathesis, cached by its version
  ST_VENV="$CONVEYOR_HOME/venv-schemathesis-$SCHEMATHESIS_VERSION"
  ensure_pip_venv "$ST_VENV" "schemathesis==$SCHEMATHESIS_VERSION"
}

stop_schemathesis_stack() { # stops the fuzzed stack and drops its Redis keys and indices
  [ "${ST_STACK_DIR:-}" ] || return 0
  log "stopping the schemathesis stack"
  conveyor_stack stop --dir "$ST_STACK_DIR" || true
  redis-cli -p "$TEST_REDIS_PORT" --scan --pattern "$ST_NAMESPACE:*" 2>/dev/null \
    | xargs -r -n 500 redis-cli -p "$TEST_REDIS_PORT" unlink >/dev/null 2>&1 || true
  curl -fsS -X DELETE "$ELASTICSEARCH_URL/$ST_NAMESPACE-*" >/dev/null 2>&1 || true
  ST_STACK_DIR=""
}

run_schemathesis() { # schemathesis run --checks all against a fresh private consumer (+ 1 worker)
  local rc=0 id
  ensure_schemathesis_venv
  id=$(od -An -tx1 -N4 /dev/urandom | tr -d ' \n')
  ST_NAMESPACE="st-$id" ST_STACK_DIR="$TEST_STATE/st-stack"
  log "starting a private stack for schemathesis (free ports, 1 worker, namespace $ST_NAMESPACE)"
  # With an API key table, as ./setup.sh runs it: the document's security scheme is then checked
  # too (schemathesis's ignored_auth sends writes without the key and expects 401).
  local key; key=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  (umask 077; printf '%s producer:*,read\n' "$key" >"$TEST_STATE/st-api-keys")
  WEBHOOK_SECRET="schemathesis-stack-secret-32-bytes-$id" conveyor_stack up --dir "$ST_STACK_DIR" --bin-dir "$BIN_DIR" \
    --free-ports --workers 1 --without producer,dashboard --api-keys-file "$TEST_STATE/st-api-keys" \
    --redis-url "$REDIS_URL" --elasticsearch-url "$ELASTICSEARCH_URL" \
    --namespace "$ST_NAMESPACE" --index-prefix "$ST_NAMESPACE-" --log-format json || return 1
  local CONSUMER_URL WEBHOOK_BASE_URL DASHBOARD_URL WORKER_PORTS
  eval "$(conveyor_stack urls --dir "$ST_STACK_DIR")"
  log "schemathesis run --checks all against $CONSUMER_URL/openapi.json" \
    "(${SCHEMATHESIS_EXAMPLES:-100} examples per operation, at most ${SCHEMATHESIS_SECONDS:-300} s)"
  (cd "$ROOT/scripts/schemathesis" && SCHEMATHESIS_HOOKS=hooks PYTHONPATH=. \
    timeout "${SCHEMATHESIS_SECONDS:-300}" "$ST_VENV/bin/schemathesis" --config-file schemathesis.toml \
    run "$CONSUMER_URL/openapi.json" --checks all --max-examples "${SCHEMATHESIS_EXAMPLES:-100}" \
    --header "Authorization: Bearer $key" \
    --generation-database none --no-color) \
    || rc=$?
  stop_schemathesis_stack
  return $rc
}

# cargo-deny (crates.io, pinned, built once into $CONVEYOR_HOME) with deny.toml: licenses,
# banned / duplicate crates and sources. Not advisories: the RustSec database is a git repository
# on GitHub, out of reach here, and no crates.io package ships it (README, "Security").
CARGO_DENY_VERSION="0.20.2"
ensure_cargo_deny() { # sets CARGO_DENY
  CARGO_DENY="$CONVEYOR_HOME/cargo-deny-$CARGO_DENY_VERSION/bin/cargo-deny"
  [ -x "$CARGO_DENY" ] && return 0
  log "installing cargo-deny $CARGO_DENY_VERSION (cargo install --locked, once)"
  cargo install --locked --quiet "cargo-deny@$CARGO_DENY_VERSION" \
    --root "$CONVEYOR_HOME/cargo-deny-$CARGO_DENY_VERSION" || die "cargo install cargo-deny failed"
}
run_cargo_deny() {
  ensure_cargo_deny
  (cd "$ROOT" && "$CARGO_DENY" --log-level warn check licenses bans sources) # ./deny.toml
}

# compose-go (the Compose Specification's reference loader, which docker compose uses) over every
# compose file and overlay this repository ships: what docker compose would refuse fails here,
# with no Docker engine. scripts/composecheck is built once per source into $CONVEYOR_HOME with
# the Go toolchain of the machine (Debian's golang-go is too old for compose-go v2).
run_composecheck() {
  local go_bin sum bin
  go_bin="$(command -v go || true)"
  [ -n "$go_bin" ] || [ ! -x /usr/local/go/bin/go ] || go_bin=/usr/local/go/bin/go
  [ -n "$go_bin" ] || { warn "no Go toolchain (go ≥ 1.23) on PATH or in /usr/local/go: cannot run compose-go"; return 1; }
  sum="$(cat "$ROOT"/scripts/composecheck/{main.go,go.mod,go.sum} | sha256sum | cut -c1-12)"
  bin="$CONVEYOR_HOME/composecheck-$sum"
  if [ ! -x "$bin" ]; then
    mkdir -p "$CONVEYOR_HOME"
    (cd "$ROOT/scripts/composecheck" && GOFLAGS=-mod=readonly GOTOOLCHAIN=local "$go_bin" build -o "$bin.new" .) \
      && mv -f "$bin.new" "$bin" || return 1
  fi
  # The one variable the files require from whoever runs them (./setup.sh passes it).
  WEBHOOK_SECRET="whsec_Y29tcG9zZWNoZWNr" "$bin" "$ROOT" docker-compose.yml \
    docker-compose.yml,docker-compose.secured.yml docker-compose.cluster.yml
}

install_test_needs() { ensure_test_tools; ensure_redis; ensure_java; ensure_elasticsearch; }

start_test_servers() {
  start_redis "$TEST_REDIS_PORT" "$TEST_STATE/redis"
  start_elasticsearch "$TEST_ES_PORT" "$TEST_ES_TRANSPORT_PORT" "$TEST_STATE/es"
}

cmd_test() {
  local started=$SECONDS
  timed "install what is missing (apt, JDK, Elasticsearch)" install_test_needs
  TEST_STATE="$(mktemp -d -t conveyor-test.XXXXXX)"
  chmod 755 "$TEST_STATE"
  stop_test_services() {
    print_timings # when a part failed under set -e, before the summary line
    stop_notebook_stack
    stop_schemathesis_stack
    stop_swh_stack
    stop_secured_servers "$TEST_STATE/secured"
    stop_redis_cluster "$TEST_STATE/cluster"
    log "stopping the 2-node Elasticsearch cluster"
    stop_es_cluster_bg "$TEST_STATE/es-cluster"
    log "stopping the test Redis and Elasticsearch"
    stop_pidfile "$TEST_STATE/redis/redis.pid" "$REDIS_PATTERN"
    stop_pidfile "$TEST_STATE/es/es.pid" "$ES_PATTERN"
    rm -rf "$TEST_STATE"
  }
  trap stop_test_services EXIT
  # The 2-node cluster of tests/tests/es_cluster.rs boots beside everything up to `cargo test`.
  start_es_cluster_bg "$TEST_ES_CLUSTER_PORT" "$TEST_ES_CLUSTER_TRANSPORT_PORT" "$TEST_STATE/es-cluster"
  timed "start the test Redis and Elasticsearch" start_test_servers
  # The Redis Cluster starts in the background while the checks and the build run; its time is
  # printed with the others.
  (
    t0=$SECONDS
    start_redis_cluster "$TEST_REDIS_CLUSTER_PORT" "$TEST_STATE/cluster"
    echo $((SECONDS - t0)) >"$TEST_STATE/cluster.seconds"
  ) >"$TEST_STATE/cluster.log" 2>&1 &
  local cluster_pid=$!

  export REDIS_URL="redis://127.0.0.1:$TEST_REDIS_PORT"
  export ELASTICSEARCH_URL="http://127.0.0.1:$TEST_ES_PORT"
  export RUST_LOG="${RUST_LOG:-warn}"
  export CONVEYOR_TEST_STATE="$TEST_STATE"

  log "cargo fmt --check"
  timed "cargo fmt --check" cargo fmt --all -- --check
  log "cargo clippy (warnings are errors)"
  timed "cargo clippy -D warnings" cargo clippy --workspace --all-targets --quiet -- -D warnings
  log "compose-go: docker-compose.yml, + docker-compose.secured.yml, docker-compose.cluster.yml"
  timed "compose-go over the 3 compose projects" run_composecheck
  log "cargo deny check licenses bans sources (deny.toml)"
  timed "cargo deny check licenses bans sources" run_cargo_deny
  log "building the release binaries (services + launcher) the tests and the notebook run"
  timed "cargo build --release --bins" cargo build --workspace --bins --release --quiet
  export CONVEYOR_BIN_DIR="$BIN_DIR"
  local cluster_rc=0
  wait "$cluster_pid" || cluster_rc=$?
  TIMINGS+=("$(printf '%-44s %5s s%s' "start the Redis Cluster (in the background)" "$(cat "$TEST_STATE/cluster.seconds" 2>/dev/null || echo '?')" "$([ $cluster_rc -eq 0 ] || echo "  (exit code $cluster_rc)")")")
  [ $cluster_rc -eq 0 ] || { cat "$TEST_STATE/cluster.log" >&2; die "the test Redis Cluster did not start"; }
  export TEST_REDIS_CLUSTER_URL="$(redis_cluster_url "$TEST_REDIS_CLUSTER_PORT")"
  log "Redis Cluster for the queue's cluster tests: $TEST_REDIS_CLUSTER_URL"
  log "waiting for the 2-node Elasticsearch cluster (tests/tests/es_cluster.rs)"
  es_cluster_join "$TEST_STATE/es-cluster" || warn "the 2-node Elasticsearch cluster did not start; es_cluster will fail"
  export ES_CLUSTER_URL ES_CLUSTER_RESTART="$TEST_STATE/es-cluster/node1/start.sh"
  ES_CLUSTER_URL="$(es_cluster_urls "$TEST_ES_CLUSTER_PORT")"
  log "cargo test (Redis $REDIS_URL, Elasticsearch $ELASTICSEARCH_URL, binaries $CONVEYOR_BIN_DIR)"
  local rc=0
  timed "cargo test" cargo test --workspace --quiet --no-fail-fast -- --test-threads="${TEST_THREADS:-4}" || rc=$?
  [ $rc -eq 0 ] || warn "cargo test failed (exit code $rc); running the remaining steps anyway"
  stop_es_cluster_bg "$TEST_STATE/es-cluster" # only es_cluster.rs uses it: free its memory now
  log "pipeline against secured servers: TLS-only Redis + ACL user, Elasticsearch with security on (HTTPS, role-restricted API key)"
  local sec_rc=0
  timed "secured Redis + Elasticsearch, pipeline" run_secured_pipeline || sec_rc=$?
  if [ $sec_rc -eq 0 ]; then log "the secured pipeline passed"; else warn "the secured pipeline failed (exit code $sec_rc)"; fi
  [ $rc -ne 0 ] || rc=$sec_rc
  log "schemathesis: every check against the consumer's /openapi.json on a private stack"
  local st_rc=0
  timed "schemathesis (venv, private stack, run)" run_schemathesis || st_rc=$?
  if [ $st_rc -eq 0 ]; then log "schemathesis passed"; else warn "schemathesis failed (exit code $st_rc)"; fi
  [ $rc -ne 0 ] || rc=$st_rc
  log "standardwebhooks (PyPI): a real worker's delivery verified by a receiver nobody here wrote"
  local sw_rc=0
  timed "standardwebhooks receiver (venv, private stack)" run_standard_webhooks || sw_rc=$?
  if [ $sw_rc -eq 0 ]; then log "standardwebhooks verified"; else warn "standardwebhooks check failed (exit code $sw_rc)"; fi
  [ $rc -ne 0 ] || rc=$sw_rc
  log "notebook: notebooks/producer_consumer.ipynb against a private stack"
  local nb_rc=0
  timed "notebook (venv, private stack, execution)" run_notebook || nb_rc=$?
  if [ $nb_rc -eq 0 ]; then log "notebook ran clean"; else warn "notebook failed (exit code $nb_rc)"; fi
  [ $rc -ne 0 ] || rc=$nb_rc
  print_timings
  log "tests finished in $((SECONDS - started)) s with exit code $rc"
  return $rc
}
