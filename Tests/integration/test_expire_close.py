"""Issue 24 part 2: an engine-owned session with a home that expires is
closed at its engine once, when a request finds it expired (the request path).

SGLang-like replicas (replicas.py) behind `sagemaker_session_affinity`, a
2 s lifetime: each session is touched by several requests at once just
after it expires (with 2 workers, from both), and its home's
/close_session must get exactly one close with {"session_id": id}, the
other replicas none, while the clients get `expired`. A session the sweep
removes before any request touches it is left out (the sweep path is not
built yet: see docs/design.md).
"""

import concurrent.futures
import os
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import SESSION, detail
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
    while time.time() < read_expiration(front.sessions_path, sid) + 0.02:
        time.sleep(0.01)
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: front.request(body, {SESSION: sid, **JSON}), range(n)))


def closes(reps, sid):
    return {r.name: [q["json"] for q in r.to("/close_session") if q["session"] == sid] for r in reps}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("request_type", ["invocation", "close"])
def test_a_request_finding_an_engine_session_expired_closes_it_once_at_its_home(cluster, workers, request_type):
    reps, front = cluster(expiration="2s", workers=workers)
    front.start()
    body = {"text": "hi"} if request_type == "invocation" else {"requestType": "CLOSE"}
    found = []
    for _ in range(4):
        sid, home = create(front, reps)
        # one CLOSE only: a CLOSE after the claim is of an id nginx no
        # longer knows, passed to the engine as the client's own close
        answers = touch_expired(front, sid, body, n=4 if request_type == "invocation" else 1)
        seen = closes(reps, sid)
        if not any(nginx_expired(r, sid) for r in answers):
            assert all(v == [] for v in seen.values()), seen   # the sweep took it
            continue
        found.append(sid)
        assert seen[home.name] == [{"session_id": sid}], seen
        assert all(v == [] for name, v in seen.items() if name != home.name), seen
        assert not os.path.exists(session_dir(front.sessions_path, sid))
    assert len(found) >= 2, "the sweep removed most sessions before a request touched them"
    assert expire_calls(front) == {"200": len(found)}
    # found again later (an id nginx forgot): no second close from nginx
    if request_type == "invocation":
        for sid in found:
            front.request(body, {SESSION: sid, **JSON})
            assert sum(len(v) for v in closes(reps, sid).values()) == 1


def test_a_down_home_is_counted_and_warned_and_the_client_still_gets_expired(cluster):
    reps, front = cluster(expiration="2s", workers=2)
    front.start()
    for _ in range(4):
        sid, home = create(front, reps)
        home.kill()
        offset = len(front.error_log)
        answers = touch_expired(front, sid, {"text": "hi"}, n=1)
        if nginx_expired(answers[0], sid):
            break
        home.start()
    else:
        pytest.fail("the sweep removed every session before a request touched it")
    calls = expire_calls(front)
    assert list(calls) in (["502"], ["503"]), calls
    assert sum(calls.values()) == 1, calls
    warns = [l for l in log_lines_since(front.error_log, offset, "warn") if "did not close it" in l]
    assert len(warns) == 1 and sid in warns[0], front.error_log[offset:]
