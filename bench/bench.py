"""`make bench`: the module's cost per request, side by side with plain nginx
and with the Python library it replaces, on loopback.

Every figure comes from wrk runs made back to back; ratios are taken against
the plain proxy_pass run made right before, since this machine's absolute
speed drifts. Every process started here is stopped by pid at the end.
"""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "Tests", "integration"))

from harness import engine_stub_conf, front_conf, indented, proxy_location  # noqa: E402

MODULE = os.environ.get("BENCH_MODULE") or os.path.join(ROOT, "build", "ngx_http_sagemaker_sessions_module.so")
DURATION = int(os.environ.get("BENCH_SECONDS", "2"))
# each module figure: the median of PAIRS (plain proxy_pass, module) runs made
# back to back, so that drifts in the machine's speed cancel out
PAIRS = int(os.environ.get("BENCH_PAIRS", "2"))
CONNECTIONS = 32
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
# The servers (nginx in front, the engine, the Python library) share CPU 0 and
# wrk has CPU 1: ratios then measure CPU per request, steady from run to run.
PIN = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None and os.environ.get("BENCH_PIN", "1") == "1"


def pinned(args, cpu):
    """cpu None: not pinned."""
    return ["taskset", "-c", str(cpu)] + args if PIN and cpu is not None else args
BODY = '{"prompt":"hello","max_tokens":16}'
SESSION = "X-Amzn-SageMaker-Session-Id"

started = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start(args, port, env=None, cpu=0):
    proc = subprocess.Popen(pinned(args, cpu), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started.append(proc)
    wait_port(port, proc)
    return proc


def stop_all():
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


# what the engine stub answers, and the front's /ceiling (nginx answering by itself)
ENGINE_BODY = '{"generated_text":"hello"}'

# the front's locations: the ceiling, and the module without and with body
# injection
LOCATIONS = "\n".join([
    indented(["location = /ceiling {",
              "    default_type application/json;",
              f"    return 200 '{ENGINE_BODY}';",
              "}"], 8),
    proxy_location("/invocations", "sagemaker_session_manager;"),
    proxy_location("/inject", "sagemaker_session_manager session_id_path=session_id;"),
])


def plain_server(port):
    """Plain proxy_pass (the reference), in the same worker as the module, on
    a port of its own: its requests are byte for byte the module's, URI
    included, so that nginx's own parsing and location lookup cost the
    same on both sides."""
    return " ".join(["server {", f"listen 127.0.0.1:{port};",
                     proxy_location("/invocations").replace("\n", " "),
                     proxy_location("/inject").replace("\n", " "), "}"])

PYTHON_APP = """
from fastapi import FastAPI, Request
from model_hosting_container_standards.sagemaker import stateful_session_manager

app = FastAPI()


@app.post("/invocations")
@stateful_session_manager()
async def invocations(request: Request):
    return {"generated_text": "hello"}
"""

# wrk scripts: a body, an optional session header, or NEW_SESSION/CLOSE cycles
POST_LUA = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
%s
"""

CYCLE_LUA = """
local ids = {}
request = function()
  local id = table.remove(ids)
  if id then
    return wrk.format("POST", "/invocations",
      {["Content-Type"] = "application/json", ["X-Amzn-SageMaker-Session-Id"] = id},
      '{"requestType":"CLOSE"}')
  end
  return wrk.format("POST", "/invocations", {["Content-Type"] = "application/json"},
    '{"requestType":"NEW_SESSION"}')
end
response = function(status, headers, body)
  local h = headers["X-Amzn-SageMaker-New-Session-Id"] or headers["x-amzn-sagemaker-new-session-id"]
  if h then table.insert(ids, (string.match(h, "^([^;]+)"))) end
end
"""


# every script reports its latencies to the microsecond: wrk's own table
# rounds them to 10 µs from 1 ms on
DONE_LUA = """
done = function(summary, latency, requests)
  io.write(string.format("latency-us p50=%d p99=%d\\n", latency:percentile(50), latency:percentile(99)))
end
"""


def script(dir, name, text):
    path = os.path.join(dir, name + ".lua")
    with open(path, "w") as f:
        f.write(text + DONE_LUA)
    return path


def wrk(url, lua, seconds=DURATION, connections=CONNECTIONS, cpu=1):
    out = subprocess.run(pinned(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", lua, url], cpu),
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = re.search(r"^latency-us p50=(\d+) p99=(\d+)$", out, re.M)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": float(lat.group(1)) if lat else None, "p99": float(lat.group(2)) if lat else None,
            "non2xx": int(errors.group(1)) if errors else 0}


def populate(path, count, expires_at):
    """Live (or expired) sessions in the Python library's format, owned by
    nginx's worker user as the sessions it makes are."""
    os.makedirs(path, exist_ok=True)
    ts = json.dumps(expires_at)
    uid, gid = (pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid) if os.geteuid() == 0 else (-1, -1)
    for _ in range(count):
        d = os.path.join(path, str(uuid.uuid4()))
        os.mkdir(d)
        with open(os.path.join(d, ".expiration_ts"), "w") as f:
            f.write(ts)
        if uid >= 0:
            os.chown(d, uid, gid)
            os.chown(os.path.join(d, ".expiration_ts"), uid, gid)


def populate_one(path, sid, expires_at):
    """One session of the library's format, named `sid`."""
    d = os.path.join(path, sid)
    os.mkdir(d)
    with open(os.path.join(d, ".expiration_ts"), "w") as f:
        f.write(json.dumps(expires_at))
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for p in (d, os.path.join(d, ".expiration_ts")):
            os.chown(p, nobody.pw_uid, nobody.pw_gid)


def clear(path):
    for name in os.listdir(path):
        shutil.rmtree(os.path.join(path, name), ignore_errors=True)


def new_session(port, path="/invocations"):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", path, body='{"requestType":"NEW_SESSION"}')
    r = c.getresponse()
    r.read()
    value = r.getheader("X-Amzn-SageMaker-New-Session-Id")
    c.close()
    return value.split(";")[0]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def dir_bytes(path):
    out = subprocess.run(["du", "-sb", path], capture_output=True, text=True).stdout
    return int(out.split()[0])


def fmt(v, digits=0):
    return "—" if v is None else f"{v:,.{digits}f}"


# --- session affinity (issue 17) -------------------------------------------------
# Rows of sessions sent to their home through an upstream with
# `sagemaker_session_affinity;`, each paired with plain round robin over the
# same replicas. BENCH_ONLY=affinity runs only these rows (results.md is then
# left as it is).
ONLY = os.environ.get("BENCH_ONLY", "")
# the sweep scenario (BENCH_ONLY=sweep runs only it, and leaves results.md)
SWEEP_SESSIONS = int(os.environ.get("BENCH_SWEEP_EXPIRED", "100000"))  # 0: the same runs, nothing to sweep
SWEEP_POOL = os.environ.get("BENCH_SWEEP_POOL", "own")
SWEEP_PAIRS = int(os.environ.get("BENCH_SWEEP_PAIRS", "3"))
SWEEP_SECONDS = int(os.environ.get("BENCH_SWEEP_SECONDS", "2"))


def sweep_buried(path):
    """Sessions in the sweep's graveyard, whose files are still being
    deleted: in each worker's part, `.graveyard/<pid>`."""
    graveyard = os.path.join(path, ".graveyard")
    try:
        parts = os.listdir(graveyard)
    except FileNotFoundError:  # none, or removed once empty
        return 0
    buried = 0
    for part in parts:
        try:
            buried += len(os.listdir(os.path.join(graveyard, part)))
        except (FileNotFoundError, NotADirectoryError):  # removed meanwhile
            pass
    return buried


def cpu_by_thread(workers, engine_workers):
    """Nanoseconds on a CPU so far (/proc/<pid>/task/<tid>/schedstat's
    first field), by role: each front worker's main thread (its event loop:
    requests, sweep ticks, inotify), the front workers' other threads (the
    thread pool: the graveyard's deleting), the engine's workers."""
    def ns(pid, tid):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                return int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            return 0
    got = {"worker": 0, "pool": 0, "engine": 0}
    for pid in workers:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except FileNotFoundError:
            continue
        for tid in tids:
            got["worker" if tid == pid else "pool"] += ns(pid, tid)
    for pid in engine_workers:
        got["engine"] += ns(pid, pid)
    return got


def sweep_left(path, live):
    """Expired sessions not yet gone: those in the sessions directory (but
    the `live` ones) and those in the sweep's graveyard."""
    names = os.listdir(path)
    return sum(1 for n in names if not n.startswith(".") and n not in live) + sweep_buried(path)
AFFINITY_REPLICAS = 3
AFFINITY_TARGET = 0.97
AFFINITY_BUILTIN = f"module, built-in session with affinity ({AFFINITY_REPLICAS} replicas)"
AFFINITY_ENGINE = f"module, engine-owned session with affinity ({AFFINITY_REPLICAS} replicas)"


def replicas_stub_conf(work, ports):
    """A second nginx standing in for the replicas: one worker, one server
    listening on every replica's port, every answer 200 at once; /open_session
    answers a new engine session id as a JSON string (nginx's $request_id, 32
    hex digits, as SGLang's are)."""
    return "\n".join([
        "worker_processes 1;", "daemon off;", f"pid {work}/replicas.pid;",
        f"error_log {work}/replicas.log warn;", "events { worker_connections 4096; }",
        "http {", "    access_log off;", "    server {"]
        + [f"        listen 127.0.0.1:{port};" for port in ports]
        + ["        default_type application/json;",
           "        location = /open_session { return 200 '\"$request_id\"'; }",
           f"        location / {{ return 200 '{ENGINE_BODY}'; }}",
           "    }", "}", ""])


def affinity_conf(work, sessions, ports, port, plain_port):
    """The front: `upstream replicas` with affinity, `upstream replicas_rr`
    plain round robin over the same servers; /invocations (built-in
    sessions) and /generate (engine-owned, created through /open) through
    the first on `port`, the same two URIs through the second on
    `plain_port`, in the same worker."""
    servers = [f"server 127.0.0.1:{p};" for p in ports]
    upstreams = (["upstream replicas {", "    sagemaker_session_affinity;"] + ["    " + s for s in servers]
                 + ["    keepalive 64;", "}", "upstream replicas_rr {"] + ["    " + s for s in servers]
                 + ["    keepalive 64;", "}"])

    def location(path, upstream, *directives):
        return indented([f"location = {path} {{"] + ["    " + d for d in directives]
                        + ["    proxy_http_version 1.1;", '    proxy_set_header Connection "";',
                           f"    proxy_pass http://{upstream};", "}"], 8)
    locations = "\n".join([
        location("/invocations", "replicas", "sagemaker_session_manager;"),
        location("/generate", "replicas", "sagemaker_session_create_handler /open body;",
                 "sagemaker_session_close_handler /close body.session_id;", "sagemaker_session_manager;"),
        location("/open", "replicas/open_session", "internal;"),
        location("/close", "replicas/close_session", "internal;"),
    ])
    plain = " ".join(["server {", f"listen 127.0.0.1:{plain_port};",
                      location("/invocations", "replicas_rr").replace("\n", " "),
                      location("/generate", "replicas_rr").replace("\n", " "), "}"])
    return front_conf(directory=work, pid="affinity.pid", log="affinity.log", level="warn", module=MODULE,
                      workers=WORKERS, sessions=sessions, expiration="20m", engine_port=ports[0], port=port,
                      http=[f"client_body_temp_path {work}/body;", f"proxy_temp_path {work}/proxy;"]
                      + upstreams + [plain], locations=locations)


def curl_status(url, body, headers=()):
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H",
            "Content-Type: application/json", "--data-binary", body]
    for h in headers:
        args += ["-H", h]
    return subprocess.run(args + [url], capture_output=True, text=True, timeout=30).stdout


def affinity_rows(work, shm, measure):
    """The two affinity rows: a session's invocations sent to its home by
    the module, against the same requests through plain round robin over the
    same replicas (same URI, on a second port of the same worker). The
    replicas' nginx and the front are stopped before it returns."""
    sessions = os.path.join(shm, "affinity")
    os.makedirs(sessions, exist_ok=True)
    ports = [free_port() for _ in range(AFFINITY_REPLICAS)]
    port, plain_port = free_port(), free_port()
    stub = os.path.join(work, "replicas.conf")
    with open(stub, "w") as f:
        f.write(replicas_stub_conf(work, ports))
    procs = [start(["nginx", "-p", work, "-c", stub, "-e", os.path.join(work, "replicas.log")], ports[0])]
    for p in ports[1:]:
        wait_port(p, procs[0])
    conf = os.path.join(work, "affinity.conf")
    with open(conf, "w") as f:
        f.write(affinity_conf(work, sessions, ports, port, plain_port))
    procs.append(start(["nginx", "-p", work, "-c", conf, "-e", os.path.join(work, "affinity.log")], port))
    try:
        base, plain = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{plain_port}"
        for name, path in ((AFFINITY_BUILTIN, "/invocations"), (AFFINITY_ENGINE, "/generate")):
            sid = new_session(port, path)
            header = f"{SESSION}: {sid}"
            # each side answers 200 before it is measured (the module's first
            # invocation of a built-in session also gives it its home)
            for url in (base + path, plain + path):
                status = curl_status(url, BODY, [header])
                if status != "200":
                    raise RuntimeError(f"{url} with session {sid} answered {status!r}")
            home = os.path.join(sessions, sid, ".home")
            if not os.path.exists(home):
                raise RuntimeError(f"session {sid} has no home ({home} is missing)")
            lua = script(work, "affinity", POST_LUA % (BODY, f'wrk.headers["{SESSION}"] = "{sid}"'))
            for url in (plain + path, base + path):       # warm-up, not measured
                wrk(url, lua, seconds=1)
            measure(name, base + path, lua, 0, plain_url=plain + path, plain_script=lua, pairs=max(PAIRS, 5))
    finally:
        for proc in reversed(procs):
            started.remove(proc)
            proc.send_signal(signal.SIGQUIT)
            proc.wait(timeout=20)
        clear(sessions)


def affinity_summary(by):
    """The affinity rows' lines under the table; by: {(name, live): row}."""
    lines = []
    for name in (AFFINITY_BUILTIN, AFFINITY_ENGINE):
        r = by.get((name, 0))
        if r:
            lines.append(f"- {name}: {r['ratio']:.3f} × plain round robin over the same replicas "
                         f"(target ≥ {AFFINITY_TARGET}), p99 {r['gap']['p99'] or 0:+.0f} µs vs plain, "
                         f"{r['non2xx']:,} non-2xx answers")
    return lines


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def paired(ref_run, got_run, pairs):
    """[(ref, got)]: `pairs` pairs of runs back to back, every other pair
    the other way round, so that a drift within pairs favours neither side."""
    runs = []
    for i in range(pairs):
        if i % 2:
            got = got_run()
            ref = ref_run()
        else:
            ref = ref_run()
            got = got_run()
        runs.append((ref, got))
    return runs


def summary_of(runs):
    """got and ref (medians of each side), the median of the pairs' ratios,
    and the latency gaps, paired as the ratio is: each pair's gap, then
    their median, so that a drift between pairs cancels out."""
    got = {k: median([g[k] for _, g in runs]) for k in ("rps", "p50", "p99")}
    got["non2xx"] = sum(g["non2xx"] for _, g in runs)
    ref = {k: median([r[k] for r, _ in runs]) for k in ("rps", "p50", "p99")}
    ratio = median([g["rps"] / r["rps"] for r, g in runs])
    gap = {k: median([g[k] - r[k] for r, g in runs if g[k] is not None and r[k] is not None])
           for k in ("p50", "p99")}
    return got, ref, ratio, gap


def main():
    if not os.path.exists(MODULE):
        sys.exit(f"{MODULE} is missing: run `make build`")
    work = tempfile.mkdtemp(prefix="sms-bench-")
    os.chmod(work, 0o755)
    shm = tempfile.mkdtemp(prefix="sms-bench-", dir="/dev/shm")
    os.chmod(shm, 0o755)
    sessions = os.path.join(shm, "sessions")
    pysessions = os.path.join(shm, "python")
    rows = []
    notes = []
    try:
        engine_port, front_port, plain_port, py_port = free_port(), free_port(), free_port(), free_port()
        with open(os.path.join(work, "engine.conf"), "w") as f:
            f.write(engine_stub_conf(work, engine_port, ENGINE_BODY, pid="engine.pid", log="engine.log",
                                     level="warn"))
        engine = start(["nginx", "-p", work, "-c", os.path.join(work, "engine.conf"),
                        "-e", os.path.join(work, "engine.log")], engine_port)

        def front(expiration="20m", workers=WORKERS, cpu=0, main=()):
            conf = os.path.join(work, "front.conf")
            with open(conf, "w") as f:
                f.write(front_conf(directory=work, pid="front.pid", log="front.log", level="warn", module=MODULE,
                                   workers=workers, sessions=sessions, expiration=expiration,
                                   engine_port=engine_port, port=front_port,
                                   http=[f"client_body_temp_path {work}/body;", f"proxy_temp_path {work}/proxy;",
                                         "client_max_body_size 4m;", "client_body_buffer_size 2m;",
                                         plain_server(plain_port)],
                                   sessions_max=2000000, locations=LOCATIONS, main=main))
            return start(["nginx", "-p", work, "-c", conf, "-e", os.path.join(work, "front.log")], front_port,
                         cpu=cpu)

        def stop(proc):
            started.remove(proc)
            proc.send_signal(signal.SIGQUIT if proc is master else signal.SIGTERM)
            proc.wait(timeout=20)

        os.makedirs(sessions, exist_ok=True)
        master = front()
        workers = children(master.pid)
        base = f"http://127.0.0.1:{front_port}"
        plain = f"http://127.0.0.1:{plain_port}"

        def twin(url):
            """The plain proxy_pass location a run is paired with: the one of
            the same URI, or /invocations for the ceiling and the library."""
            return plain + ("/inject" if url == base + "/inject" else "/invocations")
        plain_lua = script(work, "plain", POST_LUA % (BODY, ""))
        cycle_lua = script(work, "cycle", CYCLE_LUA)
        new_lua = script(work, "new", POST_LUA % ('{"requestType":"NEW_SESSION"}', ""))

        def measure(name, url, lua, live, plain_url=None, plain_script=None, pairs=PAIRS, connections=CONNECTIONS):
            got, ref, ratio, gap = summary_of(paired(
                lambda: wrk(plain_url or twin(url), plain_script or plain_lua, connections=connections),
                lambda: wrk(url, lua, connections=connections), pairs))
            rows.append({"name": name, "live": live, **got, "ref": ref, "ratio": ratio, "gap": gap})
            print(f"{name:<52} {live:>7} {got['rps']:>10,.0f} req/s  p50 {fmt(got['p50'])} us  "
                  f"p99 {fmt(got['p99'])} us  ×{ratio:.3f} plain  (plain p99 {fmt(ref['p99'])} us)", flush=True)
            return got

        def sweep_scenario():
            """Expiry sweeping under load: 100k expired sessions, a 20 s
            lifetime. While the pass runs, SWEEP_PAIRS pairs back to back of
            plain proxy_pass and the module sending the very same requests
            (a valid session's), in the worker that sweeps; once the pass is
            over, as many pairs again. Then how many were left when the runs
            ended, and when the pass had removed them all."""
            nonlocal master
            stop(master)
            clear(sessions)
            populate(sessions, SWEEP_SESSIONS, time.time() - 10)
            # the measured session, written as the library would, lives an hour
            sid = str(uuid.uuid4())
            populate_one(sessions, sid, time.time() + 3600)
            live = {sid}
            # the sweep's own thread pool, as the README has it (its thread
            # deletes at SCHED_IDLE); BENCH_SWEEP_POOL=default: nginx's default pool
            master = front(expiration="20s", main=[] if SWEEP_POOL == "default"
                           else ["thread_pool sagemaker_sessions threads=1;"])
            pass_starts = time.time() + 1  # the first pass starts a second after the workers
            before = sweep_left(sessions, live)
            sess_lua = script(work, "sess", POST_LUA % (BODY, f'wrk.headers["{SESSION}"] = "{sid}"'))

            def pairs():
                return paired(lambda: wrk(plain + "/invocations", sess_lua, seconds=SWEEP_SECONDS),
                              lambda: wrk(base + "/invocations", sess_lua, seconds=SWEEP_SECONDS), SWEEP_PAIRS)
            cpu_workers, cpu_engine = children(master.pid), children(engine.pid)
            cpu_from, wall_from = cpu_by_thread(cpu_workers, cpu_engine), time.time()
            during = pairs()
            after = sweep_left(sessions, live)
            cpu_to, wall = cpu_by_thread(cpu_workers, cpu_engine), time.time() - wall_from
            # each role's share of one CPU while the pairs ran (issue 26 part 2)
            shares = {k: (cpu_to[k] - cpu_from[k]) / 1e9 / wall for k in cpu_to}
            measured_for = time.time() - pass_starts
            deadline = time.time() + 120
            while sweep_left(sessions, live) and time.time() < deadline:
                time.sleep(0.1)
            left = sweep_left(sessions, live)
            took = time.time() - pass_starts if not left else None
            quiet = pairs()
            swept, ref, ratio, gap = summary_of(during)
            calm, calm_ref, _, calm_gap = summary_of(quiet)
            # what the sweep adds to a request: the module's p99 while it
            # runs against plain proxy_pass's once it is over, pair by pair
            felt = median([g["p99"] - r["p99"] for (_, g), (r, _) in zip(during, quiet)
                           if g["p99"] is not None and r["p99"] is not None])
            rows.append({"name": "module, valid session while 100k expired are swept", "live": before, **swept,
                         "ref": ref, "ratio": ratio, "gap": gap})
            print(f"sweep: {before:,} expired before, {after:,} left after {measured_for:.1f} s of runs, "
                  f"{left:,} at the end; pass {'%.1f s' % took if took is not None else 'not done in 120 s'}; "
                  f"valid session p99 {fmt(swept['p99'])} us while swept: {gap['p99'] or 0:+,.0f} us over plain "
                  f"beside it, {felt or 0:+,.0f} us over plain once the pass is over (plain p99 {fmt(ref['p99'])} us "
                  f"during, {fmt(calm_ref['p99'])} us after; the module {calm_gap['p99'] or 0:+,.0f} us over it "
                  f"after; medians of {SWEEP_PAIRS} pairs); {swept['non2xx']:,} non-2xx answers",
                  flush=True)
            # the event loop's CPU over the requests it answered meanwhile: with
            # nothing to sweep, what a request costs; the rest is the sweep's
            answered = sum((r["rps"] + g["rps"]) * SWEEP_SECONDS for r, g in during)
            per_request = (cpu_to["worker"] - cpu_from["worker"]) / 1e3 / answered if answered else 0
            print(f"sweep ({SWEEP_POOL} pool): CPU while the pairs ran ({wall:.1f} s): "
                  f"worker's event loop {shares['worker']:.1%} ({per_request:.1f} us a request answered), "
                  f"its thread pool {shares['pool']:.1%}, engine {shares['engine']:.1%} of one core; "
                  f"plain {ref['rps']:,.0f} req/s, the module {swept['rps']:,.0f} req/s (medians)",
                  flush=True)
            notes.append(("sweep", before, after, swept, ref, gap["p99"], measured_for, left, took, felt,
                          calm_ref, calm_gap["p99"]))

        if ONLY == "sweep":
            sweep_scenario()
            return

        print(f"module {MODULE} ({os.path.getsize(MODULE):,} bytes); wrk {DURATION}s, 1 thread, "
              f"{CONNECTIONS} connections; {WORKERS} nginx workers in front, 1 behind\n", flush=True)
        if ONLY == "affinity":
            affinity_rows(work, shm, measure)
            print("\n" + "\n".join(affinity_summary({(r["name"], r["live"]): r for r in rows})))
            return
        # warm-up, not measured: the first requests through a fresh worker
        # pay once for what every later one finds ready (pages of the module
        # and of nginx touched for the first time, lazily made tables)
        warm_lua = script(work, "warm", POST_LUA % (BODY, f'wrk.headers["{SESSION}"] = "{new_session(front_port)}"'))
        for url, lua in ((plain + "/invocations", plain_lua), (base + "/invocations", plain_lua),
                         (base + "/invocations", warm_lua), (base + "/inject", warm_lua)):
            wrk(url, lua, seconds=1)
        if ONLY == "p99":
            # issue 26 part 3: the valid session's p99 gap, and plain
            # proxy_pass against itself beside it (the noise), pair by pair
            sid = new_session(front_port)
            sess_lua = script(work, "sess", POST_LUA % (BODY, f'wrk.headers["{SESSION}"] = "{sid}"'))
            for _ in range(int(os.environ.get("BENCH_P99_ROUNDS", "3"))):
                measure("plain proxy_pass (baseline, against itself)", plain + "/invocations", sess_lua, 0,
                        plain_script=sess_lua, pairs=max(PAIRS, 5))
                measure("module, invocation with valid session", base + "/invocations", sess_lua, 0,
                        plain_script=sess_lua, pairs=max(PAIRS, 5))
                measure("plain proxy_pass against itself, 1 connection", plain + "/invocations", sess_lua, 0,
                        plain_script=sess_lua, pairs=max(PAIRS, 5), connections=1)
                measure("module, invocation with valid session, 1 connection", base + "/invocations", sess_lua, 0,
                        plain_script=sess_lua, pairs=max(PAIRS, 5), connections=1)
                for r in rows[-4:]:
                    print(f"  {r['name']}: p99 gap {r['gap']['p99'] or 0:+.0f} us, ratio {r['ratio']:.3f}", flush=True)
            return
        measure("nginx return 200 (ceiling)", base + "/ceiling", plain_lua, 0)
        rss_before = None

        for live in (0, 10_000, 100_000):
            if live:
                clear(sessions)
                populate(sessions, live, time.time() + 3600)
            sid = new_session(front_port)
            sess_lua = script(work, "sess", POST_LUA % (BODY, f'wrk.headers["{SESSION}"] = "{sid}"'))
            if live == 0:
                measure("plain proxy_pass (baseline, against itself)", plain + "/invocations", plain_lua, 0)
            # the tightest target (0.97): the median of three pairs, as the valid session's
            measure("module, invocation without session header", base + "/invocations", plain_lua, live,
                    pairs=max(PAIRS, 3))
            # the reference is plain proxy_pass of the very same request, session header included
            # the latency target's own figures: the median of five pairs at
            # saturation, where a p99 is mostly the queue of 32 connections
            # and a single pair's gap swings by tens of µs either way, and the
            # latency one request sees with one connection
            measure("module, invocation with valid session", base + "/invocations", sess_lua, live,
                    plain_script=sess_lua, pairs=max(PAIRS, 5))
            measure("module, invocation with valid session, 1 connection", base + "/invocations", sess_lua, live,
                    plain_script=sess_lua, connections=1)
            measure("module, valid session + body injection", base + "/inject", sess_lua, live,
                    plain_script=sess_lua)
            new = measure("module, NEW_SESSION", base + "/invocations", new_lua, live)
            cycle = measure("module, NEW_SESSION + CLOSE cycles", base + "/invocations", cycle_lua, live)
            rows[-1]["cycles"] = cycle["rps"] / 2
            if live == 10_000:
                rss_before = sum(rss_kb(w) for w in workers)  # after the 1 MiB bodies' buffers
            if live == 100_000:
                notes.append(("rss", rss_before, sum(rss_kb(w) for w in workers)))
            if live == 0:
                # 1 MiB JSON bodies: passed through untouched, and with injection
                big = json.dumps({"prompt": "x" * (1 << 20), "max_tokens": 16}).replace("'", "")
                big_lua = script(work, "big", POST_LUA % (big, ""))
                big_sess_lua = script(work, "bigsess",
                                      POST_LUA % (big, f'wrk.headers["{SESSION}"] = "{sid}"'))
                measure("module, 1 MiB JSON body, no session header", base + "/invocations", big_lua, live,
                        plain_script=big_lua)
                measure("module, 1 MiB JSON body, valid session + injection", base + "/inject", big_sess_lua,
                        live, plain_script=big_sess_lua)
            clear(sessions)

        # session affinity (issue 17): each row against plain round robin over the same replicas
        affinity_rows(work, shm, measure)

        # the status page's shared counters and the variables: the same
        # module, with a status location and a JSON access log of the
        # session variables, paired with one without a status location and
        # logging as many of nginx's own variables (two nginx, both on CPU 0)
        observed_port, unobserved_port = free_port(), free_port()
        sid = new_session(front_port)
        sess_lua = script(work, "sess", POST_LUA % (BODY, f'wrk.headers["{SESSION}"] = "{sid}"'))
        for name, port, status, fmt_vars in (
                ("observed", observed_port, True, ("$sagemaker_session_id", "$sagemaker_session_outcome")),
                ("unobserved", unobserved_port, False, ("$http_x_amzn_sagemaker_session_id", "$request_method"))):
            conf = os.path.join(work, name + ".conf")
            location = ["location = /invocations {", "    sagemaker_session_manager;",
                        f"    access_log {work}/{name}.access.log obs buffer=64k;",
                        "    proxy_http_version 1.1;", '    proxy_set_header Connection "";',
                        "    proxy_pass http://engine;", "}"]
            if status:
                location += ["location = /status { sagemaker_sessions_status; }"]
            log_format = ("log_format obs escape=json '{\"id\":\"%s\",\"outcome\":\"%s\",\"status\":\"$status\"}';"
                          % fmt_vars)
            with open(conf, "w") as f:
                f.write(front_conf(directory=work, pid=name + ".pid", log=name + ".log", level="warn", module=MODULE,
                                   workers=WORKERS, sessions=sessions, expiration="20m", engine_port=engine_port,
                                   port=port, http=[log_format, f"client_body_temp_path {work}/body;",
                                                    f"proxy_temp_path {work}/proxy;"],
                                   locations=indented(location, 8)))
            start(["nginx", "-p", work, "-c", conf, "-e", os.path.join(work, name + ".log")], port)
            wrk(f"http://127.0.0.1:{port}/invocations", sess_lua, seconds=1)
        measure("module + status page counters + JSON log of the variables, valid session",
                f"http://127.0.0.1:{observed_port}/invocations", sess_lua, 1,
                plain_url=f"http://127.0.0.1:{unobserved_port}/invocations", plain_script=sess_lua,
                pairs=max(PAIRS, 5))
        notes.append(("observed", by_name(rows, "module + status page counters + JSON log of the variables, "
                                                "valid session")))

        # the Python library, same requests
        app_dir = os.path.join(work, "app")
        os.makedirs(app_dir)
        with open(os.path.join(app_dir, "app.py"), "w") as f:
            f.write(PYTHON_APP)
        os.makedirs(pysessions, exist_ok=True)
        env = dict(os.environ, SAGEMAKER_ENABLE_STATEFUL_SESSIONS="true", SAGEMAKER_SESSIONS_PATH=pysessions,
                   PYTHONPATH=app_dir)
        uvicorn = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(py_port),
                   "--log-level", "warning"]
        python = start(uvicorn, py_port, env=env)
        py = f"http://127.0.0.1:{py_port}"
        py_rows = {}
        for live in (0, 10_000):
            psid = new_session(py_port)
            psess_lua = script(work, "psess", POST_LUA % (BODY, f'wrk.headers["{SESSION}"] = "{psid}"'))
            if live:
                # the library only knows sessions it made: make them through it
                for _ in range(live):
                    new_session(py_port)
            for name, lua in (("invocation without session header", plain_lua),
                              ("invocation with valid session", psess_lua),
                              ("NEW_SESSION", new_lua), ("NEW_SESSION + CLOSE cycles", cycle_lua)):
                got = measure(f"Python library, {name}", py + "/invocations", lua, live, pairs=1)
                py_rows[(name, live)] = got

        # NEW_SESSION on the whole machine, each side as it can be deployed:
        # nginx with one worker per core (worker_processes auto), the Python
        # library in one process (its sessions are per process: a second one
        # would reject half of them); nothing pinned. Each pair: the library
        # restarted on an empty directory, then the module, back to back.
        stop(python)
        stop(master)
        clear(sessions)
        cores = os.cpu_count() or 1
        master = front(workers=cores, cpu=None)
        whole = []
        for _ in range(PAIRS):
            clear(pysessions)
            python = start(uvicorn, py_port, env=env, cpu=None)
            py_run = wrk(py + "/invocations", new_lua, cpu=None)
            stop(python)
            mod_run = wrk(base + "/invocations", new_lua, cpu=None)
            clear(sessions)
            whole.append((py_run, mod_run))
        for name, runs in ((f"Python library, NEW_SESSION, whole machine (1 process)", [p for p, _ in whole]),
                           (f"module, NEW_SESSION, whole machine ({cores} workers)", [m for _, m in whole])):
            got = {k: median([g[k] for g in runs]) for k in ("rps", "p50", "p99")}
            rows.append({"name": name, "live": 0, **got, "ref": {"p99": None}, "ratio": None})
            print(f"{name:<52} {0:>7} {got['rps']:>10,.0f} req/s  p50 {fmt(got['p50'])} us  "
                  f"p99 {fmt(got['p99'])} us", flush=True)
        notes.append(("whole", cores, median([p["rps"] for p, _ in whole]), median([m["rps"] for _, m in whole]),
                      median([m["rps"] / p["rps"] for p, m in whole])))

        sweep_scenario()

        # storage per session
        clear(sessions)
        empty = dir_bytes(sessions)
        populate(sessions, 1000, time.time() + 3600)
        notes.append(("shm", (dir_bytes(sessions) - empty) / 1000))
        clear(sessions)
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
    report(rows, notes, py_rows)


def by_name(rows, name):
    return next(r for r in rows if r["name"] == name)


def report(rows, notes, py_rows):
    lines = ["| run | live sessions | req/s | p50 µs | p99 µs | × plain proxy_pass | plain p99 µs |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['live']:,} | {r['rps']:,.0f} | {fmt(r['p50'])} | {fmt(r['p99'])} "
                     f"| {fmt(r['ratio'], 3)} | {fmt(r['ref']['p99'])} |")
    summary = []
    by = {(r["name"], r["live"]): r for r in rows}
    for live in (0, 10_000, 100_000):
        for name, target in (("module, invocation with valid session", 0.95),
                             ("module, invocation without session header", 0.97),
                             ("module, valid session + body injection", 0.90)):
            r = by.get((name, live))
            if r:
                ratio = r["ratio"]
                dp99 = r["gap"]["p99"] or 0
                line = (f"- {name}, {live:,} live: {ratio:.3f} × plain (target ≥ {target}), "
                        f"p99 {dp99:+.0f} µs vs plain")
                one = by.get((name + ", 1 connection", live))
                if one:
                    line += (f" at {CONNECTIONS} connections (target ≤ +50 µs), "
                             f"{one['gap']['p99'] or 0:+.0f} µs with 1 connection "
                             f"(p50 {one['gap']['p50'] or 0:+.0f} µs)")
                summary.append(line)
    summary += affinity_summary(by)
    aa = by.get(("plain proxy_pass (baseline, against itself)", 0))
    if aa:
        summary.append(f"- plain proxy_pass against itself, the measurement's own noise ({PAIRS} pairs): "
                       f"{aa['ratio']:.3f} ×, p99 {aa['gap']['p99'] or 0:+.0f} µs")
    new0 = by.get(("module, NEW_SESSION", 0))
    pynew = py_rows.get(("NEW_SESSION", 0))
    if new0 and pynew:
        summary.append(f"- NEW_SESSION per core (1 worker, and the library's 1 process, on CPU 0): "
                       f"{new0['rps']:,.0f}/s vs the Python library's {pynew['rps']:,.0f}/s: "
                       f"{new0['rps'] / pynew['rps']:.1f} × (target ≥ 30 ×)")
    c0, c100 = by.get(("module, NEW_SESSION + CLOSE cycles", 0)), by.get(("module, NEW_SESSION + CLOSE cycles", 100_000))
    if c0 and c100:
        # the two runs are minutes apart; each one's ratio to the plain
        # proxy_pass run beside it takes out the machine's drift in between
        summary.append(f"- NEW_SESSION + CLOSE cycles: {c0['rps'] / 2:,.0f}/s with none live, "
                       f"{c100['rps'] / 2:,.0f}/s with 100k: {c100['rps'] / c0['rps']:.3f} × (target ≥ 0.9); "
                       f"against the plain proxy_pass run beside each, {c0['ratio']:.3f} and {c100['ratio']:.3f} × plain: "
                       f"{c100['ratio'] / c0['ratio']:.3f} ×")
    for note in notes:
        if note[0] == "whole":
            summary.append(f"- NEW_SESSION on the whole machine ({note[1]} nginx workers, the library's 1 process, "
                           f"nothing pinned; median of pairs): {note[3]:,.0f}/s vs {note[2]:,.0f}/s: "
                           f"{note[4]:.1f} × (target ≥ 30 ×)")
        elif note[0] == "rss":
            summary.append(f"- worker RSS (all {WORKERS} workers): {note[1]:,} kB with 10k live sessions, "
                           f"{note[2]:,} kB after the 100k-session runs; each worker caches at most 4,096 "
                           "sessions (about 1 MB), whatever the number on disk")
        elif note[0] == "sweep":
            _, before, after, swept, ref, gap, measured_for, left, took, felt, calm_ref, calm_gap = note
            summary.append(f"- sweep: {before:,} expired sessions on disk when the pass began, {after:,} left after "
                           f"{measured_for:.0f} s of measured runs, {left:,} at the end; the pass took "
                           + (f"{took:.1f} s" if took is not None else "more than 120 s")
                           + " (target: all gone within 30 s); valid-session p99 meanwhile "
                           f"{fmt(swept['p99'])} µs: {felt or 0:+,.0f} µs over plain proxy_pass's once the pass is "
                           f"over ({fmt(calm_ref['p99'])} µs; target: within +200 µs), {gap or 0:+,.0f} µs over "
                           f"plain proxy_pass's beside it in the sweeping worker ({fmt(ref['p99'])} µs); "
                           f"medians of {SWEEP_PAIRS} pairs' gaps")
        elif note[0] == "observed":
            r = note[1]
            summary.append(f"- the status page's shared counters and the session variables in a JSON access log: "
                           f"{r['ratio']:.3f} × the same module without a status location, logging as many of "
                           f"nginx's own variables (target ≥ 0.99), p99 {r['gap']['p99'] or 0:+.0f} µs "
                           "(the reference column of that row is the module without a status location)")
        elif note[0] == "shm":
            summary.append(f"- /dev/shm per session: {note[1]:,.0f} bytes (directory + .expiration_ts)")
    summary.append(f"- module size: {os.path.getsize(MODULE):,} bytes")
    text = ("# Benchmark\n\n" + f"`make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{os.cpu_count()} cores; nginx in front with {WORKERS} worker{'s' if WORKERS > 1 else ''} (module "
            "and plain proxy_pass in the same worker, on two ports), the engine a second nginx with 1 worker, the Python "
            "library under uvicorn (1 process: its sessions are per process)"
            + ("; the servers pinned to CPU 0 and wrk to CPU 1" if PIN else "")
            + f"; wrk 1 thread, {CONNECTIONS} connections (1 where a row says so), {DURATION} s "
            f"a run, after 1 s of each module path unmeasured; each module figure is the median of {PAIRS} pairs of "
            f"runs ({max(PAIRS, 3)} for the invocation without a session header, {max(PAIRS, 5)} for the valid "
            "session at saturation), a pair being plain proxy_pass and the module back to back, in turn one "
            "and the other first; a ratio is "
            "the median of the pairs' ratios, and a latency gap the median of the pairs' gaps (latencies "
            "to the µs, from wrk's own histogram). The plain proxy_pass "
            "run of a pair sends the very same requests (same URI, same body, and the session header where "
            "the module's run has one), so that a ratio is the module's own cost. The whole-machine NEW_SESSION "
            "rows pin nothing, and pair the Python library (restarted on an empty directory) with the "
            "module.\n\n" + "\n".join(lines) + "\n\n"
            + "\n".join(summary) + "\n")
    with open(os.path.join(HERE, "results.md"), "w") as f:
        f.write(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
