#!/usr/bin/env bash
# Start/stop the S3-compatible servers for infermux-s3's tests: two s3s-fs endpoints on
# 127.0.0.1 (two ports) serving one data directory, so they act as two replicas of one store.
# s3s-fs checks SigV4 signatures, so a wrong-credentials test means something.
#
#   bash .ci/s3.sh start   # install s3s-fs (crates.io, cached in $INFERMUX_CI_HOME/tools) when
#                          # missing, start both servers, wait until they answer, write
#                          # `export INFERMUX_S3_URL=… INFERMUX_S3_URL2=… INFERMUX_S3_ACCESS_KEY=…
#                          # INFERMUX_S3_SECRET_KEY=… INFERMUX_S3S_FS=…` to $STATE/env
#   bash .ci/s3.sh stop    # stop the servers `start` started (by their pid files)
#
# $STATE is $S3_STATE_DIR, default $INFERMUX_CI_HOME/run/s3. The fault tests start private
# s3s-fs processes of their own (INFERMUX_S3S_FS names the binary) to kill them mid-run.
set -euo pipefail

H="${INFERMUX_CI_HOME:-/var/cache/infermux-ci}"
STATE="${S3_STATE_DIR:-$H/run/s3}"
TOOLS="$H/tools"
S3S_VERSION=0.14.1
BIN="$TOOLS/bin/s3s-fs"
ACCESS_KEY=infermux-ci
SECRET_KEY=infermux-ci-secret

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local port="$1"
  while listening "$port"; do
    port=$((port + 1))
    [ "$port" -lt $(("$1" + 100)) ] || { echo "no free port from $1" >&2; return 1; }
  done
  echo "$port"
}

start_one() {
  local name="$1" port="$2"
  local pidfile="$STATE/$name.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "s3s-fs $name already running (pid $(cat "$pidfile"))" >&2
    cat "$STATE/$name.port"
    return 0
  fi
  port="$(free_port "$port")"
  nohup "$BIN" --host 127.0.0.1 --port "$port" --access-key "$ACCESS_KEY" \
    --secret-key "$SECRET_KEY" "$STATE/data" >"$STATE/$name.log" 2>&1 &
  echo $! >"$pidfile"
  echo "$port" >"$STATE/$name.port"
  for _ in $(seq 1 100); do
    if listening "$port"; then
      echo "s3s-fs $name up on 127.0.0.1:$port" >&2
      echo "$port"
      return 0
    fi
    sleep 0.1
  done
  echo "s3s-fs $name did not start (log: $STATE/$name.log)" >&2
  return 1
}

start() {
  if [ ! -x "$BIN" ] || ! "$BIN" --version 2>/dev/null | grep -q "$S3S_VERSION"; then
    cargo install --locked "s3s-fs@$S3S_VERSION" --features binary --root "$TOOLS" \
      --target-dir "$H/target-s3s"
  fi
  # a fresh store each run: objects of earlier runs neither pile up nor meet a reused name
  rm -rf "$STATE/data"
  mkdir -p "$STATE/data"
  local p1 p2
  p1="$(start_one s3a "${S3_PORT:-18090}")"
  p2="$(start_one s3b "${S3_PORT2:-18190}")"
  cat >"$STATE/env" <<ENV
export INFERMUX_S3_URL=http://127.0.0.1:$p1
export INFERMUX_S3_URL2=http://127.0.0.1:$p2
export INFERMUX_S3_ACCESS_KEY=$ACCESS_KEY
export INFERMUX_S3_SECRET_KEY=$SECRET_KEY
export INFERMUX_S3S_FS=$BIN
ENV
}

stop() {
  local name pidfile
  for name in s3a s3b; do
    pidfile="$STATE/$name.pid"
    if [ -f "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
  # the store goes with its servers: a later run starts empty anyway, and a 200 MiB object
  # left behind is disk another run may lack
  rm -rf "$STATE/data"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
