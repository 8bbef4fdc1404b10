#!/bin/sh
# The whole integration suite against nginx VERSION built from its source.
#
#   Tests/versions/suite.sh 1.18.0          nginx, NDK and module built (cached), then the suite
#   Tests/versions/suite.sh 1.26.3 no-ndk   the same with no NDK loaded: the tests that
#                                           need it are skipped, saying so; all others pass
#   PYTEST_ARGS="-k name" Tests/versions/suite.sh 1.18.0   some tests only
#
# A failure names the nginx version it happened against.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
version=${1:?usage: $0 VERSION [no-ndk]}
mode=${2:-}
python=${PYTHON:-python3}

assignments=$("$here/nginx-build.sh" "$version")
eval "$assignments"
[ "$mode" = no-ndk ] && SMS_NDK_MODULE=none
what="nginx $version${mode:+ ($mode)}"
echo "== the integration suite against $what: $SMS_NGINX"
cd "$repo"
# shellcheck disable=SC2086
SMS_NGINX=$SMS_NGINX SMS_MODULE=$SMS_MODULE SMS_NDK_MODULE=$SMS_NDK_MODULE \
    SMS_NONDK_MODULE=$SMS_NONDK_MODULE SMS_REQUIRE_NONDK=1 \
    "$python" -m pytest -q -rs ${PYTEST_ARGS:-} Tests/integration \
    || { echo "error: the integration suite failed against $what" >&2; exit 1; }
