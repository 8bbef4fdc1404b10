"""One request, one verdict (issue 24, part 1): whatever reads the session
before the manager changes nothing the manager sees, and what the first
reader found is what every later reader of the request finds.

By reader: set_sagemaker_session_value in the rewrite phase, session
affinity's balancer, both, the status variables (a map evaluated before the
manager, add_header after it, the status page), alone and after a value
read (which makes the request's context early), the worker's cache (every
session seen once before it changes), and the manager alone (never seen).
Each meets a session that expired, one closed, and one removed behind
nginx's back (rmtree). An expired session answers `session expired`,
counts as rejected{reason="expired"}, logs `expired`, and is counted once
in expired_total; a closed or removed one is `not found` everywhere.

The races: a request held between the rewrite phase and the manager
(`auth_request` to a gate the test opens) while the session expires, is
removed or is closed, keeps the verdict its value read found."""

import os
import shutil
import threading
import time

import pytest
from model_hosting_container_standards.sagemaker.sessions.manager import Session

from harness import SESSION, Reply, close_session, detail, expired_session, new_session
from test_status import STATUS, scrape, value
from test_variables import ACCESS_LOG, LOG_FORMAT, logged, tagged

MANAGER = "sagemaker_session_manager;"
VALUE = "set_sagemaker_session_value $tenant tenant; add_header X-Tenant $tenant always;"
# evaluated in the rewrite phase, before the manager; then after it
STATUS_VARS = ("set $early $early_outcome; add_header X-Early $early always; "
               "add_header X-Outcome $sagemaker_session_outcome always; "
               "add_header X-Session $sagemaker_session_id always;")
EARLY_MAP = 'map $sagemaker_session_outcome $early_outcome { "" none; default $sagemaker_session_outcome; }'

# reader: (the location's lines, through the affinity upstream, sessions seen before they change)
READERS = {
    "value": (VALUE, False, "both"),
    "affinity": ("", True, "both"),
    "value+affinity": (VALUE, True, "both"),
    "status": (STATUS_VARS, False, "both"),
    "value+status": (VALUE + " " + STATUS_VARS, False, "both"),
    "cache": ("", False, "warm"),
    "manager": ("", False, "cold"),
}

GATE = ("location = /gate { internal; proxy_pass http://127.0.0.1:{port}/gate; "
        "proxy_pass_request_body off; proxy_set_header Content-Length \"\"; }")


def start(start_nginx, engine, lines, affinity, gate=False):
    """nginx with `lines` in the session location (/invocations, or /affine
    through an upstream with sagemaker_session_affinity); with `gate`, the
    request waits in the access phase for the test's /gate."""
    location = MANAGER + " " + lines + (" auth_request /gate;" if gate else "")
    http = LOG_FORMAT + "\n" + EARLY_MAP
    server = ACCESS_LOG + "\n" + STATUS
    if gate:
        server += "\n" + GATE.replace("{port}", str(engine.port))
    path = "/invocations"
    if affinity:
        http += f"\nupstream affine {{ sagemaker_session_affinity; server 127.0.0.1:{engine.port}; }}"
        server += ("\nlocation /affine { " + location + " proxy_http_version 1.1; "
                   "proxy_set_header Connection \"\"; proxy_pass http://affine; }")
        path = "/affine"
    ngx = start_nginx(ndk="set_sagemaker_session_value" in lines, http=http, server=server, location=location)
    time.sleep(1.5)   # past the sweep's first pass: a session expired by hand waits for a request
    return ngx, path


def expire_behind(ngx, sid):
    """The session's expiry rewritten into the past, as another process may."""
    path = os.path.join(ngx.sessions_path, sid, ".expiration_ts")
    with open(path + ".tmp", "w") as f:
        f.write(str(time.time() - 5))
    os.rename(path + ".tmp", path)


def remove_behind(ngx, sid):
    shutil.rmtree(os.path.join(ngx.sessions_path, sid))


def with_tenant(ngx, sid, tenant):
    Session(sid, ngx.sessions_path).put("tenant", tenant)
    return sid


@pytest.mark.parametrize("reader", list(READERS))
def test_every_reader_before_the_manager_sees_one_verdict(start_nginx, engine, reader):
    lines, affinity, seen = READERS[reader]
    ngx, path = start(start_nginx, engine, lines, affinity)
    before, _ = scrape(ngx)

    def ask(tag, sid):
        return ngx.request({"p": 1}, tagged(tag, {SESSION: sid}), path=path)

    # a valid session first: the value is read, the session is cached
    live = with_tenant(ngx, new_session(ngx), "t-live")
    r = ask("valid", live)
    assert r.status == 200, r
    if "set_sagemaker_session_value" in lines:
        assert r.header("X-Tenant") == "t-live", r
    if "status" in reader:
        assert (r.header("X-Early"), r.header("X-Outcome"), r.header("X-Session")) == ("none", "valid", live), r

    # (tag, session, what the manager answers); "warm" ones were answered
    # valid once (so cached) before they changed
    cases = []
    if seen in ("cold", "both"):
        cases += [("expired-cold", with_tenant(ngx, expired_session(ngx), "t-1"), "expired")]
        closed = with_tenant(ngx, new_session(ngx), "t-2")
        assert close_session(ngx, closed).status == 200
        cases += [("closed-cold", closed, "not found")]
        removed = with_tenant(ngx, new_session(ngx), "t-3")
        remove_behind(ngx, removed)
        cases += [("removed-cold", removed, "not found")]
    if seen in ("warm", "both"):
        warm = {tag: with_tenant(ngx, new_session(ngx), tag) for tag in ("expired-warm", "closed-warm", "removed-warm")}
        for tag, sid in warm.items():
            assert ask(tag + "-valid", sid).status == 200, tag
        expire_behind(ngx, warm["expired-warm"])
        assert close_session(ngx, warm["closed-warm"]).status == 200
        remove_behind(ngx, warm["removed-warm"])
        cases += [("expired-warm", warm["expired-warm"], "expired"), ("closed-warm", warm["closed-warm"], "not found"),
                  ("removed-warm", warm["removed-warm"], "not found")]

    for tag, sid, verdict in cases:
        r = ask(tag, sid)
        assert r.status == 400 and detail(r) == f"Bad request: session {verdict}: {sid}", (tag, r)
        assert r.header("X-Tenant") is None, (tag, r)
        if "status" in reader:
            word = "expired" if verdict == "expired" else "not_found"
            assert (r.header("X-Early"), r.header("X-Outcome"), r.header("X-Session")) == ("none", word, sid), (tag, r)
        if verdict == "expired":
            assert not os.path.exists(os.path.join(ngx.sessions_path, sid)), tag   # removed by the manager

    tags = [tag for tag, _, _ in cases]
    lines = logged(ngx, *tags)
    assert {t: lines[t]["outcome"] for t in tags} == {
        tag: "expired" if verdict == "expired" else "not_found" for tag, _, verdict in cases}
    after, _ = scrape(ngx)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    expired = sum(1 for _, _, verdict in cases if verdict == "expired")
    assert grew("sagemaker_sessions_rejected_total", reason="expired") == expired
    assert grew("sagemaker_sessions_rejected_total", reason="not_found") == len(cases) - expired
    assert grew("sagemaker_sessions_expired_total") == expired
    assert value(after, "sagemaker_sessions_live") == 1   # only the valid one is left
    # asked again: gone now, so not found (and counted as expired no more)
    first = next(sid for _, sid, verdict in cases if verdict == "expired")
    assert detail(ask("again", first)) == f"Bad request: session not found: {first}"
    again, _ = scrape(ngx)
    assert value(again, "sagemaker_sessions_expired_total") == value(after, "sagemaker_sessions_expired_total")
    assert not ngx.crashes()


class Gate:
    """The auth_request location's answer, held while `armed` until the
    test opens it: the request has read its value then (rewrite phase),
    and waits before the manager (precontent phase)."""

    def __init__(self, engine):
        self.armed = False
        self.reached = threading.Event()
        self.opened = threading.Event()
        engine.respond("/gate", self.answer)

    def answer(self, record):
        if self.armed:
            self.reached.set()
            self.opened.wait(15)
        return Reply(b"", 200, None)


def held(ngx, path, gate, sid, tag, meanwhile):
    """The request of `sid`, with `meanwhile` done while it waits at the gate."""
    answer = {}
    t = threading.Thread(target=lambda: answer.update(r=ngx.request({"p": 1}, tagged(tag, {SESSION: sid}), path=path)))
    gate.armed = True
    t.start()
    assert gate.reached.wait(15), "the request did not reach the gate"
    gate.armed = False   # held until opened; others (a CLOSE meanwhile) pass
    meanwhile()
    gate.opened.set()
    t.join(30)
    gate.reached.clear()
    gate.opened.clear()
    return answer["r"]


@pytest.mark.parametrize("affinity", [False, True], ids=["proxy", "affinity"])
def test_a_request_keeps_the_verdict_its_value_read_found(start_nginx, engine, affinity):
    ngx, path = start(start_nginx, engine, VALUE, affinity, gate=True)
    gate = Gate(engine)
    before, _ = scrape(ngx)

    # valid when its value was read; expired before the manager looks: let in
    expiring = with_tenant(ngx, new_session(ngx), "t-1")
    r = held(ngx, path, gate, expiring, "expires-meanwhile", lambda: expire_behind(ngx, expiring))
    assert r.status == 200 and r.header("X-Tenant") == "t-1", r
    assert engine.last["headers"].get(SESSION.lower()) == expiring
    # the next request is a new verdict: expired, removed, counted once
    r = ngx.request({"p": 1}, tagged("next", {SESSION: expiring}), path=path)
    assert detail(r) == f"Bad request: session expired: {expiring}", r

    # valid when its value was read; removed by another process meanwhile
    removed = with_tenant(ngx, new_session(ngx), "t-2")
    r = held(ngx, path, gate, removed, "removed-meanwhile", lambda: remove_behind(ngx, removed))
    assert r.status == 200 and r.header("X-Tenant") == "t-2", r

    # valid when its value was read; closed by another client meanwhile
    closed = with_tenant(ngx, new_session(ngx), "t-3")
    r = held(ngx, path, gate, closed, "closed-meanwhile", lambda: close_session(ngx, closed))
    assert r.status == 200 and r.header("X-Tenant") == "t-3", r
    assert not os.path.exists(os.path.join(ngx.sessions_path, closed))

    # expired when its value was read; removed by another process meanwhile:
    # still expired, and counted by nobody (nginx removed nothing)
    gone = expired_session(ngx)
    r = held(ngx, path, gate, gone, "expired-then-removed", lambda: remove_behind(ngx, gone))
    assert r.status == 400 and detail(r) == f"Bad request: session expired: {gone}", r
    assert r.header("X-Tenant") is None, r

    lines = logged(ngx, "expires-meanwhile", "next", "removed-meanwhile", "closed-meanwhile", "expired-then-removed")
    assert {t: lines[t]["outcome"] for t in lines} == {
        "expires-meanwhile": "valid", "next": "expired", "removed-meanwhile": "valid", "closed-meanwhile": "valid",
        "expired-then-removed": "expired"}
    after, _ = scrape(ngx)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("sagemaker_sessions_rejected_total", reason="expired") == 2
    assert grew("sagemaker_sessions_rejected_total", reason="not_found") == 0
    assert grew("sagemaker_sessions_expired_total") == 1
    assert not ngx.crashes()
