#!/bin/sh
# A cached Debian root (debootstrap --variant=minbase) to build and test in.
#
#   Tests/roots/debian-root.sh trixie                  make build/roots/trixie once; print its path
#   Tests/roots/debian-root.sh trixie install PKG...   apt-get install inside it (missing ones only)
#   Tests/roots/debian-root.sh trixie run CMD [ARG...] run CMD inside it, as root, cwd /
#
# `run` chroots in a mount and PID namespace of its own: /proc, /dev and a
# fresh /dev/shm are mounted there and vanish with it, and so does every
# process CMD leaves behind. The network is the host's, so a server started
# inside answers on the host's 127.0.0.1. Killing `run` (SIGTERM) kills CMD.
#
# Environment:
#   SMS_ROOT_BIND="DIR..."  host directories bound read-write at the same path inside
#   SMS_ROOTS=DIR           where roots are kept (default: <repo>/build/roots)
#   SMS_ROOT_MIRROR=URL     Debian mirror (default: http://deb.debian.org/debian)
#
# The host's apt configuration is never read or changed: the root has its own.
# A root is complete once build/roots/SUITE/.sms-root exists; an interrupted
# debootstrap is thrown away and started again.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
suite=${1:?usage: $0 SUITE [install PKG...|run CMD...]}
shift
roots=${SMS_ROOTS:-$here/../../build/roots}
mkdir -p "$roots"
roots=$(cd "$roots" && pwd)
root=$roots/$suite
mirror=${SMS_ROOT_MIRROR:-http://deb.debian.org/debian}

make_root() {
    [ -e "$root/.sms-root" ] && return 0
    command -v debootstrap >/dev/null || \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 debootstrap >&2
    echo "debootstrap --variant=minbase $suite $root" >&2
    rm -rf "$root.tmp"
    debootstrap --variant=minbase "$suite" "$root.tmp" "$mirror" > "$roots/$suite.log" 2>&1 || {
        tail -20 "$roots/$suite.log" >&2; echo "error: debootstrap $suite failed, see $roots/$suite.log" >&2; exit 1; }
    # services are never started by a package installed here
    printf '#!/bin/sh\nexit 101\n' > "$root.tmp/usr/sbin/policy-rc.d"
    chmod 755 "$root.tmp/usr/sbin/policy-rc.d"
    rm -rf "$root"
    mv "$root.tmp" "$root"
    touch "$root/.sms-root"
}

# run CMD...: in the root, in namespaces of their own
run_in_root() {
    cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    SMS_ROOT_DIR=$root SMS_ROOT_BIND=${SMS_ROOT_BIND:-} \
    unshare --mount --propagation private --pid --fork --kill-child sh -ec '
        r=$SMS_ROOT_DIR
        mount -t proc proc "$r/proc"
        mount --rbind /dev "$r/dev"
        mount -t tmpfs -o mode=1777 tmpfs "$r/dev/shm"
        for d in $SMS_ROOT_BIND; do mkdir -p "$r$d"; mount --bind "$d" "$r$d"; done
        exec chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"' sh "$@"
}

make_root
case "${1:-}" in
"")
    echo "$root" ;;
run)
    shift
    run_in_root "$@" ;;
install)
    shift
    missing=""
    for p in "$@"; do
        run_in_root dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && exit 0
    echo "installing in $suite:$missing" >&2
    # lists older than a day are fetched again
    if [ -z "$(find "$root/var/lib/apt/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
        run_in_root apt-get update -qq >&2
    fi
    run_in_root apt-get install -y -qq --no-install-recommends $missing >&2 ;;
*)
    echo "usage: $0 SUITE [install PKG...|run CMD...]" >&2; exit 2 ;;
esac
