# Secured servers for `./setup.sh test` (sourced by scripts/test.sh): a redis-server that speaks
# only TLS and knows one ACL user (the default user is off), and an Elasticsearch with security
# on (HTTPS, users, API keys), both on loopback with certificates made here by openssl, so the
# pipeline can be run once against Redis + TLS + ACL and Elasticsearch + HTTPS + API key.
# Secrets go to files of mode 600 in the state dir, never on a command line or into the log.
# shellcheck shell=bash
# shellcheck source=scripts/lib/es_analysis.sh
. "$ROOT/scripts/lib/es_analysis.sh"

SECURED_REDIS_PORT="${SECURED_REDIS_PORT:-26400}"
SECURED_ES_PORT="${SECURED_ES_PORT:-29200}"
SECURED_ES_TRANSPORT_PORT="${SECURED_ES_TRANSPORT_PORT:-29300}"

random_secret() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

# make_secured_certs DIR: DIR/ca.pem + ca.key (a CA), DIR/server.pem + server.key (127.0.0.1 and
# localhost, signed by that CA) and DIR/other-ca.pem (a CA that signed nothing: the wrong one).
make_secured_certs() {
  local dir=$1
  mkdir -p "$dir"
  (
    cd "$dir" || exit 1
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Conveyor test CA" \
      -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Unrelated CA" \
      -keyout other-ca.key -out other-ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.pem 2>/dev/null
    chmod 644 ca.pem other-ca.pem server.pem
  ) || die "openssl could not make the test certificates in $dir"
}

# start_secured_redis PORT DIR CERTDIR: TLS only (--port 0), user `conveyor` with a generated
# password (DIR/password), default user off. The password is in DIR/redis.conf (mode 600).
start_secured_redis() {
  local port=$1 dir=$2 certs=$3 pw
  mkdir -p "$dir"; chmod 700 "$dir"
  pw=$(random_secret)
  (umask 077; printf '%s\n' "$pw" > "$dir/password")
  (umask 077; cat > "$dir/redis.conf" <<EOT
port 0
tls-port $port
bind 127.0.0.1
tls-cert-file $certs/server.pem
tls-key-file $certs/server.key
tls-ca-cert-file $certs/ca.pem
tls-auth-clients no
dir $dir
pidfile $dir/redis.pid
logfile $dir/redis.log
daemonize yes
save ""
appendonly no
user default off
user conveyor on >$pw ~* &* +@all
EOT
  )
  log "starting a TLS-only redis-server with an ACL user on 127.0.0.1:$port"
  redis-server "$dir/redis.conf" >/dev/null || die "redis-server with TLS did not start (see $dir/redis.log)"
  for _ in $(seq 1 50); do
    if REDISCLI_AUTH="$pw" redis-cli --tls --cacert "$certs/ca.pem" -h 127.0.0.1 -p "$port" \
      --user conveyor ping 2>/dev/null | grep -q PONG; then return 0; fi
    sleep 0.1
  done
  die "the TLS redis-server did not answer on $port (see $dir/redis.log)"
}

# start_secured_elasticsearch PORT TPORT DIR CERTDIR: security on, HTTPS with CERTDIR's server
# certificate, the elastic user's password from the keystore (bootstrap.password, DIR/elastic_password),
# then a role-restricted API key for Conveyor (DIR/api_key, the `encoded` form; see
# create_conveyor_api_key). Runs from SECURED_ES_HOME (ensure_secured_es_home: the analysis plugin
# the `.security` index needs is installed there); no key = this fails.
start_secured_elasticsearch() {
  local port=$1 tport=$2 dir=$3 certs=$4 pw
  [ -n "${SECURED_ES_HOME:-}" ] || ensure_secured_es_home
  mkdir -p "$dir/data" "$dir/logs"; chmod 700 "$dir"
  rm -rf "$dir/config"; cp -r "$SECURED_ES_HOME/config" "$dir/config"
  cp "$certs/server.pem" "$certs/server.key" "$certs/ca.pem" "$dir/config/"
  cat > "$dir/config/elasticsearch.yml" <<EOT
cluster.name: conveyor-secured
node.name: conveyor-secured-1
discovery.type: single-node
network.host: 127.0.0.1
http.port: $port
transport.port: $tport
path.data: $dir/data
path.logs: $dir/logs
xpack.security.enabled: true
xpack.security.http.ssl.enabled: true
xpack.security.http.ssl.key: server.key
xpack.security.http.ssl.certificate: server.pem
xpack.security.http.ssl.certificate_authorities: [ "ca.pem" ]
xpack.security.transport.ssl.enabled: true
xpack.security.transport.ssl.key: server.key
xpack.security.transport.ssl.certificate: server.pem
xpack.security.transport.ssl.certificate_authorities: [ "ca.pem" ]
xpack.security.transport.ssl.verification_mode: certificate
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
EOT
  pw=$(random_secret)
  (umask 077; printf '%s\n' "$pw" > "$dir/elastic_password")
  chown -R "$ES_USER:$ES_USER" "$dir"
  local as_es=(runuser -u "$ES_USER" -- env ES_JAVA_HOME="$ES_JAVA_HOME" ES_PATH_CONF="$dir/config")
  "${as_es[@]}" "$SECURED_ES_HOME/bin/elasticsearch-keystore" create >/dev/null 2>&1 || true
  printf '%s' "$pw" | "${as_es[@]}" "$SECURED_ES_HOME/bin/elasticsearch-keystore" add -x -f bootstrap.password \
    >/dev/null || die "could not put the bootstrap password into the keystore"
  log "starting Elasticsearch $ES_VERSION with security on (HTTPS) on 127.0.0.1:$port"
  # The built-in roles synchronizer (queryable built-in roles, which nothing here queries) writes
  # every built-in role into .security right after the start, when the tests begin: switched off.
  "${as_es[@]}" ES_JAVA_OPTS="${ES_JAVA_OPTS:--Xms512m -Xmx512m} -Des.queryable_built_in_roles_enabled=false" \
    "$SECURED_ES_HOME/bin/elasticsearch" -d -p "$dir/es.pid" >"$dir/logs/startup.out" 2>&1 \
    || die "the secured Elasticsearch failed to start (see $dir/logs/conveyor-secured.log)"
  local curl_es=(curl -fsS --cacert "$certs/ca.pem" --config "$dir/curl.cfg")
  (umask 077; printf 'user = "elastic:%s"\n' "$pw" > "$dir/curl.cfg")
  local t=0
  until "${curl_es[@]}" "https://127.0.0.1:$port/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1; do
    t=$((t + 1)); [ $t -le 180 ] || die "the secured Elasticsearch is not ready after 180 s (see $dir/logs/conveyor-secured.log)"
    [ $((t % 15)) -eq 0 ] && log "  still waiting for the secured Elasticsearch ($t s)"
    sleep 1
  done
  create_conveyor_api_key "https://127.0.0.1:$port" "$dir" "$certs" \
    || die "the secured Elasticsearch could not create Conveyor's API key (see $dir/logs/conveyor-secured.log)"
  log "secured Elasticsearch ready on https://127.0.0.1:$port"
}

# The indices Conveyor's key may touch: the ones of the tests the secured step runs (testkit's
# TestEnv names a test's indices `t<test name without _>-<8 hex>-…`: `secured`, `pipe_*`).
# A deployment gives its own ES_INDEX_PREFIX followed by `*`.
SECURED_ES_INDEX_PATTERNS="${SECURED_ES_INDEX_PATTERNS:-tsecured-*,tpipe*}"
# What the services (and the tests' cleanup) do there, found by running the pipeline with less:
# `manage` because the daily indices are created with their alias in the body (create_index
# alone is refused for that: the worker never got past its start-up), and the retention and the
# tests delete whole indices; `write` for bulk/index; `read` for search/count/get.
SECURED_ES_INDEX_PRIVILEGES='"manage","write","read"'
# Cluster-wide: the messages' index template (PUT _index_template; without it the worker waits
# for its indices forever) and _cluster/health (the readiness checks: without it, 403).
SECURED_ES_CLUSTER_PRIVILEGES='"manage_index_templates","monitor"'

# create_conveyor_api_key URL DIR CERTDIR: as the elastic user (DIR/curl.cfg), an API key whose
# role allows only SECURED_ES_INDEX_PATTERNS with the privileges above; its `encoded` form goes
# to DIR/api_key (mode 600). The first call creates the `.security` index (the analysis plugin).
create_conveyor_api_key() {
  local url=$1 dir=$2 certs=$3 names body answer code
  names=$(printf '%s' "$SECURED_ES_INDEX_PATTERNS" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().split(",")))')
  body=$(printf '{"name":"conveyor-pipeline","expiration":"1d","role_descriptors":{"conveyor_pipeline":{"cluster":[%s],"indices":[{"names":%s,"privileges":[%s]}]}}}' \
    "$SECURED_ES_CLUSTER_PRIVILEGES" "$names" "$SECURED_ES_INDEX_PRIVILEGES")
  rm -f "$dir/api_key"
  answer=$(curl -sS --max-time 60 --cacert "$certs/ca.pem" --config "$dir/curl.cfg" -w '\n%{http_code}' \
    -X POST -H 'Content-Type: application/json' "$url/_security/api_key" -d "$body") || return 1
  code=${answer##*$'\n'}; answer=${answer%$'\n'*}
  if [ "$code" != 200 ]; then
    warn "POST /_security/api_key answered $code: $(printf '%s' "$answer" | head -c 600)"
    return 1
  fi
  (umask 077; printf '%s' "$answer" | python3 -c 'import json,sys; print(json.load(sys.stdin)["encoded"])' \
    > "$dir/api_key") || { warn "the API key answer has no 'encoded' field"; return 1; }
  log "API key for Conveyor created (indices ${SECURED_ES_INDEX_PATTERNS}; no secret printed)"
}

# start_secured_servers DIR: certificates, the TLS Redis and the secured Elasticsearch under DIR.
start_secured_servers() {
  local dir=$1
  make_secured_certs "$dir/certs"
  start_secured_redis "$SECURED_REDIS_PORT" "$dir/redis" "$dir/certs"
  start_secured_elasticsearch "$SECURED_ES_PORT" "$SECURED_ES_TRANSPORT_PORT" "$dir/es" "$dir/certs"
}

# secured_env DIR: exports SECURED_* (URLs, and the files of the CA, passwords and API key).
secured_env() {
  local dir=$1
  export SECURED_REDIS_URL="rediss://conveyor@127.0.0.1:$SECURED_REDIS_PORT"
  export SECURED_REDIS_PASSWORD_FILE="$dir/redis/password"
  export SECURED_CA_FILE="$dir/certs/ca.pem"
  export SECURED_OTHER_CA_FILE="$dir/certs/other-ca.pem"
  export SECURED_ES_URL="https://127.0.0.1:$SECURED_ES_PORT"
  export SECURED_ES_USERNAME="elastic"
  export SECURED_ES_PASSWORD_FILE="$dir/es/elastic_password"
  export SECURED_ES_API_KEY_FILE="$dir/es/api_key"
}

stop_secured_servers() { # DIR: stops what start_secured_servers started there, and only that
  local dir=$1
  stop_pidfile "$dir/redis/redis.pid" "$REDIS_PATTERN"
  stop_pidfile "$dir/es/es.pid" "$ES_PATTERN"
}

# run_secured_pipeline: tests/tests/secured_pipeline.rs and the whole tests/tests/pipeline.rs once
# against the secured servers: the services get rediss:// + ACL user + CA file and https://
# + the role-restricted API key + CA file through the launcher's environment, and so do the tests'
# own view of both servers. A server that does not start fails this step, not the whole script.
run_secured_pipeline() {
  local dir="$TEST_STATE/secured" rc=0
  if ! (start_secured_servers "$dir"); then
    warn "the secured servers did not start"
    stop_secured_servers "$dir"
    return 1
  fi
  secured_env "$dir"
  env REDIS_URL="$SECURED_REDIS_URL" REDIS_PASSWORD_FILE="$SECURED_REDIS_PASSWORD_FILE" \
    REDIS_CA_FILE="$SECURED_CA_FILE" ELASTICSEARCH_URL="$SECURED_ES_URL" \
    ELASTICSEARCH_CA_FILE="$SECURED_CA_FILE" ELASTICSEARCH_API_KEY_FILE="$SECURED_ES_API_KEY_FILE" \
    cargo test -p e2e --quiet --no-fail-fast --test secured_pipeline --test pipeline -- --test-threads=1 || rc=$?
  stop_secured_servers "$dir"
  return $rc
}
