"""`make consistency`: consistency under load (issue "Reliability", item 5).

One minute at saturation against nginx with 2 workers and the module, in front
of a fast engine (a second nginx answering `return 200`), about 1,000 live
sessions, a random mix of create, use and close from many keep-alive
connections, and `nginx -s reload` half way. Every answer is checked against
the SPEC; the inconsistencies are counted by kind and must all be zero.

Two kinds of clients run at once. Python asyncio processes (uvloop when
installed) own most sessions and know the right answer to each request: uses
of live, closed and unknown sessions, creates, closes (some racing), and the
short sessions below. wrk, far cheaper per request, adds load whose answers
must all be 200: uses of a pool of live sessions nobody closes, NEW_SESSION,
and the one CLOSE of each id it made, sent once its create was answered.
Counted:

- a closed session accepted, an expired one accepted, a live one rejected;
- a close not answered exactly once: of the CLOSEs of one session (two of
  them race on different connections for a quarter of the closes), exactly
  one 200 and the others `400 session not found`;
- a malformed answer (a create without a fresh id and a right Expires, a
  status the SPEC does not allow), or a request left without an answer.

Expiry is covered by a second nginx (2 workers too) with
`sagemaker_sessions_expiration 2s` on the same sessions directory: the files
are the truth, so its short sessions are used through both servers. The
client knows a short session's expiry instant only to within the time its
create took (created between sending and receiving, + 2 s), so a request to
a short session counts as strict only when it was answered before the
earliest possible expiry (must be accepted) or sent after the latest one
(must be rejected), each with a GRACE of 50 ms beyond the bracket; a request
in between may be answered either way and is counted as "either way". A use
of a session sent before the client sent that session's CLOSE, but answered
after, may also go either way (two connections, two workers: nothing orders
them) and is counted so.

A reload closes the old workers' idle keep-alive connections: a request
written on one at that instant is never read by nginx and gets no answer
(end of stream before any byte); it is sent again on a new connection, as
HTTP clients do, and counted ("resent after idle close"). Any other missing
answer is an inconsistency.

Exit status 0 only when every inconsistency count is 0 and no worker died.
Writes the summary to Tests/load/results.md too.

At the end, every session the clients hold live is used once more (must be
accepted), up to 2,000 closed ones per process (must be refused), and the
sessions directory must hold no half-written session (a directory without a
whole .expiration_ts).

Environment: CONSISTENCY_SECONDS (60), CONSISTENCY_PROCESSES (Python client
processes, 2), CONSISTENCY_CONNECTIONS (per process, 32), CONSISTENCY_LIVE
(1000, wrk's pool included), CONSISTENCY_WRK_POOL (200),
CONSISTENCY_WRK_CONNECTIONS (64).
"""

import asyncio
import calendar
import collections
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "Tests", "integration"))

from harness import MODULE, Nginx, engine_stub_conf, free_port, front_conf, temp_paths  # noqa: E402

try:
    import uvloop   # a faster event loop: more of the CPU goes to nginx
except ImportError:
    uvloop = None

DURATION = float(os.environ.get("CONSISTENCY_SECONDS", "60"))
PROCESSES = int(os.environ.get("CONSISTENCY_PROCESSES", "2"))
CONNECTIONS = int(os.environ.get("CONSISTENCY_CONNECTIONS", "32"))
LIVE = int(os.environ.get("CONSISTENCY_LIVE", "1000"))
WORKERS = 2
LONG = 1200        # seconds: the main server's sessions cannot expire during the run
SHORT = 2          # seconds: the second server's
GRACE = 0.05       # seconds beyond the bracket of a short session's expiry instant
TIMEOUT = 30
RESULTS = os.path.join(HERE, "results.md")

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
NEW = re.compile(r"^([0-9a-f-]{36}); Expires=(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z$")
ENGINE_BODY = b'{"engine":"ok"}'
SESSION = "X-Amzn-SageMaker-Session-Id"

# wrk (C, far cheaper per request than the Python clients) adds the load that
# keeps nginx's workers busy, with answers that must all be 200: uses of a
# pool of live sessions that nobody closes, and NEW_SESSION then CLOSE of the
# ids it made (each CLOSE sent after its create was answered: the only one).
WRK_LUA = """
local live = {%s}
local ids = {}
c_create, c_close, c_use, c_bad, last_bad = 0, 0, 0, 0, ""
local CT = "application/json"
request = function()
  local r = math.random()
  if #ids > 0 and r < 0.25 then
    return wrk.format("POST", "/invocations",
      {["Content-Type"] = CT, ["X-Amzn-SageMaker-Session-Id"] = table.remove(ids)}, '{"requestType":"CLOSE"}')
  elseif r < 0.5 then
    return wrk.format("POST", "/invocations", {["Content-Type"] = CT}, '{"requestType":"NEW_SESSION"}')
  end
  return wrk.format("POST", "/invocations",
    {["Content-Type"] = CT, ["X-Amzn-SageMaker-Session-Id"] = live[math.random(#live)]}, '{"prompt":"hi"}')
end
response = function(status, headers, body)
  local new = headers["X-Amzn-SageMaker-New-Session-Id"]
  if status == 200 and new then
    table.insert(ids, (string.match(new, "^([^;]+)")))
    c_create = c_create + 1
  elseif status == 200 and headers["X-Amzn-SageMaker-Closed-Session-Id"] then
    c_close = c_close + 1
  elseif status == 200 and body == '%s' then
    c_use = c_use + 1
  else
    c_bad = c_bad + 1
    last_bad = status .. " " .. string.sub(body, 1, 120)
  end
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local t = {create = 0, close = 0, use = 0, bad = 0}
  local last = ""
  for _, th in ipairs(threads) do
    t.create = t.create + th:get("c_create")
    t.close = t.close + th:get("c_close")
    t.use = t.use + th:get("c_use")
    t.bad = t.bad + th:get("c_bad")
    if th:get("last_bad") ~= "" then last = string.gsub(th:get("last_bad"), "[^%%w :._-]", "?") end
  end
  local e = summary.errors
  io.write(string.format('WRK {"create": %%d, "close": %%d, "use": %%d, "bad": %%d, "requests": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "timeout": %%d, "status": %%d, "last_bad": "%%s"}\\n',
    t.create, t.close, t.use, t.bad, summary.requests, e.connect, e.read, e.write, e.timeout, e.status, last))
end
"""
WRK_POOL = int(os.environ.get("CONSISTENCY_WRK_POOL", "200"))
WRK_CONNECTIONS = int(os.environ.get("CONSISTENCY_WRK_CONNECTIONS", "64"))

def workdir():
    d = tempfile.mkdtemp(prefix="sms-load-")
    os.chmod(d, 0o755)
    return d


# --- the client: one process, many connections ----------------------------------

class NoAnswer(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection, re-opened when the server closes it."""

    def __init__(self, port, stats):
        self.port = port
        self.stats = stats
        self.reader = self.writer = None
        self.used = 0

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
        self.used = 0

    async def post(self, body, sid=None):
        head = (f"POST /invocations HTTP/1.1\r\nHost: load\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n")
        if sid is not None:
            head += f"{SESSION}: {sid}\r\n"
        data = head.encode() + b"\r\n" + body
        for _ in range(5):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            reused = self.used > 0
            self.used += 1
            try:
                self.writer.write(data)
                line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
            except (ConnectionError, OSError):
                line = b""
            except asyncio.TimeoutError:
                self.close()
                raise NoAnswer("timeout")
            if not line:
                # nothing came back: an idle connection the server closed (a
                # reload ends the old workers' idle connections); it never
                # read the request, which is sent again on a new connection
                self.close()
                if not reused:
                    raise NoAnswer("connection closed before any answer on a new connection")
                self.stats["resent after idle close"] += 1
                continue
            try:
                return await asyncio.wait_for(self._rest(line), TIMEOUT)
            except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
                self.close()
                raise NoAnswer(f"answer cut short: {e!r}")
        raise NoAnswer("no answer after 5 attempts")

    async def _rest(self, line):
        status = int(line.split(b" ", 2)[1])
        headers = {}
        if line.endswith(b"\r\n"):
            for h in (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")[:-2]:
                k, _, v = h.partition(b":")
                headers[k.strip().lower().decode()] = v.strip().decode()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body


def detail(body):
    try:
        return json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return None


def expires_of(header):
    m = NEW.match(header or "")
    if not m:
        return None, None
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[1:])
    return m.group(1), calendar.timegm((y, mo, d, h, mi, s))


class Client:
    """The sessions of one client process, and what each request must get.

    live: created, no CLOSE sent yet (a use of one must be accepted, unless
    its CLOSE was sent before the answer came). closed: CLOSE answered 200
    (a use must be refused). short: sessions of the 2 s server, with the
    bracket of their expiry instant.
    """

    def __init__(self, index, main_port, short_port, share):
        self.rng = random.Random(index * 7919 + int(time.time()))
        self.main_port = main_port
        self.short_port = short_port
        self.share = share
        self.live = []
        self.live_pos = {}
        self.closed = collections.deque(maxlen=20000)
        self.short = {}                # sid -> [created_sent, created_answered, state]
        self.short_list = collections.deque()
        self.requests = collections.Counter()
        self.statuses = collections.Counter()
        self.inconsistent = collections.Counter()
        self.either = collections.Counter()
        self.stats = collections.Counter()
        self.examples = []
        self.per_second = collections.Counter()
        self.t0 = None

    # live set with O(1) random pick and removal
    def add_live(self, sid):
        self.live_pos[sid] = len(self.live)
        self.live.append(sid)

    def remove_live(self, sid):
        i = self.live_pos.pop(sid)
        last = self.live.pop()
        if i < len(self.live):
            self.live[i] = last
            self.live_pos[last] = i

    def bad(self, kind, what, answer):
        self.inconsistent[kind] += 1
        if len(self.examples) < 20:
            status, headers, body = answer if answer else (None, {}, b"")
            self.examples.append(f"{kind}: {what}: {status} {body[:160]!r}")

    async def send(self, conn, kind, body, sid=None):
        self.requests[kind] += 1
        try:
            answer = await conn.post(body, sid)
        except NoAnswer as e:
            self.bad("request without an answer", f"{kind} {sid or ''} ({e})", None)
            return None
        self.statuses[answer[0]] += 1
        if self.t0 is not None:
            self.per_second[int(time.time() - self.t0)] += 1
        return answer

    async def create(self, conn, kind="create", expiration=LONG):
        sent = time.time()
        a = await self.send(conn, kind, b'{"requestType":"NEW_SESSION"}')
        answered = time.time()
        if a is None:
            return None
        sid, expires = expires_of(a[1].get("x-amzn-sagemaker-new-session-id"))
        ok = (a[0] == 200 and sid and UUID.match(sid) and a[2] == f"Session {sid} created".encode()
              and int(sent + expiration) <= expires <= int(answered + expiration))
        if not ok:
            self.bad("malformed create answer", kind, a)
            return None
        return sid, sent, answered

    async def use_live(self, conns):
        if not self.live:
            return await self.op_create(conns)
        sid = self.rng.choice(self.live)
        conn = conns["short"] if self.rng.random() < 0.1 else conns["main"]
        a = await self.send(conn, "use of a live session", b'{"prompt":"hi"}', sid)
        if a is None:
            return
        if sid in self.live_pos:
            if a[0] != 200 or a[2] != ENGINE_BODY:
                self.bad("live session rejected" if a[0] == 400 else "malformed answer", sid, a)
        else:   # its CLOSE was sent while this use was on its way
            self.either["use of a session whose CLOSE was in flight"] += 1
            if not (a[0] == 200 and a[2] == ENGINE_BODY) and not (
                    a[0] == 400 and detail(a[2]) == f"Bad request: session not found: {sid}"):
                self.bad("malformed answer", sid, a)

    async def op_create(self, conns):
        got = await self.create(conns["main"])
        if got:
            self.add_live(got[0])

    async def close(self, conns):
        if not self.live:
            return
        sid = self.rng.choice(self.live)
        self.remove_live(sid)
        body = b'{"requestType":"CLOSE"}'
        if self.rng.random() < 0.25:
            self.requests["CLOSE pairs racing"] += 1
            answers = await asyncio.gather(self.send(conns["main"], "close", body, sid),
                                           self.send(conns["race"], "close", body, sid))
        else:
            answers = [await self.send(conns["main"], "close", body, sid)]
        answers = [a for a in answers if a is not None]
        wins = [a for a in answers if a[0] == 200]
        for a in wins:
            if a[1].get("x-amzn-sagemaker-closed-session-id") != sid or a[2] != f"Session {sid} closed".encode():
                self.bad("malformed answer", f"close {sid}", a)
        for a in answers:
            if a[0] != 200 and not (a[0] == 400 and detail(a[2]) == f"Bad request: session not found: {sid}"):
                self.bad("malformed answer", f"close {sid}", a)
        if len(wins) != 1:
            self.bad("close not answered exactly once", f"{sid}: {len(wins)} × 200",
                     answers[0] if answers else None)
        self.closed.append(sid)

    async def use_closed(self, conns):
        if not self.closed:
            return await self.use_unknown(conns)
        sid = self.closed[self.rng.randrange(len(self.closed))]
        conn = conns["short"] if self.rng.random() < 0.1 else conns["main"]
        a = await self.send(conn, "use of a closed session", b'{"prompt":"hi"}', sid)
        if a is None:
            return
        if a[0] == 200:
            self.bad("closed session accepted", sid, a)
        elif not (a[0] == 400 and detail(a[2]) == f"Bad request: session not found: {sid}"):
            self.bad("malformed answer", sid, a)

    async def use_unknown(self, conns):
        sid = str(uuid.uuid4())
        a = await self.send(conns["main"], "use of an unknown session", b'{"prompt":"hi"}', sid)
        if a is not None and not (a[0] == 400 and detail(a[2]) == f"Bad request: session not found: {sid}"):
            self.bad("unknown session accepted" if a[0] == 200 else "malformed answer", sid, a)

    # short sessions: [created_sent, created_answered, state]; state is
    # "live", "closing" or "closed" (a CLOSE answered 200)
    async def short_create(self, conns):
        got = await self.create(conns["short"], "create (2 s session)", SHORT)
        if got:
            sid, sent, answered = got
            self.short[sid] = [sent, answered, "live"]
            self.short_list.append(sid)

    def short_pick(self):
        now = time.time()
        while self.short_list and self.short[self.short_list[0]][1] + SHORT + 2 < now:
            del self.short[self.short_list.popleft()]
        if not self.short_list:
            return None
        return self.short_list[self.rng.randrange(len(self.short_list))]

    def short_verdict(self, info, sent, answered):
        """'valid', 'expired' or 'either' for a request sent and answered then."""
        if answered < info[0] + SHORT - GRACE:
            return "valid"
        if sent > info[1] + SHORT + GRACE:
            return "expired"
        return "either"

    def refused(self, a, sid):
        return a[0] == 400 and detail(a[2]) in (f"Bad request: session not found: {sid}",
                                                 f"Bad request: session expired: {sid}")

    async def short_use(self, conns):
        sid = self.short_pick()
        if sid is None:
            return await self.short_create(conns)
        info = self.short[sid]
        conn = conns["main"] if self.rng.random() < 0.5 else conns["short"]
        state = info[2]
        sent = time.time()
        a = await self.send(conn, "use of a 2 s session", b'{"prompt":"hi"}', sid)
        answered = time.time()
        if a is None:
            return
        accepted = a[0] == 200 and a[2] == ENGINE_BODY
        if not accepted and not self.refused(a, sid):
            return self.bad("malformed answer", sid, a)
        if state == "closed":
            if accepted:
                self.bad("closed session accepted", sid, a)
            return
        verdict = self.short_verdict(info, sent, answered)
        if state == "closing" or info[2] != state:
            verdict = "either"
            self.either["use of a session whose CLOSE was in flight"] += 1
        if verdict == "valid" and not accepted:
            self.bad("live session rejected", f"2 s session {sid}, {answered - info[0]:.3f} s after create", a)
        elif verdict == "expired" and accepted:
            self.bad("expired session accepted", f"{sid}, {sent - info[1]:.3f} s after create", a)
        elif verdict == "either" and state != "closing":
            self.either["use of a 2 s session near its expiry"] += 1

    async def short_close(self, conns):
        sid = self.short_pick()
        if sid is None or self.short[sid][2] != "live":
            return
        info = self.short[sid]
        info[2] = "closing"
        conn = conns["main"] if self.rng.random() < 0.5 else conns["short"]
        sent = time.time()
        a = await self.send(conn, "close of a 2 s session", b'{"requestType":"CLOSE"}', sid)
        answered = time.time()
        if a is None:
            info[2] = "live"
            return
        closed = a[0] == 200 and a[1].get("x-amzn-sagemaker-closed-session-id") == sid
        if not closed and not self.refused(a, sid):
            info[2] = "live"
            return self.bad("malformed answer", f"close {sid}", a)
        verdict = self.short_verdict(info, sent, answered)
        if verdict == "valid" and not closed:
            self.bad("live session rejected", f"close of 2 s session {sid}", a)
        elif verdict == "expired" and closed:
            self.bad("expired session accepted", f"close of {sid}", a)
        elif verdict == "either":
            self.either["close of a 2 s session near its expiry"] += 1
        info[2] = "closed" if closed else "expired"

    async def task(self, conns, until):
        share = self.share
        while time.time() < until:
            r = self.rng.random()
            if r < 0.45:
                await self.use_live(conns)
            elif r < 0.69:
                # creates and closes in equal measure keep about `share` live
                if r < 0.57:
                    op = self.op_create if len(self.live) < share * 1.05 else self.close
                else:
                    op = self.close if len(self.live) > share * 0.95 else self.op_create
                await op(conns)
            elif r < 0.79:
                await self.use_closed(conns)
            elif r < 0.81:
                await self.use_unknown(conns)
            else:
                s = self.rng.random()
                if s < 0.3:
                    await self.short_create(conns)
                elif s < 0.9:
                    await self.short_use(conns)
                else:
                    await self.short_close(conns)

    def connections(self):
        return {"main": Connection(self.main_port, self.stats),
                "race": Connection(self.main_port, self.stats),
                "short": Connection(self.short_port, self.stats)}

    async def run(self, barrier, start_box):
        conns = [self.connections() for _ in range(CONNECTIONS)]
        # about `share` live sessions before the clock starts
        per = (self.share + CONNECTIONS - 1) // CONNECTIONS

        async def precreate(c):
            for _ in range(per):
                if len(self.live) < self.share:
                    await self.op_create(c)
        await asyncio.gather(*(precreate(c) for c in conns))
        self.precreated = len(self.live)
        self.requests.clear()
        self.statuses.clear()
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        self.t0 = start_box.value
        until = self.t0 + DURATION
        await asyncio.gather(*(self.task(c, until) for c in conns))
        self.per_second = collections.Counter({k: v for k, v in self.per_second.items() if k < DURATION})
        # afterwards: every live session is accepted, the closed ones refused
        self.t0 = None
        final = self.live[:]
        for i in range(0, len(final), CONNECTIONS):
            batch = final[i:i + CONNECTIONS]
            await asyncio.gather(*(self.final_use(conns[j]["main"], sid, True) for j, sid in enumerate(batch)))
        closed = list(self.closed)[-2000:]
        for i in range(0, len(closed), CONNECTIONS):
            batch = closed[i:i + CONNECTIONS]
            await asyncio.gather(*(self.final_use(conns[j]["main"], sid, False) for j, sid in enumerate(batch)))
        for c in conns:
            for conn in c.values():
                conn.close()

    async def final_use(self, conn, sid, live):
        a = await self.send(conn, "final check of a live session" if live else "final check of a closed session",
                            b'{"prompt":"hi"}', sid)
        if a is None:
            return
        if live and not (a[0] == 200 and a[2] == ENGINE_BODY):
            self.bad("live session rejected", f"final check {sid}", a)
        if not live and not (a[0] == 400 and detail(a[2]) == f"Bad request: session not found: {sid}"):
            self.bad("closed session accepted" if a[0] == 200 else "malformed answer", f"final check {sid}", a)

    def result(self):
        return {k: getattr(self, k) for k in ("requests", "statuses", "inconsistent", "either",
                                              "stats", "examples", "per_second")} | {
            "live_left": len(self.live), "precreated": self.precreated}


def client_process(index, main_port, short_port, share, barrier, start_box, queue):
    client = Client(index, main_port, short_port, share)
    try:
        if uvloop is not None:
            uvloop.install()
        asyncio.run(client.run(barrier, start_box))
        queue.put(client.result())
    except BaseException as e:   # reported, never silently lost
        queue.put({"error": f"client {index}: {e!r}"})
        raise


# --- the servers, the reload, the numbers ----------------------------------------

def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class CPU:
    """CPU seconds used by groups of processes (workers come and go)."""

    def __init__(self):
        self.seen = collections.defaultdict(dict)

    def sample(self, group, pids):
        for pid in pids:
            s = cpu_seconds(pid)
            if s is not None:
                self.seen[group][pid] = s

    def start(self):
        self.base = {g: dict(p) for g, p in self.seen.items()}

    def used(self, group):
        base = self.base.get(group, {})
        return sum(v - base.get(pid, 0) for pid, v in self.seen[group].items())


def error_lines(ngx):
    return [l for l in ngx.error_log.splitlines()
            if any(w in l for w in ("[alert]", "[emerg]", "[crit]", "exited on signal"))]


def main():
    if not os.path.exists(MODULE):
        sys.exit(f"{MODULE} is missing: run `make build`")
    dirs = [workdir() for _ in range(3)]
    shm = tempfile.mkdtemp(prefix="sms-load-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    os.chmod(shm, 0o755)
    sessions = os.path.join(shm, "sessions")
    servers = []
    try:
        engine_port, main_port, short_port = free_port(), free_port(), free_port()
        engine = Nginx.from_text(engine_stub_conf(dirs[0], engine_port, ENGINE_BODY.decode(), pid="nginx.pid",
                                                  log="error.log", level="warn"),
                                 engine_port, dirs[0])
        servers.append(engine.start())

        def front(d, port, expiration):
            conf = front_conf(directory=d, pid="nginx.pid", log="error.log", level="notice", module=MODULE,
                              workers=WORKERS, sessions=sessions, expiration=expiration, engine_port=engine_port,
                              port=port, http=temp_paths(d), listen="reuseport")
            return Nginx.from_text(conf, port, d)
        main_ngx = front(dirs[1], main_port, LONG)
        servers.append(main_ngx.start())
        short_ngx = front(dirs[2], short_port, SHORT)
        servers.append(short_ngx.start())

        pool = [create_session(main_port) for _ in range(WRK_POOL)]
        lua = os.path.join(dirs[0], "load.lua")
        with open(lua, "w") as f:
            f.write(WRK_LUA % (", ".join(f'"{sid}"' for sid in pool), ENGINE_BODY.decode()))

        ctx = mp.get_context("fork")
        barrier = ctx.Barrier(PROCESSES + 1)
        start_box = ctx.Value("d", 0.0)
        queue = ctx.Queue()
        python_live = LIVE - WRK_POOL
        shares = [python_live // PROCESSES + (i < python_live % PROCESSES) for i in range(PROCESSES)]
        procs = [ctx.Process(target=client_process,
                             args=(i, main_port, short_port, shares[i], barrier, start_box, queue))
                 for i in range(PROCESSES)]
        for p in procs:
            p.start()
        print(f"{PROCESSES} client processes × {CONNECTIONS} connections; creating {LIVE} sessions ...", flush=True)

        cpu = CPU()
        wrk = None

        def sample():
            cpu.sample("nginx workers (main server)", main_ngx.worker_pids())
            cpu.sample("nginx workers (2 s server)", short_ngx.worker_pids())
            cpu.sample("engine (nginx return 200)", engine.worker_pids())
            cpu.sample("load clients (Python)", [p.pid for p in procs])
            if wrk is not None:
                cpu.sample("load client (wrk)", [wrk.pid])

        sample()
        start_box.value = time.time() + 0.2
        barrier.wait()
        t0 = start_box.value
        wrk = subprocess.Popen(["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{DURATION:.0f}s", "--timeout", "30s",
                                "-s", lua, f"http://127.0.0.1:{main_port}/invocations"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sample()
        cpu.start()
        live_on_disk = len([n for n in os.listdir(sessions) if UUID.match(n)])
        print(f"start: {live_on_disk} sessions on disk; running {DURATION:.0f} s", flush=True)
        reload_info = None
        while time.time() < t0 + DURATION:
            sample()
            if reload_info is None and time.time() >= t0 + DURATION / 2:
                old = main_ngx.worker_pids() | short_ngx.worker_pids()
                t = time.time()
                main_ngx.reload()
                short_ngx.reload()
                reload_info = {"at": t - t0, "took": time.time() - t,
                               "replaced": old.isdisjoint(main_ngx.worker_pids() | short_ngx.worker_pids())}
                print(f"reload at {reload_info['at']:.1f} s: old workers gone after {reload_info['took']:.2f} s",
                      flush=True)
            time.sleep(0.25)
        sample()
        wall = time.time() - t0
        results = []
        for _ in procs:
            results.append(queue.get(timeout=600))
        for p in procs:
            p.join(60)
        wrk_out = wrk.communicate(timeout=120)[0]
        sample()
        wrk_result = parse_wrk(wrk_out)
        # the pool wrk used is still live, every one of its sessions
        wrk_result["pool rejected at the end"] = sum(
            use_status(main_port, sid) != 200 for sid in pool)
        report = summarize(results, wall, cpu, reload_info, live_on_disk, [main_ngx, short_ngx, engine],
                           wrk_result, half_written_sessions(sessions))
    finally:
        for s in servers:
            s.stop()
        for d in dirs + [shm]:
            shutil.rmtree(d, ignore_errors=True)
    print(report["text"])
    with open(RESULTS, "w") as f:
        f.write(report["markdown"])
    print(f"written to {os.path.relpath(RESULTS, ROOT)}")
    sys.exit(0 if report["ok"] else 1)


KINDS = ("closed session accepted", "expired session accepted", "live session rejected",
         "unknown session accepted", "close not answered exactly once", "malformed create answer",
         "malformed answer", "request without an answer")


def create_session(port):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", "/invocations", body=b'{"requestType":"NEW_SESSION"}')
        r = c.getresponse()
        r.read()
        sid = (r.getheader("X-Amzn-SageMaker-New-Session-Id") or "").split(";")[0]
        if r.status != 200 or not UUID.match(sid):
            raise RuntimeError(f"NEW_SESSION answered {r.status}")
        return sid
    finally:
        c.close()


def use_status(port, sid):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", "/invocations", body=b'{"prompt":"hi"}', headers={SESSION: sid})
        r = c.getresponse()
        return r.status if r.read() == ENGINE_BODY else -r.status
    finally:
        c.close()


def parse_wrk(out):
    for line in out.splitlines():
        if line.startswith("WRK "):
            return json.loads(line[4:])
    return {"error": out[-2000:]}


def half_written_sessions(path):
    """Session directories without a whole .expiration_ts (a number)."""
    count = 0
    for name in os.listdir(path):
        if not UUID.match(name):
            continue
        try:
            with open(os.path.join(path, name, ".expiration_ts")) as f:
                value = json.load(f)
            if not isinstance(value, (int, float)):
                count += 1
        except FileNotFoundError:
            if os.path.isdir(os.path.join(path, name)):
                count += 1
        except (ValueError, OSError):
            count += 1
    return count


def summarize(results, wall, cpu, reload_info, live_on_disk, servers, wrk, half_written):
    errors = [r["error"] for r in results if "error" in r]
    results = [r for r in results if "error" not in r]
    total = collections.defaultdict(collections.Counter)
    examples = []
    for r in results:
        for k in ("requests", "statuses", "inconsistent", "either", "stats", "per_second"):
            total[k].update(r[k])
        examples += r["examples"]
    final_kinds = [k for k in total["requests"] if k.startswith("final check")]
    python_answers = sum(total["per_second"].values())
    wrk_answers = wrk.get("requests", 0)
    answered_in_run = python_answers + wrk_answers
    rps = answered_in_run / DURATION
    if "error" in wrk:
        errors.append("wrk: " + wrk["error"])
    else:
        total["inconsistent"]["wrk: an answer other than 200 (use of a pool session, create, its CLOSE)"] += wrk["bad"]
        total["inconsistent"]["wrk: pool session rejected at the end"] += wrk["pool rejected at the end"]
        total["inconsistent"]["request without an answer"] += wrk["timeout"]
        total["requests"]["wrk: use of a live session (pool)"] += wrk["use"]
        total["requests"]["wrk: create"] += wrk["create"]
        total["requests"]["wrk: close (its only CLOSE, after the create was answered)"] += wrk["close"]
        total["statuses"][200] += wrk["create"] + wrk["close"] + wrk["use"]
        if wrk["bad"]:
            total["statuses"]["wrk: not 200"] += wrk["bad"]
            examples.append("wrk: " + wrk["last_bad"])
        lost = wrk["connect"] + wrk["read"] + wrk["write"]
        if lost:
            total["either"]["wrk: no answer, connection closed (reload ends idle keep-alive connections; "
                            "not resent)"] += lost
    seconds = [total["per_second"].get(i, 0) for i in range(int(DURATION))]

    timed = sum(v for k, v in total["requests"].items() if k not in final_kinds and k != "CLOSE pairs racing")
    total["inconsistent"]["half-written session directory on disk at the end"] += half_written
    crashes = {s.dir: error_lines(s) for s in servers}
    bad = sum(total["inconsistent"].values()) + len(errors) + sum(len(v) for v in crashes.values())
    ok = bad == 0 and reload_info is not None and reload_info["replaced"]

    lines = []
    lines.append(f"`make consistency` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                 f"{os.cpu_count()} cores; nginx with {WORKERS} workers (the module, built-in manager, "
                 f"`sagemaker_sessions_expiration {LONG}s`) and a second nginx with {WORKERS} workers and "
                 f"`sagemaker_sessions_expiration {SHORT}s` on the same sessions directory, both in front of "
                 f"an nginx `return 200` engine; {PROCESSES} checking Python asyncio client processes "
                 f"({'uvloop' if uvloop else 'asyncio'}) × {CONNECTIONS} keep-alive connections (+ one more "
                 f"each for racing CLOSEs, one to the 2 s server) and wrk (1 thread, {WRK_CONNECTIONS} "
                 f"connections); {sum(r['precreated'] for r in results)} sessions created by the Python "
                 f"clients and {WRK_POOL} for wrk before the clock started ({live_on_disk} on disk); {DURATION:.0f} s; `nginx -s reload` of both servers "
                 + (f"at {reload_info['at']:.1f} s (old workers gone {reload_info['took']:.2f} s later)."
                    if reload_info else "never sent."))
    lines.append("")
    lines.append(f"**{'PASS' if ok else 'FAIL'}**: {sum(total['inconsistent'].values())} inconsistent answers; "
                 f"{answered_in_run:,} answers in {DURATION:.0f} s = **{rps:,.0f} req/s** "
                 f"({wrk_answers / DURATION:,.0f}/s from wrk, {python_answers / DURATION:,.0f}/s from the "
                 f"checking Python clients: slowest second {min(seconds) if seconds else 0:,}, fastest "
                 f"{max(seconds) if seconds else 0:,}); "
                 f"{sum(r['live_left'] for r in results) + WRK_POOL} sessions of the clients live at the end "
                 f"({WRK_POOL} of them wrk's pool).")
    if reload_info:
        r0 = int(reload_info["at"])
        around = ", ".join(f"{i} s: {total['per_second'].get(i, 0):,}" for i in range(max(0, r0 - 2), min(int(DURATION), r0 + 4)))
        lines.append("")
        lines.append(f"Answers per second to the Python clients around the reload: {around}.")
    lines.append("")
    lines.append("| inconsistency | count |")
    lines.append("|---|---:|")
    for k in KINDS:
        lines.append(f"| {k} | {total['inconsistent'].get(k, 0)} |")
    for k, v in sorted(total["inconsistent"].items()):
        if k not in KINDS:
            lines.append(f"| {k} | {v} |")
    lines.append(f"| worker crashes, [alert]/[crit]/[emerg] lines | {sum(len(v) for v in crashes.values())} |")
    lines.append(f"| client errors | {len(errors)} |")
    lines.append("")
    lines.append("| requests by kind | count |")
    lines.append("|---|---:|")
    for k, v in sorted(total["requests"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {k} | {v:,} |")
    lines.append(f"| total (timed run, each racing CLOSE counted) | {timed:,} |")
    lines.append("")
    lines.append("| answers by status | count |")
    lines.append("|---|---:|")
    for k, v in sorted(total["statuses"].items()):
        lines.append(f"| {k} | {v:,} |")
    lines.append("")
    lines.append("| allowed either way (not inconsistencies) | count |")
    lines.append("|---|---:|")
    for k, v in sorted(total["either"].items()):
        lines.append(f"| {k} | {v:,} |")
    for k, v in sorted(total["stats"].items()):
        lines.append(f"| {k} (sent again on a new connection) | {v:,} |")
    lines.append("")
    lines.append(f"| CPU during the {DURATION:.0f} s | CPU seconds | share of {os.cpu_count()} cores |")
    lines.append("|---|---:|---:|")
    for group in sorted(cpu.seen):
        used = cpu.used(group)
        lines.append(f"| {group} | {used:.1f} | {100 * used / (wall * (os.cpu_count() or 1)):.0f}% |")
    lines.append("")
    if examples or errors:
        lines.append("First inconsistencies:")
        lines.append("")
        for e in (errors + examples)[:20]:
            lines.append(f"- `{e}`")
        lines.append("")
    for d, v in crashes.items():
        for l in v[:10]:
            lines.append(f"- `{l}`")
    markdown = "# Consistency under load\n\n" + "\n".join(lines) + "\n"
    return {"ok": ok, "text": "\n".join(lines), "markdown": markdown}


if __name__ == "__main__":
    main()
