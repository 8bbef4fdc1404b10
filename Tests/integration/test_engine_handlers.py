"""SPEC §3.2: engine session handlers. NEW_SESSION and CLOSE become POST
subrequests to the engine's own session API; ordinary invocations go to the
engine unchecked, with body injection still applied."""

import http.client
import json
import os
import re
import threading

import pytest

from harness import (detail, UUID, CLOSED_SESSION, NEW_SESSION, SESSION, Reply, free_port,
                     raw_request)

from harness import CLOSE_URI as CLOSE, CREATE_URI as CREATE, HANDLER_LOCATIONS as INTERNAL  # noqa: E402

CLOSE_REQUIRED = "Session ID is required in request headers to close a session"


def handlers(create="body.session_id", close="body.session_id", manager="sagemaker_session_manager;"):
    lines = [manager]
    if create is not None:
        lines.append(f"sagemaker_session_create_handler {CREATE} {create};")
    if close is not None:
        lines.append(f"sagemaker_session_close_handler {CLOSE} {close};")
    return " ".join(lines)


def start(start_nginx, create="body.session_id", close="body.session_id", extra="",
          manager="sagemaker_session_manager;", server=INTERNAL, **kw):
    return start_nginx(location=handlers(create, close, manager) + " " + extra, server=server, **kw)



def create_ok(ngx, sid):
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 200, r
    assert r.header(NEW_SESSION) == sid, r
    assert r.body == f"Successfully created session: {sid}".encode(), r
    return r


def sessions_on_disk(ngx):
    return os.listdir(ngx.sessions_path) if os.path.isdir(ngx.sessions_path) else []


# --- 1. create ----------------------------------------------------------------

def test_create_posts_json_to_the_engine_and_answers_with_its_id(start_nginx, engine):
    sid = "3f2a9c41d8e04b6f9a1c2e3d4f5a6b7c"
    engine.respond(CREATE, Reply.json({"session_id": sid}))
    ngx = start(start_nginx)
    r = ngx.request({"requestType": "NEW_SESSION"}, {"Content-Type": "text/plain"})
    assert r.status == 200, r
    assert r.header(NEW_SESSION) == sid          # no "; Expires=..." part
    assert r.body == f"Successfully created session: {sid}".encode()
    assert [q["path"] for q in engine.requests] == [CREATE], "the client's request reached the engine"
    sub = engine.last
    assert sub["method"] == "POST"
    assert sub["headers"]["content-type"] == "application/json"
    assert json.loads(sub["body"]) == {}
    assert sessions_on_disk(ngx) == [], "the built-in store must not be used"


@pytest.mark.parametrize("path, reply, sid", [
    ("body", Reply.json("3f2a9c41d8e04b6f9a1c2e3d4f5a6b7c"), "3f2a9c41d8e04b6f9a1c2e3d4f5a6b7c"),
    ("body", Reply("raw-text-id-42", content_type="text/plain"), "raw-text-id-42"),
    ("body", Reply("not json, just text", content_type="application/json"), "not json, just text"),
    ("body", Reply('"json under text/plain"', content_type="text/plain"), "json under text/plain"),
    ("body.session_id", Reply.json({"session_id": "abc-123", "other": 1}), "abc-123"),
    ("body.data.id", Reply.json({"data": {"id": "nested-7", "id2": "x"}, "id": "top"}), "nested-7"),
    ('body."session.id"', Reply.json({"session.id": "quoted-seg", "session": {"id": "wrong"}}), "quoted-seg"),
    ('headers."X-Session-Id"', Reply(b"", headers={"X-Session-Id": "hdr-quoted"}), "hdr-quoted"),
    ("headers.X-Session-Id", Reply(b"", headers={"X-Session-Id": "hdr-plain"}), "hdr-plain"),
    ("headers.x-session-id", Reply(b"", headers={"X-Session-Id": "hdr-lower"}), "hdr-lower"),
    ('headers."X-SESSION-ID"', Reply(b"", headers={"x-session-id": "hdr-upper"}), "hdr-upper"),
    ("body.session_id", Reply.json({"session_id": 12345}), "12345"),
    ("body.session_id", Reply.json({"session_id": 9007199254740993}), "9007199254740993"),
    ("body.session_id", Reply.json({"session_id": -7}), "-7"),
    ("body", Reply.json(42), "42"),
    ("status_code", Reply.json({}), "200"),
])
def test_create_reads_the_id_with_the_response_path(start_nginx, engine, path, reply, sid):
    engine.respond(CREATE, reply)
    ngx = start(start_nginx, create=path)
    create_ok(ngx, sid)


def test_create_id_of_256_bytes_is_accepted(start_nginx, engine):
    sid = "a" * 256
    engine.respond(CREATE, Reply.json({"session_id": sid}))
    create_ok(start(start_nginx), sid)


@pytest.mark.parametrize("reply", [
    Reply.json({"id": "elsewhere"}),
    Reply.json({"session_id": ""}),
    Reply.json({"session_id": None}),
    Reply.json({"data": {"session_id": "deeper"}}),
    Reply.json("abc"),            # a string has no .session_id
    Reply.json([{"session_id": "in-a-list"}]),
    Reply(b"", content_type=None),
    Reply("raw text", content_type="text/plain"),
])
def test_create_id_not_found_is_500(start_nginx, engine, reply):
    engine.respond(CREATE, reply)
    ngx = start(start_nginx)
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 500, r
    assert detail(r) == "Session ID not found in response"
    assert r.header(NEW_SESSION) is None


@pytest.mark.parametrize("path, reply", [
    ("body", Reply.json("")),
    ("body", Reply(b"", content_type="text/plain")),
    ("headers.X-Session-Id", Reply.json({})),
    ("headers.X-Session-Id", Reply.json({}, headers={"X-Session-Id": ""})),
])
def test_create_empty_or_missing_id_in_body_or_headers_is_500(start_nginx, engine, path, reply):
    engine.respond(CREATE, reply)
    ngx = start(start_nginx, create=path)
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 500, r
    assert detail(r) == "Session ID not found in response"


@pytest.mark.parametrize("path, reply", [
    ("body.session_id", Reply.json({"session_id": "abc\r\nSet-Cookie: evil=1"})),
    ("body.session_id", Reply.json({"session_id": "abc\ndef"})),
    ("body.session_id", Reply.json({"session_id": "tab\there"})),
    ("body.session_id", Reply.json({"session_id": "del\x7f"})),
    ("body.session_id", Reply.json({"session_id": "esc\x1b[31m"})),
    ("body.session_id", Reply.json({"session_id": "a" * 257})),
    ("body.session_id", Reply.json({"session_id": "x" * 3000})),
    ("body", Reply("raw-id-with-newline\n", content_type="text/plain")),
    ("body", Reply("raw\rid", content_type="text/plain")),
    ("body", Reply(b"nul\x00byte", content_type="text/plain")),
    ("headers.X-Session-Id", Reply.json({}, headers={"X-Session-Id": "h" * 300})),
])
def test_create_id_unsafe_for_a_header_is_500(start_nginx, engine, path, reply):
    engine.respond(CREATE, reply)
    ngx = start(start_nginx, create=path)
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 500, r
    message = detail(r)
    assert isinstance(message, str) and message, r
    assert r.header(NEW_SESSION) is None
    assert r.header("Set-Cookie") is None


def test_create_ignores_a_session_header_from_the_client(start_nginx, engine):
    engine.respond(CREATE, Reply.json({"session_id": "fresh"}))
    ngx = start(start_nginx)
    r = ngx.request({"requestType": "NEW_SESSION"}, {SESSION: "old-one"})
    assert r.status == 200, r
    assert r.header(NEW_SESSION) == "fresh"
    assert engine.to("/invocations") == []


def test_create_defaults_directive_becomes_the_body(start_nginx, engine):
    engine.respond(CREATE, Reply.json({"session_id": "s1"}))
    ngx = start(start_nginx, extra="""sagemaker_session_create_defaults '{"body.capacity": 1024, "body.meta.size": 3}';""")
    create_ok(ngx, "s1")
    assert json.loads(engine.last["body"]) == {"capacity": 1024, "meta": {"size": 3}}
    assert engine.last["headers"]["content-type"] == "application/json"


def test_create_defaults_of_every_json_type_and_quoted_segments(start_nginx, engine):
    engine.respond(CREATE, Reply.json({"session_id": "s2"}))
    defaults = {"body.s": "text é✓", "body.n": None, "body.t": True, "body.f": False,
                "body.i": -3, "body.x": 1.5, "body.l": [1, "two", {"three": 3}],
                "body.o": {"k": "v"}, 'body."a.b"': "dotted", "body.deep.er.est": 0}
    # nginx.conf strings take backslash escapes: JSON's \" is written \\" there
    value = json.dumps(defaults, ensure_ascii=False).replace("\\", "\\\\")
    ngx = start(start_nginx, extra=f"sagemaker_session_create_defaults '{value}';")
    create_ok(ngx, "s2")
    assert json.loads(engine.last["body"]) == {
        "s": "text é✓", "n": None, "t": True, "f": False, "i": -3, "x": 1.5,
        "l": [1, "two", {"three": 3}], "o": {"k": "v"}, "a.b": "dotted",
        "deep": {"er": {"est": 0}}}


def test_create_defaults_from_env_and_directive_wins(start_nginx, engine):
    engine.respond(CREATE, Reply.json({"session_id": "s3"}))
    env = {"SAGEMAKER_TRANSFORMS_CREATE_SESSION_DEFAULTS": '{"body.capacity": 7, "body.from": "env"}'}
    ngx = start(start_nginx, env=env)
    create_ok(ngx, "s3")
    assert json.loads(engine.last["body"]) == {"capacity": 7, "from": "env"}
    ngx = start(start_nginx, env=env, extra="""sagemaker_session_create_defaults '{"body.from": "directive"}';""")
    create_ok(ngx, "s3")
    assert json.loads(engine.last["body"]) == {"from": "directive"}


def test_create_defaults_inherited_and_overridden_by_level(start_nginx, engine):
    engine.respond(CREATE, Reply.json({"session_id": "s4"}))
    server = INTERNAL + f"""
location /other {{
    sagemaker_session_manager;
    sagemaker_session_create_handler {CREATE} body.session_id;
    sagemaker_session_create_defaults '{{"body.level": "location"}}';
    proxy_pass http://engine;
}}
"""
    ngx = start(start_nginx, server=server,
                http="""sagemaker_session_create_defaults '{"body.level": "http", "body.only_http": 1}';""")
    create_ok(ngx, "s4")
    assert json.loads(engine.last["body"]) == {"level": "http", "only_http": 1}
    r = ngx.request({"requestType": "NEW_SESSION"}, path="/other")
    assert r.status == 200, r
    assert r.header(NEW_SESSION) == "s4"
    assert json.loads(engine.last["body"]) == {"level": "location"}


def test_handlers_set_at_server_level_apply_to_its_locations(start_nginx, engine):
    engine.respond(CREATE, Reply.json({"session_id": "srv-level"}))
    server = INTERNAL + f"""
sagemaker_session_create_handler {CREATE} body.session_id;
sagemaker_session_close_handler {CLOSE} body.id;
"""
    ngx = start_nginx(location="sagemaker_session_manager;", server=server)
    create_ok(ngx, "srv-level")
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: "srv-level"})
    assert r.status == 200, r
    assert json.loads(engine.last["body"]) == {"id": "srv-level"}


def test_handlers_set_at_http_level_apply_everywhere(start_nginx, engine):
    engine.respond(CREATE, Reply.json({"session_id": "http-level"}))
    ngx = start_nginx(location="sagemaker_session_manager;", server=INTERNAL,
                      http=f"sagemaker_session_create_handler {CREATE} body.session_id;")
    create_ok(ngx, "http-level")


def test_create_from_a_chunked_client_request(start_nginx, engine):
    engine.respond(CREATE, Reply.json({"session_id": "chunky"}))
    ngx = start(start_nginx, extra="""sagemaker_session_create_defaults '{"body.capacity": 1}';""")
    body = b'{"requestType": "NEW_SESSION"}'
    data = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
            + b"%x\r\n" % 10 + body[:10] + b"\r\n"
            + b"%x\r\n" % (len(body) - 10) + body[10:] + b"\r\n0\r\n\r\n")
    out = raw_request(ngx.port, data)
    head, _, rest = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 200 "), out
    fields = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    assert fields[NEW_SESSION.lower()] == "chunky", out
    assert rest == b"Successfully created session: chunky", out
    assert json.loads(engine.last["body"]) == {"capacity": 1}
    if "content-length" in engine.last["headers"]:
        assert engine.last["headers"]["content-length"] == str(len(engine.last["body"]))


def test_session_requests_spilled_to_a_temp_file(start_nginx, engine):
    # The client's body is in a temp file; the engine must get the subrequest's
    # own body, not the client's.
    engine.respond(CREATE, Reply.json({"session_id": "spilled"}))
    engine.respond(CLOSE, Reply.json({}))
    ngx = start(start_nginx, http="client_max_body_size 16m; client_body_buffer_size 8k;",
                extra="""sagemaker_session_create_defaults '{"body.capacity": 2}';""")
    pad = b" " * (300 * 1024)
    r = ngx.request(b'{"requestType":' + pad + b'"NEW_SESSION"}' + pad)
    assert r.status == 200, r
    assert r.header(NEW_SESSION) == "spilled"
    assert engine.last["body"] and json.loads(engine.last["body"]) == {"capacity": 2}
    r = ngx.request(pad + b'{"requestType": "CLOSE"}' + pad, {SESSION: "spilled"})
    assert r.status == 200, r
    assert r.header(CLOSED_SESSION) == "spilled"
    assert json.loads(engine.last["body"]) == {"session_id": "spilled"}
    assert [q["path"] for q in engine.requests] == [CREATE, CLOSE]


def test_concurrent_creates_each_get_their_own_id(start_nginx, engine):
    counter = iter(range(1000))
    lock = threading.Lock()

    def answer(record):
        with lock:
            n = next(counter)
        return Reply.json({"session_id": f"sess-{n}"}, delay=0.05)

    engine.respond(CREATE, answer)
    ngx = start(start_nginx, workers=2)
    results = []

    def one():
        r = ngx.request({"requestType": "NEW_SESSION"})
        results.append((r.status, r.header(NEW_SESSION), r.body))

    threads = [threading.Thread(target=one) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 24
    ids = set()
    for status, sid, body in results:
        assert status == 200, (status, sid, body)
        assert body == f"Successfully created session: {sid}".encode()
        ids.add(sid)
    assert ids == {f"sess-{n}" for n in range(24)}


def test_keepalive_connection_serves_create_close_and_invocation(start_nginx, engine):
    engine.respond(CREATE, Reply.json({"session_id": "ka-1"}))
    engine.respond(CLOSE, Reply(b"", content_type=None))
    ngx = start(start_nginx)
    conn = http.client.HTTPConnection("127.0.0.1", ngx.port, timeout=30)
    try:
        conn.request("POST", "/invocations", body=b'{"requestType": "NEW_SESSION"}')
        r = conn.getresponse()
        assert (r.status, r.getheader(NEW_SESSION), r.read()) == (200, "ka-1", b"Successfully created session: ka-1")
        conn.request("POST", "/invocations", body=b'{"prompt": "x"}', headers={SESSION: "ka-1"})
        r = conn.getresponse()
        assert r.status == 200
        assert json.loads(r.read())["engine"] == "ok"
        conn.request("POST", "/invocations", body=b'{"requestType": "CLOSE"}', headers={SESSION: "ka-1"})
        r = conn.getresponse()
        assert (r.status, r.getheader(CLOSED_SESSION), r.read()) == (200, "ka-1", b"Successfully closed session: ka-1")
    finally:
        conn.close()
    assert [q["path"] for q in engine.requests] == [CREATE, "/invocations", CLOSE]


# --- 2. close -----------------------------------------------------------------

def test_close_without_or_with_empty_header_is_400_and_calls_nothing(start_nginx, engine):
    ngx = start(start_nginx)
    for headers in ({}, {SESSION: ""}):
        r = ngx.request({"requestType": "CLOSE"}, headers)
        assert r.status == 400, r
        assert detail(r) == CLOSE_REQUIRED
    assert engine.count() == 0


def test_close_posts_the_id_to_the_engine(start_nginx, engine):
    engine.respond(CLOSE, Reply.json({"status": "closed"}))
    ngx = start(start_nginx)
    sid = "engine-owned/not-a-uuid"
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: sid, "Content-Type": "text/plain"})
    assert r.status == 200, r
    assert r.header(CLOSED_SESSION) == sid
    assert r.body == f"Successfully closed session: {sid}".encode()
    assert [q["path"] for q in engine.requests] == [CLOSE]
    sub = engine.last
    assert sub["method"] == "POST"
    assert sub["headers"]["content-type"] == "application/json"
    assert json.loads(sub["body"]) == {"session_id": sid}


def test_close_with_nested_path_and_defaults_id_wins(start_nginx, engine):
    engine.respond(CLOSE, Reply(b"", content_type=None))
    defaults = {"body.force": False, "body.meta.session.id": "from-defaults",
                "body.meta.other": 1, "body.meta.session.keep": "yes"}
    ngx = start(start_nginx, close="body.meta.session.id",
                extra=f"sagemaker_session_close_defaults '{json.dumps(defaults)}';")
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: "sid-9"})
    assert r.status == 200, r
    assert r.header(CLOSED_SESSION) == "sid-9"
    assert json.loads(engine.last["body"]) == {
        "force": False, "meta": {"session": {"id": "sid-9", "keep": "yes"}, "other": 1}}


def test_close_nested_path_creates_objects(start_nginx, engine):
    engine.respond(CLOSE, Reply.json({}))
    ngx = start(start_nginx, close='body.a.b."c.d"')
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: "deep"})
    assert r.status == 200, r
    assert json.loads(engine.last["body"]) == {"a": {"b": {"c.d": "deep"}}}


def test_close_defaults_from_env(start_nginx, engine):
    engine.respond(CLOSE, Reply.json({}))
    ngx = start(start_nginx, env={"SAGEMAKER_TRANSFORMS_CLOSE_SESSION_DEFAULTS":
                                  '{"body.force": true, "body.session_id": "overwritten"}'})
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: "env-close"})
    assert r.status == 200, r
    assert json.loads(engine.last["body"]) == {"force": True, "session_id": "env-close"}


def test_close_answer_does_not_depend_on_the_engine_body(start_nginx, engine):
    engine.respond(CLOSE, Reply("Session closed successfully", content_type="text/plain"))
    ngx = start(start_nginx)
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: "x1"})
    assert r.status == 200, r
    assert r.header(CLOSED_SESSION) == "x1"
    assert r.body == b"Successfully closed session: x1"


# --- 3. errors ----------------------------------------------------------------

PASSTHROUGH = [
    Reply.json({"session_id": "not-taken"}, status=201),
    Reply.json({"detail": "no such engine"}, status=404),
    Reply.json({"detail": [{"loc": ["body", "capacity"], "msg": "field required",
                            "type": "value_error.missing"}]}, status=422),
    Reply("engine exploded", status=500, content_type="text/plain"),
    Reply('{"error": {"message": "busy"}}', status=503,
          content_type="application/problem+json; charset=utf-8"),
    Reply(b"\x00\x01binary", status=400, content_type="application/octet-stream"),
]


@pytest.mark.parametrize("reply", PASSTHROUGH)
def test_create_engine_error_reaches_the_client_unchanged(start_nginx, engine, reply):
    engine.respond(CREATE, reply)
    ngx = start(start_nginx)
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == reply.status, r
    assert r.body == reply.body
    assert r.header("Content-Type") == reply.content_type
    assert r.header(NEW_SESSION) is None


@pytest.mark.parametrize("reply", PASSTHROUGH)
def test_close_engine_error_reaches_the_client_unchanged(start_nginx, engine, reply):
    engine.respond(CLOSE, reply)
    ngx = start(start_nginx)
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: "sid-x"})
    assert r.status == reply.status, r
    assert r.body == reply.body
    assert r.header("Content-Type") == reply.content_type
    assert r.header(CLOSED_SESSION) is None


def closed_port():
    return free_port()   # bound once, closed at once: nothing listens there


def test_engine_down_is_502(start_nginx, engine):
    port = closed_port()
    server = f"""
location = {CREATE} {{ internal; proxy_pass http://127.0.0.1:{port}; }}
location = {CLOSE} {{ internal; proxy_pass http://127.0.0.1:{port}; }}
"""
    ngx = start(start_nginx, server=server)
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 502, r
    assert r.header(NEW_SESSION) is None
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: "sid"})
    assert r.status == 502, r
    assert r.header(CLOSED_SESSION) is None
    assert engine.count() == 0


def test_engine_too_slow_is_504(start_nginx, engine):
    engine.respond(CREATE, Reply.json({"session_id": "late"}, delay=3))
    engine.respond(CLOSE, Reply.json({}, delay=3))
    server = f"""
location = {CREATE} {{ internal; proxy_read_timeout 1s; proxy_pass http://engine; }}
location = {CLOSE} {{ internal; proxy_read_timeout 1s; proxy_pass http://engine; }}
"""
    ngx = start(start_nginx, server=server)
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 504, r
    assert r.header(NEW_SESSION) is None
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: "sid"})
    assert r.status == 504, r
    assert r.header(CLOSED_SESSION) is None


@pytest.mark.parametrize("reply", [
    Reply.json({"session_id": "big", "pad": "x" * 65536}),
    Reply("y" * 65536, content_type="text/plain"),
    Reply.json({"detail": "z" * 65536}, status=404),
])
def test_create_response_over_the_subrequest_buffer_is_refused(start_nginx, engine, reply):
    engine.respond(CREATE, reply)
    server = f"""
location = {CREATE} {{ internal; subrequest_output_buffer_size 4k; proxy_pass http://engine; }}
"""
    ngx = start(start_nginx, server=server)
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 502, r
    assert detail(r)
    assert r.header(NEW_SESSION) is None
    assert "[error]" in ngx.error_log, ngx.error_log


def test_close_response_over_the_subrequest_buffer_is_refused(start_nginx, engine):
    engine.respond(CLOSE, Reply("q" * 65536, content_type="text/plain"))
    server = INTERNAL.replace(f"location = {CLOSE} {{ internal;",
                              f"location = {CLOSE} {{ internal; subrequest_output_buffer_size 4k;")
    ngx = start(start_nginx, server=server)
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: "big-close"})
    assert r.status == 502, r
    assert detail(r)
    assert r.header(CLOSED_SESSION) is None
    assert "[error]" in ngx.error_log


def test_engine_closing_mid_response_is_not_a_success(start_nginx, engine):
    # A valid raw-text id arrives, then the connection drops before the
    # announced length: the answer must not be taken as complete.
    engine.respond(CREATE, Reply("truncated-id" + "." * 100, content_type="text/plain", truncate=12))
    engine.respond(CLOSE, Reply("closed" + " " * 100, content_type="text/plain", truncate=6))
    ngx = start(start_nginx, create="body")
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 502, r
    assert r.header(NEW_SESSION) is None
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: "sid"})
    assert r.status == 502, r
    assert r.header(CLOSED_SESSION) is None


def test_engine_error_does_not_break_the_next_requests(start_nginx, engine):
    answers = iter([Reply("boom", status=500, content_type="text/plain"),
                    Reply.json({"session_id": "after-error"})])
    engine.respond(CREATE, lambda record: next(answers))
    ngx = start(start_nginx)
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert (r.status, r.body) == (500, b"boom")
    create_ok(ngx, "after-error")
    assert ngx.request({"prompt": 1}).status == 200


# --- 5. modes -----------------------------------------------------------------

def test_invocation_with_any_session_id_reaches_the_engine(start_nginx, engine):
    ngx = start(start_nginx, manager="sagemaker_session_manager session_id_path=session_id;")
    for sid in ("engine-session-1", "6f1c1b1e-8d47-4c3b-9a4e-2f1e0c9b7a11", "../weird id"):
        r = ngx.request({"prompt": "hi", "meta": {"k": 1}}, {SESSION: sid})
        assert r.status == 200, (sid, r)
        assert engine.last["path"] == "/invocations"
        assert engine.last["headers"][SESSION.lower()] == sid
        assert json.loads(engine.last["body"]) == {"prompt": "hi", "meta": {"k": 1}, "session_id": sid}
    assert sessions_on_disk(ngx) == []


def test_invocation_injection_at_a_nested_path_with_handlers(start_nginx, engine):
    ngx = start(start_nginx, manager="sagemaker_session_manager session_id_path=session_params.id;")
    r = ngx.request({"text": "x", "session_params": {"rid": "r1"}}, {SESSION: "abc"})
    assert r.status == 200, r
    assert json.loads(engine.last["body"]) == {"text": "x", "session_params": {"rid": "r1", "id": "abc"}}


def test_invocation_without_header_is_untouched_with_handlers(start_nginx, engine):
    ngx = start(start_nginx, manager="sagemaker_session_manager session_id_path=session_id;")
    body = b'{"prompt":   "as sent"}'
    assert ngx.request(body).status == 200
    assert engine.last["body"] == body


def test_invocation_passes_with_handlers_and_sessions_off(start_nginx, engine):
    ngx = start(start_nginx, sessions=False,
                manager="sagemaker_session_manager session_id_path=session_id;")
    r = ngx.request({"prompt": "x"}, {SESSION: "unknown-to-nginx"})
    assert r.status == 200, r
    assert engine.last["headers"][SESSION.lower()] == "unknown-to-nginx"
    assert json.loads(engine.last["body"]) == {"prompt": "x", "session_id": "unknown-to-nginx"}


def test_only_create_handler_close_falls_back_to_builtin(start_nginx, engine):
    engine.respond(CREATE, Reply.json({"session_id": "eng-1"}))
    ngx = start(start_nginx, close=None)
    create_ok(ngx, "eng-1")
    sid = "6f1c1b1e-8d47-4c3b-9a4e-2f1e0c9b7a11"
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: sid})
    assert r.status == 400, r
    assert detail(r) == f"Bad request: session not found: {sid}"
    r = ngx.request({"requestType": "CLOSE"}, {})
    assert r.status == 400
    assert detail(r) == CLOSE_REQUIRED
    assert [q["path"] for q in engine.requests] == [CREATE]
    # an engine handler is configured: invocations are the engine's business
    r = ngx.request({"prompt": 1}, {SESSION: "eng-1"})
    assert r.status == 200, r


def test_only_close_handler_create_falls_back_to_builtin(start_nginx, engine):
    engine.respond(CLOSE, Reply.json({}))
    ngx = start(start_nginx, create=None)
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 200, r
    m = re.fullmatch(r"(\S+); Expires=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)", r.header(NEW_SESSION))
    assert m, r
    sid = m.group(1)
    assert UUID.match(sid)
    assert r.body == f"Session {sid} created".encode()
    assert os.path.isdir(os.path.join(ngx.sessions_path, sid))
    assert engine.count() == 0
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: sid})
    assert r.status == 200, r
    assert r.header(CLOSED_SESSION) == sid
    assert r.body == f"Successfully closed session: {sid}".encode()
    assert [q["path"] for q in engine.requests] == [CLOSE]
    assert json.loads(engine.last["body"]) == {"session_id": sid}


def test_location_without_handlers_keeps_the_builtin_manager(start_nginx, engine):
    engine.respond(CREATE, Reply.json({"session_id": "eng-2"}))
    server = INTERNAL + """
location /plain {
    sagemaker_session_manager;
    proxy_pass http://engine;
}
"""
    ngx = start(start_nginx, server=server)
    create_ok(ngx, "eng-2")
    r = ngx.request({"requestType": "NEW_SESSION"}, path="/plain")
    assert r.status == 200, r
    assert "; Expires=" in r.header(NEW_SESSION)
    sid = "0b7f3d9c-1c2e-4f5a-8b6d-9e0a1b2c3d4e"
    r = ngx.request({"prompt": 1}, {SESSION: sid}, path="/plain")
    assert r.status == 400, r
    assert detail(r) == f"Bad request: session not found: {sid}"
    r = ngx.request({"prompt": 1}, {SESSION: sid})
    assert r.status == 200, r


def test_malformed_session_requests_still_400_with_handlers(start_nginx, engine):
    ngx = start(start_nginx)
    for body, named in (({"requestType": "OPEN"}, "OPEN"),
                        ({"requestType": "NEW_SESSION", "extra": 1}, "extra")):
        r = ngx.request(body)
        assert r.status == 400, (body, r)
        assert named in detail(r)
    assert engine.count() == 0


def test_session_requests_with_handlers_and_sessions_off_go_to_the_engine(start_nginx, engine):
    # As the seeds: with engine handlers the built-in manager (and whether it
    # is enabled) does not matter for the request types they handle.
    engine.respond(CREATE, Reply.json({"session_id": "off-1"}))
    engine.respond(CLOSE, Reply.json({}))
    ngx = start(start_nginx, sessions=False)
    create_ok(ngx, "off-1")
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: "off-1"})
    assert r.status == 200, r
    assert r.header(CLOSED_SESSION) == "off-1"
    assert [q["path"] for q in engine.requests] == [CREATE, CLOSE]


def test_sessions_off_request_type_without_handler_is_disabled(start_nginx, engine):
    engine.respond(CREATE, Reply.json({"session_id": "off-2"}))
    ngx = start(start_nginx, sessions=False, close=None)
    create_ok(ngx, "off-2")
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: "off-2"})
    assert r.status == 400, r
    assert detail(r) == "Invalid payload. stateful sessions not enabled"
    assert [q["path"] for q in engine.requests] == [CREATE]
