#!/usr/bin/env bash
# Benchmarks SNAPVISOR_FORMAT=git against the git CLI (issue 15), side by side
# in one run, on a controller's configuration and PKI: 2,000 small files of
# exactly 20 MiB in 40 directories (scripts/gencorpus -layout config). Each run,
# with fresh repositories and remotes:
#   a. first snapshot of the tree into a fresh local repository + push to a
#      fresh bare remote
#   b. snapshot after 10 files are rewritten (new content, same size) + push
#   c. restore of the latest snapshot from the local repository into a fresh,
#      empty directory
# ours: `entrypoint snapshot` / `entrypoint restore latest` standalone, with
#   SNAPVISOR_FORMAT=git, SNAPVISOR_DIR a fresh directory (our bare repository
#   is $SNAPVISOR_DIR/bench.git), SNAPVISOR_GIT_REMOTES=git+file://<a bare
#   repository made by an untimed git init --bare>; the restore's
#   SNAPVISOR_SOURCE is a fresh empty directory.
# git: the git CLI on the same tree, its repository outside the tree
#   (GIT_DIR + GIT_WORK_TREE: the tree stays clean; git init untimed), its own
#   fresh bare remote (a file path): `git add -A && git commit -q && git push -q
#   remote HEAD:refs/heads/snapvisor/bench`. Its restore is a checkout of the
#   local repository's HEAD into the fresh directory with a fresh index
#   (GIT_INDEX_FILE=<new> git --work-tree=DIR checkout -f): the same work as
#   ours, reading the objects of the local repository and writing the tree,
#   without the copy of the repository a `git clone` would add.
# Each step runs ours and git back to back, ours first in odd runs and second in
# even ones; medians of BENCH_RUNS runs count; peak RSS by GNU time (the
# largest process of the step, the largest of all runs). The first run checks
# the work: both remotes hold the branch with every source file, both restores
# equal the source.
# Prints a markdown section and writes it to var/bench-git.md (scripts/bench.sh
# puts it into README.md between <!-- bench-git --> markers).
#
# Environment: BENCH_RUNS (default 5), BENCH_GIT_CORPUS (default
# var/bench-git-corpus, generated when missing), BENCH_WORK (scratch, ~200 MiB,
# default var/bench-git-work, removed at the end), BIN (default bin/entrypoint,
# built when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$PWD
command -v git >/dev/null || ./scripts/deps.sh >&2
BIN=${BIN:-$root/bin/entrypoint}
RUNS=${BENCH_RUNS:-5}
corpus=$(realpath -m "${BENCH_GIT_CORPUS:-$root/var/bench-git-corpus}")
work=$(realpath -m "${BENCH_WORK:-$root/var/bench-git-work}")
report=$root/var/bench-git.md
branch=snapvisor/bench # SNAPVISOR_GIT_BRANCH's default for SNAPVISOR_NAME=bench
changed=10

need_gnu_time
if [ ! -x "$BIN" ]; then
  echo "bench-git: $BIN missing, building it" >&2
  CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/entrypoint
fi
mkdir -p "$(dirname "$corpus")" "$(dirname "$report")"
[ -d "$corpus" ] || { echo "bench-git: generating corpus in $corpus" >&2; go run ./scripts/gencorpus -out "$corpus" -layout config; }

rm -rf "$work"
mkdir -p "$work/home"
[ -n "${BENCH_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
export SNAPVISOR_LOG_LEVEL=warn SNAPVISOR_NAME=bench
ours_env=(env SNAPVISOR_FORMAT=git SNAPVISOR_GIT_BRANCH="$branch" SNAPVISOR_CONTROL_SOCKET="$work/ctl.sock")
# The git CLI without this machine's or user's configuration, with an identity.
git_env=(env HOME="$work/home" XDG_CONFIG_HOME="$work/home" GIT_CONFIG_NOSYSTEM=1 LANG=C
  GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=init.defaultBranch GIT_CONFIG_VALUE_0=main
  GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@snapvisor.invalid GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@snapvisor.invalid)
g() { "${git_env[@]}" git "$@"; }

# change DIR RUN: rewrites $changed of DIR's files (which ones moves with RUN) with new content
# of the same size: every byte plus one, in place (same inode, new mtime).
change() {
  local dir=$1 run=$2 files n j f
  mapfile -t files < <(find "$dir" -type f | sort)
  n=${#files[@]}
  for ((j = 0; j < changed; j++)); do
    f=${files[$(((run * 37 + j * (n / changed)) % n))]}
    tr '\000-\377' '\001-\377\000' <"$f" >"$work/change.tmp"
    cat "$work/change.tmp" >"$f"
  done
  rm -f "$work/change.tmp"
}

# ours_snap OUTFILE DIR REMOTE: one timed snapshot + push of ours.
ours_snap() {
  timed "$1" "${ours_env[@]}" SNAPVISOR_DIR="$2" SNAPVISOR_SOURCE="$src" SNAPVISOR_GIT_REMOTES="git+file://$3" "$BIN" snapshot >/dev/null
}
# git_snap OUTFILE GIT_DIR REMOTE: one timed add, commit and push of the git CLI.
git_snap() {
  timed "$1" "${git_env[@]}" GIT_DIR="$2" GIT_WORK_TREE="$src" \
    sh -c 'cd "$1" && git add -A && git commit -q -m snapshot && git push -q "$0" HEAD:refs/heads/'"$branch" "$3" "$src" >/dev/null
}

# check_remote REMOTE WHO: the remote's branch holds every file of the source (ours may add its metadata file).
check_remote() {
  comm -23 <(cd "$src" && find . -type f | sed 's|^\./||' | sort) <(g --git-dir="$1" ls-tree -r --name-only "$branch" | sort) >"$work/missing"
  if [ -s "$work/missing" ]; then
    echo "bench-git: $2's remote $1 lacks $(wc -l <"$work/missing") source files on $branch, e.g. $(head -1 "$work/missing")" >&2
    exit 1
  fi
  [ "$(g --git-dir="$1" rev-list --count "$branch")" = 2 ] || { echo "bench-git: $2's remote $1 has not 2 commits on $branch" >&2; exit 1; }
}

src=$work/src/$(basename "$corpus")
mkdir -p "$work/src"
cp -a "$corpus" "$src"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date +%s)
echo "bench-git: $RUNS runs, $(nproc) cores, load $load_before, source $corpus" >&2
for i in $(seq "$RUNS"); do
  r=$work/run-$i
  mkdir -p "$r/ours" "$r/tree-ours" "$r/tree-git"
  g init -q --bare "$r/remote-ours.git"
  g init -q --bare "$r/remote-git.git"
  "${git_env[@]}" GIT_DIR="$r/local-git.git" GIT_WORK_TREE="$src" git init -q
  warm "$src"
  pair "$i" 'ours_snap "$work/first-ours" "$r/ours" "$r/remote-ours.git"' 'git_snap "$work/first-git" "$r/local-git.git" "$r/remote-git.git"'
  change "$src" "$i"
  warm "$src"
  pair "$i" 'ours_snap "$work/second-ours" "$r/ours" "$r/remote-ours.git"' 'git_snap "$work/second-git" "$r/local-git.git" "$r/remote-git.git"'
  pair "$i" 'timed "$work/restore-ours" "${ours_env[@]}" SNAPVISOR_DIR="$r/ours" SNAPVISOR_SOURCE="$r/tree-ours" SNAPVISOR_GIT_REMOTES="git+file://$r/remote-ours.git" "$BIN" restore latest >/dev/null' \
    'timed "$work/restore-git" "${git_env[@]}" GIT_DIR="$r/local-git.git" GIT_WORK_TREE="$r/tree-git" GIT_INDEX_FILE="$r/restore.index" git -C "$r/tree-git" checkout -f -q'
  if [ "$i" = 1 ]; then
    check_remote "$r/remote-ours.git" ours
    check_remote "$r/remote-git.git" git
    diff -r "$src" "$r/tree-ours" >/dev/null || { echo "bench-git: our restore differs from $src" >&2; exit 1; }
    diff -r "$src" "$r/tree-git" >/dev/null || { echo "bench-git: git's restore differs from $src" >&2; exit 1; }
    du -sb "$r/ours" "$r/remote-ours.git" "$r/local-git.git" "$r/remote-git.git" | awk '{print $1}' | xargs >"$work/sizes"
  fi
  rm -rf "$r"
done
elapsed=$(($(date +%s) - started))

read -r b n < <(find "$src" -type f -printf '%s\n' | awk '{s += $1; n++} END {print s, n}')
read -r z_ours z_ours_remote z_git z_git_remote <"$work/sizes"
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
# largest STEP SIDE: the largest peak RSS (KiB) of STEP's runs by SIDE.
largest() { awk '{print $2}' "$work/$1-$2" | sort -n | tail -1; }
walls() { awk '{printf "%s%s", sep, $1; sep=" "}' "$1"; }

{
  echo "## git format benchmark: snapvisor vs the git CLI"
  echo
  echo "| step | snapvisor wall | git wall | ratio | snapvisor peak RSS | git peak RSS | target | met |"
  echo "|---|---:|---:|---:|---:|---:|---|---|"
  for m in first second restore; do
    case $m in
      first) what="first snapshot + push" ;;
      second) what="snapshot after $changed files changed + push" ;;
      restore) what="restore of the latest snapshot into an empty directory" ;;
    esac
    a=$(col 1 "$work/$m-ours") c=$(col 1 "$work/$m-git") q=$(ratio "$a" "$c")
    echo "| $what | $a s | $c s | ${q}x | $(kib2mib "$(largest "$m" ours)") | $(kib2mib "$(largest "$m" git)") | ≤ 1.0x | $(le "$q" 1.0) |"
  done
  echo
  echo "Source: $n files, $(mib "$b") in 40 directories (scripts/gencorpus -layout config: YAML-like text of 1-30 KiB,"
  echo "PEM-like base64 of 1-6 KiB), the files changed rewritten in place with every byte plus one. Medians of $RUNS runs"
  echo "with fresh repositories and remotes; in every step ours and git's run back to back, ours first in odd runs and"
  echo "second in even ones; peak RSS: the largest process of the step, largest of all runs. All wall times (snapvisor vs git):"
  line=""
  for m in first second restore; do
    line="$line $m [$(walls "$work/$m-ours")] vs [$(walls "$work/$m-git")]; cpu $(col 3 "$work/$m-ours") s vs $(col 3 "$work/$m-git") s;"
  done
  echo "${line# }"
  echo
  echo "snapvisor: \`SNAPVISOR_FORMAT=git entrypoint snapshot\` (its bare repository in a fresh SNAPVISOR_DIR, pushed to a"
  echo "\`git+file://\` remote) and \`entrypoint restore latest\` into an empty directory, standalone. git: \`git add -A &&"
  echo "git commit -q && git push -q\` on the same tree (GIT_DIR outside it, made by an untimed \`git init\`) to its own bare"
  echo "remote (a file path); restore: \`git checkout -f\` of the local repository's HEAD into an empty directory with a fresh"
  echo "index. Our restore writes into a staging directory and swaps it in (syncfs before the swap) and applies the"
  echo "metadata git does not keep; git's checkout writes in place without a sync. Repositories after the second snapshot"
  echo "(du -sb): snapvisor local $(mib "$z_ours"), remote $(mib "$z_ours_remote"); git local $(mib "$z_git"), remote $(mib "$z_git_remote")."
  echo "Warm page cache: the tree is read once before each snapshot; an untimed sync before and after every timed command."
  echo
  echo "Machine: $(nproc) CPUs ($cpu_model), $(uname -sr); $(git --version) (Debian);"
  echo "snapvisor $(git describe --always --dirty --tags 2>/dev/null || echo unknown), $(go env GOVERSION). Load average before/after:"
  echo "$load_before / $(cut -d' ' -f1-3 /proc/loadavg) (a shared machine: other work skews wall times; the ratios come from"
  echo "interleaved runs). $(date -u +%Y-%m-%dT%H:%MZ), ${elapsed} s."
} | tee "$report"
