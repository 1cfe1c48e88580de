#!/usr/bin/env bash
# Benchmarks remote stores against a real MinIO on 127.0.0.1, peers side by
# side in one run, interleaved, medians of RUNS:
#   upload of a 1 GiB snapshot (archive + .sha256) with snapvisor's store.Push
#     (scripts/benchremote, the entrypoint's own push code)  vs  Debian's `rclone copy`:
#     throughput ratio (target >= 1.0) and our peak RSS (target <= 64 MiB);
#   streaming mode (SNAPVISOR_DIR empty): `entrypoint snapshot` straight to MinIO
#     vs a local-only `entrypoint snapshot` of the same data (target <= 1.25x),
#     and the fan-out to two remotes at once (information);
#   Redis (a redis-server on 127.0.0.1, persisting nothing, so that the disk is not measured):
#     upload and download of a 200 MiB snapshot with store.Push / remote.Fetch vs the raw
#     ceiling `redis-cli -x SET` / `redis-cli GET` of the same 200 MiB as one value, the same
#     upload and download against MinIO, and our peak RSS (target <= 64 MiB).
# Prints a markdown table, writes var/bench-remote.md and, when every part ran, splices it
# into README.md between the bench-remote markers.
#
# Environment: RUNS (default 5), PARTS (default "upload stream redis": the parts to run),
# BIN (default bin/entrypoint), BENCH_DIR (the corpus of scripts/bench-snapshot.sh, default
# var/bench-corpus; generated when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$PWD
BIN=${BIN:-$root/bin/entrypoint}
RUNS=${RUNS:-5}
PARTS=${PARTS:-upload stream redis}
has() { [[ " $PARTS " == *" $1 "* ]]; }
corpus=$(realpath -m "${BENCH_DIR:-$root/var/bench-corpus}")
work=$root/var/bench-remote
report=$root/var/bench-remote.md

command -v rclone >/dev/null || ./scripts/deps.sh
need_gnu_time
./scripts/servers.sh install minio
minio=$(./scripts/servers.sh path minio)
if has stream; then
  [ -x "$BIN" ] || CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/entrypoint
  mkdir -p "$(dirname "$corpus")"
  [ -d "$corpus" ] || { echo "bench-remote: generating corpus in $corpus" >&2; go run ./scripts/gencorpus -out "$corpus" -scale 1; }
fi

rm -rf "$work"
mkdir -p "$work/minio" "$work/src"
CGO_ENABLED=0 go build -trimpath -o "$work/benchremote" ./scripts/benchremote

# MinIO on a free port, stopped by its PID on exit.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user=snapvisor pass=snapvisor-bench-secret
MINIO_ROOT_USER=$user MINIO_ROOT_PASSWORD=$pass MINIO_BROWSER=off \
  setsid "$minio" server --quiet --address "127.0.0.1:$port" "$work/minio" >"$work/minio.log" 2>&1 &
minio_pid=$!
redis_pid=
cleanup() {
  kill "$minio_pid" $redis_pid 2>/dev/null || true
  wait "$minio_pid" $redis_pid 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 300); do
  curl -fsS "http://127.0.0.1:$port/minio/health/ready" >/dev/null 2>&1 && break
  sleep 0.1
done

export AWS_ACCESS_KEY_ID=$user AWS_SECRET_ACCESS_KEY=$pass SNAPVISOR_LOG_LEVEL=warn
export RCLONE_CONFIG_MINIO_TYPE=s3 RCLONE_CONFIG_MINIO_PROVIDER=Minio RCLONE_CONFIG_MINIO_ENDPOINT="http://127.0.0.1:$port" \
  RCLONE_CONFIG_MINIO_ACCESS_KEY_ID=$user RCLONE_CONFIG_MINIO_SECRET_ACCESS_KEY=$pass RCLONE_CONFIG_MINIO_REGION=us-east-1
# rclone's AWS SDK fails on a custom CA bundle with its own transport; MinIO here is plain HTTP.
unset AWS_CA_BUNDLE
export RCLONE_CONFIG=$work/rclone.conf
touch "$RCLONE_CONFIG"
rclone mkdir minio:snapvisor
url() { echo "s3://snapvisor/$1?endpoint=127.0.0.1:$port&tls=false&region=us-east-1"; }

# timed OUTFILE CMD...: appends "wall_seconds max_rss_kib" (GNU time) to OUTFILE.
timed() {
  local out=$1; shift
  sync
  /usr/bin/time -f '%e %M' -o "$work/.time" "$@" >/dev/null
  cat "$work/.time" >>"$out"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { awk -v c="$1" '{print $c}' "$2" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mibs() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / 1048576 / t }'; }
kib2mib() { awk -v n="$1" 'BEGIN { printf "%.1f", n / 1024 }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }' && echo yes || echo NO; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }' && echo yes || echo NO; }
purge() { rclone purge "minio:snapvisor/$1" 2>/dev/null || true; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$SECONDS

# 1. Upload of a 1 GiB snapshot (incompressible, as a compressed archive is).
if has upload; then
archive=$work/src/bench-20250101T000000Z.tar.zst
head -c 1G /dev/urandom >"$archive"
(cd "$work/src" && sha256sum "$(basename "$archive")" >"$(basename "$archive").sha256")
size=$(stat -c %s "$archive")
cat "$archive" >/dev/null # warm: both read it from the page cache
echo "bench-remote: 1 GiB upload, $RUNS runs each, interleaved" >&2
for i in $(seq "$RUNS"); do
  if [ $((i % 2)) = 1 ]; then
    timed "$work/ours" "$work/benchremote" "$archive" "$(url "ours-$i")"
    timed "$work/rclone" rclone copy "$work/src" "minio:snapvisor/rclone-$i"
  else
    timed "$work/rclone" rclone copy "$work/src" "minio:snapvisor/rclone-$i"
    timed "$work/ours" "$work/benchremote" "$archive" "$(url "ours-$i")"
  fi
  purge "ours-$i"
  purge "rclone-$i"
done
rm -f "$archive"
fi

# 2. Streaming mode vs local-only snapshot of the same data (gzip -6, the default).
if has stream; then
corpus_bytes=$(du -sb "$corpus" | awk '{print $1}')
tar -cf - -C "$(dirname "$corpus")" "$(basename "$corpus")" >/dev/null # warm
echo "bench-remote: streaming vs local snapshot of $(awk -v n="$corpus_bytes" 'BEGIN { printf "%.0f MiB", n / 1048576 }'), $RUNS runs each" >&2
snapenv=(env SNAPVISOR_SOURCE="$corpus" SNAPVISOR_NAME=bench SNAPVISOR_CONTROL_SOCKET="$work/none.sock")
for i in $(seq "$RUNS"); do
  rm -rf "$work/local"
  timed "$work/local-snap" "${snapenv[@]}" SNAPVISOR_DIR="$work/local" "$BIN" snapshot
  local_size=$(stat -c %s "$work"/local/bench-*.tar.gz)
  rm -rf "$work/local"
  timed "$work/stream" "${snapenv[@]}" SNAPVISOR_DIR= SNAPVISOR_REMOTES="$(url "stream-$i")" "$BIN" snapshot
  timed "$work/stream2" "${snapenv[@]}" SNAPVISOR_DIR= SNAPVISOR_REMOTES="$(url "fan-a-$i"),$(url "fan-b-$i")" "$BIN" snapshot
  stream_size=$(rclone size --json "minio:snapvisor/stream-$i" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])')
  purge "stream-$i"
  purge "fan-a-$i"
  purge "fan-b-$i"
done
fi

# 3. Redis: a 200 MiB snapshot up and down, against redis-cli's one-value SET/GET, and the same with MinIO.
if has redis; then
./scripts/servers.sh install redis
rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/redis" "$work/src200"
setsid "$(./scripts/servers.sh path redis)" --bind 127.0.0.1 --port "$rport" --dir "$work/redis" --save '' --appendonly no \
  --daemonize no --logfile '' >"$work/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do redis-cli -p "$rport" PING >/dev/null 2>&1 && break; sleep 0.1; done
rurl() { echo "redis://127.0.0.1:$rport/0?prefix=$1"; }
small=$work/src200/bench-20250101T000000Z.tar.zst
head -c 200M /dev/urandom >"$small"
(cd "$work/src200" && sha256sum "$(basename "$small")" >"$(basename "$small").sha256")
small_size=$(stat -c %s "$small")
cat "$small" >/dev/null # warm
echo "bench-remote: 200 MiB to and from Redis and MinIO, $RUNS runs each" >&2
for i in $(seq "$RUNS"); do
  rm -rf "$work/dl"
  timed "$work/r-up" "$work/benchremote" "$small" "$(rurl "ours-$i")"
  timed "$work/r-down" "$work/benchremote" fetch "$(rurl "ours-$i")" "$(basename "$small")" "$work/dl"
  timed "$work/r-cli-up" redis-cli -p "$rport" -x SET "raw-$i" <"$small"
  timed "$work/r-cli-down" redis-cli -p "$rport" --raw GET "raw-$i"
  redis-cli -p "$rport" FLUSHDB >/dev/null
  rm -rf "$work/dl"
  timed "$work/m-up" "$work/benchremote" "$small" "$(url "small-$i")"
  timed "$work/m-down" "$work/benchremote" fetch "$(url "small-$i")" "$(basename "$small")" "$work/dl"
  purge "small-$i"
done
rm -rf "$work/dl" "$small"
fi

if has upload; then
t_ours=$(col 1 "$work/ours"); t_rclone=$(col 1 "$work/rclone")
rss_ours=$(col 2 "$work/ours"); rss_rclone=$(col 2 "$work/rclone")
thr_ours=$(mibs "$size" "$t_ours"); thr_rclone=$(mibs "$size" "$t_rclone")
r_thr=$(ratio "$t_rclone" "$t_ours")
fi
if has stream; then
t_local=$(col 1 "$work/local-snap"); t_stream=$(col 1 "$work/stream"); t_stream2=$(col 1 "$work/stream2")
rss_stream=$(col 2 "$work/stream"); rss_local=$(col 2 "$work/local-snap")
r_stream=$(ratio "$t_stream" "$t_local"); r_stream2=$(ratio "$t_stream2" "$t_local")
fi
if has redis; then
t_rup=$(col 1 "$work/r-up"); t_rdown=$(col 1 "$work/r-down"); t_cup=$(col 1 "$work/r-cli-up"); t_cdown=$(col 1 "$work/r-cli-down")
t_mup=$(col 1 "$work/m-up"); t_mdown=$(col 1 "$work/m-down")
rss_rup=$(col 2 "$work/r-up"); rss_rdown=$(col 2 "$work/r-down"); rss_cup=$(col 2 "$work/r-cli-up"); rss_cdown=$(col 2 "$work/r-cli-down")
fi

{
  echo "## Remote store benchmark"
  echo
  echo "MinIO (and Redis) on 127.0.0.1 (MinIO's data on the same disk), $(nproc) cores shared with the servers, warm page cache,"
  echo "median of $RUNS interleaved runs, $(date -u +%Y-%m-%dT%H:%MZ), whole run $((SECONDS - t0)) s."
  echo "Load average before/after: $load_before / $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews wall times)."
  echo
  echo "| Measure | snapvisor | reference | ratio | target | met |"
  echo "|---|---|---|---|---|---|"
  if has upload; then
  echo "| upload 1 GiB snapshot + .sha256 to MinIO, throughput | ${thr_ours} MiB/s (${t_ours} s) | ${thr_rclone} MiB/s (${t_rclone} s) \`rclone copy\` $(rclone version | head -1 | awk '{print $2}') | ${r_thr}x | ≥ 1.0x | $(ge "$r_thr" 1.0) |"
  echo "| upload 1 GiB snapshot, peak RSS | $(kib2mib "$rss_ours") MiB | $(kib2mib "$rss_rclone") MiB | | ≤ 64 MiB | $(le "$rss_ours" 65536) |"
  fi
  if has stream; then
  echo "| streaming mode: snapshot + upload, wall time | ${t_stream} s | ${t_local} s local-only snapshot | ${r_stream}x | ≤ 1.25x | $(le "$r_stream" 1.25) |"
  echo "| streaming mode to 2 remotes at once (one stream, fan-out) | ${t_stream2} s | ${t_local} s local-only snapshot | ${r_stream2}x | (info) | |"
  echo "| streaming mode, peak RSS | $(kib2mib "$rss_stream") MiB | $(kib2mib "$rss_local") MiB local-only | | (info) | |"
  fi
  if has redis; then
  echo "| upload 200 MiB snapshot + .sha256 to Redis, throughput | $(mibs "$small_size" "$t_rup") MiB/s (${t_rup} s) | $(mibs "$small_size" "$t_cup") MiB/s (${t_cup} s) \`redis-cli -x SET\` of the file | $(ratio "$t_cup" "$t_rup")x | (info) | |"
  echo "| download 200 MiB snapshot from Redis (checksum verified), throughput | $(mibs "$small_size" "$t_rdown") MiB/s (${t_rdown} s) | $(mibs "$small_size" "$t_cdown") MiB/s (${t_cdown} s) \`redis-cli GET\` | $(ratio "$t_cdown" "$t_rdown")x | (info) | |"
  echo "| the same 200 MiB snapshot to / from MinIO | $(mibs "$small_size" "$t_mup") MiB/s up (${t_mup} s), $(mibs "$small_size" "$t_mdown") MiB/s down (${t_mdown} s) | | | (info) | |"
  echo "| Redis upload, peak RSS | $(kib2mib "$rss_rup") MiB | $(kib2mib "$rss_cup") MiB redis-cli | | ≤ 64 MiB | $(le "$rss_rup" 65536) |"
  echo "| Redis download, peak RSS | $(kib2mib "$rss_rdown") MiB | $(kib2mib "$rss_cdown") MiB redis-cli | | ≤ 64 MiB | $(le "$rss_rdown" 65536) |"
  fi
  echo
  if has stream; then
  echo "Data of the streaming rows: the $(awk -v n="$corpus_bytes" 'BEGIN { printf "%.0f MiB", n / 1048576 }') corpus of scripts/gencorpus, gzip -6 (the default): $(awk -v n="$local_size" 'BEGIN { printf "%.0f MiB", n / 1048576 }') archive locally, $(awk -v n="$stream_size" 'BEGIN { printf "%.0f MiB", n / 1048576 }') on MinIO (archive + .sha256)."
  echo "Both sides of each row run the real programs: \`scripts/benchremote\` is the entrypoint's push (store.Push: multipart upload read"
  echo "from the file, size check, .sha256 uploaded last and read back); \`entrypoint snapshot\` standalone, with SNAPVISOR_DIR empty"
  echo "and SNAPVISOR_REMOTES set, streams the snapshot to the remotes with no local file. rclone runs with its defaults."
  echo "The fan-out row uploads one stream to two prefixes of the same MinIO (its CPU doubles on the shared cores); one stream per"
  echo "remote instead would walk and compress everything twice: about 2 x ${t_stream} s."
  fi
  if has redis; then
  echo "The Redis rows store a 200 MiB snapshot in 8 MiB chunks (store.Push then remote.Fetch, as the entrypoint pushes and restores);"
  echo "\`redis-cli\` sends or reads the same bytes as one value, with no checksum, no chunking and no commit: the raw ceiling."
  echo "redis-server persists nothing here (save \"\", appendonly no), so that neither side waits for the disk. redis-cli is a low"
  echo "ceiling for one 200 MiB value: it grows its buffers by reallocation, which shows as system time (seconds), not the server's speed."
  fi
} | tee "$report"

# Splice the table into README.md between the bench-remote markers (a full run only).
if [ "$PARTS" = "upload stream redis" ] && grep -q '^<!-- bench-remote -->$' README.md; then
  awk -v f="$report" '
    $0 == "<!-- bench-remote -->" { print; while ((getline l < f) > 0) print l; skip=1; next }
    $0 == "<!-- /bench-remote -->" { skip=0 }
    !skip { print }' README.md >README.md.new && mv README.md.new README.md
  echo "bench-remote: README.md updated" >&2
fi
