"""Request bodies: what reaches the engine, byte for byte, and body injection
at session_id_path (SPEC §3 "beyond", §3.1 invocation row)."""

import json
import os

from harness import SESSION, chunked, new_session, raw_request


def test_non_json_bodies_reach_the_engine_byte_for_byte(ngx, engine):
    bodies = [
        bytes(range(256)) * 4,                      # binary
        b"a,b,c\n1,2,3\n",                          # CSV
        b"\xff\xfe\x00invalid utf-8 \xc3\x28",
        b"{\"requestType\": \"NEW_SESSION\"",       # truncated JSON
        b"[{\"requestType\": \"NEW_SESSION\"}]",   # JSON, not an object
        b"\"requestType\"",
        b"{\"prompt\": \"x\"}   ",
    ]
    for body in bodies:
        for ctype in ("application/octet-stream", "text/csv", "application/json", None):
            headers = {"Content-Type": ctype} if ctype else {}
            r = ngx.request(body, headers)
            assert r.status == 200, (body, r)
            assert engine.last["body"] == body
            assert engine.last["headers"]["content-length"] == str(len(body))


def test_empty_body_and_get_pass(ngx, engine):
    assert ngx.request(b"").status == 200
    assert engine.last["body"] == b""
    assert ngx.request(b"", method="GET").status == 200
    assert engine.last["method"] == "GET"


def test_non_json_body_with_valid_session_passes_without_injection(ngx, engine):
    sid = new_session(ngx)
    body = b"\x89PNG\r\n\x1a\n" + os.urandom(5000)
    r = ngx.request(body, {SESSION: sid, "Content-Type": "image/png"})
    assert r.status == 200
    assert engine.last["body"] == body


def test_injection_at_top_level(start_nginx, engine):
    ngx = start_nginx(location="sagemaker_session_manager session_id_path=session_id;")
    sid = new_session(ngx)
    r = ngx.request({"prompt": "hi", "n": 1.5, "list": [1, 2]}, {SESSION: sid})
    assert r.status == 200, r
    got = json.loads(engine.last["body"])
    assert got == {"prompt": "hi", "n": 1.5, "list": [1, 2], "session_id": sid}
    assert engine.last["headers"]["content-length"] == str(len(engine.last["body"]))
    assert engine.last["headers"][SESSION.lower()] == sid


def test_injection_at_nested_path_creates_objects(start_nginx, engine):
    ngx = start_nginx(location="sagemaker_session_manager session_id_path=metadata.session.id;")
    sid = new_session(ngx)
    r = ngx.request({"prompt": "hi", "metadata": {"user": "u1"}}, {SESSION: sid})
    assert r.status == 200, r
    assert json.loads(engine.last["body"]) == {
        "prompt": "hi", "metadata": {"user": "u1", "session": {"id": sid}}}


def test_injection_overwrites_the_clients_value(start_nginx, engine):
    ngx = start_nginx(location="sagemaker_session_manager session_id_path=session_id;")
    sid = new_session(ngx)
    r = ngx.request({"session_id": "forged", "prompt": "é✓"}, {SESSION: sid})
    assert r.status == 200
    got = json.loads(engine.last["body"])
    assert got == {"session_id": sid, "prompt": "é✓"}


def test_no_injection_without_session_header(start_nginx, engine):
    ngx = start_nginx(location="sagemaker_session_manager session_id_path=session_id;")
    body = b'{"prompt":  "kept as sent"}'
    assert ngx.request(body).status == 200
    assert engine.last["body"] == body


def test_injection_into_pipelined_bodies_that_came_with_their_headers(start_nginx, engine):
    """Bodies that came in with their headers are injected where they lie,
    and taken out of the header buffer: each next request on the connection
    is read from where the body before it ends. The request's own
    Content-Length ($http_content_length) says the new length too."""
    ngx = start_nginx(location="sagemaker_session_manager session_id_path=session_id; "
                               "proxy_set_header X-Length $http_content_length;")
    sid = new_session(ngx)

    def request(body, sid=None, close=False):
        head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        head += b"Content-Length: %d\r\n" % len(body)
        if sid:
            head += f"{SESSION}: {sid}\r\n".encode()
        if close:
            head += b"Connection: close\r\n"
        return head + b"\r\n" + body

    bodies = [b'{"prompt":"one"}', b'{"prompt":"two","session_id":"forged"}', b'{"prompt":"three"}',
              b'{"prompt":"four"}']
    before = engine.count()
    answer = raw_request(ngx.port, request(bodies[0], sid) + request(bodies[1], sid) + request(bodies[2])
                         + request(bodies[3], sid, close=True))
    assert answer.count(b"HTTP/1.1 200") == 4, answer
    got = [r["body"] for r in engine.requests[before:]]
    assert len(got) == 4, got
    assert json.loads(got[0]) == {"prompt": "one", "session_id": sid}
    assert json.loads(got[1]) == {"prompt": "two", "session_id": sid}
    assert got[2] == bodies[2]
    assert json.loads(got[3]) == {"prompt": "four", "session_id": sid}
    for r in engine.requests[before:]:
        assert r["headers"]["content-length"] == str(len(r["body"]))
        assert r["headers"]["x-length"] == str(len(r["body"]))


def test_injection_into_a_non_object_body_is_400(start_nginx, engine):
    ngx = start_nginx(location="sagemaker_session_manager session_id_path=session_id;")
    sid = new_session(ngx)
    for body in (b"plain text", b"[1,2]", b"\"s\"", b"", b"{broken"):
        r = ngx.request(body, {SESSION: sid})
        assert r.status == 400, (body, r)
        assert "JSON object" in r.json()["detail"]
    assert engine.count() == 0


def test_injection_through_a_non_object_is_400(start_nginx, engine):
    ngx = start_nginx(location="sagemaker_session_manager session_id_path=metadata.session_id;")
    sid = new_session(ngx)
    r = ngx.request({"metadata": "a string"}, {SESSION: sid})
    assert r.status == 400
    assert "metadata" in r.json()["detail"]
    assert engine.count() == 0


def send_chunked(ngx, body, headers=()):
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
    for h in headers:
        head += h.encode() + b"\r\n"
    answer = raw_request(ngx.port, head + b"\r\n" + chunked(body))
    status = int(answer.split(b" ", 2)[1])
    return status, answer


def test_chunked_session_request(ngx, engine):
    status, answer = send_chunked(ngx, b'{"requestType": "NEW_SESSION"}')
    assert status == 200, answer
    assert b"X-Amzn-SageMaker-New-Session-Id: " in answer
    assert engine.count() == 0


def test_chunked_invocation_passes_byte_for_byte(ngx, engine):
    body = b"chunked, not json \x00\x01" * 50
    status, answer = send_chunked(ngx, body)
    assert status == 200, answer
    assert engine.last["body"] == body


def test_chunked_body_with_injection_gets_content_length(start_nginx, engine):
    ngx = start_nginx(location="sagemaker_session_manager session_id_path=session_id;")
    sid = new_session(ngx)
    status, answer = send_chunked(ngx, b'{"prompt": "chunked"}', [f"{SESSION}: {sid}"])
    assert status == 200, answer
    assert json.loads(engine.last["body"]) == {"prompt": "chunked", "session_id": sid}
    assert engine.last["headers"]["content-length"] == str(len(engine.last["body"]))
    assert "transfer-encoding" not in engine.last["headers"]


def test_large_bodies_spilled_to_a_temp_file(start_nginx, engine):
    ngx = start_nginx(http="client_max_body_size 16m; client_body_buffer_size 8k;",
                      location="sagemaker_session_manager session_id_path=meta.sid;")
    big = os.urandom(3 * 1024 * 1024)
    assert ngx.request(big).status == 200
    assert engine.last["body"] == big

    sid = new_session(ngx)
    doc = {"prompt": "x" * (2 * 1024 * 1024), "meta": {"k": [1, 2, 3]}}
    r = ngx.request(doc, {SESSION: sid})
    assert r.status == 200, r
    got = json.loads(engine.last["body"])
    assert got["meta"] == {"k": [1, 2, 3], "sid": sid}
    assert got["prompt"] == doc["prompt"]
    assert engine.last["headers"]["content-length"] == str(len(engine.last["body"]))

    padded = b'{"requestType": "NEW_SESSION"}' + b" " * 100_000
    r = ngx.request(padded)
    assert r.status == 200, r
    assert r.header("X-Amzn-SageMaker-New-Session-Id")
