"""`make run`: nginx with the module on 127.0.0.1, in front of a demo engine,
walked through a session's life with curl; then it serves until Ctrl-C."""

import os
import shutil
import signal
import subprocess
import sys

from harness import SESSION, Engine, Nginx


def curl(port, title, body, headers=()):
    cmd = ["curl", "-sS", "-i", f"http://127.0.0.1:{port}/invocations",
           "-H", "Content-Type: application/json", "--data-binary", body]
    for h in headers:
        cmd += ["-H", h]
    shown = " ".join(a if " " not in a and "{" not in a else f"'{a}'" for a in cmd)
    print(f"\n### {title}\n$ {shown}", flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    print(out.replace("\r\n", "\n").rstrip() + "\n", flush=True)
    return out


def main():
    engine = Engine()
    ngx = Nginx(engine.port, workers=2,
                location="sagemaker_session_manager session_id_path=session_id;")
    stop = lambda *_: (_ for _ in ()).throw(KeyboardInterrupt)
    signal.signal(signal.SIGTERM, stop)
    try:
        ngx.start()
        port = ngx.port
        print(f"nginx (pid {ngx.proc.pid}) on 127.0.0.1:{port}, demo engine on 127.0.0.1:{engine.port}")
        print(f"sessions in {ngx.sessions_path}, config {ngx.conf}")

        out = curl(port, "1. NEW_SESSION: nginx creates the session", '{"requestType": "NEW_SESSION"}')
        sid = next(l.split(":", 1)[1].split(";")[0].strip() for l in out.splitlines()
                   if l.lower().startswith("x-amzn-sagemaker-new-session-id"))
        curl(port, "2. Invocation in the session: checked, id written into the body, passed to the engine",
             '{"prompt": "Hello"}', [f"{SESSION}: {sid}"])
        curl(port, "3. CLOSE", '{"requestType": "CLOSE"}', [f"{SESSION}: {sid}"])
        curl(port, "4. Invocation in the closed session: rejected by nginx",
             '{"prompt": "Hello again"}', [f"{SESSION}: {sid}"])

        print(f"Serving on http://127.0.0.1:{port}/invocations until Ctrl-C.", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        print("\nstopping nginx and the demo engine")
    finally:
        ngx.stop()
        engine.stop()
        shutil.rmtree(ngx.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
