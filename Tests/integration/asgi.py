"""One HTTP request through an ASGI app, in process: the engine stubs run the
engines' own FastAPI routes (and, for vLLM, the Python library's decorators)
this way, behind a plain HTTP server that nginx talks to."""

import asyncio


def call_asgi(app, method, path, query, headers, body):
    """(status, [(name, value)], body) of one request through `app`."""
    async def run():
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": query.encode(), "root_path": "",
                 "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 30000)}
        pending = [{"type": "http.request", "body": body, "more_body": False}]
        out = {"status": None, "headers": [], "body": b""}

        async def receive():
            return pending.pop() if pending else {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
                out["headers"] = [(k.decode("latin-1"), v.decode("latin-1"))
                                  for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                out["body"] += message.get("body", b"")

        await app(scope, receive, send)
        return out["status"], out["headers"], out["body"]

    return asyncio.run(run())
