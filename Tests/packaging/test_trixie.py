"""Debian 13 (trixie), in the root that Tests/roots/debian-root.sh keeps in
build/roots/trixie (`make trixie` builds what these tests need):

- Debian 13's package (`make deb DIST=trixie`) installed next to trixie's
  stock nginx 1.26.3, loaded through modules-enabled, a session's life walked
  over real HTTP, then removed and purged;
- unstable's nginx 1.30.6 binary loading the module built against unstable's
  nginx-dev tree, walking a session's life, and nginx 1.26.3 refusing that
  module with nginx's own version message.

nginx runs inside the root (its network is the host's); the engine stub and
the requests are the integration harness's, on the host. Every assertion
names the nginx version it is about.
"""

import contextlib
import os
import re
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "Tests", "integration"))

from harness import CLOSED_SESSION, NEW_SESSION, SESSION, Engine, free_port, request  # noqa: E402
from life import life_conf  # noqa: E402

PACKAGE = "libnginx-mod-http-sagemaker-sessions"
MODULE = "ngx_http_sagemaker_sessions_module.so"
SNIPPET = "mod-http-sagemaker-sessions.conf"
with open(os.path.join(ROOT, "VERSION")) as f:
    VERSION = f.read().strip()
BUILD = os.path.join(ROOT, "build")
ROOT_SH = os.path.join(ROOT, "Tests", "roots", "debian-root.sh")
DEB = os.path.join(BUILD, "trixie", f"{PACKAGE}_{VERSION}_amd64.deb")
SID = os.path.join(BUILD, "sid", "root")
SID_NGINX = os.path.join(SID, "usr", "sbin", "nginx")
SID_NDK = os.path.join(SID, "usr", "lib", "nginx", "modules", "ndk_http_module.so")
SID_LIBS = os.path.join(SID, "usr", "lib", "x86_64-linux-gnu")
SID_SO = os.path.join(BUILD, "nginx-1.30.6", MODULE)
WORK = os.path.join(BUILD, "trixie", "test")


def in_root(*args, check=True, timeout=300, binds=()):
    """args run inside the trixie root, the build directories bound in."""
    env = dict(os.environ, SMS_ROOT_BIND=" ".join([BUILD, *binds]))
    p = subprocess.run([ROOT_SH, "trixie", "run", *args], env=env,
                       capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, f"{args} in the trixie root: {p.stdout}{p.stderr}"
    return p


@pytest.fixture(scope="module", autouse=True)
def needs():
    if os.geteuid() != 0:
        pytest.skip("needs root, for the trixie root's namespaces")
    for path, how in ((DEB, "make deb DIST=trixie"), (SID_SO, "make trixie"), (SID_NGINX, "make trixie")):
        if not os.path.exists(path):
            pytest.fail(f"{path} is missing: run `{how}`", pytrace=False)
    os.makedirs(WORK, exist_ok=True)


def conf(prefix, port, engine_port, loads):
    return life_conf(loads, prefix, "/dev/shm/sagemaker_sessions", port, engine_port)


def prefix_for(name):
    d = os.path.join(WORK, name)
    subprocess.run(["rm", "-rf", d], check=True)
    os.makedirs(d)
    return d


@contextlib.contextmanager
def nginx_in_root(what, nginx, prefix, text, port, env=()):
    """nginx (a path inside the root) serving text until the block ends;
    killed with its namespace after. env: NAME=VALUE pairs it runs with,
    given to env(1), which the root's `run` execs."""
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.Popen([ROOT_SH, "trixie", "run", *[f"{k}={v}" for k, v in env], nginx,
                          "-p", prefix, "-c", path],
                         env=dict(os.environ, SMS_ROOT_BIND=BUILD),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(300):
            try:
                request(port, b"{}", method="GET", path="/")
                break
            except OSError:
                assert p.poll() is None, f"{what} did not start: {p.stdout.read()}{error_log(prefix)}"
                time.sleep(0.1)
        else:
            pytest.fail(f"{what} did not answer on {port}: {error_log(prefix)}")
        yield
    finally:
        p.terminate()
        p.wait(timeout=60)


def error_log(prefix):
    try:
        with open(os.path.join(prefix, "error.log")) as f:
            return f.read()
    except OSError:
        return ""


def walk_a_session_s_life(what, port, engine):
    r = request(port, b'{"requestType": "NEW_SESSION"}')
    assert r.status == 200, f"{what}: NEW_SESSION {r}"
    sid = (r.header(NEW_SESSION) or "").split(";")[0]
    assert re.fullmatch(r"[0-9a-f-]{36}", sid), f"{what}: {r}"
    assert engine.count() == 0, what

    r = request(port, b'{"prompt": "Hello"}', {SESSION: sid})
    assert r.status == 200, f"{what}: invocation {r}"
    assert r.json()["received"] == {"prompt": "Hello", "session_id": sid}, what

    r = request(port, b'{"requestType": "CLOSE"}', {SESSION: sid})
    assert r.status == 200, f"{what}: CLOSE {r}"
    assert r.header(CLOSED_SESSION) == sid, what
    r = request(port, b'{"prompt": "Hello"}', {SESSION: sid})
    assert r.status == 400, f"{what}: a closed session's request {r}"


def deb_field(name):
    return subprocess.run(["dpkg-deb", "-f", DEB, name], capture_output=True, text=True,
                          check=True).stdout.strip()


# --- Debian 13's package, next to Debian 13's nginx 1.26.3 -----------------------

def test_trixie_package_pins_trixie_s_nginx_abi_and_ndk():
    abi = in_root("sed", "-n", "s/^nginx:abi=//p",
                  "/usr/share/nginx/src/debian/libnginx-mod.abisubstvars").stdout.strip()
    assert abi.startswith("nginx-abi-1.26.3-"), abi
    deps = [d.strip().split()[0] for d in deb_field("Depends").split(",")]
    assert abi in deps and "libnginx-mod-http-ndk" in deps, deps
    assert deb_field("Version") == VERSION
    changelog = subprocess.run(f"dpkg-deb --fsys-tarfile {DEB} | tar -xO ./usr/share/doc/{PACKAGE}/changelog.gz | gzip -dc",
                               shell=True, capture_output=True, text=True, check=True).stdout
    assert changelog.startswith(f"{PACKAGE} ({VERSION}) trixie;"), changelog


def test_trixie_package_installs_loads_walks_and_purges_next_to_nginx_1_26_3():
    what = "Debian 13's package in nginx 1.26.3"
    in_root("dpkg", "--purge", PACKAGE, check=False)   # a run stopped half way
    in_root("dpkg", "-i", DEB)
    link = f"/etc/nginx/modules-enabled/60-{SNIPPET}"
    assert in_root("readlink", link).stdout.strip() == f"/usr/share/nginx/modules-available/{SNIPPET}", what
    assert "nginx version: nginx/1.26.3" in in_root("/usr/sbin/nginx", "-v").stderr

    engine = Engine()
    port = free_port()
    prefix = prefix_for("nginx-1.26.3")
    os.symlink("/usr/lib/nginx/modules", os.path.join(prefix, "modules"))   # the snippets say modules/...
    try:
        with nginx_in_root(what, "/usr/sbin/nginx", prefix,
                           conf(prefix, port, engine.port, "include /etc/nginx/modules-enabled/*.conf;"), port):
            walk_a_session_s_life(what, port, engine)
    finally:
        engine.stop()
    log = error_log(prefix)
    assert f"sagemaker sessions module {VERSION}" in log, f"{what}: {log}"
    assert not re.search(r"\[(emerg|alert|crit)\]", log), f"{what}: {log}"

    in_root("dpkg", "-r", PACKAGE)
    assert in_root("test", "-e", f"/usr/lib/nginx/modules/{MODULE}", check=False).returncode != 0, what
    assert "test is successful" in in_root("nginx", "-t").stderr, what
    in_root("dpkg", "-P", PACKAGE)
    left = in_root("sh", "-c", f"ls /etc/nginx/modules-enabled; ls /usr/share/nginx/modules-available; "
                               f"ls -d /usr/share/doc/{PACKAGE} 2>/dev/null; dpkg -s {PACKAGE} 2>&1 | head -1").stdout
    assert "sagemaker" not in left.replace(f"package '{PACKAGE}' is not installed", ""), left


# --- unstable's nginx 1.30.6 ---------------------------------------------------------

def test_nginx_1_30_6_walks_a_session_s_life_with_the_module_built_for_it():
    what = "nginx 1.30.6 (unstable's binary, module built against its nginx-dev)"
    env = [("LD_LIBRARY_PATH", SID_LIBS)]   # unstable's libpcre2, which its nginx was built with
    v = in_root("env", f"LD_LIBRARY_PATH={SID_LIBS}", SID_NGINX, "-v").stderr
    assert "nginx version: nginx/1.30.6" in v, v
    engine = Engine()
    port = free_port()
    prefix = prefix_for("nginx-1.30.6")
    loads = f"load_module {SID_NDK};\nload_module {SID_SO};"
    try:
        with nginx_in_root(what, SID_NGINX, prefix, conf(prefix, port, engine.port, loads), port, env=env):
            walk_a_session_s_life(what, port, engine)
    finally:
        engine.stop()
    log = error_log(prefix)
    assert f"sagemaker sessions module {VERSION}" in log, f"{what}: {log}"


def test_nginx_1_26_3_refuses_the_1_30_6_module_with_nginx_s_own_message():
    prefix = prefix_for("refuse")
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as f:
        f.write(f"load_module /usr/lib/nginx/modules/ndk_http_module.so;\nload_module {SID_SO};\nevents {{}}\n")
    p = in_root("/usr/sbin/nginx", "-t", "-p", prefix, "-c", path, check=False)
    assert p.returncode != 0, "nginx 1.26.3 loaded the 1.30.6 module"
    assert f'module "{SID_SO}" version 1030006 instead of 1026003' in p.stderr, p.stderr
