#!/usr/bin/env bash
# Benchmarks `entrypoint copy` between two MinIO instances on 127.0.0.1 (two
# "regions") against Debian's `rclone copy` of the same two objects between
# the same two servers (rclone with its defaults, two remotes in its config),
# interleaved runs, medians of RUNS: a 1 GiB snapshot (archive + .sha256) on
# A copied to a fresh prefix on B. Targets: throughput >= 1.0x rclone's, our
# peak RSS <= 64 MiB.
# Prints a markdown table, writes var/bench-copy.md and splices it into
# README.md between the bench-copy markers.
#
# Environment: RUNS (default 3), BIN (default bin/entrypoint).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$PWD
BIN=${BIN:-$root/bin/entrypoint}
RUNS=${RUNS:-3}
work=$root/var/bench-copy
report=$root/var/bench-copy.md

command -v rclone >/dev/null || ./scripts/deps.sh
need_gnu_time
./scripts/servers.sh install minio
minio=$(./scripts/servers.sh path minio)
[ -x "$BIN" ] || CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/entrypoint

rm -rf "$work"
mkdir -p "$work/a" "$work/b" "$work/src"
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
user=snapvisor pass=snapvisor-bench-secret
pa=$(freeport) pb=$(freeport)
# Two MinIO servers, stopped by their PIDs on exit.
MINIO_ROOT_USER=$user MINIO_ROOT_PASSWORD=$pass MINIO_BROWSER=off \
  setsid "$minio" server --quiet --address "127.0.0.1:$pa" "$work/a" >"$work/minio-a.log" 2>&1 &
pid_a=$!
MINIO_ROOT_USER=$user MINIO_ROOT_PASSWORD=$pass MINIO_BROWSER=off \
  setsid "$minio" server --quiet --address "127.0.0.1:$pb" "$work/b" >"$work/minio-b.log" 2>&1 &
pid_b=$!
cleanup() {
  kill "$pid_a" "$pid_b" 2>/dev/null || true
  wait "$pid_a" "$pid_b" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for p in "$pa" "$pb"; do
  for _ in $(seq 300); do
    curl -fsS "http://127.0.0.1:$p/minio/health/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

export AWS_ACCESS_KEY_ID=$user AWS_SECRET_ACCESS_KEY=$pass SNAPVISOR_LOG_LEVEL=warn SNAPVISOR_NAME=bench
export SNAPVISOR_CONTROL_SOCKET=$work/none.sock
for r in A:$pa B:$pb; do
  n=${r%%:*} p=${r#*:}
  export "RCLONE_CONFIG_MINIO${n}_TYPE=s3" "RCLONE_CONFIG_MINIO${n}_PROVIDER=Minio" \
    "RCLONE_CONFIG_MINIO${n}_ENDPOINT=http://127.0.0.1:$p" "RCLONE_CONFIG_MINIO${n}_ACCESS_KEY_ID=$user" \
    "RCLONE_CONFIG_MINIO${n}_SECRET_ACCESS_KEY=$pass" "RCLONE_CONFIG_MINIO${n}_REGION=us-east-1"
done
# rclone's AWS SDK fails on a custom CA bundle with its own transport; MinIO here is plain HTTP.
unset AWS_CA_BUNDLE
export RCLONE_CONFIG=$work/rclone.conf
touch "$RCLONE_CONFIG"
rclone mkdir minioA:snapvisor
rclone mkdir minioB:snapvisor
url() { echo "s3://snapvisor/$2?endpoint=127.0.0.1:$1&tls=false&region=us-east-1"; }

# A 1 GiB snapshot (incompressible, as a compressed archive is) on A.
archive=$work/src/bench-20250101T000000Z.tar.zst
head -c 1G /dev/urandom >"$archive"
(cd "$work/src" && sha256sum "$(basename "$archive")" >"$(basename "$archive").sha256")
size=$(stat -c %s "$archive")
rclone copy "$work/src" minioA:snapvisor/src
rm -rf "$work/src"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$SECONDS
echo "bench-copy: 1 GiB snapshot MinIO A -> MinIO B, $RUNS runs each, interleaved" >&2
ours() { timed "$work/ours" "$BIN" copy --from "$(url "$pa" src)" --to "$(url "$pb" "ours-$1")" latest >/dev/null; }
theirs() { timed "$work/rclone" rclone copy minioA:snapvisor/src "minioB:snapvisor/rclone-$1" >/dev/null; }
for i in $(seq "$RUNS"); do
  pair "$i" "ours $i" "theirs $i"
  rclone purge "minioB:snapvisor/ours-$i" 2>/dev/null || true
  rclone purge "minioB:snapvisor/rclone-$i" 2>/dev/null || true
done

t_ours=$(col 1 "$work/ours") rss_ours=$(col 2 "$work/ours") cpu_ours=$(col 3 "$work/ours")
t_rclone=$(col 1 "$work/rclone") rss_rclone=$(col 2 "$work/rclone") cpu_rclone=$(col 3 "$work/rclone")
mibs() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / 1048576 / t }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }' && echo pass || echo '**FAIL**'; }
thr_ours=$(mibs "$size" "$t_ours") thr_rclone=$(mibs "$size" "$t_rclone")
r_thr=$(ratio "$t_rclone" "$t_ours")
{
  echo "## Copy benchmark"
  echo
  echo "Two MinIO servers on 127.0.0.1 (their data on the same disk), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
  echo "shared with both servers, median of $RUNS interleaved runs, $(date -u +%Y-%m-%dT%H:%MZ), whole run $((SECONDS - t0)) s."
  echo "Load average before/after: $load_before / $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews wall times)."
  echo
  echo "| Measure | snapvisor | reference | ratio | target | met |"
  echo "|---|---|---|---|---|---|"
  echo "| copy 1 GiB snapshot + .sha256 MinIO A → MinIO B, throughput | ${thr_ours} MiB/s (${t_ours} s, CPU ${cpu_ours} s) | ${thr_rclone} MiB/s (${t_rclone} s, CPU ${cpu_rclone} s) \`rclone copy\` $(rclone version | head -1 | awk '{print $2}') | ${r_thr}x | ≥ 1.0x | $(ge "$r_thr" 1.0) |"
  echo "| copy 1 GiB snapshot, peak RSS | $(kib2mib "$rss_ours") | $(kib2mib "$rss_rclone") | | ≤ 64 MiB | $(le "$rss_ours" 65536) |"
  echo
  echo "\`entrypoint copy --from A --to B latest\` streams the archive from A to B (hashed on the way against A's .sha256, size"
  echo "confirmed, the .sha256 written last and read back); \`rclone copy\` copies the same two objects between the two remotes"
  echo "with its defaults (its own MD5 check). Neither can use a server-side copy between two servers."
} | tee "$report"

# Splice the table into README.md between the bench-copy markers.
if grep -q '^<!-- bench-copy -->$' README.md; then
  awk -v f="$report" '
    $0 == "<!-- bench-copy -->" { print; while ((getline l < f) > 0) print l; skip=1; next }
    $0 == "<!-- /bench-copy -->" { skip=0 }
    !skip { print }' README.md >README.md.new && mv README.md.new README.md
  echo "bench-copy: README.md updated" >&2
fi
