#!/usr/bin/env bash
# Benchmarks a restore drill against our own restore (issue 16): the 449 MiB
# bench corpus (scripts/gencorpus -layout flat: 64 x 4 MiB log-like text,
# 32 x 4 MiB random, one 64 MiB file of zeros) is snapshotted once (gzip) to a
# file:// remote; then, RUNS times, interleaved (the order alternating per run):
#   drill:   entrypoint drill --from URL   (download into SNAPVISOR_DRILL_DIR,
#            verified restore into it, delete; the corpus is the untouched source)
#   restore: entrypoint restore --from URL into an empty data directory
#            (download beside it, verified restore, swap)
# wall time and peak RSS (GNU time), medians of RUNS; target: drill <= 1.1x
# restore. Prints a markdown section (a README table row with date and machine)
# and writes it to var/bench-drill.md (scripts/bench.sh puts it into README.md).
#
# Environment: RUNS (default 3), BENCH_DRILL_CORPUS (default
# var/bench-restic-corpus, the restic benchmark's, generated when missing),
# BENCH_WORK (scratch, ~2 GiB, default var/bench-drill-work, removed at the
# end), BIN (default bin/entrypoint, built when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$PWD
BIN=${BIN:-$root/bin/entrypoint}
RUNS=${RUNS:-3}
corpus=$(realpath -m "${BENCH_DRILL_CORPUS:-$root/var/bench-restic-corpus}")
work=$(realpath -m "${BENCH_WORK:-$root/var/bench-drill-work}")
report=$root/var/bench-drill.md

need_gnu_time
if [ ! -x "$BIN" ]; then
  echo "bench-drill: $BIN missing, building it" >&2
  CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/entrypoint
fi
mkdir -p "$(dirname "$corpus")" "$(dirname "$report")"
[ -d "$corpus" ] || { echo "bench-drill: generating corpus in $corpus" >&2; go run ./scripts/gencorpus -out "$corpus" -layout flat; }

rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
base=$(basename "$corpus")
url=file://$work/remote
export SNAPVISOR_LOG_LEVEL=warn SNAPVISOR_NAME=bench SNAPVISOR_CONTROL_SOCKET=$work/none.sock SNAPVISOR_REMOTES=$url

corpus_bytes=$(du -sb "$corpus" | awk '{print $1}')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date +%s)
echo "bench-drill: corpus $(mib "$corpus_bytes") in $corpus, $RUNS runs, $(nproc) cores" >&2
SNAPVISOR_SOURCE=$corpus SNAPVISOR_DIR=$work/local "$BIN" snapshot >/dev/null
rm -rf "$work/local" # the drill reads the remote's copy, not a local one
archive_bytes=$(find "$work/remote" -name 'bench-*.tar.gz' -printf '%s\n')

# The corpus is the drill's (untouched) source: its size is the drill's estimate of the restored copy.
drill() { timed "$work/drill" env SNAPVISOR_SOURCE="$corpus" SNAPVISOR_DIR="$work/dir" "$BIN" drill --from "$url" >/dev/null; }
restore() {
  local d=$work/target
  rm -rf "$d"
  mkdir -p "$d/$base"
  timed "$work/restore" env SNAPVISOR_SOURCE="$d/$base" SNAPVISOR_DIR= "$BIN" restore --from "$url" >/dev/null
  rm -rf "$d"
}
for i in $(seq 1 "$RUNS"); do
  echo "bench-drill: run $i" >&2
  pair "$i" drill restore
done
[ -z "$(ls -A "$work/dir/.drill" 2>/dev/null)" ] || { echo "bench-drill: the drill left its scratch directory" >&2; exit 1; }
elapsed=$(($(date +%s) - started))

dw=$(col 1 "$work/drill") rw=$(col 1 "$work/restore") r=$(ratio "$dw" "$rw")
drss=$(awk '{print $2}' "$work/drill" | sort -n | tail -1) rrss=$(awk '{print $2}' "$work/restore" | sort -n | tail -1)
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
all() { awk '{printf "%s%s", sep, $1; sep=" "}' "$1"; }
{
  echo "## Restore drill benchmark: drill vs our own restore"
  echo
  echo "| date | machine | corpus | drill wall | restore wall | ratio | drill peak RSS | restore peak RSS | target | met |"
  echo "|---|---|---|---:|---:|---:|---:|---:|---|---|"
  echo "| $(date -u +%Y-%m-%d) | $(nproc) CPUs ($cpu_model) | $(mib "$corpus_bytes") ($(mib "$archive_bytes") gzip) | $dw s | $rw s | ${r}x | $(kib2mib "$drss") | $(kib2mib "$rrss") | ≤ 1.1x | $(le "$r" 1.1) |"
  echo
  echo "Medians of $RUNS runs, drill and restore back to back, the drill first in odd runs and second in even ones;"
  echo "peak RSS: the largest of all runs. All wall times: drill [$(all "$work/drill")], cpu $(col 3 "$work/drill") s;"
  echo "restore [$(all "$work/restore")], cpu $(col 3 "$work/restore") s. Drill: \`entrypoint drill --from file://...\`"
  echo "standalone (download with its .sha256 check into SNAPVISOR_DRILL_DIR, verified restore there, deletion; no"
  echo "command). Restore: \`entrypoint restore --from file://...\` into an empty directory (download beside it,"
  echo "verified restore into a staging directory, syncfs, swap). An untimed sync before and after every timed command."
  echo
  echo "Machine: $(nproc) CPUs ($cpu_model), $(uname -sr); snapvisor $(git describe --always --dirty --tags 2>/dev/null || echo unknown),"
  echo "$(go env GOVERSION). Load average before/after: $load_before / $(cut -d' ' -f1-3 /proc/loadavg) (a shared machine: other"
  echo "work skews wall times; the ratio comes from interleaved runs). $(date -u +%Y-%m-%dT%H:%MZ), ${elapsed} s."
} | tee "$report"
