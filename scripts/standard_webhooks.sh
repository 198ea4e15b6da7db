# A delivery by a real worker verified with the `standardwebhooks` package from PyPI (sourced by
# scripts/test.sh): a private consumer + worker (no webhook service) whose WEBHOOK_SECRET is in the
# Standard Webhooks `whsec_` form; scripts/standardwebhooks/check.py receives the delivery where the
# webhook service would listen, verifies it with the library, and checks that a tampered body and
# a replay ten minutes later fail. Pinned version, cached venv like the other Python tools.
# shellcheck shell=bash

STANDARDWEBHOOKS_VERSION="1.1.0"

stop_swh_stack() { # stops the stack and drops its Redis keys and indices
  [ "${SWH_STACK_DIR:-}" ] || return 0
  conveyor_stack stop --dir "$SWH_STACK_DIR" || true
  redis-cli -p "$TEST_REDIS_PORT" --scan --pattern "$SWH_NAMESPACE:*" 2>/dev/null \
    | xargs -r -n 500 redis-cli -p "$TEST_REDIS_PORT" unlink >/dev/null 2>&1 || true
  curl -fsS -X DELETE "$ELASTICSEARCH_URL/$SWH_NAMESPACE-*" >/dev/null 2>&1 || true
  curl -fsS -X DELETE "$ELASTICSEARCH_URL/_index_template/$SWH_NAMESPACE-*" >/dev/null 2>&1 || true
  SWH_STACK_DIR=""
}

run_standard_webhooks() {
  local venv="$CONVEYOR_HOME/venv-standardwebhooks-$STANDARDWEBHOOKS_VERSION" rc=0 id secret
  ensure_pip_venv "$venv" "standardwebhooks==$STANDARDWEBHOOKS_VERSION" # scripts/test.sh
  id=$(od -An -tx1 -N4 /dev/urandom | tr -d ' \n')
  secret="whsec_$(head -c 32 /dev/urandom | base64 -w0)"
  SWH_NAMESPACE="swh-$id" SWH_STACK_DIR="$TEST_STATE/swh-stack"
  # Ports of our own choosing (not --free-ports): the receiver listens on the webhook port the
  # worker delivers to, and `urls` names only services that run.
  local ports consumer_port webhook_port worker_base
  ports=$(python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1", 0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')
  read -r consumer_port webhook_port worker_base <<<"$ports"
  WEBHOOK_SECRET="$secret" conveyor_stack up --dir "$SWH_STACK_DIR" --bin-dir "$BIN_DIR" \
    --consumer-port "$consumer_port" --webhook-port "$webhook_port" --worker-base-port "$worker_base" \
    --workers 1 --without webhook,dashboard,producer \
    --redis-url "$REDIS_URL" --elasticsearch-url "$ELASTICSEARCH_URL" \
    --namespace "$SWH_NAMESPACE" --index-prefix "$SWH_NAMESPACE-" --log-format json || return 1
  WEBHOOK_SECRET="$secret" CONSUMER_URL="http://127.0.0.1:$consumer_port" \
    WEBHOOK_BASE_URL="http://127.0.0.1:$webhook_port" \
    "$venv/bin/python" "$ROOT/scripts/standardwebhooks/check.py" || rc=$?
  stop_swh_stack
  return $rc
}
