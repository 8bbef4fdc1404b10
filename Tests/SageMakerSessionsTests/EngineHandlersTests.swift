import XCTest
@testable import SageMakerSessions

final class HandlerPathTests: XCTestCase {
    func testResponsePaths() throws {
        XCTAssertEqual(try HandlerPath.response("body").segments, ["body"])
        XCTAssertEqual(try HandlerPath.response("body.data.id").segments, ["body", "data", "id"])
        XCTAssertEqual(try HandlerPath.response(#"headers."X-Session-Id""#).segments, ["headers", "X-Session-Id"])
        XCTAssertEqual(try HandlerPath.response("status_code").segments, ["status_code"])
        for bad in ["", "data.id", "session_id", "body..x", #""body"x"#, "headers.", ".body"] {
            XCTAssertThrowsError(try HandlerPath.response(bad), bad)
        }
    }

    func testRequestPathsAreInsideTheBody() throws {
        XCTAssertEqual(try HandlerPath.request("body.session_id").segments, ["session_id"])
        XCTAssertEqual(try HandlerPath.request("body.metadata.session_id").segments, ["metadata", "session_id"])
        for bad in ["", "body", "session_id", "headers.x", "body.", "body..x"] {
            XCTAssertThrowsError(try HandlerPath.request(bad), bad) { error in
                XCTAssertFalse("\(error)".isEmpty)
            }
        }
        XCTAssertThrowsError(try HandlerPath.request("headers.x")) { error in
            XCTAssertEqual("\(error)", #"the path must start with "body.""#)
        }
    }
}

final class EngineResponseTests: XCTestCase {
    func id(_ path: String, body: String, headers: [(String, String)] = [], status: Int = 200) throws -> String? {
        var body = body
        return try body.withUTF8 { buf in
            EngineResponse(complete: true, status: status, headers: headers.map { (name: $0.0, value: $0.1) },
                           body: UnsafeRawBufferPointer(buf))
                .sessionID(at: try HandlerPath.response(path))
        }
    }

    func testBodyPaths() throws {
        XCTAssertEqual(try id("body", body: #""3f2a9c0b""#), "3f2a9c0b")
        XCTAssertEqual(try id("body", body: "raw-text-id"), "raw-text-id")
        XCTAssertEqual(try id("body.session_id", body: #"{"session_id": "s1", "x": 1}"#), "s1")
        XCTAssertEqual(try id("body.data.id", body: #"{"data": {"id": "nested"}}"#), "nested")
        XCTAssertEqual(try id("body.id", body: #"{"id": 12345}"#), "12345")
        XCTAssertEqual(try id("body.id", body: #"{"id": 12345.0}"#), "12345")
        XCTAssertEqual(try id("body.id", body: #"{"id": 9007199254740993}"#), "9007199254740993")
        XCTAssertEqual(try id("body.id", body: #"{"id": 1.5}"#), "1.5")
        XCTAssertEqual(try id("body", body: "42"), "42")
    }

    func testMissingOrUnusableIDs() throws {
        XCTAssertNil(try id("body.session_id", body: #"{"other": "x"}"#))
        XCTAssertNil(try id("body.session_id", body: #"{"session_id": ""}"#))
        XCTAssertNil(try id("body.session_id", body: #"{"session_id": null}"#))
        XCTAssertNil(try id("body.session_id", body: #"{"session_id": {"a": 1}}"#))
        XCTAssertNil(try id("body.session_id", body: #"{"session_id": true}"#))
        XCTAssertNil(try id("body", body: ""))
        XCTAssertNil(try id("body.session_id", body: "not json"))
        XCTAssertNil(try id("body.Session_Id", body: #"{"session_id": "s"}"#), "body keys match exactly")
    }

    func testHeaderNamesMatchWhateverTheirCase() throws {
        let headers = [("Content-Type", "application/json"), ("X-Session-Id", "h1")]
        XCTAssertEqual(try id(#"headers."X-Session-Id""#, body: "", headers: headers), "h1")
        XCTAssertEqual(try id("headers.X-Session-Id", body: "", headers: headers), "h1")
        XCTAssertEqual(try id("headers.x-session-id", body: "", headers: headers), "h1")
        XCTAssertEqual(try id("headers.X-SESSION-ID", body: "", headers: headers), "h1")
        XCTAssertNil(try id("headers.X-Other", body: "", headers: headers))
        XCTAssertEqual(try id("headers.content-type", body: "", headers: headers), "application/json")
    }

    func testStatusCode() throws {
        XCTAssertEqual(try id("status_code", body: ""), "200")
    }

    func testHeaderSafety() {
        XCTAssertTrue(HeaderValue.isSafe("3f2a9c0b5d"))
        XCTAssertTrue(HeaderValue.isSafe(String(repeating: "a", count: 256)))
        XCTAssertFalse(HeaderValue.isSafe(String(repeating: "a", count: 257)))
        XCTAssertFalse(HeaderValue.isSafe(""))
        XCTAssertFalse(HeaderValue.isSafe("a\r\nSet-Cookie: x"))
        XCTAssertFalse(HeaderValue.isSafe("a\u{0}b"))
        XCTAssertFalse(HeaderValue.isSafe("tab\there"))
        XCTAssertFalse(HeaderValue.isSafe("del\u{7f}"))
    }
}

final class EngineManagerTests: TempDirectoryTestCase {
    let newSession = #"{"requestType":"NEW_SESSION"}"#
    let closeSession = #"{"requestType":"CLOSE"}"#

    func manager(create: String? = "body.session_id", close: String? = "body.session_id",
                 createDefaults: String = "{}", closeDefaults: String = "{}",
                 inject: String? = nil, store: Bool = false) throws -> SessionManager {
        SessionManager(
            store: store ? SessionStore(root: root, expiration: 1200) : nil,
            injectPath: try inject.map { try JSONPath(parsing: $0) },
            createHandler: try create.map { CreateHandler(responsePath: try HandlerPath.response($0),
                                                          defaults: try SessionDefaults(parsing: createDefaults)) },
            closeHandler: try close.map { CloseHandler(requestPath: try HandlerPath.request($0),
                                                       defaults: try SessionDefaults(parsing: closeDefaults)) })
    }

    func decide(_ m: SessionManager, _ body: String, id: String? = nil) -> Decision {
        return m.decide(sessionID: id.map { Array($0.utf8) }, body: kept(body), now: 1_700_000_000)
    }

    func engineBody(_ d: Decision, _ call: EngineCall) -> String? {
        guard case .callEngine(let c, let body, _) = d, c == call else { return nil }
        return body.dumped()
    }

    func answer(_ m: SessionManager, _ call: EngineCall, id: String? = nil, status: Int = 200,
                body: String = "", complete: Bool = true) -> Decision {
        var body = body
        return body.withUTF8 {
            m.answer(call, sessionID: id.map { Array($0.utf8) },
                     response: EngineResponse(complete: complete, status: status, headers: [], body: UnsafeRawBufferPointer($0)))
        }
    }

    func testNewSessionCallsTheEngineWithTheDefaults() throws {
        XCTAssertEqual(engineBody(decide(try manager(), newSession), .create), "{}")
        let m = try manager(createDefaults: #"{"body.capacity_of_str_len": 1024}"#)
        XCTAssertEqual(engineBody(decide(m, newSession, id: "ignored"), .create), #"{"capacity_of_str_len":1024}"#)
    }

    func testCloseWritesTheIDAfterTheDefaults() throws {
        let m = try manager(close: "body.meta.session_id",
                            closeDefaults: #"{"body.force": true, "body.meta.session_id": "default", "body.meta.k": 1}"#)
        XCTAssertEqual(engineBody(decide(m, closeSession, id: "engine-id-1"), .close),
                       #"{"force":true,"meta":{"session_id":"engine-id-1","k":1}}"#)
    }

    func testCloseNeedsTheHeader() throws {
        for id in [nil, ""] as [String?] {
            guard case .answer(let a) = decide(try manager(), closeSession, id: id) else { return XCTFail() }
            XCTAssertEqual(a.status, 400)
            XCTAssertEqual(a.body, #"{"detail":"Session ID is required in request headers to close a session"}"#)
        }
    }

    func testCloseWithAnIDThatIsNotUTF8Is400() throws {
        let m = try manager()
        var body = closeSession
        let d = body.withUTF8 { m.decide(sessionID: [0xff, 0xfe], body: UnsafeRawBufferPointer($0)) }
        guard case .answer(let a) = d else { return XCTFail() }
        XCTAssertEqual(a.status, 400)
    }

    func testInvocationsAreNotCheckedButStillInjected() throws {
        let m = try manager(inject: "session_params.id")
        let text = kept(#"{"text": "hi"}"#)
        let decision = m.decide(sessionID: Array("any-engine-id".utf8), body: text, now: 1_700_000_000)
        guard case .passWithBody = decision else { return XCTFail() }
        XCTAssertEqual(m.spliced(decision, body: text, id: "any-engine-id")?.dumped(), #"{"text":"hi","session_params":{"id":"any-engine-id"}}"#)
        guard case .pass = decide(m, #"{"text": "hi"}"#) else { return XCTFail() }
        guard case .pass = decide(m, #"{"text": "hi"}"#, id: "") else { return XCTFail() }
        guard case .pass = decide(try manager(), "binary", id: "x") else { return XCTFail() }
    }

    func testARequestTypeWithoutHandlerFallsBackToTheBuiltInManager() throws {
        let onlyCreate = try manager(close: nil, store: true)
        guard case .answer(let closed) = decide(onlyCreate, closeSession, id: "0f8fad5b-d9cb-469f-a165-70867728950e") else { return XCTFail() }
        XCTAssertEqual(closed.body, #"{"detail":"Bad request: session not found: 0f8fad5b-d9cb-469f-a165-70867728950e"}"#)
        let onlyClose = try manager(create: nil, store: true)
        guard case .answer(let created) = decide(onlyClose, newSession) else { return XCTFail() }
        XCTAssertEqual(created.status, 200)
        XCTAssertTrue(created.header?.value.contains("; Expires=") == true)
        let disabled = try manager(create: nil, store: false)
        guard case .answer(let refused) = decide(disabled, newSession) else { return XCTFail() }
        XCTAssertEqual(refused.body, #"{"detail":"Invalid payload. stateful sessions not enabled"}"#)
    }

    func testCreateAnswers() throws {
        let m = try manager()
        guard case .answer(let ok) = answer(m, .create, body: #"{"session_id": "e-1"}"#) else { return XCTFail() }
        XCTAssertEqual(ok.status, 200)
        XCTAssertEqual(ok.header?.name, "X-Amzn-SageMaker-New-Session-Id")
        XCTAssertEqual(ok.header?.value, "e-1")
        XCTAssertEqual(ok.body, "Successfully created session: e-1")

        guard case .answer(let missing) = answer(m, .create, body: "{}") else { return XCTFail() }
        XCTAssertEqual(missing.status, 500)
        XCTAssertEqual(missing.body, #"{"detail":"Session ID not found in response"}"#)

        guard case .answer(let unsafe) = answer(m, .create, body: #"{"session_id": "a\r\nb"}"#) else { return XCTFail() }
        XCTAssertEqual(unsafe.status, 500)
        guard case .answer(let long) = answer(m, .create, body: "{\"session_id\": \"\(String(repeating: "x", count: 300))\"}") else { return XCTFail() }
        XCTAssertEqual(long.status, 500)

        guard case .relay = answer(m, .create, status: 422, body: #"{"detail": []}"#) else { return XCTFail() }
        guard case .relay = answer(m, .create, status: 201, body: #"{"session_id": "e-1"}"#) else { return XCTFail() }
        guard case .answer(let cut) = answer(m, .create, body: #"{"session_id": "e-1"}"#, complete: false) else { return XCTFail() }
        XCTAssertEqual(cut.status, 502)
        XCTAssertEqual(cut.log?.level, .error)
    }

    func testCloseAnswers() throws {
        let m = try manager()
        guard case .answer(let ok) = answer(m, .close, id: "e-1") else { return XCTFail() }
        XCTAssertEqual(ok.status, 200)
        XCTAssertEqual(ok.header?.name, "X-Amzn-SageMaker-Closed-Session-Id")
        XCTAssertEqual(ok.header?.value, "e-1")
        XCTAssertEqual(ok.body, "Successfully closed session: e-1")
        guard case .relay = answer(m, .close, id: "e-1", status: 404) else { return XCTFail() }
    }
}
