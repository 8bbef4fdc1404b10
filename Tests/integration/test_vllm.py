"""Fronting vLLM: its own /invocations runs the Python library, which refuses
any request carrying the session header while its own sessions are off. nginx
manages the sessions and removes the header on the way to vLLM
(`proxy_set_header X-Amzn-SageMaker-Session-Id "";`); validation and body
injection still happen in nginx."""

import json

from harness import CLOSED_SESSION, SESSION, Reply, close_session, new_session

VLLM_REFUSAL = ("Invalid payload. stateful sessions not enabled, "
                "X-Amzn-SageMaker-Session-Id header not supported")
LOCATION = ('sagemaker_session_manager session_id_path=session_id; '
            'proxy_set_header X-Amzn-SageMaker-Session-Id "";')


def vllm(engine):
    """/invocations as vLLM answers it with the library's sessions off."""
    def answer(record):
        if SESSION.lower() in record["headers"]:     # present at all, even empty
            return Reply.json({"detail": VLLM_REFUSAL}, status=400)
        body = json.loads(record["body"]) if record["body"] else None
        return Reply.json({"object": "chat.completion", "received": body})
    engine.respond("/invocations", answer)


def test_stub_refuses_the_header_without_nginx_help(start_nginx, engine):
    vllm(engine)
    ngx = start_nginx(location="sagemaker_session_manager session_id_path=session_id;")
    sid = new_session(ngx)
    r = ngx.request({"messages": []}, {SESSION: sid})
    assert r.status == 400, r
    assert r.json() == {"detail": VLLM_REFUSAL}


def test_header_stripped_id_injected(start_nginx, engine):
    vllm(engine)
    ngx = start_nginx(location=LOCATION)
    sid = new_session(ngx)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    r = ngx.request(body, {SESSION: sid, "Content-Type": "application/json"})
    assert r.status == 200, r
    assert r.json() == {"object": "chat.completion", "received": {**body, "session_id": sid}}
    assert SESSION.lower() not in engine.last["headers"]
    assert json.loads(engine.last["body"]) == {**body, "session_id": sid}


def test_unknown_session_still_rejected_by_nginx(start_nginx, engine):
    vllm(engine)
    ngx = start_nginx(location=LOCATION)
    sid = "0b7f3d9c-1c2e-4f5a-8b6d-9e0a1b2c3d4e"
    r = ngx.request({"messages": []}, {SESSION: sid})
    assert r.status == 400, r
    assert r.header("Content-Type") == "application/json"
    assert r.json() == {"detail": f"Bad request: session not found: {sid}"}
    assert engine.count() == 0


def test_closed_session_rejected_and_session_requests_stay_in_nginx(start_nginx, engine):
    vllm(engine)
    ngx = start_nginx(location=LOCATION)
    sid = new_session(ngx)
    assert ngx.request({"messages": []}, {SESSION: sid}).status == 200
    r = close_session(ngx, sid)
    assert r.status == 200, r
    assert r.header(CLOSED_SESSION) == sid
    r = ngx.request({"messages": []}, {SESSION: sid})
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
