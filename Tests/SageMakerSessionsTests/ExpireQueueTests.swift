import Glibc
import XCTest
@testable import SageMakerSessions

/// The closes owed for engine sessions the sweep found expired: entries in
/// the sessions directory, claimed by a rename, tried again with backoff,
/// given up after the last try.
final class ExpireQueueTests: TempDirectoryTestCase {
    private let t0: Double = 1_700_000_000

    private func store(closing: Bool = true) -> SessionStore {
        let s = SessionStore(root: root, expiration: 10, maxSessions: Configuration.defaultMaxSessions,
                             sweepClock: { 0 })
        s.affinity = true
        if closing { s.expireQueue = ExpireQueue() }
        return s
    }

    private func record(_ s: SessionStore, _ id: String, home: String = "a:1") throws -> Home {
        let home = try XCTUnwrap(s.homes.intern(home))
        _ = try Array(id.utf8).withUnsafeBytes { try s.record(engineSession: $0, home: home, now: t0) }
        return home
    }

    /// One whole pass of the sweep at `now`.
    private func sweep(_ s: SessionStore, now: Double) {
        for _ in 0..<4 { _ = s.sweepStep(now: now) }
    }

    private func ms(_ seconds: Double) -> Int64 { Int64(seconds * 1000) }

    func testAnEntryNamesItsStateAndReadsBack() {
        let entry = ExpireEntry(id: "ab.c-1", tries: 2, due: 1_700_000_000_123, pid: 42)
        XCTAssertEqual(entry.name, ".expire.2.1700000000123.42.ab.c-1")
        XCTAssertEqual(ExpireEntry(name: entry.name), entry)
        for bad in [".expire.", ".expire.1.2.3", ".expire.1.2.3.", ".expire.x.2.3.abc", ".expire.-1.2.3.abc",
                    ".expire.1.2.-3.abc", ".expire.1.2.3..abc", ".expire.1.2.3.a/b", "abc", ".gone-abc"] {
            XCTAssertNil(ExpireEntry(name: bad), bad)
        }
    }

    func testTheSweepOwesACloseInsteadOfRemovingAndOneClaimTakesIt() throws {
        let s = store()
        let a = try record(s, "abc")
        sweep(s, now: t0 + 5)
        XCTAssertEqual(TestFS.entries(root), ["abc"], "not expired yet")
        sweep(s, now: t0 + 11)
        let owed = ".expire.0.\(ms(t0 + 11)).0.abc"
        XCTAssertEqual(TestFS.entries(root).filter { $0 != SessionStore.graveyardName }, [owed])
        XCTAssertEqual(s.expireWait(now: t0 + 11), 0)

        let taken = try XCTUnwrap(s.takeExpired(now: t0 + 11))
        XCTAssertEqual(taken.id, "abc")
        XCTAssertEqual(taken.home, a)
        XCTAssertEqual(TestFS.entries(root).filter { $0.hasPrefix(".expire.") }, [".expire.0.\(ms(t0 + 11)).\(getpid()).abc"])
        XCTAssertNil(s.takeExpired(now: t0 + 11), "claimed once")
        XCTAssertNil(s.expireWait(now: t0 + 11), "none waiting while it is called")
        // the engine's close is the request path's: at its home, the id at REQUEST_PATH
        let m = SessionManager(store: s, injectPath: nil, closeHandler: CloseHandler(
            requestPath: try HandlerPath.request("body.session_id"), defaults: try XCTUnwrap(SessionDefaults.empty)))
        guard case .callEngine(.expire, let body, let route)? = try Array("abc".utf8).withUnsafeBytes({
            try m.expireCall($0, home: a)
        }) else { return XCTFail() }
        XCTAssertEqual(body.dumped(), #"{"session_id":"abc"}"#)
        XCTAssertEqual(route, Route(kind: .engine, home: a))

        let done = s.expireAnswered("abc", status: 200, complete: true, micros: 10, now: t0 + 11)
        XCTAssertEqual(done, ExpireOutcome(level: .info, message: "session expired: abc; closed at its home a:1"))
        XCTAssertEqual(TestFS.entries(root).filter { $0.hasPrefix(".expire.") }, [])
        XCTAssertNil(s.expireWait(now: t0 + 12))
        sweep(s, now: t0 + 12)
        XCTAssertNil(s.takeExpired(now: t0 + 30), "nothing owed twice")
    }

    func testARefusedCloseIsTriedAgainWithBackoffThenGivenUp() throws {
        let s = store()
        _ = try record(s, "abc")
        sweep(s, now: t0 + 11)
        var now = t0 + 11
        for (i, pause) in [1.0, 2, 4, 8].enumerated() {
            XCTAssertNotNil(s.takeExpired(now: now), "try \(i + 1)")
            let outcome = try XCTUnwrap(s.expireAnswered("abc", status: 502, complete: true, micros: 10, now: now))
            XCTAssertEqual(outcome.level, .info)
            XCTAssertEqual(outcome.message, "session expired: abc; its home a:1 did not close it (status 502): "
                           + "try \(i + 2) in \(Int(pause)) s")
            XCTAssertEqual(TestFS.entries(root).filter { $0.hasPrefix(".expire.") },
                           [".expire.\(i + 1).\(ms(now + pause)).0.abc"])
            XCTAssertNil(s.takeExpired(now: now + pause - 0.01), "not before its time")
            XCTAssertEqual(s.expireWait(now: now), ms(pause))
            now += pause
        }
        XCTAssertNotNil(s.takeExpired(now: now))
        let last = try XCTUnwrap(s.expireAnswered("abc", status: 0, complete: false, micros: 10, now: now))
        XCTAssertEqual(last, ExpireOutcome(level: .warn, message: "session expired: abc; its home a:1 did not close "
                                           + "it after 5 tries (status 0, answer unreadable): given up"))
        XCTAssertEqual(TestFS.entries(root).filter { $0.hasPrefix(".expire.") }, [])
        XCTAssertNil(s.expireWait(now: now))
    }

    func testEntriesLeftByAnotherCycleAreFoundAndThoseBeingCalledAreLeftAlone() throws {
        let s = store()
        // left by a process that is gone, and by one that lives (calling it now)
        let gone = ExpireEntry(id: "left", tries: 2, due: ms(t0), pid: 0)
        let calling = ExpireEntry(id: "busy", tries: 0, due: ms(t0), pid: getppid())
        for entry in [gone, calling] {
            XCTAssertEqual(TestFS.write(root + "/" + entry.name, "b:2"), true)
        }
        sweep(s, now: t0 + 1)
        let taken = try XCTUnwrap(s.takeExpired(now: t0 + 1))
        XCTAssertEqual(taken.id, "left")
        XCTAssertEqual(taken.home.text, "b:2")
        XCTAssertNil(s.takeExpired(now: t0 + 1), "another live process is calling it")
        // its third try failing: tried again (tries are kept across cycles)
        let outcome = try XCTUnwrap(s.expireAnswered("left", status: 503, complete: true, micros: 1, now: t0 + 1))
        XCTAssertEqual(outcome.message, "session expired: left; its home b:2 did not close it (status 503): try 4 in 4 s")
    }

    func testAnotherClaimFirstWinsAndTheLoserDropsIt() throws {
        let s = store()
        _ = try record(s, "abc")
        sweep(s, now: t0 + 11)
        // another worker renames it first
        let owed = try XCTUnwrap(TestFS.entries(root).first { $0.hasPrefix(".expire.") })
        XCTAssertEqual(rename(root + "/" + owed, root + "/.expire.0.0.1.abc"), 0)
        XCTAssertNil(s.takeExpired(now: t0 + 11))
        XCTAssertNil(s.expireWait(now: t0 + 11))
    }

    func testWithoutACloseLocationOrForABuiltInSessionTheSweepRemovesAsBefore() throws {
        let s = store(closing: false)
        _ = try record(s, "abc")
        sweep(s, now: t0 + 11)
        XCTAssertEqual(TestFS.entries(root).filter { !$0.hasPrefix(".") }, [])
        XCTAssertEqual(TestFS.entries(root).filter { $0.hasPrefix(".expire.") }, [])

        let closing = store()
        let created = try closing.create(now: t0)
        sweep(closing, now: t0 + 11)
        XCTAssertFalse(TestFS.entries(root).contains(created.id))
        XCTAssertEqual(TestFS.entries(root).filter { $0.hasPrefix(".expire.") }, [], "a built-in session has no engine")
    }

    func testTheRequestPathRecordsItsCallSoThatARefusalIsTriedAgain() throws {
        let s = store()
        let a = try record(s, "abc")
        let m = SessionManager(store: s, injectPath: nil, closeHandler: CloseHandler(
            requestPath: try HandlerPath.request("body.session_id"), defaults: try XCTUnwrap(SessionDefaults.empty)))
        // a request finds it expired (now is the wall clock: expired long ago)
        guard case .callEngine(.expire, _, let route) = Array("{}".utf8).withUnsafeBytes({
            m.decide(sessionID: Array("abc".utf8), body: $0)
        }) else { return XCTFail() }
        XCTAssertEqual(route, Route(kind: .engine, home: a))
        let calling = TestFS.entries(root).filter { $0.hasPrefix(".expire.") }
        XCTAssertEqual(calling.count, 1)
        XCTAssertEqual(ExpireEntry(name: calling[0])?.pid, getpid(), "being called: the sweep leaves it alone")
        XCTAssertNil(s.takeExpired(), "not owed while called")

        let refused = EngineResponse(complete: true, status: 503, headers: [], body: UnsafeRawBufferPointer(start: nil, count: 0))
        guard case .answer(let answer) = m.answer(.expire, sessionID: Array("abc".utf8), response: refused) else {
            return XCTFail()
        }
        XCTAssertEqual(answer.body, #"{"detail":"Bad request: session expired: abc"}"#)
        XCTAssertEqual(answer.log?.level, .info)
        XCTAssertEqual(answer.log?.message, "session expired: abc; its home a:1 did not close it (status 503): try 2 in 1 s")
        let owed = try XCTUnwrap(ExpireEntry(name: try XCTUnwrap(TestFS.entries(root).first { $0.hasPrefix(".expire.") })))
        XCTAssertEqual(owed.tries, 1)
        XCTAssertEqual(owed.pid, 0)
        XCTAssertNotNil(s.takeExpired(now: Double(owed.due) / 1000))
        XCTAssertEqual(s.expireAnswered("abc", status: 200, complete: true, micros: 1)?.level, .info)
        XCTAssertEqual(TestFS.entries(root).filter { $0.hasPrefix(".expire.") }, [])
    }

    func testANameTheSweepReadBeforeItWasSettledIsDroppedWithoutAWord() throws {
        let s = store()
        _ = try record(s, "abc")
        sweep(s, now: t0 + 11)
        XCTAssertNotNil(s.takeExpired(now: t0 + 11))
        let claimed = try XCTUnwrap(TestFS.entries(root).first { $0.hasPrefix(".expire.") })
        XCTAssertEqual(s.expireAnswered("abc", status: 200, complete: true, micros: 1, now: t0 + 11)?.level, .info)
        // the sweep's batch still held its claimed name, and a name of before
        s.foundExpireEntry(claimed)
        s.foundExpireEntry(".expire.0.\(ms(t0 + 11)).0.abc")
        XCTAssertNil(s.takeExpired(now: t0 + 12))
        XCTAssertNil(s.takeWarning())
        XCTAssertNil(s.expireWait(now: t0 + 12))
    }
}
