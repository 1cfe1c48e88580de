#!/usr/bin/env bash
# Benchmarks the cost of encryption at rest on the snapshot pipeline: the same
# snapshot of the bench corpus (scripts/gencorpus) unencrypted and with
# SNAPVISOR_ENCRYPTION=aes256-gcm, side by side in one run:
#   gzip -6 snapshot   plain vs aes256-gcm   (wall time; target <= 1.10x)
#   zstd snapshot      plain vs aes256-gcm   (wall time; target <= 1.10x)
#   restore of the gzip snapshot, plain vs aes256-gcm (wall time)
#   peak RSS of the aes256-gcm snapshots (bounded memory)
# Each pair runs RUNS times (default 5), interleaved and alternating which
# goes first, after a warm-up read of the corpus. The verdict uses the median
# of the per-run ratios (each encrypted run against the unencrypted run next
# to it, so that load from elsewhere on the machine mostly cancels out); the
# medians of each side and the CPU time (user+sys) are shown too. Prints a
# markdown table and writes it to var/bench-crypt.md.
#
# Environment: BENCH_DIR (default var/bench-corpus; generated when missing),
# BIN (default bin/entrypoint), RUNS (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$PWD
BIN=${BIN:-$root/bin/entrypoint}
RUNS=${RUNS:-5}
corpus=${BENCH_DIR:-$root/var/bench-corpus}
corpus=$(realpath -m "$corpus")
work=$root/var/bench-crypt-work
report=$root/var/bench-crypt.md

need_gnu_time
if [ ! -x "$BIN" ] || [[ "$("$BIN" env 2>/dev/null)" != *SNAPVISOR_ENCRYPTION* ]]; then
  echo "bench: $BIN missing or without encryption, building it" >&2
  CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/entrypoint
fi
mkdir -p "$(dirname "$corpus")"
[ -d "$corpus" ] || { echo "bench: generating corpus in $corpus" >&2; go run ./scripts/gencorpus -out "$corpus" -scale 1; }

rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
base=$(basename "$corpus")
key=$(head -c 32 /dev/urandom | base64)
export SNAPVISOR_LOG_LEVEL=warn SNAPVISOR_NAME=bench

# timed OUTFILE CMD...: runs CMD under GNU time, appends "wall_s max_rss_kib user_s sys_s" to OUTFILE.
timed() {
  local out=$1; shift
  sync
  /usr/bin/time -f '%e %M %U %S' -o "$work/.time" "$@"
  cat "$work/.time" >>"$out"
  sync
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { awk -v c="$1" '{print $c}' "$2" | median; }
cpu() { awk '{printf "%.2f\n", $3 + $4}' "$1" | median; }
# paired B A: median over runs of B's wall time / A's wall time (run i against run i).
paired() { paste -d' ' "$1" "$2" | awk '{printf "%.3f\n", $1 / $5}' | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
mib() { awk -v n="$1" 'BEGIN { printf "%.1f MiB", n / 1048576 }'; }
kib2mib() { awk -v n="$1" 'BEGIN { printf "%.1f MiB", n / 1024 }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }' && echo yes || echo NO; }

# snap OUTFILE COMPRESSION ENCRYPTION DIR: one timed snapshot of the corpus.
snap() {
  timed "$1" env SNAPVISOR_COMPRESSION="$2" SNAPVISOR_ENCRYPTION="$3" SNAPVISOR_ENCRYPTION_KEY="$key" \
    SNAPVISOR_DIR="$4" SNAPVISOR_SOURCE="$corpus" "$BIN" snapshot >/dev/null
}

corpus_bytes=$(du -sb "$corpus" | awk '{print $1}')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench: corpus $(mib "$corpus_bytes") in $corpus, $RUNS runs each, $(nproc) cores" >&2
tar -cf - -C "$(dirname "$corpus")" "$base" >/dev/null # warm the page cache

for comp in gzip zstd; do
  for i in $(seq "$RUNS"); do
    order="none aes256-gcm"
    [ $((i % 2)) -eq 0 ] && order="aes256-gcm none"
    for enc in $order; do
      rm -rf "$work/$comp-$enc"; mkdir -p "$work/$comp-$enc"
      snap "$work/t-$comp-$enc" "$comp" "$enc" "$work/$comp-$enc"
    done
  done
done
gz_plain=$(ls "$work"/gzip-none/bench-*.tar.gz)
gz_gcm=$(ls "$work"/gzip-aes256-gcm/bench-*.tar.gz.aes256gcm)

# Restore of the gzip snapshot, plain vs aes256-gcm (targets removed untimed before each run).
cat "$gz_plain" "$gz_gcm" >/dev/null
for i in $(seq "$RUNS"); do
  order="none aes256-gcm"
  [ $((i % 2)) -eq 0 ] && order="aes256-gcm none"
  for enc in $order; do
    archive=$gz_plain
    [ "$enc" = aes256-gcm ] && archive=$gz_gcm
    rm -rf "$work/restore"; mkdir -p "$work/restore"
    timed "$work/r-$enc" env SNAPVISOR_SOURCE="$work/restore/$base" SNAPVISOR_DIR="$(dirname "$archive")" \
      SNAPVISOR_ENCRYPTION_KEY="$key" "$BIN" restore --discard-current "$(basename "$archive")" >/dev/null
  done
done
rm -rf "$work/restore"

row() { # label plain_file gcm_file target
  local p g r pr cp cg
  p=$(col 1 "$2"); g=$(col 1 "$3"); r=$(ratio "$g" "$p"); pr=$(paired "$3" "$2")
  cp=$(cpu "$2"); cg=$(cpu "$3")
  local verdict="| | |"
  [ -n "$4" ] && verdict="| ≤ $4x | $(le "$pr" "$4") |"
  echo "| $1 | ${p} s (cpu ${cp} s) | ${g} s (cpu ${cg} s) | ${r}x | **${pr}x** | $(ratio "$cg" "$cp")x $verdict"
}
rss_max() { awk '{print $2}' "$1" | sort -n | tail -1; }

{
  echo "## Encryption benchmark"
  echo
  echo "Corpus: $(mib "$corpus_bytes") (scripts/gencorpus), the same snapshot without encryption and with"
  echo "\`SNAPVISOR_ENCRYPTION=aes256-gcm\`; $(nproc) cores, warm page cache, median of $RUNS interleaved runs. $(date -u +%Y-%m-%dT%H:%MZ)."
  echo "Load average before/after: $load_before / $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews wall times)."
  echo
  echo "| Measure | unencrypted, median | aes256-gcm, median | ratio of medians | paired ratio | cpu ratio | target | met |"
  echo "|---|---|---|---|---|---|---|---|"
  row "gzip -6 snapshot, wall time" "$work/t-gzip-none" "$work/t-gzip-aes256-gcm" 1.10
  row "zstd snapshot, wall time" "$work/t-zstd-none" "$work/t-zstd-aes256-gcm" 1.10
  row "restore of the gzip snapshot, wall time" "$work/r-none" "$work/r-aes256-gcm" ""
  echo "| gzip snapshot size | $(mib "$(stat -c %s "$gz_plain")") | $(mib "$(stat -c %s "$gz_gcm")") | $(ratio "$(stat -c %s "$gz_gcm")" "$(stat -c %s "$gz_plain")")x | | | | |"
  for comp in gzip zstd; do
    a=$(rss_max "$work/t-$comp-none"); b=$(rss_max "$work/t-$comp-aes256-gcm")
    echo "| peak RSS, $comp snapshot (largest of $RUNS) | $(kib2mib "$a") | $(kib2mib "$b") | $(awk -v d=$((b - a)) 'BEGIN { printf "%+.1f MiB", d / 1024 }') | | | | |"
  done
  echo
  echo "Paired ratio: the median over runs of (aes256-gcm run / the unencrypted run next to it); it decides"
  echo "the verdict because both runs of a pair see about the same load. cpu: user+sys of the whole process."
} | tee "$report"
