"""One request, one verdict (issue 24, part 1): a reader of the session that
runs before the manager (set_sagemaker_session_value in the rewrite phase,
the worker's cache, session affinity's balancer) changes nothing the
manager sees. An expired session answers `session expired`, counts as
rejected{reason="expired"}, logs `expired`, and is counted once in
expired_total; a closed session, and one removed behind nginx's back, are
`not found` everywhere."""

import os
import shutil
import time

import pytest
from model_hosting_container_standards.sagemaker.sessions.manager import Session

from harness import SESSION, close_session, detail, expired_session, new_session
from test_status import STATUS, scrape, value
from test_variables import ACCESS_LOG, LOG_FORMAT, logged, tagged

READER = ("sagemaker_session_manager; set_sagemaker_session_value $tenant tenant; "
          "add_header X-Tenant $tenant always;")


def start(start_nginx, engine, affinity):
    http = LOG_FORMAT
    server = ACCESS_LOG + "\n" + STATUS
    path = "/invocations"
    if affinity:
        http += f"\nupstream affine {{ sagemaker_session_affinity; server 127.0.0.1:{engine.port}; }}"
        server += ("\nlocation /affine { " + READER + " proxy_http_version 1.1; "
                   "proxy_set_header Connection \"\"; proxy_pass http://affine; }")
        path = "/affine"
    ngx = start_nginx(ndk=True, http=http, server=server, location=READER)
    time.sleep(1.5)   # past the sweep's first pass: a session expired by hand waits for a request
    return ngx, path


def expire_behind(ngx, sid):
    """The session's expiry rewritten into the past, as another process may."""
    path = os.path.join(ngx.sessions_path, sid, ".expiration_ts")
    with open(path + ".tmp", "w") as f:
        f.write(str(time.time() - 5))
    os.rename(path + ".tmp", path)


@pytest.mark.parametrize("affinity", [False, True], ids=["proxy", "affinity"])
def test_every_reader_before_the_manager_sees_one_verdict(start_nginx, engine, affinity):
    ngx, path = start(start_nginx, engine, affinity)
    before, _ = scrape(ngx)

    def ask(tag, sid):
        return ngx.request({"p": 1}, tagged(tag, {SESSION: sid}), path=path)

    # a valid session first: the value is read, the session is cached
    live = new_session(ngx)
    Session(live, ngx.sessions_path).put("tenant", "t-1")
    r = ask("valid", live)
    assert r.status == 200 and r.header("X-Tenant") == "t-1", r

    # expired on disk, never seen; and one cached, then expired behind nginx's back
    cold = expired_session(ngx)
    Session(cold, ngx.sessions_path).put("tenant", "t-2")
    warm = new_session(ngx)
    Session(warm, ngx.sessions_path).put("tenant", "t-3")
    assert ask("warm-valid", warm).status == 200
    expire_behind(ngx, warm)
    for tag, sid in (("expired-cold", cold), ("expired-warm", warm)):
        r = ask(tag, sid)
        assert r.status == 400 and detail(r) == f"Bad request: session expired: {sid}", (tag, r)
        assert r.header("X-Tenant") is None, (tag, r)
        assert not os.path.exists(os.path.join(ngx.sessions_path, sid)), tag   # removed by the manager

    # closed; and removed behind nginx's back once cached
    closed = new_session(ngx)
    Session(closed, ngx.sessions_path).put("tenant", "t-4")
    assert close_session(ngx, closed).status == 200
    removed = new_session(ngx)
    Session(removed, ngx.sessions_path).put("tenant", "t-5")
    assert ask("removed-valid", removed).status == 200
    shutil.rmtree(os.path.join(ngx.sessions_path, removed))
    for tag, sid in (("closed", closed), ("removed", removed)):
        r = ask(tag, sid)
        assert r.status == 400 and detail(r) == f"Bad request: session not found: {sid}", (tag, r)
        assert r.header("X-Tenant") is None, (tag, r)

    lines = logged(ngx, "expired-cold", "expired-warm", "closed", "removed")
    assert {t: lines[t]["outcome"] for t in ("expired-cold", "expired-warm", "closed", "removed")} == {
        "expired-cold": "expired", "expired-warm": "expired", "closed": "not_found", "removed": "not_found"}
    after, _ = scrape(ngx)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("sagemaker_sessions_rejected_total", reason="expired") == 2
    assert grew("sagemaker_sessions_rejected_total", reason="not_found") == 2
    assert grew("sagemaker_sessions_expired_total") == 2
    # asked again: gone now, so not found (and counted as expired no more)
    assert detail(ask("again", cold)) == f"Bad request: session not found: {cold}"
    again, _ = scrape(ngx)
    assert value(again, "sagemaker_sessions_expired_total") == value(after, "sagemaker_sessions_expired_total")
    assert not ngx.crashes()
