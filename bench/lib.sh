# Shared by the bench scripts (sourced, not run): where the binaries come from, free ports,
# arithmetic, clocks and CPU seconds of a process.

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

calc() { awk "BEGIN { printf \"$1\", $2 }"; }
now() { date +%s.%N; }
# CPU of a process counts its children that have ended (cutime, cstime): Redis's AOF rewrites
# are forks, and their CPU is the machine's as much as the server's own.
cpu_s() { # CPU seconds (user + system) a live process and its ended children have used so far; 0 if it is gone
  if [ -r "/proc/$1/stat" ]; then
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13 + $14 + $15) / hz }' "/proc/$1/stat"
  else echo 0; fi
}
sys_s() { # CPU seconds in the kernel (system time) of a live process and its ended children; 0 if gone
  if [ -r "/proc/$1/stat" ]; then
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.2f", ($13 + $15) / hz }' "/proc/$1/stat"
  else echo 0; fi
}
# es_pid URL: the pid listening on the URL's port (0 when not visible here)
es_pid() {
  local port pid
  port="$(echo "$1" | sed -E 's#.*:([0-9]+)$#\1#')"
  pid="$(ss -ltnpH "sport = :$port" 2>/dev/null | grep -oE 'pid=[0-9]+' | head -1 | cut -d= -f2 || true)"
  echo "${pid:-0}"
}
