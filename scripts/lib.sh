# Shell helpers the scripts share; source it (it only defines functions).

# apt_install PKG...: installs Debian packages, waiting for another apt run's
# lock; without root it names the packages to install and fails.
apt_install() {
  local me
  me=$(basename "$0" .sh)
  if [ "$(id -u)" != 0 ]; then
    echo "$me: missing packages $*; not root: install them with apt-get install $*" >&2
    return 1
  fi
  echo "$me: installing $* (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@" >/dev/null
}

# need_gnu_time: installs GNU time (/usr/bin/time, for peak RSS) when missing.
need_gnu_time() {
  [ -x /usr/bin/time ] || apt_install time
}

# Benchmark helpers (scripts/bench-restic.sh, scripts/bench-git.sh; the older bench-*.sh scripts keep their own copies).

# timed OUTFILE CMD...: runs CMD under GNU time and appends "wall_s max_rss_kib cpu_s" to OUTFILE.
# An untimed sync before and after keeps one command's writeback out of the next one's time.
timed() {
  local out=$1; shift
  sync
  /usr/bin/time -f '%e %M %U %S' -o "$out.time" "$@"
  awk '{print $1, $2, $3 + $4}' "$out.time" >>"$out"
  rm -f "$out.time"
  sync
}
# pair I CMD_OURS CMD_THEIRS: evals both, ours first in odd runs and second in even ones.
pair() {
  if (($1 % 2)); then eval "$2"; eval "$3"; else eval "$3"; eval "$2"; fi
}
# median: the median of the numbers on stdin (the lower one of an even count).
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# col N FILE: the median of column N of FILE.
col() { awk -v c="$1" '{print $c}' "$2" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
mib() { awk -v n="$1" 'BEGIN { printf "%.1f MiB", n / 1048576 }'; }
kib2mib() { awk -v n="$1" 'BEGIN { printf "%.1f MiB", n / 1024 }'; }
# le A B: "pass" when A <= B, else "**FAIL**".
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a ~ /^[0-9.]+$/ && a + 0 <= b + 0) }' && echo pass || echo '**FAIL**'; }
# warm DIR: reads every file of DIR once, so the timed runs read from the page cache alike.
warm() { tar -cf - -C "$(dirname "$1")" "$(basename "$1")" >/dev/null; }
