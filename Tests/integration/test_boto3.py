"""Real clients: boto3's sagemaker-runtime client drives a session's life
against the module, through a front location that maps SageMaker's
/endpoints/<name>/invocations to /invocations, as the SageMaker runtime does;
and a streaming invocation of a session reaches the client chunk by chunk,
as the engine sends them (proxy_buffering off)."""

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from harness import SESSION, new_session

FRONT = r"location ~ ^/endpoints/[^/]+/invocations$ { rewrite ^ /invocations last; }"
LOCATION = "sagemaker_session_manager session_id_path=session_id; proxy_buffering off;"


def runtime(ngx):
    """boto3's sagemaker-runtime client with nginx as its endpoint."""
    return boto3.client(
        "sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{ngx.port}",
        region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="dummy-secret",
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30))


def invoke(client, body, session):
    return client.invoke_endpoint(EndpointName="my-endpoint", ContentType="application/json",
                                  Accept="application/json", Body=json.dumps(body),
                                  SessionId=session)


def test_boto3_drives_a_session_life(start_nginx, engine):
    ngx = start_nginx(location=LOCATION, server=FRONT)
    client = runtime(ngx)
    # as AWS documents it: SessionId="NEW_SESSION" and the NEW_SESSION body
    r = invoke(client, {"requestType": "NEW_SESSION"}, "NEW_SESSION")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200, r
    new = r["NewSessionId"]                      # "<id>; Expires=<ISO 8601>", as SageMaker's
    sid, _, expires = new.partition("; Expires=")
    assert len(sid) == 36 and expires.endswith("Z"), new
    assert engine.count() == 0                   # the session request stayed in nginx

    r = invoke(client, {"inputs": "hello"}, sid)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200, r
    answer = json.loads(r["Body"].read())
    assert answer["received"] == {"inputs": "hello", "session_id": sid}, answer
    assert engine.last["path"] == "/invocations"
    assert engine.last["headers"][SESSION.lower()] == sid
    assert "NewSessionId" not in r and "ClosedSessionId" not in r

    r = invoke(client, {"requestType": "CLOSE"}, sid)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200, r
    assert r["ClosedSessionId"] == sid, r
    assert engine.count() == 1

    with pytest.raises(ClientError) as e:
        invoke(client, {"inputs": "again"}, sid)
    meta = e.value.response["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == 400, e.value.response
    assert engine.count() == 1


def test_boto3_unknown_session_is_a_client_error(start_nginx, engine):
    ngx = start_nginx(location=LOCATION, server=FRONT)
    with pytest.raises(ClientError) as e:
        invoke(runtime(ngx), {"inputs": "x"}, "0b7f3d9c-1c2e-4f5a-8b6d-9e0a1b2c3d4e")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert engine.count() == 0


# --- streaming --------------------------------------------------------------------

class LockstepStream:
    """An engine that streams its answer in chunks, sending each chunk only once
    the client has said it received the one before (or after `patience`
    seconds, noted as a stall). If nginx held the chunks back, every chunk
    after the first would stall; streamed, none does."""

    CHUNKS = [f'data: {{"token": {i}}}\n\n'.encode() for i in range(5)]

    def __init__(self, patience=10):
        self.received = threading.Event()
        self.sent_at, self.stalls, self.requests = [], 0, []
        stream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stream.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                        "body": body})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i, chunk in enumerate(stream.CHUNKS):
                    if i and not stream.received.wait(patience):
                        stream.stalls += 1
                    stream.received.clear()
                    stream.sent_at.append(time.monotonic())
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stream_engine():
    s = LockstepStream()
    yield s
    s.stop()


def test_streaming_session_chunks_arrive_as_the_engine_sends_them(start_nginx, stream_engine):
    ngx = start_nginx(engine_port=stream_engine.port, location=LOCATION, server=FRONT)
    sid = new_session(ngx)
    conn = http.client.HTTPConnection("127.0.0.1", ngx.port, timeout=60)
    try:
        body = json.dumps({"inputs": "hi", "stream": True})
        conn.request("POST", "/endpoints/my-endpoint/invocations", body=body,
                     headers={SESSION: sid, "Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200, r.status
        assert r.getheader("Content-Type") == "text/event-stream"
        data, arrivals = b"", []
        while True:
            part = r.read1(65536)
            if not part:
                break
            arrivals.append((time.monotonic(), len(data) + len(part)))
            data += part
            stream_engine.received.set()
    finally:
        conn.close()
    assert data == b"".join(LockstepStream.CHUNKS)
    assert json.loads(stream_engine.requests[0]["body"]) == {"inputs": "hi", "stream": True,
                                                             "session_id": sid}
    # every chunk but the first was sent because the client had the one before
    assert stream_engine.stalls == 0, stream_engine.stalls
    # and the client had each chunk before the engine sent the next: the
    # first byte arrived before the second chunk left the engine
    sent = stream_engine.sent_at
    assert len(arrivals) >= len(LockstepStream.CHUNKS), arrivals
    ends, total = [], 0
    for chunk in LockstepStream.CHUNKS:
        total += len(chunk)
        ends.append(next(t for t, n in arrivals if n >= total))
    for i in range(1, len(sent)):
        assert ends[i - 1] <= sent[i], (i, ends, sent)
