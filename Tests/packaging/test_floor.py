"""The oldest system a built module loads on: its glibc and libstdc++ floor.

A dynamic module is loaded by the container's own dynamic linker, so every
versioned symbol it needs must exist in that container's glibc and
libstdc++. Today the highest are GLIBC_2.35 (hypotf), GLIBCXX_3.4.29 and
CXXABI_1.3.11: Ubuntu 22.04 (glibc 2.35, GCC 12's libstdc++) and newer.
A new libc call, a newer build machine or a newer Swift toolchain can raise
that floor without any other test noticing; these tests make it a decision.

Jansson has one symbol version for every function (libjansson.so.4), so its
floor is the set of functions: those Ubuntu 22.04's Jansson 2.13.1 exports
(jansson-2.13.1.symbols). A module that called 2.14's json_object_getn or
json_object_iter_key_len did not load into Ubuntu 22.04's nginx with Ubuntu's
libjansson4 (`undefined symbol: json_object_iter_key_len`, seen in an Ubuntu
22.04 root); this test keeps it so.

They read each module built on this machine: `make build`'s, and those of
`make dist`, `make versions` and nginx 1.30.6's (`make trixie`) when they
exist. The modules built inside the trixie root are for Debian 13 only and
are not checked. Raising a floor here means changing README.md and
docs/containers.md with it.
"""

import glob
import os
import re
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODULE = "ngx_http_sagemaker_sessions_module"
BUILT = os.path.join(ROOT, "build", f"{MODULE}.so")
OTHERS = sorted(
    glob.glob(os.path.join(ROOT, "dist", f"{MODULE}-*.so"))
    + glob.glob(os.path.join(ROOT, "build", "versions", "*", "module", f"{MODULE}.so"))
    + glob.glob(os.path.join(ROOT, "build", "nginx-*", f"{MODULE}.so"))
)

# The highest symbol version allowed from each family (Ubuntu 22.04's floor).
FLOOR = {"GLIBC": (2, 35), "GLIBCXX": (3, 4, 29), "CXXABI": (1, 3, 11)}

# The shared libraries a module may need: glibc's, GCC's runtime (present in
# every image that has apt) and Jansson (libjansson4 in Debian and Ubuntu).
# Anything else, above all a Swift library, is a new install step for users.
ALLOWED_NEEDED = re.compile(
    r"^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|ld-linux[-\w.]*\.so\.\d|"
    r"libstdc\+\+\.so\.6|libgcc_s\.so\.1|libjansson\.so\.4)$")


# The Jansson functions Ubuntu 22.04 has (libjansson4 2.13.1).
with open(os.path.join(HERE, "jansson-2.13.1.symbols")) as f:
    JANSSON_2_13 = {line.strip() for line in f if line.strip() and not line.startswith("#")}


def modules():
    return [BUILT] + [p for p in OTHERS if os.path.realpath(p) != os.path.realpath(BUILT)]


def readelf(*args):
    return subprocess.run(["readelf", "-W", *args], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def needed_versions(path):
    """{library: {"GLIBC_2.35", ...}} from the .gnu.version_r section."""
    needs, current = {}, None
    for line in readelf("-V", path).splitlines():
        m = re.search(r"\bFile: (\S+)", line)
        if m:
            current = needs.setdefault(m.group(1), set())
            continue
        m = re.search(r"\bName: (\S+)", line)
        if m and current is not None:
            current.add(m.group(1))
    return needs


def highest(versions, family):
    """The highest FAMILY_x.y.z among versions, as a tuple, or None."""
    found = [tuple(int(n) for n in v[len(family) + 1:].split("."))
             for v in versions if re.fullmatch(rf"{family}_\d+(\.\d+)*", v)]
    return max(found) if found else None


def dotted(t):
    return ".".join(str(n) for n in t)


@pytest.fixture(scope="module", params=modules(), ids=lambda p: os.path.relpath(p, ROOT))
def module(request):
    if not os.path.exists(request.param):
        pytest.fail(f"{request.param} is missing: run `make build`", pytrace=False)
    return request.param


def test_symbol_versions_are_read(module):
    """The parse found glibc's and libstdc++'s needs: an empty parse would
    let every floor below pass without looking."""
    needs = needed_versions(module)
    assert highest(needs.get("libc.so.6", ()), "GLIBC"), needs
    assert highest(needs.get("libstdc++.so.6", ()), "GLIBCXX"), needs


@pytest.mark.parametrize("family", sorted(FLOOR))
def test_floor(module, family):
    versions = set().union(*needed_versions(module).values())
    top = highest(versions, family)
    assert top is not None, f"{module} needs no {family}_ symbol: the parse is wrong"
    assert top <= FLOOR[family], (
        f"{os.path.basename(module)} needs {family}_{dotted(top)}, above the floor "
        f"{family}_{dotted(FLOOR[family])} (Ubuntu 22.04): it would not load there. "
        f"Find the symbol with `objdump -T {module} | grep {family}_{dotted(top)}`.")


def test_needs_no_swift_library(module):
    """The Swift runtime is linked in statically: a container needs no Swift."""
    out = readelf("-d", module)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
    assert "libc.so.6" in needed, out
    assert not [n for n in needed if "swift" in n.lower()], needed
    assert not re.search(r"\((RPATH|RUNPATH)\)", out), f"{module} carries a search path: {out}"
    extra = [n for n in needed if not ALLOWED_NEEDED.match(n)]
    assert not extra, f"{module} needs {extra}: a new package for every container (docs/containers.md)"


def needed_functions(path, library):
    """The undefined functions path takes from library (objdump -T)."""
    out = subprocess.run(["objdump", "-T", path], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return {line.split()[-1] for line in out.splitlines()
            if "*UND*" in line and f"({library})" in line.replace("  ", " ")}


def test_jansson_functions_are_in_ubuntu_22_04_s_jansson(module):
    needed = needed_functions(module, "libjansson.so.4")
    assert "json_loadb" in needed, f"{module}: no Jansson function found: the parse is wrong"
    missing = sorted(needed - JANSSON_2_13)
    assert not missing, (f"{os.path.basename(module)} needs {missing}, which Jansson 2.13.1 "
                         f"(Ubuntu 22.04) lacks: it would not load there")
