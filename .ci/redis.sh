#!/usr/bin/env bash
# Start/stop a throwaway Redis on 127.0.0.1 for the shared-state tests (infermux-multiplex,
# feature `redis`): no persistence, a free port from 16379 up.
#
#   bash .ci/redis.sh start   # install redis-server (Debian) when missing, start one, wait for
#                             # PING, write `export INFERMUX_REDIS_URL=...` to $STATE/env
#   bash .ci/redis.sh stop    # stop the one `start` started (by its pid file)
#
# $STATE is $REDIS_STATE_DIR, default $INFERMUX_CI_HOME/run/redis (/var/cache/infermux-ci/...).
# The tests also start private redis-servers (from PATH) of their own, to kill them mid-run.
set -euo pipefail

H="${INFERMUX_CI_HOME:-/var/cache/infermux-ci}"
STATE="${REDIS_STATE_DIR:-$H/run/redis}"
PIDFILE="$STATE/redis.pid"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server
  fi
  mkdir -p "$STATE"
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "redis already running (pid $(cat "$PIDFILE"))"
    return 0
  fi
  local port="${REDIS_PORT:-16379}"
  while listening "$port"; do
    port=$((port + 1))
    [ "$port" -lt 16479 ] || { echo "no free port for redis" >&2; return 1; }
  done
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --daemonize yes --pidfile "$PIDFILE" --logfile "$STATE/redis.log" --dir "$STATE"
  for _ in $(seq 1 100); do
    if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
      echo "export INFERMUX_REDIS_URL=redis://127.0.0.1:$port" >"$STATE/env"
      echo "redis up on 127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "redis did not answer PING; its log:" >&2
  cat "$STATE/redis.log" >&2 || true
  return 1
}

stop() {
  if [ -f "$PIDFILE" ]; then
    kill "$(cat "$PIDFILE")" 2>/dev/null || true
    rm -f "$PIDFILE" "$STATE/env"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
