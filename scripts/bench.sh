#!/usr/bin/env bash
# make bench: every benchmark, each running its peer side by side in the same
# run; the tables are printed and written into README.md between markers.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var

./scripts/bench-init.sh
[ -x scripts/bench-snapshot.sh ] && ./scripts/bench-snapshot.sh
[ -x scripts/bench-remote.sh ] && ./scripts/bench-remote.sh # splices its own README table
[ -x scripts/bench-crypt.sh ] && ./scripts/bench-crypt.sh

# Splice var/bench-NAME.md into README.md between <!-- bench-NAME --> markers.
for name in init snapshot crypt; do
  f=var/bench-$name.md
  [ -f "$f" ] || continue
  python3 - "$name" "$f" <<'PY' || awk -v n="$name" -v f="$f" '
    $0 == "<!-- bench-" n " -->" { print; while ((getline l < f) > 0) print l; skip=1; next }
    $0 == "<!-- /bench-" n " -->" { skip=0 }
    !skip { print }' README.md > README.md.new && mv README.md.new README.md
import sys, re
name, path = sys.argv[1], sys.argv[2]
table = open(path).read().strip()
readme = open("README.md").read()
start, end = f"<!-- bench-{name} -->", f"<!-- /bench-{name} -->"
i, j = readme.index(start) + len(start), readme.index(end)
open("README.md", "w").write(readme[:i] + "\n" + table + "\n" + readme[j:])
PY
done
echo "bench: README.md updated"
