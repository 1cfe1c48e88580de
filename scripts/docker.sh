#!/usr/bin/env bash
# A private Docker engine for the image end-to-end tests (images/e2e_test.go), and the local
# Debian base image those tests build the examples on (nothing can be pulled from a registry here).
#
#   scripts/docker.sh install   apt-get install docker.io docker-compose debootstrap (idempotent)
#   scripts/docker.sh start     start dockerd with its own data/exec root, pidfile and socket; wait until it answers
#   scripts/docker.sh stop      stop the dockerd that start started (recorded PID); tidy docker0/br-* and iptables
#   scripts/docker.sh base [P]  debootstrap bookworm (+ packages P, default redis-server) into a cached
#                               rootfs and `docker import` it as snapvisor-base:<tag>; skipped when the image exists
#   scripts/docker.sh env       print DOCKER_HOST=... for this engine (eval "$(scripts/docker.sh env)")
#   scripts/docker.sh status    exit 0 when the engine answers
#
# Everything lives outside the work tree so that `make clean` (rm -rf var) never pulls the floor
# from under a running engine and a second run reuses the cached rootfs and images:
#   SNAPVISOR_DOCKER_DIR  (default /var/lib/snapvisor-docker): data/, exec/, dockerd.pid, docker.sock, dockerd.log
#   SNAPVISOR_TOOLS       (default $HOME/.cache/snapvisor-tools): rootfs tarballs under debootstrap/
# The 20.10 client is used explicitly (/usr/bin/docker): a newer client may come first in PATH.
# Cold: install ~40 s, base ~2 min (debootstrap); warm: start ~1-2 s, base instant.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

D=${SNAPVISOR_DOCKER_DIR:-/var/lib/snapvisor-docker}
TOOLS=${SNAPVISOR_TOOLS:-$HOME/.cache/snapvisor-tools}
SOCK=$D/docker.sock
PIDFILE=$D/dockerd.pid
DOCKER=/usr/bin/docker
SUITE=bookworm
export DOCKER_HOST=unix://$SOCK

log() { echo "docker.sh: $*" >&2; }

install() {
  local missing=()
  [ -x /usr/bin/docker ] && [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v iptables >/dev/null || missing+=(iptables)
  [ ${#missing[@]} -eq 0 ] && return 0
  apt_install "${missing[@]}"
}

alive() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
answers() { timeout 5 "$DOCKER" version >/dev/null 2>&1; }

start() {
  install
  if alive && answers; then
    log "already running (pid $(cat "$PIDFILE"), $DOCKER_HOST)"
    return 0
  fi
  if alive; then
    log "dockerd pid $(cat "$PIDFILE") is alive but does not answer; stopping it first"
    stop
  fi
  mkdir -p "$D/data" "$D/exec"
  rm -f "$SOCK" "$PIDFILE"
  # setsid: the engine outlives the shell that started it (a test, a terminal) until `stop`.
  setsid /usr/sbin/dockerd --data-root "$D/data" --exec-root "$D/exec" --pidfile "$PIDFILE" \
    -H "unix://$SOCK" >"$D/dockerd.log" 2>&1 </dev/null &
  local pid=$! i
  for ((i = 0; i < 300; i++)); do
    if answers; then
      [ -f "$PIDFILE" ] || echo "$pid" >"$PIDFILE"
      log "started (pid $(cat "$PIDFILE"), $DOCKER_HOST, log $D/dockerd.log)"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  log "dockerd did not start; last lines of $D/dockerd.log:"
  tail -20 "$D/dockerd.log" >&2 || true
  kill -TERM "$pid" 2>/dev/null || true
  return 1
}

# Remove what dockerd leaves behind when it stops: the docker0 bridge, user-defined bridges
# (br-<network id>, recorded while the engine still ran) and the DOCKER* iptables chains and the
# rules that jump to them or mention docker0/br-*.
tidy() {
  local br
  for br in docker0 $(cat "$D/bridges" 2>/dev/null); do
    ip link show "$br" >/dev/null 2>&1 && ip link delete "$br" 2>/dev/null || true
  done
  rm -f "$D/bridges"
  command -v iptables >/dev/null || return 0
  local t line chains
  for t in filter nat; do
    { iptables -t "$t" -S 2>/dev/null || true; } | { grep -E '^-A ' || true; } | { grep -E 'DOCKER|docker0|br-[0-9a-f]{12}' || true; } |
      while read -r line; do
        # rules inside DOCKER* chains go with the chains; delete the jumps and docker0 rules elsewhere
        case $line in "-A DOCKER"*) continue ;; esac
        eval "iptables -t $t ${line/-A /-D }" 2>/dev/null || true
      done
    chains=$(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}' || true)
    for line in $chains; do iptables -t "$t" -F "$line" 2>/dev/null || true; done
    for line in $chains; do iptables -t "$t" -X "$line" 2>/dev/null || true; done
  done
}

stop() {
  if alive; then
    local pid i
    pid=$(cat "$PIDFILE")
    # remember user-defined bridges so tidy can delete them once the engine is gone
    "$DOCKER" network ls -q --filter driver=bridge 2>/dev/null |
      while read -r id; do
        [ "$("$DOCKER" network inspect -f '{{.Name}}' "$id" 2>/dev/null)" = bridge ] || echo "br-${id:0:12}"
      done >"$D/bridges" || true
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "dockerd pid $pid did not stop in 20 s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
    log "stopped (pid $pid)"
  fi
  rm -f "$PIDFILE" "$SOCK"
  tidy
}

# base [packages...]: a local Debian base image, tagged by its package list
# (redis-server -> snapvisor-base:bookworm-redis-server).
base() {
  local pkgs=("$@")
  [ ${#pkgs[@]} -eq 0 ] && pkgs=(redis-server)
  local tag
  tag=$SUITE-$(IFS=-; echo "${pkgs[*]}")
  local image=snapvisor-base:$tag
  if "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
    log "$image exists"
    echo "$image"
    return 0
  fi
  local dir=$TOOLS/debootstrap tar
  tar=$dir/$tag.tar
  if [ ! -s "$tar" ]; then
    install
    mkdir -p "$dir"
    local root=$dir/$tag.rootfs t0=$SECONDS
    rm -rf "$root"
    log "debootstrap --variant=minbase $SUITE with ${pkgs[*]} (about 2 minutes, once)"
    local include
    include=$(IFS=,; echo "${pkgs[*]}")
    if ! debootstrap --variant=minbase --include="$include" "$SUITE" "$root" >"$dir/$tag.log" 2>&1; then
      log "debootstrap failed; last lines of $dir/$tag.log:"
      tail -20 "$dir/$tag.log" >&2
      return 1
    fi
    # smaller image: no apt lists or caches
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" --numeric-owner -cf "$tar.tmp" .
    mv "$tar.tmp" "$tar"
    rm -rf "$root"
    log "rootfs cached in $tar ($((SECONDS - t0)) s)"
  fi
  "$DOCKER" import "$tar" "$image" >/dev/null
  log "imported $image"
  echo "$image"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  install) install ;;
  start) start ;;
  stop) stop ;;
  base) base "$@" ;;
  env) echo "DOCKER_HOST=$DOCKER_HOST" ;;
  status) answers ;;
  *) sed -n '2,19p' "$0" >&2; exit 64 ;;
esac
