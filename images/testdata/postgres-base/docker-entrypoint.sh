#!/bin/sh
# Test stand-in for the official postgres image's docker-entrypoint.sh, on a debootstrap'ed
# Debian base (no registry here): initdb when PGDATA is empty, then run postgres as the postgres
# user. Only what images/postgres/Dockerfile relies on.
set -eu
if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 0700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	initdb -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --auth-local=trust --auth-host=trust >/dev/null
	{ echo "listen_addresses = '*'"; echo "unix_socket_directories = '/var/run/postgresql'"; } >>"$PGDATA/postgresql.conf"
fi
exec "$@"
