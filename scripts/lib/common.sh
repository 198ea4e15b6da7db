# Shared by setup.sh and scripts/*.sh (sourced, never run): where we are, how we talk, and the
# launcher binary every start of the Conveyor services goes through.
# shellcheck shell=bash

ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
RUN_DIR="${CONVEYOR_RUN_DIR:-$ROOT/.run}"           # pids + logs of the native stack
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"  # the release binaries setup.sh builds and runs
# Native mode runs the services and Redis as this unprivileged system user (provision.sh creates
# it) when setup.sh runs as root; a non-root caller runs them as itself.
SERVICE_USER="${CONVEYOR_USER:-conveyor}"

log()  { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
warn() { printf '\033[1;33m!!\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[1;31mxx\033[0m %s\n' "$*" >&2; exit 1; }

# conveyor-stack ARGS...: the launcher (launcher/, `conveyor-stack --help`). Built on first use;
# `cargo build --release --bins` builds it with everything else.
STACK_BIN="$BIN_DIR/conveyor-stack"
conveyor_stack() {
  if [ ! -x "$STACK_BIN" ]; then
    command -v cargo >/dev/null || die "cargo is missing: install Rust (rustup) first"
    log "building the launcher (cargo build --release -p conveyor-stack)"
    cargo build --release --quiet -p conveyor-stack || die "could not build the launcher"
  fi
  "$STACK_BIN" "$@"
}

# as_service CMD...: CMD as $SERVICE_USER when we are root (as ourselves otherwise), from / so that
# a working directory the user cannot enter does not matter. runuser keeps the environment (the
# tunables reach the launcher) but for HOME, SHELL, USER and LOGNAME.
as_service() {
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u "$SERVICE_USER" -- "$@")
  else "$@"; fi
}

# others_can_reach PATH: every directory from / down to PATH lets other users through (o+x), so
# the service user can open what is inside (a checkout under /root cannot be reached, for one).
others_can_reach() {
  local p; p=$(readlink -f "$1") || return 1
  while [ -n "$p" ] && [ "$p" != / ]; do
    [ -d "$p" ] && { [ "$(( 0$(stat -c %a "$p") & 1 ))" -eq 1 ] || return 1; }
    p=$(dirname "$p")
  done
}

# timed LABEL CMD...: run CMD, remember how long it took (print_timings lists them).
TIMINGS=()
timed() {
  local label=$1 t0=$SECONDS rc=0; shift
  "$@" || rc=$?
  TIMINGS+=("$(printf '%-44s %5d s%s' "$label" $((SECONDS - t0)) "$([ $rc -eq 0 ] || echo "  (exit code $rc)")")")
  return $rc
}
print_timings() {
  [ ${#TIMINGS[@]} -gt 0 ] || return 0
  log "time per part:"
  local line; for line in "${TIMINGS[@]}"; do printf '    %s\n' "$line"; done
  TIMINGS=()
}
