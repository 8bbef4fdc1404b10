"""What nginx 1.21.1 and newer refuse in their core, and 1.18.0 lets through
to a module location (issue 23): a request with both Content-Length and
Transfer-Encoding (400) and CONNECT / TRACE (405). The module refuses them
itself, so a session location answers them the same on every nginx: no
session made or checked, nothing sent to the engine. (From 1.29.3, nginx
parses CONNECT's own request target, host:port, and refuses a path there as
an invalid request: see connect_target.) Here (nginx 1.22.1)
the core answers first; against 1.18.0 (Tests/versions) the module does,
with its JSON detail and, for 405, an Allow header."""

import os

import pytest

from harness import (CLOSE_URI, CREATE_URI, HANDLER_LOCATIONS, HANDLERS, NEW_SESSION, SESSION, Reply,
                     connect_target, new_session)
from test_hostile import Conn, http

STATUS = "location = /status { sagemaker_sessions_status; }"
ALLOW = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"


def start(start_nginx, engine, mode):
    if mode == "builtin":
        return start_nginx(server=STATUS)
    engine.respond(CREATE_URI, Reply.json({"session_id": "eng-1"}))
    engine.respond(CLOSE_URI, Reply.json({}))
    return start_nginx(location="sagemaker_session_manager; " + HANDLERS, server=HANDLER_LOCATIONS + STATUS)


def send(ngx, data):
    """One request on its own connection; the answer, or None if nginx
    closed the connection without one."""
    with Conn(ngx.port) as c:
        c.send(data)
        return c.read()


def module_answered(r):
    """The module's own answers are JSON; nginx core's are HTML."""
    return (r.header("Content-Type") or "").startswith("application/json")


@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_content_length_and_transfer_encoding_is_400(start_nginx, engine, mode):
    ngx = start(start_nginx, engine, mode)
    sid = new_session(ngx) if mode == "builtin" else "eng-1"
    before = sorted(os.listdir(ngx.sessions_path))
    n = engine.count()
    body = b'{"requestType": "NEW_SESSION"}'
    chunk = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    for path, extra in (("/invocations", []), ("/invocations", [(SESSION, sid)]),
                        ("/status", [])):
        method = "GET" if path == "/status" else "POST"
        r = send(ngx, http(method, chunk, path=path, length=False,
                           headers=[("Content-Length", str(len(body))), ("Transfer-Encoding", "chunked")] + extra))
        assert r is not None and r.status == 400, (path, r)
        assert r.header(NEW_SESSION) is None, r
        if module_answered(r):
            assert r.json() == {"detail": "Bad request: both Content-Length and Transfer-Encoding"}, r
            assert r.header("Connection") == "close", r
    # nothing reached the engine or the store
    assert engine.count() == n
    assert sorted(os.listdir(ngx.sessions_path)) == before
    # the same request with one framing only still works
    r = send(ngx, http("POST", chunk, length=False, headers=[("Transfer-Encoding", "chunked")]))
    assert r.status == 200 and r.header(NEW_SESSION), r


@pytest.mark.parametrize("mode", ["builtin", "engine"])
@pytest.mark.parametrize("method", ["CONNECT", "TRACE"])
def test_connect_and_trace_are_405(start_nginx, engine, mode, method):
    ngx = start(start_nginx, engine, mode)
    sid = new_session(ngx) if mode == "builtin" else "eng-1"
    before = sorted(os.listdir(ngx.sessions_path))
    n = engine.count()
    for path, extra in (("/invocations", []), ("/invocations", [(SESSION, sid)]), ("/status", [])):
        target = connect_target(path) if method == "CONNECT" else path
        r = send(ngx, http(method, b"", path=target, headers=extra))
        assert r is not None and r.status == 405, (method, target, r)
        if module_answered(r):
            assert r.json() == {"detail": f"Method Not Allowed: {method}"}, r
            assert r.header("Allow") == ALLOW, r
    assert f"client sent {method} method" in ngx.error_log
    assert engine.count() == n
    assert sorted(os.listdir(ngx.sessions_path)) == before
    # an ordinary invocation of the session afterwards
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert r.status == 200, r


@pytest.mark.parametrize("mode", ["builtin", "engine"])
def test_a_connect_this_nginx_cannot_parse_is_400(start_nginx, engine, mode):
    """The other CONNECT request line (a host:port before nginx 1.29.3, a path
    from 1.29.3, see connect_target) is refused by nginx's parser as invalid:
    400, before any location or module, nothing made, nothing sent."""
    ngx = start(start_nginx, engine, mode)
    sid = new_session(ngx) if mode == "builtin" else "eng-1"
    before = sorted(os.listdir(ngx.sessions_path))
    n = engine.count()
    other = "127.0.0.1:443" if connect_target() == "/invocations" else "/invocations"
    r = send(ngx, http("CONNECT", b"", path=other, headers=[(SESSION, sid)]))
    assert r is not None and r.status == 400 and not module_answered(r), r
    assert "client sent invalid request" in ngx.error_log
    assert engine.count() == n
    assert sorted(os.listdir(ngx.sessions_path)) == before
