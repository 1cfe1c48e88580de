#!/usr/bin/env bash
# Installs, idempotently, the system packages that tests, benchmarks and the demo use.
# Safe to run repeatedly: it does nothing when everything is already present.
set -euo pipefail

# command -> Debian package
declare -A want=(
  [tini]=tini
  [dumb-init]=dumb-init
  [pigz]=pigz
  [zstd]=zstd
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [unshare]=util-linux
  [tar]=tar
  [sha256sum]=coreutils
  [rclone]=rclone # the peer of the remote-upload benchmark (scripts/bench-remote.sh)
  [age]=age
  [age-keygen]=age
  [gpg]=gnupg
  [gpgconf]=gnupg
  [openssl]=openssl
)
missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then

  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing packages ${missing[*]} and not root: install them (apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Real servers for the remote-store tests (MinIO, sshd, Azurite, fake-gcs-server):
# installed once into a stable cache, so a second run does nothing.
./scripts/servers.sh install
