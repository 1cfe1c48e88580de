#!/usr/bin/env bash
# Builds the benchmark datasets from what is on this machine (no downloads),
# each into its own directory under DATASETS (default var/_datasets: the leading
# _ keeps the go command out of the Go files of the source dataset), once:
# a dataset whose directory exists is kept (delete it to rebuild).
#
#   source      source code and docs: the Go module cache's extracted modules
#               (falling back to /usr/share), in path order, up to SIZE_MIB
#   binaries    /usr/lib's regular files in path order, up to SIZE_MIB
#   postgres    a PostgreSQL data directory after `pgbench -i -s 20`, cleanly shut down
#   redis       a Redis RDB after `DEBUG POPULATE 2000000`
#   sqlite      a SQLite database of an events table with an index (sqlite3 CLI)
#   compressed  already-compressed files (.gz .xz .zst .bz2 .jpg .png .zip .jar) from
#               /usr/share and /usr/lib, up to SIZE_MIB
#   corpus      scripts/gencorpus (log-like text, JSON lines, random, zeros, small files)
#   flat        scripts/gencorpus -layout flat (64 x 4 MiB log-like text, 32 x 4 MiB
#               random, one 64 MiB file of zeros)
#
#   scripts/datasets.sh [NAME...]     (default: all; prints the directories built)
# Environment: DATASETS, SIZE_MIB (default 192).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$PWD
out=$(realpath -m "${DATASETS:-$root/var/_datasets}")
size=$((${SIZE_MIB:-192} * 1048576))
mkdir -p "$out"
log() { echo "datasets: $*" >&2; }

# copy_upto DEST LIMIT FIND_ARGS...: copies the regular files that find
# FIND_ARGS selects (sorted by path; symlinks and special files left out) into
# DEST, keeping their absolute paths below it, until LIMIT bytes.
copy_upto() {
  local dest=$1 limit=$2
  shift 2
  mkdir -p "$dest"
  find "$@" -xdev -type f -readable -printf '%p\t%s\0' 2>/dev/null | sort -z |
    awk -v RS='\0' -v ORS='\0' -v limit="$limit" -F'\t' '{ if (t + $2 > limit) next; t += $2; print $1 }' |
    tar --null -T - -cf - 2>/dev/null | tar -x -C "$dest"
}

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  echo "${d:-/usr/lib/postgresql/15/bin}"
}

build_source() {
  local mod
  mod=$(go env GOMODCACHE 2>/dev/null || true)
  if [ -n "$mod" ] && [ "$(du -sm --exclude=cache "$mod" 2>/dev/null | cut -f1)" -gt 100 ]; then
    copy_upto "$1" "$size" "$mod" -path "$mod/cache" -prune -o
  else
    copy_upto "$1" "$size" /usr/share
  fi
}

build_binaries() { copy_upto "$1" "$size" /usr/lib; }

build_compressed() {
  copy_upto "$1" "$size" /usr/share /usr/lib \( -name '*.gz' -o -name '*.xz' -o -name '*.zst' -o -name '*.bz2' \
    -o -name '*.jpg' -o -name '*.png' -o -name '*.zip' -o -name '*.jar' \)
}

build_corpus() { go run ./scripts/gencorpus -out "$1" -scale 1 >/dev/null; }
build_flat() { go run ./scripts/gencorpus -out "$1" -layout flat >/dev/null; }

build_redis() {
  command -v redis-server >/dev/null || ./scripts/deps.sh
  local port dir=$1
  mkdir -p "$dir"
  port=$((20000 + RANDOM % 20000))
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no --daemonize no --enable-debug-command yes \
    --logfile "$dir.log" &
  local pid=$!
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$port" DEBUG POPULATE 2000000 >/dev/null
  redis-cli -p "$port" SAVE >/dev/null
  redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  wait "$pid" || true
  rm -f "$dir.log"
}

build_sqlite() {
  command -v sqlite3 >/dev/null || apt_install sqlite3
  mkdir -p "$1"
  sqlite3 "$1/app.db" >/dev/null <<'SQL'
PRAGMA journal_mode=WAL;
CREATE TABLE events (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, user TEXT NOT NULL, kind TEXT NOT NULL,
  payload TEXT NOT NULL, token BLOB NOT NULL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 700000)
INSERT INTO events (at, user, kind, payload, token)
SELECT 1700000000 + i * 7, 'user' || (i * 7919 % 50000),
  CASE i % 5 WHEN 0 THEN 'login' WHEN 1 THEN 'view' WHEN 2 THEN 'edit' WHEN 3 THEN 'share' ELSE 'logout' END,
  printf('{"page":"/docs/%d","ms":%d,"ok":%s,"agent":"Mozilla/5.0 (X11; Linux x86_64) rv:%d"}',
    i % 977, (i * 31) % 2000, CASE WHEN i % 13 = 0 THEN 'false' ELSE 'true' END, 100 + i % 30),
  randomblob(16)
FROM n;
CREATE INDEX events_user ON events (user, at);
PRAGMA wal_checkpoint(TRUNCATE);
SQL
}

build_postgres() {
  local dir=$1 bin
  bin=$(pg_bin)
  [ -x "$bin/pg_ctl" ] || ./scripts/servers.sh install postgres
  command -v pgbench >/dev/null || [ -x "$bin/pgbench" ] || apt_install postgresql-contrib
  local pgbench=pgbench
  [ -x "$bin/pgbench" ] && pgbench=$bin/pgbench
  local base
  base=$(mktemp -d /tmp/datasets-pg.XXXXXX)
  chown postgres "$base"
  runuser -u postgres -- "$bin/initdb" -D "$base/data" -U postgres --auth-local=trust -N >/dev/null 2>&1
  runuser -u postgres -- "$bin/pg_ctl" -D "$base/data" -l "$base/log" -w \
    -o "-c listen_addresses='' -k $base -c fsync=off" start >/dev/null
  runuser -u postgres -- "$pgbench" -h "$base" -U postgres -i -s 20 -q postgres >/dev/null 2>&1
  runuser -u postgres -- "$bin/pg_ctl" -D "$base/data" -m fast -w stop >/dev/null
  mkdir -p "$(dirname "$dir")"
  mv "$base/data" "$dir"
  chown -R root:root "$dir"
  rm -rf "$base"
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(source binaries postgres redis sqlite compressed corpus flat)
for n in "${names[@]}"; do
  d=$out/$n
  if [ ! -d "$d" ]; then
    log "building $n in $d"
    rm -rf "$d.tmp"
    "build_$n" "$d.tmp"
    mv "$d.tmp" "$d"
  fi
  echo "$d"
done
