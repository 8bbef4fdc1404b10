import Glibc
import XCTest
@testable import SageMakerSessions

/// Session affinity in the core: the choice of a new session's home, the
/// homes kept with the sessions, their tally, and where decisions send a
/// request.
final class AffinityTests: TempDirectoryTestCase {
    private let t0: Double = 1_700_000_000

    private func store(expiration: Int64 = 1200) -> SessionStore {
        let s = SessionStore(root: root, expiration: expiration, maxSessions: Configuration.defaultMaxSessions,
                             sweepClock: { 0 })
        s.affinity = true
        return s
    }

    /// The tally nginx would keep, by name.
    private final class Tally {
        var sessions: [String: Int64] = [:]
        func attach(_ s: SessionStore) {
            s.homes.counter = { name, delta in
                self.sessions[String(decoding: name, as: UTF8.self), default: 0] += delta
            }
        }
    }

    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    // MARK: the choice

    private func pick(_ replicas: [(Int64, Int64, Bool)], turn: UInt64 = 0) -> Int? {
        AffinityChoice.pick(count: replicas.count, turn: turn, sessions: { replicas[$0].0 },
                            weight: { replicas[$0].1 }, usable: { replicas[$0].2 })
    }

    func testFewestSessionsWins() {
        XCTAssertEqual(pick([(5, 1, true), (2, 1, true), (3, 1, true)]), 1)
    }

    func testUnusableReplicasAreSkipped() {
        XCTAssertEqual(pick([(5, 1, true), (2, 1, false), (3, 1, true)]), 2)
        XCTAssertNil(pick([(0, 1, false), (0, 1, false)]))
        XCTAssertNil(pick([]))
    }

    func testTiesAreTakenInTurn() {
        let replicas: [(Int64, Int64, Bool)] = [(4, 1, true), (1, 1, true), (9, 1, true), (1, 1, true)]
        XCTAssertEqual((0..<4).map { pick(replicas, turn: UInt64($0)) }, [1, 3, 1, 3])
    }

    func testSessionsAreWeighed() {
        // 3 sessions on weight 2 is 1.5 each: fewer than 2 on weight 1
        XCTAssertEqual(pick([(2, 1, true), (3, 2, true)]), 1)
        XCTAssertEqual(pick([(1, 1, true), (3, 2, true)]), 0)
        // an absurd weight or count never traps
        XCTAssertEqual(pick([(Int64.max, Int64.max, true), (0, 0, true)]), 1)
    }

    // MARK: homes kept with sessions

    func testFirstHomeIsWrittenAndCounted() throws {
        let s = store(), tally = Tally()
        tally.attach(s)
        let created = try s.create(now: t0)
        let a = try XCTUnwrap(s.homes.intern("127.0.0.1:8001"))
        let given = bytes(created.id).withUnsafeBytes { s.setHome($0, to: a, replacing: nil) }
        XCTAssertEqual(given, a)
        XCTAssertEqual(TestFS.read(root + "/" + created.id + "/.home"), "127.0.0.1:8001")
        XCTAssertEqual(TestFS.entries(root + "/" + created.id), [".expiration_ts", ".home"])
        XCTAssertEqual(tally.sessions, ["127.0.0.1:8001": 1])
        XCTAssertEqual(try s.lookup(created.id, now: t0), .valid(expiresAt: created.expiresAt, home: a))
    }

    func testTheFirstHomeWrittenWins() throws {
        let s = store(), tally = Tally()
        tally.attach(s)
        let created = try s.create(now: t0)
        XCTAssertTrue(TestFS.write(root + "/" + created.id + "/.home", "127.0.0.1:8002"))
        let a = try XCTUnwrap(s.homes.intern("127.0.0.1:8001"))
        let given = bytes(created.id).withUnsafeBytes { s.setHome($0, to: a, replacing: nil) }
        XCTAssertEqual(given.map { $0.text }, "127.0.0.1:8002")
        XCTAssertEqual(TestFS.read(root + "/" + created.id + "/.home"), "127.0.0.1:8002")
        XCTAssertEqual(tally.sessions, [:], "the other worker counted it")
        XCTAssertEqual(TestFS.entries(root + "/" + created.id), [".expiration_ts", ".home"])
    }

    func testAMoveReplacesTheHomeAndMovesTheCount() throws {
        let s = store(), tally = Tally()
        tally.attach(s)
        let created = try s.create(now: t0)
        let a = try XCTUnwrap(s.homes.intern("a:1")), b = try XCTUnwrap(s.homes.intern("b:1"))
        _ = bytes(created.id).withUnsafeBytes { s.setHome($0, to: a, replacing: nil) }
        let given = bytes(created.id).withUnsafeBytes { s.setHome($0, to: b, replacing: a) }
        XCTAssertEqual(given, b)
        XCTAssertEqual(TestFS.read(root + "/" + created.id + "/.home"), "b:1")
        XCTAssertEqual(tally.sessions, ["a:1": 0, "b:1": 1])
    }

    func testAGoneSessionGetsNoHome() throws {
        let s = store()
        let a = try XCTUnwrap(s.homes.intern("a:1"))
        XCTAssertNil(bytes("0b3a5c1e-9e0b-4a5e-8e3a-1c2b3d4e5f60").withUnsafeBytes { s.setHome($0, to: a, replacing: nil) })
        XCTAssertNil(bytes("../x").withUnsafeBytes { s.setHome($0, to: a, replacing: nil) })
        XCTAssertEqual(TestFS.entries(root), [])
    }

    func testClosingAndExpiringTakeTheHomeAway() throws {
        let s = store(expiration: 10), tally = Tally()
        tally.attach(s)
        let a = try XCTUnwrap(s.homes.intern("a:1"))
        let one = try s.create(now: t0), two = try s.create(now: t0)
        for id in [one.id, two.id] { _ = bytes(id).withUnsafeBytes { s.setHome($0, to: a, replacing: nil) } }
        XCTAssertEqual(tally.sessions, ["a:1": 2])
        XCTAssertEqual(try s.close(one.id, now: t0), .closed)
        XCTAssertEqual(tally.sessions, ["a:1": 1])
        XCTAssertEqual(try s.lookup(two.id, now: t0 + 11), .expired)
        XCTAssertEqual(tally.sessions, ["a:1": 0])
        XCTAssertEqual(TestFS.entries(root), [])
    }

    func testTheSweepTakesHomesAway() throws {
        let s = store(expiration: 10), tally = Tally()
        tally.attach(s)
        let a = try XCTUnwrap(s.homes.intern("a:1"))
        let created = try s.create(now: t0)
        _ = bytes(created.id).withUnsafeBytes { s.setHome($0, to: a, replacing: nil) }
        let engine = try XCTUnwrap(bytes("e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5").withUnsafeBytes {
            try s.record(engineSession: $0, home: a, now: t0)
        })
        XCTAssertEqual(tally.sessions, ["a:1": 2])
        _ = s.sweepStep(now: t0 + 11)
        XCTAssertEqual(TestFS.entries(root), [], "sweep removed \(created.id) and \(engine.id)")
        XCTAssertEqual(tally.sessions, ["a:1": 0])
    }

    // MARK: engine sessions

    func testAnEngineSessionIsRecordedWithItsHomeAndLifetime() throws {
        let s = store(), tally = Tally()
        tally.attach(s)
        let a = try XCTUnwrap(s.homes.intern("10.0.0.1:30000"))
        let id = "4944601d7977473b8a80b4ede8db7da0"
        let created = try XCTUnwrap(bytes(id).withUnsafeBytes { try s.record(engineSession: $0, home: a, now: t0) })
        XCTAssertEqual(created, SessionStore.Created(id: id, expiresAt: t0 + 1200))
        XCTAssertEqual(TestFS.entries(root + "/" + id), [".expiration_ts", ".home"])
        XCTAssertEqual(TestFS.read(root + "/" + id + "/.home"), "10.0.0.1:30000")
        XCTAssertEqual(try bytes(id).withUnsafeBytes { try s.lookup(engineSession: $0, now: t0) },
                       .valid(expiresAt: t0 + 1200, home: a))
        XCTAssertEqual(try bytes(id).withUnsafeBytes { try s.lookup(engineSession: $0, now: t0 + 1201) }, .expired)
        XCTAssertEqual(TestFS.entries(root), [])
        XCTAssertEqual(tally.sessions, ["10.0.0.1:30000": 0])
    }

    func testAnIdTheEngineGivesAgainReplacesItsRecord() throws {
        let s = store(), tally = Tally()
        tally.attach(s)
        let a = try XCTUnwrap(s.homes.intern("a:1")), b = try XCTUnwrap(s.homes.intern("b:1"))
        for home in [a, b] {
            _ = try bytes("abc").withUnsafeBytes { try s.record(engineSession: $0, home: home, now: t0) }
        }
        XCTAssertEqual(TestFS.read(root + "/abc/.home"), "b:1")
        XCTAssertEqual(tally.sessions, ["a:1": 0, "b:1": 1])
    }

    func testEngineIdsThatCannotBeDirectoriesAreNotRecorded() throws {
        let s = store()
        let a = try XCTUnwrap(s.homes.intern("a:1"))
        for id in ["", ".hidden", "../up", "a/b", "sp ace", String(repeating: "x", count: 65), "ümlaut", "a\u{0}b"] {
            XCTAssertNil(try bytes(id).withUnsafeBytes { try s.record(engineSession: $0, home: a, now: t0) }, id)
            XCTAssertEqual(try bytes(id).withUnsafeBytes { try s.lookup(engineSession: $0, now: t0) }, .notFound, id)
        }
        XCTAssertEqual(TestFS.entries(root), [])
    }

    func testEngineSessionNamesAreKeptByTheirBytes() throws {
        func name(_ text: String) -> EngineSessionName? {
            Array(text.utf8).withUnsafeBytes { EngineSessionName($0) }
        }
        let hex = "4944601d7977473b8a80b4ede8db7da0"
        XCTAssertEqual(name(hex)?.text, hex)
        XCTAssertEqual(name(String(repeating: "z", count: 64))?.text, String(repeating: "z", count: 64))
        XCTAssertEqual(name("A-b_c.d:9")?.text, "A-b_c.d:9")
        for bad in ["", ".x", String(repeating: "z", count: 65), "a b", "a/b", "é", "a\u{7f}", "a+b", "a@b", "[x]"] {
            XCTAssertNil(name(bad), bad)
        }
        // the same bytes are the same key, whatever memory they came from; a
        // prefix, a longer id or one byte changed is another
        let a = try XCTUnwrap(name(hex)), same = try XCTUnwrap(name(String(hex)))
        XCTAssertEqual(a, same)
        XCTAssertEqual(a.hashValue, same.hashValue)
        for other in [String(hex.dropLast()), hex + "0", "5" + hex.dropFirst()] {
            XCTAssertNotEqual(a, try XCTUnwrap(name(other)), other)
        }
        // a key made unchecked from bytes that are not storable is never stored
        let unchecked = try XCTUnwrap(Array("../x".utf8).withUnsafeBytes { EngineSessionName(unchecked: $0) })
        XCTAssertFalse(unchecked.isStorable)
    }

    func testHomesAreCountedFromTheFiles() throws {
        let s = store()
        let a = try XCTUnwrap(s.homes.intern("a:1")), b = try XCTUnwrap(s.homes.intern("b:1"))
        for (i, home) in [a, a, b].enumerated() {
            _ = try bytes("engine\(i)").withUnsafeBytes { try s.record(engineSession: $0, home: home, now: t0) }
        }
        _ = try s.create(now: t0)  // no home yet
        var counted: [String: Int64] = [:]
        store().countHomes { counted[$0.text] = $1 }
        XCTAssertEqual(counted, ["a:1": 2, "b:1": 1])
    }

    // MARK: decisions

    private func manager(_ s: SessionStore, engine: Bool = false) throws -> SessionManager {
        guard engine else { return SessionManager(store: s, injectPath: nil) }
        return SessionManager(store: s, injectPath: nil,
                              createHandler: CreateHandler(responsePath: try HandlerPath.response("body"),
                                                           defaults: try XCTUnwrap(SessionDefaults.empty)),
                              closeHandler: CloseHandler(requestPath: try HandlerPath.request("body.session_id"),
                                                         defaults: try XCTUnwrap(SessionDefaults.empty)))
    }

    private func decide(_ m: SessionManager, _ body: String, id: String?, now: Double? = nil) -> Decision {
        Array(body.utf8).withUnsafeBytes { m.decide(sessionID: id.map { Array($0.utf8) }, body: $0, now: now ?? t0) }
    }

    func testABuiltInSessionIsRoutedToItsHome() throws {
        let s = store(), m = try manager(s)
        let created = try s.create(now: t0)
        guard case .passSession(let first, nil) = decide(m, "{}", id: created.id) else { return XCTFail() }
        XCTAssertEqual(first, Route(kind: .builtin, home: nil))
        let a = try XCTUnwrap(s.homes.intern("a:1"))
        _ = bytes(created.id).withUnsafeBytes { s.setHome($0, to: a, replacing: nil) }
        guard case .passSession(let later, nil) = decide(m, "{}", id: created.id) else { return XCTFail() }
        XCTAssertEqual(later, Route(kind: .builtin, home: a))
    }

    func testWithoutAffinityNothingChanges() throws {
        let s = store()
        s.affinity = false
        let created = try s.create(now: t0)
        guard case .pass = decide(try manager(s), "{}", id: created.id) else { return XCTFail() }
        guard case .pass = decide(try manager(s, engine: true), "{}", id: "abc") else { return XCTFail() }
    }

    func testAnEngineSessionIsRoutedToItsHomeAndRefusedOnceExpired() throws {
        let s = store(expiration: 10), m = try manager(s, engine: true)
        let a = try XCTUnwrap(s.homes.intern("a:1"))
        _ = try bytes("abc").withUnsafeBytes { try s.record(engineSession: $0, home: a, now: t0) }
        guard case .passSession(let route, nil) = decide(m, "{}", id: "abc") else { return XCTFail() }
        XCTAssertEqual(route, Route(kind: .engine, home: a))
        guard case .callEngine(.close, _, let closing) = decide(m, #"{"requestType":"CLOSE"}"#, id: "abc") else {
            return XCTFail()
        }
        XCTAssertEqual(closing, Route(kind: .engine, home: a))
        // an id never recorded: balanced, and the engine decides
        guard case .pass = decide(m, "{}", id: "never-seen") else { return XCTFail() }
        // expired: claimed and closed at its home, once; the client gets expired
        guard case .callEngine(.expire, let body, let expiring) = decide(m, "{}", id: "abc", now: t0 + 11) else {
            return XCTFail()
        }
        XCTAssertEqual(expiring, Route(kind: .engine, home: a))
        XCTAssertEqual(body.dumped(), #"{"session_id":"abc"}"#)
        guard case .pass = decide(m, "{}", id: "abc", now: t0 + 11) else { return XCTFail("claimed twice") }
        let refused = EngineResponse(complete: true, status: 502, headers: [], body: UnsafeRawBufferPointer(start: nil, count: 0))
        guard case .answer(let answer) = m.answer(.expire, sessionID: bytes("abc"), response: refused) else {
            return XCTFail()
        }
        XCTAssertEqual(answer.status, 400)
        XCTAssertEqual(answer.body, #"{"detail":"Bad request: session expired: abc"}"#)
        XCTAssertEqual(answer.outcome, .expired)
        XCTAssertEqual(answer.log?.level, .warn)
    }

    func testTheEngineCreatingASessionOnAHomeRecordsItWithExpires() throws {
        let s = store(), m = try manager(s, engine: true)
        let a = try XCTUnwrap(s.homes.intern("a:1"))
        let body = Array(#""abc123""#.utf8)
        let created = body.withUnsafeBytes {
            m.answer(.create, sessionID: nil, response: EngineResponse(complete: true, status: 200, headers: [], body: $0),
                     home: a, now: t0)
        }
        guard case .answer(let answer) = created else { return XCTFail() }
        XCTAssertEqual(answer.header?.value, "abc123; Expires=" + UTCTimestamp.format(unixSeconds: t0 + 1200))
        XCTAssertEqual(TestFS.read(root + "/abc123/.home"), "a:1")
        _ = [UInt8]().withUnsafeBytes {
            m.answer(.close, sessionID: Array("abc123".utf8),
                     response: EngineResponse(complete: true, status: 200, headers: [], body: $0), now: t0)
        }
        XCTAssertEqual(TestFS.entries(root), [])
    }

    func testAHomeUnavailableAnswerNamesTheSession() {
        let answer = SessionError.homeUnavailable(id: "abc", home: "a:1").answer
        XCTAssertEqual(answer.status, 503)
        XCTAssertEqual(answer.body, #"{"detail":"Session abc is held by engine replica a:1, which is unavailable"}"#)
        XCTAssertEqual(answer.log?.level, .warn)
    }
}
