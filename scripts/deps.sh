#!/usr/bin/env bash
# Installs, idempotently, the system packages that tests, benchmarks and the demo use.
# Safe to run repeatedly: it does nothing when everything is already present.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

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
  [strace]=strace        # restore crash tests inject signals at each rename (strace -e inject)
  [mkfs.ext4]=e2fsprogs  # fresh ext4 volumes (lost+found) mounted over loop devices in tests
  [mount]=mount
  [restic]=restic        # the independent oracle of the restic format's tests (Debian 12: 0.14.0), and bench-restic.sh's peer
  [ssh]=openssh-client   # restic's sftp backend and the git CLI over ssh run ssh(1)
  [git]=git              # the interop oracle of the git format's tests (git http-backend too), and bench-git.sh's peer
  [prometheus]=prometheus # images/monitoring: a real Prometheus scrapes the entrypoint and evaluates the dashboard and rules
  [promtool]=prometheus   # promtool check rules / test rules of images/monitoring/alerts.yml
)
missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi

# Real servers for the remote-store tests (MinIO, sshd, Azurite, fake-gcs-server):
# installed once into a stable cache, so a second run does nothing.
./scripts/servers.sh install
