"""Sessions are shared by every worker: the files are the only state."""

import collections
import threading

from harness import SESSION, close_session

WORKERS = dict(workers=3, listen="reuseport",
               location="sagemaker_session_manager; add_header X-Worker $pid always;")


def create(ngx):
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 200, r
    return r.header("X-Amzn-SageMaker-New-Session-Id").split(";")[0], r.header("X-Worker")


def test_a_session_made_by_one_worker_is_valid_in_every_other(start_nginx):
    ngx = start_nginx(**WORKERS)
    assert len(ngx.worker_pids()) == 3
    sessions = [create(ngx) for _ in range(30)]
    crossed = 0
    for sid, creator in sessions:
        for _ in range(6):
            r = ngx.request({"p": 1}, {SESSION: sid})   # a new connection each time
            assert r.status == 200, r
            crossed += r.header("X-Worker") != creator
    assert crossed > 0, "no request reached a worker other than the creator"


def test_a_session_closed_by_one_worker_is_rejected_by_all(start_nginx):
    ngx = start_nginx(**WORKERS)
    seen = collections.defaultdict(set)
    for _ in range(10):
        sid, _ = create(ngx)
        for _ in range(3):
            assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
        closed = close_session(ngx, sid)
        assert closed.status == 200
        for _ in range(9):
            r = ngx.request({"p": 1}, {SESSION: sid})
            assert r.status == 400, r
            seen[sid].add(r.header("X-Worker"))
    assert any(len(workers) > 1 for workers in seen.values())


def test_concurrent_closes_across_workers_answer_exactly_once(start_nginx):
    ngx = start_nginx(**WORKERS)
    for _ in range(30):
        sid, _ = create(ngx)
        statuses = []
        barrier = threading.Barrier(4)

        def close():
            barrier.wait()
            statuses.append(close_session(ngx, sid).status)

        threads = [threading.Thread(target=close) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200, 400, 400, 400], statuses
