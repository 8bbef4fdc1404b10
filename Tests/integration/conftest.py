import os
import shutil

import pytest

from harness import MODULE, Engine, Nginx, remove_workdirs, sanitizer_reports
from replicas import KIND, Front, Replicas


def pytest_sessionstart(session):
    if not os.path.exists(MODULE):
        raise pytest.UsageError(f"{MODULE} is missing: run `make build` first")


def pytest_sessionfinish(session, exitstatus):
    remove_workdirs()
    LATE_REPORTS.extend(sanitizer_reports())
    if LATE_REPORTS:   # from processes that outlived their test
        print("\nAddressSanitizer reports written between tests:\n" + "\n".join(LATE_REPORTS))
        session.exitstatus = 1


LATE_REPORTS = []


@pytest.fixture(autouse=True)
def no_sanitizer_reports():
    """Under `make asan`, a test fails if an nginx it ran (master, worker or
    `nginx -t`) wrote an AddressSanitizer or LeakSanitizer report."""
    LATE_REPORTS.extend(sanitizer_reports())
    yield
    reports = sanitizer_reports()
    if reports:
        pytest.fail("AddressSanitizer:\n" + "\n".join(reports), pytrace=False)


@pytest.fixture
def engine():
    e = Engine()
    yield e
    e.stop()


@pytest.fixture
def start_nginx(engine):
    """start_nginx(engine_port=None, **options) -> a running Nginx; all are
    stopped after the test, and a test fails if any worker died on a signal,
    except the workers the test killed itself (their pids in `n.killed`)."""
    started = []

    def start(engine_port=None, **kw):
        n = Nginx(engine.port if engine_port is None else engine_port, **kw)
        n.killed = set()
        started.append(n)
        return n.start()

    yield start
    crashed = []
    for n in started:
        n.stop()
        crashed += [l for l in n.crashes()
                    if not any(f"process {pid} exited on signal 9" in l for pid in n.killed)]
    for n in started:
        shutil.rmtree(n.dir, ignore_errors=True)
    assert not crashed, crashed


@pytest.fixture
def ngx(start_nginx):
    """The default: sessions on, a manager location without body injection."""
    return start_nginx()


@pytest.fixture
def cluster():
    """cluster(n, mode, **conf) -> (Replicas, Front), nginx not started yet.
    mode "engine": SGLang replicas, engine-owned sessions; "builtin": plain
    replicas, built-in sessions. Everything is stopped after the test, which
    fails if a worker died on a signal."""
    made = []

    def make(n=3, mode="engine", **conf):
        reps = Replicas(n, KIND[mode])
        front = Front(reps, mode, **conf)
        made.append((reps, front))
        return reps, front

    yield make
    crashed = []
    for reps, front in made:
        crashed += front.stop()
        reps.stop()
        shutil.rmtree(front.dir, ignore_errors=True)
    assert not crashed, crashed
