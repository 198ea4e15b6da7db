#!/usr/bin/env bash
# Conveyor — one script to install, run, stop and test the whole stack.
#
#   ./setup.sh [--workers N]   run the stack (Docker when an engine answers, native otherwise):
#                       Redis :6379, Elasticsearch :9200, consumer :8000, N workers (default 2),
#                       webhook :8001, dashboard http://localhost:5000, producer; logs in .run/logs
#   ./setup.sh --cluster [--workers N]   the same on a 6-node Redis Cluster (3 masters + 3
#                       replicas) and a 2-node Elasticsearch cluster, QUEUE_PARTITIONS=12
#                       (Docker: docker-compose.cluster.yml; native: Redis :6391-6396,
#                       Elasticsearch :9210/:9211, moved by REDIS_CLUSTER_PORT, ES_CLUSTER_PORT)
#   ./setup.sh stop     stop what `./setup.sh` started, and only that (a cluster run too)
#   ./setup.sh status   list each process of the stack: pid, state, port, log file (a cluster
#                       run: each Redis node with its role, each Elasticsearch node)
#   ./setup.sh test     install what is missing, start a private Redis + Elasticsearch,
#                       run fmt, clippy and every test, execute the notebook against a private
#                       stack, stop everything again; exit code = verdict
#   ./setup.sh dev      start the test Redis (:16379) + Elasticsearch (:19200) and leave them
#                       running for `cargo test` by hand; `./setup.sh dev stop` stops them
#   ./setup.sh dev cluster  start a 2-node Elasticsearch cluster (:19220, :19221) for
#                       tests/tests/es_cluster.rs; `./setup.sh dev cluster stop` stops it
#
# Everything this script needs it installs itself (apt packages, Elasticsearch, Rust crates,
# the notebook's Python packages), so it works on a fresh machine. Re-running any verb is safe.
# Native mode's ports move with CONSUMER_PORT, WEBHOOK_PORT, DASHBOARD_PORT, WORKER_BASE_PORT,
# REDIS_PORT and ES_PORT.
#
# The work is split by concern: scripts/provision.sh (installs; Redis and Elasticsearch; dev),
# scripts/run.sh (run, stop, status; scripts/lib/cluster_stack.sh: the cluster run), scripts/test.sh (the suite), scripts/lib/common.sh; every
# Conveyor service is started by the launcher, `conveyor-stack` (launcher/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
. "$ROOT/scripts/lib/common.sh"
. "$ROOT/scripts/provision.sh"
. "$ROOT/scripts/run.sh"
. "$ROOT/scripts/test.sh"
. "$ROOT/scripts/standard_webhooks.sh"

case "${1:-run}" in
  test) cmd_test ;;
  example) . "$ROOT/scripts/examples.sh"; cmd_example "${2:-}" ;;
  dev)
    case "${2:-start}" in
      start|up) cmd_dev ;;
      stop|down) cmd_dev_stop ;;
      cluster) case "${3:-start}" in stop|down) cmd_dev_cluster_stop ;; *) cmd_dev_cluster ;; esac ;;
      *) die "unknown dev verb '$2' (use: ./setup.sh dev [stop|cluster [stop]])" ;;
    esac ;;
  run|up|start) [ $# -gt 0 ] && shift; cmd_run "$@" ;;
  --workers|--workers=*|--cluster) cmd_run "$@" ;;
  stop|down) cmd_stop ;;
  status) cmd_status ;;
  -h|--help|help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
  *) die "unknown verb '$1' (use: ./setup.sh [run|--cluster|stop|status|test|dev])" ;;
esac
