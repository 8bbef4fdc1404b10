"""Issue 26, part 2: the sweep's own thread pool. With
`thread_pool sagemaker_sessions ...;` in nginx.conf the graveyard is emptied
by that pool's threads at SCHED_IDLE (they run only when the core is
otherwise idle), and nginx's default pool is not made; without it the
default pool does it, its threads left as they are (aio threads may share
them). Either way every expired session goes."""

import os
import pwd

from harness import SESSION, new_session
from test_sweep_graveyard import GRAVEYARD, sessions_left, wait_until_swept, write_expired

OWN_POOL = "thread_pool sagemaker_sessions threads=2;"
SCHED_OTHER, SCHED_IDLE = 0, 5


def threads(pid):
    """{tid: scheduling policy} of a process's threads (/proc's stat, field 41)."""
    got = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        got[int(tid)] = int(fields[41 - 3])
    return got


def swept_by(ngx):
    write_expired(ngx.sessions_path, 3000)
    wait_until_swept(ngx.sessions_path)
    assert sessions_left(ngx.sessions_path) == []
    assert not os.path.isdir(os.path.join(ngx.sessions_path, GRAVEYARD))
    return {pid: threads(pid) for pid in ngx.worker_pids()}


def test_with_its_own_pool_the_sweep_deletes_at_sched_idle_and_every_expired_session_goes(start_nginx):
    ngx = start_nginx(main=OWN_POOL, http="sagemaker_sessions_expiration 1s;", workers=2)
    assert ngx.test_config()[0] == 0
    by_worker = swept_by(ngx)
    for pid, policies in by_worker.items():
        if os.geteuid() == 0:  # the workers run as nobody: SCHED_IDLE needs no privilege
            assert os.stat(f"/proc/{pid}").st_uid == pwd.getpwnam("nobody").pw_uid
        # its event loop as it was; the pool's 2 threads, and no default pool's 32
        assert policies.pop(pid) == SCHED_OTHER
        assert len(policies) == 2
        # each worker buried its part: a thread of its pool ran the task, at SCHED_IDLE
        assert SCHED_IDLE in policies.values(), (pid, policies)
        assert set(policies.values()) <= {SCHED_OTHER, SCHED_IDLE}
    sid = new_session(ngx)
    assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    assert "sched_setscheduler" not in ngx.error_log
    assert "alert" not in ngx.error_log and "emerg" not in ngx.error_log


def test_without_it_the_default_pool_deletes_and_no_thread_is_made_idle(start_nginx):
    ngx = start_nginx(http="sagemaker_sessions_expiration 1s;", workers=2)
    assert ngx.test_config()[0] == 0
    for pid, policies in swept_by(ngx).items():
        # the default pool the module adds (32 threads), none of them idle
        assert len(policies) == 33
        assert set(policies.values()) == {SCHED_OTHER}
    assert "alert" not in ngx.error_log and "emerg" not in ngx.error_log


def test_another_pool_is_not_the_sweeps(start_nginx):
    ngx = start_nginx(main="thread_pool other threads=1;", http="sagemaker_sessions_expiration 1s;")
    assert ngx.test_config()[0] == 0
    for pid, policies in swept_by(ngx).items():
        assert len(policies) == 1 + 1 + 32
        assert set(policies.values()) == {SCHED_OTHER}
