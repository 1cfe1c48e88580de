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
