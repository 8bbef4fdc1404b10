"""vLLM 0.33's /invocations and /ping, built as vLLM builds them
(vllm/entrypoints/serve/sagemaker/api_router.py): the Python library's
decorators (register_invocation_handler, stateful_session_manager(),
inject_adapter_id), vLLM's validate_json_request dependency and its
exception handlers, then the library's bootstrap(app). So the stub refuses
what vLLM refuses, with vLLM's statuses and bodies:

- a request carrying X-Amzn-SageMaker-Session-Id while the library's sessions
  are off (SAGEMAKER_ENABLE_STATEFUL_SESSIONS unset): 400
  {"error": {"message": "Invalid payload. stateful sessions not enabled, ...",
  "type": "Bad Request", "param": null, "code": 400}};
- a body whose Content-Type is not application/json: 400, "Unsupported Media
  Type: Only 'application/json' is allowed".

What vLLM would generate is replaced by an echo: {"object": "chat.completion",
"session_id": <vLLM's own session id: body "session_id", else the X-Session-ID
header>, "received": <the body>}.
"""

import json
from http import HTTPStatus

import model_hosting_container_standards.sagemaker as sagemaker_standards
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from asgi import call_asgi
from harness import Engine

SESSION_ID_HEADER = "X-Session-ID"      # vllm/entrypoints/generate/base/serving.py


def _error(message, status=HTTPStatus.BAD_REQUEST):     # vLLM's ErrorResponse
    status = HTTPStatus(status)
    return JSONResponse({"error": {"message": message, "type": status.phrase,
                                   "param": None, "code": status.value}},
                        status_code=status.value)


async def _http_exception_handler(request: Request, exc: HTTPException):
    return _error(str(exc.detail), exc.status_code)


async def _validation_exception_handler(request: Request, exc: RequestValidationError):
    errors = exc.errors()
    label = "error" if len(errors) == 1 else "errors"
    message = f"{len(errors)} validation {label}:\n" + "".join(f"  {e}\n" for e in errors)
    return _error(message.rstrip() if errors else "Validation error")


async def _validate_json_request(raw_request: Request):   # serve/utils/api_utils.py
    content_type = raw_request.headers.get("content-type", "").lower()
    if content_type.split(";", maxsplit=1)[0] != "application/json":
        raise RequestValidationError(
            errors=["Unsupported Media Type: Only 'application/json' is allowed"])


def _build():
    app = FastAPI()
    app.exception_handler(HTTPException)(_http_exception_handler)
    app.exception_handler(RequestValidationError)(_validation_exception_handler)
    router = APIRouter()

    @router.post("/ping", response_class=Response)
    @router.get("/ping", response_class=Response)
    @sagemaker_standards.register_ping_handler
    async def ping(raw_request: Request) -> Response:
        return Response(status_code=200)

    @router.post("/invocations", dependencies=[Depends(_validate_json_request)])
    @sagemaker_standards.register_invocation_handler
    @sagemaker_standards.stateful_session_manager()
    @sagemaker_standards.inject_adapter_id(adapter_path="model")
    async def invocations(raw_request: Request):
        try:
            body = await raw_request.json()
        except json.JSONDecodeError as e:
            raise HTTPException(status_code=HTTPStatus.BAD_REQUEST.value,
                                detail=f"JSON decode error: {e}") from e
        sid = body.get("session_id") if isinstance(body, dict) else None
        sid = sid or raw_request.headers.get(SESSION_ID_HEADER)
        return JSONResponse({"object": "chat.completion", "session_id": sid, "received": body})

    app.include_router(router)
    return sagemaker_standards.bootstrap(app)


_APP = None


def vllm_app():
    """One app per test process: the library's handler registry is global."""
    global _APP
    if _APP is None:
        _APP = _build()
    return _APP


def vllm_answer(record):
    """(status, headers, body) of vLLM's answer to a recorded request."""
    path, _, query = record["path"].partition("?")
    headers = list(record["headers"].items())
    status, out_headers, body = call_asgi(vllm_app(), record["method"], path, query,
                                          headers, record["body"])
    out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-length"]
    return status, out_headers + [("Content-Length", str(len(body)))], body


class VLLM(Engine):
    """Records requests like Engine; answers as vLLM 0.33's SageMaker routes."""

    def __init__(self):
        super().__init__()
        for route in ("/ping", "/invocations"):
            self.respond(route, vllm_answer)
