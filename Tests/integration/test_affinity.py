"""Session affinity across engine replicas (issue 17, SPEC §6):
`sagemaker_session_affinity;` in an `upstream {}` block.

A real nginx with 2 workers (reuseport: connections reach both) in front of 3
or more replica stubs (replicas.py), each knowing only its own sessions: an
engine-owned session sent anywhere but its home is refused by the stub, and
every request is recorded with the replica that served it, so a misrouted
request cannot go unseen.
"""

import collections
import concurrent.futures
import datetime
import os
import re
import threading
import time
import uuid

import pytest

from prometheus_client.parser import text_string_to_metric_families

from harness import CLOSED_SESSION, NEW_SESSION, SESSION, UUID, assert_emerg, detail
from replicas import (HEX32, log_lines_since, read_expiration, read_home,
                      session_dir)

EXPIRES = re.compile(r"^Expires=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)$")
JSON = {"Content-Type": "application/json"}
THREADS = 8


def pmap(fn, items, threads=THREADS):
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))


# --- requests ------------------------------------------------------------------

def create(front):
    """NEW_SESSION: (id, the answer)."""
    r = front.request({"requestType": "NEW_SESSION"}, JSON)
    assert r.status == 200, r
    value = r.header(NEW_SESSION)
    assert value, r
    sid = value.split(";")[0].strip()
    return sid, r


def created_engine_session(front, reps):
    """An engine-owned NEW_SESSION, checked: (id, name of the replica that opened it)."""
    sid, r = create(front)
    assert HEX32.match(sid), r
    assert r.body == f"Successfully created session: {sid}".encode(), r
    owners = reps.owners(sid)
    assert len(owners) == 1, (sid, owners)
    return sid, owners[0].name


def invoke(front, sid, n=0):
    """An invocation of session `sid` (the body fits both modes' engines)."""
    return front.request({"text": f"turn {n}", "n": n}, {SESSION: sid, **JSON})


def served_by(r, sid, mode):
    """The replica that answered an invocation of `sid` (checked to be that session's)."""
    assert r.status == 200, r
    body = r.json()
    if mode == "engine":
        assert body["meta_info"]["session_id"] == sid, r
        assert body["received"]["session_params"] == {"id": sid}, r
    else:
        assert body["session_id"] == sid, r
    assert body["replica"] == r.header("X-Replica"), r
    return r.header("X-Replica")


def three_invocations(front, sid, mode):
    """(session, replica that served it, worker) of 3 invocations of `sid`."""
    out = []
    for n in range(3):
        r = invoke(front, sid, n)
        out.append((sid, served_by(r, sid, mode), r.header("X-Worker")))
    return out


def close(front, sid):
    return front.request({"requestType": "CLOSE"}, {SESSION: sid})


def homes_of(front, reps, sids, mode):
    """Engine-owned: the replica that opened each session. Built-in: where
    its next invocation goes (its home, or the home it picks)."""
    if mode == "engine":
        return {sid: reps.owners(sid)[0].name for sid in sids}
    return {sid: served_by(invoke(front, sid), sid, mode) for sid in sids}


def assert_home_files(front, reps, homes):
    for sid, name in homes.items():
        assert read_home(front.sessions_path, sid) == reps.by_name(name).address, sid


def assert_even(counts, total):
    mean = total / len(counts)
    for name, c in counts.items():
        assert 0.5 * mean <= c <= 1.5 * mean, (name, counts)
    assert sum(counts.values()) == total, counts


def affinity_metrics(front):
    """The status page's affinity families, parsed by prometheus_client:
    ({replica address: live}, moved, unavailable) of upstream "replicas"."""
    r = front.request(method="GET", path="/status")
    assert r.status == 200, r
    live, moved, unavailable = {}, None, None
    for family in text_string_to_metric_families(r.body.decode()):
        for s in family.samples:
            if s.labels.get("upstream") != "replicas":
                continue
            if s.name == "sagemaker_sessions_replica_live":
                live[s.labels["replica"]] = s.value
            elif s.name == "sagemaker_sessions_affinity_moved_total":
                moved = s.value
            elif s.name == "sagemaker_sessions_affinity_unavailable_total":
                unavailable = s.value
    return live, moved, unavailable


def live_session_dirs(front):
    path = front.sessions_path
    return sorted(n for n in os.listdir(path) if HEX32.match(n) or UUID.match(n)) if os.path.isdir(path) else []


# --- hundreds of sessions, every request at its home ------------------------------------

def test_engine_owned_sessions_are_opened_evenly_and_every_request_reaches_the_home(cluster):
    reps, front = cluster(3, "engine")
    front.start()
    started = time.time()

    made = pmap(lambda _: created_engine_session(front, reps), range(300))
    homes = dict(made)
    assert len(homes) == 300
    # one /open_session per NEW_SESSION, with the create defaults, opened evenly
    opened = reps.counts("/open_session")
    assert sum(opened.values()) == 300, opened
    assert_even(collections.Counter(homes.values()), 300)
    for r in reps:
        assert all(q["json"] == {"capacity_of_str_len": 1024} for q in r.to("/open_session"))
    # the module's record of each: <id>/.home and .expiration_ts (lifetime 20m)
    assert live_session_dirs(front) == sorted(homes)
    assert_home_files(front, reps, homes)
    for sid in list(homes)[:20]:
        assert started + 1200 - 2 <= read_expiration(front.sessions_path, sid) <= time.time() + 1200 + 1

    # 3 invocations of each: every one at its home, none refused
    answers = [a for batch in pmap(lambda sid: three_invocations(front, sid, "engine"), list(homes)) for a in batch]
    misrouted = [(sid, got) for sid, got, _ in answers if got != homes[sid]]
    assert misrouted == []
    assert len({worker for _, _, worker in answers}) == 2, "both workers served sessions"
    generated = reps.counts("/generate")
    assert sum(generated.values()) == 900, generated
    for r in reps:                       # what each replica saw: its own sessions only
        assert {homes[sid] for sid in r.sessions_served("/generate")} <= {r.name}

    # CLOSE: at the home only, and the module forgets the home
    def close_one(sid):
        r = close(front, sid)
        assert r.status == 200, r
        assert r.header(CLOSED_SESSION) == sid, r
        assert r.body == f"Successfully closed session: {sid}".encode(), r
    pmap(close_one, list(homes))
    for r in reps:
        closed = r.sessions_served("/close_session")
        assert sorted(closed) == sorted(s for s, h in homes.items() if h == r.name), r
        assert r.sessions == {}, r
    assert live_session_dirs(front) == []
    # a closed id is one the module no longer knows: balanced, and the engine answers
    for sid in list(homes)[:6]:
        r = invoke(front, sid)
        assert r.status == 400, r
        assert r.json() == {"error": {"message": f"Invalid request: session id {sid} does not exist"}}


def test_builtin_sessions_pick_a_home_evenly_and_stay_there(cluster):
    reps, front = cluster(3, "builtin")
    front.start()
    sids = [sid for sid, _ in pmap(lambda _: create(front), range(300))]
    assert all(UUID.match(s) for s in sids)
    assert reps.counts("/invocations") == {"r0": 0, "r1": 0, "r2": 0}, "NEW_SESSION stays in nginx"
    for sid in sids[:10]:
        assert read_home(front.sessions_path, sid) is None, "no home before the first invocation"

    answers = [a for batch in pmap(lambda sid: three_invocations(front, sid, "builtin"), sids) for a in batch]
    by_session = collections.defaultdict(set)
    for sid, got, _ in answers:
        by_session[sid].add(got)
    misrouted = {sid: got for sid, got in by_session.items() if len(got) != 1}
    assert misrouted == {}
    assert len({worker for _, _, worker in answers}) == 2, "both workers served sessions"
    # what the replicas recorded agrees: each session reached one replica, 3 times
    for sid in sids:
        assert reps.served(sid, "/invocations") == by_session[sid], sid
    homes = {sid: next(iter(got)) for sid, got in by_session.items()}
    assert_even(collections.Counter(homes.values()), 300)
    assert sum(reps.counts("/invocations").values()) == 900
    assert_home_files(front, reps, homes)

    # CLOSE is answered by nginx; the directory, .home with it, is gone
    for sid in sids[:30]:
        r = close(front, sid)
        assert r.status == 200, r
        assert r.header(CLOSED_SESSION) == sid
        assert not os.path.exists(session_dir(front.sessions_path, sid))
    assert sum(reps.counts("/invocations").values()) == 900, "session requests stay in nginx"
    assert len(live_session_dirs(front)) == 270


# --- reload, reordering, a new server, restart ---------------------------------------------

@pytest.mark.parametrize("mode", ["engine", "builtin"])
def test_homes_hold_across_reload_reorder_new_server_and_restart(cluster, mode):
    reps, front = cluster(3, mode)
    front.start()
    sids = [create(front)[0] for _ in range(30)]
    homes = homes_of(front, reps, sids, mode)
    # one at a time: the fewest live sessions, ties in turn, gives 10 each
    assert collections.Counter(homes.values()) == {"r0": 10, "r1": 10, "r2": 10}

    def check_all_at_home(label):
        for sid in sids:
            for n in range(2):
                assert served_by(invoke(front, sid, n), sid, mode) == homes[sid], (label, sid)
        assert_home_files(front, reps, homes)

    check_all_at_home("started")
    front.ngx.reload()
    check_all_at_home("after reload")

    # servers reordered and a fourth added, then reload: no session moves,
    # and the new replica, with no session, gets the next ones
    new = reps.add()
    before = new.count()
    front.reconfigure(order=["r3", "r2", "r0", "r1"])
    check_all_at_home("after reorder + new server")
    assert new.count() == before == 0
    later = [create(front)[0] for _ in range(9)]
    later_homes = homes_of(front, reps, later, mode)
    assert set(later_homes.values()) == {"r3"}, later_homes
    homes.update(later_homes)
    sids += later

    front.restart()            # nginx stopped, a new one on the same sessions path
    check_all_at_home("after restart")
    # the live sessions per replica are known after the restart: r0 down to
    # 5 (the others have 9 or 10) gets the next 4
    for sid in [s for s in sids if homes[s] == "r0"][5:]:
        assert close(front, sid).status == 200
    again = [create(front)[0] for _ in range(4)]
    assert set(homes_of(front, reps, again, mode).values()) == {"r0"}


@pytest.mark.parametrize("how", ["removed", "down"])
@pytest.mark.parametrize("mode", ["engine", "builtin"])
def test_home_removed_from_the_configuration_counts_as_down(cluster, mode, how):
    reps, front = cluster(3, mode)
    front.start()
    sids = [create(front)[0] for _ in range(12)]
    homes = homes_of(front, reps, sids, mode)
    lost = [s for s in sids if homes[s] == "r1"]
    assert len(lost) == 4
    if how == "removed":
        front.reconfigure(order=["r0", "r2"])
    else:
        front.reconfigure(params={"r1": "down"})
    seen_by_r1 = reps[1].count()
    for sid in sids:
        r = invoke(front, sid)
        if homes[sid] != "r1":
            assert served_by(r, sid, mode) == homes[sid]
        elif mode == "engine":
            assert r.status == 503, r
            assert sid in detail(r), r
        else:
            moved = served_by(r, sid, mode)
            assert moved in ("r0", "r2")
            assert served_by(invoke(front, sid, 1), sid, mode) == moved
            assert read_home(front.sessions_path, sid) == reps.by_name(moved).address
    assert reps[1].count() == seen_by_r1, "the removed replica got requests"


def test_builtin_first_invocations_racing_in_both_workers_agree_on_one_home(cluster):
    reps, front = cluster(3, "builtin")
    front.start()
    sids = [create(front)[0] for _ in range(60)]
    barrier_size = 4

    def race(sid):
        barrier = threading.Barrier(barrier_size)

        def one(n):
            barrier.wait()
            r = invoke(front, sid, n)
            return served_by(r, sid, "builtin"), r.header("X-Worker")
        with concurrent.futures.ThreadPoolExecutor(barrier_size) as pool:
            return list(pool.map(one, range(barrier_size)))

    results = {sid: race(sid) for sid in sids}
    split = {sid: got for sid, got in results.items() if len({g for g, _ in got}) != 1}
    assert split == {}
    workers = {w for got in results.values() for _, w in got}
    assert len(workers) == 2
    for sid, got in results.items():
        assert read_home(front.sessions_path, sid) == reps.by_name(got[0][0]).address


@pytest.mark.parametrize("mode", ["engine", "builtin"])
def test_no_request_misrouted_while_nginx_reloads(cluster, mode):
    reps, front = cluster(3, mode)
    front.start()
    sids = [create(front)[0] for _ in range(60)]
    homes = homes_of(front, reps, sids, mode)
    stop = threading.Event()
    wrong = []
    done = collections.Counter()

    def client(part):
        n = 0
        while not stop.is_set():
            sid = part[n % len(part)]
            r = invoke(front, sid, n)
            n += 1
            if r.status != 200 or r.header("X-Replica") != homes[sid]:
                wrong.append((sid, homes[sid], r))
            done[part[0]] += 1

    threads = [threading.Thread(target=client, args=(sids[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            time.sleep(0.4)
            front.ngx.reload()
        time.sleep(0.4)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert wrong == []
    assert sum(done.values()) >= 100, done


# --- a replica dies ----------------------------------------------------------------------------

def test_engine_owned_home_killed_gives_503_naming_the_session(cluster):
    reps, front = cluster(3, "engine")
    front.start()
    sids = [created_engine_session(front, reps)[0] for _ in range(30)]
    homes = homes_of(front, reps, sids, "engine")
    for sid in sids:
        assert served_by(invoke(front, sid), sid, "engine") == homes[sid]
    lost = [s for s in sids if homes[s] == "r1"]
    kept = [s for s in sids if homes[s] != "r1"]
    assert len(lost) == 10

    offset = len(front.error_log)
    reps[1].kill()
    for sid in lost:
        for n in range(2):
            r = invoke(front, sid, n)
            assert r.status == 503, r
            assert sid in detail(r), r
    r = close(front, lost[0])
    assert r.status == 503, r
    assert lost[0] in detail(r), r
    live, moved, unavailable = affinity_metrics(front)
    assert unavailable == 2 * len(lost) + 1 and moved == 0, (moved, unavailable)
    assert live == {rep.address: 10 for rep in reps}, live
    assert read_home(front.sessions_path, lost[0]) == reps[1].address, "a failed CLOSE keeps the home"
    warns = log_lines_since(front.error_log, offset, "warn")
    assert warns, front.error_log[offset:]
    assert any(sid in l or reps[1].address in l for l in warns for sid in lost), warns

    # the other sessions, and NEW_SESSION, keep working
    for sid in kept:
        assert served_by(invoke(front, sid), sid, "engine") == homes[sid]
    fresh = dict(created_engine_session(front, reps) for _ in range(10))
    assert set(fresh.values()) <= {"r0", "r2"}, fresh
    assert_home_files(front, reps, fresh)
    for sid, home in fresh.items():
        assert served_by(invoke(front, sid), sid, "engine") == home

    # the lost sessions did not move: still 503, never sent to another replica
    for sid in lost:
        r = invoke(front, sid)
        assert r.status == 503, r
        assert reps.served(sid, "/generate") == {"r1"}, sid
        assert read_home(front.sessions_path, sid) == reps[1].address


def test_builtin_home_killed_moves_each_session_to_one_live_replica(cluster):
    reps, front = cluster(3, "builtin")
    front.start()
    sids = [create(front)[0] for _ in range(30)]
    homes = homes_of(front, reps, sids, "builtin")
    lost = [s for s in sids if homes[s] == "r1"]
    assert len(lost) == 10

    offset = len(front.error_log)
    reps[1].kill()
    moved = {}
    for sid in lost:
        got = {served_by(invoke(front, sid, n), sid, "builtin") for n in range(3)}
        assert len(got) == 1 and got <= {"r0", "r2"}, (sid, got)
        moved[sid] = got.pop()
        assert read_home(front.sessions_path, sid) == reps.by_name(moved[sid]).address
    infos = log_lines_since(front.error_log, offset, "info")
    for sid in lost:
        assert any(sid in l for l in infos), (sid, infos)
    live, moved_total, unavailable = affinity_metrics(front)
    assert moved_total == len(lost) and unavailable == 0, (moved_total, unavailable)
    assert live[reps[1].address] == 0, live
    assert sum(live.values()) == len(sids), live
    for sid in sids:
        if sid not in moved:
            assert served_by(invoke(front, sid), sid, "builtin") == homes[sid]

    fresh = [create(front)[0] for _ in range(6)]
    for sid in fresh:
        home = served_by(invoke(front, sid), sid, "builtin")
        assert home in ("r0", "r2")
        assert served_by(invoke(front, sid, 1), sid, "builtin") == home

    # the old home comes back: the moved sessions stay where they are now
    served_before = reps[1].count("/invocations")
    reps[1].restart()
    for sid in lost:
        for n in range(2):
            assert served_by(invoke(front, sid, n), sid, "builtin") == moved[sid]
    assert reps[1].count("/invocations") == served_before


# --- requests without a session: nginx's own balancing -------------------------------------

@pytest.mark.parametrize("affinity", [False, True], ids=["without-directive", "with-affinity"])
def test_weight_is_honoured_without_session(cluster, affinity):
    reps, front = cluster(2, "builtin", affinity=affinity, params={"r0": "weight=3"})
    front.start()
    for i in range(200):
        r = front.request({"p": i}, JSON)
        assert r.status == 200, r
        assert r.json()["session_id"] is None
    counts = reps.counts("/invocations")
    assert 140 <= counts["r0"] <= 160 and counts["r0"] + counts["r1"] == 200, counts


@pytest.mark.parametrize("affinity", [False, True], ids=["without-directive", "with-affinity"])
def test_backup_and_down_are_honoured_without_session(cluster, affinity):
    reps, front = cluster(4, "builtin", affinity=affinity, params={"r2": "backup", "r3": "down"})
    front.start()
    for i in range(60):
        assert front.request({"p": i}, JSON).status == 200
    counts = reps.counts("/invocations")
    assert counts["r2"] == 0 and counts["r3"] == 0, counts
    assert 25 <= counts["r0"] <= 35 and counts["r0"] + counts["r1"] == 60, counts

    reps[0].kill()
    reps[1].kill()
    for i in range(20):
        r = front.request({"p": i}, JSON)
        assert r.status == 200, r
        assert r.header("X-Replica") == "r2", r
    assert reps[3].count() == 0


@pytest.mark.parametrize("affinity", [False, True], ids=["without-directive", "with-affinity"])
def test_max_fails_and_fail_timeout_are_honoured_without_session(cluster, affinity):
    """r0 (max_fails=1 fail_timeout=60s) refuses once: nginx tries r1, and
    leaves r0 alone for the minute even once it is back; r2 (max_fails=0)
    is tried again as soon as it is back."""
    reps, front = cluster(3, "builtin", affinity=affinity,
                          params={"r0": "max_fails=1 fail_timeout=60s", "r2": "max_fails=0"})
    front.start()
    reps[0].kill()
    reps[2].kill()
    for i in range(12):
        r = front.request({"p": i}, JSON)
        assert r.status == 200, r
        assert r.header("X-Replica") == "r1", r
    reps[0].restart()
    reps[2].restart()
    for i in range(30):
        assert front.request({"p": i}, JSON).status == 200
    counts = reps.counts("/invocations")
    assert counts["r0"] == 0 and counts["r2"] >= 8, counts


@pytest.mark.parametrize("mode", ["engine", "builtin"])
def test_new_sessions_go_to_the_fewest_live_sessions_per_weight(cluster, mode):
    """Not round robin: a replica whose sessions were closed gets the next
    ones until it is level again, counted per unit of weight."""
    reps, front = cluster(3, mode, params={"r0": "weight=2"})
    front.start()
    sids = [create(front)[0] for _ in range(40)]
    homes = homes_of(front, reps, sids, mode)
    counts = collections.Counter(homes.values())
    assert 19 <= counts["r0"] <= 21 and 9 <= counts["r1"] <= 11 and 9 <= counts["r2"] <= 11, counts
    # r0 down to 8 live sessions (4 per weight) against at least 9 on r1 and r2
    for sid in [s for s in sids if homes[s] == "r0"][8:]:
        r = close(front, sid)
        assert r.status == 200, r
    later = [create(front)[0] for _ in range(10)]
    later_homes = homes_of(front, reps, later, mode)
    assert collections.Counter(later_homes.values()) == {"r0": 10}, later_homes


def test_unknown_session_is_balanced_and_the_engine_decides(cluster):
    reps, front = cluster(3, "engine")
    front.start()
    unknown = [uuid.uuid4().hex for _ in range(30)]
    for sid in unknown:
        r = invoke(front, sid)
        assert r.status == 400, r
        assert r.json() == {"error": {"message": f"Invalid request: session id {sid} does not exist"}}
    counts = reps.counts("/generate")
    assert sum(counts.values()) == 30 and all(5 <= c <= 15 for c in counts.values()), counts
    assert live_session_dirs(front) == []


# --- expiry of an engine-owned session --------------------------------------------------------

def test_engine_owned_session_expires(cluster):
    reps, front = cluster(3, "engine", expiration="2s")
    front.start()
    other, _ = create(front)
    # touched at once when its time has passed: answered as expired. The
    # sweep may remove it first (it is then an id the module never saw, and
    # the engine answers): then again with a new session, 3 tries.
    for attempt in range(3):
        t0 = time.time()
        sid, r = create(front)
        value = r.header(NEW_SESSION)
        parts = [p.strip() for p in value.split(";")]
        assert len(parts) == 2 and parts[0] == sid and HEX32.match(sid), value
        m = EXPIRES.match(parts[1])
        assert m, value
        expires = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        assert t0 + 2 - 1.5 <= expires <= time.time() + 2 + 0.5, (value, t0)
        expiration = read_expiration(front.sessions_path, sid)
        assert t0 + 2 - 0.5 <= expiration <= time.time() + 2 + 0.5
        assert 0 <= expiration - expires < 1, (expiration, value)
        home = reps.owners(sid)[0]
        assert served_by(invoke(front, sid), sid, "engine") == home.name

        wait_past(expiration + 0.02)
        generated = sum(reps.counts("/generate").values())
        r = invoke(front, sid)
        if "detail" not in r.json():               # the engine's answer: swept before it was touched
            assert not os.path.exists(session_dir(front.sessions_path, sid)), r
            continue
        assert r.status == 400, r
        assert detail(r) == f"Bad request: session expired: {sid}", r
        assert sum(reps.counts("/generate").values()) == generated, "an expired session reached a replica"
        assert not os.path.exists(session_dir(front.sessions_path, sid))
        break
    else:
        pytest.fail("the sweep removed the session before it could be touched, 3 times")
    # the untouched one goes too, with its home (the sweep)
    deadline = time.time() + 10
    while os.path.exists(session_dir(front.sessions_path, other)) and time.time() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(session_dir(front.sessions_path, other))


def test_an_expired_session_no_longer_counts_for_its_home(cluster):
    """r1 and r2 marked down while 4 sessions are opened: all on r0. Once
    those expire (answered as expired when touched, or removed by the
    sweep), r0 is level with the others again: the next 3 sessions go one to each."""
    reps, front = cluster(3, "engine", expiration="2s", params={"r1": "down", "r2": "down"})
    front.start()
    first = [created_engine_session(front, reps) for _ in range(4)]
    assert {home for _, home in first} == {"r0"}
    front.reconfigure(params={})
    for sid, _ in first[:2]:            # touched as soon as expired (unless the sweep was first)
        try:
            wait_past(read_expiration(front.sessions_path, sid) + 0.02)
        except FileNotFoundError:       # swept already: every worker sweeps its part
            continue
        r = invoke(front, sid)
        if r.status == 400 and r.header("Content-Type") == "application/json" and "detail" in r.json():
            assert detail(r) == f"Bad request: session expired: {sid}", r
    deadline = time.time() + 10
    while live_session_dirs(front) and time.time() < deadline:
        time.sleep(0.1)
    assert live_session_dirs(front) == []
    later = [created_engine_session(front, reps)[1] for _ in range(3)]
    assert sorted(later) == ["r0", "r1", "r2"], later


def wait_past(t):
    while time.time() < t:
        time.sleep(0.01)


def test_engine_ids_and_session_headers_never_reach_outside_the_sessions_path(cluster, monkeypatch):
    """An id the engine gives or a client sends that is not safe as one path
    component is never used as a path: nothing is written, read as a home or
    removed outside the sessions path."""
    reps, front = cluster(3, "engine")
    front.start()
    victim = os.path.join(front.dir, "victim")        # beside the sessions path, shaped as a session
    os.makedirs(victim)
    with open(os.path.join(victim, ".expiration_ts"), "w") as f:
        f.write(str(time.time() + 1000))
    with open(os.path.join(victim, ".home"), "w") as f:
        f.write(reps[0].address)
    good, _ = created_engine_session(front, reps)
    for header in ["../victim", "..", ".", "../victim/", "a/../../victim", "./" + good, good + "/"]:
        r = close(front, header)
        assert r.status in (200, 400), (header, r)       # the engine's answer: nginx does not choke
        r = invoke(front, header)
        assert r.status == 400, (header, r)
        assert r.json() == {"error": {"message": f"Invalid request: session id {header} does not exist"}}
    assert sorted(os.listdir(victim)) == [".expiration_ts", ".home"]
    assert os.path.isdir(session_dir(front.sessions_path, good)), "a session closed through a path trick"

    from replicas import Replica
    answer = Replica._answer_sglang
    for bad in ["../escape", "a/b", ".hidden", "..", "x/" + "y" * 200]:
        def open_with_bad_id(self, path, record, body, bad=bad):
            if path != "/open_session":
                return answer(self, path, record, body)
            with self.lock:
                self.sessions[bad] = body
            record["session"] = bad
            return self._json(bad)
        monkeypatch.setattr(Replica, "_answer_sglang", open_with_bad_id)
        r = front.request({"requestType": "NEW_SESSION"}, JSON)
        assert r.status in (200, 500), (bad, r)
    monkeypatch.setattr(Replica, "_answer_sglang", answer)
    made_by_the_harness = {"logs"}   # nginx older than 1.19.5's start-up log (no -e)
    assert sorted(set(os.listdir(front.dir)) - made_by_the_harness) == sorted(
        ["client_body", "error.log", "fastcgi", "nginx.conf", "nginx.pid", "proxy", "scgi", "sessions",
         "uwsgi", "victim"])
    assert live_session_dirs(front) == [good]
    assert sorted(os.listdir(front.sessions_path)) == [good]
    assert not os.path.exists(os.path.join(front.dir, "escape"))


# --- nginx -t -----------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["http", "server", "location"])
def test_directive_outside_an_upstream_block_fails_nginx_t(cluster, where):
    reps, front = cluster(3, "builtin")
    good = front.prepare(affinity=True)
    code, out = good.test_config()
    assert code == 0, out          # inside the upstream it is accepted
    text = front.text(affinity=False)
    anchors = {"http": "    access_log off;\n",
               "server": "        listen 127.0.0.1:",
               "location": "            sagemaker_session_manager"}
    i = text.index(anchors[where])
    text = text[:i] + "    sagemaker_session_affinity;\n" + text[i:]
    with open(good.conf, "w") as f:
        f.write(text)
    result = good.test_config()
    assert_emerg(result, "sagemaker_session_affinity")
    assert "unknown directive" not in result[1], result[1]


@pytest.mark.parametrize("off", ["absent", "off"])
def test_affinity_without_sessions_on_fails_nginx_t(cluster, off):
    reps, front = cluster(3, "builtin")
    http = ["sagemaker_sessions off;"] if off == "off" else []
    n = front.prepare(affinity=False, sessions=False, http=http)
    code, out = n.test_config()
    assert code == 0, out          # the same conf without the directive is fine
    n = front.prepare(affinity=True, sessions=False, http=http)
    result = n.test_config()
    assert_emerg(result, "sagemaker_session_affinity")
    assert "unknown directive" not in result[1], result[1]
