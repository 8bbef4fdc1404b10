"""Issue 26: the expiry sweep takes expired sessions out of the sessions
directory with one rename each, into `.graveyard`, and nginx's thread pool
deletes their files. Every expired session goes, the graveyard goes once
empty, and nothing is left in it after a reload or a stop."""

import json
import os
import pwd
import time
import uuid

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


def test_nothing_is_left_in_the_graveyard_after_a_reload_or_a_stop(start_nginx):
    ngx = start_nginx(http="sagemaker_sessions_expiration 1s;", workers=2)
    write_expired(ngx.sessions_path, 20000)
    total = 20000
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
