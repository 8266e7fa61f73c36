#!/usr/bin/env bash
# A Docker engine for esteira: reuse a reachable one, else start a private daemon.
#
#   docker/engine.sh up      ensure an engine answers; prints DOCKER_HOST=<uri> on the last line
#   docker/engine.sh down    stop the private daemon started here (by its PID); no-op otherwise
#   docker/engine.sh status  exit 0 and print DOCKER_HOST=<uri> when an engine answers, else exit 1
#
# The private daemon keeps everything under $ESTEIRA_DOCKER_DIR
# (default ~/.cache/esteira/docker, outside any clone, so layers survive clean clones):
#   data/ (images, layers)  run/ (exec root)  docker.sock  dockerd.pid  dockerd.log
# It runs with overlay2, no bridge and no iptables: builds and containers use --network host.
# When no dockerd is installed, `up` installs Debian's docker.io with apt
# (unless ESTEIRA_ENGINE_INSTALL=0).
set -euo pipefail

DIR=${ESTEIRA_DOCKER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esteira/docker}
SOCK=$DIR/docker.sock
PIDFILE=$DIR/dockerd.pid
LOG=$DIR/dockerd.log
PRIVATE=unix://$SOCK

say() { echo "[engine] $*" >&2; }

answers() {  # answers <DOCKER_HOST>: the engine at that address replies to `docker version`
  DOCKER_HOST=$1 timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

private_pid() {  # the private daemon's PID when it is alive
  [[ -f $PIDFILE ]] || return 1
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

reachable() {  # the first engine that answers: $DOCKER_HOST, the private socket, the system socket
  local candidates=()
  [[ -n ${DOCKER_HOST:-} ]] && candidates+=("$DOCKER_HOST")
  candidates+=("$PRIVATE" "unix:///var/run/docker.sock")
  command -v docker >/dev/null 2>&1 || return 1
  for host in "${candidates[@]}"; do
    if answers "$host"; then
      echo "$host"
      return 0
    fi
  done
  return 1
}

install_engine() {
  command -v dockerd >/dev/null 2>&1 && return 0
  if [[ ${ESTEIRA_ENGINE_INSTALL:-1} == 0 ]]; then
    say "error: no dockerd installed (ESTEIRA_ENGINE_INSTALL=0: not installing docker.io)"
    exit 1
  fi
  say "no dockerd here: installing Debian's docker.io"
  if [[ $(id -u) != 0 ]]; then
    say "error: installing docker.io needs root (apt-get); install it, or set DOCKER_HOST to an engine"
    exit 1
  fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null) || {
    say "error: apt-get install docker.io failed"
    exit 1
  }
}

start_private() {
  install_engine
  mkdir -p "$DIR/data" "$DIR/run"
  if pid=$(private_pid); then
    say "a private dockerd (pid $pid) is starting; waiting for it"
  else
    rm -f "$SOCK" "$PIDFILE"
    say "starting a private dockerd: data root $DIR/data"
    # setsid: the daemon outlives this script and is not killed with the caller's process group
    setsid dockerd \
      --data-root "$DIR/data" --exec-root "$DIR/run" -H "$PRIVATE" --pidfile "$PIDFILE" \
      --storage-driver=overlay2 --iptables=false --ip-masq=false --bridge=none \
      >"$LOG" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 120); do
    if answers "$PRIVATE"; then
      return 0
    fi
    sleep 0.5
  done
  say "error: the private dockerd did not answer within 60 s; see $LOG"
  tail -n 5 "$LOG" >&2 || true
  exit 1
}

stop_private() {
  local pid
  if pid=$(private_pid); then
    say "stopping the private dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "dockerd (pid $pid) still running after 30 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  else
    say "no private dockerd running"
  fi
  # network namespaces the daemon leaves mounted under its exec root
  if [[ -d $DIR/run ]]; then
    while read -r mnt; do
      umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    done < <(awk -v d="$DIR/run" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r)
  fi
  rm -f "$PIDFILE" "$SOCK"
}

case ${1:-up} in
  up)
    if host=$(reachable); then
      echo "DOCKER_HOST=$host"
    else
      start_private
      echo "DOCKER_HOST=$PRIVATE"
    fi
    ;;
  down) stop_private ;;
  status)
    host=$(reachable) || { echo "no Docker engine answers" >&2; exit 1; }
    echo "DOCKER_HOST=$host"
    ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
