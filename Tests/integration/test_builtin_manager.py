"""SPEC §3.1: the built-in session manager, one test (at least) per row."""

import json
import os
import re
import time

from harness import (detail, raw_request, UUID, CLOSED_SESSION, NEW_SESSION, SESSION, close_session,
                     new_session)




def test_new_session_creates_a_session_with_expiry(ngx, engine):
    before = time.time()
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 200
    value = r.header(NEW_SESSION)
    m = re.fullmatch(r"([0-9a-f-]{36}); Expires=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)", value)
    assert m, value
    sid, expires = m.groups()
    assert UUID.match(sid)
    assert r.body == f"Session {sid} created".encode()
    expected = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before + 1200))
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1200))
    assert expected <= expires <= later
    with open(os.path.join(ngx.sessions_path, sid, ".expiration_ts")) as f:
        ts = json.load(f)
    assert before + 1200 <= ts <= time.time() + 1200
    assert engine.count() == 0, "a session request must not reach the engine"


def test_new_session_ignores_a_session_header(ngx):
    first = new_session(ngx)
    r = ngx.request({"requestType": "NEW_SESSION"}, {SESSION: first})
    assert r.status == 200
    second = r.header(NEW_SESSION).split(";")[0]
    assert second != first and UUID.match(second)
    r = ngx.request({"requestType": "NEW_SESSION"}, {SESSION: "not-a-session"})
    assert r.status == 200


def test_close_existing_session(ngx, engine):
    sid = new_session(ngx)
    r = close_session(ngx, sid)
    assert r.status == 200
    assert r.header(CLOSED_SESSION) == sid
    assert r.body == f"Session {sid} closed".encode()
    assert not os.path.exists(os.path.join(ngx.sessions_path, sid))
    assert engine.count() == 0


def test_close_without_session_header_is_400(ngx):
    for headers in ({}, {SESSION: ""}):
        r = ngx.request({"requestType": "CLOSE"}, headers)
        assert r.status == 400, r
        assert detail(r) == "Session ID is required in request headers to close a session"


def test_close_unknown_session_is_400(ngx):
    sid = "6f1c1b1e-8d47-4c3b-9a4e-2f1e0c9b7a11"
    r = close_session(ngx, sid)
    assert r.status == 400
    assert detail(r) == f"Bad request: session not found: {sid}"


def test_close_twice_second_is_400(ngx):
    sid = new_session(ngx)
    assert close_session(ngx, sid).status == 200
    r = close_session(ngx, sid)
    assert r.status == 400
    assert detail(r) == f"Bad request: session not found: {sid}"


def test_invocation_with_valid_session_reaches_engine_with_header(ngx, engine):
    sid = new_session(ngx)
    r = ngx.request({"prompt": "hello"}, {SESSION: sid, "Content-Type": "application/json"})
    assert r.status == 200, r
    assert r.json()["engine"] == "ok"
    assert engine.last["headers"][SESSION.lower()] == sid
    assert json.loads(engine.last["body"]) == {"prompt": "hello"}


def test_invocation_without_session_header_passes(ngx, engine):
    r = ngx.request({"prompt": "hello"})
    assert r.status == 200
    assert engine.count() == 1


def test_invocation_with_empty_session_header_passes(ngx, engine):
    r = ngx.request({"prompt": "hello"}, {SESSION: ""})
    assert r.status == 200
    assert engine.count() == 1


def test_invocation_with_unknown_session_is_400(ngx, engine):
    sid = "0b7f3d9c-1c2e-4f5a-8b6d-9e0a1b2c3d4e"
    r = ngx.request({"prompt": "x"}, {SESSION: sid})
    assert r.status == 400
    assert detail(r) == f"Bad request: session not found: {sid}"
    assert engine.count() == 0


def test_invocation_with_closed_session_is_400(ngx, engine):
    sid = new_session(ngx)
    assert close_session(ngx, sid).status == 200
    r = ngx.request({"prompt": "x"}, {SESSION: sid})
    assert r.status == 400
    assert detail(r) == f"Bad request: session not found: {sid}"
    assert engine.count() == 0


def test_expired_session_is_rejected_every_time(start_nginx, engine):
    ngx = start_nginx(http="sagemaker_sessions_expiration 1s;")
    sid = new_session(ngx)
    assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    time.sleep(2.2)
    for _ in range(4):
        r = ngx.request({"p": 1}, {SESSION: sid})
        assert r.status == 400
        # the sweep may have removed it first: then it is simply gone
        assert detail(r) in (f"Bad request: session expired: {sid}",
                             f"Bad request: session not found: {sid}")
    assert engine.count() == 1


def write_session(root, sid, expires_at):
    """A session as the Python library's Session class writes one."""
    os.makedirs(os.path.join(root, sid))
    with open(os.path.join(root, sid, ".expiration_ts"), "w") as f:
        json.dump(expires_at, f)


def test_expired_session_is_named_expired_when_first_touched(ngx, engine):
    time.sleep(1.5)  # past the sweep's first pass; the next is a minute away
    sid = "3d0f5a52-3c1e-4b8e-9a57-0f3e6c1d2b4a"
    write_session(ngx.sessions_path, sid, time.time() - 5)
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert r.status == 400
    assert detail(r) == f"Bad request: session expired: {sid}"
    assert not os.path.exists(os.path.join(ngx.sessions_path, sid))
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert r.status == 400
    assert engine.count() == 0


def test_close_of_expired_session_is_400(start_nginx):
    ngx = start_nginx(http="sagemaker_sessions_expiration 1s;")
    sid = new_session(ngx)
    time.sleep(2.2)
    r = close_session(ngx, sid)
    assert r.status == 400
    assert detail(r) in (f"Bad request: session expired: {sid}",
                         f"Bad request: session not found: {sid}")


def test_disabled_manager_refuses_session_requests(start_nginx, engine):
    ngx = start_nginx(sessions=False)
    for body, headers in (({"requestType": "NEW_SESSION"}, {}),
                          ({"requestType": "CLOSE"}, {SESSION: "6f1c1b1e-8d47-4c3b-9a4e-2f1e0c9b7a11"}),
                          ({"prompt": "x"}, {SESSION: "6f1c1b1e-8d47-4c3b-9a4e-2f1e0c9b7a11"})):
        r = ngx.request(body, headers)
        assert r.status == 400, r
        assert detail(r) == "Invalid payload. stateful sessions not enabled"
    assert engine.count() == 0
    assert ngx.request({"prompt": "x"}).status == 200
    assert engine.count() == 1


def test_malformed_session_requests_are_400(ngx, engine):
    cases = [
        ({"requestType": "OPEN"}, "OPEN"),
        ({"requestType": 7}, "requestType"),
        ({"requestType": None}, "requestType"),
        ({"requestType": "NEW_SESSION", "extra": 1}, "extra"),
        ({"requestType": "CLOSE", "prompt": "x"}, "prompt"),
    ]
    for body, named in cases:
        r = ngx.request(body)
        assert r.status == 400, (body, r)
        assert named in detail(r), (body, r)
    assert engine.count() == 0


def test_ids_that_are_not_canonical_uuids_are_not_found(ngx, engine):
    # A file that a path trick would reach, if ids were used as paths.
    os.makedirs(os.path.join(ngx.dir, "victim"))
    with open(os.path.join(ngx.dir, "victim", ".expiration_ts"), "w") as f:
        f.write("99999999999")
    for sid in ("../victim", "..", "/etc", "6F1C1B1E-8D47-4C3B-9A4E-2F1E0C9B7A11",
                "6f1c1b1e8d474c3b9a4e2f1e0c9b7a11", "x" * 300, "a/b"):
        r = ngx.request({"prompt": "x"}, {SESSION: sid})
        assert r.status == 400, (sid, r)
        assert detail(r) == f"Bad request: session not found: {sid}"
        assert close_session(ngx, sid).status == 400
    assert os.path.exists(os.path.join(ngx.dir, "victim", ".expiration_ts"))
    assert engine.count() == 0


def test_non_canonical_ids_never_touch_the_file_system(start_nginx, engine):
    """strace-free proof: with the sessions directory made unreadable to the
    workers, a lookup that touched it would fail with 424, not answer 400."""
    ngx = start_nginx()
    os.chmod(ngx.sessions_path, 0o000)
    try:
        r = ngx.request({"prompt": "x"}, {SESSION: "../../etc/passwd"})
        assert r.status == 400, r
        canonical = ngx.request({"prompt": "x"}, {SESSION: "6f1c1b1e-8d47-4c3b-9a4e-2f1e0c9b7a11"})
        assert canonical.status == 424, canonical
    finally:
        os.chmod(ngx.sessions_path, 0o755)


def test_store_failure_on_create_is_424(start_nginx):
    ngx = start_nginx()
    os.chmod(ngx.sessions_path, 0o555)
    try:
        r = ngx.request({"requestType": "NEW_SESSION"})
    finally:
        os.chmod(ngx.sessions_path, 0o755)
    assert r.status == 424, r
    assert detail(r).startswith("Failed to create session: ")
    assert "Permission denied" in detail(r)
    assert "[error]" in ngx.error_log and "failed to create session" in ngx.error_log


def test_store_failure_on_close_is_424(start_nginx):
    ngx = start_nginx()
    sid = new_session(ngx)
    os.chmod(ngx.sessions_path, 0o555)
    try:
        r = close_session(ngx, sid)
    finally:
        os.chmod(ngx.sessions_path, 0o755)
    assert r.status == 424, r
    assert detail(r).startswith("Failed to close session: ")
    assert os.path.exists(os.path.join(ngx.sessions_path, sid))


def test_two_session_headers_are_refused_where_the_header_counts(ngx, engine):
    sid = new_session(ngx)
    other = new_session(ngx)
    for body in ({"prompt": "x"}, {"requestType": "CLOSE"}):
        for values in ((sid, other), (sid, sid)):
            head = ("POST /invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    f"{SESSION}: {values[0]}\r\nx-amzn-sagemaker-session-id: {values[1]}\r\n"
                    "Content-Type: application/json\r\n")
            data = json.dumps(body).encode()
            answer = raw_request(ngx.port, head.encode() + b"Content-Length: %d\r\n\r\n" % len(data) + data)
            assert answer.startswith(b"HTTP/1.1 400"), answer
            assert b"more than one X-Amzn-SageMaker-Session-Id header" in answer
    assert engine.count() == 0
    # both sessions are untouched; NEW_SESSION does not look at the header
    assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    assert ngx.request({"p": 1}, {SESSION: other}).status == 200


def test_session_limit(start_nginx, engine):
    ngx = start_nginx(http="sagemaker_sessions_max 3;", workers=2)
    sids = [new_session(ngx) for _ in range(3)]
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 424, r
    assert detail(r) == "Failed to create session: session limit reached"
    assert "[warn]" in ngx.error_log and "session limit reached" in ngx.error_log
    assert ngx.request({"p": 1}, {SESSION: sids[0]}).status == 200
    assert close_session(ngx, sids[0]).status == 200
    assert new_session(ngx)
