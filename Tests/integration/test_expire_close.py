"""Issue 24 part 2: an engine-owned session with a home that expires is
closed at its engine once, when a request finds it expired (the request path)
or the sweep removes it with no request touching it (the sweep path).

SGLang-like replicas (replicas.py) behind `sagemaker_session_affinity`, a
2 s lifetime: each session is touched by several requests at once just
after it expires (with 2 workers, from both), and its home's
/close_session must get exactly one close with {"session_id": id}, the
other replicas none, while the clients get `expired`. Sessions no request
touches are closed by the sweep path (a fake request's subrequest through the
same close location), retried while their home is down, and kept across a
reload or a restart as `.expire.*` entries in the sessions directory.
"""

import concurrent.futures
import os
import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import SESSION, UUID, detail
from replicas import log_lines_since, read_expiration, session_dir

JSON = {"Content-Type": "application/json"}


def create(front, reps):
    r = front.request({"requestType": "NEW_SESSION"}, JSON)
    assert r.status == 200, r
    sid = r.header("X-Amzn-SageMaker-New-Session-Id").split(";")[0].strip()
    owners = reps.owners(sid)
    assert len(owners) == 1, owners
    return sid, owners[0]


def expire_calls(front):
    """{code: n} of sagemaker_sessions_engine_calls_total{call="expire"}."""
    r = front.request(method="GET", path="/status")
    assert r.status == 200, r
    out = {}
    for family in text_string_to_metric_families(r.body.decode()):
        for s in family.samples:
            if s.name == "sagemaker_sessions_engine_calls_total" and s.labels["call"] == "expire":
                out[s.labels["code"]] = s.value
    return out


def nginx_expired(r, sid):
    """True when nginx answered `expired` (not the engine, for an id it no longer knew)."""
    if r.status != 400 or r.header("Content-Type") != "application/json" or "detail" not in r.json():
        return False
    assert detail(r) == f"Bad request: session expired: {sid}", r
    return True


def touch_expired(front, sid, body, n=4):
    """n requests of `sid` at once, just after it expired: their answers."""
    expires = read_expiration(front.sessions_path, sid)    # read once: the sweep may take it
    while time.time() < expires + 0.02:
        time.sleep(0.01)
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: front.request(body, {SESSION: sid, **JSON}), range(n)))


def since(before, after):
    """The counts added between two expire_calls()."""
    return {code: n - before.get(code, 0) for code, n in after.items() if n != before.get(code, 0)}


def wait_for(check, timeout=20, step=0.1):
    """Polls `check` until it returns something true; its last value."""
    deadline = time.time() + timeout
    while True:
        value = check()
        if value or time.time() > deadline:
            return value
        time.sleep(step)


def owed(front):
    """The closes owed: the .expire.* entries in the sessions directory."""
    return sorted(n for n in os.listdir(front.sessions_path) if n.startswith(".expire."))


def closed_once_at_home(reps, sessions):
    """True once each session had exactly one close, at its home, and no other."""
    for sid, home in sessions:
        seen = closes(reps, sid)
        if seen[home.name] != [{"session_id": sid}] or any(v for n, v in seen.items() if n != home.name):
            return False
    return True


def closes(reps, sid):
    return {r.name: [q["json"] for q in r.to("/close_session") if q["session"] == sid] for r in reps}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("request_type", ["invocation", "close"])
def test_a_request_finding_an_engine_session_expired_closes_it_once_at_its_home(cluster, workers, request_type):
    reps, front = cluster(expiration="2s", workers=workers)
    front.start()
    body = {"text": "hi"} if request_type == "invocation" else {"requestType": "CLOSE"}
    found, made = [], []
    for _ in range(4):
        sid, home = create(front, reps)
        # one CLOSE only: a CLOSE after the claim is of an id nginx no
        # longer knows, passed to the engine as the client's own close
        answers = touch_expired(front, sid, body, n=4 if request_type == "invocation" else 1)
        made.append((sid, home))
        if not any(nginx_expired(r, sid) for r in answers):
            # the sweep took it: closed by the sweep path (below)
            assert wait_for(lambda: closed_once_at_home(reps, [(sid, home)])), closes(reps, sid)
            continue
        found.append(sid)
        seen = closes(reps, sid)
        assert seen[home.name] == [{"session_id": sid}], seen
        assert all(v == [] for name, v in seen.items() if name != home.name), seen
        assert not os.path.exists(session_dir(front.sessions_path, sid))
    assert len(found) >= 2, "the sweep removed most sessions before a request touched them"
    # one close per session, whichever path took it
    assert wait_for(lambda: expire_calls(front) == {"200": len(made)}), expire_calls(front)
    assert closed_once_at_home(reps, made)
    # found again later (an id nginx forgot): no second close from nginx
    if request_type == "invocation":
        for sid in found:
            front.request(body, {SESSION: sid, **JSON})
            assert sum(len(v) for v in closes(reps, sid).values()) == 1


def test_a_down_home_is_counted_the_client_still_gets_expired_and_the_close_is_tried_again(cluster):
    reps, front = cluster(expiration="2s", workers=2)
    front.start()
    for _ in range(4):
        sid, home = create(front, reps)
        home.kill()
        offset = len(front.error_log)
        before = expire_calls(front)
        answers = touch_expired(front, sid, {"text": "hi"}, n=1)
        if nginx_expired(answers[0], sid):
            break
        # the sweep took it: its close is tried again until its home is back
        home.start()
        assert wait_for(lambda: closed_once_at_home(reps, [(sid, home)]), timeout=30), closes(reps, sid)
        assert wait_for(lambda: owed(front) == []), owed(front)
    else:
        pytest.fail("the sweep removed every session before a request touched it")
    calls = since(before, expire_calls(front))
    assert list(calls) in (["502"], ["503"]), calls
    assert sum(calls.values()) == 1, calls
    tried = [l for l in log_lines_since(front.error_log, offset) if "did not close it" in l and sid in l]
    assert len(tried) == 1 and "try 2 in 1 s" in tried[0] and home.address in tried[0], tried
    # owed, and tried again by the worker that found it, until its home is back
    assert len(owed(front)) == 1, owed(front)
    home.start()
    assert wait_for(lambda: closed_once_at_home(reps, [(sid, home)]), timeout=30), closes(reps, sid)
    assert since(before, expire_calls(front)).get("200") == 1, expire_calls(front)
    assert wait_for(lambda: leftovers(front) == []), leftovers(front)
    assert "given up" not in front.error_log


# --- the sweep path: sessions no request touches --------------------------------

def leftovers(front):
    """What the sessions directory holds (the graveyard goes once emptied)."""
    return sorted(os.listdir(front.sessions_path))


@pytest.mark.parametrize("workers", [1, 2])
def test_the_sweep_closes_an_untouched_expired_engine_session_once_at_its_home(cluster, workers):
    reps, front = cluster(expiration="2s", workers=workers)
    front.start()
    sessions = [create(front, reps) for _ in range(6)]
    assert len({home.name for _, home in sessions}) > 1, sessions   # several homes
    assert wait_for(lambda: closed_once_at_home(reps, sessions)), {sid: closes(reps, sid) for sid, _ in sessions}
    assert wait_for(lambda: expire_calls(front) == {"200": len(sessions)}), expire_calls(front)
    assert wait_for(lambda: leftovers(front) == []), leftovers(front)
    time.sleep(1.5)    # a pass more: no second close
    assert closed_once_at_home(reps, sessions)
    assert expire_calls(front) == {"200": len(sessions)}


def test_an_engine_naming_its_sessions_by_uuids_has_them_closed_too(cluster):
    """An engine's ids shaped as the module's own (a UUID) are still the
    engine's where no location makes built-in sessions: the sweep closes
    them at their homes as any other."""
    reps, front = cluster(expiration="2s")
    for rep in reps:
        rep.new_id = lambda: str(uuid.uuid4())
    front.start()
    sessions = [create(front, reps) for _ in range(4)]
    assert all(UUID.match(sid) for sid, _ in sessions), sessions
    assert wait_for(lambda: closed_once_at_home(reps, sessions)), {sid: closes(reps, sid) for sid, _ in sessions}
    assert wait_for(lambda: expire_calls(front) == {"200": len(sessions)}), expire_calls(front)
    assert wait_for(lambda: leftovers(front) == []), leftovers(front)


def test_a_down_home_is_tried_again_then_given_up_with_one_warn(cluster):
    reps, front = cluster(expiration="2s", workers=2)
    front.start()
    sid, home = create(front, reps)
    home.kill()
    offset = len(front.error_log)

    def given_up():
        return [l for l in log_lines_since(front.error_log, offset, "warn") if "given up" in l]

    assert wait_for(given_up, timeout=40), front.error_log[offset:]
    calls = expire_calls(front)
    assert set(calls) <= {"502", "503"} and sum(calls.values()) == 5, calls   # 1 + 4 tries again
    warned = given_up()
    assert len(warned) == 1 and sid in warned[0] and home.address in warned[0], warned
    assert wait_for(lambda: leftovers(front) == []), leftovers(front)
    assert all(v == [] for v in closes(reps, sid).values())
    time.sleep(2)
    assert sum(expire_calls(front).values()) == 5 and len(given_up()) == 1


def test_a_home_back_before_the_last_try_gets_its_one_close(cluster):
    reps, front = cluster(expiration="2s", workers=2)
    front.start()
    sid, home = create(front, reps)
    home.kill()
    offset = len(front.error_log)
    assert wait_for(lambda: sum(expire_calls(front).values()) >= 2, timeout=20), expire_calls(front)
    home.start()
    assert wait_for(lambda: closed_once_at_home(reps, [(sid, home)]), timeout=30), closes(reps, sid)
    calls = expire_calls(front)
    assert calls.get("200") == 1 and set(calls) <= {"200", "502", "503"}, calls
    assert wait_for(lambda: leftovers(front) == []), leftovers(front)
    assert not [l for l in log_lines_since(front.error_log, offset, "warn") if "given up" in l]


@pytest.mark.parametrize("how", ["reload", "restart"])
def test_closes_owed_survive_a_reload_and_a_restart(cluster, how):
    reps, front = cluster(expiration="2s", workers=2)
    front.start()
    sessions = [create(front, reps) for _ in range(4)]
    homes = {home.name: home for _, home in sessions}
    for home in homes.values():
        home.kill(settle=0)
    # every session expired and claimed by the sweep: owed, its homes down
    assert wait_for(lambda: len(owed(front)) == len(sessions)), (owed(front), leftovers(front))
    if how == "reload":
        front.ngx.reload()
    else:
        front.restart()
    for home in homes.values():
        home.start()
    assert wait_for(lambda: closed_once_at_home(reps, sessions), timeout=30), \
        {sid: closes(reps, sid) for sid, _ in sessions}
    assert wait_for(lambda: leftovers(front) == []), leftovers(front)
    assert expire_calls(front).get("200") == len(sessions), expire_calls(front)
    assert "given up" not in front.error_log
