"""A real nginx loading the built module, in front of an engine stub, on loopback.

Every test starts its own nginx (prefix in a fresh temp directory, workers as
nginx's default user) and its own engine stub, and stops both by pid.
"""

import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# `make asan` points these at build-asan/'s module and Tests/sanitizers/nginx-asan.
MODULE = os.environ.get("SMS_MODULE") or os.path.join(ROOT, "build", "ngx_http_sagemaker_sessions_module.so")
NGINX = os.environ.get("SMS_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
ASAN_LOG_DIR = os.environ.get("SMS_ASAN_LOG_DIR")


def nginx_version(binary=NGINX):
    """(1, 18, 0) for the nginx that `nginx -v` says it is; (0,) if it says nothing."""
    try:
        p = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30)
    except OSError:
        return (0,)
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", p.stderr + p.stdout)
    return tuple(int(x) for x in m.groups()) if m else (0,)


NGINX_VERSION = nginx_version()

# the module's own session ids: a UUID version 4, as the Python library makes them
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def connect_target(path="/invocations"):
    """The request target of a CONNECT that nginx parses as a request. Before
    1.29.3 that is a path, as for any method; from 1.29.3 nginx parses
    CONNECT's own authority-form (host:port, RFC 9110 9.3.6) and refuses a
    path in a CONNECT's request line as invalid (400) before any module runs."""
    return path if NGINX_VERSION < (1, 29, 3) else "127.0.0.1:443"


def error_log_args(directory):
    """`-e DIR/error.log`, where nginx logs before it has read its configuration.
    Only nginx 1.19.5 and newer have -e; an older one logs to its default,
    DIR/logs/error.log (relative to -p DIR), so that directory is made."""
    if NGINX_VERSION >= (1, 19, 5):
        return ["-e", os.path.join(directory, "error.log")]
    os.makedirs(os.path.join(directory, "logs"), exist_ok=True)
    return []


def shipped_conf(conf, what, directory, port, upstreams, extra=()):
    """A config shipped in nginx/ (or the README) with only mechanical changes:
    this module, in the foreground, logs and paths in `directory`, two workers,
    `port`; `upstreams` maps each `server` line's shipped port to this test's;
    `extra`: more (pattern, replacement) pairs. Each change must match once, so an edit to the shipped text shows here."""
    subs = [
        (r"(load_module \S+;|include /etc/nginx/modules-enabled/\*\.conf;[^\n]*)",
         f"load_module {MODULE};\ndaemon off;"),
        (r"error_log \S+ notice;", f"error_log {directory}/error.log info;"),
        (r"pid \S+;", f"pid {directory}/nginx.pid;"),
        (r"worker_processes auto;", "worker_processes 2;"),
        (r"listen 8080;", f"listen 127.0.0.1:{port};"),
        (r"http \{\n", "http {\n" + "".join(
            f"    {name}_temp_path {directory}/{name};\n"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))),
    ] + [(rf"server 127\.0\.0\.1:{shipped};", f"server 127.0.0.1:{ours};")
         for shipped, ours in upstreams.items()] + list(extra)
    for pattern, replacement in subs:
        conf, n = re.subn(pattern, lambda m: replacement, conf)
        assert n == 1, f"{what} changed: {pattern!r} matched {n} times"
    return conf


SESSION = "X-Amzn-SageMaker-Session-Id"
NEW_SESSION = "X-Amzn-SageMaker-New-Session-Id"
CLOSED_SESSION = "X-Amzn-SageMaker-Closed-Session-Id"
ENV_KEYS = (
    "SAGEMAKER_ENABLE_STATEFUL_SESSIONS",
    "SAGEMAKER_SESSIONS_PATH",
    "SAGEMAKER_SESSIONS_EXPIRATION",
    "SAGEMAKER_TRANSFORMS_CREATE_SESSION_DEFAULTS",
    "SAGEMAKER_TRANSFORMS_CLOSE_SESSION_DEFAULTS",
)


# internal locations for engine session handlers, and the directives using them
CREATE_URI = "/engine/create_session"
CLOSE_URI = "/engine/close_session"
HANDLER_LOCATIONS = f"""
location = {CREATE_URI} {{ internal; proxy_pass http://engine; }}
location = {CLOSE_URI} {{ internal; proxy_pass http://engine; }}
"""
HANDLERS = (f"sagemaker_session_create_handler {CREATE_URI} body.session_id; "
            f"sagemaker_session_close_handler {CLOSE_URI} body.session_id;")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CREATED_DIRS = []


def workdir():
    """A temp directory nginx's workers (nobody) can traverse; removed when
    the test run ends (see conftest.py)."""
    d = tempfile.mkdtemp(prefix="sms-")
    os.chmod(d, 0o755)
    CREATED_DIRS.append(d)
    return d


def remove_workdirs():
    while CREATED_DIRS:
        shutil.rmtree(CREATED_DIRS.pop(), ignore_errors=True)


def sanitizer_reports():
    """The AddressSanitizer/LeakSanitizer reports nginx processes wrote since the
    last call (only under `make asan`, which sets SMS_ASAN_LOG_DIR), as text;
    each is removed once returned."""
    if not ASAN_LOG_DIR:
        return []
    reports = []
    for name in sorted(os.listdir(ASAN_LOG_DIR)):
        path = os.path.join(ASAN_LOG_DIR, name)
        with open(path, errors="replace") as f:
            reports.append(f"--- {name}\n" + f.read())
        os.remove(path)
    return reports


class Reply:
    """What the engine stub answers to one request.

    body: bytes or str (sent as it is; use Reply.json for a JSON value).
    content_type: None sends no Content-Type. headers: extra (name, value) pairs.
    delay: seconds to wait before answering. truncate: announce the whole body
    in Content-Length, send only this many bytes of it, then close the connection.
    """

    def __init__(self, body=b"", status=200, content_type="application/json",
                 headers=(), delay=0, truncate=None):
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type
        self.headers = list(headers.items()) if isinstance(headers, dict) else list(headers)
        self.delay = delay
        self.truncate = truncate

    @classmethod
    def json(cls, value, status=200, **kw):
        return cls(json.dumps(value).encode(), status, "application/json", **kw)


def read_chunked(rfile):
    """A body in the chunked transfer coding, read from a handler's rfile."""
    data = b""
    while True:
        size = int(rfile.readline().strip(), 16)
        if size == 0:
            rfile.readline()
            return data
        data += rfile.read(size)
        rfile.readline()


def expired_session(ngx):
    """A session written by hand that expired 5 s ago, for the workers' user."""
    sid = str(uuid.uuid4())
    path = os.path.join(ngx.sessions_path, sid)
    os.mkdir(path)
    with open(os.path.join(path, ".expiration_ts"), "w") as f:
        f.write(str(time.time() - 5))
    nobody = pwd.getpwnam("nobody")
    for p in (path, os.path.join(path, ".expiration_ts")):
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    return sid


class Engine:
    """The inference engine stand-in: records every request, answers JSON.

    By default it echoes what it received (`{"engine": "ok", ...}`). `respond(path,
    answer)` makes it answer requests to `path` (query string ignored) with a Reply,
    or with what a function of the recorded request returns (a Reply, or a
    (status, [(name, value)], body) triple written as it is).
    """

    def __init__(self):
        self.requests = []
        self.responders = {}
        self.lock = threading.Lock()
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def end_headers(self):
                # An HTTP/1.0 request (proxy_pass's default, e.g. engine handler
                # subrequests) is answered on a connection closed afterwards: say
                # so, or nginx keeps it for the next request, which fails (502).
                if self.close_connection:
                    self.send_header("Connection", "close")
                super().end_headers()

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = read_chunked(self.rfile)
                record = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
                with engine.lock:
                    engine.requests.append(record)
                    responder = engine.responders.get(self.path.split("?")[0])
                if responder is not None:
                    answer = responder(record) if callable(responder) else responder
                    try:
                        if isinstance(answer, Reply):
                            self._reply(answer)
                        else:
                            self._write(*answer)
                    except OSError:
                        self.close_connection = True   # nginx gave up first
                    return
                try:
                    received = json.loads(body)
                except ValueError:
                    received = None
                out = json.dumps({"engine": "ok", "bytes": len(body), "received": received}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def _reply(self, reply):
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                if reply.content_type is not None:
                    self.send_header("Content-Type", reply.content_type)
                for k, v in reply.headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if reply.truncate is None:
                    self.wfile.write(reply.body)
                    return
                self.wfile.write(reply.body[:reply.truncate])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            def _write(self, status, headers, body):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def respond(self, path, answer):
        """Answers requests to `path` with `answer` (a Reply or a function)."""
        with self.lock:
            self.responders[path] = answer

    def to(self, path):
        """The recorded requests to `path` (query string ignored)."""
        with self.lock:
            return [r for r in self.requests if r["path"].split("?")[0] == path]

    @property
    def last(self):
        with self.lock:
            return self.requests[-1] if self.requests else None

    def count(self):
        with self.lock:
            return len(self.requests)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def indented(lines, spaces):
    """Lines of an nginx.conf, each indented by `spaces`, as one text."""
    return "\n".join(" " * spaces + line for line in lines)


def temp_paths(directory):
    """http-context lines that keep nginx's temp files in `directory`."""
    return [f"client_body_temp_path {directory}/client_body;",
            f"proxy_temp_path {directory}/proxy;",
            f"fastcgi_temp_path {directory}/fastcgi;",
            f"uwsgi_temp_path {directory}/uwsgi;",
            f"scgi_temp_path {directory}/scgi;"]


# the nginx Development Kit, which set_sagemaker_session_value needs, loaded
# first. SMS_NDK_MODULE names another build of it; SMS_NDK_MODULE=none runs
# the suite with no NDK: a test that needs it is skipped, saying so.
NDK_MODULE = os.environ.get("SMS_NDK_MODULE") or "/usr/lib/nginx/modules/ndk_http_module.so"


def require_ndk():
    """Skips the calling test when no NDK is to be loaded."""
    if NDK_MODULE == "none" or not os.path.exists(NDK_MODULE):
        import pytest
        pytest.skip(f"needs the nginx Development Kit (NDK), not loaded here (SMS_NDK_MODULE={NDK_MODULE})")

CONF = """\
{ndk}load_module {module};
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
{main_extra}
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp_paths}
{http_extra}
    upstream engine {{
        server 127.0.0.1:{engine_port};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port}{listen};
{server_extra}
        location /invocations {{
{location_extra}
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://engine;
        }}
        location /ping {{
            proxy_pass http://engine;
        }}
    }}
}}
"""


class Nginx:
    """One nginx master with its workers, configured from the template.

    http: lines for the http block; server: lines for the server block (extra
    locations, e.g. internal ones for engine handlers); location: lines for
    `location /invocations`; main: lines for the main context.
    """

    def __init__(self, engine_port, http="", location="sagemaker_session_manager;",
                 workers=1, env=None, main="", sessions=True, directory=None, listen="",
                 server="", ndk=False):
        if ndk:
            require_ndk()
        self.dir = directory or workdir()
        self.port = free_port()
        self.sessions_path = os.path.join(self.dir, "sessions")
        http_lines = []
        if sessions:
            http_lines.append("sagemaker_sessions on;")
            http_lines.append(f"sagemaker_sessions_path {self.sessions_path};")
        http_lines.append(http)
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(CONF.format(
                module=MODULE, workers=workers, dir=self.dir, main_extra=main,
                ndk=f"load_module {NDK_MODULE};\n" if ndk else "",
                temp_paths=indented(temp_paths(self.dir), 4),
                http_extra="\n".join("    " + l for l in http_lines if l),
                engine_port=engine_port, port=self.port, listen=listen and " " + listen,
                server_extra="\n".join("        " + l for l in server.splitlines() if l.strip()),
                location_extra="            " + location))
        self.env = clean_env(env)
        self.proc = None

    @classmethod
    def from_text(cls, conf, port, directory, env=None):
        """An nginx running a complete nginx.conf given as text (it must say
        `daemon off;` and listen on 127.0.0.1:`port`)."""
        n = cls.__new__(cls)
        n.dir = directory
        n.port = port
        n.sessions_path = os.path.join(directory, "sessions")
        n.conf = os.path.join(directory, "nginx.conf")
        with open(n.conf, "w") as f:
            f.write(conf)
        n.env = clean_env(env)
        n.proc = None
        return n

    @property
    def error_log(self):
        """What nginx logged: under nginx older than 1.19.5 (no -e), what it
        logged while reading its configuration at start-up went to
        logs/error.log, which comes first."""
        text = ""
        for path in (os.path.join(self.dir, "logs", "error.log"), os.path.join(self.dir, "error.log")):
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    text += f.read()
        return text

    def test_config(self):
        """`nginx -t`: (returncode, output)."""
        p = subprocess.run([NGINX, "-t", "-p", self.dir, "-c", self.conf, *error_log_args(self.dir)],
                           env=self.env, capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout + p.stderr

    def start(self):
        self.proc = subprocess.Popen(
            [NGINX, "-p", self.dir, "-c", self.conf, *error_log_args(self.dir)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: " + self.proc.stderr.read().decode()
                                   + self.error_log)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start listening: " + self.error_log)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self):
        """SIGHUP, then wait until the old workers are gone."""
        before = self.worker_pids()
        self.signal(signal.SIGHUP)
        deadline = time.time() + 15
        while time.time() < deadline:
            now = self.worker_pids()
            if now and not (now & before):
                return
            time.sleep(0.05)
        raise RuntimeError("reload did not replace the workers")

    def worker_pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return {int(x) for x in out.stdout.split()}

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()

    def crashes(self):
        """Lines where a worker died on a signal."""
        return [l for l in self.error_log.splitlines() if "exited on signal" in l]

    def request(self, body=b"", headers=None, method="POST", path="/invocations"):
        return request(self.port, body, headers, method, path)


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update(extra or {})
    return env


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.headers} {self.body[:300]!r}>"


def request(port, body=b"", headers=None, method="POST", path="/invocations"):
    if isinstance(body, str):
        body = body.encode()
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def chunked(body, size=7):
    """body in the chunked transfer coding, in chunks of `size` bytes."""
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def raw_request(port, data, timeout=30):
    """Sends bytes as they are; returns the whole answer (until close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def new_session(ngx):
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 200, r
    value = r.header(NEW_SESSION)
    assert value, r
    return value.split(";")[0].strip()


def close_session(ngx, sid):
    return ngx.request({"requestType": "CLOSE"}, {SESSION: sid})


def detail(r):
    """The detail of a FastAPI-style JSON error answer."""
    assert r.header("Content-Type") == "application/json", r
    body = r.json()
    assert list(body) == ["detail"], r
    return body["detail"]


def assert_emerg(result, *words):
    """`nginx -t` failed with an [emerg] line holding every word."""
    code, out = result
    assert code != 0, out
    line = next((l for l in out.splitlines() if "[emerg]" in l), None)
    assert line, out
    for w in words:
        assert w in line, (w, line)


# --- whole nginx.conf texts for the load scripts (bench/bench.py,
# Tests/load/consistency.py), which start their nginx servers themselves

# the main context and the start of the http block, the same for both
MAIN_CONF = """worker_processes {workers};
daemon off;
pid {dir}/{pid};
error_log {dir}/{log} {level};
events {{ worker_connections 4096; }}
http {{
    access_log off;
"""

ENGINE_STUB_CONF = "\n" + MAIN_CONF + """    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""

FRONT_CONF = "\nload_module {module};\n{main}" + MAIN_CONF + """{http}
    upstream engine {{
        server 127.0.0.1:{engine_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port}{listen};
{locations}
    }}
}}
"""


def engine_stub_conf(directory, port, body, pid, log, level):
    """A second nginx standing in for a fast engine: one worker answering
    every request 200 with the JSON `body`. pid, log: file names in `directory`."""
    return ENGINE_STUB_CONF.format(workers=1, dir=directory, pid=pid, log=log, level=level, port=port,
                                   body=body)


def proxy_location(path, manager=None):
    """`location = path` passed to the engine on keep-alive connections;
    manager: the sagemaker_session_manager directive, if any."""
    lines = [f"location = {path} {{"]
    if manager:
        lines.append("    " + manager)
    lines += ["    proxy_http_version 1.1;",
              '    proxy_set_header Connection "";',
              "    proxy_pass http://engine;",
              "}"]
    return indented(lines, 8)


def front_conf(*, directory, pid, log, level, module, workers, sessions, expiration, engine_port, port,
               http=(), sessions_max=None, listen="", locations=None, main=()):
    """nginx with the module in front of the engine at `engine_port`, its
    sessions in `sessions`. pid, log: file names in `directory`; http: lines
    for the http block, before the session directives; listen: parameters of
    `listen`; locations: the server's locations as text, by default
    `location = /invocations` with the session manager; main: lines for
    the main context (a thread_pool)."""
    http_lines = list(http) + ["sagemaker_sessions on;",
                               f"sagemaker_sessions_path {sessions};",
                               f"sagemaker_sessions_expiration {expiration};"]
    if sessions_max is not None:
        http_lines.append(f"sagemaker_sessions_max {sessions_max};")
    if locations is None:
        locations = proxy_location("/invocations", "sagemaker_session_manager;")
    return FRONT_CONF.format(main="".join(line + "\n" for line in main), module=module, workers=workers,
                             dir=directory, pid=pid, log=log, level=level, http=indented(http_lines, 4), engine_port=engine_port, port=port,
                             listen=listen and " " + listen, locations=locations)
