"""Issue 26: the expiry sweep takes expired sessions out of the sessions
directory with one rename each, into the sweeping worker's part of
`.graveyard`, and nginx's thread pool deletes their files. Every worker
sweeps its part of a pass. Every expired session goes, the graveyard goes
once empty, and nothing is left in it after a reload or a stop."""

import json
import os
import shutil
import subprocess
import pwd
import time
import uuid

import pytest

from harness import SESSION, new_session

GRAVEYARD = ".graveyard"


def write_expired(path, count, extra=False):
    """Expired sessions in the library's format, owned by the workers' user;
    with `extra`, each also holds an engine's key file and a nested directory."""
    nobody = pwd.getpwnam("nobody")
    ts = json.dumps(time.time() - 60)
    for _ in range(count):
        d = os.path.join(path, str(uuid.uuid4()))
        os.mkdir(d)
        made = [d, os.path.join(d, ".expiration_ts")]
        with open(made[1], "w") as f:
            f.write(ts)
        if extra:
            with open(os.path.join(d, "history"), "w") as f:
                f.write("[]")
            os.makedirs(os.path.join(d, "nested", "deeper"))
            made += [os.path.join(d, "history"), os.path.join(d, "nested"), os.path.join(d, "nested", "deeper")]
        for p in made:
            os.chown(p, nobody.pw_uid, nobody.pw_gid)


def sessions_left(path):
    return [n for n in os.listdir(path) if not n.startswith(".")]


def buried(path):
    g = os.path.join(path, GRAVEYARD)
    return os.listdir(g) if os.path.isdir(g) else []


def wait_until_swept(path, seconds=90):
    """Polls (a deadline for liveness, not a timing claim)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not sessions_left(path) and not os.path.isdir(os.path.join(path, GRAVEYARD)):
            return
        time.sleep(0.2)


def test_many_expired_sessions_are_all_removed_and_the_graveyard_goes(start_nginx):
    ngx = start_nginx(http="sagemaker_sessions_expiration 1s;", workers=2)
    write_expired(ngx.sessions_path, 3000)
    write_expired(ngx.sessions_path, 20, extra=True)
    wait_until_swept(ngx.sessions_path)
    assert sessions_left(ngx.sessions_path) == []
    assert not os.path.isdir(os.path.join(ngx.sessions_path, GRAVEYARD))
    # sessions made afterwards are sessions as before
    sid = new_session(ngx)
    assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    assert "alert" not in ngx.error_log and "emerg" not in ngx.error_log


def test_a_graveyard_left_behind_is_emptied_by_the_next_pass(start_nginx):
    ngx = start_nginx(http="sagemaker_sessions_expiration 1s;")
    nobody = pwd.getpwnam("nobody")
    g = os.path.join(ngx.sessions_path, GRAVEYARD)
    os.mkdir(g)
    os.chown(g, nobody.pw_uid, nobody.pw_gid)
    write_expired(g, 50, extra=True)
    wait_until_swept(ngx.sessions_path)
    assert not os.path.isdir(g)


@pytest.mark.parametrize("workers", [2, 4])
def test_nothing_is_left_in_the_graveyard_after_a_reload_or_a_stop(start_nginx, workers):
    ngx = start_nginx(http="sagemaker_sessions_expiration 1s;", workers=workers)
    total = 20000
    write_expired(ngx.sessions_path, total)
    # stopped in the middle of a pass: reloaded once it has begun, then stopped
    deadline = time.time() + 60
    while len(sessions_left(ngx.sessions_path)) > total * 3 // 4 and time.time() < deadline:
        time.sleep(0.05)
    ngx.reload()
    deadline = time.time() + 60
    while len(sessions_left(ngx.sessions_path)) > total // 2 and time.time() < deadline:
        time.sleep(0.05)
    ngx.stop()
    assert len(sessions_left(ngx.sessions_path)) < total // 2, "the sweep did not remove half within a minute"
    assert buried(ngx.sessions_path) == []
    assert not os.path.isdir(os.path.join(ngx.sessions_path, GRAVEYARD))

def test_with_four_workers_every_expired_session_goes_each_worker_sweeping_its_part(start_nginx):
    """Every worker sweeps the entries whose name hashes to it, and buries
    them in its own part of the graveyard (`.graveyard/<pid>`): all of them
    go, and so does the graveyard; none is left in another worker's part."""
    ngx = start_nginx(http="sagemaker_sessions_expiration 1s;", workers=4)
    workers = set(ngx.worker_pids())
    write_expired(ngx.sessions_path, 8000)
    g = os.path.join(ngx.sessions_path, GRAVEYARD)
    parts = set()
    deadline = time.time() + 90
    while (sessions_left(ngx.sessions_path) or os.path.isdir(g)) and time.time() < deadline:
        if os.path.isdir(g):
            parts.update(buried(ngx.sessions_path))
        time.sleep(0.05)
    assert sessions_left(ngx.sessions_path) == []
    assert not os.path.isdir(g)
    # the parts seen were the workers' own, named by their pids, and more than one worker buried
    assert parts <= {str(p) for p in workers}, (parts, workers)
    assert len(parts) > 1, parts
    sid = new_session(ngx)
    assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    assert "alert" not in ngx.error_log and "emerg" not in ngx.error_log


def test_the_part_of_a_worker_that_is_gone_is_emptied_by_the_others(start_nginx):
    """A worker killed before its thread was done leaves its part of the
    graveyard, named by a pid that no longer runs: a later pass empties it.
    A part named by a process that runs is that worker's, and left to it."""
    ngx = start_nginx(http="sagemaker_sessions_expiration 1s;", workers=2)
    nobody = pwd.getpwnam("nobody")
    dead = subprocess.Popen(["true"])
    dead.wait()
    g = os.path.join(ngx.sessions_path, GRAVEYARD)
    for part in (str(dead.pid), str(os.getpid())):
        os.makedirs(os.path.join(g, part))
        os.chown(os.path.join(g, part), nobody.pw_uid, nobody.pw_gid)
    os.chown(g, nobody.pw_uid, nobody.pw_gid)
    write_expired(os.path.join(g, str(dead.pid)), 200, extra=True)
    write_expired(os.path.join(g, str(os.getpid())), 3)
    deadline = time.time() + 60
    while os.path.isdir(os.path.join(g, str(dead.pid))) and time.time() < deadline:
        time.sleep(0.1)
    assert not os.path.isdir(os.path.join(g, str(dead.pid)))
    # the live process's part is still there, as it was
    assert len(os.listdir(os.path.join(g, str(os.getpid())))) == 3
    shutil.rmtree(os.path.join(g, str(os.getpid())))
    wait_until_swept(ngx.sessions_path)
    assert not os.path.isdir(g)
