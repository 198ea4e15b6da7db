# Shared by the bench scripts (sourced, not run): where the binaries come from and free ports.

# bench_binaries: sets BIN (BIN=<dir> from the environment, else a release build of the
# workspace's binaries, the same build ./setup.sh makes) and STACK (the launcher in BIN, or this
# checkout's when an older BIN has none).
bench_binaries() {
  if [ -z "${BIN:-}" ]; then
    echo "== building release binaries"
    cargo build --release --workspace --bins "$@"
    BIN="${CARGO_TARGET_DIR:-target}/release"
  fi
  STACK="$BIN/conveyor-stack"
  if [ ! -x "$STACK" ]; then
    cargo build --release -p conveyor-stack
    STACK="${CARGO_TARGET_DIR:-target}/release/conveyor-stack"
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
