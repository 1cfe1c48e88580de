#!/usr/bin/env bash
# Real storage servers for the store tests and benchmarks, all on 127.0.0.1:
# MinIO (S3), sshd (SFTP), Azurite (Azure Blob), fake-gcs-server (GCS), Redis, PostgreSQL.
#
#   scripts/servers.sh install [minio|gcs|azurite|sshd|redis|postgres ...]  install (idempotent; default: all)
#   scripts/servers.sh start                                  start all, write var/servers.env, print it
#   scripts/servers.sh stop                                   stop what start started (by recorded PID)
#   scripts/servers.sh env                                    print var/servers.env
#   scripts/servers.sh path NAME                              print the executable of one server
#
# Installed tools live in $SNAPVISOR_TOOLS (default $HOME/.cache/snapvisor-tools), outside the
# work tree, so that a second run, a fresh clone or `make clean` does not rebuild them. The Go build
# cache stays the default one, so even a wiped tools dir reinstalls quickly.
# A cold install takes ~5.5 min (MinIO) + ~3 min (fake-gcs-server) + ~1 min (Azurite, sshd).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

TOOLS=${SNAPVISOR_TOOLS:-$HOME/.cache/snapvisor-tools}
BIN=$TOOLS/bin
STAMPS=$TOOLS/stamps
RUN=${SNAPVISOR_SERVERS_DIR:-$PWD/var/servers}
ENVFILE=$PWD/var/servers.env

MINIO_MOD=github.com/minio/minio
MINIO_VER=v0.0.0-20260212201848-7aac2a2c5b7c
GCS_MOD=github.com/fsouza/fake-gcs-server
GCS_VER=v1.56.1
AZURITE_VER=3.37.0

# Test credentials for the local servers only.
PG_USER=snapvisor
PG_PASS=snapvisor-pg-secret
PG_DB=snapvisor
MINIO_USER=snapvisor
MINIO_PASS=snapvisor-secret
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

log() { echo "servers: $*" >&2; }

go_tool() { # name module version
  local name=$1 mod=$2 ver=$3
  if [ -x "$BIN/$name" ] && [ -f "$STAMPS/$name-$ver" ]; then return 0; fi
  log "installing $name $ver (go install; minutes on a cold build cache)"
  mkdir -p "$BIN" "$STAMPS"
  local t0=$SECONDS
  GOBIN=$BIN GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install "$mod@$ver"
  rm -f "$STAMPS/$name-"*
  touch "$STAMPS/$name-$ver"
  log "installed $name in $((SECONDS - t0)) s"
}

install_azurite() {
  local dir=$TOOLS/azurite
  if [ -x "$dir/node_modules/.bin/azurite-blob" ] && [ -f "$STAMPS/azurite-$AZURITE_VER" ]; then return 0; fi
  if ! command -v npm >/dev/null; then apt_install npm; fi
  log "installing azurite $AZURITE_VER (npm)"
  mkdir -p "$dir" "$STAMPS"
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VER" >/dev/null)
  rm -f "$STAMPS/azurite-"*
  touch "$STAMPS/azurite-$AZURITE_VER"
}

install_sshd() {
  [ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null && return 0
  apt_install openssh-server openssh-client
}

install_redis() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  apt_install redis-server redis-tools
}

# PostgreSQL (Debian's, 15 on Debian 12): its programs are in /usr/lib/postgresql/N/bin, off PATH.
# The package's own cluster is not used: tests and `start` run initdb in their own directories.
pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  echo "${d:-/usr/lib/postgresql/15/bin}"
}

install_postgres() {
  [ -x "$(pg_bin)/pg_ctl" ] && [ -x "$(pg_bin)/initdb" ] && id postgres >/dev/null 2>&1 && return 0
  apt_install postgresql
}

install() {
  local which=("$@")
  [ ${#which[@]} -eq 0 ] && which=(sshd redis postgres azurite gcs minio)
  for w in "${which[@]}"; do
    case $w in
      minio) go_tool minio "$MINIO_MOD" "$MINIO_VER" ;;
      gcs) go_tool fake-gcs-server "$GCS_MOD" "$GCS_VER" ;;
      azurite) install_azurite ;;
      sshd) install_sshd ;;
      redis) install_redis ;;
      postgres) install_postgres ;;
      *) log "unknown server $w (minio, gcs, azurite, sshd, redis, postgres)"; return 2 ;;
    esac
  done
}

path() {
  case $1 in
    minio) echo "$BIN/minio" ;;
    gcs) echo "$BIN/fake-gcs-server" ;;
    azurite) echo "$TOOLS/azurite/node_modules/.bin/azurite-blob" ;;
    sshd) echo /usr/sbin/sshd ;;
    redis) command -v redis-server || echo /usr/bin/redis-server ;;
    postgres) echo "$(pg_bin)/pg_ctl" ;;
    *) return 2 ;;
  esac
}

free_port() {
  python3 - 2>/dev/null <<'EOF' || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
EOF
}

wait_port() { # port seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  install
  if alive "$RUN/minio.pid" || alive "$RUN/sshd.pid" || alive "$RUN/azurite.pid" || alive "$RUN/gcs.pid" || alive "$RUN/redis.pid" || alive "$RUN/postgres.pid"; then
    log "already running (scripts/servers.sh stop first)"
    cat "$ENVFILE"
    return 0
  fi
  rm -rf "$RUN"
  mkdir -p "$RUN"/{minio,azurite,gcs,sftp,ssh,redis}
  local s3p sshp azp gcsp redisp pgp
  s3p=$(free_port) sshp=$(free_port) azp=$(free_port) gcsp=$(free_port) redisp=$(free_port) pgp=$(free_port)

  MINIO_ROOT_USER=$MINIO_USER MINIO_ROOT_PASSWORD=$MINIO_PASS MINIO_BROWSER=off \
    setsid "$BIN/minio" server --quiet --address "127.0.0.1:$s3p" "$RUN/minio" >"$RUN/minio.log" 2>&1 &
  echo $! >"$RUN/minio.pid"

  setsid "$BIN/fake-gcs-server" -scheme http -host 127.0.0.1 -port "$gcsp" -backend filesystem \
    -filesystem-root "$RUN/gcs" -public-host "127.0.0.1:$gcsp" -external-url "http://127.0.0.1:$gcsp" \
    -log-level error >"$RUN/gcs.log" 2>&1 &
  echo $! >"$RUN/gcs.pid"

  setsid "$TOOLS/azurite/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$azp" \
    --location "$RUN/azurite" --skipApiVersionCheck --silent >"$RUN/azurite.log" 2>&1 &
  echo $! >"$RUN/azurite.pid"

  ssh-keygen -q -t ed25519 -N '' -f "$RUN/ssh/host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$RUN/ssh/client_key"
  cp "$RUN/ssh/client_key.pub" "$RUN/ssh/authorized_keys"
  echo "[127.0.0.1]:$sshp $(cat "$RUN/ssh/host_key.pub")" >"$RUN/ssh/known_hosts"
  cat >"$RUN/ssh/sshd_config" <<EOF
Port $sshp
ListenAddress 127.0.0.1
HostKey $RUN/ssh/host_key
PidFile $RUN/sshd.pid.sshd
AuthorizedKeysFile $RUN/ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
EOF
  mkdir -p /run/sshd 2>/dev/null || true
  setsid /usr/sbin/sshd -D -e -f "$RUN/ssh/sshd_config" >"$RUN/sshd.log" 2>&1 &
  echo $! >"$RUN/sshd.pid"

  # Redis with AOF, as snapshots kept in Redis need (a Redis persisting nothing is warned about).
  setsid "$(path redis)" --bind 127.0.0.1 --port "$redisp" --dir "$RUN/redis" --save '' --appendonly yes \
    --daemonize no --logfile '' >"$RUN/redis.log" 2>&1 &
  echo $! >"$RUN/redis.pid"

  # PostgreSQL: its own cluster, run by the postgres user (which must reach $RUN/postgres),
  # a password-protected role and its database (scram-sha-256 over TCP; the superuser only on the socket).
  local pgdir=$RUN/postgres
  mkdir -p "$pgdir/data"
  chown -R postgres:postgres "$pgdir"
  chmod 700 "$pgdir" "$pgdir/data"
  local ok=1
  if ! runuser -u postgres -- test -w "$pgdir"; then
    log "the postgres user cannot reach $pgdir (a parent directory is closed to it); set SNAPVISOR_SERVERS_DIR"
    ok=0
  elif ! runuser -u postgres -- "$(pg_bin)/initdb" -D "$pgdir/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 -N >"$RUN/postgres-initdb.log" 2>&1; then
    log "initdb failed: $(tail -5 "$RUN/postgres-initdb.log")"
    ok=0
  elif ! runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $pgp -k $pgdir" start >/dev/null; then
    log "postgres did not start: $(tail -5 "$pgdir/server.log")"
    ok=0
  else
    head -1 "$pgdir/data/postmaster.pid" >"$RUN/postgres.pid"
    runuser -u postgres -- psql -q -h "$pgdir" -p "$pgp" -U postgres -d postgres \
      -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASS'" -c "CREATE DATABASE $PG_DB OWNER $PG_USER" ||
      { log "could not create the PostgreSQL role and database"; ok=0; }
  fi
  mkdir -p "$RUN/sqlite"

  wait_port "$s3p" 30 || { log "minio did not start: $(tail -5 "$RUN/minio.log")"; ok=0; }
  wait_port "$sshp" 10 || { log "sshd did not start: $(tail -5 "$RUN/sshd.log")"; ok=0; }
  wait_port "$azp" 30 || { log "azurite did not start: $(tail -5 "$RUN/azurite.log")"; ok=0; }
  wait_port "$gcsp" 10 || { log "fake-gcs-server did not start: $(tail -5 "$RUN/gcs.log")"; ok=0; }
  wait_port "$redisp" 10 || { log "redis-server did not start: $(tail -5 "$RUN/redis.log")"; ok=0; }
  if [ $ok = 1 ]; then
    local i
    for ((i = 0; i < 100; i++)); do
      curl -fsS "http://127.0.0.1:$s3p/minio/health/ready" >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi
  if [ $ok = 1 ]; then
    # Buckets for the printed URLs: S3 (curl signs SigV4) and GCS (no auth).
    # The Azure container is created by the client (tests) or by hand.
    curl -fsS -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$MINIO_USER:$MINIO_PASS" \
      "http://127.0.0.1:$s3p/snapvisor" >/dev/null || { log "could not create the S3 bucket"; ok=0; }
    curl -fsS -X POST -H 'Content-Type: application/json' -d '{"name":"snapvisor"}' \
      "http://127.0.0.1:$gcsp/storage/v1/b?project=snapvisor" >/dev/null || { log "could not create the GCS bucket"; ok=0; }
  fi
  local user
  user=$(id -un)
  cat >"$ENVFILE" <<EOF
SNAPVISOR_TEST_S3_ENDPOINT=127.0.0.1:$s3p
SNAPVISOR_TEST_S3_URL=s3://snapvisor/test?endpoint=127.0.0.1:$s3p&tls=false&region=us-east-1
AWS_ACCESS_KEY_ID=$MINIO_USER
AWS_SECRET_ACCESS_KEY=$MINIO_PASS
SNAPVISOR_TEST_SFTP_URL=sftp://$user@127.0.0.1:$sshp$RUN/sftp
SNAPVISOR_SFTP_KEY_FILE=$RUN/ssh/client_key
SNAPVISOR_SFTP_KNOWN_HOSTS=$RUN/ssh/known_hosts
SNAPVISOR_TEST_AZURE_URL=azure://snapvisor/test
AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=http;AccountName=$AZURITE_ACCOUNT;AccountKey=$AZURITE_KEY;BlobEndpoint=http://127.0.0.1:$azp/$AZURITE_ACCOUNT;
SNAPVISOR_TEST_GCS_URL=gs://snapvisor/test
STORAGE_EMULATOR_HOST=127.0.0.1:$gcsp
SNAPVISOR_TEST_REDIS_URL=redis://127.0.0.1:$redisp/0?prefix=test
SNAPVISOR_TEST_POSTGRES_URL=postgres://$PG_USER@127.0.0.1:$pgp/$PG_DB?sslmode=disable&table=snapvisor_objects
SNAPVISOR_POSTGRES_PASSWORD=$PG_PASS
SNAPVISOR_TEST_SQLITE_URL=sqlite://$RUN/sqlite/snapvisor.db
EOF
  cat "$ENVFILE"
  if [ $ok != 1 ]; then stop; return 1; fi
  log "started; logs and PIDs in $RUN; stop with scripts/servers.sh stop"
}

stop_pid() { # pidfile name
  local f=$1 pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true # Azurite ignores TERM
  fi
  rm -f "$f"
}

stop() {
  if alive "$RUN/postgres.pid"; then
    runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$RUN/postgres/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  fi
  stop_pid "$RUN/postgres.pid"
  stop_pid "$RUN/minio.pid"
  stop_pid "$RUN/gcs.pid"
  stop_pid "$RUN/azurite.pid"
  stop_pid "$RUN/sshd.pid"
  stop_pid "$RUN/redis.pid"
  rm -f "$ENVFILE"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  install) install "$@" ;;
  start) start ;;
  stop) stop ;;
  env) cat "$ENVFILE" ;;
  path) path "$@" ;;
  *) sed -n '2,9p' "$0" >&2; exit 64 ;;
esac
