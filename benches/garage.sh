#!/usr/bin/env bash
# A single-node Garage (a full S3 server, crates.io `garage`) on 127.0.0.1, for the S3
# throughput benchmark (`s3_transfer`). Not used by the tests or by `.ci/run`: building it takes
# ~15 minutes on 2 cores, and s3s-fs (.ci/s3.sh) already checks signatures for the tests.
#
#   bash benches/garage.sh start   # install garage 2.5.0 into $INFERMUX_CI_HOME/tools when missing,
#                                  # start it, lay out one node, import a key allowed to create
#                                  # buckets, and write `export INFERMUX_S3_URL=…
#                                  # INFERMUX_S3_ACCESS_KEY=… INFERMUX_S3_SECRET_KEY=…` to $STATE/env
#   bash benches/garage.sh stop
#
# $STATE is $GARAGE_STATE_DIR, default $INFERMUX_CI_HOME/run/garage. Compression is off (the
# benchmark's payload is random bytes) and the region is us-east-1, as both clients assume.
set -euo pipefail

H="${INFERMUX_CI_HOME:-/var/cache/infermux-ci}"
STATE="${GARAGE_STATE_DIR:-$H/run/garage}"
TOOLS="$H/tools"
VERSION=2.5.0
BIN="${GARAGE_BIN:-$TOOLS/bin/garage}"
PORT="${GARAGE_PORT:-3900}"
KEY_ID=GK0123456789abcdef01234567
SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  if [ ! -x "$BIN" ]; then
    echo "installing garage $VERSION into $TOOLS (~15 minutes)" >&2
    cargo install --locked "garage@$VERSION" --root "$TOOLS"
  fi
  mkdir -p "$STATE/meta" "$STATE/data"
  cat >"$STATE/garage.toml" <<EOF
metadata_dir = "$STATE/meta"
data_dir = "$STATE/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$((PORT + 1))"
rpc_public_addr = "127.0.0.1:$((PORT + 1))"
rpc_secret = "$SECRET"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$PORT"
root_domain = ".s3.garage.localhost"
EOF
  local g=("$BIN" -c "$STATE/garage.toml")
  if [ -f "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
    echo "garage already running (pid $(cat "$STATE/pid"))" >&2
  else
    nohup "${g[@]}" server >"$STATE/log" 2>&1 &
    echo $! >"$STATE/pid"
  fi
  for _ in $(seq 1 100); do
    listening "$PORT" && break
    sleep 0.1
  done
  listening "$PORT" || { echo "garage did not start (log: $STATE/log)" >&2; exit 1; }
  local layout=""
  for _ in $(seq 1 100); do
    layout="$("${g[@]}" layout show 2>/dev/null)" && break
    sleep 0.1
  done
  [ -n "$layout" ] || { echo "garage does not answer (log: $STATE/log)" >&2; exit 1; }
  if echo "$layout" | grep -q "Current cluster layout version: 0"; then
    local node
    node="$("${g[@]}" node id -q | cut -d@ -f1)"
    "${g[@]}" layout assign -z dc1 -c 10G "$node" >/dev/null
    "${g[@]}" layout apply --version 1 >/dev/null
  fi
  if ! "${g[@]}" key info "$KEY_ID" >/dev/null 2>&1; then
    "${g[@]}" key import --yes -n bench "$KEY_ID" "$SECRET" >/dev/null
  fi
  "${g[@]}" key allow --create-bucket "$KEY_ID" >/dev/null
  cat >"$STATE/env" <<EOF
export INFERMUX_S3_URL=http://127.0.0.1:$PORT
export INFERMUX_S3_ACCESS_KEY=$KEY_ID
export INFERMUX_S3_SECRET_KEY=$SECRET
EOF
  echo "garage up on 127.0.0.1:$PORT; source $STATE/env" >&2
}

stop() {
  if [ -f "$STATE/pid" ]; then
    kill "$(cat "$STATE/pid")" 2>/dev/null || true
    rm -f "$STATE/pid"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
