#!/usr/bin/env bash
# moto.sh start|stop|status — a local S3 (moto server) for tests.
#
#   eval "$(bash scripts/moto.sh start)"   # starts moto on a free 127.0.0.1 port
#   ...                                      # NARWARD_TEST_S3_ENDPOINT etc. now set
#   bash scripts/moto.sh stop                # kills exactly that moto PID
#
# `start` prints shell `export` lines (NARWARD_TEST_S3_ENDPOINT, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_DEFAULT_REGION) on stdout; everything
# else goes to stderr. State (PID, port, log) lives in $NARWARD_MOTO_STATE_DIR
# (default: target/moto in the repository), so one state dir = one server.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${NARWARD_MOTO_STATE_DIR:-$ROOT/target/moto}
PIDFILE=$STATE/moto.pid
PORTFILE=$STATE/moto.port
LOG=$STATE/moto.log

die() { echo "moto.sh: error: $*" >&2; exit 1; }

moto_cmd() {
  if command -v moto_server >/dev/null 2>&1; then
    echo moto_server
  elif python3 -c 'import moto.server' >/dev/null 2>&1; then
    echo "python3 -m moto.server"
  else
    die "moto is not installed (run scripts/install-test-deps.sh)"
  fi
}

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

answers() { # PORT
  python3 - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen("http://127.0.0.1:%s/moto-api/" % sys.argv[1], timeout=1).read()
EOF
}

running() { [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

print_env() { # PORT
  cat <<EOF
export NARWARD_TEST_S3_ENDPOINT=http://127.0.0.1:$1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
EOF
}

start() {
  mkdir -p "$STATE"
  if running && answers "$(cat "$PORTFILE")"; then
    echo "moto.sh: already running (pid $(cat "$PIDFILE"), port $(cat "$PORTFILE"))" >&2
    print_env "$(cat "$PORTFILE")"
    return 0
  fi
  local cmd; cmd=$(moto_cmd)
  local attempt port pid i
  for attempt in 1 2 3; do
    port=$(free_port)
    # stdin/stdout/stderr detached, so `eval "$(moto.sh start)"` does not wait for it.
    # shellcheck disable=SC2086
    $cmd -H 127.0.0.1 -p "$port" </dev/null >"$LOG" 2>&1 &
    pid=$!
    echo "$pid" > "$PIDFILE"
    echo "$port" > "$PORTFILE"
    for i in $(seq 1 150); do           # up to ~30 s (first start compiles .pyc files)
      if answers "$port"; then
        echo "moto.sh: moto server pid $pid on http://127.0.0.1:$port (log: $LOG)" >&2
        print_env "$port"
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "moto.sh: attempt $attempt on port $port failed; log:" >&2
    sed 's/^/  moto: /' "$LOG" | tail -20 >&2
  done
  rm -f "$PIDFILE" "$PORTFILE"
  die "could not start moto server"
}

stop() {
  if [[ -s $PIDFILE ]]; then
    local pid; pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
      echo "moto.sh: stopped moto server pid $pid" >&2
    fi
  fi
  rm -f "$PIDFILE" "$PORTFILE"
}

status() {
  if running; then
    echo "moto.sh: running, pid $(cat "$PIDFILE"), http://127.0.0.1:$(cat "$PORTFILE")" >&2
    print_env "$(cat "$PORTFILE")"
  else
    echo "moto.sh: not running" >&2
    return 1
  fi
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
