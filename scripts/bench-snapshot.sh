#!/usr/bin/env bash
# Benchmarks snapshot and restore against the standard tools and the Go peer,
# side by side in one run, on a matrix of datasets built from this machine's
# packages by scripts/datasets.sh (source code, binaries, a PostgreSQL data
# directory, a Redis dump, a SQLite database, already-compressed files, and
# the generated corpora). For every dataset:
#   gzip level 6 snapshot   vs  tar -cf - | pigz -6           (time, size)
#                           vs  docker-volume-backup's archive step (scripts/dvbpeer:
#                               pgzip, GZIP_PARALLELISM = the core count)
#   zstd default snapshot   vs  tar -cf - | zstd -3 -T0       (time, size)
#   restore of the gzip one vs  pigz -dc | tar -x              (time)
#   peak RSS of every snapshot and restore
# and the peak RSS of a snapshot of the generated corpus and of one 4x larger,
# with the machine's GOMAXPROCS and with 8 and 16 (the worker count follows
# GOMAXPROCS, so this shows the memory of an 8- or 16-core machine).
# Every timed command runs RUNS times, ours and the references interleaved
# (the order rotating per run), after a warm-up read of the dataset, with an
# untimed sync before each; the medians count. Prints a markdown section and
# writes it to var/bench-snapshot.md (scripts/bench.sh puts it into README.md).
#
# Environment: BENCH_DATASETS (names, default: all of scripts/datasets.sh), RUNS
# (default 5), BENCH_DIR (the RSS corpus, default var/bench-corpus; generated
# when missing, BENCH_DIR-x4 likewise), BENCH_WORK (scratch, default
# var/bench-work, removed at the end), BIN (default bin/entrypoint).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$PWD
BIN=${BIN:-$root/bin/entrypoint}
RUNS=${RUNS:-5}
corpus=$(realpath -m "${BENCH_DIR:-$root/var/bench-corpus}")
corpus4=$corpus-x4
work=$(realpath -m "${BENCH_WORK:-$root/var/bench-work}")
report=$root/var/bench-snapshot.md
cores=$(nproc)

for cmd in pigz zstd tar; do
  command -v "$cmd" >/dev/null || ./scripts/deps.sh >&2
done
need_gnu_time
[ -x "$BIN" ] || CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/entrypoint
mkdir -p "$work" "$(dirname "$report")"
dvb=$work/dvbpeer
CGO_ENABLED=0 go build -trimpath -o "$dvb" ./scripts/dvbpeer
mapfile -t dirs < <(./scripts/datasets.sh ${BENCH_DATASETS:-})
[ -d "$corpus" ] || go run ./scripts/gencorpus -out "$corpus" -scale 1
[ -d "$corpus4" ] || go run ./scripts/gencorpus -out "$corpus4" -scale 4
trap 'rm -rf "$work"' EXIT
export SNAPVISOR_LOG_LEVEL=warn SNAPVISOR_NAME=bench

ratio3() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f%%", (a / b - 1) * 100 }'; }
# rot I CMD...: runs the commands (strings, eval'ed) starting with the (I mod N)-th.
rot() {
  local i=$1; shift
  local n=$#; local cmds=("$@") k
  for ((k = 0; k < n; k++)); do eval "${cmds[(i + k) % n]}"; done
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date +%s)
rows=$work/rows
: >"$rows"
for dir in "${dirs[@]}"; do
  name=$(basename "$dir")
  w=$work/$name
  rm -rf "$w"; mkdir -p "$w"
  bytes=$(du -sb "$dir" | awk '{print $1}')
  files=$(find "$dir" -type f | wc -l)
  echo "bench: $name, $(mib "$bytes") in $files files, $RUNS runs" >&2
  parent=$(dirname "$dir")
  warm "$dir"
  for i in $(seq "$RUNS"); do
    rot "$i" \
      'rm -rf "$w/gz"; mkdir -p "$w/gz"; timed "$w/t-gz" env SNAPVISOR_COMPRESSION=gzip SNAPVISOR_DIR="$w/gz" SNAPVISOR_SOURCE="$dir" "$BIN" snapshot >/dev/null' \
      'rm -f "$w/pigz.tar.gz"; timed "$w/t-pigz" bash -c '\''tar -cf - -C "$1" "$2" | pigz -6 >"$3"'\'' _ "$parent" "$name" "$w/pigz.tar.gz"' \
      'rm -f "$w/dvb.tar.gz"; timed "$w/t-dvb" env BACKUP_SOURCES="$dir" GZIP_PARALLELISM="$cores" "$dvb" "$w/dvb.tar.gz"' \
      'rm -rf "$w/zst"; mkdir -p "$w/zst"; timed "$w/t-zst" env SNAPVISOR_COMPRESSION=zstd SNAPVISOR_DIR="$w/zst" SNAPVISOR_SOURCE="$dir" "$BIN" snapshot >/dev/null' \
      'rm -f "$w/cli.tar.zst"; timed "$w/t-cli" bash -c '\''tar -cf - -C "$1" "$2" | zstd -q -3 -T0 >"$3"'\'' _ "$parent" "$name" "$w/cli.tar.zst"'
  done
  gz=$(ls "$w"/gz/bench-*.tar.gz)
  s_gz=$(stat -c %s "$gz"); s_pigz=$(stat -c %s "$w/pigz.tar.gz"); s_dvb=$(stat -c %s "$w/dvb.tar.gz")
  s_zst=$(stat -c %s "$(ls "$w"/zst/bench-*.tar.zst)"); s_cli=$(stat -c %s "$w/cli.tar.zst")
  rm -rf "$w/zst" "$w/cli.tar.zst" "$w/dvb.tar.gz"
  # Restores: each run extracts into a fresh directory and nothing is deleted
  # until all runs are done (on ext4, creating inodes right after deleting
  # many scans the recently deleted ones, which would slow whichever side ran
  # next); the previous run's dirty data is synced untimed first.
  cat "$gz" "$w/pigz.tar.gz" >/dev/null
  for i in $(seq "$RUNS"); do
    mkdir -p "$w/ours-$i" "$w/ref-$i"
    rot "$i" \
      'timed "$w/t-rs" env SNAPVISOR_SOURCE="$w/ours-$i/$name" SNAPVISOR_DIR="$w/gz" "$BIN" restore --discard-current "$(basename "$gz")" >/dev/null' \
      'timed "$w/t-rp" bash -c '\''pigz -dc "$1" | tar -x -C "$2"'\'' _ "$w/pigz.tar.gz" "$w/ref-$i"'
  done
  diff -r "$w/ours-1/$name" "$w/ref-1/$name" >/dev/null || { echo "bench: $name: restored trees differ" >&2; exit 1; }
  # One row: name bytes files, median wall s of gz pigz dvb zst cli rs rp,
  # sizes gz pigz dvb zst cli, peak RSS KiB (max over runs) of gz zst rs dvb.
  peak() { awk '$2 > m {m = $2} END {print m}' "$1"; }
  echo "$name $bytes $files $(col 1 "$w/t-gz") $(col 1 "$w/t-pigz") $(col 1 "$w/t-dvb") $(col 1 "$w/t-zst")" \
    "$(col 1 "$w/t-cli") $(col 1 "$w/t-rs") $(col 1 "$w/t-rp") $s_gz $s_pigz $s_dvb $s_zst $s_cli" \
    "$(peak "$w/t-gz") $(peak "$w/t-zst") $(peak "$w/t-rs") $(peak "$w/t-dvb")" >>"$rows"
  rm -rf "$w"
done

# Peak RSS: corpus and 4x corpus, gzip and zstd, at this machine's GOMAXPROCS and at 8 and 16.
procs=$(printf '%s\n' "$cores" 8 16 | sort -nu | tr '\n' ' ')
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
rss() { awk '{print $2}' "$work/rss-$1-$2-$3"; }
rss_max=0
for f in "$work"/rss-* ; do rss_max=$(awk -v a="$rss_max" '{print ($2 > a ? $2 : a)}' "$f"); done
rss_rows=$(awk '{m = $16 > m ? $16 : m; m = $17 > m ? $17 : m} END {print m}' "$rows")
elapsed=$(($(date +%s) - started))
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
# medcol N: the median over datasets of the ratio column N of the table rows.
ratios=$work/ratios
awk '{printf "%s %.4f %.4f %.4f %.4f %.4f %.4f %.4f\n", $1, $4/$5, $11/$12, $4/$6, $11/$13, $7/$8, $14/$15, $9/$10}' "$rows" >"$ratios"
med() { awk -v c="$1" '{print $c}' "$ratios" | median; }
# within N LO HI: "K/M", the datasets whose ratio column N lies in [LO, HI] of all M.
within() { awk -v c="$1" -v lo="$2" -v hi="$3" '$c >= lo && $c <= hi {k++} END {printf "%d/%d", k, NR}' "$ratios"; }
n=$(wc -l <"$ratios")

{
  echo "## Snapshot benchmark: snapvisor vs tar | pigz, docker-volume-backup, tar | zstd, on $n datasets"
  echo
  echo "Ratios are ours / theirs (wall time and size; below 1 is faster or smaller), medians of $RUNS interleaved runs."
  echo "Targets: gzip -6 ≤ 0.45x pigz's time at 0.99-1.01x its size, faster than docker-volume-backup at ≤ its size;"
  echo "zstd ≤ 1.10x the CLI's time at ≤ 1.02x its size; restore ≤ 0.8x \`pigz -dc | tar -x\`; peak RSS of a snapshot ≤ 40 MiB."
  echo
  echo "| dataset | size, files | gzip time vs pigz | gzip size vs pigz | gzip time vs DVB | gzip size vs DVB | zstd time vs CLI | zstd size vs CLI | restore vs pigz+tar | peak RSS snapshot / restore |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  while read -r name bytes files tgz tpigz tdvb tzst tcli trs trp sgz spigz sdvb szst scli rgz rzst rrs rdvb; do
    echo "| $name | $(mib "$bytes"), $files | $(ratio3 "$tgz" "$tpigz") ($tgz s / $tpigz s) | $(ratio3 "$sgz" "$spigz") ($(pct "$sgz" "$spigz")) |" \
      "$(ratio3 "$tgz" "$tdvb") ($tdvb s) | $(ratio3 "$sgz" "$sdvb") | $(ratio3 "$tzst" "$tcli") ($tzst s / $tcli s) | $(ratio3 "$szst" "$scli") |" \
      "$(ratio3 "$trs" "$trp") ($trs s / $trp s) | $(kib2mib "$(awk -v a="$rgz" -v b="$rzst" 'BEGIN {print (a > b ? a : b)}')") / $(kib2mib "$rrs") |"
  done <"$rows"
  echo "| **median** | | **$(med 2)** | **$(med 3)** | **$(med 4)** | **$(med 5)** | **$(med 6)** | **$(med 7)** | **$(med 8)** | |"
  echo "| datasets within target | | $(within 2 0 0.45) | $(within 3 0.99 1.01) | $(within 4 0 0.99999) | $(within 5 0 1) | $(within 6 0 1.10) | $(within 7 0 1.02) | $(within 8 0 0.8) | $(le "$rss_rows" 40960) |"
  echo
  echo "Peak RSS of \`entrypoint snapshot\` on the generated corpus ($(mib "$(du -sb "$corpus" | cut -f1)")) and on one 4x larger (GNU time, max resident set;"
  echo "GOMAXPROCS 8 and 16 on this machine give the worker count, so the memory, of an 8- or 16-core machine, not its speed):"
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
  echo "Largest: $(kib2mib "$rss_max") ($(le "$rss_max" 40960) ≤ 40 MiB)."
  echo
  echo "Datasets (scripts/datasets.sh, from this machine's packages): source = Go module cache (source and docs),"
  echo "binaries = /usr/lib, postgres = a data directory after \`pgbench -i -s 20\`, redis = an RDB after"
  echo "\`DEBUG POPULATE 2000000\`, sqlite = a 700k-row table with an index, compressed = .gz/.xz/.zst/.jpg/.png/.zip/.jar"
  echo "files, corpus and flat = scripts/gencorpus (mixed; flat: 64 x 4 MiB log-like text, 32 x 4 MiB random, 64 MiB zeros)."
  echo "DVB = docker-volume-backup's archive step built from its source (scripts/dvbpeer: pgzip at its level 5,"
  echo "GZIP_PARALLELISM=$cores). Warm page cache; an untimed sync before every run. snapvisor's restore includes its"
  echo "sha256 check of the archive and a syncfs before the swap; the reference does neither."
  echo
  echo "Machine: $cores CPUs ($cpu_model), $(uname -sr), $(go env GOVERSION), $(pigz --version 2>&1 | head -1),"
  echo "$(zstd --version | sed 's/^\*\*\* //; s/ \*\*\*$//; s/,.*//'), $(tar --version | head -1). Load average before/after: $load_before / $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "$(date -u +%Y-%m-%dT%H:%MZ), ${elapsed} s."
} | tee "$report"
