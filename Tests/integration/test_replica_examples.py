"""nginx/sglang-replicas.conf and nginx/vllm-replicas.conf, as shipped, in front
of four replica stubs (replicas.py) each knowing only its own sessions.

The files are used with mechanical changes only: the module's path and
`daemon off`, ports, the pid, log and temp paths, the sessions path, and
`worker_processes 2`. Every directive that decides what happens to a
request is the shipped one.
"""

import collections
import datetime
import json
import os
import re
import shutil
import time

import pytest

from harness import (CLOSED_SESSION, MODULE, NEW_SESSION, ROOT, SESSION, Nginx, detail, free_port,
                     request, workdir)
from replicas import HEX32, VLLM_REFUSAL, Replicas, vllm_error, log_lines_since, read_home, session_dir

SGLANG_CONF = os.path.join(ROOT, "nginx", "sglang-replicas.conf")
VLLM_CONF = os.path.join(ROOT, "nginx", "vllm-replicas.conf")
JSON = {"Content-Type": "application/json"}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
EXPIRES = re.compile(r"^Expires=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)$")


def shipped(path):
    with open(path) as f:
        return f.read()


def directives(conf):
    return [l.strip() for l in conf.splitlines() if l.strip() and not l.strip().startswith("#")]


def block(conf, head):
    """The directives of the block that starts with `head {` (no nesting inside)."""
    m = re.search(re.escape(head) + r"\s*\{([^{}]*)\}", conf)
    assert m, head
    return directives(m.group(1))


def as_run(conf, directory, port, replicas, first_port):
    """The shipped conf with only mechanical changes: paths, ports, foreground, 2 workers."""
    subs = [
        (r"load_module \S+;", lambda m: f"load_module {MODULE};\ndaemon off;", 1),
        (r"error_log \S+ notice;", lambda m: f"error_log {directory}/error.log info;", 1),
        (r"pid \S+;", lambda m: f"pid {directory}/nginx.pid;", 1),
        (r"worker_processes auto;", lambda m: "worker_processes 2;", 1),
        (r"sagemaker_sessions_path /dev/shm/sagemaker_sessions;",
         lambda m: f"sagemaker_sessions_path {directory}/sessions;", 1),
        (r"server 127\.0\.0\.1:(\d+);",
         lambda m: f"server {replicas[int(m.group(1)) - first_port].address};", len(replicas)),
        (r"listen 8080;", lambda m: f"listen 127.0.0.1:{port};", 1),
        (r"http \{\n", lambda m: "http {\n" + "".join(
            f"    {name}_temp_path {directory}/{name};\n"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")), 1),
    ]
    for pattern, replacement, count in subs:
        conf, n = re.subn(pattern, replacement, conf)
        assert n == count, f"the shipped conf changed: {pattern!r} matched {n} times"
    return conf


@pytest.fixture
def example():
    """example(conf_path, kind, first_port) -> (Replicas, Nginx not started)."""
    made = []

    def make(path, kind, first_port):
        reps = Replicas(4, kind)
        d = workdir()
        port = free_port()
        n = Nginx.from_text(as_run(shipped(path), d, port, reps, first_port), port, d)
        made.append((reps, n))
        return reps, n

    yield make
    crashed = []
    for reps, n in made:
        n.stop()
        crashed += n.crashes()
        reps.stop()
        shutil.rmtree(n.dir, ignore_errors=True)
    assert not crashed, crashed


def seconds(value):
    units = {"s": 1, "m": 60, "h": 3600}
    return int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)


def expires_at(r):
    value = r.header(NEW_SESSION)
    parts = [p.strip() for p in value.split(";")]
    assert len(parts) == 2, value
    m = EXPIRES.match(parts[1])
    assert m, value
    return parts[0], datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def assert_even(counts, total):
    mean = total / len(counts)
    assert sum(counts.values()) == total, counts
    for name, c in counts.items():
        assert 0.5 * mean <= c <= 1.5 * mean, (name, counts)


# --- nginx/sglang-replicas.conf ----------------------------------------------------------

def sglang_new_session(ngx, reps):
    r = ngx.request({"requestType": "NEW_SESSION"}, JSON)
    assert r.status == 200, r
    sid, expires = expires_at(r)
    assert HEX32.match(sid), r
    assert r.body == f"Successfully created session: {sid}".encode(), r
    owners = reps.owners(sid)
    assert len(owners) == 1, (sid, owners)
    return sid, owners[0], expires


def generate(ngx, sid, text="hi"):
    return ngx.request({"text": text, "sampling_params": {"max_new_tokens": 8}}, {SESSION: sid, **JSON})


def test_sglang_replicas_conf_directives_and_nginx_t(example):
    conf = shipped(SGLANG_CONF)
    upstream = block(conf, "upstream sglang")
    assert upstream[0] == "sagemaker_session_affinity;", upstream
    assert upstream[1:5] == [f"server 127.0.0.1:{p};" for p in range(30000, 30004)], upstream
    assert upstream[-1].startswith("keepalive "), upstream
    lines = directives(conf)
    assert "sagemaker_sessions on;" in lines
    assert "sagemaker_session_create_handler /sglang/open_session body;" in lines
    assert "sagemaker_session_close_handler /sglang/close_session body.session_id;" in lines
    assert "sagemaker_session_manager session_id_path=session_params.id;" in lines
    for loc in ("location = /sglang/open_session", "location = /sglang/close_session"):
        inner = block(conf, loc)
        assert "internal;" in inner and any(l.startswith("proxy_pass http://sglang/") for l in inner), inner
    # SGLang's own session timeout is the module's session lifetime
    expiration = next(l for l in lines if l.startswith("sagemaker_sessions_expiration "))
    lifetime = seconds(expiration.split()[1].rstrip(";"))
    defaults = next(l for l in lines if l.startswith("sagemaker_session_create_defaults "))
    value = json.loads(defaults[len("sagemaker_session_create_defaults "):].rstrip(";").strip("'"))
    assert value == {"body.capacity_of_str_len": 1024, "body.timeout": lifetime}, value
    reps, ngx = example(SGLANG_CONF, "sglang", 30000)
    code, out = ngx.test_config()
    assert code == 0, out
    assert "test is successful" in out


def test_sglang_replicas_sessions_stay_on_the_sglang_that_opened_them(example):
    reps, ngx = example(SGLANG_CONF, "sglang", 30000)
    ngx.start()
    t0 = time.time()
    sessions = {}
    for _ in range(40):
        sid, home, expires = sglang_new_session(ngx, reps)
        assert t0 + 1200 - 2 <= expires <= time.time() + 1200 + 1
        sessions[sid] = home
    assert_even(collections.Counter(h.name for h in sessions.values()), 40)
    for r in reps:
        assert [q["json"] for q in r.to("/open_session")] == \
            [{"capacity_of_str_len": 1024, "timeout": 1200}] * r.count("/open_session")
    for sid, home in sessions.items():
        assert read_home(ngx.sessions_path, sid) == home.address

    for n in range(3):
        for sid, home in sessions.items():
            r = generate(ngx, sid, f"turn {n}")
            assert r.status == 200, r
            assert r.header("X-Replica") == home.name, (sid, r)
            assert r.json()["received"]["session_params"] == {"id": sid}
    for r in reps:                            # every /generate a replica got was of its sessions
        assert all(sessions[s] is r for s in r.sessions_served("/generate")), r
    assert sum(reps.counts("/generate").values()) == 120

    for sid, home in sessions.items():
        r = ngx.request({"requestType": "CLOSE"}, {SESSION: sid})
        assert r.status == 200, r
        assert r.header(CLOSED_SESSION) == sid
        assert reps.served(sid, "/close_session") == {home.name}
        assert not home.knows(sid)
        assert not os.path.exists(session_dir(ngx.sessions_path, sid))


def test_sglang_replicas_one_down(example):
    reps, ngx = example(SGLANG_CONF, "sglang", 30000)
    ngx.start()
    sessions = dict(sglang_new_session(ngx, reps)[:2] for _ in range(16))
    victim = reps[2]
    lost = [s for s, h in sessions.items() if h is victim]
    assert lost
    offset = len(ngx.error_log)
    victim.kill()
    for sid, home in sessions.items():
        r = generate(ngx, sid)
        if home is victim:
            assert r.status == 503, r
            assert sid in detail(r), r
        else:
            assert r.status == 200 and r.header("X-Replica") == home.name, r
    assert log_lines_since(ngx.error_log, offset, "warn"), ngx.error_log[offset:]
    for _ in range(6):                        # NEW_SESSION goes on, on the live ones
        sid, home, _ = sglang_new_session(ngx, reps)
        assert home is not victim
        r = generate(ngx, sid)
        assert r.status == 200 and r.header("X-Replica") == home.name, r


def test_sglang_replicas_ping_and_internal_locations(example):
    reps, ngx = example(SGLANG_CONF, "sglang", 30000)
    ngx.start()
    for _ in range(8):
        r = ngx.request(b"", method="GET", path="/ping")
        assert r.status == 200, r
    health = reps.counts("/health")
    assert sum(health.values()) == 8 and all(c >= 1 for c in health.values()), health
    for path in ("/sglang/open_session", "/sglang/close_session"):
        r = ngx.request({"capacity_of_str_len": 1, "session_id": "x"}, path=path)
        assert r.status == 404, (path, r)
    assert sum(reps.counts("/open_session").values()) == 0


# --- nginx/vllm-replicas.conf ----------------------------------------------------------------

def test_vllm_replicas_conf_directives_and_nginx_t(example):
    conf = shipped(VLLM_CONF)
    upstream = block(conf, "upstream vllm")
    assert upstream[0] == "sagemaker_session_affinity;", upstream
    assert upstream[1:5] == [f"server 127.0.0.1:{p};" for p in range(8000, 8004)], upstream
    assert upstream[-1].startswith("keepalive "), upstream
    invocations = block(conf, "location = /invocations")
    assert 'proxy_set_header X-Amzn-SageMaker-Session-Id "";' in invocations
    assert "sagemaker_session_manager session_id_path=session_id;" in invocations
    assert not [l for l in directives(conf) if "_handler " in l], "built-in sessions: no engine handler"
    reps, ngx = example(VLLM_CONF, "vllm", 8000)
    code, out = ngx.test_config()
    assert code == 0, out
    # the stub refuses the header as vLLM does: through nginx it never sees it
    r = request(reps[0].port, {"messages": []}, {SESSION: "0b7f3d9c-1c2e-4f5a-8b6d-9e0a1b2c3d4e", **JSON})
    assert r.status == 400 and r.json() == vllm_error(VLLM_REFUSAL), r


def vllm_invoke(ngx, sid, n=0):
    body = {"messages": [{"role": "user", "content": f"turn {n}"}], "max_tokens": 4}
    r = ngx.request(body, {SESSION: sid, **JSON})
    assert r.status == 200, r
    answer = r.json()
    # header stripped, id in the body ("model": the library's inject_adapter_id)
    assert answer["received"] == {**body, "session_id": sid, "model": None}, r
    assert answer["session_id"] == sid, r                          # vLLM's own session id
    return r.header("X-Replica")


def test_vllm_replicas_each_session_on_one_vllm(example):
    reps, ngx = example(VLLM_CONF, "vllm", 8000)
    ngx.start()
    sids = []
    for _ in range(40):
        r = ngx.request({"requestType": "NEW_SESSION"}, JSON)
        assert r.status == 200, r
        sid, expires = expires_at(r)
        assert UUID.match(sid), r
        sids.append(sid)
    homes = {}
    for n in range(3):
        for sid in sids:
            got = vllm_invoke(ngx, sid, n)
            assert homes.setdefault(sid, got) == got, (sid, homes[sid], got)
    for sid in sids:
        assert reps.served(sid, "/invocations") == {homes[sid]}
        assert read_home(ngx.sessions_path, sid) == reps.by_name(homes[sid]).address
    assert_even(collections.Counter(homes.values()), 40)
    for r in reps:
        assert all(SESSION.lower() not in q["headers"] for q in r.requests), r
    for sid in sids[:10]:
        r = ngx.request({"requestType": "CLOSE"}, {SESSION: sid})
        assert r.status == 200, r
        assert not os.path.exists(session_dir(ngx.sessions_path, sid))
        r = ngx.request({"messages": []}, {SESSION: sid})
        assert r.status == 400, r
        assert detail(r) == f"Bad request: session not found: {sid}"
    assert sum(reps.counts("/invocations").values()) == 120


def test_vllm_replicas_one_down_sessions_move_and_stay(example):
    reps, ngx = example(VLLM_CONF, "vllm", 8000)
    ngx.start()
    sids = []
    for _ in range(16):
        r = ngx.request({"requestType": "NEW_SESSION"}, JSON)
        assert r.status == 200, r
        sids.append(expires_at(r)[0])
    homes = {sid: vllm_invoke(ngx, sid) for sid in sids}
    victim = reps[1]
    lost = [s for s in sids if homes[s] == victim.name]
    assert lost
    victim.kill()
    for sid in sids:
        got = {vllm_invoke(ngx, sid, n) for n in range(3)}
        assert len(got) == 1, (sid, got)
        now = got.pop()
        if sid in lost:
            assert now != victim.name
            assert read_home(ngx.sessions_path, sid) == reps.by_name(now).address
        else:
            assert now == homes[sid]
    for _ in range(4):
        r = ngx.request({"requestType": "NEW_SESSION"}, JSON)
        assert r.status == 200, r
        sid = expires_at(r)[0]
        assert vllm_invoke(ngx, sid) != victim.name


def test_vllm_replicas_requests_without_session_round_robin(example):
    reps, ngx = example(VLLM_CONF, "vllm", 8000)
    ngx.start()
    for i in range(40):
        r = ngx.request({"prompt": "x", "n": i}, JSON)
        assert r.status == 200, r
        assert r.json()["received"] == {"prompt": "x", "n": i, "model": None}
    counts = reps.counts("/invocations")
    assert sum(counts.values()) == 40 and all(8 <= c <= 12 for c in counts.values()), counts
    r = ngx.request(b"", method="GET", path="/ping")
    assert r.status == 200, r
    assert sum(reps.counts("/ping").values()) == 1
    r = ngx.request({"messages": []}, {SESSION: "not-a-session"})
    assert r.status == 400, r
    assert sum(reps.counts("/invocations").values()) == 40
