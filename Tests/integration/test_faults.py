"""Faults while nginx runs (issue "Reliability", item 4).

The sessions directory deleted, read-only or full; the engine down, slow, or
closing mid-response, with the built-in manager and with engine handlers;
`nginx -s reload` and a worker killed with SIGKILL while requests are in
flight. No session is lost or half-written, and every answer is one the SPEC
allows. (Engine down/slow with engine handlers, and a plain-text create
answer cut short, are in test_engine_handlers.py.)
"""

import errno
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid

import pytest

from harness import (CLOSE_URI, CLOSED_SESSION, CREATE_URI, HANDLER_LOCATIONS, NEW_SESSION, SESSION, Reply,
                     close_session, detail, free_port, new_session, raw_request,
                     workdir)
from harness import HANDLERS as ENGINE_HANDLERS

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
EXPIRES = re.compile(r"^Expires=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
HANDLERS = "sagemaker_session_manager; " + ENGINE_HANDLERS


def mount(*args):
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def unmount(path):
    subprocess.run(["umount", "-l", path], capture_output=True)


@pytest.fixture
def mounts():
    """Mount points to unmount after the test, whatever happens."""
    points = []
    yield points
    for p in reversed(points):
        unmount(p)


def cannot_mount():
    """Why a tmpfs cannot be mounted here (mount(2) needs CAP_SYS_ADMIN in
    the mount namespace nginx runs in), or None."""
    probe = workdir()
    try:
        mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", probe)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        return ("mounting needs CAP_SYS_ADMIN: "
                + str(getattr(e, "stderr", "") or e).strip())
    unmount(probe)
    return None


def sessions_on_disk(path):
    return sorted(n for n in os.listdir(path) if UUID.match(n))


def write_session(path, sid, expires_at):
    d = os.path.join(path, sid)
    os.makedirs(d)
    with open(os.path.join(d, ".expiration_ts"), "w") as f:
        json.dump(expires_at, f)
    return d


def assert_not_found(r, sid):
    assert r.status == 400, r
    assert detail(r) == f"Bad request: session not found: {sid}", r


def assert_created(r):
    assert r.status == 200, r
    value = r.header(NEW_SESSION)
    sid, expires = (part.strip() for part in value.split(";"))
    assert UUID.match(sid) and EXPIRES.match(expires), value
    assert r.body == f"Session {sid} created".encode()
    return sid


# --- 1. the sessions directory: deleted, read-only, full ----------------------

def test_sessions_directory_deleted_is_recreated_on_create(start_nginx, engine):
    """Like /dev/shm, the parent lets the workers create the directory again.
    The sessions that were in it are gone (the files are the truth); the next
    NEW_SESSION makes the directory again and works, in every worker."""
    d = workdir()
    parent = os.path.join(d, "shm")
    os.makedirs(parent)
    os.chmod(parent, 0o1777)
    path = os.path.join(parent, "sessions")
    ngx = start_nginx(sessions=False, directory=d, workers=2, listen="reuseport",
                 http=f"sagemaker_sessions on; sagemaker_sessions_path {path};")
    before = [new_session(ngx) for _ in range(3)]
    for sid in before:
        assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    shutil.rmtree(path)
    for sid in before:
        assert_not_found(ngx.request({"p": 1}, {SESSION: sid}), sid)
        assert_not_found(close_session(ngx, sid), sid)
    after = [assert_created(ngx.request({"requestType": "NEW_SESSION"})) for _ in range(4)]
    assert os.path.isdir(path)
    assert sessions_on_disk(path) == sorted(after)
    for sid in after:
        for _ in range(3):   # both workers
            assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    assert close_session(ngx, after[0]).status == 200
    assert_not_found(ngx.request({"p": 1}, {SESSION: after[0]}), after[0])
    assert "sessions directory" in ngx.error_log and "[warn]" in ngx.error_log, ngx.error_log


def test_sessions_directory_replaced_while_nginx_runs(start_nginx, engine):
    """Workers hold the sessions directory open, but the path is the truth:
    moved away and made again (as a cleanup job might), the old sessions are
    gone, new ones are made in the new directory, and sessions another
    process writes there are valid, in every worker."""
    ngx = start_nginx(workers=2, listen="reuseport")
    before = [new_session(ngx) for _ in range(4)]
    for sid in before:
        assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    old = ngx.sessions_path + ".old"
    st = os.stat(ngx.sessions_path)
    os.rename(ngx.sessions_path, old)
    os.mkdir(ngx.sessions_path)
    os.chown(ngx.sessions_path, st.st_uid, st.st_gid)
    theirs = str(uuid.uuid4())
    write_session(ngx.sessions_path, theirs, time.time() + 600)
    for sid in before:
        assert_not_found(ngx.request({"p": 1}, {SESSION: sid}), sid)
    after = [assert_created(ngx.request({"requestType": "NEW_SESSION"})) for _ in range(6)]
    assert sessions_on_disk(ngx.sessions_path) == sorted(after + [theirs])
    assert sessions_on_disk(old) == sorted(before)
    for sid in after + [theirs]:
        for _ in range(3):   # both workers
            assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    for sid in after:
        assert close_session(ngx, sid).status == 200
    assert sessions_on_disk(ngx.sessions_path) == [theirs]
    assert sessions_on_disk(old) == sorted(before)
    assert "[warn]" not in ngx.error_log and "[error]" not in ngx.error_log, ngx.error_log


def test_sessions_directory_replaced_after_the_sweep_looked_at_it(start_nginx, engine):
    """The sweep's timer opens the sessions directory too, in turns of the
    event loop with no request in them; those turns end like any other, so
    the first request after the directory is replaced sees the new one."""
    ngx = start_nginx(workers=1, http="sagemaker_sessions_expiration 10s;")  # a pass every second
    before = new_session(ngx)
    time.sleep(2.5)   # idle: only the sweep's passes run
    st = os.stat(ngx.sessions_path)
    os.rename(ngx.sessions_path, ngx.sessions_path + ".old")
    os.mkdir(ngx.sessions_path)
    os.chown(ngx.sessions_path, st.st_uid, st.st_gid)
    assert_not_found(ngx.request({"p": 1}, {SESSION: before}), before)
    after = assert_created(ngx.request({"requestType": "NEW_SESSION"}))
    assert sessions_on_disk(ngx.sessions_path) == [after]


def test_sessions_directory_deleted_where_workers_cannot_recreate_it(start_nginx, engine):
    """The parent is root's (0755): NEW_SESSION is a 424 with an [error] line
    until the directory is back; made again by hand, or by a reload, it works
    without a restart."""
    ngx = start_nginx(workers=2)
    sid = new_session(ngx)
    st = os.stat(ngx.sessions_path)
    shutil.rmtree(ngx.sessions_path)
    assert_not_found(ngx.request({"p": 1}, {SESSION: sid}), sid)
    assert_not_found(close_session(ngx, sid), sid)
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 424, r
    assert detail(r).startswith("Failed to create session: "), r
    assert r.header(NEW_SESSION) is None
    assert "[error]" in ngx.error_log and "failed to create session" in ngx.error_log
    assert not os.path.exists(ngx.sessions_path)
    # an administrator makes it again, for the workers' user
    os.mkdir(ngx.sessions_path)
    os.chown(ngx.sessions_path, st.st_uid, st.st_gid)
    sid = assert_created(ngx.request({"requestType": "NEW_SESSION"}))
    assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    # or a reload does, as start-up does
    shutil.rmtree(ngx.sessions_path)
    ngx.reload()
    assert os.path.isdir(ngx.sessions_path)
    assert_not_found(ngx.request({"p": 1}, {SESSION: sid}), sid)
    sid = assert_created(ngx.request({"requestType": "NEW_SESSION"}))
    assert close_session(ngx, sid).status == 200


def test_sessions_directory_read_only(start_nginx, engine, mounts):
    """A read-only (bind) mount: root is refused too, so this is what any
    worker user sees. Creating and closing are 424s with an [error] line and
    change nothing; lookups keep working; an expired session is refused every
    time though it cannot be removed; writable again, everything works."""
    reason = cannot_mount()
    if reason:
        pytest.skip(f"cannot bind-mount read-only here: {reason}")
    ngx = start_nginx(workers=2)
    live = new_session(ngx)
    expired = str(uuid.uuid4())
    write_session(ngx.sessions_path, expired, time.time() - 5)
    mount("--bind", ngx.sessions_path, ngx.sessions_path)
    mounts.append(ngx.sessions_path)
    mount("-o", "remount,bind,ro", ngx.sessions_path)
    with pytest.raises(OSError) as e:
        os.mkdir(os.path.join(ngx.sessions_path, "probe"))
    assert e.value.errno == errno.EROFS
    on_disk = sorted(os.listdir(ngx.sessions_path))

    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 424, r
    assert detail(r) == "Failed to create session: Read-only file system"
    r = close_session(ngx, live)
    assert r.status == 424, r
    assert detail(r) == "Failed to close session: Read-only file system"
    assert r.header(CLOSED_SESSION) is None
    for _ in range(4):
        assert ngx.request({"p": 1}, {SESSION: live}).status == 200
        r = ngx.request({"p": 1}, {SESSION: expired})
        assert r.status == 400 and "session " in detail(r) and expired in detail(r), r
    assert sorted(os.listdir(ngx.sessions_path)) == on_disk
    log = ngx.error_log
    assert "[error]" in log and "failed to create session: Read-only" in log
    assert "failed to close session: Read-only" in log

    unmount(ngx.sessions_path)
    mounts.remove(ngx.sessions_path)
    assert close_session(ngx, live).status == 200
    assert_not_found(ngx.request({"p": 1}, {SESSION: live}), live)
    sid = assert_created(ngx.request({"requestType": "NEW_SESSION"}))
    assert ngx.request({"p": 1}, {SESSION: sid}).status == 200


def fill(directory):
    """Writes a file until the file system is full; returns its path."""
    path = os.path.join(directory, ".filler")
    with open(path, "wb", buffering=0) as f:
        chunk = b"\0" * 4096
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return path


@pytest.mark.parametrize("limit", ["bytes", "inodes"])
def test_sessions_directory_full(start_nginx, engine, mounts, limit):
    """The sessions directory is a small tmpfs (a tiny /dev/shm): filled up,
    NEW_SESSION is a 424 `No space left on device` with an [error] line and
    leaves nothing behind (no directory without its .expiration_ts); live
    sessions are served and can be closed; with room again, creating works."""
    reason = cannot_mount()
    if reason:
        pytest.skip(f"cannot mount a small tmpfs here: {reason}")
    d = workdir()
    path = os.path.join(d, "sessions")
    os.mkdir(path)
    mount("-t", "tmpfs", "-o", "size=256k,nr_inodes=64,mode=0755", "tmpfs", path)
    mounts.append(path)
    ngx = start_nginx(directory=d, workers=2)
    live = [new_session(ngx) for _ in range(4)]
    if limit == "bytes":
        filler = [fill(path)]
    else:
        filler = []
        while True:   # empty files until no inode is left
            p = os.path.join(path, f".inode-{len(filler)}")
            try:
                open(p, "w").close()
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
            filler.append(p)
    for _ in range(3):
        r = ngx.request({"requestType": "NEW_SESSION"})
        assert r.status == 424, r
        assert detail(r) == "Failed to create session: No space left on device"
        assert r.header(NEW_SESSION) is None
    assert sessions_on_disk(path) == sorted(live)   # nothing half-made left
    log = ngx.error_log
    assert "[error]" in log and "failed to create session: No space left on device" in log
    for sid in live:
        assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    assert close_session(ngx, live[0]).status == 200
    assert_not_found(ngx.request({"p": 1}, {SESSION: live[0]}), live[0])

    for p in filler:
        os.unlink(p)
    sid = assert_created(ngx.request({"requestType": "NEW_SESSION"}))
    assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    assert sessions_on_disk(path) == sorted(live[1:] + [sid])


# --- 2. half-written sessions --------------------------------------------------

def test_half_written_sessions_are_never_sessions(start_nginx, engine):
    """What a create or a close cut short (a crash between its steps) can
    leave: a directory without .expiration_ts, with an empty one, with a
    partial number (any prefix of the number is a time in the past), with
    garbage; a closed session renamed out of sight but not yet removed.
    Requests with those ids are refused and never reach the engine; the
    sweep removes them all."""
    ngx = start_nginx(http="sagemaker_sessions_expiration 1s;", workers=2)
    future = json.dumps(time.time() + 600)
    leftovers = {
        "no file": None,
        "empty": "",
        "partial number": future[:4],
        "partial decimal": future.split(".")[0] + ".",
        "garbage": "{\"expiration\": ",
        "not a number": "\"" + future + "\"",
    }
    ids = {}
    for kind, content in leftovers.items():
        sid = str(uuid.uuid4())
        ids[kind] = sid
        d = os.path.join(ngx.sessions_path, sid)
        os.mkdir(d)
        if content is not None:
            with open(os.path.join(d, ".expiration_ts"), "w") as f:
                f.write(content)
    renamed = str(uuid.uuid4())
    gone = os.path.join(ngx.sessions_path, f".gone-{renamed}-3k2j1")
    write_session(ngx.sessions_path, renamed, time.time() + 600)
    os.rename(os.path.join(ngx.sessions_path, renamed), gone)
    ids["renamed away"] = renamed
    # left by a worker (its user's files), long enough ago that no create
    # can still be writing them
    owner = os.stat(ngx.sessions_path)
    old = time.time() - 3600
    for name in os.listdir(ngx.sessions_path):
        d = os.path.join(ngx.sessions_path, name)
        for p in [d] + [os.path.join(d, f) for f in os.listdir(d)]:
            os.chown(p, owner.st_uid, owner.st_gid)
        os.utime(d, (old, old))

    for kind, sid in ids.items():
        for _ in range(2):
            r = ngx.request({"p": 1}, {SESSION: sid})
            assert r.status == 400, (kind, r)
            assert detail(r) in (f"Bad request: session not found: {sid}",
                                 f"Bad request: session expired: {sid}"), (kind, r)
        r = close_session(ngx, sid)
        assert r.status == 400 and sid in detail(r), (kind, r)
    assert engine.count() == 0
    deadline = time.time() + 10
    while os.listdir(ngx.sessions_path) and time.time() < deadline:
        time.sleep(0.2)
    assert os.listdir(ngx.sessions_path) == []
    assert_created(ngx.request({"requestType": "NEW_SESSION"}))


# --- 3. the engine: down, slow, closing mid-response --------------------------

def test_builtin_engine_down(start_nginx, engine):
    """Sessions are nginx's business: with nothing listening behind it,
    NEW_SESSION, CLOSE and the session check still answer; only an
    invocation with a valid session reaches for the engine and gets 502."""
    ngx = start_nginx(engine_port=free_port(), location="sagemaker_session_manager session_id_path=sid;")
    sid = new_session(ngx)
    for _ in range(3):
        r = ngx.request({"p": 1}, {SESSION: sid})
        assert r.status == 502, r
        assert r.header(NEW_SESSION) is None
    unknown = str(uuid.uuid4())
    assert_not_found(ngx.request({"p": 1}, {SESSION: unknown}), unknown)
    assert close_session(ngx, sid).status == 200
    assert_not_found(ngx.request({"p": 1}, {SESSION: sid}), sid)
    assert "[error]" in ngx.error_log and "connect() failed" in ngx.error_log


def test_builtin_engine_slow(start_nginx, engine):
    """An engine slower than proxy_read_timeout: 504, and the session is as
    it was (a later fast request with it passes)."""
    def answer(record):
        if b"slow" in record["body"]:
            return Reply.json({"late": True}, delay=2.5)
        return Reply.json({"engine": "ok"})
    engine.respond("/invocations", answer)
    ngx = start_nginx(location="sagemaker_session_manager; proxy_read_timeout 1s;")
    sid = new_session(ngx)
    r = ngx.request({"p": "slow"}, {SESSION: sid})
    assert r.status == 504, r
    r = ngx.request({"p": "fast"}, {SESSION: sid})
    assert r.status == 200 and r.json() == {"engine": "ok"}, r
    assert close_session(ngx, sid).status == 200


def cut_chunked(body, keep):
    """A chunked answer that stops after `keep` bytes, without its last chunk."""
    def answer(record):
        data = f"{len(body):x}\r\n".encode() + body[:keep]
        return (200, [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked"),
                      ("Connection", "close")], data)
    return answer


CUTS = {
    "headers only": Reply.json({"engine": "ok", "pad": "x" * 200}, truncate=0),
    "body cut short": Reply.json({"engine": "ok", "pad": "x" * 200}, truncate=40),
    # the bytes that arrive are a complete JSON document; Content-Length says more
    "complete-looking prefix": Reply(b'{"engine": "ok"}' + b" " * 200, truncate=16),
    "chunked, no last chunk": cut_chunked(b'{"engine": "ok"}' + b" " * 200, 16),
}


def parse_raw(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith(b"HTTP/") else None
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    return status, headers, body


def complete(headers, body):
    """Could a client take this answer as whole?"""
    if "content-length" in headers:
        return len(body) == int(headers["content-length"])
    if headers.get("transfer-encoding") == "chunked":
        return body.endswith(b"0\r\n\r\n")
    return True


def post_raw(port, body, headers):
    data = json.dumps(body).encode()
    head = "POST /invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    return parse_raw(raw_request(port, head.encode() + data, timeout=10))


@pytest.mark.parametrize("cut", list(CUTS))
def test_builtin_engine_closing_mid_response(start_nginx, engine, cut):
    """The engine sends its headers, then closes before the end of its body.
    nginx has already passed the headers on; the client must be able to tell
    the answer is cut (fewer bytes than Content-Length, or no last chunk), or
    get a 502. The session is untouched and the next requests work."""
    engine.respond("/invocations", lambda record: (
        CUTS[cut](record) if callable(CUTS[cut]) else CUTS[cut]) if b"cut" in record["body"]
        else Reply.json({"engine": "ok"}))
    ngx = start_nginx(location="sagemaker_session_manager session_id_path=sid;")
    sid = new_session(ngx)
    for _ in range(3):
        status, headers, body = post_raw(ngx.port, {"p": "cut"}, {SESSION: sid})
        assert status in (200, 502), (status, headers, body)
        if status == 200:
            assert not complete(headers, body), (headers, body)
        r = ngx.request({"p": "whole"}, {SESSION: sid})
        assert r.status == 200 and r.json() == {"engine": "ok"}, r
    assert "upstream prematurely closed" in ngx.error_log, ngx.error_log
    assert close_session(ngx, sid).status == 200
    assert_not_found(ngx.request({"p": "whole"}, {SESSION: sid}), sid)


HANDLER_CUTS = {
    "headers only": Reply.json({"session_id": "abc-123"}, truncate=0),
    "complete JSON, Content-Length says more": Reply(b'{"session_id": "abc-123"}' + b" " * 100,
                                                     truncate=25),
    "chunked, no last chunk": cut_chunked(b'{"session_id": "abc-123"}', 25),
}


@pytest.mark.parametrize("cut", list(HANDLER_CUTS))
def test_engine_handler_closing_mid_response(start_nginx, engine, cut):
    """Engine handlers: the engine's answer to the session subrequest is cut
    short, though what arrived may parse (a whole JSON object with an id):
    never a 200 with that id, a 502 with a JSON detail and an [error] line;
    the next session requests work."""
    answer = HANDLER_CUTS[cut]
    engine.respond(CREATE_URI, answer)
    engine.respond(CLOSE_URI, answer)
    ngx = start_nginx(location=HANDLERS, server=HANDLER_LOCATIONS)
    for body, headers, echo in (({"requestType": "NEW_SESSION"}, {}, NEW_SESSION),
                                ({"requestType": "CLOSE"}, {SESSION: "abc-123"}, CLOSED_SESSION)):
        r = ngx.request(body, headers)
        assert r.status == 502, (body, r)
        assert r.header(echo) is None
        assert b"abc-123" not in r.body
    assert "[error]" in ngx.error_log
    engine.respond(CREATE_URI, Reply.json({"session_id": "abc-123"}))
    engine.respond(CLOSE_URI, Reply.json({}))
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 200 and r.header(NEW_SESSION) == "abc-123", r
    r = close_session(ngx, "abc-123")
    assert r.status == 200 and r.header(CLOSED_SESSION) == "abc-123", r


def test_engine_handler_invocation_engine_closing_mid_response(start_nginx, engine):
    """With engine handlers, an invocation (id injected) whose answer is cut:
    the client can tell; the next invocation works."""
    engine.respond("/invocations", lambda record: CUTS["complete-looking prefix"]
                   if b"cut" in record["body"] else Reply.json({"engine": "ok"}))
    ngx = start_nginx(location=HANDLERS.replace("sagemaker_session_manager;",
                                           "sagemaker_session_manager session_id_path=sid;"),
                 server=HANDLER_LOCATIONS)
    status, headers, body = post_raw(ngx.port, {"p": "cut"}, {SESSION: "engine-sid"})
    assert status in (200, 502)
    if status == 200:
        assert not complete(headers, body), (headers, body)
    r = ngx.request({"p": "whole"}, {SESSION: "engine-sid"})
    assert r.status == 200 and r.json() == {"engine": "ok"}, r
    assert json.loads(engine.last["body"]) == {"p": "whole", "sid": "engine-sid"}


# --- 4. reload and SIGKILL with requests in flight ------------------------------

def body_json(answer):
    try:
        value = json.loads(answer[2])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Clients:
    """Threads that each walk sessions through their life: create, use a few
    times, close, use once more. Each thread owns its sessions, so the right
    answer to every request is known. A request that gets no answer (its
    connection broke) leaves the outcome open: a lost create may have made a
    session nobody knows (`orphans`), a lost close is repeated.

    Every answer received is checked against the SPEC; `violations` lists
    the ones it does not allow.
    """

    def __init__(self, ngx, threads=8, keepalive=True):
        self.ngx = ngx
        self.keepalive = keepalive
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.live = set()
        self.closed = set()
        self.violations = []
        self.transport_errors = 0
        self.lost_creates = 0
        self.answers = 0
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(threads)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def send(self, conn, body, headers):
        """(conn, response or None)."""
        data = json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **headers}
        if not self.keepalive:
            hdrs["Connection"] = "close"
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.ngx.port, timeout=20)
            conn.request("POST", "/invocations", body=data, headers=hdrs)
            r = conn.getresponse()
            answer = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        except (OSError, http.client.HTTPException):
            conn.close()
            with self.lock:
                self.transport_errors += 1
            return None, None
        with self.lock:
            self.answers += 1
        if not self.keepalive or answer[1].get("connection") == "close":
            conn.close()
            conn = None
        return conn, answer

    def violation(self, what, answer):
        with self.lock:
            self.violations.append((what, answer[0], answer[1], answer[2][:200]))

    def run(self, index):
        self.cycle(index)
        # and one session each left live, for check_after
        _, a = self.send(None, {"requestType": "NEW_SESSION"}, {})
        if a is not None and a[0] == 200:
            with self.lock:
                self.live.add(a[1][NEW_SESSION.lower()].split(";")[0].strip())

    def cycle(self, index):
        rng = random.Random(index)
        conn = None
        while not self.stop.is_set():
            conn, a = self.send(conn, {"requestType": "NEW_SESSION"}, {})
            if a is None:
                with self.lock:
                    self.lost_creates += 1
                continue
            value = a[1].get(NEW_SESSION.lower(), "")
            sid = value.split(";")[0].strip()
            if a[0] != 200 or not UUID.match(sid) or a[2] != f"Session {sid} created".encode():
                self.violation("create", a)
                continue
            with self.lock:
                self.live.add(sid)
            for _ in range(rng.randint(1, 4)):
                conn, a = self.send(conn, {"p": index}, {SESSION: sid})
                if a is not None and (a[0] != 200 or body_json(a).get("engine") != "ok"):
                    self.violation(f"use of live {sid}", a)
            if self.stop.is_set():
                return   # leaves this one live
            # a close without an answer is sent again: then 200, or 400 if the
            # first one did it
            lost = 0
            while True:
                conn, a = self.send(conn, {"requestType": "CLOSE"}, {SESSION: sid})
                if a is None:
                    lost += 1
                    if lost > 20:
                        self.violation(f"close of {sid} never answered", (0, {}, b""))
                        break
                    continue
                if a[0] == 200 and a[1].get(CLOSED_SESSION.lower()) == sid:
                    break
                if lost and a[0] == 400 and body_json(a).get("detail") == f"Bad request: session not found: {sid}":
                    break
                self.violation(f"close of {sid}", a)
                break
            with self.lock:
                self.live.discard(sid)
                self.closed.add(sid)
            conn, a = self.send(conn, {"p": index}, {SESSION: sid})
            if a is not None and (a[0] != 400 or body_json(a).get("detail")
                                  != f"Bad request: session not found: {sid}"):
                self.violation(f"use of closed {sid}", a)

    def check_after(self, graceful=False):
        """Once the faults are over: every session known live is usable and
        closes once; every closed one is refused; on disk there is nothing
        else but what lost creates may have made (nothing at all after a
        graceful reload, where a request without an answer was never read),
        and each of those is a whole session or is refused."""
        ngx = self.ngx
        for sid in sorted(self.closed):
            r = ngx.request({"p": 1}, {SESSION: sid})
            assert r.status == 400, (sid, r)
        on_disk = set(sessions_on_disk(ngx.sessions_path))
        assert self.live <= on_disk
        unknown = on_disk - self.live
        assert len(unknown) <= (0 if graceful else self.lost_creates), (unknown, self.lost_creates)
        for sid in sorted(self.live):
            assert ngx.request({"p": 1}, {SESSION: sid}).status == 200, sid
            assert close_session(ngx, sid).status == 200, sid
        for sid in unknown:
            expiration = os.path.join(ngx.sessions_path, sid, ".expiration_ts")
            r = ngx.request({"p": 1}, {SESSION: sid})
            if os.path.exists(expiration) and os.path.getsize(expiration):
                assert r.status == 200, (sid, r)   # a whole session, answer lost
            else:
                assert_not_found(r, sid)           # cut between mkdir and write


def wait_workers(ngx, count, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        pids = ngx.worker_pids()
        if len(pids) == count:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"workers: {ngx.worker_pids()}")


def test_worker_killed_with_requests_in_flight(start_nginx, engine):
    """SIGKILL a worker, again and again, while threads create, use and close
    sessions over keep-alive connections. The master starts a new worker
    each time; every answer received is one the SPEC allows; afterwards every
    session seen created is usable (or was seen closed, and is refused)."""
    ngx = start_nginx(workers=2, http="sagemaker_sessions_expiration 1h;")
    rng = random.Random(7)
    with Clients(ngx, threads=8) as clients:
        time.sleep(1)
        for _ in range(6):
            victim = rng.choice(sorted(wait_workers(ngx, 2)))
            os.kill(victim, signal.SIGKILL)
            ngx.killed.add(victim)
            time.sleep(0.7)
    wait_workers(ngx, 2)
    assert not clients.violations, clients.violations[:5]
    assert clients.answers > 200, clients.answers
    assert clients.live, "no session left live to check"
    clients.check_after()
    log = ngx.error_log
    assert sum(f"process {pid} exited on signal 9" in log for pid in ngx.killed) == len(ngx.killed)


@pytest.mark.parametrize("keepalive", [False, True], ids=["new connections", "keep-alive"])
def test_reload_with_requests_in_flight(start_nginx, engine, keepalive):
    """`nginx -s reload` three times while threads create, use and close
    sessions: every answer is one the SPEC allows, and afterwards every
    session is as the clients left it. On new connections every request is
    answered; on keep-alive connections the old workers close the idle ones,
    and a request sent on one at that instant is never read (no session
    appears that nobody was told of), as with any nginx reload."""
    ngx = start_nginx(workers=2, http="sagemaker_sessions_expiration 1h;")
    with Clients(ngx, threads=8, keepalive=keepalive) as clients:
        time.sleep(1)
        for _ in range(3):
            ngx.reload()
            time.sleep(0.7)
    assert not clients.violations, clients.violations[:5]
    assert clients.answers > 200, clients.answers
    if not keepalive:
        assert clients.transport_errors == 0
    assert clients.live, "no session left live to check"
    clients.check_after(graceful=True)


def test_sweep_goes_on_after_its_worker_is_killed(start_nginx, engine):
    """Worker 0 sweeps; the master restarts a killed worker in the same slot,
    so expired sessions are still removed without any request."""
    ngx = start_nginx(workers=2, http="sagemaker_sessions_expiration 1s;")
    for victim in sorted(wait_workers(ngx, 2)):
        os.kill(victim, signal.SIGKILL)
        ngx.killed.add(victim)
    wait_workers(ngx, 2)
    for _ in range(10):
        new_session(ngx)
    deadline = time.time() + 10
    while sessions_on_disk(ngx.sessions_path) and time.time() < deadline:
        time.sleep(0.2)
    assert sessions_on_disk(ngx.sessions_path) == []
