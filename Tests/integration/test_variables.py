"""$sagemaker_session_id, $sagemaker_session_outcome, $sagemaker_session_home in
a JSON access log (escape=json): every outcome word, with the request's
session."""

import json
import os
import time
import uuid

from harness import (expired_session, HANDLER_LOCATIONS, HANDLERS, NEW_SESSION, SESSION, Reply, close_session, new_session,
                     raw_request)

LOG_FORMAT = ("log_format sms escape=json '{\"id\":\"$sagemaker_session_id\","
              "\"outcome\":\"$sagemaker_session_outcome\",\"home\":\"$sagemaker_session_home\","
              "\"status\":\"$status\",\"tag\":\"$http_x_tag\"}';")
ACCESS_LOG = "access_log access.log sms;"

OUTCOMES = ("created", "closed", "valid", "not_found", "expired", "missing_id", "malformed", "disabled",
            "repeated_header", "limit", "not_object", "store_error", "engine_error", "passed")


def logged(ngx, *tags):
    """The access log's lines, parsed, by their X-Tag, once `tags` are in
    (a line is written after its answer is sent)."""
    path = os.path.join(ngx.dir, "access.log")
    deadline = time.time() + 5
    while True:
        entries = []
        if os.path.exists(path):
            with open(path) as f:
                entries = [json.loads(line) for line in f if line.strip()]
        found = {e["tag"]: e for e in entries if e["tag"]}
        if all(t in found for t in tags) or time.time() > deadline:
            return found
        time.sleep(0.05)


def tagged(tag, headers=None):
    return {"X-Tag": tag, **(headers or {})}


def test_every_outcome_in_a_json_access_log(start_nginx, engine):
    seen = {}

    # the built-in manager, with injection and a limit of 2 sessions
    ngx = start_nginx(http=LOG_FORMAT + " sagemaker_sessions_max 2;", server=ACCESS_LOG,
                      location="sagemaker_session_manager session_id_path=session_id;")
    time.sleep(1.5)   # past the sweep's first pass: a session expired by hand waits for a request
    r = ngx.request({"requestType": "NEW_SESSION"}, tagged("created"))
    sid = r.header(NEW_SESSION).split(";")[0]
    other = new_session(ngx)
    assert ngx.request({"requestType": "NEW_SESSION"}, tagged("limit", {SESSION: sid})).status == 424
    assert ngx.request({"p": 1}, tagged("valid", {SESSION: sid})).status == 200
    ghost = str(uuid.uuid4())
    assert ngx.request({"p": 1}, tagged("not_found", {SESSION: ghost})).status == 400
    assert ngx.request({"requestType": "CLOSE"}, tagged("missing_id")).status == 400
    assert ngx.request({"requestType": "OPEN"}, tagged("malformed", {SESSION: sid})).status == 400
    assert ngx.request(b"[1]", tagged("not_object", {SESSION: sid})).status == 400
    head = (f"POST /invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Tag: repeated_header\r\n"
            f"{SESSION}: {sid}\r\n{SESSION}: {sid}\r\nContent-Length: 2\r\n\r\n{{}}")
    assert raw_request(ngx.port, head.encode()).startswith(b"HTTP/1.1 400")
    assert ngx.request({"p": 1}, tagged("none")).status == 200
    assert ngx.request({"p": 1}, tagged("none_empty", {SESSION: ""})).status == 200
    stale = expired_session(ngx)
    assert ngx.request({"p": 1}, tagged("expired", {SESSION: stale})).status == 400
    assert ngx.request({"requestType": "CLOSE"}, tagged("closed", {SESSION: sid})).status == 200
    os.chmod(ngx.sessions_path, 0o555)            # the workers' user may not rename in it
    try:
        assert ngx.request({"requestType": "CLOSE"}, tagged("store_error", {SESSION: other})).status == 424
    finally:
        os.chmod(ngx.sessions_path, 0o755)
    seen.update(logged(ngx, "store_error", "closed"))
    assert seen["created"]["id"] == sid
    assert seen["limit"]["id"] == ""               # NEW_SESSION's header is not its session
    for tag in ("valid", "malformed", "not_object", "repeated_header", "closed"):
        assert seen[tag]["id"] == sid, (tag, seen[tag])
    assert seen["not_found"]["id"] == ghost
    assert seen["expired"]["id"] == stale
    assert seen["missing_id"]["id"] == ""
    assert seen["store_error"]["id"] == other
    for tag in ("none", "none_empty"):
        assert seen[tag]["outcome"] == "" and seen[tag]["id"] == "", seen[tag]

    # sessions off
    off = start_nginx(http=LOG_FORMAT, server=ACCESS_LOG, sessions=False)
    assert off.request({"p": 1}, tagged("disabled", {SESSION: sid})).status == 400
    seen.update(logged(off, "disabled"))

    # engine handlers: sessions the engine owns
    engine.respond("/engine/create_session", Reply.json({"session_id": "eng-1"}))
    engine.respond("/engine/close_session", Reply.json({"detail": "unknown"}, status=404))
    eng = start_nginx(http=LOG_FORMAT, server=ACCESS_LOG + "\n" + HANDLER_LOCATIONS,
                      location="sagemaker_session_manager; " + HANDLERS)
    assert eng.request({"requestType": "NEW_SESSION"}, tagged("engine_created")).status == 200
    hostile = 'a"b\\c\u00e9'.encode().decode("latin-1")
    assert eng.request({"p": 1}, tagged("passed", {SESSION: hostile})).status == 200
    assert eng.request({"requestType": "CLOSE"}, tagged("engine_error", {SESSION: "eng-1"})).status == 404
    seen.update(logged(eng, "engine_error"))
    assert seen["engine_created"]["outcome"] == "created" and seen["engine_created"]["id"] == "eng-1"
    assert seen["passed"]["id"].encode("latin-1") == 'a"b\\c\u00e9'.encode() or \
        seen["passed"]["id"] == 'a"b\\c\u00e9', seen["passed"]
    assert seen["engine_error"]["id"] == "eng-1"

    for word in OUTCOMES:
        assert seen[word]["outcome"] == word, (word, seen[word])
    for entry in seen.values():
        assert entry["home"] == ""                 # no session affinity here


def test_variables_are_empty_where_no_session_is_decided(start_nginx):
    """A location without the manager: the variables are empty, the default
    log format shows "-"."""
    ngx = start_nginx(http="log_format plain '[$sagemaker_session_outcome|$sagemaker_session_id]';",
                      server="access_log access.log plain;", location="")
    assert ngx.request({"p": 1}, {SESSION: str(uuid.uuid4())}).status == 200
    time.sleep(0.2)
    with open(os.path.join(ngx.dir, "access.log")) as f:
        assert f.read().strip() == "[-|-]"


def test_variables_in_add_header_and_map(start_nginx):
    ngx = start_nginx(http='map $sagemaker_session_outcome $bad { default 0; not_found 1; expired 1; }',
                      location="sagemaker_session_manager; "
                               "add_header X-Outcome $sagemaker_session_outcome always; "
                               "add_header X-Session $sagemaker_session_id always; "
                               "add_header X-Bad $bad always;")
    sid = new_session(ngx)
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert (r.header("X-Outcome"), r.header("X-Session"), r.header("X-Bad")) == ("valid", sid, "0"), r
    assert close_session(ngx, sid).status == 200
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert (r.header("X-Outcome"), r.header("X-Session"), r.header("X-Bad")) == ("not_found", sid, "1"), r
    r = ngx.request({"requestType": "NEW_SESSION"})
    new = r.header(NEW_SESSION).split(";")[0]
    assert (r.header("X-Outcome"), r.header("X-Session")) == ("created", new), r
