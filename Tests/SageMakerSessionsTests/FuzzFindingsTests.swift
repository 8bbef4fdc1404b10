import XCTest
@testable import SageMakerSessions

/// Each test here reproduces a wrong answer the fuzz targets (Tests/Fuzz)
/// found; the input that found it is a seed in Tests/Fuzz/corpus/<target>/found-*.
final class FuzzFindingsTests: XCTestCase {
    // MARK: a raw NUL byte after a number or a literal (corpus/classify/found-raw-nul)

    /// jansson's reader skips a raw NUL that follows a number or a literal,
    /// so it read `{"a": 1\0}` as `{"a": 1}`. No raw NUL is valid JSON.
    func testRawNULAfterANumberOrLiteralIsNotJSON() {
        for bytes: [UInt8] in [
            Array(#"{"a": 1"#.utf8) + [0] + Array("}".utf8),
            Array("[true".utf8) + [0] + Array("]".utf8),
            Array("[1,".utf8) + [0] + Array(" 2]".utf8),
        ] {
            XCTAssertNil(JSON.parsing(bytes), "\(bytes)")
            let segments = bytes.withUnsafeBytes { b in
                RequestBody(segments: [UnsafeRawBufferPointer(rebasing: b[..<2]), UnsafeRawBufferPointer(rebasing: b[2...])])
                    .parse()
            }
            XCTAssertNil(segments, "\(bytes), in two buffers")
        }
    }

    /// Such a body is not JSON, so it is an ordinary invocation, not a
    /// malformed session request (which would be a 400).
    func testABodyWithARawNULIsAnInvocation() {
        let body = Array(#"{"requestType": "CLOSE", "n": 1"#.utf8) + [0] + Array("}".utf8)
        guard case .invocation = body.withUnsafeBytes({ SessionRequest.classify($0) }) else {
            return XCTFail("classified as a session request")
        }
        let manager = SessionManager(store: nil, injectPath: nil)
        guard case .pass = manager.decide(sessionID: nil, body: RequestBody(kept(body)), now: 0) else {
            return XCTFail("not passed to the engine")
        }
    }

    func testDefaultsWithARawNULAreRefused() {
        XCTAssertThrowsError(try SessionDefaults(parsing: "{\"body.a\": 1\u{0}}")) { error in
            XCTAssertTrue("\(error)".contains("NUL"), "\(error)")
        }
    }

    // MARK: a path key holding NUL, which jansson cannot set ("out of memory" before)

    func testAQuotedPathSegmentHoldingNULIsRefused() {
        XCTAssertThrowsError(try JSONPath(parsing: "\"a\u{0}b\"")) { error in
            XCTAssertEqual(error as? JSONPath.ParseError, .unexpected("\u{0}", at: 2))
        }
        XCTAssertThrowsError(try JSONPath(parsing: "x.\"a\\\u{0}\"")) { error in
            XCTAssertEqual(error as? JSONPath.ParseError, .unexpected("\u{0}", at: 5))
        }
        XCTAssertThrowsError(try JSONPath(parsing: "a\u{0}b"))   // bare: refused as before
    }

    // MARK: paths read by grapheme cluster (corpus/jsonpath/found-combining-mark)

    /// A combining mark right after a quote or a dot formed one `Character`
    /// with it, hiding the quote or dot from the path parser.
    func testCombiningMarksDoNotHideQuotesOrDots() throws {
        XCTAssertEqual(try JSONPath(parsing: "\"\u{301}a.b\"").segments, ["\u{301}a.b"])
        XCTAssertEqual(try JSONPath(parsing: "a.\u{301}b").segments, ["a", "\u{301}b"])
        XCTAssertThrowsError(try JSONPath(parsing: "\"x\"\u{301}")) { error in
            XCTAssertEqual(error as? JSONPath.ParseError, .unexpected("\u{301}", at: 3))
        }
    }

    func testAnySegmentsPrintAsAPathThatReadsBack() throws {
        for segments in [["\u{65D}\"o}\u{FFFD}"], ["\u{301}"], ["a.b", "\u{301}c"], ["\"\u{301}"], ["x\\\u{301}y"]] {
            let printed = JSONPath(segments: segments).description
            let reread = try JSONPath(parsing: printed)
            XCTAssertEqual(reread.utf8, segments.map { Array($0.utf8) }, printed)
        }
    }

    // MARK: keys matched by canonical equivalence (corpus/engine_response/found-canonical-equivalence)

    /// `String ==` treats "cafe\u{301}" and "caf\u{e9}" as equal; JSON keys
    /// (and the spec's "body keys match exactly") are bytes.
    func testResponseKeysMatchByteForByte() throws {
        var body = Array("{\"cafe\u{301}\": \"decomposed\", \"caf\u{e9}\": \"precomposed\"}".utf8)
        let id = try body.withUnsafeMutableBytes { buf in
            EngineResponse(complete: true, status: 200, headers: [], body: UnsafeRawBufferPointer(buf))
                .sessionID(at: try HandlerPath.response("body.caf\u{e9}"))
        }
        XCTAssertEqual(id.map { Array($0.utf8) }, Array("precomposed".utf8))
        let header = EngineResponse(complete: true, status: 200, headers: [(name: "X-Caf\u{e9}", value: "h")],
                                    body: UnsafeRawBufferPointer(start: nil, count: 0))
        XCTAssertNil(header.sessionID(at: try HandlerPath.response("headers.x-cafe\u{301}")))
        XCTAssertEqual(header.sessionID(at: try HandlerPath.response("headers.x-caf\u{e9}")), "h")
    }
}
