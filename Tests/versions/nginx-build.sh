#!/bin/sh
# nginx VERSION built from its released source, with the NDK as a dynamic
# module, and our module built against that tree; each step once (cached).
#
#   Tests/versions/nginx-build.sh 1.18.0    prints three lines, as shell assignments:
#       SMS_NGINX=build/versions/1.18.0/build/objs/nginx
#       SMS_NDK_MODULE=build/versions/1.18.0/build/objs/ndk_http_module.so
#       SMS_MODULE=build/versions/1.18.0/module/ngx_http_sagemaker_sessions_module.so
#
# The source comes from Tests/versions/nginx-source.sh. nginx is configured
# as a distribution would (--with-compat, HTTP/2, threads, SSL, auth_request) in a copy of
# the source (build/versions/VERSION/build), so the tree our module is built
# against stays pristine. The NDK is built with -DNDK_SET_VAR
# -DNDK_UPSTREAM_LIST, as Debian builds it: without them it does not export
# ndk_set_var_core, which set_sagemaker_session_value needs. Under OpenSSL 3,
# 1.18.0 needs -Wno-deprecated-declarations (its ngx_event_openssl.c uses
# deprecated calls and nginx builds with -Werror). Our module is built by
# `make BUILD=build/versions/VERSION/module NGINX_SRC=...`, so the system
# build (build/) is not touched; make itself decides whether it is current.
#
# Logs: build/versions/VERSION/{configure,make,module}.log
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
version=${1:?usage: $0 1.18.0|1.26.3}
src=$("$here/nginx-source.sh" "$version")
dir=$(dirname "$src")
tree=$dir/build
make=${MAKE:-make}

cc_opt="-DNDK_SET_VAR -DNDK_UPSTREAM_LIST"
case $version in 1.18.*) cc_opt="$cc_opt -Wno-deprecated-declarations" ;; esac

fail() { tail -30 "$1" >&2; echo "error: nginx $version: $2, see $1" >&2; exit 1; }

# as distributions build it: auth_request too (Debian's, Ubuntu's and
# nginx.org's nginx have it; the one-verdict race tests hold a request there)
flags="--with-compat --with-threads --with-http_v2_module --with-http_ssl_module --with-http_auth_request_module"

# built once per set of flags: .built holds the flags it was built with
if [ "$(cat "$tree/.built" 2>/dev/null)" != "$flags $cc_opt" ]; then
    rm -rf "$tree" && cp -r "$src" "$tree"
    # shellcheck disable=SC2086
    (cd "$tree" && ./configure --prefix="$dir/prefix" $flags --with-cc-opt="$cc_opt" \
        --add-dynamic-module="$dir/ndk") > "$dir/configure.log" 2>&1 \
        || fail "$dir/configure.log" "configure failed"
    "$make" -C "$tree" -j"$(nproc)" > "$dir/make.log" 2>&1 \
        || fail "$dir/make.log" "nginx or the NDK did not build"
    mkdir -p "$dir/prefix/logs"
    echo "$flags $cc_opt" > "$tree/.built"
fi

# NDK_SRC: the headers of the NDK built here. The module without NDK (its
# [emerg] for set_sagemaker_session_value) is built for this nginx as well.
NDK_SRC="$dir/ndk" "$make" -C "$repo" BUILD="$dir/module" NGINX_SRC="$src" \
    build "$dir/module/nondk/ngx_http_sagemaker_sessions_module.so" > "$dir/module.log" 2>&1 \
    || fail "$dir/module.log" "our module did not build against this nginx"

echo "SMS_NGINX=$tree/objs/nginx"
echo "SMS_NDK_MODULE=$tree/objs/ndk_http_module.so"
echo "SMS_MODULE=$dir/module/ngx_http_sagemaker_sessions_module.so"
echo "SMS_NONDK_MODULE=$dir/module/nondk/ngx_http_sagemaker_sessions_module.so"
