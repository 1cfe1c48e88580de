#!/usr/bin/env bash
# Init benchmark (issue 2): snapvisor's entrypoint and its init-only build (entrypoint-init,
# issue 18) vs Debian's tini and dumb-init,
# side by side: start-to-exit time of `INIT -- true`, idle RSS of the init, and
# signal latency from the init to its service. Prints a markdown table and writes
# it to var/bench-init.md. Takes well under two minutes on 2 cores.
#
#   scripts/bench-init.sh [-runs N] [-sigruns N]    (extra flags go to scripts/benchinit)
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh
if [ ! -x bin/entrypoint ]; then
  make build
fi
if [ ! -x bin/entrypoint-init ]; then
  make build-init
fi
mkdir -p var
exec go run ./scripts/benchinit -entrypoint bin/entrypoint -init bin/entrypoint-init -runs 300 -sigruns 200 -out var/bench-init.md "$@"
