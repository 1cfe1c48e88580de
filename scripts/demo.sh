#!/usr/bin/env bash
# make demo: the main job. Wraps a real Redis with the entrypoint, snapshots
# every 10 s into ./var/backups with rotation (keep 5), console logs.
# Ctrl-C stops Redis cleanly and takes a final snapshot.
# DEMO_SECONDS=N stops it by itself after N seconds (non-interactive runs).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  apt_install redis-server redis-tools
fi
[ -x bin/entrypoint ] || make build

PORT=${DEMO_PORT:-6390}
VAR=$PWD/var
mkdir -p "$VAR/data"

export SNAPVISOR_BACKUP=true
export SNAPVISOR_SCHEDULE="@every 10s"
export SNAPVISOR_KEEP=5
export SNAPVISOR_ON_START=true SNAPVISOR_START_DELAY=2s
export SNAPVISOR_ON_EXIT=true
export SNAPVISOR_SOURCE="$VAR/data" SNAPVISOR_DIR="$VAR/backups"
export SNAPVISOR_CONTROL_SOCKET="$VAR/snapvisor.sock"
export SNAPVISOR_LOG_FORMAT=console
# The framework document's Redis consistency hook: BGSAVE, wait until LASTSAVE changes.
# LASTSAVE counts whole seconds: first let the clock leave the second of the previous save.
export SNAPVISOR_PRE_COMMAND="b=\$(redis-cli -p $PORT LASTSAVE); while [ \"\$(date +%s)\" -le \"\$b\" ]; do sleep 0.1; done; redis-cli -p $PORT BGSAVE >/dev/null; while [ \"\$(redis-cli -p $PORT LASTSAVE)\" = \"\$b\" ]; do sleep 0.1; done"

cat <<MSG
== snapvisor demo ==
Redis on 127.0.0.1:$PORT, data in var/data, snapshots every 10 s in var/backups (keep 5).
A writer increments demo:counter every second. Press Ctrl-C to stop: Redis shuts down,
a final snapshot is taken, and the entrypoint exits with Redis's code.
Try in another terminal:  SNAPVISOR_CONTROL_SOCKET=$VAR/snapvisor.sock bin/entrypoint status
Then: rm -rf var/data && make demo   -> the counter continues from the restored snapshot.
MSG

( # the writer: not part of the service, just traffic for the demo
  while sleep 1; do redis-cli -p "$PORT" INCR demo:counter >/dev/null 2>&1 || true; done
) &
writer=$!
trap 'kill $writer 2>/dev/null || true' EXIT

args=(bin/entrypoint -- redis-server --bind 127.0.0.1 --port "$PORT" --dir "$VAR/data" --save "3600 1" --appendonly no --loglevel warning)
if [ -n "${DEMO_SECONDS:-}" ]; then
  "${args[@]}" &
  ep=$!
  sleep "$DEMO_SECONDS"
  kill -TERM "$ep"
  set +e; wait "$ep"; rc=$?; set -e
else
  set +e; "${args[@]}"; rc=$?; set -e
fi
echo
echo "== entrypoint exited with $rc; demo:counter in the newest snapshot survives a wiped var/data =="
bin/entrypoint list 2>/dev/null || ls -l "$VAR/backups"
exit "$rc"
