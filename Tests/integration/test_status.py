"""sagemaker_sessions_status: the status page, read with prometheus_client's
own parser, and its counters: exact, summed over the workers, kept across
reloads."""

import os
import shutil
import time

from prometheus_client.parser import text_string_to_metric_families

from harness import (expired_session, CLOSED_SESSION, HANDLER_LOCATIONS, HANDLERS, ROOT, SESSION, Reply, assert_emerg,
                     close_session, new_session, raw_request)

STATUS = "location = /status { sagemaker_sessions_status; }"

FAMILIES = {
    "sagemaker_sessions_live": "gauge",
    "sagemaker_sessions_created_total": "counter",
    "sagemaker_sessions_closed_total": "counter",
    "sagemaker_sessions_expired_total": "counter",
    "sagemaker_sessions_invocations_total": "counter",
    "sagemaker_sessions_rejected_total": "counter",
    "sagemaker_sessions_store_errors_total": "counter",
    "sagemaker_sessions_engine_calls_total": "counter",
    "sagemaker_sessions_engine_call_duration_seconds": "histogram",
    "sagemaker_sessions_replica_live": "gauge",
    "sagemaker_sessions_affinity_moved_total": "counter",
    "sagemaker_sessions_affinity_unavailable_total": "counter",
    "sagemaker_sessions_build_info": "gauge",
    "sagemaker_sessions_workers_uncached": "gauge",
}

REASONS = ("not_found", "expired", "missing_id", "malformed", "disabled", "repeated_header", "limit", "not_object")


def scrape(ngx):
    """The page parsed: {(sample name, frozen labels): value}, and the text."""
    r = ngx.request(method="GET", path="/status")
    assert r.status == 200, r
    assert r.header("Content-Type") == "text/plain; version=0.0.4", r
    text = r.body.decode()
    for name, kind in FAMILIES.items():
        assert f"# HELP {name} " in text, name
        assert f"# TYPE {name} {kind}\n" in text, name
    samples = {}
    families = list(text_string_to_metric_families(text))
    for family in families:
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert len(families) == len(FAMILIES), [f.name for f in families]
    return samples, text


def repeated_header(port, sid):
    """An invocation with the session header twice."""
    head = (f"POST /invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{SESSION}: {sid}\r\n"
            f"{SESSION}: {sid}\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n")
    return raw_request(port, head.encode() + b'{"p": 1}')


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def expected_counters(samples, **want):
    """Every counter of the built-in manager equals `want` (default 0)."""
    got = {
        "created": value(samples, "sagemaker_sessions_created_total", manager="builtin"),
        "closed": value(samples, "sagemaker_sessions_closed_total", manager="builtin"),
        "invocations": value(samples, "sagemaker_sessions_invocations_total"),
        "expired_total": value(samples, "sagemaker_sessions_expired_total"),
        **{r: value(samples, "sagemaker_sessions_rejected_total", reason=r) for r in REASONS},
    }
    assert got == {k: want.get(k, 0) for k in got}, got


def test_every_family_with_help_and_type_and_build_info(start_nginx):
    ngx = start_nginx(server=STATUS)
    samples, text = scrape(ngx)
    with open(os.path.join(ROOT, "VERSION")) as f:
        version = f.read().strip()
    assert value(samples, "sagemaker_sessions_build_info", version=version) == 1
    assert value(samples, "sagemaker_sessions_live") == 0
    expected_counters(samples)
    # every reason and op has its row from the start, at 0
    for reason in REASONS:
        assert f'sagemaker_sessions_rejected_total{{reason="{reason}"}} 0\n' in text
    for op in ("create", "close"):
        assert f'sagemaker_sessions_store_errors_total{{op="{op}"}} 0\n' in text
    # a histogram for each call, its +Inf bucket its count
    for call in ("create", "close"):
        assert value(samples, "sagemaker_sessions_engine_call_duration_seconds_bucket", call=call, le="+Inf") == 0
        assert value(samples, "sagemaker_sessions_engine_call_duration_seconds_count", call=call) == 0


def test_methods_other_than_get_and_head_are_405(start_nginx):
    ngx = start_nginx(server=STATUS)
    for method in ("POST", "PUT", "DELETE"):
        assert ngx.request(method=method, path="/status").status == 405
    r = ngx.request(method="HEAD", path="/status")
    assert r.status == 200 and r.body == b"", r


def test_the_directive_takes_no_argument(start_nginx, engine):
    from harness import Nginx
    n = Nginx(engine.port, server="location = /status { sagemaker_sessions_status on; }")
    assert_emerg(n.test_config(), "sagemaker_sessions_status")


def test_counters_are_exact_over_two_workers_and_a_reload(start_nginx):
    """Scripted traffic on new connections (spread over both workers), a
    reload half way: every counter is the exact sum."""
    ngx = start_nginx(server=STATUS, workers=2)

    def traffic():
        ids = [new_session(ngx) for _ in range(6)]
        for sid in ids:
            for _ in range(3):
                assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
        for sid in ids[:4]:
            assert close_session(ngx, sid).status == 200
        assert ngx.request({"p": 1}, {SESSION: ids[0]}).status == 400                 # not_found
        assert ngx.request({"requestType": "CLOSE"}).status == 400                  # missing_id
        assert ngx.request({"requestType": "OPEN"}).status == 400                   # malformed
        assert repeated_header(ngx.port, ids[5]).startswith(b"HTTP/1.1 400")          # repeated_header
        assert ngx.request({"p": 1}).status == 200                                  # no session
        return ids

    traffic()
    pids = ngx.worker_pids()
    samples, _ = scrape(ngx)
    expected_counters(samples, created=6, closed=4, invocations=18, not_found=1, missing_id=1, malformed=1,
                      repeated_header=1)
    assert value(samples, "sagemaker_sessions_live") == 2
    ngx.reload()
    assert not (ngx.worker_pids() & pids)
    samples, _ = scrape(ngx)
    expected_counters(samples, created=6, closed=4, invocations=18, not_found=1, missing_id=1, malformed=1,
                      repeated_header=1)
    traffic()
    samples, _ = scrape(ngx)
    expected_counters(samples, created=12, closed=8, invocations=36, not_found=2, missing_id=2, malformed=2,
                      repeated_header=2)
    assert value(samples, "sagemaker_sessions_live") == 4


def test_expired_sessions_are_counted_once(start_nginx):
    """Found expired by a request (removed, counted, answered expired; then
    not found), or by the sweep: each counted once."""
    ngx = start_nginx(server=STATUS)
    time.sleep(1.5)                               # the sweep's first pass is over; the next in a minute
    sid = expired_session(ngx)
    assert ngx.request({"p": 1}, {SESSION: sid}).status == 400
    assert ngx.request({"p": 1}, {SESSION: sid}).status == 400
    samples, _ = scrape(ngx)
    expected_counters(samples, expired_total=1, expired=1, not_found=1)

    swept = start_nginx(server=STATUS, http="sagemaker_sessions_expiration 1;")
    sid = new_session(swept)
    deadline = time.time() + 10
    while os.path.exists(os.path.join(swept.sessions_path, sid)) and time.time() < deadline:
        time.sleep(0.2)
    assert not os.path.exists(os.path.join(swept.sessions_path, sid))
    samples, _ = scrape(swept)
    expected_counters(samples, created=1, expired_total=1)


def test_limit_disabled_and_not_object(start_nginx):
    ngx = start_nginx(server=STATUS, http="sagemaker_sessions_max 1;",
                      location="sagemaker_session_manager session_id_path=session_id;")
    sid = new_session(ngx)
    assert ngx.request({"requestType": "NEW_SESSION"}).status == 424
    assert ngx.request(b"[1, 2]", {SESSION: sid}).status == 400
    samples, _ = scrape(ngx)
    expected_counters(samples, created=1, limit=1, not_object=1)

    off = start_nginx(server=STATUS, sessions=False)
    assert off.request({"p": 1}, {SESSION: sid}).status == 400
    assert off.request({"requestType": "NEW_SESSION"}).status == 400
    samples, _ = scrape(off)
    expected_counters(samples, disabled=2)
    assert value(samples, "sagemaker_sessions_live") == 0


def test_store_errors(start_nginx):
    ngx = start_nginx(server=STATUS)
    sid = new_session(ngx)
    os.chmod(ngx.sessions_path, 0o555)            # the workers' user may not rename in it
    try:
        assert close_session(ngx, sid).status == 424
    finally:
        os.chmod(ngx.sessions_path, 0o755)
    shutil.rmtree(ngx.sessions_path)              # the parent is root's: not made again
    assert ngx.request({"requestType": "NEW_SESSION"}).status == 424
    samples, _ = scrape(ngx)
    assert value(samples, "sagemaker_sessions_store_errors_total", op="close") == 1
    assert value(samples, "sagemaker_sessions_store_errors_total", op="create") == 1


def test_engine_calls_by_code_with_their_durations(start_nginx, engine):
    engine.respond("/engine/create_session", Reply.json({"session_id": "eng-1"}, delay=0.03))
    ngx = start_nginx(server=STATUS + "\n" + HANDLER_LOCATIONS, location="sagemaker_session_manager; " + HANDLERS)
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 200, r
    engine.respond("/engine/close_session", Reply.json({"detail": "no"}, status=404))
    assert ngx.request({"requestType": "CLOSE"}, {SESSION: "eng-1"}).status == 404
    engine.respond("/engine/close_session", Reply.json({}))
    r = ngx.request({"requestType": "CLOSE"}, {SESSION: "eng-1"})
    assert r.status == 200 and r.header(CLOSED_SESSION) == "eng-1", r
    assert ngx.request({"p": 1}, {SESSION: "eng-1"}).status == 200            # passed
    samples, _ = scrape(ngx)
    assert value(samples, "sagemaker_sessions_created_total", manager="engine") == 1
    assert value(samples, "sagemaker_sessions_closed_total", manager="engine") == 1
    assert value(samples, "sagemaker_sessions_invocations_total") == 1
    assert value(samples, "sagemaker_sessions_engine_calls_total", call="create", code="200") == 1
    assert value(samples, "sagemaker_sessions_engine_calls_total", call="close", code="404") == 1
    assert value(samples, "sagemaker_sessions_engine_calls_total", call="close", code="200") == 1
    h = "sagemaker_sessions_engine_call_duration_seconds"
    assert value(samples, h + "_count", call="create") == 1
    assert value(samples, h + "_count", call="close") == 2
    assert 0.03 <= value(samples, h + "_sum", call="create") < 5
    assert value(samples, h + "_bucket", call="create", le="0.025") == 0
    assert value(samples, h + "_bucket", call="create", le="+Inf") == 1
