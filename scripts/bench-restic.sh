#!/usr/bin/env bash
# Benchmarks SNAPVISOR_FORMAT=restic against the restic CLI (issue 13), side by
# side in one run, on two datasets: the 449 MiB restic bench corpus
# (scripts/gencorpus -layout flat: 64 x 4 MiB log-like text, 32 x 4 MiB random,
# one 64 MiB file of zeros) and a copy of a real tree on this machine (default:
# the Go toolchain, GOROOT). For each dataset and run, on a fresh copy of it:
#   1. first snapshot into a fresh local repository  (wall time, repository size)
#   2. second snapshot after 1% of the files are rewritten with new content and
#      the largest file grows by 8 MiB                 (wall time, bytes added)
#   3. snapshot of the unchanged tree                  (wall time)
#   4. restore of the latest snapshot into a fresh directory (wall time)
# ours: `entrypoint snapshot` / `entrypoint restore latest` standalone;
# theirs: `restic backup` / `restic restore latest --target` (restic init untimed).
# Each step runs ours and theirs back to back, the order alternating per run;
# medians of BENCH_RUNS runs count. Peak RSS by GNU time. Then 30 daily
# snapshots at 1% churn of the bench corpus: stored bytes of ours in the restic
# format against ours in the archive format (gzip, SNAPVISOR_KEEP=30), and the
# restic CLI's repository for reference.
# Prints a markdown section and writes it to var/bench-restic.md
# (scripts/bench.sh puts it into README.md).
#
# Environment: BENCH_RUNS (default 3), BENCH_RESTIC_CORPUS (default
# var/bench-restic-corpus, generated when missing), BENCH_REAL (the real tree,
# default $(go env GOROOT); empty: skip that row), BENCH_DAYS (default 30),
# BENCH_WORK (scratch, ~4 GiB at 3 runs + ~7 GiB for the series, default
# var/bench-restic-work, removed at the end), BIN (default bin/entrypoint,
# built when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$PWD
command -v restic >/dev/null || ./scripts/deps.sh >&2
BIN=${BIN:-$root/bin/entrypoint}
RUNS=${BENCH_RUNS:-3}
DAYS=${BENCH_DAYS:-30}
corpus=$(realpath -m "${BENCH_RESTIC_CORPUS:-$root/var/bench-restic-corpus}")
real=${BENCH_REAL-$(go env GOROOT)}
work=$(realpath -m "${BENCH_WORK:-$root/var/bench-restic-work}")
report=$root/var/bench-restic.md

need_gnu_time
if [ ! -x "$BIN" ]; then
  echo "bench-restic: $BIN missing, building it" >&2
  CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/entrypoint
fi
mkdir -p "$(dirname "$corpus")" "$(dirname "$report")"
[ -d "$corpus" ] || { echo "bench-restic: generating corpus in $corpus" >&2; go run ./scripts/gencorpus -out "$corpus" -layout flat; }

rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
export RESTIC_PASSWORD=snapvisor-bench SNAPVISOR_LOG_LEVEL=warn SNAPVISOR_NAME=bench
ours_env=(env SNAPVISOR_FORMAT=restic SNAPVISOR_CONTROL_SOCKET="$work/ctl.sock" SNAPVISOR_KEEP=1000)

bytes() { du -sb "$1" | awk '{print $1}'; }
nfiles() { find "$1" -type f | wc -l; }

# churn DIR DAY: rewrites 1% of DIR's files (at least one; which ones moves with DAY) with new
# content of the same size and kind: every byte plus one, in place (same inode, new mtime).
churn() {
  local dir=$1 day=$2 files n k step j f
  mapfile -t files < <(find "$dir" -type f | sort)
  n=${#files[@]}
  k=$(((n + 99) / 100))
  step=$((n / k))
  for ((j = 0; j < k; j++)); do
    f=${files[$(((day * 7 + j * step) % n))]}
    tr '\000-\377' '\001-\377\000' <"$f" >"$work/churn.tmp"
    cat "$work/churn.tmp" >"$f"
  done
  rm -f "$work/churn.tmp"
  echo "$k"
}

# grow DIR: appends 8 MiB of new text (base64 of 6 MiB of random bytes, in lines of 100) to DIR's largest file.
grow() {
  local f
  f=$(find "$1" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
  head -c $((6 << 20)) /dev/urandom | base64 -w 100 >>"$f"
}

# ours OUTFILE REPO SOURCE: one timed snapshot of ours.
ours() { timed "$1" "${ours_env[@]}" SNAPVISOR_DIR="$2" SNAPVISOR_SOURCE="$3" "$BIN" snapshot >/dev/null; }
# theirs OUTFILE REPO SOURCE: one timed restic backup.
theirs() { timed "$1" restic -r "$2" --no-cache backup -q "$3" >/dev/null; }

# dataset NAME TREE: the four steps, RUNS times; results in $work/NAME/.
dataset() {
  local name=$1 tree=$2 d=$work/$1 base i src ro rt s1o s1t
  base=$(basename "$tree")
  mkdir -p "$d"
  for i in $(seq "$RUNS"); do
    src=$d/src-$i/$base ro=$d/ours-$i rt=$d/theirs-$i
    mkdir -p "$d/src-$i"
    cp -a "$tree" "$src"
    restic -r "$rt" --no-cache init -q --repository-version 2 >/dev/null
    warm "$src"
    pair "$i" 'ours "$d/first-ours" "$ro" "$src"' 'theirs "$d/first-theirs" "$rt" "$src"'
    s1o=$(bytes "$ro") s1t=$(bytes "$rt")
    echo "$s1o" >>"$d/size-ours"
    echo "$s1t" >>"$d/size-theirs"
    churn "$src" "$i" >"$d/churned"
    grow "$src"
    warm "$src"
    pair "$i" 'ours "$d/second-ours" "$ro" "$src"' 'theirs "$d/second-theirs" "$rt" "$src"'
    echo $(($(bytes "$ro") - s1o)) >>"$d/added-ours"
    echo $(($(bytes "$rt") - s1t)) >>"$d/added-theirs"
    pair "$i" 'ours "$d/same-ours" "$ro" "$src"' 'theirs "$d/same-theirs" "$rt" "$src"'
    mkdir -p "$d/tree-ours-$i" "$d/tree-theirs-$i"
    pair "$i" 'timed "$d/restore-ours" "${ours_env[@]}" SNAPVISOR_DIR="$ro" SNAPVISOR_SOURCE="$d/tree-ours-$i/$base" "$BIN" restore latest >/dev/null' \
      'timed "$d/restore-theirs" restic -r "$rt" --no-cache restore latest -q --target "$d/tree-theirs-$i" >/dev/null'
    if [ "$i" = 1 ]; then
      # The work measured is the work asked for: both restores equal the source, and the
      # restic CLI finds our repository sound.
      diff -r "$src" "$d/tree-ours-$i/$base" >/dev/null || { echo "bench-restic: our restore differs from $src" >&2; exit 1; }
      diff -r "$src" "$d/tree-theirs-$i$src" >/dev/null || { echo "bench-restic: restic's restore differs from $src" >&2; exit 1; }
      restic -r "$ro" --no-cache check -q >/dev/null 2>&1 || { echo "bench-restic: restic check fails on $ro" >&2; exit 1; }
      /usr/bin/time -f '%e' -o "$d/open-theirs" restic -r "$rt" --no-cache cat config >/dev/null
    fi
  done
  echo "$(bytes "$tree") $(nfiles "$tree")" >"$d/data"
  rm -rf "$d"/src-* "$d"/ours-* "$d"/theirs-* "$d"/tree-*
}

# series: DAYS daily snapshots of a copy of the corpus, 1% of the files rewritten each day.
series() {
  local d=$work/series day src
  src=$d/src/$(basename "$corpus")
  mkdir -p "$d/src" "$d/archive"
  cp -a "$corpus" "$src"
  restic -r "$d/theirs" --no-cache init -q --repository-version 2 >/dev/null
  for day in $(seq "$DAYS"); do
    [ "$day" = 1 ] || churn "$src" "$day" >/dev/null
    timed "$d/t-restic" "${ours_env[@]}" SNAPVISOR_DIR="$d/ours" SNAPVISOR_SOURCE="$src" "$BIN" snapshot >/dev/null
    timed "$d/t-archive" env SNAPVISOR_CONTROL_SOCKET="$work/ctl.sock" SNAPVISOR_KEEP=30 SNAPVISOR_DIR="$d/archive" SNAPVISOR_SOURCE="$src" \
      "$BIN" snapshot >/dev/null
    timed "$d/t-theirs" restic -r "$d/theirs" --no-cache backup -q "$src" >/dev/null
  done
  bytes "$d/ours" >"$d/ours.bytes"
  bytes "$d/archive" >"$d/archive.bytes"
  bytes "$d/theirs" >"$d/theirs.bytes"
  find "$d/archive" -name '*.tar.gz' | wc -l >"$d/archive.count"
  "${ours_env[@]}" SNAPVISOR_DIR="$d/ours" "$BIN" list --json | grep -o '"id":' | wc -l >"$d/ours.count"
  rm -rf "$d/src" "$d/ours" "$d/archive" "$d/theirs"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date +%s)
echo "bench-restic: $RUNS runs, $(nproc) cores, load $load_before" >&2
echo "bench-restic: bench corpus $corpus" >&2
dataset corpus "$corpus"
if [ -n "$real" ]; then
  echo "bench-restic: real tree $real" >&2
  dataset real "$real"
fi
echo "bench-restic: $DAYS daily snapshots" >&2
series
elapsed=$(($(date +%s) - started))

# row MEASURE DATASET OURS THEIRS RATIO TARGET VERDICT
row() { echo "| $1 | $2 | $3 | $4 | $5 | $6 | $7 |"; }
sets=(corpus)
[ -n "$real" ] && sets+=(real)
label() {
  local b n
  read -r b n <"$work/$1/data"
  if [ "$1" = corpus ]; then echo "bench corpus ($(mib "$b"), $n files)"; else echo "copy of $real ($(mib "$b"), $n files)"; fi
}
# rss STEP SIDE: the largest peak RSS (KiB) of STEP's runs by SIDE on every dataset.
rss() {
  local s
  for s in "${sets[@]}"; do cat "$work/$s/$1-$2"; done | awk '{print $2}' | sort -n | tail -1
}
sd=$work/series
s_ours=$(cat "$sd/ours.bytes") s_arch=$(cat "$sd/archive.bytes") s_theirs=$(cat "$sd/theirs.bytes")
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)

{
  echo "## restic format benchmark: snapvisor vs restic"
  echo
  echo "| measure | data | snapvisor | restic | ratio | target | met |"
  echo "|---|---|---:|---:|---:|---|---|"
  for s in "${sets[@]}"; do
    w=$work/$s
    a=$(col 1 "$w/first-ours") b=$(col 1 "$w/first-theirs") r=$(ratio "$a" "$b")
    row "first snapshot, wall" "$(label "$s")" "$a s" "$b s" "${r}x" "≤ 1.0x (moonshot ≤ 0.8x)" "$(le "$r" 1.0)"
    a=$(col 1 "$w/size-ours") b=$(col 1 "$w/size-theirs") r=$(ratio "$a" "$b")
    row "first snapshot, repository size" "" "$(mib "$a")" "$(mib "$b")" "${r}x" "≤ 1.02x" "$(le "$r" 1.02)"
  done
  for s in "${sets[@]}"; do
    w=$work/$s
    a=$(col 1 "$w/second-ours") b=$(col 1 "$w/second-theirs") r=$(ratio "$a" "$b")
    read -r _ n <"$w/data"
    row "second snapshot ($(cat "$w/churned") of $n files rewritten, the largest +8 MiB), wall" "$(label "$s")" "$a s" "$b s" "${r}x" "≤ 1.0x (moonshot ≤ 0.8x)" "$(le "$r" 1.0)"
    a=$(col 1 "$w/added-ours") b=$(col 1 "$w/added-theirs") r=$(ratio "$a" "$b")
    row "second snapshot, bytes added" "" "$(mib "$a")" "$(mib "$b")" "${r}x" "≤ 1.1x" "$(le "$r" 1.1)"
  done
  for s in "${sets[@]}"; do
    w=$work/$s
    a=$(col 1 "$w/same-ours") b=$(col 1 "$w/same-theirs") r=$(ratio "$a" "$b")
    row "snapshot of an unchanged tree, wall" "$(label "$s")" "$a s" "$b s" "${r}x" "≤ 1.0x" "$(le "$r" 1.0)"
    f=$(col 1 "$w/first-ours") p=$(awk -v a="$a" -v b="$f" 'BEGIN { printf "%.1f", 100 * a / b }')
    row "unchanged snapshot as % of our first" "" "${p}% ($a s / $f s)" "" "" "≤ 5%" "$(le "$p" 5)"
  done
  for s in "${sets[@]}"; do
    w=$work/$s
    a=$(col 1 "$w/restore-ours") b=$(col 1 "$w/restore-theirs") r=$(ratio "$a" "$b")
    row "restore of the latest snapshot, wall" "$(label "$s")" "$a s" "$b s" "${r}x" "≤ 1.0x" "$(le "$r" 1.0)"
  done
  for m in first second same restore; do
    a=$(rss "$m" ours) b=$(rss "$m" theirs)
    case $m in first) what="first snapshot" ;; second) what="second snapshot" ;; same) what="unchanged snapshot" ;; restore) what=restore ;; esac
    row "peak RSS, $what (largest of all runs)" "both" "$(kib2mib "$a")" "$(kib2mib "$b")" "$(ratio "$a" "$b")x" "≤ 64 MiB (ours)" "$(le "$a" 65536)"
  done
  r=$(ratio "$s_arch" "$s_ours")
  row "$DAYS daily snapshots at 1% churn, stored bytes: restic format vs archive format (gzip)" "bench corpus" \
    "$(mib "$s_ours") restic format, $(mib "$s_arch") archives" "$(mib "$s_theirs")" "archive/restic format ${r}x" "≥ 10x less" "$(awk -v r="$r" 'BEGIN { exit !(r >= 10) }' && echo pass || echo '**FAIL**')"
  echo
  echo "Medians of $RUNS runs on fresh copies of each dataset; in every step ours and restic's run back to back, ours first in"
  echo "odd runs and second in even ones. All wall times (snapvisor vs restic):"
  for s in "${sets[@]}"; do
    w=$work/$s
    line="$s:"
    for m in first second same restore; do
      line="$line $m [$(awk '{printf "%s%s", sep, $1; sep=" "}' "$w/$m-ours")] vs [$(awk '{printf "%s%s", sep, $1; sep=" "}' "$w/$m-theirs")];"
      line="$line cpu $(col 3 "$w/$m-ours") s vs $(col 3 "$w/$m-theirs") s;"
    done
    echo "${line%;}."
  done
  echo
  echo "snapvisor: \`SNAPVISOR_FORMAT=restic entrypoint snapshot\` and \`entrypoint restore latest\`, standalone (its"
  echo "first snapshot includes initialising the repository). restic: \`restic --no-cache backup\` and \`restic --no-cache"
  echo "restore latest --target\`, compression auto, into a repository made by an untimed \`restic init --repository-version 2\`."
  echo "Every restic command derives its key with the scrypt parameters restic init calibrated (\`restic cat config\` took"
  echo "$(cat "$work/corpus/open-theirs") s here); that time is in restic's figures. Our restore writes into a staging directory and"
  echo "swaps it in (syncfs before the swap); restic's writes in place without a sync. Bytes added: growth of the"
  echo "repository directory (du -sb). Change: 1% of the files (at least one) rewritten in place with every byte plus one"
  echo "(same size and kind of content), and 8 MiB of base64 text appended to the largest file. Warm page cache: every"
  echo "tree is read once before it is snapshotted; an untimed sync before and after every timed command."
  echo "The $DAYS-day series: one copy of the bench corpus, each day 1% of its files rewritten, then our restic-format snapshot"
  echo "(SNAPVISOR_KEEP=1000: $(cat "$sd/ours.count") snapshots kept), our archive snapshot (gzip -6, SNAPVISOR_KEEP=30:"
  echo "$(cat "$sd/archive.count") archives kept) and a restic backup; medians per day: restic format $(col 1 "$sd/t-restic") s,"
  echo "archive $(col 1 "$sd/t-archive") s, restic $(col 1 "$sd/t-theirs") s."
  echo
  echo "Machine: $(nproc) CPUs ($cpu_model), $(uname -sr); $(restic version | cut -d' ' -f1-2) (Debian);"
  echo "snapvisor $(git describe --always --dirty --tags 2>/dev/null || echo unknown), $(go env GOVERSION). Load average before/after:"
  echo "$load_before / $(cut -d' ' -f1-3 /proc/loadavg) (a shared machine: other work skews wall times; the ratios come from"
  echo "interleaved runs). $(date -u +%Y-%m-%dT%H:%MZ), ${elapsed} s."
} | tee "$report"
