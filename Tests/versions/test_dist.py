"""The files of `make dist`: each loads into an nginx of its own version
(`nginx -t` with load_module) and is refused by every other, with nginx's
own message (`module "…" version 1018000 instead of 1022001`).

The nginx of each version: 1.18.0 and 1.26.3 built from their source
(Tests/versions/nginx-build.sh), 1.22.1 the machine's, 1.30.6 unstable's
binary in the trixie root (Tests/roots/debian-root.sh; it needs OpenSSL 3.5).
SMS_DIST names another directory than dist/.
"""

import glob
import os
import platform
import re
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(ROOT, "build")
DIST = os.environ.get("SMS_DIST") or os.path.join(ROOT, "dist")
ROOT_SH = os.path.join(ROOT, "Tests", "roots", "debian-root.sh")
SID = os.path.join(BUILD, "sid", "root")
with open(os.path.join(ROOT, "VERSION")) as f:
    MODVER = f.read().strip()
ARCH = platform.machine()

# version -> (nginx binary, whether it runs in the trixie root)
NGINX = {
    "1.18.0": (os.path.join(BUILD, "versions", "1.18.0", "build", "objs", "nginx"), False),
    "1.22.1": ("/usr/sbin/nginx", False),
    "1.26.3": (os.path.join(BUILD, "versions", "1.26.3", "build", "objs", "nginx"), False),
    "1.30.6": (os.path.join(SID, "usr", "sbin", "nginx"), True),
}


def number(version):
    """1.18.0 -> 1018000, nginx's nginx_version"""
    major, minor, patch = (int(x) for x in version.split("."))
    return major * 1000000 + minor * 1000 + patch


def dist_file(version):
    return os.path.join(DIST, f"ngx_http_sagemaker_sessions_module-{MODVER}-nginx-{version}-{ARCH}.so")


def nginx_t(version, so):
    """`nginx -t` of nginx `version` on a configuration loading `so`: (returncode, output)."""
    binary, in_root = NGINX[version]
    prefix = os.path.join(BUILD, "dist-test", version + "-" + os.path.basename(so))
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)   # the error log before the conf is read
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"load_module {so};\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n"
                "events { worker_connections 16; }\n")
    cmd = [binary, "-t", "-p", prefix, "-c", conf]
    env = None
    if in_root:
        env = dict(os.environ, SMS_ROOT_BIND=f"{BUILD} {DIST}")
        cmd = [ROOT_SH, "trixie", "run", "env",
               f"LD_LIBRARY_PATH={SID}/usr/lib/x86_64-linux-gnu", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    return p.returncode, p.stdout + p.stderr


@pytest.fixture(scope="module", autouse=True)
def needs():
    for v, (binary, _) in NGINX.items():
        if not os.path.exists(binary):
            pytest.fail(f"nginx {v} ({binary}) is missing: run `make dist`", pytrace=False)


def test_dist_holds_one_file_per_version_and_their_sums():
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(DIST, "*.so")))
    assert names == sorted(os.path.basename(dist_file(v)) for v in NGINX), names
    with open(os.path.join(DIST, "SHA256SUMS")) as f:
        sums = dict(reversed(l.split()) for l in f if l.strip())
    assert sorted(sums) == names, sums
    p = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=DIST, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("version", sorted(NGINX))
def test_file_loads_into_its_own_nginx(version):
    code, out = nginx_t(version, dist_file(version))
    assert code == 0 and "test is successful" in out, f"nginx {version}: {out}"


@pytest.mark.parametrize("version,other", [(v, o) for v in sorted(NGINX) for o in sorted(NGINX) if o != v])
def test_file_is_refused_by_another_nginx_with_its_version_message(version, other):
    so = dist_file(version)
    code, out = nginx_t(other, so)
    assert code != 0, f"nginx {other} loaded the file built for {version}"
    message = f'module "{so}" version {number(version)} instead of {number(other)}'
    assert message in out and "[emerg]" in out, f"nginx {other}: {out}"
