"""nginx/sglang.conf, as shipped, in front of a stub that answers exactly as
SGLang's HTTP server does: its session endpoints are FastAPI routes with
SGLang's own signatures and request types, run in process."""

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from typing import Dict, List, Optional, Union

import pytest
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from harness import (CLOSED_SESSION, NEW_SESSION, ROOT, SESSION, Engine, Nginx,
                     free_port, shipped_conf, workdir)
from asgi import call_asgi
from replicas import sglang_validation_error

CONF = os.path.join(ROOT, "nginx", "sglang.conf")
CREATE_ENV = "SAGEMAKER_TRANSFORMS_CREATE_SESSION_DEFAULTS"
CAPACITY = '{"body.capacity_of_str_len": 1024}'
HEX32 = re.compile(r"^[0-9a-f]{32}$")


# --- the SGLang stub ---------------------------------------------------------------

# sglang/srt/managers/io_struct.py (0.5.4 to 0.5.23; "timeout" from 0.5.10)
@dataclass
class OpenSessionReqInput:
    capacity_of_str_len: int
    session_id: Optional[str] = None
    streaming: Optional[bool] = None
    timeout: Optional[float] = None


@dataclass
class CloseSessionReqInput:
    session_id: str


@dataclass
class GenerateReqInput:        # the fields used here; others are ignored, as by pydantic
    text: Optional[Union[List[str], str]] = None
    input_ids: Optional[Union[List[List[int]], List[int]]] = None
    sampling_params: Optional[Union[List[Dict], Dict]] = None
    rid: Optional[Union[List[str], str]] = None
    stream: bool = False
    session_params: Optional[Union[List[Dict], Dict]] = None
    session_id: Optional[str] = None            # 0.5.16+: not with session_params


def sglang_app(state):
    """SGLang's routes (sglang/srt/entrypoints/http_server.py) over a fake engine."""
    app = FastAPI()

    @app.exception_handler(RequestValidationError)
    async def validation_exception_handler(request: Request, exc: RequestValidationError):
        # SGLang overrides FastAPI's 422 with a 400 ErrorResponse
        body, status = sglang_validation_error(exc.errors())
        return JSONResponse(body, status_code=status)

    def error(message, status=400):          # http_server._create_error_response
        return JSONResponse({"error": {"message": str(message)}}, status_code=status)

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.api_route("/open_session", methods=["GET", "POST"])
    async def open_session(obj: OpenSessionReqInput, request: Request):
        session_id = obj.session_id or uuid.uuid4().hex     # TokenizerManager.open_session
        if session_id in state.sessions:
            return error("Failed to open the session. Check if a session with the same id is still open.")
        state.sessions[session_id] = obj.capacity_of_str_len
        return session_id

    @app.api_route("/close_session", methods=["GET", "POST"])
    async def close_session(obj: CloseSessionReqInput, request: Request):
        state.sessions.pop(obj.session_id, None)             # unknown ids: no error
        return Response(status_code=200)

    @app.api_route("/generate", methods=["POST", "PUT"])
    async def generate(obj: GenerateReqInput, request: Request):
        params = obj.session_params
        if obj.session_id is not None and params is not None:     # GenerateReqInput.normalize
            return error("session_id and session_params cannot both be set.")
        sid = params.get("id") if isinstance(params, dict) else None
        if sid is not None and sid not in state.sessions:
            return error(f"Invalid request: session id {sid} does not exist")
        received = await request.json()
        return {"text": "echo", "meta_info": {"id": uuid.uuid4().hex, "session_id": sid},
                "received": received}

    return app


class SGLang(Engine):
    """Records requests like Engine; answers as SGLang's HTTP server."""

    ROUTES = ("/health", "/open_session", "/close_session", "/generate")

    def __init__(self):
        super().__init__()
        self.sessions = {}
        self.app = sglang_app(self)
        for route in self.ROUTES:
            self.respond(route, self._answer)

    def _answer(self, record):
        path, _, query = record["path"].partition("?")
        headers = list(record["headers"].items())
        return call_asgi(self.app, record["method"], path, query, headers, record["body"])


# --- nginx running nginx/sglang.conf ----------------------------------------------

def sglang_conf(directory, port, sglang_port):
    """nginx/sglang.conf with only mechanical changes: paths, ports, foreground."""
    with open(CONF) as f:
        conf = f.read()
    return shipped_conf(conf, "nginx/sglang.conf", directory, port, {30000: sglang_port})


@pytest.fixture
def sglang():
    s = SGLang()
    yield s
    s.stop()


@pytest.fixture
def run_sglang_conf(sglang):
    started = []

    def run(env=None, start=True):
        d = workdir()
        port = free_port()
        env = dict(env or {})
        env.setdefault("SAGEMAKER_SESSIONS_PATH", os.path.join(d, "sessions"))
        n = Nginx.from_text(sglang_conf(d, port, sglang.port), port, d, env=env)
        started.append(n)
        return n.start() if start else n

    yield run
    crashed = []
    for n in started:
        n.stop()
        crashed += n.crashes()
        shutil.rmtree(n.dir, ignore_errors=True)
    assert not crashed, crashed


def directives(conf):
    return [l.strip() for l in conf.splitlines() if l.strip() and not l.strip().startswith("#")]


def test_sglang_conf_sets_no_create_defaults_and_passes_nginx_t(run_sglang_conf):
    with open(CONF) as f:
        lines = directives(f.read())
    assert not [l for l in lines if "create_defaults" in l], "N comes from the environment"
    assert "sagemaker_session_create_handler /sglang/open_session body;" in lines
    assert "sagemaker_session_close_handler /sglang/close_session body.session_id;" in lines
    assert "sagemaker_session_manager session_id_path=session_params.id;" in lines
    ngx = run_sglang_conf(env={CREATE_ENV: CAPACITY}, start=False)
    code, out = ngx.test_config()
    assert code == 0, out
    assert "test is successful" in out
    ngx = run_sglang_conf(start=False)           # without the variable too
    code, out = ngx.test_config()
    assert code == 0, out


def test_session_life_against_sglang(run_sglang_conf, sglang):
    ngx = run_sglang_conf(env={CREATE_ENV: CAPACITY})

    # NEW_SESSION -> POST /open_session {"capacity_of_str_len": 1024} -> "<32 hex>"
    r = ngx.request({"requestType": "NEW_SESSION"}, {"Content-Type": "application/json"})
    assert r.status == 200, r
    sid = r.header(NEW_SESSION)
    assert HEX32.match(sid), r
    assert r.body == f"Successfully created session: {sid}".encode()
    assert sglang.sessions == {sid: 1024}
    opened = sglang.to("/open_session")
    assert len(opened) == 1
    assert opened[0]["method"] == "POST"
    assert opened[0]["headers"]["content-type"] == "application/json"
    assert json.loads(opened[0]["body"]) == {"capacity_of_str_len": 1024}

    # invocations -> /generate with the id at session_params.id
    prompt = {"text": "The capital of France is", "sampling_params": {"max_new_tokens": 8}}
    r = ngx.request(prompt, {SESSION: sid, "Content-Type": "application/json"})
    assert r.status == 200, r
    answer = r.json()
    assert answer["meta_info"]["session_id"] == sid
    assert answer["received"] == {**prompt, "session_params": {"id": sid}}
    assert sglang.last["path"] == "/generate"

    r = ngx.request({"text": " Paris.", "session_params": {"rid": answer["meta_info"]["id"], "offset": -1}},
                    {SESSION: sid, "Content-Type": "application/json"})
    assert r.status == 200, r
    assert r.json()["received"]["session_params"] == {"rid": answer["meta_info"]["id"], "offset": -1, "id": sid}

    # CLOSE -> POST /close_session {"session_id": sid} -> 200, empty body
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: sid})
    assert r.status == 200, r
    assert r.header(CLOSED_SESSION) == sid
    assert r.body == f"Successfully closed session: {sid}".encode()
    closed = sglang.to("/close_session")
    assert len(closed) == 1
    assert closed[0]["headers"]["content-type"] == "application/json"
    assert json.loads(closed[0]["body"]) == {"session_id": sid}
    assert sglang.sessions == {}

    # SGLang answers 200 to closing an id it does not know: so does nginx
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: sid})
    assert r.status == 200, r
    assert r.header(CLOSED_SESSION) == sid

    # the engine owns its sessions: nginx passes the closed id, SGLang refuses it
    r = ngx.request(prompt, {SESSION: sid, "Content-Type": "application/json"})
    assert r.status == 400, r
    assert r.json() == {"error": {"message": f"Invalid request: session id {sid} does not exist"}}
    store = os.path.join(ngx.dir, "sessions")
    assert not os.path.isdir(store) or os.listdir(store) == [], "nginx kept sessions of its own"


def test_two_sessions_are_independent(run_sglang_conf, sglang):
    ngx = run_sglang_conf(env={CREATE_ENV: '{"body.capacity_of_str_len": 4096}'})
    ids = []
    for _ in range(2):
        r = ngx.request({"requestType": "NEW_SESSION"})
        assert r.status == 200, r
        ids.append(r.header(NEW_SESSION))
    assert ids[0] != ids[1]
    assert sglang.sessions == {ids[0]: 4096, ids[1]: 4096}
    assert ngx.request({"requestType": "CLOSE"}, {SESSION: ids[0]}).status == 200
    assert sglang.sessions == {ids[1]: 4096}
    r = ngx.request({"text": "x"}, {SESSION: ids[1], "Content-Type": "application/json"})
    assert r.status == 200, r
    assert r.json()["received"]["session_params"] == {"id": ids[1]}


def test_without_the_env_variable_sglang_400_reaches_the_client_unchanged(run_sglang_conf, sglang):
    ngx = run_sglang_conf()
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 400, r
    assert r.header("Content-Type") == "application/json"
    body = r.json()
    assert {k: body[k] for k in ("object", "type", "param", "code")} == {
        "object": "error", "type": "Bad Request", "param": None, "code": 400}, body
    assert "capacity_of_str_len" in body["message"] and "Field required" in body["message"], body
    opened = sglang.to("/open_session")
    assert len(opened) == 1 and json.loads(opened[0]["body"]) == {}
    # byte for byte what SGLang sent
    status, headers, raw = call_asgi(sglang.app, "POST", "/open_session", "",
                                     [("content-type", "application/json")], b"{}")
    assert (r.status, r.body) == (status, raw)
    assert r.header(NEW_SESSION) is None
    assert sglang.sessions == {}


def test_capacity_that_is_not_an_int_400_reaches_the_client(run_sglang_conf, sglang):
    ngx = run_sglang_conf(env={CREATE_ENV: '{"body.capacity_of_str_len": "lots"}'})
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 400, r
    assert r.header("Content-Type") == "application/json"
    body = r.json()
    assert (body["object"], body["type"], body["code"]) == ("error", "Bad Request", 400), body
    assert "int_parsing" in body["message"] and "'lots'" in body["message"], body
    assert sglang.sessions == {}


def test_ping_reaches_sglang_health(run_sglang_conf, sglang):
    ngx = run_sglang_conf(env={CREATE_ENV: CAPACITY})
    r = ngx.request(b"", method="GET", path="/ping")
    assert r.status == 200, r
    assert sglang.last["path"] == "/health"


def test_sglang_session_endpoints_are_not_reachable_directly(run_sglang_conf, sglang):
    ngx = run_sglang_conf(env={CREATE_ENV: CAPACITY})
    for path in ("/sglang/open_session", "/sglang/close_session"):
        r = ngx.request({"capacity_of_str_len": 1, "session_id": "x"}, path=path)
        assert r.status == 404, (path, r)
    assert sglang.count() == 0


def test_a_top_level_session_id_beside_the_injected_session_params_is_sglangs_400(
        run_sglang_conf, sglang):
    """SGLang 0.5.16+: clients behind sglang.conf must not send "session_id"."""
    ngx = run_sglang_conf(env={CREATE_ENV: CAPACITY})
    r = ngx.request({"requestType": "NEW_SESSION"})
    sid = r.header(NEW_SESSION)
    r = ngx.request({"text": "x", "session_id": sid}, {SESSION: sid, "Content-Type": "application/json"})
    assert r.status == 400, r
    assert r.json() == {"error": {"message": "session_id and session_params cannot both be set."}}
    r = ngx.request({"text": "x"}, {SESSION: sid, "Content-Type": "application/json"})
    assert r.status == 200, r
