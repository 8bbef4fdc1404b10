"""N engine replicas behind one nginx upstream, for session affinity (issue 17).

Each replica is a stub on its own loopback port that knows only its own
sessions, as one engine per GPU does:

- kind "sglang": SGLang's session API. `POST /open_session
  {"capacity_of_str_len": N, "timeout": T}` answers a JSON string, a new id
  (uuid4().hex, 32 hex digits) that only this replica knows;
  `POST /close_session {"session_id": id}` forgets it (200 with an empty body,
  unknown ids too); `POST /generate` with `session_params.id` of an id it does
  not know answers 400 `{"error": {"message": "Invalid request: session id X
  does not exist"}}`, as SGLang does; a body SGLang's types refuse (no
  `capacity_of_str_len`) is SGLang's 400 ErrorResponse, not FastAPI's 422;
  `GET /health` answers 200.
- kind "plain": an engine without sessions of its own (built-in sessions):
  every request is answered 200, and the session it carried (the
  X-Amzn-SageMaker-Session-Id header, else `session_id` in the JSON body) is
  recorded.
- kind "vllm": vLLM 0.33's `/invocations` and `/ping` (vllm_stub.py, built on
  the Python library as vLLM is) with its own SageMaker sessions off: any
  request carrying the session header is refused (400, vLLM's
  `{"error": {"message": ..., "type": "Bad Request", "code": 400}}`), so nginx
  must strip it, and so is a body not labelled application/json;
  the session is read from `session_id` in the body, where nginx writes it.
  `GET /ping` and `GET /health` answer 200.

Every answer names the replica (`X-Replica` header and `"replica"` in JSON
bodies), and every request is recorded with the session it belongs to, so a
test can tell which replica served what. A replica can be killed (its port
refuses connections, its open connections are cut) and restarted on the same
port (a restarted engine has lost its sessions, as a real one has).

These stubs use the standard library's ThreadingHTTPServer: hundreds of
sessions take a few seconds.
"""

import json
import os
import re
import socket
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fastapi.exceptions import RequestValidationError

from harness import MODULE, SESSION, Nginx, free_port, indented, read_chunked, temp_paths, workdir

VLLM_REFUSAL = ("Invalid payload. stateful sessions not enabled, "
                "X-Amzn-SageMaker-Session-Id header not supported")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


# the replicas a Front is put in front of, by its session mode
KIND = {"engine": "sglang", "builtin": "plain"}

def sglang_validation_error(errors):
    """SGLang's answer to a request its pydantic types refuse: not FastAPI's
    422 but a 400 with an OpenAI-style ErrorResponse, in every version from
    0.5.4 to 0.5.23 (http_server.py, validation_exception_handler): (body, 400)."""
    exc = RequestValidationError(errors)
    exc_str, errors_str = str(exc), str(exc.errors())
    message = f"{exc_str} {errors_str}" if errors_str and errors_str != exc_str else exc_str
    return ({"object": "error", "message": message, "type": HTTPStatus.BAD_REQUEST.phrase,
             "param": None, "code": HTTPStatus.BAD_REQUEST.value}, 400)


def vllm_error(message):
    """vLLM 0.33's body for an HTTPException raised on its routes (the Python
    library's session checks raise them): not FastAPI's {"detail": ...}."""
    return {"error": {"message": message, "type": HTTPStatus.BAD_REQUEST.phrase,
                      "param": None, "code": HTTPStatus.BAD_REQUEST.value}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass        # a connection cut by kill(), or by nginx: nothing to report


class Replica:
    """One engine replica on 127.0.0.1:<port>."""

    def __init__(self, name, kind="sglang", port=0):
        assert kind in ("sglang", "plain", "vllm"), kind
        self.name = name
        self.kind = kind
        self.port = port
        self.lock = threading.Lock()
        self.sessions = {}        # sglang: id -> the /open_session body
        self.new_id = lambda: uuid.uuid4().hex    # how /open_session names one
        self.requests = []        # every request: dict(method, path, headers, body, json, session, at)
        self.connections = set()
        self.server = None
        self.thread = None
        self.start()

    # --- life ---------------------------------------------------------------

    @property
    def address(self):
        """As written on the upstream's server line."""
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self):
        return self.server is not None

    def start(self):
        assert self.server is None
        replica = self
        last_error = None
        for _ in range(100):          # the port of a killed replica may be in use a moment
            try:
                self.server = _Server(("127.0.0.1", self.port), replica._handler_class())
                break
            except OSError as e:
                last_error = e
                time.sleep(0.05)
        else:
            raise RuntimeError(f"replica {self.name} cannot listen on {self.port}: {last_error}")
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def kill(self, settle=0.2):
        """The engine dies: the port refuses connections, the connections
        nginx holds open are cut (then `settle` seconds for nginx to see them
        closed)."""
        if self.server is None:
            return
        server, self.server = self.server, None
        server.shutdown()
        server.server_close()
        with self.lock:
            open_connections = list(self.connections)
        for conn in open_connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        time.sleep(settle)

    def restart(self, keep_sessions=False):
        """Starts again on the same port; a restarted engine has lost its
        sessions unless keep_sessions."""
        self.kill()
        if not keep_sessions:
            with self.lock:
                self.sessions.clear()
        return self.start()

    def stop(self):
        self.kill(settle=0)

    # --- what it saw ----------------------------------------------------------

    def to(self, path):
        with self.lock:
            return [r for r in self.requests if r["path"].split("?")[0] == path]

    def count(self, path=None):
        with self.lock:
            if path is None:
                return len(self.requests)
            return sum(1 for r in self.requests if r["path"].split("?")[0] == path)

    def sessions_served(self, path):
        """The session of every request to `path`, in order (None for none)."""
        return [r["session"] for r in self.to(path)]

    def knows(self, sid):
        with self.lock:
            return sid in self.sessions

    def reset_records(self):
        with self.lock:
            self.requests.clear()

    def __repr__(self):
        return f"<Replica {self.name} {self.address} {self.kind}{'' if self.alive else ' dead'}>"

    # --- answers ---------------------------------------------------------------

    def _handler_class(self):
        replica = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            wbufsize = -1          # headers and body in one write, flushed after each request

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with replica.lock:
                    replica.connections.add(self.connection)

            def finish(self):
                try:
                    super().finish()
                finally:
                    with replica.lock:
                        replica.connections.discard(self.connection)

            def end_headers(self):
                # HTTP/1.0 requests (proxy_pass's default) get a closed connection: say so
                if self.close_connection:
                    self.send_header("Connection", "close")
                super().end_headers()

            def _body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    return read_chunked(self.rfile)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self):
                body = self._body()
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                record = {"method": self.command, "path": self.path, "headers": headers,
                          "body": body, "json": parsed, "session": None, "at": time.time()}
                status, out_headers, out = replica._answer(record)
                with replica.lock:
                    replica.requests.append(record)
                self.send_response(status)
                for k, v in out_headers:
                    self.send_header(k, v)
                self.send_header("X-Replica", replica.name)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        return Handler

    def _json(self, value, status=200):
        return status, [("Content-Type", "application/json")], json.dumps(value).encode()

    def _sglang_error(self, message, status=400):       # http_server._create_error_response
        return self._json({"error": {"message": message}}, status)

    def _missing(self, field, body):                     # pydantic's error, SGLang's 400
        return self._json(*sglang_validation_error([{"type": "missing", "loc": ("body", field),
                                                     "msg": "Field required", "input": body}]))

    def _answer(self, record):
        path = record["path"].split("?")[0]
        body = record["json"]
        if self.kind == "sglang":
            return self._answer_sglang(path, record, body)
        if self.kind == "vllm" and path in ("/ping", "/invocations"):
            return self._answer_vllm(record, body)
        if path in ("/ping", "/health"):
            return 200, [], b""
        header = record["headers"].get(SESSION.lower())
        in_body = body.get("session_id") if isinstance(body, dict) else None
        record["session"] = header if header is not None else in_body
        return self._json({"object": "chat.completion", "replica": self.name,
                           "session_id": record["session"], "received": body})

    def _answer_vllm(self, record, body):
        """vLLM 0.33's routes, built on the Python library (vllm_stub.py)."""
        from vllm_stub import vllm_answer        # imports the library: only when used
        header = record["headers"].get(SESSION.lower())
        in_body = body.get("session_id") if isinstance(body, dict) else None
        record["session"] = header if header is not None else in_body
        status, headers, out = vllm_answer(record)
        return status, [(k, v) for k, v in headers if k.lower() != "content-length"], out

    def _answer_sglang(self, path, record, body):
        if path == "/health":
            return 200, [], b""
        if path == "/open_session":
            # OpenSessionReqInput: capacity_of_str_len: int, session_id, streaming, timeout
            if not isinstance(body, dict):
                return self._json(*sglang_validation_error([{
                    "type": "model_attributes_type", "loc": ("body",),
                    "msg": "Input should be a valid dictionary", "input": body}]))
            capacity = body.get("capacity_of_str_len")
            if capacity is None:
                return self._missing("capacity_of_str_len", body)
            if not isinstance(capacity, int) or isinstance(capacity, bool):
                return self._json(*sglang_validation_error([{
                    "type": "int_type", "loc": ("body", "capacity_of_str_len"),
                    "msg": "Input should be a valid integer", "input": capacity}]))
            sid = body.get("session_id") or self.new_id()
            with self.lock:
                if sid in self.sessions:
                    return self._sglang_error("Failed to open the session. Check if a session "
                                              "with the same id is still open.")
                self.sessions[sid] = body
            record["session"] = sid
            return self._json(sid)
        if path == "/close_session":
            sid = body.get("session_id") if isinstance(body, dict) else None
            if not isinstance(sid, str):
                return self._missing("session_id", body)
            record["session"] = sid
            with self.lock:
                self.sessions.pop(sid, None)          # unknown ids: no error
            return 200, [], b""
        if path == "/generate":
            params = body.get("session_params") if isinstance(body, dict) else None
            sid = params.get("id") if isinstance(params, dict) else None
            record["session"] = sid
            with self.lock:
                known = sid is None or sid in self.sessions
            if not known:
                return self._sglang_error(f"Invalid request: session id {sid} does not exist")
            return self._json({"text": "echo", "replica": self.name,
                               "meta_info": {"id": uuid.uuid4().hex, "session_id": sid},
                               "received": body})
        return self._json({"detail": "Not Found"}, 404)


class Replicas:
    """N replicas of one kind, named r0 .. r<N-1>."""

    def __init__(self, n, kind="sglang"):
        self.kind = kind
        self.all = []
        try:
            for i in range(n):
                self.all.append(Replica(f"r{i}", kind))
        except Exception:
            self.stop()
            raise

    def __iter__(self):
        return iter(self.all)

    def __getitem__(self, i):
        return self.all[i]

    def __len__(self):
        return len(self.all)

    def add(self):
        r = Replica(f"r{len(self.all)}", self.kind)
        self.all.append(r)
        return r

    def by_name(self, name):
        return next(r for r in self.all if r.name == name)

    def by_address(self, address):
        return next((r for r in self.all if r.address == address), None)

    def owners(self, sid):
        """sglang: the replicas that hold session `sid` (it should be one)."""
        return [r for r in self.all if r.knows(sid)]

    def served(self, sid, path):
        """The names of the replicas that got a request of session `sid` to `path`."""
        return {r.name for r in self.all if sid in r.sessions_served(path)}

    def counts(self, path):
        return {r.name: r.count(path) for r in self.all}

    def stop(self):
        for r in self.all:
            r.kill(settle=0)


# --- session directories -----------------------------------------------------

def read_home(sessions_path, sid):
    """The address in <sessions_path>/<sid>/.home, or None when there is none.
    The file may hold the address as text or as a JSON string (the session key
    files' format): both read the same."""
    path = os.path.join(sessions_path, sid, ".home")
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    if text.startswith('"'):
        return json.loads(text)
    return text


def read_expiration(sessions_path, sid):
    with open(os.path.join(sessions_path, sid, ".expiration_ts")) as f:
        return float(json.load(f))


def session_dir(sessions_path, sid):
    return os.path.join(sessions_path, sid)


# --- nginx in front of the replicas ----------------------------------------------

CONF = """\
load_module {module};
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp_paths}
{http}
    upstream replicas {{
{upstream}
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location = /sglang/open_session {{
            internal;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://replicas/open_session;
        }}
        location = /sglang/close_session {{
            internal;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://replicas/close_session;
        }}
        location = /status {{
            sagemaker_sessions_status;
        }}
        location = /invocations {{
{location}
            add_header X-Worker $pid always;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://replicas{target};
        }}
    }}
}}
"""

# engine-owned sessions: SGLang's API on every replica
ENGINE_OWNED = """\
sagemaker_session_create_handler /sglang/open_session body;
sagemaker_session_close_handler /sglang/close_session body.session_id;
sagemaker_session_create_defaults '{"body.capacity_of_str_len": 1024}';
sagemaker_session_manager session_id_path=session_params.id;"""
# built-in sessions: nginx makes them; the engine gets the header and the id in the body
BUILT_IN = "sagemaker_session_manager session_id_path=session_id;"


def server_lines(replicas, params=None, order=None):
    """`server` lines for the replicas; params: {name: "weight=3"}; order: names."""
    params = params or {}
    chosen = [replicas.by_name(n) for n in order] if order else list(replicas)
    return [f"server {r.address}{' ' + params[r.name] if params.get(r.name) else ''};" for r in chosen]


def replicas_conf(directory, port, replicas, mode, affinity=True, workers=2, expiration="20m",
                  params=None, order=None, sessions=True, keepalive=16, http=()):
    """nginx.conf text: `location = /invocations` through `upstream replicas`.
    mode "engine": SGLang's session API on the replicas (their /generate);
    mode "builtin": built-in sessions (their /invocations)."""
    upstream = []
    if affinity:
        upstream.append("sagemaker_session_affinity;")
    upstream += server_lines(replicas, params, order)
    if keepalive:
        upstream.append(f"keepalive {keepalive};")
    http_lines = list(http)
    if sessions:
        http_lines += ["sagemaker_sessions on;",
                       f"sagemaker_sessions_path {os.path.join(directory, 'sessions')};",
                       f"sagemaker_sessions_expiration {expiration};"]
    location = ENGINE_OWNED if mode == "engine" else BUILT_IN
    return CONF.format(module=MODULE, workers=workers, dir=directory,
                       temp_paths=indented(temp_paths(directory), 4),
                       http=indented(http_lines, 4), upstream=indented(upstream, 8), port=port,
                       location=indented(location.splitlines(), 12),
                       target="/generate" if mode == "engine" else "/invocations")


class Front:
    """nginx in front of `replicas`, its conf rewritable (then reload) and
    restartable on the same directory (so the same sessions path)."""

    def __init__(self, replicas, mode, **conf):
        self.replicas = replicas
        self.mode = mode
        self.dir = workdir()
        self.port = free_port()
        self.conf_options = conf
        self.ngx = None
        self.all = []          # every Nginx started, for the crash check

    @property
    def sessions_path(self):
        return os.path.join(self.dir, "sessions")

    def text(self, **changes):
        options = dict(self.conf_options, **changes)
        return replicas_conf(self.dir, self.port, self.replicas, self.mode, **options)

    def prepare(self, **changes):
        """An Nginx on this conf, not started (for nginx -t)."""
        self.conf_options.update(changes)
        n = Nginx.from_text(self.text(), self.port, self.dir)
        self.all.append(n)
        return n

    def start(self, **changes):
        self.ngx = self.prepare(**changes).start()
        return self.ngx

    def reconfigure(self, **changes):
        """Writes the conf with `changes` and reloads (SIGHUP)."""
        self.conf_options.update(changes)
        with open(self.ngx.conf, "w") as f:
            f.write(self.text())
        self.ngx.reload()

    def restart(self):
        """Stops nginx, starts a new one on the same conf and sessions path."""
        self.ngx.stop()
        return self.start()

    def stop(self):
        """Stops nginx; returns the crash lines of every nginx it ran."""
        crashed = []
        for n in self.all:
            n.stop()
        if self.all:
            crashed = self.all[-1].crashes()     # one error.log for all of them
        return crashed

    # --- requests ---------------------------------------------------------------

    def request(self, body=b"", headers=None, **kw):
        return self.ngx.request(body, headers, **kw)

    @property
    def error_log(self):
        return self.ngx.error_log if self.ngx else ""


def log_lines_since(text, offset, level=None):
    """The error.log lines after `offset` characters, of `level` ("warn") if given."""
    lines = text[offset:].splitlines()
    if level:
        lines = [l for l in lines if f"[{level}]" in l]
    return lines
