#!/usr/bin/env bash
# Benchmarks snapshot and restore against the standard tools, side by side in
# one run, on a deterministic mixed corpus (scripts/gencorpus):
#   gzip level 6 snapshot   vs  tar -cf - | pigz -6        (time, size)
#   zstd default snapshot   vs  tar -cf - | zstd -3 -T0    (time, size)
#   restore of the gzip one vs  pigz -dc | tar -x           (time)
#   peak RSS of a snapshot of the corpus and of one 4x larger, with the
#   machine's GOMAXPROCS and with 8 and 16 (the worker count follows
#   GOMAXPROCS, so this shows the memory of an 8- or 16-core machine)
# Every timed pair runs RUNS times, ours and the reference interleaved, after
# a warm-up read of the corpus, with an untimed sync before each; the medians
# count. Prints a markdown section and writes it to var/bench-snapshot.md
# (scripts/bench.sh puts it into README.md).
#
# Environment: BENCH_DIR (corpus, default var/bench-corpus; generated when
# missing, BENCH_DIR-x4 likewise), BENCH_WORK (scratch for archives and
# restored trees, ~2 x RUNS x corpus size, default var/bench-work, removed at the end),
# BIN (default bin/entrypoint), RUNS (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$PWD
BIN=${BIN:-$root/bin/entrypoint}
RUNS=${RUNS:-5}
corpus=${BENCH_DIR:-$root/var/bench-corpus}
corpus=$(realpath -m "$corpus")
corpus4=$corpus-x4
work=$(realpath -m "${BENCH_WORK:-$root/var/bench-work}")
report=$root/var/bench-snapshot.md

for cmd in pigz zstd tar; do
  command -v "$cmd" >/dev/null || { echo "bench: $cmd missing (run scripts/deps.sh)" >&2; exit 1; }
done
need_gnu_time
if [ ! -x "$BIN" ]; then
  echo "bench: $BIN missing, building it" >&2
  CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/entrypoint
fi
mkdir -p "$(dirname "$corpus")" "$(dirname "$report")"
[ -d "$corpus" ] || { echo "bench: generating corpus in $corpus" >&2; go run ./scripts/gencorpus -out "$corpus" -scale 1; }
[ -d "$corpus4" ] || { echo "bench: generating 4x corpus in $corpus4" >&2; go run ./scripts/gencorpus -out "$corpus4" -scale 4; }

rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
parent=$(dirname "$corpus")
base=$(basename "$corpus")
export SNAPVISOR_LOG_LEVEL=warn SNAPVISOR_NAME=bench

warm() { tar -cf - -C "$(dirname "$1")" "$(basename "$1")" >/dev/null; }

# timed OUTFILE CMD...: runs CMD under GNU time, appends "wall_seconds max_rss_kib cpu_seconds" to OUTFILE.
# An untimed sync before and after keeps one command's writeback out of the next one's time.
timed() {
  local out=$1; shift
  sync
  /usr/bin/time -f '%e %M %U %S' -o "$work/.time" "$@"
  awk '{print $1, $2, $3 + $4}' "$work/.time" >>"$out"
  sync
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { awk -v c="$1" '{print $c}' "$2" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ratio3() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a / b }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.2f%%", (a / b - 1) * 100 }'; }
mib() { awk -v n="$1" 'BEGIN { printf "%.1f MiB", n / 1048576 }'; }
kib2mib() { awk -v n="$1" 'BEGIN { printf "%.1f MiB", n / 1024 }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }' && echo yes || echo NO; }
all() { awk '{printf "%s%s", sep, $1; sep=" "}' "$1"; }

# snap OUTFILE COMPRESSION DIR SOURCE: one timed snapshot.
snap() {
  timed "$1" env SNAPVISOR_COMPRESSION="$2" SNAPVISOR_DIR="$3" SNAPVISOR_SOURCE="$4" "$BIN" snapshot >/dev/null
}

corpus_bytes=$(du -sb "$corpus" | awk '{print $1}')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date +%s)
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
rm -rf "$work/zst" "$work/cli.tar.zst"

# restore of the gzip snapshot vs pigz -dc | tar -x. Each run extracts into a fresh directory and
# nothing is deleted until all runs are done: on ext4, creating inodes right after deleting many
# scans the recently deleted ones, which would slow whichever side ran next. Dirty data of the
# previous run is synced untimed first, so our syncfs only writes what our own restore wrote.
cat "$gz_archive" "$work/pigz.tar.gz" >/dev/null
for i in $(seq "$RUNS"); do
  mkdir -p "$work/tree-ours-$i"
  sync
  timed "$work/restore-snap" env SNAPVISOR_SOURCE="$work/tree-ours-$i/$base" SNAPVISOR_DIR="$work/gz" \
    "$BIN" restore --discard-current "$(basename "$gz_archive")" >/dev/null
  mkdir -p "$work/tree-ref-$i"
  sync
  timed "$work/restore-pigz" bash -c 'pigz -dc "$1" | tar -x -C "$2"' _ "$work/pigz.tar.gz" "$work/tree-ref-$i"
done
diff -r "$work/tree-ours-1/$base" "$work/tree-ref-1/$base" >/dev/null || { echo "bench: restored trees differ" >&2; exit 1; }
rm -rf "$work"/tree-ours-* "$work"/tree-ref-*

# Peak RSS: corpus and 4x corpus, gzip and zstd, at this machine's GOMAXPROCS and at 8 and 16.
procs=$(printf '%s\n' "$(nproc)" 8 16 | sort -nu | tr '\n' ' ')
procs=${procs% }
warm "$corpus4"
for c in gzip zstd; do
  for p in $procs; do
    for s in 1 4; do
      src=$corpus; [ "$s" = 4 ] && src=$corpus4
      rm -rf "$work/rss"; mkdir -p "$work/rss"
      timed "$work/rss-$c-$s-$p" env GOMAXPROCS="$p" SNAPVISOR_COMPRESSION="$c" SNAPVISOR_DIR="$work/rss" SNAPVISOR_SOURCE="$src" \
        "$BIN" snapshot >/dev/null
    done
  done
done
rm -rf "$work/rss"
corpus4_bytes=$(du -sb "$corpus4" | awk '{print $1}')

t_gz=$(col 1 "$work/snap-gz"); t_pigz=$(col 1 "$work/pigz")
t_zst=$(col 1 "$work/snap-zst"); t_cli=$(col 1 "$work/zstdcli")
t_rs=$(col 1 "$work/restore-snap"); t_rp=$(col 1 "$work/restore-pigz")
c_gz=$(col 3 "$work/snap-gz"); c_pigz=$(col 3 "$work/pigz")
c_zst=$(col 3 "$work/snap-zst"); c_cli=$(col 3 "$work/zstdcli")
c_rs=$(col 3 "$work/restore-snap"); c_rp=$(col 3 "$work/restore-pigz")
r_gz=$(ratio "$t_gz" "$t_pigz"); s_gz=$(ratio3 "$gz_size" "$pigz_size")
r_zst=$(ratio "$t_zst" "$t_cli"); s_zst=$(ratio3 "$zst_size" "$cli_size")
r_rs=$(ratio "$t_rs" "$t_rp")
rss() { awk '{print $2}' "$work/rss-$1-$2-$3"; }
rss_max=0
for f in "$work"/rss-*; do rss_max=$(awk -v a="$rss_max" '{print ($2 > a ? $2 : a)}' "$f"); done
elapsed=$(($(date +%s) - started))
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)

{
  echo "## Snapshot benchmark: snapvisor vs tar | pigz, tar | zstd"
  echo
  echo "| Measure | snapvisor | reference | ratio | target | met |"
  echo "|---|---:|---:|---:|---|---|"
  echo "| gzip -6 snapshot, wall time | ${t_gz} s | ${t_pigz} s \`tar -cf - \\| pigz -6\` | ${r_gz}x | ≤ 0.45x | $(le "$r_gz" 0.45) |"
  echo "| gzip -6 snapshot, size | $(mib "$gz_size") | $(mib "$pigz_size") | ${s_gz}x ($(pct "$gz_size" "$pigz_size")) | ≤ 1.01x | $(le "$s_gz" 1.01) |"
  echo "| zstd snapshot, wall time | ${t_zst} s | ${t_cli} s \`tar -cf - \\| zstd -3 -T0\` | ${r_zst}x | ≤ 1.0x | $(le "$r_zst" 1.0) |"
  echo "| zstd snapshot, size | $(mib "$zst_size") | $(mib "$cli_size") | ${s_zst}x ($(pct "$zst_size" "$cli_size")) | ≤ 1.02x | $(le "$s_zst" 1.02) |"
  echo "| restore of the gzip snapshot, wall time | ${t_rs} s | ${t_rp} s \`pigz -dc \\| tar -x\` | ${r_rs}x | ≤ 1.0x | $(le "$r_rs" 1.0) |"
  echo "| peak RSS of a snapshot, any size and GOMAXPROCS (table below) | $(kib2mib "$rss_max") | | | ≤ 40 MiB | $(le "$rss_max" 40960) |"
  echo
  echo "Peak RSS of \`entrypoint snapshot\` (GNU time, max resident set):"
  echo
  echo "| compression, data | GOMAXPROCS=${procs// / | GOMAXPROCS=} |"
  echo "|---|$(for p in $procs; do printf -- '---:|'; done)"
  for c in gzip zstd; do
    for s in 1 4; do
      label="corpus"; [ "$s" = 4 ] && label="4x corpus"
      row="| $c, $label |"
      for p in $procs; do row="$row $(kib2mib "$(rss "$c" "$s" "$p")") |"; done
      echo "$row"
    done
  done
  echo
  echo "Median of $RUNS runs, ours and the reference interleaved; CPU time (user+sys) medians: gzip ${c_gz} s vs pigz ${c_pigz} s,"
  echo "zstd ${c_zst} s vs zstd CLI ${c_cli} s, restore ${c_rs} s vs pigz+tar ${c_rp} s. All wall times: gzip [$(all "$work/snap-gz")] vs"
  echo "[$(all "$work/pigz")]; zstd [$(all "$work/snap-zst")] vs [$(all "$work/zstdcli")]; restore [$(all "$work/restore-snap")] vs [$(all "$work/restore-pigz")]."
  echo
  echo "Corpus: $(mib "$corpus_bytes") from scripts/gencorpus (text-like logs and JSON lines, random, zeros, small files,"
  echo "interleaved blocks); 4x corpus $(mib "$corpus4_bytes"). Warm page cache; an untimed sync before every run. snapvisor's"
  echo "restore includes its sha256 check of the archive and a syncfs before the swap; the reference does neither."
  echo "GOMAXPROCS 8 and 16 on this machine give the worker count, so the memory, of an 8- or 16-core machine (capped at 4 gzip"
  echo "and 2 zstd workers), not its speed."
  echo
  echo "Machine: $(nproc) CPUs ($cpu_model), $(uname -sr), $(go env GOVERSION), $(pigz --version 2>&1 | head -1),"
  echo "$(zstd --version | sed 's/^\*\*\* //; s/ \*\*\*$//; s/,.*//'), $(tar --version | head -1). Load average before/after: $load_before / $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "(a shared machine: other work skews wall times; the ratios come from interleaved runs). $(date -u +%Y-%m-%dT%H:%MZ), ${elapsed} s."
} | tee "$report"
