import Glibc
import XCTest
@testable import SageMakerSessions

/// One request, one verdict: the first reader of a request's session keeps
/// what it found in the request's room, and every later reader (the
/// manager) answers from it, whatever changed on disk or in time between.
final class VerdictTests: TempDirectoryTestCase {
    private let t0: Double = 1_700_000_000

    /// A request's room, zeroed as the shim's context is.
    private final class Room {
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        init() { bytes.initializeMemory(as: UInt8.self, repeating: 0, count: 64) }
        deinit { bytes.deallocate() }
        var verdict: VerdictRoom { VerdictRoom(bytes) }
    }

    private func value(_ store: SessionStore, _ id: String, _ room: Room, now: Double) -> [UInt8]? {
        Array(id.utf8).withUnsafeBytes {
            SessionValue.read(store: store, id: $0, file: "tenant", now: now, verdict: room.verdict).text
        }
    }

    private func decide(_ m: SessionManager, _ body: String = "{}", id: String, _ room: Room, now: Double) -> Decision {
        Array(body.utf8).withUnsafeBytes {
            m.decide(sessionID: Array(id.utf8), body: RequestBody($0), now: now, verdict: room.verdict)
        }
    }

    /// The expired counter's growth while `body` runs.
    private func expiredCount(_ body: () throws -> Void) rethrows -> Int64 {
        var slots = [Int64](repeating: 0, count: Metrics.slots)
        try slots.withUnsafeMutableBufferPointer { buf in
            Metrics.attach(buf.baseAddress)
            defer { Metrics.attach(nil) }
            try body()
        }
        return slots[Metrics.expiredSlot]
    }

    private func answer(_ d: Decision) -> Answer? {
        if case .answer(let a) = d { return a }
        return nil
    }

    func testTheShimsRoomHoldsAVerdict() {
        // sms_verdict_t is 64 bytes: a key or a home that outgrew its place
        // would overwrite the next
        XCTAssertLessThanOrEqual(VerdictRoom.keyOffset + MemoryLayout<SessionKey>.size, VerdictRoom.expiryOffset)
        XCTAssertLessThanOrEqual(VerdictRoom.homeOffset + MemoryLayout<Home?>.size, VerdictRoom.size)
        XCTAssertEqual(VerdictRoom.size, 64)
    }

    func testASessionValidAtTheValueReadIsValidForTheManager() throws {
        let store = SessionStore(root: root, expiration: 10)
        let created = try store.create(now: t0)
        TestFS.write(store.directory(of: created.id) + "/tenant", #""t-1""#)
        let m = SessionManager(store: store, injectPath: nil), room = Room()
        XCTAssertEqual(value(store, created.id, room, now: t0 + 9), Array("t-1".utf8))
        // it expires while the request waits for its body: the request was let in
        guard case .pass = decide(m, id: created.id, room, now: t0 + 11) else { return XCTFail("not passed") }
        // a new request (a new room) finds it expired
        XCTAssertEqual(answer(decide(m, id: created.id, Room(), now: t0 + 11))?.outcome, .expired)
    }

    func testASessionRemovedAfterTheValueReadIsStillTheRequestsSession() throws {
        let store = SessionStore(root: root, expiration: 10)
        let created = try store.create(now: t0)
        let m = SessionManager(store: store, injectPath: nil), room = Room()
        XCTAssertNil(value(store, created.id, room, now: t0))
        TestFS.removeTree(store.directory(of: created.id))
        guard case .pass = decide(m, id: created.id, room, now: t0) else { return XCTFail("not passed") }
        XCTAssertEqual(answer(decide(m, id: created.id, Room(), now: t0))?.outcome, .notFound)
    }

    func testAnExpiredSessionRemovedBehindNginxIsExpiredAndCountedByNobody() throws {
        let store = SessionStore(root: root, expiration: 10)
        let created = try store.create(now: t0)
        let m = SessionManager(store: store, injectPath: nil), room = Room()
        let counted = try expiredCount {
            XCTAssertNil(value(store, created.id, room, now: t0 + 11))
            TestFS.removeTree(store.directory(of: created.id))   // another process removed it
            let a = try XCTUnwrap(answer(decide(m, id: created.id, room, now: t0 + 11)))
            XCTAssertEqual(a.outcome, .expired)
            XCTAssertEqual(a.body, #"{"detail":"Bad request: session expired: \#(created.id)"}"#)
        }
        XCTAssertEqual(counted, 0, "removed by another process, not by nginx")
    }

    func testTheManagerRemovesAndCountsAnExpiredSessionOnce() throws {
        let store = SessionStore(root: root, expiration: 10)
        let created = try store.create(now: t0)
        TestFS.write(store.directory(of: created.id) + "/tenant", #""t-1""#)
        let m = SessionManager(store: store, injectPath: nil), room = Room()
        let counted = try expiredCount {
            XCTAssertNil(value(store, created.id, room, now: t0 + 11))
            XCTAssertNil(value(store, created.id, room, now: t0 + 11))   // a second key: the same verdict
            XCTAssertTrue(FileSystem.isDirectory(store.directory(of: created.id)), "left for the manager")
            XCTAssertEqual(try XCTUnwrap(answer(decide(m, id: created.id, room, now: t0 + 11))).outcome, .expired)
        }
        XCTAssertEqual(counted, 1)
        XCTAssertFalse(FileSystem.isDirectory(store.directory(of: created.id)))
    }

    func testAClosedSessionIsNotFoundForTheManagerAsForTheValue() throws {
        let store = SessionStore(root: root, expiration: 10)
        let created = try store.create(now: t0)
        XCTAssertEqual(try store.close(created.id, now: t0), .closed)
        let m = SessionManager(store: store, injectPath: nil), room = Room()
        XCTAssertNil(value(store, created.id, room, now: t0))
        // made again under the same id meanwhile: still this request's verdict
        XCTAssertEqual(mkdir(store.directory(of: created.id), 0o700), 0)
        TestFS.write(store.directory(of: created.id) + "/.expiration_ts", String(t0 + 100))
        XCTAssertEqual(answer(decide(m, id: created.id, room, now: t0))?.outcome, .notFound)
    }

    func testAValidVerdictClosesTheSessionOnce() throws {
        let store = SessionStore(root: root, expiration: 10)
        let created = try store.create(now: t0)
        let m = SessionManager(store: store, injectPath: nil), room = Room()
        XCTAssertNil(value(store, created.id, room, now: t0 + 9))
        let close = #"{"requestType":"CLOSE"}"#
        XCTAssertEqual(answer(decide(m, close, id: created.id, room, now: t0 + 11))?.outcome, .closedBuiltin)
        XCTAssertFalse(FileSystem.isDirectory(store.directory(of: created.id)))
    }

    func testTheVerdictIsForOneIdOnly() throws {
        let store = SessionStore(root: root, expiration: 10)
        let a = try store.create(now: t0), b = try store.create(now: t0)
        let room = Room()
        XCTAssertNil(value(store, a.id, room, now: t0))
        TestFS.removeTree(store.directory(of: b.id))
        let m = SessionManager(store: store, injectPath: nil)
        XCTAssertEqual(answer(decide(m, id: b.id, room, now: t0))?.outcome, .notFound, "b looked up itself")
        // and the first verdict stays a's
        TestFS.removeTree(store.directory(of: a.id))
        guard case .pass = decide(m, id: a.id, room, now: t0) else { return XCTFail("not a's verdict") }
    }

    func testWithoutARoomEveryLookupIsTheFirst() throws {
        let store = SessionStore(root: root, expiration: 10)
        let created = try store.create(now: t0)
        let m = SessionManager(store: store, injectPath: nil)
        guard case .pass = m.decide(sessionID: Array(created.id.utf8), body: RequestBody(UnsafeRawBufferPointer(start: nil, count: 0)),
                                    now: t0, verdict: .none) else { return XCTFail() }
        TestFS.removeTree(store.directory(of: created.id))
        XCTAssertEqual(answer(m.decide(sessionID: Array(created.id.utf8), body: UnsafeRawBufferPointer(start: nil, count: 0),
                                       now: t0))?.outcome, .notFound)
    }

    func testAnEngineSessionValidAtTheValueReadGoesHomeNotToItsClose() throws {
        let store = SessionStore(root: root, expiration: 10)
        store.affinity = true
        let home = try XCTUnwrap(store.homes.intern("a:1"))
        let id = "0b5a1c9e-3f2d-4e8a-9c7b-1d2e3f4a5b6c"
        _ = try Array(id.utf8).withUnsafeBytes { try store.record(engineSession: $0, home: home, now: t0) }
        let m = SessionManager(store: store, injectPath: nil,
                               createHandler: CreateHandler(responsePath: try HandlerPath.response("body"),
                                                            defaults: try XCTUnwrap(SessionDefaults.empty)),
                               closeHandler: CloseHandler(requestPath: try HandlerPath.request("body.session_id"),
                                                          defaults: try XCTUnwrap(SessionDefaults.empty)))
        let room = Room()
        XCTAssertNil(value(store, id, room, now: t0 + 9))
        guard case .passSession(let route, nil) = decide(m, id: id, room, now: t0 + 11) else {
            return XCTFail("not sent home")
        }
        XCTAssertEqual(route, Route(kind: .engine, home: home))
        XCTAssertTrue(FileSystem.isDirectory(store.directory(of: id)), "not claimed by this request")
        // found expired first: claimed and closed at its home, once
        let later = Room()
        XCTAssertNil(value(store, id, later, now: t0 + 11))
        guard case .callEngine(.expire, _, let expiring) = decide(m, id: id, later, now: t0 + 11) else {
            return XCTFail("not closed at the engine")
        }
        XCTAssertEqual(expiring, Route(kind: .engine, home: home))
    }
}
