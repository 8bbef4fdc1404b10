"""More workers than inotify instances (issue 24, part 3): Linux gives a user
fs.inotify.max_user_instances of them (128 by default) and all of nginx's
workers run as one user. The workers past the limit run without their cache:
every answer still right, one [warn] each naming the limit and its value,
and sagemaker_sessions_workers_uncached on the status page. The machine's
limit is left as it is: a fresh system user, named by the `user` directive,
has all of its instances left."""

import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from harness import SESSION, close_session, detail, new_session
from test_status import STATUS, scrape, value

LIMIT_FILE = "/proc/sys/fs/inotify/max_user_instances"
EXTRA = 4


def instances_of_pid(pid):
    """inotify instances open in process `pid`."""
    try:
        return sum("inotify" in os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def instances_of(uid):
    """inotify instances open in processes of `uid`."""
    n = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if "inotify" in os.readlink(f"/proc/{pid}/fd/{fd}"):
                    n += 1
        except OSError:
            continue
    return n


@pytest.fixture
def fresh_user():
    if os.geteuid() != 0:
        pytest.skip("needs root: the `user` directive")
    name = "sms-ino-" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield name  # taken first, given back last: after nginx, its workers, have stopped
    finally:
        subprocess.run(["userdel", name], check=False)


def warnings(ngx):
    return [l for l in ngx.error_log.splitlines() if "[warn]" in l and "inotify" in l]


def gauge(ngx):
    samples, _ = scrape(ngx)
    return value(samples, "sagemaker_sessions_workers_uncached")


def wait_for(check, what, seconds=30):
    deadline = time.time() + seconds
    while not check():
        assert time.time() < deadline, what
        time.sleep(0.1)


def test_workers_past_the_inotify_limit_say_so_and_answer_right(fresh_user, start_nginx, engine):
    import pwd
    uid = pwd.getpwnam(fresh_user).pw_uid
    with open(LIMIT_FILE) as f:
        limit = int(f.read())
    assert instances_of(uid) == 0
    workers = limit + EXTRA
    # built-in and engine sessions (affinity) together: one instance a worker
    ngx = start_nginx(main=f"user {fresh_user};", workers=workers, server=STATUS,
                      http=f"upstream affine {{ sagemaker_session_affinity; server 127.0.0.1:{engine.port}; }}")
    wait_for(lambda: len(ngx.worker_pids()) == workers and len(warnings(ngx)) >= EXTRA
             and instances_of(uid) == limit, "the workers started")
    time.sleep(0.5)
    lines = warnings(ngx)
    assert len(lines) == EXTRA, lines
    for line in lines:
        assert re.search(r"inotify: inotify_init1\(\) failed \(24: Too many open files\)", line), line
        assert f"raise fs.inotify.max_user_instances (now {limit})" in line, line
        assert "without its session cache" in line, line
    assert instances_of(uid) == limit
    assert gauge(ngx) == EXTRA

    # a worker without an instance killed by a signal cannot take its count
    # back: the gauge counts live workers only, and the one nginx starts in
    # its place (no instance left for it either) is counted once
    uncached = [p for p in ngx.worker_pids() if instances_of_pid(p) == 0]
    assert len(uncached) == EXTRA, uncached
    ngx.killed.add(uncached[0])
    os.kill(uncached[0], signal.SIGKILL)
    wait_for(lambda: uncached[0] not in ngx.worker_pids() and len(ngx.worker_pids()) == workers
             and len(warnings(ngx)) == EXTRA + 1, "nginx started a worker in its place")
    assert gauge(ngx) == EXTRA
    assert instances_of(uid) == limit
    killed = ngx.crashes()
    assert len(killed) == 1 and f"{uncached[0]} exited on signal 9" in killed[0], killed

    # every answer right, whichever worker takes it (a new connection each)
    sid = new_session(ngx)
    for i in range(60):
        r = ngx.request({"p": i}, {SESSION: sid})
        assert r.status == 200, r
    gone = new_session(ngx)
    assert ngx.request({"p": 1}, {SESSION: gone}).status == 200
    shutil.rmtree(os.path.join(ngx.sessions_path, gone))
    for i in range(30):
        r = ngx.request({"p": i}, {SESSION: gone})
        assert r.status == 400 and detail(r) == f"Bad request: session not found: {gone}", r
    assert close_session(ngx, sid).status == 200
    for i in range(30):
        r = ngx.request({"p": i}, {SESSION: sid})
        assert r.status == 400 and detail(r) == f"Bad request: session not found: {sid}", r

    # a reload to fewer workers: the old ones take their count with them,
    # and a new one that started while they held every instance gets one
    # at a later request (tried at most once a second)
    with open(ngx.conf) as f:
        conf = f.read()
    with open(ngx.conf, "w") as f:
        f.write(conf.replace(f"worker_processes {workers};", "worker_processes 2;"))
    ngx.reload()
    wait_for(lambda: instances_of(uid) <= 2 and len(ngx.worker_pids()) == 2, "the old workers exited")
    live = new_session(ngx)

    def recovered():
        for i in range(10):
            assert ngx.request({"p": i}, {SESSION: live}).status == 200
        return gauge(ngx) == 0

    wait_for(recovered, "the gauge back to 0", seconds=20)
    assert instances_of(uid) == 2
    assert ngx.crashes() == killed
