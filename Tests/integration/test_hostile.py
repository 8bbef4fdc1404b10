"""Hostile HTTP (issue "Reliability", item 3): what clients can throw at a
`sagemaker_session_manager` location, each with the answer the SPEC allows,
what the engine received, the error log line where nginx or the module logs
one, and nginx still healthy afterwards. Every test also fails if a worker
exited on a signal (conftest's start_nginx).

Already covered elsewhere, and not repeated here:
- test_bodies.py: non-JSON / binary / truncated-JSON bodies byte for byte,
  chunked session requests and invocations, injection into chunked bodies,
  3 MiB bodies spilled to a temp file, injection into non-objects (400).
- test_builtin_manager.py: malformed session requests, non-canonical ids
  (../victim, /etc, a/b, 300 bytes) with the sessions directory unreadable,
  two session headers on invocations and CLOSEs.
- test_engine_handlers.py: a keep-alive connection serving create, close and
  invocation through engine handlers; chunked and spilled session requests
  through engine handlers.
"""

import hashlib
import json
import os
import socket
import threading
import time

import pytest

from harness import (detail, CLOSE_URI, CLOSED_SESSION, CREATE_URI, HANDLER_LOCATIONS, HANDLERS, NEW_SESSION,
                     SESSION, Reply, Response, chunked, close_session, connect_target, new_session, workdir)

MiB = 1024 * 1024
NOT_AN_OBJECT = 'Bad request: the body must be a JSON object to carry the session id at "session_id"'
TOO_DEEP = ('Bad request: the body is nested more than 2048 levels deep: '
            'cannot write the session id at "session_id"')


# --- helpers ------------------------------------------------------------------

class Conn:
    """One client connection, spoken to in raw bytes; answers are read one by
    one (every answer here has a Content-Length), so a connection can be
    reused and requests can be pipelined."""

    def __init__(self, port, timeout=15):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def send(self, data):
        self.sock.sendall(data)

    def read(self, head=False):
        """The next answer, or None when the connection was closed first."""
        line = self.file.readline()
        if not line:
            return None
        version, status = line.split(b" ", 2)[:2]
        headers = []
        while True:
            h = self.file.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            k, v = h.decode("latin-1").split(":", 1)
            headers.append((k.strip(), v.strip()))
        r = Response(int(status), headers, b"")
        r.version = version.decode()
        if not head and int(r.header("Content-Length") or 0):
            r.body = self.file.read(int(r.header("Content-Length")))
        return r

    def closed_by_peer(self):
        """True when nginx closed the connection (nothing more to read)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.file.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def http(method="POST", body=b"", headers=(), version="1.1", path="/invocations", length=True,
         close=False):
    """A request as bytes. headers: (name, value) pairs or raw header lines (bytes)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    head = f"{method} {path} HTTP/{version}\r\nHost: x\r\n".encode()
    for h in headers:
        head += (h if isinstance(h, bytes) else f"{h[0]}: {h[1]}".encode()) + b"\r\n"
    if close:
        head += b"Connection: close\r\n"
    if length:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n" + body


def sid_header(sid):
    return (SESSION, sid)


def log_lines(ngx, text):
    return [l for l in ngx.error_log.splitlines() if text in l]


def assert_logged(ngx, level, text):
    lines = log_lines(ngx, text)
    assert lines, (text, ngx.error_log[-3000:])
    assert all(f"[{level}]" in l for l in lines), lines


def assert_nothing_reached(ngx, engine, engine_count, on_disk):
    """Neither the engine nor the sessions directory saw anything."""
    assert engine.count() == engine_count
    assert sorted(os.listdir(ngx.sessions_path)) == on_disk


def assert_healthy(ngx, engine=None):
    """A normal session's life still works, and nothing alarming was logged."""
    sid = new_session(ngx)
    before = engine.count() if engine else 0
    r = ngx.request({"prompt": "still fine"}, {SESSION: sid})
    assert r.status == 200, r
    if engine:
        assert engine.count() == before + 1
    assert close_session(ngx, sid).status == 200
    for level in ("[alert]", "[crit]", "[emerg]"):
        assert level not in ngx.error_log, ngx.error_log[-3000:]


def digest_responder(engine):
    """The engine answers with the length and SHA-256 of what it received."""
    def answer(record):
        body = record["body"]
        return Reply.json({"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                           "method": record["method"]})
    engine.respond("/invocations", answer)


def engine_mode(start_nginx, engine, inject=True, http_conf="", **kw):
    """nginx with both engine handlers; the engine makes ids eng-1, eng-2, ..."""
    made = []

    def create(record):
        made.append(f"eng-{len(made) + 1}")
        return Reply.json({"session_id": made[-1]})

    engine.respond(CREATE_URI, create)
    engine.respond(CLOSE_URI, Reply.json({}))
    manager = "sagemaker_session_manager session_id_path=session_id;" if inject else "sagemaker_session_manager;"
    return start_nginx(location=manager + " " + HANDLERS, server=HANDLER_LOCATIONS, http=http_conf, **kw)


def start_mode(start_nginx, engine, mode, http_conf=""):
    """nginx writing the session id into bodies at "session_id": the built-in
    manager (mode "builtin") or engine handlers (mode "engine", engine_mode)."""
    if mode == "builtin":
        return start_nginx(http=http_conf, location="sagemaker_session_manager session_id_path=session_id;")
    return engine_mode(start_nginx, engine, http_conf=http_conf)


def start_mode_with_session(start_nginx, engine, mode, engine_sid, http_conf=""):
    """start_mode's nginx and a session id to use with it: a new session of
    the built-in manager, or `engine_sid` (engine handlers pass any id on)."""
    ngx = start_mode(start_nginx, engine, mode, http_conf)
    return ngx, (new_session(ngx) if mode == "builtin" else engine_sid)


def snapshot(root, skip=("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "error.log")):
    """Every entry under root with its type, size, mtime and content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel.split(os.sep)[0] in skip:
            continue
        for name in dirnames + filenames:
            if rel == "." and name in skip:
                continue
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            content = None
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    content = f.read()
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, content)
    return out


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


# --- bodies: 0 B, 1 MiB, 100 MiB, over the limit -------------------------------

@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_zero_byte_bodies(start_nginx, engine, mode):
    """Content-Length: 0 and an empty chunked body are ordinary invocations:
    they reach the engine empty. With a session header and session_id_path
    there is nothing to write the id into: 400 (SPEC §3 "beyond")."""
    ngx, sid = start_mode_with_session(start_nginx, engine, mode, "any-engine-id")
    empty_chunked = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"\r\n0\r\n\r\n")
    with Conn(ngx.port) as c:
        for framing in (http(body=b""), empty_chunked):
            n = engine.count()
            c.send(framing)
            r = c.read()
            assert r.status == 200, r
            assert engine.count() == n + 1
            assert engine.last["body"] == b""
            assert engine.last["path"] == "/invocations"
        for framing in (http(body=b"", headers=[sid_header(sid)]),
                        framing_with_header(empty_chunked, SESSION, sid)):
            n = engine.count()
            c.send(framing)
            r = c.read()
            assert r.status == 400, r
            assert detail(r) == NOT_AN_OBJECT
            assert engine.count() == n
    assert_logged(ngx, "info", "must be a JSON object")
    assert_healthy(ngx, engine)


def framing_with_header(request, name, value):
    head, rest = request.split(b"\r\n", 1)
    return head + b"\r\n" + f"{name}: {value}\r\n".encode() + rest


@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_one_mib_bodies_at_the_default_limit(start_nginx, engine, mode):
    """1 MiB is exactly nginx's default client_max_body_size: allowed, spilled
    to a temp file, passed byte for byte; one byte more is nginx's 413."""
    ngx, sid = start_mode_with_session(start_nginx, engine, mode, "engine-session-7")
    digest_responder(engine)
    blob = os.urandom(MiB)
    r = ngx.request(blob, {"Content-Type": "application/octet-stream"})
    assert r.status == 200, r
    assert r.json() == {"bytes": MiB, "sha256": hashlib.sha256(blob).hexdigest(), "method": "POST"}
    assert_logged(ngx, "warn", "a client request body is buffered to a temporary file")

    # a JSON object of exactly 1 MiB, with the id written in (52 bytes more)
    doc = b'{"prompt":"' + b"p" * (MiB - 13) + b'"}'
    assert len(doc) == MiB
    r = ngx.request(doc, {SESSION: sid})
    assert r.status == 200, r
    sent = engine.last["body"]
    assert sent == doc[:-1] + b',"session_id":"' + sid.encode() + b'"}'
    assert r.json()["bytes"] == MiB + 16 + len(sid)

    # a NEW_SESSION padded to 1 MiB is still a session request
    padded = b'{"requestType": "NEW_SESSION"}' + b" " * (MiB - 30)
    n = engine.count()
    r = ngx.request(padded)
    assert r.status == 200, r
    assert r.header(NEW_SESSION)
    if mode == "builtin":
        assert engine.count() == n
    else:
        assert [q["path"] for q in engine.requests[n:]] == [CREATE_URI]

    # over the limit: nginx's 413 before the module sees anything
    n = engine.count()
    on_disk = sorted(os.listdir(ngx.sessions_path))
    for body in (blob + b"x", b'{"requestType": "NEW_SESSION"}' + b" " * MiB):
        r = ngx.request(body)
        assert r.status == 413, r
    assert engine.count() == n
    assert_logged(ngx, "error", "client intended to send too large body")
    assert sorted(os.listdir(ngx.sessions_path)) == on_disk
    assert_healthy(ngx, engine)


def stream(port, head, parts, timeout=60):
    """Sends a request head and then the body piece by piece (an iterable of
    bytes); returns the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        for part in parts:
            s.sendall(part)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def split_answer(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


def test_100_mib_bodies_reach_the_engine_intact_and_cost_no_memory(start_nginx, engine):
    """100 MiB, streamed (nginx spills it to its temp file): a binary body
    reaches the engine byte for byte, and the worker does not hold it in
    memory (the module maps the temp file, and looks at the first bytes
    only); a 100 MiB JSON object gets the session id written in and reaches
    the engine otherwise intact; one byte over client_max_body_size is 413."""
    size = 100 * MiB
    ngx = start_nginx(http="client_max_body_size 100m;",
                      location="sagemaker_session_manager session_id_path=session_id;")
    digest_responder(engine)
    sid = new_session(ngx)
    (worker,) = ngx.worker_pids()
    before = vm_hwm_kib(worker)

    block = os.urandom(MiB)
    expected = hashlib.sha256()
    for _ in range(100):
        expected.update(block)
    head = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % size)
    status, _, body = split_answer(stream(ngx.port, head, (block for _ in range(100))))
    assert status == 200, (body, ngx.error_log[-2000:])
    assert json.loads(body) == {"bytes": size, "sha256": expected.hexdigest(), "method": "POST"}
    grown = vm_hwm_kib(worker) - before
    assert grown < 32 * 1024, f"the worker's peak memory grew by {grown} KiB for a body it did not inspect"
    assert_logged(ngx, "warn", "a client request body is buffered to a temporary file")
    engine.requests.clear()

    # a 100 MiB JSON object with a valid session: the id is written in
    filler = b"a" * MiB
    first = b'{"prompt":"' + filler[:MiB - 11]
    last = filler[:MiB - 2] + b'"}'
    parts = [first] + [filler] * 98 + [last]
    assert sum(map(len, parts)) == size
    expected = hashlib.sha256()
    for p in parts[:-1]:
        expected.update(p)
    expected.update(last[:-1] + b',"session_id":"' + sid.encode() + b'"}')
    head = (f"POST /invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{SESSION}: {sid}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n").encode()
    status, _, body = split_answer(stream(ngx.port, head, parts))
    assert status == 200, (body, ngx.error_log[-2000:])
    assert json.loads(body) == {"bytes": size + 52, "sha256": expected.hexdigest(), "method": "POST"}
    engine.requests.clear()

    # over client_max_body_size: 413 from nginx at once, nothing reaches the engine
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (size + 1)
    with Conn(ngx.port) as c:
        c.send(head)
        r = c.read()
        assert r.status == 413, r
    assert engine.count() == 0, [(q["method"], q["path"], len(q["body"])) for q in engine.requests]
    assert_logged(ngx, "error", "client intended to send too large body: %d bytes" % (size + 1))
    assert_healthy(ngx, engine)


# --- chunked framing -----------------------------------------------------------

@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_chunked_bodies_hostile_framing(start_nginx, engine, mode):
    """Chunked bodies cut at every byte, with chunk extensions and trailers,
    spilled to a temp file, over the limit, malformed, or mixed with
    Content-Length: session requests still work; bad framing is nginx's 400
    and reaches neither the engine nor the store."""
    ngx = start_mode(start_nginx, engine, mode, http_conf="client_body_buffer_size 1k; client_max_body_size 64k;")
    te = [(b"Transfer-Encoding: chunked")]

    def send(body_bytes, extra=(), close=True):
        with Conn(ngx.port) as c:
            c.send(http(body=body_bytes, headers=list(te) + list(extra), length=False, close=close))
            return c.read()

    # NEW_SESSION in 1-byte chunks, so "requestType" is cut everywhere
    r = send(chunked(b'{"requestType": "NEW_SESSION"}', size=1))
    assert r.status == 200, r
    sid = r.header(NEW_SESSION).split(";")[0]

    # chunk extensions and a trailer are framing, not body
    raw = b'{"prompt": "ext"}'
    framed = b"5;name=value\r\n" + raw[:5] + b"\r\n" + b"%x\r\n" % (len(raw) - 5) + raw[5:] + b"\r\n0\r\nX-Trailer: t\r\n\r\n"
    r = send(framed, [sid_header(sid)])
    assert r.status == 200, r
    assert engine.last["body"] == b'{"prompt": "ext","session_id":"' + sid.encode() + b'"}'

    # spilled to the temp file (40 KiB > client_body_buffer_size), in 1000-byte chunks
    big = b'{"prompt": "' + b"z" * 40_000 + b'"}'
    r = send(chunked(big, size=1000), [sid_header(sid)])
    assert r.status == 200, r
    assert json.loads(engine.last["body"]) == {"prompt": "z" * 40_000, "session_id": sid}
    assert engine.last["headers"]["content-length"] == str(len(engine.last["body"]))
    assert "transfer-encoding" not in engine.last["headers"]

    n = engine.count()
    on_disk = sorted(os.listdir(ngx.sessions_path))
    # over client_max_body_size: 413; bad chunk sizes, both framings, two lengths: 400
    r = send(chunked(b'{"requestType": "NEW_SESSION"}' + b" " * 70_000, size=4096))
    assert r.status == 413, r
    assert_logged(ngx, "error", "client intended to send too large chunked body")
    for bad, extra in ((b"zz\r\n" + b'{"requestType": "NEW_SESSION"}' + b"\r\n0\r\n\r\n", ()),
                       (b"-5\r\nhello\r\n0\r\n\r\n", ()),
                       (b"ffffffffffffffffffff\r\nx\r\n0\r\n\r\n", ()),
                       (chunked(b'{"requestType": "NEW_SESSION"}'), [b"Content-Length: 30"])):
        r = send(bad, extra)
        assert r.status == 400, (bad, r)
        if extra and b"<html>" not in r.body:
            # both framings on nginx before 1.21.1: the module's refusal (test_refusals.py)
            assert detail(r) == "Bad request: both Content-Length and Transfer-Encoding", r
        else:
            assert b"<html>" in r.body, (bad, r)  # nginx's own page, not a module answer
    with Conn(ngx.port) as c:
        body = b'{"requestType": "NEW_SESSION"}'
        c.send(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nContent-Length: 31\r\n\r\n" + body)
        assert c.read().status == 400
    assert_nothing_reached(ngx, engine, n, on_disk)
    assert_logged(ngx, "error", "client sent invalid chunked body")
    assert_healthy(ngx, engine)


# --- slow clients, clients that give up, stalled clients ---------------------

@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_slow_client_gets_a_normal_answer(start_nginx, engine, mode):
    """A body sent in pieces with pauses (Content-Length and chunked), byte by
    byte, or after waiting for 100 Continue: the usual answers."""
    ngx = start_mode(start_nginx, engine, mode)
    new = b'{"requestType": "NEW_SESSION"}'
    with Conn(ngx.port) as c:
        c.send(http(body=new)[:-len(new)] + new[:14])
        time.sleep(0.5)
        c.send(new[14:])
        r = c.read()
        assert r.status == 200, r
        sid = r.header(NEW_SESSION).split(";")[0]

        # an invocation, byte by byte
        request = http(body=b'{"prompt": "slow"}', headers=[sid_header(sid)])
        for i in range(len(request)):
            c.send(request[i:i + 1])
            time.sleep(0.005)
        r = c.read()
        assert r.status == 200, r
        assert json.loads(engine.last["body"]) == {"prompt": "slow", "session_id": sid}

        # chunked, one chunk now, one later
        c.send(b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               + f"{SESSION}: {sid}\r\n\r\n".encode() + b"d\r\n{\"prompt\": \"c\r\n")
        time.sleep(0.5)
        c.send(b"6\r\nhunk\"}\r\n0\r\n\r\n")
        r = c.read()
        assert r.status == 200, r
        assert json.loads(engine.last["body"]) == {"prompt": "chunk", "session_id": sid}

        # Expect: 100-continue: the body follows nginx's go-ahead
        close = b'{"requestType": "CLOSE"}'
        c.send(http(body=close, headers=[sid_header(sid), ("Expect", "100-continue")])[:-len(close)])
        interim = c.read()
        assert interim.status == 100, interim
        c.send(close)
        r = c.read()
        assert r.status == 200, r
        assert r.header(CLOSED_SESSION) == sid
    if mode == "engine":
        assert [q["path"] for q in engine.requests if q["path"] != "/invocations"] == [CREATE_URI, CLOSE_URI]
        assert json.loads(engine.to(CLOSE_URI)[0]["body"]) == {"session_id": sid}
    assert_healthy(ngx, engine)


@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_client_that_stops_half_way_reaches_nothing(start_nginx, engine, mode):
    """A client that announces a body and closes part way through (in memory,
    chunked, or part way into the temp file): nothing reaches the engine, no
    session is made, nginx logs it at info and goes on."""
    http_conf = "client_body_buffer_size 8k;"
    ngx, sid = start_mode_with_session(start_nginx, engine, mode, "engine-sid", http_conf=http_conf)
    on_disk = sorted(os.listdir(ngx.sessions_path))
    n = engine.count()
    partial = [
        http(body=b'{"requestType": "NEW_SESSION"}')[:-10],
        http(body=b'{"requestType": "CLOSE"}', headers=[sid_header(sid)])[:-3],
        http(body=b'{"prompt": "x"}', headers=[sid_header(sid)])[:-2],
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1e\r\n{\"requestType\": \"NEW_SESSION\"}\r\n",          # no last chunk
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
        + b'{"requestType": "NEW_SESSION"' + b" " * 300_000,     # cut inside the temp file
    ]
    for data in partial:
        s = socket.create_connection(("127.0.0.1", ngx.port), timeout=10)
        s.sendall(data)
        time.sleep(0.2)
        s.close()
    deadline = time.time() + 5
    while len(log_lines(ngx, "client prematurely closed connection")) < len(partial) and time.time() < deadline:
        time.sleep(0.05)
    assert len(log_lines(ngx, "client prematurely closed connection")) == len(partial), ngx.error_log[-3000:]
    assert_logged(ngx, "info", "client prematurely closed connection")
    assert_nothing_reached(ngx, engine, n, on_disk)
    if mode == "builtin":
        assert ngx.request({"p": 1}, {SESSION: sid}).status == 200, "the session must not have been closed"
    assert_healthy(ngx, engine)


def test_client_gone_while_the_engine_creates_its_session(start_nginx, engine):
    """Engine handlers: the client closes while the create subrequest is out.
    The worker survives, logs it, and serves the next client."""
    ngx = engine_mode(start_nginx, engine)
    engine.respond(CREATE_URI, Reply.json({"session_id": "late"}, delay=1))
    s = socket.create_connection(("127.0.0.1", ngx.port), timeout=10)
    s.sendall(http(body={"requestType": "NEW_SESSION"}))
    time.sleep(0.3)
    s.close()
    time.sleep(1.2)
    assert len(engine.to(CREATE_URI)) == 1
    assert_logged(ngx, "info", "client prematurely closed connection")
    engine.respond(CREATE_URI, Reply.json({"session_id": "next"}))
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 200 and r.header(NEW_SESSION) == "next", r
    assert_healthy(ngx, engine)


def test_stalled_client_times_out_without_blocking_others(start_nginx, engine):
    """client_body_timeout: a client that stops sending its body is let go
    by nginx (408: nginx closes the connection without sending it, and logs
    it only in the access log) while other clients on the same worker are
    answered before that (no timing is asserted: only that order)."""
    d = workdir()
    ngx = start_nginx(http="client_body_timeout 3s;", location="sagemaker_session_manager;",
                      directory=d, server=f"access_log {d}/access.log;")
    stalled = []
    for data in (http(body=b'{"requestType": "NEW_SESSION"}')[:-5],
                 b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"):
        c = Conn(ngx.port, timeout=10)
        c.send(data)
        stalled.append(c)
    answers = []

    def normal():
        answers.append(ngx.request({"prompt": "not blocked"}).status)

    threads = [threading.Thread(target=normal) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 4
    sid = new_session(ngx)
    for c in stalled:
        # still held by nginx, waiting for the rest of its body
        c.sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            c.sock.recv(1, socket.MSG_PEEK)
        c.sock.settimeout(10)

    for c in stalled:
        r = c.read()
        # nginx answers a body timeout by closing the connection (its 408 is never sent)
        assert r is None or r.status == 408, r
        assert c.closed_by_peer()
        c.close()
    with open(os.path.join(d, "access.log")) as f:
        statuses = [line.split('"')[2].split()[0] for line in f]
    assert sorted(statuses) == ["200"] * 5 + ["408"] * 2, statuses
    assert engine.count() == 4
    assert os.listdir(ngx.sessions_path) == [sid]
    assert_healthy(ngx, engine)


# --- JSON: invalid UTF-8, 100k deep, 100k keys, requestType repeated -----------

@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_invalid_utf8(start_nginx, engine, mode):
    """Invalid UTF-8 is not JSON (RFC 8259; jansson and the splice refuse
    it): a body that would be a session request but for one bad byte is an
    ordinary invocation and reaches the engine byte for byte (SPEC §3:
    "anything else ... passed to the engine"); with session_id_path and a
    session header it has no object to write into: 400. A session id that is
    not UTF-8 is unknown to the built-in store, and refused (400) where the
    engine would have to read it as text."""
    ngx, sid = start_mode_with_session(start_nginx, engine, mode, "engine-sid")
    on_disk = sorted(os.listdir(ngx.sessions_path))
    bodies = [b'{"requestType": "NEW_SESSION\xff"}',
              b'{"requestType": "NEW_SESSION", "x": "\xc3\x28"}',
              b'{"requestType": "CLOSE", "x": "\xed\xa0\x80"}',       # a surrogate
              b'{"requestType": "NEW_SESSION", "x": "\xc0\xaf"}',     # overlong
              b'{"request\xffType": "NEW_SESSION"}']
    for body in bodies:
        n = engine.count()
        r = ngx.request(body)
        assert r.status == 200, (body, r)
        assert engine.count() == n + 1
        assert engine.last["body"] == body
        r = ngx.request(body, {SESSION: sid})
        assert r.status == 400, (body, r)
        assert detail(r) == NOT_AN_OBJECT
        assert engine.count() == n + 1
    assert sorted(os.listdir(ngx.sessions_path)) == on_disk

    def with_raw_id(raw_id, body):
        with Conn(ngx.port) as c:
            c.send(http(body=body, headers=[SESSION.encode() + b": " + raw_id], close=True))
            return c.read()

    n = engine.count()
    for raw_id in (b"\xff\xfe", b"abc\xc3", b"\xed\xa0\x80" + b"0" * 33):
        if mode == "builtin":
            for body in (b'{"prompt": "x"}', b'{"requestType": "CLOSE"}'):
                r = with_raw_id(raw_id, body)
                assert r.status == 400, r
                assert detail(r) == "Bad request: session not found: " + raw_id.decode("utf-8", "replace")
        else:
            for body in (b'{"prompt": "x"}', b'{"requestType": "CLOSE"}'):
                r = with_raw_id(raw_id, body)
                assert r.status == 400, r
                assert detail(r) == "Bad request: the session id is not valid UTF-8"
    assert engine.count() == n
    assert_logged(ngx, "info", "not valid UTF-8" if mode == "engine" else "session not found")
    assert_healthy(ngx, engine)


def test_invalid_utf8_session_id_passes_to_the_engine_without_injection(start_nginx, engine):
    ngx = engine_mode(start_nginx, engine, inject=False)
    with Conn(ngx.port) as c:
        c.send(http(body=b'{"prompt": "x"}', headers=[SESSION.encode() + b": abc\xff"], close=True))
        r = c.read()
    assert r.status == 200, r
    assert engine.last["body"] == b'{"prompt": "x"}'
    assert engine.last["headers"][SESSION.lower()].encode("latin-1") == b"abc\xff"


def deep_bodies():
    n = 100_000
    return {
        "objects": b'{"a":' * n + b"1" + b"}" * n,
        "arrays in a session request": b'{"requestType": "NEW_SESSION", "x": ' + b"[" * n + b"]" * n + b"}",
        "requestType itself": b'{"requestType": ' + b"[" * n + b"]" * n + b"}",
        "unclosed": b'{"requestType": "NEW_SESSION", "x": ' + b"{\"a\":" * n,
    }


@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_json_nested_100k_levels(start_nginx, engine, mode):
    """JSON nested 100,000 levels deep cannot be read (jansson stops at 2048
    levels, as the splice does), so it is not a session request: without a
    session header it is an ordinary invocation and reaches the engine byte
    for byte (no session is made, no engine handler is called). With a
    session header and session_id_path the id cannot be written: 400 saying
    so. Within the bound, a deep session request with another key is the
    usual malformed-request 400."""
    ngx, sid = start_mode_with_session(start_nginx, engine, mode, "engine-sid", http_conf="client_max_body_size 4m;")
    digest_responder(engine)
    on_disk = sorted(os.listdir(ngx.sessions_path))
    for name, body in deep_bodies().items():
        n = engine.count()
        r = ngx.request(body)
        assert r.status == 200, (name, r)
        assert r.json()["sha256"] == hashlib.sha256(body).hexdigest(), name
        assert [q["path"] for q in engine.requests[n:]] == ["/invocations"], name
        r = ngx.request(body, {SESSION: sid})
        assert r.status == 400, (name, r)
        assert detail(r) == TOO_DEEP, name
        assert engine.count() == n + 1
    assert sorted(os.listdir(ngx.sessions_path)) == on_disk

    within = b'{"requestType": "NEW_SESSION", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    r = ngx.request(within)
    assert r.status == 400, r
    assert detail(r) == 'Invalid session request: unexpected key "x" besides "requestType"'
    assert_logged(ngx, "info", "nested more than 2048 levels deep")
    assert_healthy(ngx, engine)


@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_json_with_100k_keys(start_nginx, engine, mode):
    """100,000 keys: an ordinary invocation passes untouched; with a session
    the id is added (once, at the end); 100,000 repeats of the id's own key
    end with the injected id (the last repeat is the one every parser keeps);
    beside requestType they make a malformed session request that names the
    first few."""
    ngx, sid = start_mode_with_session(start_nginx, engine, mode, "engine-sid", http_conf="client_max_body_size 16m;")
    n_keys = 100_000
    keys = b",".join(b'"k%d":%d' % (i, i) for i in range(n_keys))
    plain = b"{" + keys + b"}"
    r = ngx.request(plain)
    assert r.status == 200, r
    assert engine.last["body"] == plain

    r = ngx.request(plain, {SESSION: sid})
    assert r.status == 200, r
    assert engine.last["body"] == plain[:-1] + b',"session_id":"' + sid.encode() + b'"}'

    repeated = b"{" + b",".join(b'"session_id":"forged-%d"' % i for i in range(n_keys)) + b"}"
    r = ngx.request(repeated, {SESSION: sid})
    assert r.status == 200, r
    got = engine.last["body"]
    assert json.loads(got) == {"session_id": sid}
    assert got.count(b'"session_id"') == n_keys and got.count(sid.encode()) == 1

    n = engine.count()
    r = ngx.request(b'{"requestType":"NEW_SESSION",' + keys + b"}")
    assert r.status == 400, r
    assert detail(r) == ('Invalid session request: unexpected keys "k0", "k1", "k2", "k3", "k4" '
                         'besides "requestType"')
    assert engine.count() == n
    assert_logged(ngx, "info", "unexpected keys")
    assert_healthy(ngx, engine)


REPEATED = [
    # body, what json.loads (the Python library) makes of requestType
    (b'{"requestType":"NEW_SESSION","requestType":"CLOSE"}', "CLOSE"),
    (b'{"requestType":"CLOSE","requestType":"NEW_SESSION"}', "NEW_SESSION"),
    (b'{"requestType":7,"requestType":"NEW_SESSION"}', "NEW_SESSION"),
    (b'{"requestType":"NEW_SESSION","requestType":7}', 7),
    (b'{"requestType":"NEW_SESSION","requestType":"OPEN"}', "OPEN"),
    (b'{"requestType":"CLOSE","request\\u0054ype":"NEW_SESSION"}', "NEW_SESSION"),
    (b"{" + b'"requestType":"CLOSE",' * 100_000 + b'"requestType":"NEW_SESSION"}', "NEW_SESSION"),
]


@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_request_type_repeated_last_wins(start_nginx, engine, mode):
    """A repeated requestType: the last one counts. That is what the Python
    library does (Starlette's request.json() is json.loads, which keeps the
    last of repeated keys) and what jansson does, so a request means the same
    here as it did there; the key is still the only one, so it is a session
    request of the last value (a bad last value is the usual 400). The same
    holds for a repeat spelled with an escape (request\\u0054ype)."""
    if mode == "builtin":
        ngx = start_nginx(http="client_max_body_size 4m;")
    else:
        ngx = engine_mode(start_nginx, engine, http_conf="client_max_body_size 4m;")
    for body, last in REPEATED:
        assert json.loads(body)["requestType"] == last
        sid = new_session(ngx)
        calls = engine.count()
        r = ngx.request(body, {SESSION: sid})
        if last == "NEW_SESSION":
            assert r.status == 200, (body[:80], r)
            made = r.header(NEW_SESSION).split(";")[0]
            assert made != sid
        elif last == "CLOSE":
            assert r.status == 200, (body[:80], r)
            assert r.header(CLOSED_SESSION) == sid
            if mode == "builtin":
                assert not os.path.exists(os.path.join(ngx.sessions_path, sid))
        else:
            assert r.status == 400, (body[:80], r)
            assert "requestType must be" in detail(r)
        if mode == "builtin":
            assert engine.count() == calls
        else:
            expected = {"NEW_SESSION": [CREATE_URI], "CLOSE": [CLOSE_URI]}.get(last, [])
            assert [q["path"] for q in engine.requests[calls:]] == expected, body[:80]
    assert_logged(ngx, "info", "requestType must be")
    assert_healthy(ngx, engine)


# --- headers: huge values, two session headers, CR/LF/NUL, path tricks --------

@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_huge_header_values(start_nginx, engine, mode):
    """A session header as large as nginx takes (just under its 8k header
    line buffer) is an unknown session for the built-in manager (the 400
    echoes it, JSON-escaped) and is carried to the engine whole with engine
    handlers; a longer one, or too many headers, is nginx's own 400 and
    reaches nothing."""
    if mode == "builtin":
        ngx = start_nginx()
    else:
        ngx = engine_mode(start_nginx, engine)
    big = "s" * 8000
    n = engine.count()
    r = ngx.request({"prompt": "x"}, {SESSION: big})
    if mode == "builtin":
        assert r.status == 400, r
        assert detail(r) == f"Bad request: session not found: {big}"
        assert engine.count() == n
        assert_logged(ngx, "info", "session not found: sss")
    else:
        assert r.status == 200, r
        assert engine.last["headers"][SESSION.lower()] == big
        assert json.loads(engine.last["body"]) == {"prompt": "x", "session_id": big}
        r = ngx.request({"requestType": "CLOSE"}, {SESSION: big})
        assert r.status == 200, r
        assert r.header(CLOSED_SESSION) == big
        assert json.loads(engine.to(CLOSE_URI)[-1]["body"]) == {"session_id": big}
    # another huge header is passed on untouched
    r = ngx.request({"prompt": "y"}, {"X-Big": "b" * 8000})
    assert r.status == 200, r
    assert engine.last["headers"]["x-big"] == "b" * 8000

    n = engine.count()
    on_disk = sorted(os.listdir(ngx.sessions_path))
    for headers in ({SESSION: "s" * 9000}, {"X-Big": "b" * 9000},
                    {f"X-H{i}": "h" * 7000 for i in range(6)}):
        for body in ({"prompt": "x"}, {"requestType": "NEW_SESSION"}):
            r = ngx.request(body, headers)
            assert r.status == 400, r
            assert b"Request Header Or Cookie Too Large" in r.body
    assert_nothing_reached(ngx, engine, n, on_disk)
    assert_logged(ngx, "info", "client sent too long header line")
    assert_healthy(ngx, engine)


@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_two_session_headers(start_nginx, engine, mode):
    """Where the header counts (invocation, CLOSE) two of them are a 400, in
    both modes, before anything reaches the store or the engine; NEW_SESSION
    does not read the header, so it still creates. (The built-in invocation
    and CLOSE cases with two live sessions are in test_builtin_manager.)"""
    ngx = start_mode(start_nginx, engine, mode)
    if mode == "builtin":
        a, b = new_session(ngx), new_session(ngx)
    else:
        a, b = "engine-a", "engine-b"
    n = engine.count()
    pairs = [(a, b), (a, a), ("", a), (a, "")]
    with Conn(ngx.port) as c:
        for first, second in pairs:
            for body in ({"prompt": "x"}, {"requestType": "CLOSE"}):
                c.send(http(body=body, headers=[(SESSION, first), (SESSION.lower(), second)]))
                r = c.read()
                assert r.status == 400, (first, second, body, r)
                assert detail(r) == "Bad request: more than one X-Amzn-SageMaker-Session-Id header"
        assert engine.count() == n
        c.send(http(body={"requestType": "NEW_SESSION"}, headers=[(SESSION, a), (SESSION, b)]))
        r = c.read()
        assert r.status == 200, r
        assert r.header(NEW_SESSION).split(";")[0] not in (a, b)
    if mode == "builtin":
        assert os.path.isdir(os.path.join(ngx.sessions_path, a))
        assert os.path.isdir(os.path.join(ngx.sessions_path, b))
    else:
        assert [q["path"] for q in engine.requests[n:]] == [CREATE_URI]
    assert_logged(ngx, "info", "more than one X-Amzn-SageMaker-Session-Id header")
    assert_healthy(ngx, engine)


@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_cr_lf_nul_and_control_bytes_in_session_ids(start_nginx, engine, mode):
    """NUL or a bare CR in a header is nginx's own 400 (the request never
    reaches the module). A LF ends the header line, as HTTP allows: what
    follows is another line, never part of the id, so an id cannot carry a
    line break into an answer, a log line or the engine's headers. Other
    control bytes reach the module: an unknown session for the built-in
    manager (JSON-escaped in the 400), passed on with engine handlers
    (JSON-escaped where it is written into a body)."""
    ngx, sid = start_mode_with_session(start_nginx, engine, mode, "engine-sid")
    on_disk = sorted(os.listdir(ngx.sessions_path))
    n = engine.count()

    def send(raw_id, body=b'{"prompt": "x"}'):
        with Conn(ngx.port) as c:
            c.send(http(body=body, headers=[SESSION.encode() + b": " + raw_id], close=True))
            return c.read()

    for raw_id in (sid.encode() + b"\x00", b"a\x00b", b"\x00", sid.encode() + b"\rX-Evil: 1", b"a\rb"):
        for body in (b'{"prompt": "x"}', b'{"requestType": "CLOSE"}', b'{"requestType": "NEW_SESSION"}'):
            r = send(raw_id, body)
            assert r.status == 400, (raw_id, r)
            assert b"<html>" in r.body, r     # nginx's page: the module never ran
    assert_nothing_reached(ngx, engine, n, on_disk)
    assert_logged(ngx, "info", "client sent invalid header line")

    # a LF ends the id; the rest is a header line of its own
    r = send(b"abc\ndef")
    if mode == "builtin":
        assert r.status == 400 and detail(r) == "Bad request: session not found: abc", r
    else:
        assert r.status == 200, r
        assert engine.last["headers"][SESSION.lower()] == "abc"
    r = send(b"abc\nX-Injected: 1", b'{"requestType": "CLOSE"}')
    if mode == "builtin":
        assert r.status == 400 and detail(r) == "Bad request: session not found: abc", r
    else:
        assert r.status == 200 and r.header(CLOSED_SESSION) == "abc", r
        assert json.loads(engine.last["body"]) == {"session_id": "abc"}

    # other control bytes
    for raw_id in (b"\x01\x02", b"a\x1b[31mb", b"tab\there", b"del\x7f"):
        text = raw_id.decode()
        r = send(raw_id)
        if mode == "builtin":
            assert r.status == 400, r
            assert detail(r) == f"Bad request: session not found: {text}"
            assert not any(b < 0x20 for b in r.body), r      # escaped in the JSON
        else:
            assert r.status == 200, r
            assert engine.last["headers"][SESSION.lower()] == text.strip()
            assert json.loads(engine.last["body"]) == {"prompt": "x", "session_id": text.strip()}
    for line in ngx.error_log.splitlines():
        assert "\r" not in line
    assert sorted(os.listdir(ngx.sessions_path)) == on_disk
    if mode == "builtin":
        assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    assert_healthy(ngx, engine)


TRICKS = ["../x", "..", ".", "/", "./", "%2e%2e", "%2e%2e%2fvictim", "..%2f..%2fvictim", "../victim",
          "../../../../../../tmp", "/dev/shm", "~", "*", "?", "\\..\\victim", "victim/../../victim",
          "x" * 4096, "é" * 18, "ü" * 36, "6f1c1b1e-8d47-4c3b-9a4e-2f1e0c9b7a1\u0661",
          "6f1c1b1e-8d47-4c3b-9a4e-2f1e0c9b7a11/", "6f1c1b1e-8d47-4c3b-9a4e-2f1e0c9b7a11/.expiration_ts"]


def test_ids_with_path_tricks_touch_nothing(start_nginx, engine):
    """Built-in manager: ids that are paths, dot-segments, percent-encoded,
    absolute, very long or non-ASCII are unknown sessions (400, invocation
    and CLOSE alike). A live session named through a path (./<id>, <id>/.,
    ../sessions/<id>) is not that session: it is neither used nor closed.
    Nothing inside or outside the sessions directory is created, changed or
    removed. (test_builtin_manager shows the lookup does not even reach the
    file system.)"""
    ngx = start_nginx()
    sid = new_session(ngx)
    os.makedirs(os.path.join(ngx.dir, "victim"))
    with open(os.path.join(ngx.dir, "victim", ".expiration_ts"), "w") as f:
        f.write("99999999999")
    disguised = [f"./{sid}", f"{sid}/.", f"{sid}/", f"../sessions/{sid}", f"{sid}/../{sid}",
                 f"/{sid}", f"{sid}%00", sid.upper(), sid.replace("-", "")]
    before = snapshot(ngx.dir)
    n = engine.count()
    with Conn(ngx.port) as c:
        for bad in TRICKS + disguised:
            for body in ({"prompt": "x"}, {"requestType": "CLOSE"}):
                c.send(http(body=body, headers=[(SESSION, bad)]))
                r = c.read()
                assert r.status == 400, (bad, r)
                assert detail(r) == f"Bad request: session not found: {bad}", bad
    assert engine.count() == n
    assert snapshot(ngx.dir) == before
    r = ngx.request({"prompt": "x"}, {SESSION: sid})
    assert r.status == 200, "the live session must still be valid"
    assert_healthy(ngx, engine)


def test_ids_with_path_tricks_go_to_the_engine_as_opaque_text(start_nginx, engine):
    """Engine handlers own their sessions: whatever the id, it is passed on
    (header, injected body, close handler body) as text, and the built-in
    sessions directory and everything around it are left alone."""
    ngx = engine_mode(start_nginx, engine)
    before = snapshot(ngx.dir)
    with Conn(ngx.port) as c:
        for bad in TRICKS:
            c.send(http(body={"prompt": "x"}, headers=[(SESSION, bad)]))
            r = c.read()
            assert r.status == 200, (bad, r)
            assert engine.last["headers"][SESSION.lower()].encode("latin-1") == bad.encode()
            assert json.loads(engine.last["body"]) == {"prompt": "x", "session_id": bad}
            c.send(http(body={"requestType": "CLOSE"}, headers=[(SESSION, bad)]))
            r = c.read()
            assert r.status == 200, (bad, r)
            assert r.header(CLOSED_SESSION).encode("latin-1") == bad.encode()
            assert json.loads(engine.to(CLOSE_URI)[-1]["body"]) == {"session_id": bad}
    assert snapshot(ngx.dir) == before
    assert os.listdir(ngx.sessions_path) == []
    assert_healthy(ngx, engine)


# --- every method, HTTP/1.0, keep-alive, pipelining ----------------------------

def engine_takes_every_method(engine):
    """The stub answers HEAD, PATCH, OPTIONS and any other token too."""
    base = engine.server.RequestHandlerClass

    class AnyMethod(base):
        def do_HEAD(self):
            with engine.lock:
                engine.requests.append({"method": "HEAD", "path": self.path, "body": b"",
                                        "headers": {k.lower(): v for k, v in self.headers.items()}})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def __getattr__(self, name):
            if name.startswith("do_"):
                return self._handle
            raise AttributeError(name)

    engine.server.RequestHandlerClass = AnyMethod


METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FROBNICATE"]


@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_every_http_method(start_nginx, engine, mode):
    """The module decides on the header and the body whatever the method (the
    Python library's route takes POST only; SageMaker sends POST): without a
    session header every method reaches the engine as it came; an unknown
    session is a 400 for every method (HEAD: the status and headers only);
    a NEW_SESSION body is a session request on any method, and an engine
    handler is always called with POST. TRACE and CONNECT are nginx's 405."""
    engine_takes_every_method(engine)
    if mode == "builtin":
        ngx = start_nginx()
        sid = new_session(ngx)
        unknown = "6f1c1b1e-8d47-4c3b-9a4e-2f1e0c9b7a11"
    else:
        ngx = engine_mode(start_nginx, engine, inject=False)
        sid = unknown = None
    with Conn(ngx.port) as c:
        for method in METHODS:
            head = method == "HEAD"
            body = b"" if method in ("GET", "HEAD", "OPTIONS") else b"payload \x00\xff"
            n = engine.count()
            c.send(http(method, body))
            r = c.read(head=head)
            assert r.status == 200, (method, r)
            assert engine.count() == n + 1
            assert engine.last["method"] == method
            assert engine.last["body"] == body
            if mode == "builtin":
                c.send(http(method, body, [(SESSION, sid)]))
                r = c.read(head=head)
                assert r.status == 200, (method, r)
                assert engine.last["headers"][SESSION.lower()] == sid
                n = engine.count()
                c.send(http(method, body, [(SESSION, unknown)]))
                r = c.read(head=head)
                assert r.status == 400, (method, r)
                expected = json.dumps({"detail": f"Bad request: session not found: {unknown}"},
                                      separators=(",", ":")).encode()
                assert r.header("Content-Type") == "application/json"
                assert r.body == (b"" if head else expected)
                assert int(r.header("Content-Length")) == len(expected)
                assert engine.count() == n
            if method != "HEAD":
                n = engine.count()
                c.send(http(method, {"requestType": "NEW_SESSION"}))
                r = c.read()
                assert r.status == 200, (method, r)
                assert r.header(NEW_SESSION)
                if mode == "builtin":
                    assert engine.count() == n
                else:
                    assert [(q["method"], q["path"]) for q in engine.requests[n:]] == [("POST", CREATE_URI)]
        n = engine.count()
        c.send(http("HEAD", {"requestType": "NEW_SESSION"}))
        r = c.read(head=True)
        assert r.status == 200, r
        assert r.header(NEW_SESSION) and r.body == b""
    for method in ("TRACE", "CONNECT"):
        r = ngx.request(b"", {SESSION: sid or "x"}, method=method,
                        path=connect_target() if method == "CONNECT" else "/invocations")
        assert r.status == 405, (method, r)
    assert_logged(ngx, "info", "client sent TRACE method")
    if mode == "engine":
        assert [(q["method"], q["path"]) for q in engine.requests[n:]] == [("POST", CREATE_URI)]
    assert_healthy(ngx, engine)


@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_http_10_with_and_without_keepalive(start_nginx, engine, mode):
    """HTTP/1.0: each answer ends the connection unless the client asked to
    keep it; with `Connection: keep-alive` a whole session's life (create,
    use, close, use after close) runs on one connection."""
    ngx = start_mode(start_nginx, engine, mode)
    with Conn(ngx.port) as c:
        c.send(http(body={"requestType": "NEW_SESSION"}, version="1.0"))
        r = c.read()
        assert r.status == 200, r
        assert r.header("Connection") == "close"
        sid = r.header(NEW_SESSION).split(";")[0]
        assert c.closed_by_peer()
    with Conn(ngx.port) as c:
        c.send(http(body={"prompt": "one-oh"}, headers=[sid_header(sid)], version="1.0"))
        r = c.read()
        assert r.status == 200, r
        assert json.loads(engine.last["body"]) == {"prompt": "one-oh", "session_id": sid}
        assert c.closed_by_peer()
    with Conn(ngx.port) as c:
        c.send(http(body=b"", version="1.0", length=False))   # no Content-Length: no body
        assert c.read().status == 200
        assert c.closed_by_peer()

    keep = [("Connection", "keep-alive")]
    with Conn(ngx.port) as c:
        c.send(http(body={"requestType": "NEW_SESSION"}, headers=keep, version="1.0"))
        r = c.read()
        assert r.status == 200 and r.header("Connection") == "keep-alive", r
        sid = r.header(NEW_SESSION).split(";")[0]
        c.send(http(body={"prompt": "kept"}, headers=keep + [sid_header(sid)], version="1.0"))
        r = c.read()
        assert r.status == 200 and r.header("Connection") == "keep-alive", r
        assert json.loads(engine.last["body"]) == {"prompt": "kept", "session_id": sid}
        c.send(http(body={"requestType": "CLOSE"}, headers=keep + [sid_header(sid)], version="1.0"))
        r = c.read()
        assert r.status == 200 and r.header(CLOSED_SESSION) == sid, r
        c.send(http(body={"requestType": "CLOSE"}, headers=keep, version="1.0"))
        r = c.read()
        assert r.status == 400 and r.header("Connection") == "keep-alive", r
        assert detail(r) == "Session ID is required in request headers to close a session"
        c.send(http(body={"requestType": "OPEN"}, version="1.0"))
        r = c.read()
        assert r.status == 400 and r.header("Connection") == "close", r
        assert c.closed_by_peer()
    if mode == "builtin":
        r = ngx.request({"prompt": "x"}, {SESSION: sid})
        assert r.status == 400 and detail(r) == f"Bad request: session not found: {sid}"
    assert_healthy(ngx, engine)


@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_keepalive_reuse_and_pipelining(start_nginx, engine, mode):
    """One connection, many requests: create, use, invalid, malformed,
    close, use after close, answered in order without the connection
    dropping; then the same as one pipelined batch (all requests in one
    write), including a chunked one, errors in the middle, and a last
    request that closes the connection. (test_engine_handlers has a plain keep-alive
    create/close/invocation through engine handlers.)"""
    ngx = start_mode(start_nginx, engine, mode)
    unknown = "6f1c1b1e-8d47-4c3b-9a4e-2f1e0c9b7a11"
    with Conn(ngx.port) as c:
        for _ in range(3):
            c.send(http(body={"requestType": "NEW_SESSION"}))
            r = c.read()
            assert r.status == 200, r
            sid = r.header(NEW_SESSION).split(";")[0]
            c.send(http(body={"prompt": "a"}, headers=[sid_header(sid)]))
            r = c.read()
            assert r.status == 200, r
            assert json.loads(engine.last["body"]) == {"prompt": "a", "session_id": sid}
            c.send(http(body=b"not json", headers=[sid_header(sid)]))
            r = c.read()
            assert r.status == 400 and detail(r) == NOT_AN_OBJECT, r
            c.send(http(body={"requestType": "OPEN"}, headers=[sid_header(sid)]))
            assert c.read().status == 400
            c.send(http(body={"requestType": "CLOSE"}, headers=[sid_header(sid)]))
            r = c.read()
            assert r.status == 200 and r.header(CLOSED_SESSION) == sid, r
            if mode == "builtin":
                c.send(http(body={"prompt": "b"}, headers=[sid_header(sid)]))
                r = c.read()
                assert r.status == 400 and detail(r) == f"Bad request: session not found: {sid}", r
                c.send(http(body={"prompt": "b"}, headers=[sid_header(unknown)]))
                assert c.read().status == 400

    sid = new_session(ngx) if mode == "builtin" else "engine-pipelined"
    n = engine.count()
    batch = [
        (http(body={"requestType": "NEW_SESSION"}), lambda r: r.status == 200 and r.header(NEW_SESSION)),
        (http(body={"prompt": "p1"}, headers=[sid_header(sid)]), lambda r: r.status == 200),
        (http("GET"), lambda r: r.status == 200),
        (b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
         + f"{SESSION}: {sid}\r\n\r\n".encode() + chunked(b'{"prompt": "p2"}', 3),
         lambda r: r.status == 200),
        (http(body=b"[" + b"1," * 5000 + b"1]", headers=[sid_header(sid)]),        # 400 before the engine
         lambda r: r.status == 400 and detail(r) == NOT_AN_OBJECT),
        (http(body={"requestType": "NEW_SESSION", "x": 1}),
         lambda r: r.status == 400 and "unexpected key" in detail(r)),
        (http(body={"requestType": "CLOSE"}, headers=[sid_header(sid)]),
         lambda r: r.status == 200 and r.header(CLOSED_SESSION) == sid),
        (http(body={"prompt": "p3"}, headers=[sid_header(sid)], close=True),
         (lambda r: r.status == 400) if mode == "builtin" else (lambda r: r.status == 200)),
    ]
    with Conn(ngx.port) as c:
        c.send(b"".join(req for req, _ in batch))
        for i, (_, check) in enumerate(batch):
            r = c.read(head=False)
            assert r is not None and check(r), (i, r)
        assert c.closed_by_peer()
    sent = [json.loads(q["body"]) if q["body"] else None
            for q in engine.requests[n:] if q["path"] == "/invocations"]
    expected = [{"prompt": "p1", "session_id": sid}, None, {"prompt": "p2", "session_id": sid}]
    if mode == "engine":
        expected.append({"prompt": "p3", "session_id": sid})
    assert sent == expected
    assert_healthy(ngx, engine)


@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_pipelined_bodies_read_where_they_lie(start_nginx, engine, mode):
    """Without injection, a body that came in whole with its header is looked
    at where nginx received it, not read first: one passed on is read by the
    proxy, one answered here is discarded, and either way exactly its
    Content-Length is taken, so the request after it in the same write is
    parsed from its first byte. A body that arrives after its header takes
    the reading path, on the same connection."""
    if mode == "builtin":
        ngx = start_nginx(location="sagemaker_session_manager;")
        sid = new_session(ngx)
    else:
        ngx = engine_mode(start_nginx, engine, inject=False)
        sid = "engine-pipelined"
    unknown = "6f1c1b1e-8d47-4c3b-9a4e-2f1e0c9b7a11"
    n = engine.count()
    batch = [
        (http(body={"requestType": "NEW_SESSION"}), lambda r: r.status == 200 and r.header(NEW_SESSION)),
        (http(body={"prompt": "p1"}, headers=[sid_header(sid)]), lambda r: r.status == 200),
        (http(body={"prompt": "p2"}, headers=[sid_header(unknown)]),
         (lambda r: r.status == 400) if mode == "builtin" else (lambda r: r.status == 200)),
        (http(body=b'{"prompt": "' + b"x" * 300 + b'"}', headers=[sid_header(sid)]), lambda r: r.status == 200),
        (http(body={"requestType": "CLOSE"}, headers=[sid_header(sid)]),
         lambda r: r.status == 200 and r.header(CLOSED_SESSION) == sid),
        (http(body={"prompt": "p4"}, headers=[sid_header(sid)]),
         (lambda r: r.status == 400) if mode == "builtin" else (lambda r: r.status == 200)),
        (http(body={"prompt": "p5"}), lambda r: r.status == 200),
    ]
    with Conn(ngx.port) as c:
        c.send(b"".join(req for req, _ in batch))
        for i, (_, check) in enumerate(batch):
            r = c.read(head=False)
            assert r is not None and check(r), (i, r)
        late = http(body={"prompt": "p6"}, headers=[sid_header(unknown if mode == "builtin" else sid)])
        cut = late.index(b"\r\n\r\n") + 4
        c.send(late[:cut])
        time.sleep(0.2)
        c.send(late[cut:])
        r = c.read(head=False)
        assert r is not None and r.status == (400 if mode == "builtin" else 200), r
        c.send(http(body={"prompt": "p7"}))
        r = c.read(head=False)
        assert r is not None and r.status == 200, r
    sent = [json.loads(q["body"]) for q in engine.requests[n:] if q["path"] == "/invocations"]
    expected = [{"prompt": "p1"}, {"prompt": "x" * 300}, {"prompt": "p5"}, {"prompt": "p7"}]
    if mode == "engine":
        expected = [{"prompt": "p1"}, {"prompt": "p2"}, {"prompt": "x" * 300}, {"prompt": "p4"}, {"prompt": "p5"},
                    {"prompt": "p6"}, {"prompt": "p7"}]
    assert sent == expected
    assert_healthy(ngx, engine)
