#!/usr/bin/env bash
# make bench: every benchmark, each running its peer side by side in the same
# run; the tables are printed and written into README.md between markers, each
# with the machine and date that produced it. Sized to finish in under 20
# minutes on 2 cores: every benchmark's run count and series length is set
# here (each script's own defaults are for a longer, steadier run), and the
# time each one took is printed at the end.
#
# Environment: BENCH_ONLY (names, e.g. "snapshot init": only those).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
./scripts/deps.sh
make -s build build-init 2>/dev/null || make -s build

started=$SECONDS
times=()
# bench NAME ENV...: runs scripts/bench-NAME.sh with ENV, timing it.
bench() {
  local name=$1 t0=$SECONDS
  shift
  if [ -n "${BENCH_ONLY:-}" ] && [[ " $BENCH_ONLY " != *" $name "* ]]; then return 0; fi
  echo "bench: $name" >&2
  env "$@" "./scripts/bench-$name.sh"
  times+=("$name $((SECONDS - t0)) s")
}
bench init
bench snapshot RUNS=5
bench crypt RUNS=3
bench remote RUNS=3 # splices its own README table
bench copy RUNS=3   # splices its own README table
bench restic BENCH_RUNS=3 BENCH_DAYS=30
bench git BENCH_RUNS=3
bench drill RUNS=3

# Splice var/bench-NAME.md into README.md between <!-- bench-NAME --> markers.
splice() {
  awk -v n="$1" -v f="$2" '
    $0 == "<!-- bench-" n " -->" { print; while ((getline l < f) > 0) print l; skip=1; next }
    $0 == "<!-- /bench-" n " -->" { skip=0 }
    !skip { print }' README.md >README.md.new
  mv README.md.new README.md
}
for name in init snapshot crypt restic git drill; do
  f=var/bench-$name.md
  if [ -f "$f" ]; then splice "$name" "$f"; fi
done
echo "bench: README.md updated; took $((SECONDS - started)) s: ${times[*]}" >&2
