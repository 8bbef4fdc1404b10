"""What a built module says of itself, and the module built without the
nginx Development Kit (issue 23): the start-up notice names the module's
version and the nginx it was built for; built with NDK_SRC=none, it runs
without set_sagemaker_session_value, and a configuration using that
directive fails `nginx -t` with an [emerg] that says why.

The module without NDK is build/nondk's (`make BUILD=build/nondk
NDK_SRC=none build`; `make integration` builds it and sets
SMS_NONDK_MODULE and SMS_REQUIRE_NONDK, so there the test must run)."""

import os
import re
import subprocess

import pytest

import harness
from harness import NGINX, ROOT, SESSION, Nginx, assert_emerg, new_session

with open(os.path.join(ROOT, "VERSION")) as f:
    VERSION = f.read().strip()

VALUE = "set_sagemaker_session_value $v key; add_header X-V $v always;"
WITHOUT_NDK = "built without the nginx Development Kit (NDK)"


def nginx_version():
    """The version of the nginx the tests run against, from `nginx -v`."""
    out = subprocess.run([NGINX, "-v"], capture_output=True, text=True, timeout=30)
    m = re.search(r"nginx/(\d+\.\d+\.\d+)", out.stdout + out.stderr)
    assert m, out
    return m.group(1)


def notices(ngx):
    return [l for l in ngx.error_log.splitlines() if "[notice]" in l and "sagemaker sessions module" in l]


def test_startup_notice_names_module_and_nginx_versions(start_nginx):
    ngx = start_nginx()
    lines = notices(ngx)
    assert lines, ngx.error_log[-3000:]
    want = f"sagemaker sessions module {VERSION}, built for nginx {nginx_version()}"
    assert all(l.rstrip().endswith(want) for l in lines), (want, lines)


@pytest.fixture
def nondk_module(monkeypatch):
    """The module built without NDK, as the module every Nginx loads."""
    path = os.environ.get("SMS_NONDK_MODULE")
    if not path and not os.environ.get("SMS_MODULE"):
        path = os.path.join(ROOT, "build", "nondk", "ngx_http_sagemaker_sessions_module.so")
    if not path or not os.path.exists(path):
        if os.environ.get("SMS_REQUIRE_NONDK"):
            pytest.fail(f"no module built without NDK at {path!r} (make BUILD=build/nondk NDK_SRC=none build)")
        pytest.skip("no module built without NDK for this nginx: make BUILD=build/nondk NDK_SRC=none build, "
                    "or SMS_NONDK_MODULE=FILE (make integration builds and requires it)")
    monkeypatch.setattr(harness, "MODULE", path)
    return path


@pytest.mark.parametrize("ndk", [False, True])
def test_without_ndk_the_directive_is_an_emerg(engine, nondk_module, ndk):
    """With or without ndk_http_module.so loaded: this build cannot use it."""
    n = Nginx(engine.port, ndk=ndk, location="sagemaker_session_manager; " + VALUE)
    assert_emerg(n.test_config(), '"set_sagemaker_session_value"', WITHOUT_NDK)


def test_without_ndk_sessions_work(start_nginx, nondk_module):
    ngx = start_nginx()
    want = f"sagemaker sessions module {VERSION}, built for nginx {nginx_version()}, without NDK"
    assert notices(ngx) and all(want in l for l in notices(ngx)), (want, notices(ngx))
    sid = new_session(ngx)
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert r.status == 200, r


def test_with_ndk_the_directive_works(start_nginx):
    """The default build has NDK's headers: the same configuration starts."""
    ngx = start_nginx(ndk=True, location="sagemaker_session_manager; " + VALUE)
    assert not any("without NDK" in l for l in notices(ngx)), notices(ngx)
    sid = new_session(ngx)
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert r.status == 200 and r.header("X-V") is None, r
