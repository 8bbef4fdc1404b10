"""SPEC §4: the on-disk format is the Python library's, the files are the
truth, sessions outlive reloads and restarts, and expired ones are swept."""

import collections
import http.client
import json
import os
import signal
import threading
import time

from model_hosting_container_standards.sagemaker.sessions.manager import Session

from harness import SESSION, Nginx, close_session, new_session


def test_python_session_class_reads_what_nginx_wrote(ngx):
    before = time.time()
    sid = new_session(ngx)
    session = Session(sid, ngx.sessions_path)
    assert isinstance(session.expiration_ts, float)
    assert before + 1200 <= session.expiration_ts <= time.time() + 1200
    # The engine stores its own keys next to it, and nginx keeps honouring it.
    session.put("history", [{"role": "user", "content": "hi"}])
    session.put("a/b", {"x": 1})
    assert Session(sid, ngx.sessions_path).get("history") == [{"role": "user", "content": "hi"}]
    assert os.path.exists(os.path.join(ngx.sessions_path, sid, "a-b"))
    assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    # Closing removes the keys the engine wrote too (files owned by another user).
    assert close_session(ngx, sid).status == 200
    assert not os.path.exists(os.path.join(ngx.sessions_path, sid))


def test_nginx_honours_a_session_the_python_library_wrote(ngx, engine):
    sid = "1c9e5f7a-2b3d-4e6f-8a1b-2c3d4e5f6a7b"
    session = Session(sid, ngx.sessions_path, expiration_ts=time.time() + 300)
    os.makedirs(session.files_path)
    session.put(".expiration_ts", session.expiration_ts)
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert r.status == 200, r
    assert engine.last["headers"][SESSION.lower()] == sid
    # Removing it on disk (as the Python library's close does) is seen at once.
    session.remove()
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert r.status == 400
    assert r.json()["detail"] == f"Bad request: session not found: {sid}"


def test_sessions_written_by_python_can_be_closed_by_nginx(ngx):
    sid = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"
    session = Session(sid, ngx.sessions_path, expiration_ts=time.time() + 300)
    os.makedirs(session.files_path)
    session.put(".expiration_ts", session.expiration_ts)
    session.put("kv", "cache")
    r = close_session(ngx, sid)
    assert r.status == 200, r
    assert not os.path.exists(session.files_path)


def test_sessions_survive_reload(start_nginx):
    ngx = start_nginx(workers=2)
    sids = [new_session(ngx) for _ in range(5)]
    ngx.reload()
    for sid in sids:
        assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    assert close_session(ngx, sids[0]).status == 200
    ngx.reload()
    assert ngx.request({"p": 1}, {SESSION: sids[0]}).status == 400
    assert ngx.request({"p": 1}, {SESSION: sids[1]}).status == 200


def test_sessions_survive_restart(engine):
    first = Nginx(engine.port).start()
    try:
        sids = [new_session(first) for _ in range(3)]
        closed = sids.pop()
        assert close_session(first, closed).status == 200
    finally:
        first.stop()
    assert not first.crashes()
    second = Nginx(engine.port, directory=first.dir).start()
    try:
        for sid in sids:
            assert second.request({"p": 1}, {SESSION: sid}).status == 200
        assert second.request({"p": 1}, {SESSION: closed}).status == 400
    finally:
        second.stop()
    assert not second.crashes()


def test_periodic_sweep_removes_expired_sessions_untouched(start_nginx):
    ngx = start_nginx(http="sagemaker_sessions_expiration 1s;")
    sids = [new_session(ngx) for _ in range(20)]
    # leftovers of an interrupted close, and a stale half-made session
    gone = os.path.join(ngx.sessions_path, ".gone-5d3c-x")
    os.makedirs(gone)
    stale = os.path.join(ngx.sessions_path, "2d3c4b5a-6f7e-4d8c-9b0a-1f2e3d4c5b6a")
    os.makedirs(stale)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    deadline = time.time() + 10
    while time.time() < deadline:
        left = os.listdir(ngx.sessions_path)
        if not left:
            break
        time.sleep(0.2)
    assert os.listdir(ngx.sessions_path) == []
    # ... without any request having touched them
    assert all(f"session expired: {sid}" not in ngx.error_log for sid in sids)


def test_sweep_keeps_live_sessions_and_fresh_half_made_ones(start_nginx):
    ngx = start_nginx(http="sagemaker_sessions_expiration 1s;")
    live = "4e5f6a7b-8c9d-4e0f-8a1b-2c3d4e5f6a7b"
    os.makedirs(os.path.join(ngx.sessions_path, live))
    with open(os.path.join(ngx.sessions_path, live, ".expiration_ts"), "w") as f:
        json.dump(time.time() + 600, f)
    fresh = os.path.join(ngx.sessions_path, "5e5f6a7b-8c9d-4e0f-8a1b-2c3d4e5f6a7b")
    os.makedirs(fresh)  # a create in progress elsewhere: no .expiration_ts yet
    time.sleep(3)
    assert os.path.isdir(os.path.join(ngx.sessions_path, live))
    assert os.path.isdir(fresh)
    assert ngx.request({"p": 1}, {SESSION: live}).status == 200


def test_requests_do_not_scan_the_sessions_directory(start_nginx):
    """With many sessions on disk, a request opens only its own session: a
    directory we make unreadable (but traversable) to the workers would fail
    any scan, and the requests still succeed."""
    ngx = start_nginx(http="sagemaker_sessions_expiration 1h;")
    sids = [new_session(ngx) for _ in range(200)]
    os.chmod(ngx.sessions_path, 0o311)   # -wx--x--x: no listing for anyone but root
    os.chown(ngx.sessions_path, 0, 0)
    try:
        for sid in sids[::20]:
            assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    finally:
        os.chmod(ngx.sessions_path, 0o755)


def test_workers_caches_follow_the_files_at_once(start_nginx):
    """Every worker has seen the session (and cached it); another process
    then rewrites its expiry into the past, or removes it: the very next
    request, whichever worker takes it, is refused."""
    ngx = start_nginx(workers=3, listen="reuseport")
    for change in ("rewrite", "remove"):
        sid = new_session(ngx)
        for _ in range(12):
            assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
        session = Session(sid, ngx.sessions_path)
        if change == "rewrite":
            session.put(".expiration_ts", time.time() - 1)
        else:
            session.remove()
        for _ in range(12):
            r = ngx.request({"p": 1}, {SESSION: sid})
            assert r.status == 400, (change, r)


def test_under_load_every_request_sent_after_a_change_on_disk_sees_it(start_nginx):
    """Workers read changes on disk once per turn of their event loop, not
    once per request: with many keep-alive clients in flight, so that turns
    hold several requests, every request whose sending began after another
    process finished removing the session (or moving its expiry into the
    past) is refused; only requests already on their way may still pass."""
    ngx = start_nginx(workers=2, listen="reuseport")
    body = json.dumps({"p": 1})
    for change in ("remove", "rewrite", "remove"):
        sid = new_session(ngx)
        done = threading.Event()
        results = []   # (monotonic time the request began to be sent, status)

        def client():
            c = http.client.HTTPConnection("127.0.0.1", ngx.port, timeout=10)
            mine = []
            while not done.is_set():
                began = time.monotonic()
                c.request("POST", "/invocations", body=body,
                          headers={SESSION: sid, "Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                mine.append((began, r.status))
            c.close()
            results.extend(mine)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        session = Session(sid, ngx.sessions_path)
        if change == "rewrite":
            session.put(".expiration_ts", time.time() - 1)
        else:
            session.remove()
        changed = time.monotonic()
        time.sleep(0.5)
        done.set()
        for t in threads:
            t.join()
        before = [s for began, s in results if began < changed]
        after = [s for began, s in results if began > changed]
        assert before.count(200) > 50 and len(after) > 50, (change, len(before), len(after))
        assert set(after) == {400}, (change, collections.Counter(after))
