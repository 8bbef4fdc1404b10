"""The Debian package that `make deb` builds: its fields, its files, lintian,
the module loaded from the package's own files through the package's own
snippet, and a real install, removal and purge in a private root.

Nothing here installs into the machine's /usr or /etc: the package is
unpacked with `dpkg-deb -x` into a temp directory, and the install test runs
dpkg in a mount namespace of its own, on an overlay of the root file system
whose writes go to a tmpfs that disappears with the namespace.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "Tests", "integration"))

from harness import (CLOSED_SESSION, NEW_SESSION, SESSION, Engine, Nginx,  # noqa: E402
                     free_port, remove_workdirs, workdir)
from life import life_conf  # noqa: E402

PACKAGE = "libnginx-mod-http-sagemaker-sessions"
MODULE = "ngx_http_sagemaker_sessions_module.so"
SNIPPET = "mod-http-sagemaker-sessions.conf"
with open(os.path.join(ROOT, "VERSION")) as f:
    VERSION = f.read().strip()
DEB = os.path.join(ROOT, "build", f"{PACKAGE}_{VERSION}_amd64.deb")
NDK_SNIPPET = "/usr/share/nginx/modules-available/mod-http-ndk.conf"


def run(*args, **kw):
    kw.setdefault("check", True)
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module", autouse=True)
def deb():
    if not os.path.exists(DEB):
        pytest.fail(f"{DEB} is missing: run `make deb` (or `make packaging`)", pytrace=False)
    yield DEB
    remove_workdirs()


@pytest.fixture(scope="module")
def unpacked():
    """The package's files under a temp directory, as dpkg-deb -x lays them."""
    d = workdir()
    run("dpkg-deb", "-x", DEB, d)
    return d


@pytest.fixture(scope="module")
def control():
    d = workdir()
    run("dpkg-deb", "-e", DEB, d)
    return d


def field(name):
    return run("dpkg-deb", "-f", DEB, name).stdout.strip()


def depends():
    """Depends as {package name: version constraint or ''}."""
    out = {}
    for item in field("Depends").split(","):
        m = re.match(r"\s*([^\s(]+)\s*(?:\((.*)\))?", item)
        out[m.group(1)] = m.group(2) or ""
    return out


def nginx_abi():
    with open("/usr/share/nginx/src/debian/libnginx-mod.abisubstvars") as f:
        return re.search(r"^nginx:abi=(\S+)", f.read(), re.M).group(1)


def link_names(postinst):
    """The modules-enabled links a postinst makes, {snippet: link name}."""
    with open(postinst) as f:
        pairs = re.search(r"for confpair in ([^;]*);", f.read()).group(1).split()
    return dict(p.split(":") for p in pairs)


def ndk_link_name():
    """The name under which Debian's NDK package links its snippet."""
    return link_names("/var/lib/dpkg/info/libnginx-mod-http-ndk.postinst")["mod-http-ndk.conf"]


# --- fields and files ----------------------------------------------------------

def test_fields_name_the_package_its_version_and_what_it_needs():
    assert field("Package") == PACKAGE
    assert field("Version") == VERSION   # from VERSION, the one place it is written
    assert field("Architecture") == "amd64"
    assert field("Section") == "httpd"
    deps = depends()
    assert nginx_abi() in deps            # an nginx that cannot load the module never gets it
    assert "libjansson4" in deps
    assert "libnginx-mod-http-ndk" in deps
    assert not any("swift" in d for d in deps)


def test_files_are_the_module_its_snippet_and_docs_and_no_swift():
    listing = run("dpkg-deb", "-c", DEB).stdout.splitlines()
    files = {line.split()[-1].lstrip(".") for line in listing if not line.startswith("d")}
    doc = f"/usr/share/doc/{PACKAGE}"
    assert f"/usr/lib/nginx/modules/{MODULE}" in files
    assert f"/usr/share/nginx/modules-available/{SNIPPET}" in files
    assert f"{doc}/copyright" in files and f"{doc}/changelog.gz" in files
    assert f"{doc}/README.md.gz" in files
    assert not [f for f in files if "swift" in f.lower()]
    assert not [f for f in files if f.startswith("/etc/")]   # the link is made by postinst
    for prefix in ("/usr/lib/nginx/modules/", "/usr/share/nginx/modules-available/",
                   f"{doc}/", "/usr/share/lintian/overrides/"):
        files = {f for f in files if not f.startswith(prefix)}
    assert files == set()
    so_line = next(l for l in listing if l.endswith(MODULE))
    assert so_line.startswith("-rw-r--r-- root/root")


def test_snippet_loads_the_module_from_nginx_s_modules_directory(unpacked):
    with open(os.path.join(unpacked, "usr/share/nginx/modules-available", SNIPPET)) as f:
        assert f.read() == f"load_module modules/{MODULE};\n"


def test_module_needs_no_swift_library_at_run_time(unpacked):
    so = os.path.join(unpacked, "usr/lib/nginx/modules", MODULE)
    needed = re.findall(r"\(NEEDED\).*\[(.*)\]", run("readelf", "-d", so).stdout)
    assert "libjansson.so.4" in needed
    assert not [n for n in needed if "swift" in n.lower()]
    assert "swift" not in run("ldd", so).stdout.lower()


def test_maintainer_scripts_link_the_snippet_after_ndk_s(control):
    for script in ("postinst", "prerm", "postrm"):
        assert os.access(os.path.join(control, script), os.X_OK)
    links = link_names(os.path.join(control, "postinst"))
    assert links == {SNIPPET: f"60-{SNIPPET}"}
    assert ndk_link_name() < links[SNIPPET]   # modules-enabled/*.conf loads in name order
    with open(os.path.join(control, "postinst")) as f:
        assert "dpkg-trigger --no-await nginx-reload" in f.read()


def test_lintian_reports_no_error():
    p = run("lintian", "--fail-on", "error", DEB, check=False)
    errors = [l for l in p.stdout.splitlines() if l.startswith("E:")]
    assert p.returncode == 0 and not errors, p.stdout + p.stderr


# --- the packaged module in a real nginx ---------------------------------------

def test_a_session_s_life_through_the_package_s_own_snippet(unpacked):
    """nginx's prefix is a temp directory whose modules/ holds NDK's module
    and the unpacked one, as Debian's /usr/share/nginx/modules does; the
    configuration includes a modules-enabled made of the links the package's
    postinst names, to the NDK snippet and to the unpacked snippet."""
    prefix = workdir()
    os.mkdir(os.path.join(prefix, "modules"))
    os.symlink("/usr/lib/nginx/modules/ndk_http_module.so",
               os.path.join(prefix, "modules", "ndk_http_module.so"))
    os.symlink(os.path.join(unpacked, "usr/lib/nginx/modules", MODULE),
               os.path.join(prefix, "modules", MODULE))
    enabled = os.path.join(prefix, "modules-enabled")
    os.mkdir(enabled)
    os.symlink(NDK_SNIPPET, os.path.join(enabled, ndk_link_name()))
    os.symlink(os.path.join(unpacked, "usr/share/nginx/modules-available", SNIPPET),
               os.path.join(enabled, f"60-{SNIPPET}"))

    engine = Engine()
    port = free_port()
    conf = life_conf(f"include {enabled}/*.conf;", prefix, f"{prefix}/sessions", port, engine.port)
    ngx = Nginx.from_text(conf, port, prefix)
    try:
        ngx.start()
        maps = open(f"/proc/{next(iter(ngx.worker_pids()))}/maps").read()
        assert os.path.realpath(os.path.join(prefix, "modules", MODULE)) in maps
        assert f"sagemaker sessions module {VERSION}" in ngx.error_log

        r = ngx.request(b'{"requestType": "NEW_SESSION"}')
        assert r.status == 200, r
        sid = r.header(NEW_SESSION).split(";")[0]
        assert re.fullmatch(r"[0-9a-f-]{36}", sid)
        assert engine.count() == 0

        r = ngx.request(b'{"prompt": "Hello"}', {SESSION: sid})
        assert r.status == 200, r
        assert r.json()["received"] == {"prompt": "Hello", "session_id": sid}
        assert engine.last["headers"][SESSION.lower()] == sid

        r = ngx.request(b'{"requestType": "CLOSE"}', {SESSION: sid})
        assert r.status == 200, r
        assert r.header(CLOSED_SESSION) == sid
        assert ngx.request(b'{"prompt": "Hello"}', {SESSION: sid}).status == 400
    finally:
        ngx.stop()
        engine.stop()
    assert not ngx.crashes()


# --- install, remove, purge in a private root ----------------------------------

PRIVATE_ROOT = r"""
set -eu
t="$PRIVATE"
mount -t tmpfs tmpfs "$t"
mkdir "$t/upper" "$t/work" "$t/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$t/upper,workdir=$t/work" "$t/root"
r="$t/root"
mount -t proc proc "$r/proc"
mount --bind /dev "$r/dev"
mount -t tmpfs tmpfs "$r/dev/shm"
mount -t tmpfs tmpfs "$r/run"
mount -t tmpfs tmpfs "$r/tmp"
cp "$DEB" "$r/tmp/"
ip link set lo up
chroot "$r" /bin/bash -eu -c "$INSIDE"
echo "== upper"
cd "$t/upper" && find . -mindepth 1 \( -type f -o -type l \) -print | sort
"""

INSIDE = r"""
links() { find /etc/nginx/modules-enabled -mindepth 1 -printf '%f -> %l\n' | sort; }
echo "== before"; links
dpkg -i /tmp/*.deb > /tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; exit 1; }
echo "== installed"; links
echo "== nginx -t"; nginx -t 2>&1
nginx
for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1/ && break; sleep 0.1; done
echo "== answer"; curl -s -o /dev/null -w '%{http_code}\n' http://127.0.0.1/
echo "== worker maps"; for w in $(pgrep -f 'nginx: worker'); do grep -h -o '/[^ ]*\.so' /proc/$w/maps; done | grep nginx/modules | sort -u
nginx -s quit
for i in $(seq 50); do pgrep -x nginx > /dev/null || break; sleep 0.1; done
echo "== shm"; ls -A /dev/shm
echo "== error.log"; cat /var/log/nginx/error.log
dpkg -r libnginx-mod-http-sagemaker-sessions > /tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; exit 1; }
echo "== removed"; links
echo "== removed modules"; ls /usr/lib/nginx/modules
echo "== removed nginx -t"; nginx -t 2>&1
dpkg -P libnginx-mod-http-sagemaker-sessions > /tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; exit 1; }
echo "== purged"; links; dpkg -s libnginx-mod-http-sagemaker-sessions 2>&1 | head -1 || true
rm -f /tmp/*.deb /tmp/dpkg.log
"""


def sections(text):
    out, name = {}, None
    for line in text.splitlines():
        if line.startswith("== "):
            name = line[3:]
            out[name] = []
        elif name is not None:
            out[name].append(line)
    return out


def machine_state():
    return (sorted(os.listdir("/etc/nginx/modules-enabled")),
            run("dpkg-query", "-W", "-f=${Status}", PACKAGE, check=False).stdout,
            os.path.exists(f"/usr/lib/nginx/modules/{MODULE}"))


def test_install_remove_purge_next_to_stock_nginx_in_a_private_root():
    if os.geteuid() != 0:
        pytest.skip("needs root, for a mount namespace")
    before = machine_state()
    p = subprocess.run(
        ["unshare", "--mount", "--net", "--pid", "--fork", "--propagation", "private",
         "bash", "-c", PRIVATE_ROOT],
        env=dict(os.environ, DEB=DEB, INSIDE=INSIDE, PRIVATE=workdir()),
        capture_output=True, text=True, timeout=300)
    print(p.stdout)   # shown when the test fails
    assert p.returncode == 0, p.stdout + p.stderr
    s = sections(p.stdout)
    ndk = f"{ndk_link_name()} -> {NDK_SNIPPET}"
    ours = f"60-{SNIPPET} -> /usr/share/nginx/modules-available/{SNIPPET}"

    # installed: the link is made, and stock nginx loads the module and
    # answers as before, with nothing made in /dev/shm or /tmp, no error
    assert ndk in s["before"] and not [l for l in s["before"] if "sagemaker" in l]
    assert s["installed"] == sorted(s["before"] + [ours])
    assert any("test is successful" in l for l in s["nginx -t"]), s["nginx -t"]
    assert s["answer"] == ["200"]
    assert f"/usr/lib/nginx/modules/{MODULE}" in s["worker maps"], s["worker maps"]
    assert s["shm"] == [], s["shm"]
    assert not [l for l in s["error.log"] if re.search(r"\[(emerg|alert|crit|error)\]", l)]

    # removed: the .conf link is out of modules-enabled (dpkg's postrm keeps
    # it as .removed until purge, to respect an admin's choice on reinstall)
    assert s["removed"] == sorted(s["before"] + [ours.replace(" -> ", ".removed -> ")])
    assert MODULE not in s["removed modules"]
    assert any("test is successful" in l for l in s["removed nginx -t"])

    # purged: nothing of the package is left; dpkg's own records aside, the
    # overlay's upper layer holds no file the package made
    assert s["purged"][:-1] == s["before"], s["purged"]
    upper = [l for l in s["upper"]
             if not l.startswith(("./var/lib/dpkg/", "./var/log/", "./var/cache/debconf/",
                                  "./var/lib/nginx/", "./root/"))]
    assert upper == [], upper

    assert machine_state() == before   # the machine's own nginx is untouched


# --- make install ----------------------------------------------------------------

def test_make_install_lays_the_package_s_files_under_destdir(unpacked):
    """The same module, snippet and modules-enabled link as the package and
    its postinst, under DESTDIR; the snippet names the module by its
    absolute path, so that it works with any nginx prefix."""
    dest = workdir()
    run("make", "-s", "-C", ROOT, "install", f"DESTDIR={dest}")
    laid = sorted(os.path.relpath(os.path.join(d, f), dest)
                  for d, dirs, files in os.walk(dest) for f in files)
    assert laid == ["etc/nginx/modules-enabled/60-" + SNIPPET,
                    f"usr/lib/nginx/modules/{MODULE}",
                    f"usr/share/nginx/modules-available/{SNIPPET}"]
    assert os.readlink(os.path.join(dest, "etc/nginx/modules-enabled/60-" + SNIPPET)) \
        == f"/usr/share/nginx/modules-available/{SNIPPET}"
    with open(os.path.join(dest, "usr/share/nginx/modules-available", SNIPPET)) as f:
        assert f.read() == f"load_module /usr/lib/nginx/modules/{MODULE};\n"
    run("make", "-s", "-C", ROOT, "uninstall", f"DESTDIR={dest}")
    assert [f for d, dirs, files in os.walk(dest) for f in files] == []
