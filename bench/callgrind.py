"""`make callgrind`: the module's cost per request in instructions, which a
busy machine does not change (wall-clock ratios swing by tens of percent on a
shared one).

The front nginx runs as one process (master_process off) under valgrind's
callgrind; three replicas (a second nginx) answer at once. For each path, wrk
sends the same requests to the module and to plain round robin over the same
replicas (same URI, on a second port of the same worker), counters zeroed
before and dumped after each run; a row is the median over REPEATS of the
module's instructions per request minus plain's.

`CALLGRIND_ONLY=sessions`: the three session paths alone (no status
front, no bodies), as when a change to the session lookup is measured;
`CALLGRIND_KEEP=dir` keeps the dumps, whose `sms_decide` inclusive count
per call (`callgrind_annotate --inclusive=yes --tree=caller`) is the
core's own cost, without wrk's batch to batch spread.

Paths: a valid built-in session without affinity (`upstream replicas_rr`), a
built-in session and an engine-owned session with `sagemaker_session_affinity`,
and the valid session again with a `sagemaker_sessions_status` location (its
shared counters attached) against the same without one.

Bodies (issue 26): an ordinary invocation's JSON body, 55 bytes and 64 KiB,
through plain proxy_pass, the module without a session header, with a valid
session, and with `session_id_path=session_id` injection; each row in
instructions a request, and over plain proxy_pass of the same body.
"""

import glob
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench as b  # noqa: E402

CONNECTIONS = 8
SECONDS = 3
REPEATS = int(os.environ.get("CALLGRIND_REPEATS", "3"))
# CALLGRIND_KEEP=dir: each batch's dump kept there (for callgrind_annotate)
KEEP = os.environ.get("CALLGRIND_KEEP")
# an ordinary invocation's body, 55 bytes, and one of 64 KiB
SMALL_BODY = '{"prompt":"hello, how are you today?","max_tokens":128}'
LARGE_BODY = '{"prompt":"' + "x" * (65536 - len('{"prompt":"","max_tokens":128}')) + '","max_tokens":128}'


def front(work, sessions, ports, port, plain_port, status):
    text = b.affinity_conf(work, sessions, ports, port, plain_port)
    extra = [b.proxy_location("/valid", "sagemaker_session_manager;").replace("http://engine", "http://replicas_rr"),
             b.proxy_location("/inject", "sagemaker_session_manager session_id_path=session_id;")
             .replace("http://engine", "http://replicas_rr")]
    if status:
        extra.append("        location = /status { sagemaker_sessions_status; }")
    text = text.replace("        location = /open {", "\n".join(extra) + "\n        location = /open {", 1)
    text = text.replace(f"listen 127.0.0.1:{plain_port};",
                        f"listen 127.0.0.1:{plain_port}; location = /valid {{ proxy_http_version 1.1; "
                        'proxy_set_header Connection ""; proxy_pass http://replicas_rr; } '
                        'location = /inject { proxy_http_version 1.1; '
                        'proxy_set_header Connection ""; proxy_pass http://replicas_rr; }', 1)
    return text.replace("daemon off;", "daemon off;\nmaster_process off;", 1)


def run(status, bodies=False, user=None):
    """{path: [module minus plain, instructions per request]} for one front;
    with `bodies`, {row: [instructions per request]} for the body rows; with
    `user`, the front runs as that user (bench/uncached.py)."""
    work = tempfile.mkdtemp(prefix="sms-callgrind-")
    os.chmod(work, 0o755)
    shm = tempfile.mkdtemp(prefix="sms-callgrind-", dir="/dev/shm")
    os.chmod(shm, 0o755)
    out = os.path.join(work, "callgrind")
    os.makedirs(out)
    sessions = os.path.join(shm, "sessions")
    os.makedirs(sessions)
    ports = [b.free_port() for _ in range(3)]
    port, plain_port = b.free_port(), b.free_port()
    try:
        stub = os.path.join(work, "replicas.conf")
        with open(stub, "w") as f:
            f.write(b.replicas_stub_conf(work, ports))
        b.start(["nginx", "-p", work, "-c", stub, "-e", os.path.join(work, "replicas.log")], ports[0], cpu=None)
        conf = os.path.join(work, "front.conf")
        with open(conf, "w") as f:
            f.write(front(work, sessions, ports, port, plain_port, status))
        prefix = []
        if user:
            for d in (work, shm):
                subprocess.run(["chown", "-R", f"{user}:{user}", d], check=True)
            prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
        proc = b.start(prefix + ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p", "--dump-instr=no",
                        "nginx", "-p", work, "-c", conf, "-e", os.path.join(work, "front.log")], port, cpu=None)
        builtin = b.new_session(port, "/invocations")
        engine = b.new_session(port, "/generate")
        scripts = {sid: b.script(work, f"s{i}", b.POST_LUA % (b.BODY, f'wrk.headers["{b.SESSION}"] = "{sid}"'))
                   for i, sid in enumerate((builtin, engine))}
        paths = {"/valid": builtin, "/invocations": builtin, "/generate": engine}

        def instructions(url, lua):
            subprocess.run(prefix + ["callgrind_control", "--zero", str(proc.pid)], capture_output=True)
            text = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "-s", lua, url],
                                  capture_output=True, text=True).stdout
            if "Non-2xx" in text:
                sys.exit(f"{url}: answers other than 2xx\n{text}")
            requests = int(re.search(r"(\d+) requests in", text).group(1))
            time.sleep(0.3)
            subprocess.run(prefix + ["callgrind_control", "--dump", str(proc.pid)], capture_output=True)
            time.sleep(0.5)
            dump = max(glob.glob(out + "/cg.*"), key=os.path.getmtime)
            with open(dump) as f:
                total = int(re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M).group(1))
            if KEEP:
                os.makedirs(KEEP, exist_ok=True)
                shutil.move(dump, os.path.join(KEEP, f"cg.{url.rsplit('/', 1)[1]}.{os.path.basename(lua)}.{len(os.listdir(KEEP))}"))
            else:
                os.remove(dump)
            return total / requests

        if bodies:
            return body_rows(work, port, plain_port, builtin, instructions)

        for path, sid in paths.items():   # warm-up: pages touched, tables made
            for p in (port, plain_port):
                subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", "-d1s", "-s", scripts[sid],
                                f"http://127.0.0.1:{p}{path}"], capture_output=True)
        got = {}
        for _ in range(REPEATS):
            for path, sid in paths.items():
                plain = instructions(f"http://127.0.0.1:{plain_port}{path}", scripts[sid])
                module = instructions(f"http://127.0.0.1:{port}{path}", scripts[sid])
                got.setdefault(path, []).append(module - plain)
        return got
    finally:
        b.stop_all()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)


# (row, path, body, with the session header); the module's rows on `port`,
# plain proxy_pass's on `plain_port`
BODY_ROWS = [
    ("plain proxy_pass, 55-byte body", "/valid", SMALL_BODY, False),
    ("no session header, same body", "/valid", SMALL_BODY, False),
    ("valid session, same body", "/valid", SMALL_BODY, True),
    ("valid session, session_id_path=session_id injection", "/inject", SMALL_BODY, True),
    ("plain proxy_pass, 64 KiB body", "/inject", LARGE_BODY, False),
    ("injection, 64 KiB body", "/inject", LARGE_BODY, True),
]
# issue 26's goals: at most this over plain proxy_pass of the same body
# (instructions a request; for the 64 KiB injection, a body byte)
GOALS = {
    "no session header, same body": (1200, "+1,200"),
    "valid session, same body": (1200, "+1,200"),
    "valid session, session_id_path=session_id injection": (1500, "+1,500"),
    "injection, 64 KiB body": (1.5, "1.5 a body byte"),
}
# plain proxy_pass of the very requests of the session rows, the session
# header included: what nginx itself spends on that header
TWIN_ROWS = [
    ("plain proxy_pass, 55-byte body, session header", "/valid", SMALL_BODY, True),
    ("plain proxy_pass, 64 KiB body, session header", "/inject", LARGE_BODY, True),
]


def body_rows(work, port, plain_port, sid, instructions):
    """{row: [instructions per request, one per repeat]}."""
    rows = BODY_ROWS + TWIN_ROWS
    scripts = [b.script(work, f"body{i}", b.POST_LUA % (body, f'wrk.headers["{b.SESSION}"] = "{sid}"' if header else ""))
               for i, (_, _, body, header) in enumerate(rows)]
    urls = [f"http://127.0.0.1:{plain_port if name.startswith('plain') else port}{path}"
            for name, path, _, _ in rows]
    for url, lua in zip(urls, scripts):   # warm-up
        subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", "-d1s", "-s", lua, url], capture_output=True)
    got = {}
    for _ in range(REPEATS):
        for (name, _, _, _), url, lua in zip(rows, urls, scripts):
            got.setdefault(name, []).append(instructions(url, lua))
    return got


def print_bodies(got):
    """The six rows: instructions a request, over plain proxy_pass of the
    same body (the issue's measure), and over plain proxy_pass of the same
    request, the session header included."""
    median = statistics.median
    rows = {name: median(values) for name, values in got.items()}
    print(f"JSON bodies, Content-Type: application/json, instructions a request (callgrind, median of {REPEATS});")
    print("  over plain proxy_pass of the same body, and of the same request (session header too):")
    for name, _, body, header in BODY_ROWS:
        value = rows[name]
        small = len(body) == len(SMALL_BODY)
        line = f"  {name:<52} {value:>9,.0f}"
        if not name.startswith("plain"):
            over = value - rows[BODY_ROWS[0 if small else 4][0]]
            line += f" {over:>+9,.0f}"
            if header:
                line += f" {value - rows[TWIN_ROWS[0 if small else 1][0]]:>+9,.0f}"
            if not small:
                line += f"  {over / len(body):.2f} a body byte"
            if name in GOALS:
                limit, text = GOALS[name]
                met = (over / len(body) if not small else over) <= limit
                line += f"  goal {text}: {'met' if met else 'NOT met'}"
        print(f"{line}   ({', '.join(f'{v:,.0f}' for v in got[name])})")
    for name, _, _, _ in TWIN_ROWS:
        print(f"  {name:<52} {rows[name]:>9,.0f}   ({', '.join(f'{v:,.0f}' for v in got[name])})")


def main():
    if not shutil.which("valgrind") or not shutil.which("wrk"):
        sys.exit("callgrind.py needs valgrind and wrk (make callgrind installs them)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if os.environ.get("CALLGRIND_ONLY") == "bodies":
        print_bodies(run(status=False, bodies=True))
        return
    sessions_only = os.environ.get("CALLGRIND_ONLY") == "sessions"
    plain = run(status=False)
    counted = None if sessions_only else run(status=True)
    median = statistics.median
    runs = [
        ("valid built-in session, no affinity", plain["/valid"]),
        ("built-in session with affinity", plain["/invocations"]),
        ("engine-owned session with affinity", plain["/generate"]),
    ]
    if counted:
        runs.append(("valid session, with a status location (counters)", counted["/valid"]))
    rows = [(name, median(values)) for name, values in runs]
    print(f"instructions a request over plain round robin of the same request (callgrind, median of {REPEATS}):")
    for (name, value), (_, values) in zip(rows, runs):
        print(f"  {name:<52} {value:>7,.0f}   ({', '.join(f'{v:,.0f}' for v in values)})")
    print(f"  {'affinity, built-in, over the module without it':<52} {rows[1][1] - rows[0][1]:>+7,.0f}")
    if sessions_only:   # CALLGRIND_ONLY=sessions: the three session paths, nothing else
        return
    print(f"  {'the status counters, over the module without them':<52} {rows[3][1] - rows[0][1]:>+7,.0f}")
    print_bodies(run(status=False, bodies=True))


if __name__ == "__main__":
    main()
