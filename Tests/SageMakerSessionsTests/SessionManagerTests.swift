import Glibc
import XCTest
@testable import SageMakerSessions

final class SessionManagerTests: TempDirectoryTestCase {
    private let t0: Double = 1_700_000_000
    private let newSession = #"{"requestType":"NEW_SESSION"}"#
    private let closeSession = #"{"requestType":"CLOSE"}"#
    private let unknownID = "0f8fad5b-d9cb-469f-a165-70867728950e"

    private func manager(enabled: Bool = true, inject: String? = nil) throws -> SessionManager {
        SessionManager(store: enabled ? SessionStore(root: root, expiration: 1200) : nil,
                       injectPath: try inject.map { try JSONPath(parsing: $0) })
    }

    private func answer(_ decision: Decision, file: StaticString = #filePath, line: UInt = #line) -> Answer? {
        guard case .answer(let answer) = decision else {
            XCTFail("expected an answer, got \(decision)", file: file, line: line)
            return nil
        }
        return answer
    }

    private func isPass(_ decision: Decision) -> Bool {
        if case .pass = decision { return true }
        return false
    }

    private func passedBody(_ m: SessionManager, _ id: String, _ body: String, now: Double,
                            file: StaticString = #filePath, line: UInt = #line) -> String? {
        let bytes = kept(body)
        let decision = m.decide(sessionID: Array(id.utf8), body: bytes, now: now)
        guard case .passWithBody = decision, let pieces = m.spliced(decision, body: bytes, id: id) else {
            XCTFail("expected passWithBody, got \(decision)", file: file, line: line)
            return nil
        }
        return pieces.dumped()
    }

    /// FastAPI's error form, checked byte for byte.
    private func assertError(_ decision: Decision, _ status: Int, _ detailJSON: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        guard let a = answer(decision, file: file, line: line) else { return }
        XCTAssertEqual(a.status, status, file: file, line: line)
        XCTAssertEqual(a.contentType, "application/json", file: file, line: line)
        XCTAssertEqual(a.body, "{\"detail\":\"\(detailJSON)\"}", file: file, line: line)
        XCTAssertNil(a.header?.name, file: file, line: line)
        XCTAssertEqual(JSON.parse(a.body)?.keys, ["detail"], file: file, line: line)
    }

    /// Creates a session through the manager and returns its id.
    private func createSession(_ m: SessionManager, now: Double) throws -> String {
        let a = try XCTUnwrap(answer(m.decide(header: nil, body: newSession, now: now)))
        let value = try XCTUnwrap(a.header?.value)
        return String(value.prefix(36))
    }

    // MARK: NEW_SESSION

    func testNewSession() throws {
        let m = try manager()
        let a = try XCTUnwrap(answer(m.decide(header: nil, body: newSession, now: t0)))
        XCTAssertEqual(a.status, 200)
        XCTAssertEqual(a.contentType, "text/plain; charset=utf-8")
        XCTAssertEqual(a.header?.name, "X-Amzn-SageMaker-New-Session-Id")
        let value = try XCTUnwrap(a.header?.value)
        let id = String(value.prefix(36))
        XCTAssertTrue(SessionID.isCanonical(id), value)
        XCTAssertEqual(value, "\(id); Expires=2023-11-14T22:33:20Z")
        XCTAssertEqual(a.body, "Session \(id) created")
        XCTAssertEqual(TestFS.entries(root), [id])
        XCTAssertEqual(TestFS.read(root + "/" + id + "/.expiration_ts"), "1700001200.000000")
        XCTAssertEqual(a.log?.level, .info)
    }

    func testNewSessionWithSessionHeaderStillCreates() throws {
        let m = try manager()
        let existing = try createSession(m, now: t0)
        for header in [existing, unknownID, "../x", ""] {
            let a = try XCTUnwrap(answer(m.decide(header: header, body: newSession, now: t0)))
            XCTAssertEqual(a.status, 200)
            let id = String(try XCTUnwrap(a.header?.value).prefix(36))
            XCTAssertNotEqual(id, existing)
            XCTAssertNotEqual(id, header)
            XCTAssertEqual(a.body, "Session \(id) created")
        }
        XCTAssertEqual(TestFS.entries(root).count, 5)
    }

    func testNewSessionStoreFailure() throws {
        XCTAssertTrue(TestFS.write(root + "/file", "x"))
        let m = SessionManager(store: SessionStore(root: root + "/file/sessions", expiration: 1200), injectPath: nil)
        assertError(m.decide(header: nil, body: newSession, now: t0), 424,
                    "Failed to create session: Not a directory")
        let a = try XCTUnwrap(answer(m.decide(header: nil, body: newSession, now: t0)))
        XCTAssertEqual(a.log?.level, .error)
    }

    func testNewSessionAfterRootIsRemovedMakesItAgain() throws {
        let m = try manager()
        TestFS.removeTree(root)
        let a = try XCTUnwrap(answer(m.decide(header: nil, body: newSession, now: t0)))
        XCTAssertEqual(a.status, 200)
        XCTAssertEqual(a.log?.level, .warn)
        XCTAssertEqual(TestFS.entries(root).count, 1)
        let again = try XCTUnwrap(answer(m.decide(header: nil, body: newSession, now: t0)))
        XCTAssertEqual(again.log?.level, .info)
    }

    // MARK: CLOSE

    func testCloseValidSession() throws {
        let m = try manager()
        let id = try createSession(m, now: t0)
        let a = try XCTUnwrap(answer(m.decide(header: id, body: closeSession, now: t0 + 10)))
        XCTAssertEqual(a.status, 200)
        XCTAssertEqual(a.contentType, "text/plain; charset=utf-8")
        XCTAssertEqual(a.header?.name, "X-Amzn-SageMaker-Closed-Session-Id")
        XCTAssertEqual(a.header?.value, id)
        XCTAssertEqual(a.body, "Session \(id) closed")
        XCTAssertEqual(TestFS.entries(root), [])
        // A second close finds nothing.
        assertError(m.decide(header: id, body: closeSession, now: t0 + 10), 400,
                    "Bad request: session not found: \(id)")
    }

    func testCloseWithoutHeader() throws {
        let m = try manager()
        let detail = "Session ID is required in request headers to close a session"
        assertError(m.decide(header: nil, body: closeSession, now: t0), 400, detail)
        assertError(m.decide(header: "", body: closeSession, now: t0), 400, detail)
    }

    func testCloseUnknownSession() throws {
        let m = try manager()
        assertError(m.decide(header: unknownID, body: closeSession, now: t0), 400,
                    "Bad request: session not found: \(unknownID)")
        assertError(m.decide(header: "../x", body: closeSession, now: t0), 400,
                    "Bad request: session not found: ../x")
    }

    func testCloseExpiredSession() throws {
        let m = try manager()
        let id = try createSession(m, now: t0)
        assertError(m.decide(header: id, body: closeSession, now: t0 + 1201), 400,
                    "Bad request: session expired: \(id)")
        XCTAssertEqual(TestFS.entries(root), [])
    }

    func testCloseStoreFailure() throws {
        let m = try manager()
        // A `.expiration_ts` that cannot be opened at all: a socket.
        let id = "11111111-2222-4333-8444-555555555555"
        XCTAssertTrue(TestFS.mkdir(root + "/" + id))
        let socket = TestFS.bindSocket(root + "/" + id + "/.expiration_ts")
        defer { close(socket) }
        assertError(m.decide(header: id, body: closeSession, now: t0), 424,
                    "Failed to close session: No such device or address")
        assertError(m.decide(header: id, body: "{}", now: t0), 424,
                    "Failed to read session: No such device or address")
    }

    // MARK: invocations

    func testInvocationWithValidSessionPasses() throws {
        let m = try manager()
        let id = try createSession(m, now: t0)
        XCTAssertTrue(isPass(m.decide(header: id, body: #"{"inputs":"hi"}"#, now: t0 + 1)))
        XCTAssertTrue(isPass(m.decide(header: id, body: "not json at all", now: t0 + 1)))
        XCTAssertTrue(isPass(m.decide(header: id, body: "", now: t0 + 1)))
        XCTAssertEqual(TestFS.entries(root), [id])
    }

    func testInvocationWithoutHeaderPasses() throws {
        let m = try manager()
        XCTAssertTrue(isPass(m.decide(header: nil, body: #"{"inputs":"hi"}"#, now: t0)))
        XCTAssertTrue(isPass(m.decide(header: nil, body: "a,b,c\n", now: t0)))
        XCTAssertTrue(isPass(m.decide(header: nil, body: "", now: t0)))
        XCTAssertTrue(isPass(m.decide(header: "", body: #"{"inputs":"hi"}"#, now: t0)))
    }

    func testNonJSONBodyWithoutHeaderPassesEvenWithInjection() throws {
        let m = try manager(inject: "session_id")
        XCTAssertTrue(isPass(m.decide(header: nil, body: "\u{89}PNG binary", now: t0)))
        XCTAssertTrue(isPass(m.decide(header: nil, body: "[1,2]", now: t0)))
    }

    func testInvocationWithUnknownSession() throws {
        let m = try manager()
        assertError(m.decide(header: unknownID, body: #"{"inputs":"hi"}"#, now: t0), 400,
                    "Bad request: session not found: \(unknownID)")
        assertError(m.decide(header: "../etc", body: "x", now: t0), 400,
                    "Bad request: session not found: ../etc")
    }

    func testInvocationWithHeaderNeedingEscapes() throws {
        let m = try manager()
        assertError(m.decide(header: "a\"b\\c\nd", body: "x", now: t0), 400,
                    #"Bad request: session not found: a\"b\\c\nd"#)
        let a = try XCTUnwrap(answer(Array("x".utf8).withUnsafeBytes {
            m.decide(sessionID: [0x61, 0xff, 0x00], body: $0, now: t0)
        }))
        XCTAssertEqual(a.status, 400)
        XCTAssertEqual(a.body, "{\"detail\":\"Bad request: session not found: a\u{FFFD}\\u0000\"}")
    }

    func testInvocationWithExpiredSession() throws {
        let m = try manager()
        let id = try createSession(m, now: t0)
        assertError(m.decide(header: id, body: "{}", now: t0 + 1200.5), 400,
                    "Bad request: session expired: \(id)")
        XCTAssertEqual(TestFS.entries(root), [])
        // Rejected every time, never let through.
        assertError(m.decide(header: id, body: "{}", now: t0 + 1200.5), 400,
                    "Bad request: session not found: \(id)")
    }

    func testInvocationWithClosedSession() throws {
        let m = try manager()
        let id = try createSession(m, now: t0)
        _ = m.decide(header: id, body: closeSession, now: t0 + 1)
        assertError(m.decide(header: id, body: "{}", now: t0 + 2), 400, "Bad request: session not found: \(id)")
    }

    func testInvocationWithSessionWrittenByPython() throws {
        let m = try manager()
        let id = "11111111-2222-4333-8444-555555555555"
        XCTAssertTrue(TestFS.mkdir(root + "/" + id))
        XCTAssertTrue(TestFS.write(root + "/" + id + "/.expiration_ts", "1700000100.5"))
        XCTAssertTrue(isPass(m.decide(header: id, body: "{}", now: t0)))
        TestFS.removeTree(root + "/" + id)
        assertError(m.decide(header: id, body: "{}", now: t0), 400, "Bad request: session not found: \(id)")
    }

    // MARK: injection

    func testInjectionAtNestedPath() throws {
        let m = try manager(inject: "metadata.session_id")
        let id = try createSession(m, now: t0)
        XCTAssertEqual(passedBody(m, id, #"{"inputs":"hi"}"#, now: t0 + 1),
                       "{\"inputs\":\"hi\",\"metadata\":{\"session_id\":\"\(id)\"}}")
        XCTAssertEqual(passedBody(m, id, #"{"metadata":{"x":1}}"#, now: t0 + 1),
                       "{\"metadata\":{\"x\":1,\"session_id\":\"\(id)\"}}")
        XCTAssertEqual(passedBody(m, id, #"{"metadata":{"session_id":"forged"}}"#, now: t0 + 1),
                       "{\"metadata\":{\"session_id\":\"\(id)\"}}")
    }

    func testInjectionIntoBodyThatMentionsRequestTypeNested() throws {
        let m = try manager(inject: "session_id")
        let id = try createSession(m, now: t0)
        XCTAssertEqual(passedBody(m, id, #"{"opts":{"requestType":"CLOSE"}}"#, now: t0 + 1),
                       "{\"opts\":{\"requestType\":\"CLOSE\"},\"session_id\":\"\(id)\"}")
    }

    func testInjectionIntoNonObjectBody() throws {
        let m = try manager(inject: "metadata.session_id")
        let id = try createSession(m, now: t0)
        let detail = #"Bad request: the body must be a JSON object to carry the session id at \"metadata.session_id\""#
        for body in ["[1,2]", "\"text\"", "42", "not json", "", #"{"a":1"#] {
            assertError(m.decide(header: id, body: body, now: t0 + 1), 400, detail)
        }
    }

    /// Too deep for jansson is not a session request (it cannot be read as
    /// one): without a session header it passes; with one, the id cannot be
    /// written and the 400 says why.
    func testInjectionIntoBodyNestedTooDeep() throws {
        let m = try manager(inject: "session_id")
        let id = try createSession(m, now: t0)
        let deep = String(repeating: #"{"a":"#, count: 100_000) + "1" + String(repeating: "}", count: 100_000)
        let deepRequest = #"{"requestType":"NEW_SESSION","x":"# + String(repeating: "[", count: 100_000)
            + String(repeating: "]", count: 100_000) + "}"
        for body in [deep, deepRequest] {
            assertError(m.decide(header: id, body: body, now: t0 + 1), 400,
                        #"Bad request: the body is nested more than 2048 levels deep: cannot write the session id at \"session_id\""#)
            XCTAssertTrue(isPass(m.decide(header: nil, body: body, now: t0 + 1)))
        }
        XCTAssertEqual(TestFS.entries(root), [id])
    }

    func testInjectionBlockedByNonObject() throws {
        let m = try manager(inject: "metadata.session_id")
        let id = try createSession(m, now: t0)
        assertError(m.decide(header: id, body: #"{"metadata":"str"}"#, now: t0 + 1), 400,
                    #"Bad request: cannot write the session id at \"metadata.session_id\": \"metadata\" is not an object"#)
    }

    func testNoInjectionWithoutValidSession() throws {
        let m = try manager(inject: "session_id")
        assertError(m.decide(header: unknownID, body: "{}", now: t0), 400,
                    "Bad request: session not found: \(unknownID)")
        XCTAssertTrue(isPass(m.decide(header: nil, body: "{}", now: t0)))
    }

    // MARK: malformed session requests

    func testMalformedSessionRequest() throws {
        let m = try manager()
        assertError(m.decide(header: nil, body: #"{"requestType":"OPEN"}"#, now: t0), 400,
                    #"Invalid session request: requestType must be \"NEW_SESSION\" or \"CLOSE\", not \"OPEN\""#)
        assertError(m.decide(header: nil, body: #"{"requestType":"NEW_SESSION","x":1}"#, now: t0), 400,
                    #"Invalid session request: unexpected key \"x\" besides \"requestType\""#)
        XCTAssertEqual(TestFS.entries(root), [])
    }

    // MARK: sessions disabled

    func testDisabled() throws {
        let m = try manager(enabled: false)
        let detail = "Invalid payload. stateful sessions not enabled"
        assertError(m.decide(header: nil, body: newSession, now: t0), 400, detail)
        assertError(m.decide(header: unknownID, body: closeSession, now: t0), 400, detail)
        assertError(m.decide(header: nil, body: closeSession, now: t0), 400, detail)
        assertError(m.decide(header: unknownID, body: #"{"inputs":"hi"}"#, now: t0), 400, detail)
        assertError(m.decide(header: unknownID, body: "not json", now: t0), 400, detail)
    }

    func testDisabledInvocationWithoutHeaderPasses() throws {
        let m = try manager(enabled: false, inject: "session_id")
        XCTAssertTrue(isPass(m.decide(header: nil, body: #"{"inputs":"hi"}"#, now: t0)))
        XCTAssertTrue(isPass(m.decide(header: nil, body: "not json", now: t0)))
        XCTAssertTrue(isPass(m.decide(header: nil, body: "", now: t0)))
    }

    // MARK: error answers

    func testErrorAnswersAreFastAPIJSON() {
        let cases: [(SessionError, Int, String)] = [
            (.disabled, 400, #"{"detail":"Invalid payload. stateful sessions not enabled"}"#),
            (.missingSessionID, 400, #"{"detail":"Session ID is required in request headers to close a session"}"#),
            (.notFound("x"), 400, #"{"detail":"Bad request: session not found: x"}"#),
            (.expired("x"), 400, #"{"detail":"Bad request: session expired: x"}"#),
            (.createFailed(SystemError(ENOSPC)), 424, #"{"detail":"Failed to create session: No space left on device"}"#),
            (.closeFailed(SystemError(EACCES)), 424, #"{"detail":"Failed to close session: Permission denied"}"#),
            (.outOfMemory, 500, #"{"detail":"Internal Server Error"}"#),
        ]
        for (error, status, body) in cases {
            let a = error.answer
            XCTAssertEqual(a.status, status, "\(error)")
            XCTAssertEqual(a.contentType, "application/json", "\(error)")
            XCTAssertEqual(a.body, body, "\(error)")
            XCTAssertNil(a.header?.name)
        }
    }
}

final class RepeatedHeaderTests: TempDirectoryTestCase {
    func testARepeatedSessionHeaderIsRefusedWhereItCounts() throws {
        let m = SessionManager(store: SessionStore(root: root, expiration: 1200), injectPath: nil)
        let id = Array("0f8fad5b-d9cb-469f-a165-70867728950e".utf8)
        for body in [#"{"prompt":"x"}"#, #"{"requestType":"CLOSE"}"#, "binary"] {
            guard case .answer(let a) = m.decide(sessionID: id, body: RequestBody(kept(body)), repeatedHeader: true) else {
                return XCTFail(body)
            }
            XCTAssertEqual(a.status, 400)
            XCTAssertEqual(a.body, #"{"detail":"Bad request: more than one X-Amzn-SageMaker-Session-Id header"}"#)
        }
        guard case .answer(let created) = m.decide(sessionID: id, body: RequestBody(kept(#"{"requestType":"NEW_SESSION"}"#)),
                                                   repeatedHeader: true) else { return XCTFail() }
        XCTAssertEqual(created.status, 200)
    }
}
