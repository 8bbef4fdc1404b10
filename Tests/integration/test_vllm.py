"""Fronting vLLM 0.33: its /invocations runs the Python library's
@stateful_session_manager(), which refuses any request carrying the session
header while its own sessions are off, and vLLM refuses a body that is not
labelled application/json. The stub (vllm_stub.py) is built on the library
with vLLM's own decorators, so it refuses the same. nginx manages the
sessions, drops the header and labels the body; nginx/example.conf and the
README's Quick start do so, and are run here as shipped."""

import json
import os
import re
import shutil

import pytest

from harness import (CLOSED_SESSION, NEW_SESSION, ROOT, SESSION, Nginx, close_session,
                     free_port, new_session, shipped_conf, workdir)
from vllm_stub import VLLM, vllm_answer

VLLM_REFUSAL = ("Invalid payload. stateful sessions not enabled, "
                "X-Amzn-SageMaker-Session-Id header not supported")
MEDIA_REFUSAL = "1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed"
LOCATION = ('sagemaker_session_manager session_id_path=session_id; '
            'proxy_set_header X-Amzn-SageMaker-Session-Id ""; '
            'proxy_set_header Content-Type application/json;')
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def vllm_error(message):
    return {"error": {"message": message, "type": "Bad Request", "param": None, "code": 400}}


def vllm(engine):
    """/invocations and /ping as vLLM 0.33 answers them, library sessions off."""
    for route in ("/ping", "/invocations"):
        engine.respond(route, vllm_answer)


def test_stub_refuses_the_header_without_nginx_help(start_nginx, engine):
    vllm(engine)
    ngx = start_nginx(location="sagemaker_session_manager session_id_path=session_id;")
    sid = new_session(ngx)
    r = ngx.request(CHAT, {SESSION: sid, "Content-Type": "application/json"})
    assert r.status == 400, r
    assert r.json() == vllm_error(VLLM_REFUSAL)


def test_stub_refuses_a_body_without_json_content_type(start_nginx, engine):
    vllm(engine)
    ngx = start_nginx(location='sagemaker_session_manager session_id_path=session_id; '
                               'proxy_set_header X-Amzn-SageMaker-Session-Id "";')
    sid = new_session(ngx)
    for headers in ({}, {"Content-Type": "text/plain"}):
        r = ngx.request(CHAT, {SESSION: sid, **headers})
        assert r.status == 400, (headers, r)
        assert r.json() == vllm_error(MEDIA_REFUSAL), r


def test_header_stripped_id_injected_content_type_set(start_nginx, engine):
    vllm(engine)
    ngx = start_nginx(location=LOCATION)
    sid = new_session(ngx)
    for headers in ({}, {"Content-Type": "application/json"}, {"Content-Type": "text/plain"}):
        r = ngx.request(CHAT, {SESSION: sid, **headers})
        assert r.status == 200, r
        # vLLM's own session id is the SageMaker session's; the library's
        # inject_adapter_id writes "model" (no adapter: null)
        assert r.json() == {"object": "chat.completion", "session_id": sid,
                            "received": {**CHAT, "session_id": sid, "model": None}}, r
        assert SESSION.lower() not in engine.last["headers"]
        assert engine.last["headers"]["content-type"] == "application/json"
        assert json.loads(engine.last["body"]) == {**CHAT, "session_id": sid}


def test_unknown_session_still_rejected_by_nginx(start_nginx, engine):
    vllm(engine)
    ngx = start_nginx(location=LOCATION)
    sid = "0b7f3d9c-1c2e-4f5a-8b6d-9e0a1b2c3d4e"
    r = ngx.request(CHAT, {SESSION: sid})
    assert r.status == 400, r
    assert r.header("Content-Type") == "application/json"
    assert r.json() == {"detail": f"Bad request: session not found: {sid}"}
    assert engine.count() == 0


def test_closed_session_rejected_and_session_requests_stay_in_nginx(start_nginx, engine):
    vllm(engine)
    ngx = start_nginx(location=LOCATION)
    sid = new_session(ngx)
    assert ngx.request(CHAT, {SESSION: sid}).status == 200
    r = close_session(ngx, sid)
    assert r.status == 200, r
    assert r.header(CLOSED_SESSION) == sid
    r = ngx.request(CHAT, {SESSION: sid})
    assert r.status == 400, r
    assert r.json() == {"detail": f"Bad request: session not found: {sid}"}
    assert [q["path"] for q in engine.requests] == ["/invocations"]


def test_requests_without_session_pass_untouched(start_nginx, engine):
    vllm(engine)
    ngx = start_nginx(location=LOCATION)
    body = b'{"messages": [],   "stream": false}'
    r = ngx.request(body, {"Content-Type": "application/json"})
    assert r.status == 200, r
    assert engine.last["body"] == body
    assert SESSION.lower() not in engine.last["headers"]


# --- nginx/example.conf and the README's Quick start, as shipped ----------------------

def readme_quick_start():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text[text.index("## Quick start"):]
    return re.search(r"```nginx\n(.*?)```", section, re.S).group(1)


def example_conf():
    with open(os.path.join(ROOT, "nginx", "example.conf")) as f:
        return f.read()


def runnable(conf, directory, port, engine_port):
    return shipped_conf(conf, "the shipped config", directory, port, {8081: engine_port}, extra=[
        (r"sagemaker_sessions_path /dev/shm/sagemaker_sessions;",
         f"sagemaker_sessions_path {directory}/sessions;")])


@pytest.fixture
def vllm_engine():
    v = VLLM()
    yield v
    v.stop()


@pytest.mark.parametrize("source", [example_conf, readme_quick_start],
                         ids=["example.conf", "README"])
def test_shipped_config_walks_a_session_in_front_of_vllm(vllm_engine, source):
    d = workdir()
    port = free_port()
    ngx = Nginx.from_text(runnable(source(), d, port, vllm_engine.port), port, d).start()
    try:
        assert ngx.request(b"", method="GET", path="/ping").status == 200
        r = ngx.request({"requestType": "NEW_SESSION"})
        assert r.status == 200, r
        sid = r.header(NEW_SESSION).split(";")[0]
        for turn in range(2):       # as a SageMaker client sends it: no JSON label
            r = ngx.request(CHAT, {SESSION: sid, "Content-Type": "application/octet-stream"})
            assert r.status == 200, r
            assert r.json()["session_id"] == sid, r
        r = ngx.request({"requestType": "CLOSE"}, {SESSION: sid})
        assert r.status == 200 and r.header(CLOSED_SESSION) == sid, r
        r = ngx.request(CHAT, {SESSION: sid})
        assert r.status == 400, r
        assert r.json() == {"detail": f"Bad request: session not found: {sid}"}
        assert [q["path"] for q in vllm_engine.requests] == ["/ping", "/invocations", "/invocations"]
        assert not ngx.crashes()
    finally:
        ngx.stop()
        shutil.rmtree(d, ignore_errors=True)
