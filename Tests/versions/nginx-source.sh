#!/bin/sh
# nginx's released source and the NDK's, from Debian's archive, unpacked once.
#
#   Tests/versions/nginx-source.sh 1.18.0   build/versions/1.18.0/{nginx,ndk}; prints the nginx dir
#   Tests/versions/nginx-source.sh 1.26.3   the same for 1.26.3
#
# 1.18.0 is bullseye's nginx_1.18.0.orig.tar.gz, its NDK the copy inside
# nginx's Debian source (debian/modules/http-ndk). 1.26.3 is trixie's, its
# NDK the libnginx-mod-http-ndk 0.3.4 source package. Both come by
# `apt-get source --download-only` with a sources list of our own (one
# deb-src line) and private lists and cache under build/versions/apt:
# the machine's apt configuration is neither read nor changed.
# A version is complete once build/versions/VERSION/.unpacked exists.
#
# Environment: SMS_VERSIONS=DIR (default <repo>/build/versions),
#              SMS_SOURCE_MIRROR=URL (default http://deb.debian.org/debian)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
version=${1:?usage: $0 1.18.0|1.26.3}
case $version in
    1.18.0) suite=bullseye ndk_source=nginx ;;
    1.26.3) suite=trixie ndk_source=libnginx-mod-http-ndk ;;
    *) echo "error: nginx $version: sources are known for 1.18.0 (bullseye) and 1.26.3 (trixie)" >&2; exit 2 ;;
esac
versions=${SMS_VERSIONS:-$here/../../build/versions}
mkdir -p "$versions"
versions=$(cd "$versions" && pwd)
dir=$versions/$version
mirror=${SMS_SOURCE_MIRROR:-http://deb.debian.org/debian}

if [ -e "$dir/.unpacked" ]; then echo "$dir/nginx"; exit 0; fi

# apt-get with a state of its own for SUITE's sources
apt=$versions/apt/$suite
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
echo "deb-src $mirror $suite main" > "$apt/sources.list"
: > "$apt/status"
apt_opts="-o Dir::Etc::SourceList=$apt/sources.list -o Dir::Etc::SourceParts=/dev/null
          -o Dir::State::Lists=$apt/lists -o Dir::Cache=$apt/cache -o Dir::State::Status=$apt/status
          -o Acquire::Check-Valid-Until=false -o APT::Sandbox::User=root -qq"
log=$versions/$version.log
rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/download"
# apt-get source fails when a file other than the .orig tarball cannot be
# fetched (some mirrors hold only those); the tarballs needed are checked below
{
    # shellcheck disable=SC2086
    apt-get $apt_opts update || exit 1
    cd "$dir.tmp/download"
    # shellcheck disable=SC2086
    apt-get $apt_opts source --download-only nginx || true
    if [ "$ndk_source" != nginx ]; then
        # shellcheck disable=SC2086
        apt-get $apt_opts source --download-only "$ndk_source" || true
    fi
} > "$log" 2>&1 || {
    tail -20 "$log" >&2
    echo "error: $suite's source lists could not be fetched, see $log" >&2; exit 1; }
for f in "nginx_$version.orig.tar.gz" \
         "$( [ "$ndk_source" = nginx ] && echo "nginx_$version-*.debian.tar.xz" || echo "${ndk_source}_*.orig.tar.*")"; do
    # shellcheck disable=SC2086
    ls "$dir.tmp"/download/$f >/dev/null 2>&1 || {
        tail -20 "$log" >&2
        echo "error: $f for nginx $version could not be fetched from $suite, see $log" >&2; exit 1; }
done

cd "$dir.tmp"
orig=$(ls download/nginx_"$version".orig.tar.gz)
mkdir nginx && tar -xzf "$orig" -C nginx --strip-components=1
grep -q "\"$version\"" nginx/src/core/nginx.h || {
    echo "error: $orig is not nginx $version" >&2; exit 1; }
mkdir ndk
if [ "$ndk_source" = nginx ]; then
    # bullseye: the NDK is a directory of nginx's Debian tarball
    mkdir debian && tar -xJf download/nginx_"$version"-*.debian.tar.xz -C debian
    cp -r debian/debian/modules/http-ndk/. ndk/
    rm -rf debian
else
    ndk_orig=$(ls download/"$ndk_source"_*.orig.tar.* | head -1)
    tar -xf "$ndk_orig" -C ndk --strip-components=1
fi
[ -e ndk/config ] || { echo "error: no NDK source for nginx $version" >&2; exit 1; }
cd "$versions"
rm -rf "$dir" && mv "$dir.tmp" "$dir"
touch "$dir/.unpacked"
echo "$dir/nginx"
