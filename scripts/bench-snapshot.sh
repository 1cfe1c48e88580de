#!/usr/bin/env bash
# Benchmarks snapshot and restore against the standard tools, side by side in
# one run, on a deterministic mixed corpus (scripts/gencorpus):
#   gzip level 6 snapshot   vs  tar -cf - | pigz -6        (time, size)
#   zstd default snapshot   vs  tar -cf - | zstd -3 -T0    (time, size)
#   restore of the gzip one vs  pigz -dc | tar -x           (time)
#   peak RSS of a snapshot of the corpus and of one 4x larger
# Every timed command runs after a warm-up read of its input, 5 times (RUNS),
# interleaved with its reference; the median counts. Prints a markdown table
# and writes it to var/bench-snapshot.md.
#
# Environment: BENCH_DIR (default var/bench-corpus; regenerated only when
# missing, BENCH_DIR-x4 likewise), BIN (default bin/entrypoint), RUNS (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
BIN=${BIN:-$root/bin/entrypoint}
RUNS=${RUNS:-5}
corpus=${BENCH_DIR:-$root/var/bench-corpus}
corpus=$(realpath -m "$corpus")
corpus4=$corpus-x4
work=$root/var/bench-work
report=$root/var/bench-snapshot.md

for cmd in pigz zstd tar; do
  command -v "$cmd" >/dev/null || { echo "bench: $cmd missing (run scripts/deps.sh)" >&2; exit 1; }
done
if [ ! -x /usr/bin/time ]; then
  echo "bench: installing GNU time for peak RSS" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
fi
if [ ! -x "$BIN" ]; then
  echo "bench: $BIN missing, building it" >&2
  CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/entrypoint
fi
mkdir -p "$(dirname "$corpus")"
[ -d "$corpus" ] || { echo "bench: generating corpus in $corpus" >&2; go run ./scripts/gencorpus -out "$corpus" -scale 1; }
[ -d "$corpus4" ] || { echo "bench: generating 4x corpus in $corpus4" >&2; go run ./scripts/gencorpus -out "$corpus4" -scale 4; }

rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
parent=$(dirname "$corpus")
base=$(basename "$corpus")
export SNAPVISOR_LOG_LEVEL=warn SNAPVISOR_NAME=bench

warm() { tar -cf - -C "$(dirname "$1")" "$(basename "$1")" >/dev/null; }

# timed OUTFILE CMD...: runs CMD under GNU time, appends "wall_seconds max_rss_kib" to OUTFILE.
# An untimed sync before and after keeps one command's writeback out of the next one's time.
timed() {
  local out=$1; shift
  sync
  /usr/bin/time -f '%e %M' -o "$work/.time" "$@"
  cat "$work/.time" >>"$out"
  sync
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { awk -v c="$1" '{print $c}' "$2" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ratio3() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a / b }'; }
mib() { awk -v n="$1" 'BEGIN { printf "%.1f MiB", n / 1048576 }'; }
kib2mib() { awk -v n="$1" 'BEGIN { printf "%.1f MiB", n / 1024 }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }' && echo yes || echo NO; }

# snap OUTFILE COMPRESSION DIR SOURCE: one timed snapshot.
snap() {
  timed "$1" env SNAPVISOR_COMPRESSION="$2" SNAPVISOR_DIR="$3" SNAPVISOR_SOURCE="$4" "$BIN" snapshot >/dev/null
}

corpus_bytes=$(du -sb "$corpus" | awk '{print $1}')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench: corpus $(mib "$corpus_bytes") in $corpus, $RUNS runs each, $(nproc) cores" >&2

# gzip level 6 vs pigz -6
warm "$corpus"
for i in $(seq "$RUNS"); do
  rm -rf "$work/gz"; mkdir -p "$work/gz"
  snap "$work/snap-gz" gzip "$work/gz" "$corpus"
  rm -f "$work/pigz.tar.gz"
  timed "$work/pigz" bash -c 'tar -cf - -C "$1" "$2" | pigz -6 >"$3"' _ "$parent" "$base" "$work/pigz.tar.gz"
done
gz_archive=$(ls "$work"/gz/bench-*.tar.gz)
gz_size=$(stat -c %s "$gz_archive")
pigz_size=$(stat -c %s "$work/pigz.tar.gz")

# zstd default vs zstd -3 -T0
for i in $(seq "$RUNS"); do
  rm -rf "$work/zst"; mkdir -p "$work/zst"
  snap "$work/snap-zst" zstd "$work/zst" "$corpus"
  rm -f "$work/cli.tar.zst"
  timed "$work/zstdcli" bash -c 'tar -cf - -C "$1" "$2" | zstd -q -3 -T0 >"$3"' _ "$parent" "$base" "$work/cli.tar.zst"
done
zst_size=$(stat -c %s "$(ls "$work"/zst/bench-*.tar.zst)")
cli_size=$(stat -c %s "$work/cli.tar.zst")

# restore of the gzip snapshot vs pigz -dc | tar -x (targets removed untimed before each run)
cat "$gz_archive" "$work/pigz.tar.gz" >/dev/null
for i in $(seq "$RUNS"); do
  rm -rf "$work/restore"; mkdir -p "$work/restore"
  timed "$work/restore-snap" env SNAPVISOR_SOURCE="$work/restore/$base" SNAPVISOR_DIR="$work/gz" \
    "$BIN" restore --discard-current "$(basename "$gz_archive")" >/dev/null
  rm -rf "$work/untar"; mkdir -p "$work/untar"
  timed "$work/restore-pigz" bash -c 'pigz -dc "$1" | tar -x -C "$2"' _ "$work/pigz.tar.gz" "$work/untar"
done
diff -r "$work/restore/$base" "$work/untar/$base" >/dev/null || { echo "bench: restored trees differ" >&2; exit 1; }
rm -rf "$work/restore" "$work/untar"

# Peak RSS: corpus and 4x corpus, gzip and zstd.
warm "$corpus4"
for c in gzip zstd; do
  rm -rf "$work/rss"; mkdir -p "$work/rss"
  snap "$work/rss-$c-1" "$c" "$work/rss" "$corpus"
  rm -rf "$work/rss"; mkdir -p "$work/rss"
  snap "$work/rss-$c-4" "$c" "$work/rss" "$corpus4"
done
rm -rf "$work/rss"
corpus4_bytes=$(du -sb "$corpus4" | awk '{print $1}')

t_gz=$(col 1 "$work/snap-gz"); t_pigz=$(col 1 "$work/pigz")
t_zst=$(col 1 "$work/snap-zst"); t_cli=$(col 1 "$work/zstdcli")
t_rs=$(col 1 "$work/restore-snap"); t_rp=$(col 1 "$work/restore-pigz")
r_gz=$(ratio "$t_gz" "$t_pigz"); s_gz=$(ratio3 "$gz_size" "$pigz_size")
r_zst=$(ratio "$t_zst" "$t_cli"); s_zst=$(ratio3 "$zst_size" "$cli_size")
r_rs=$(ratio "$t_rs" "$t_rp")
rss() { awk '{print $2}' "$work/rss-$1-$2"; }

{
  echo "## Snapshot benchmark"
  echo
  echo "Corpus: $(mib "$corpus_bytes") mixed (text-like, random, zeros, small files), generated by scripts/gencorpus;"
  echo "4x corpus: $(mib "$corpus4_bytes"). $(nproc) cores, warm page cache, median of $RUNS runs. $(date -u +%Y-%m-%dT%H:%MZ)."
  echo "Load average before/after: $load_before / $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews wall times)."
  echo
  echo "| Measure | snapvisor | reference | ratio | target | met |"
  echo "|---|---|---|---|---|---|"
  echo "| gzip -6 snapshot, wall time | ${t_gz} s | ${t_pigz} s \`tar -cf - \\| pigz -6\` | ${r_gz}x | ≤ 0.45x | $(le "$r_gz" 0.45) |"
  echo "| gzip -6 snapshot, size | $(mib "$gz_size") | $(mib "$pigz_size") | ${s_gz}x | ≤ 1.01x | $(le "$s_gz" 1.01) |"
  echo "| zstd snapshot, wall time | ${t_zst} s | ${t_cli} s \`tar -cf - \\| zstd -3 -T0\` | ${r_zst}x | ≤ 1.0x | $(le "$r_zst" 1.0) |"
  echo "| zstd snapshot, size | $(mib "$zst_size") | $(mib "$cli_size") | ${s_zst}x | ≤ 1.02x | $(le "$s_zst" 1.02) |"
  echo "| restore gzip snapshot, wall time | ${t_rs} s | ${t_rp} s \`pigz -dc \\| tar -x\` | ${r_rs}x | ≤ 1.0x | $(le "$r_rs" 1.0) |"
  for c in gzip zstd; do
    echo "| peak RSS, $c snapshot of corpus | $(kib2mib "$(rss $c 1)") | | | ≤ 40 MiB | $(le "$(rss $c 1)" 40960) |"
    echo "| peak RSS, $c snapshot of 4x corpus | $(kib2mib "$(rss $c 4)") | | | ≤ 40 MiB | $(le "$(rss $c 4)" 40960) |"
  done
  echo
  echo "snapvisor restore includes its sha256 check of the archive and a syncfs before the swap; the reference does neither."
} | tee "$report"
