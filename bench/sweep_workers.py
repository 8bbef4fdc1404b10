"""How long the expiry sweep's pass takes at each number of workers.

    python3 bench/sweep_workers.py [WORKERS ...]      (default: 1 2 4 8)

For each worker count: SWEEP_SESSIONS (100k) expired sessions written, the
front nginx started with that many workers (nothing pinned) and a 20 s
lifetime, wrk sending a valid session's invocations at 32 connections
(SWEEP_LOAD=0: no load) until the pass is over; the count left (in the
sessions directory and in its graveyard) is read every 0.5 s. The pass is
timed from its start, a second after the workers start, to none left.
The front has the sweep's own thread pool, `thread_pool sagemaker_sessions
threads=1;` (SWEEP_POOL=default: without it, nginx's default pool).
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import bench
from bench import (BODY, ENGINE_BODY, LOCATIONS, MODULE, POST_LUA, SESSION, engine_stub_conf, free_port,
                   front_conf, new_session, populate, script, start, stop_all, sweep_buried, sweep_left)

SESSIONS = int(os.environ.get("SWEEP_SESSIONS", "100000"))
LOAD = os.environ.get("SWEEP_LOAD", "1") == "1"
POOL = os.environ.get("SWEEP_POOL", "own")
LIMIT = 120  # seconds: a pass not done by then is reported as such


def one(work, sessions, engine_port, workers):
    populate(sessions, SESSIONS, time.time() - 60)
    port = free_port()
    conf = os.path.join(work, f"front{workers}.conf")
    with open(conf, "w") as f:
        f.write(front_conf(directory=work, pid=f"front{workers}.pid", log="front.log", level="warn", module=MODULE,
                           workers=workers, sessions=sessions, expiration="20s", engine_port=engine_port,
                           port=port, http=[f"client_body_temp_path {work}/body;", f"proxy_temp_path {work}/proxy;"],
                           sessions_max=2000000, locations=LOCATIONS,
                           main=[] if POOL == "default" else ["thread_pool sagemaker_sessions threads=1;"]))
    master = start(["nginx", "-p", work, "-c", conf, "-e", os.path.join(work, "front.log")], port, cpu=None)
    pass_starts = time.time() + 1
    sid = new_session(port)
    live = {sid}
    load = None
    if LOAD:
        lua = script(work, "sess", POST_LUA % (BODY, f'wrk.headers["{SESSION}"] = "{sid}"'))
        load = subprocess.Popen(["wrk", "-t1", "-c32", f"-d{LIMIT}s", "-s", lua, f"http://127.0.0.1:{port}/invocations"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    samples = []
    while time.time() < pass_starts + LIMIT:
        left = sweep_left(sessions, live)
        buried = sweep_buried(sessions)
        samples.append((time.time() - pass_starts, left, buried))
        if left == 0:
            break
        time.sleep(0.5)
    took = samples[-1][0] if samples[-1][1] == 0 else None
    if os.environ.get("SWEEP_TRACE"):
        print(" ".join(f"{t:.0f}s:{left}/{b}" for t, left, b in samples[::4]))
    rps = None
    if load:
        load.send_signal(signal.SIGINT)
        out = load.communicate(timeout=30)[0]
        for line in out.splitlines():
            if line.startswith("Requests/sec:"):
                rps = float(line.split()[1])
    bench.started.remove(master)
    master.send_signal(signal.SIGQUIT)
    master.wait(timeout=30)
    bench.clear(sessions)
    at = {s: next((left for t, left, _ in samples if t >= s), 0) for s in (5, 10, 20, 30)}
    print(f"{workers} workers: pass {'%.1f s' % took if took is not None else 'not done in %d s' % LIMIT}; "
          f"left at 5/10/20/30 s: {at[5]:,} / {at[10]:,} / {at[20]:,} / {at[30]:,}"
          + (f"; load {rps:,.0f} req/s" if rps else ""), flush=True)
    return took


def main():
    counts = [int(a) for a in sys.argv[1:]] or [1, 2, 4, 8]
    work = tempfile.mkdtemp(prefix="sms-sweep-")
    os.chmod(work, 0o755)
    shm = tempfile.mkdtemp(prefix="sms-sweep-", dir="/dev/shm")
    os.chmod(shm, 0o755)
    sessions = os.path.join(shm, "sessions")
    os.makedirs(sessions)
    try:
        engine_port = free_port()
        with open(os.path.join(work, "engine.conf"), "w") as f:
            f.write(engine_stub_conf(work, engine_port, ENGINE_BODY, pid="engine.pid", log="engine.log",
                                     level="warn"))
        start(["nginx", "-p", work, "-c", os.path.join(work, "engine.conf"), "-e", os.path.join(work, "engine.log")],
              engine_port, cpu=None)
        print(f"{SESSIONS:,} expired sessions, 20 s lifetime, "
              + ("wrk 32 connections on a valid session" if LOAD else "no load"), flush=True)
        for workers in counts:
            one(work, sessions, engine_port, workers)
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)


if __name__ == "__main__":
    main()
