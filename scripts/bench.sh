#!/usr/bin/env bash
# make bench: every benchmark, each running its peer side by side in the same
# run; the tables are printed and written into README.md between markers.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var

./scripts/bench-init.sh
[ -x scripts/bench-snapshot.sh ] && ./scripts/bench-snapshot.sh
[ -x scripts/bench-remote.sh ] && ./scripts/bench-remote.sh # splices its own README table
[ -x scripts/bench-copy.sh ] && ./scripts/bench-copy.sh # splices its own README table
[ -x scripts/bench-crypt.sh ] && ./scripts/bench-crypt.sh
[ -x scripts/bench-restic.sh ] && ./scripts/bench-restic.sh
[ -x scripts/bench-git.sh ] && ./scripts/bench-git.sh
[ -x scripts/bench-drill.sh ] && ./scripts/bench-drill.sh

# Splice var/bench-NAME.md into README.md between <!-- bench-NAME --> markers.
splice() {
  awk -v n="$1" -v f="$2" '
    $0 == "<!-- bench-" n " -->" { print; while ((getline l < f) > 0) print l; skip=1; next }
    $0 == "<!-- /bench-" n " -->" { skip=0 }
    !skip { print }' README.md >README.md.new
  mv README.md.new README.md
}
for name in init snapshot crypt restic git drill; do
  f=var/bench-$name.md
  if [ -f "$f" ]; then splice "$name" "$f"; fi
done
echo "bench: README.md updated"
