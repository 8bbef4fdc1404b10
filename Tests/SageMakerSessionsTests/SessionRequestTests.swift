import Glibc
import XCTest
@testable import SageMakerSessions

final class SessionRequestTests: XCTestCase {
    private enum Kind: Equatable {
        case newSession, close, malformed(String), invocation(parsedDump: String?)
    }

    private func kind(_ body: String) -> Kind { kind(Array(body.utf8)) }

    private func kind(_ bytes: [UInt8]) -> Kind {
        switch bytes.withUnsafeBytes({ SessionRequest.classify($0) }) {
        case .newSession: return .newSession
        case .close: return .close
        case .malformed(let detail): return .malformed(detail)
        case .invocation(let parsed): return .invocation(parsedDump: parsed.map { $0.dumped() ?? "<undumpable>" })
        }
    }

    // MARK: session requests

    func testNewSession() {
        XCTAssertEqual(kind(#"{"requestType":"NEW_SESSION"}"#), .newSession)
    }

    func testClose() {
        XCTAssertEqual(kind(#"{"requestType":"CLOSE"}"#), .close)
    }

    func testWhitespaceAround() {
        XCTAssertEqual(kind(" \r\n\t{ \"requestType\" :\n \"NEW_SESSION\" } \n"), .newSession)
        XCTAssertEqual(kind("\n{\"requestType\":\"CLOSE\"}\n"), .close)
    }

    func testEscapedKeyAndValue() {
        XCTAssertEqual(kind(#"{"request\u0054ype":"NEW_SESSION"}"#), .newSession)
        XCTAssertEqual(kind(#"{"\u0072\u0065\u0071\u0075\u0065\u0073\u0074\u0054\u0079\u0070\u0065":"\u0043LOSE"}"#), .close)
    }

    func testDuplicateKeyLastWins() {
        XCTAssertEqual(kind(#"{"requestType":"CLOSE","requestType":"NEW_SESSION"}"#), .newSession)
    }

    // MARK: malformed

    func testOtherValueIsMalformed() {
        XCTAssertEqual(kind(#"{"requestType":"OPEN"}"#),
                       .malformed(#"Invalid session request: requestType must be "NEW_SESSION" or "CLOSE", not "OPEN""#))
        XCTAssertEqual(kind(#"{"requestType":"new_session"}"#),
                       .malformed(#"Invalid session request: requestType must be "NEW_SESSION" or "CLOSE", not "new_session""#))
        XCTAssertEqual(kind(#"{"requestType":""}"#),
                       .malformed(#"Invalid session request: requestType must be "NEW_SESSION" or "CLOSE", not """#))
    }

    func testNonStringValueIsMalformed() {
        let expected = Kind.malformed(#"Invalid session request: requestType must be a string, "NEW_SESSION" or "CLOSE""#)
        for value in ["1", "null", "true", "[\"NEW_SESSION\"]", "{}"] {
            XCTAssertEqual(kind("{\"requestType\":\(value)}"), expected, value)
        }
    }

    func testExtraKeyIsMalformed() {
        XCTAssertEqual(kind(#"{"requestType":"NEW_SESSION","capacity":3}"#),
                       .malformed(#"Invalid session request: unexpected key "capacity" besides "requestType""#))
        XCTAssertEqual(kind(#"{"a":1,"requestType":"CLOSE","b":2}"#),
                       .malformed(#"Invalid session request: unexpected keys "a", "b" besides "requestType""#))
    }

    func testManyExtraKeysNameAtMostFive() {
        let body = #"{"requestType":"CLOSE","k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6}"#
        XCTAssertEqual(kind(body),
                       .malformed(#"Invalid session request: unexpected keys "k1", "k2", "k3", "k4", "k5" besides "requestType""#))
    }

    // MARK: invocations

    func testNonJSONIsInvocation() {
        XCTAssertEqual(kind("hello requestType"), .invocation(parsedDump: nil))
        XCTAssertEqual(kind("a,b,c\n1,2,3\n"), .invocation(parsedDump: nil))
        XCTAssertEqual(kind([0x89, 0x50, 0x4e, 0x47, 0x00, 0xff]), .invocation(parsedDump: nil))
    }

    func testInvalidJSONObjectIsInvocation() {
        XCTAssertEqual(kind(#"{"requestType":"NEW_SESSION""#), .invocation(parsedDump: nil))
        XCTAssertEqual(kind(#"{"requestType":"NEW_SESSION"}garbage"#), .invocation(parsedDump: nil))
        XCTAssertEqual(kind([0x7b, 0x22, 0xff] + Array(#"requestType":1}"#.utf8)), .invocation(parsedDump: nil))
    }

    func testJSONArrayIsInvocation() {
        XCTAssertEqual(kind(#"[{"requestType":"NEW_SESSION"}]"#), .invocation(parsedDump: nil))
    }

    func testJSONStringIsInvocation() {
        XCTAssertEqual(kind(#""requestType""#), .invocation(parsedDump: nil))
        XCTAssertEqual(kind("42"), .invocation(parsedDump: nil))
    }

    func testEmptyBodyIsInvocation() {
        XCTAssertEqual(kind(""), .invocation(parsedDump: nil))
        XCTAssertEqual(kind("   \n"), .invocation(parsedDump: nil))
    }

    func testObjectWithoutRequestTypeIsInvocation() {
        // Not mentioning the key: not even parsed.
        XCTAssertEqual(kind(#"{"inputs":"hello"}"#), .invocation(parsedDump: nil))
        // Mentioning it only inside a nested value: parsed, handed on.
        XCTAssertEqual(kind(#"{"inputs":{"requestType":"NEW_SESSION"}}"#),
                       .invocation(parsedDump: #"{"inputs":{"requestType":"NEW_SESSION"}}"#))
        XCTAssertEqual(kind(#"{"note":"requestType"}"#), .invocation(parsedDump: #"{"note":"requestType"}"#))
        // Key names are case-sensitive.
        XCTAssertEqual(kind(#"{"RequestType":"NEW_SESSION","x":"\u0041"}"#),
                       .invocation(parsedDump: #"{"RequestType":"NEW_SESSION","x":"A"}"#))
    }

    func testNULInKeyIsNotRequestType() {
        // Not JSON that jansson accepts (NUL in a key): an ordinary invocation.
        XCTAssertEqual(kind(#"{"requestType\u0000":"NEW_SESSION"}"#), .invocation(parsedDump: nil))
        XCTAssertEqual(kind(#"{"requestType":"NEW_SESSION\u0000"}"#),
                       .malformed("Invalid session request: requestType must be \"NEW_SESSION\" or \"CLOSE\", not \"NEW_SESSION\u{0}\""))
    }

    // MARK: helpers

    /// The answer, the same whichever byte of the needle the scan pivots on.
    private func contains(_ needle: String, _ hay: String) -> Bool {
        let n = Array(needle.utf8), h = Array(hay.utf8)
        let answers = (0..<max(n.count, 1)).map { search(n, h, pivot: $0) }
        XCTAssertEqual(Set(answers).count, 1, "pivots disagree on \(needle) in \(hay): \(answers)")
        return answers[0]
    }

    private func search(_ needle: [UInt8], _ hay: [UInt8], pivot: Int = 0) -> Bool {
        needle.withUnsafeBytes { n in hay.withUnsafeBytes { RequestBody.search(n, pivot: pivot, in: $0) } }
    }

    func testContains() {
        XCTAssertTrue(contains("requestType", "requestType"))
        XCTAssertTrue(contains("requestType", "{\"requestType\":1}"))
        XCTAssertTrue(contains("requestType", "xxxxrequestType"))
        XCTAssertTrue(contains("requestType", "rrrequestrequestType"))
        XCTAssertTrue(contains("ab", "aab"))
        XCTAssertTrue(contains("requestType", "qrequestType"))
        XCTAssertTrue(contains("requestType", "requestTypeq"))
        XCTAssertTrue(contains("requestType", "reqrequestTypq requestType"))
        XCTAssertFalse(contains("requestType", "qqqqqqqqqqqqqqqqqqq"))
        XCTAssertFalse(contains("requestType", "reqrequestTypq requestTyp"))
        XCTAssertFalse(contains("requestType", "requestTyp"))
        XCTAssertFalse(contains("requestType", "equestType"))
        XCTAssertFalse(contains("requestType", "request Type"))
        XCTAssertFalse(contains("requestType", "RequestType"))
        XCTAssertFalse(contains("abc", "ab"))
        XCTAssertFalse(contains("", "abc"))
        XCTAssertFalse(contains("a", ""))
        XCTAssertFalse(Array("x".utf8).withUnsafeBytes { _ in
            RequestBody.search(SessionRequest.constant("x"), in: UnsafeRawBufferPointer(start: nil, count: 0))
        })
    }

    func testContainsDoesNotReadPastTheBuffer() {
        // The needle's tail lies just beyond the slice handed in.
        let bytes = Array("xxrequestType".utf8)
        let found = bytes.withUnsafeBytes { all in
            RequestBody.search(SessionRequest.keyBytes, pivot: 2, in: UnsafeRawBufferPointer(rebasing: all[0..<12]))
        }
        XCTAssertFalse(found)
    }

    private func mayName(_ body: String) -> Bool {
        Array(body.utf8).withUnsafeBytes { SessionRequest.mayName(RequestBody($0)) }
    }

    func testMayName() {
        XCTAssertTrue(mayName(#"{"requestType":"CLOSE"}"#))
        XCTAssertTrue(mayName(#"{"request\u0054ype":"CLOSE"}"#))
        XCTAssertTrue(mayName(#"{"a":"\u0041"}"#))
        XCTAssertFalse(mayName(#"{"a":1}"#))
        XCTAssertFalse(mayName(#"{"request_type":"CLOSE"}"#))
        XCTAssertFalse(mayName(#"{"a":"\n"}"#))
        XCTAssertFalse(mayName(""))
    }

    private func startsLikeObject(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { RequestBody.startsLikeObject($0) }
    }

    func testStartsLikeObject() {
        XCTAssertTrue(startsLikeObject(Array("{".utf8)))
        XCTAssertTrue(startsLikeObject(Array(" \t\r\n{\"a\":1}".utf8)))
        XCTAssertFalse(startsLikeObject([]))
        XCTAssertFalse(startsLikeObject(Array("   \n".utf8)))
        XCTAssertFalse(startsLikeObject(Array("[{}]".utf8)))
        XCTAssertFalse(startsLikeObject(Array("x{".utf8)))
        XCTAssertFalse(startsLikeObject([0xef, 0xbb, 0xbf, 0x7b]))  // byte order mark
        XCTAssertFalse(startsLikeObject([0x0b, 0x7b]))  // vertical tab is not JSON whitespace
        XCTAssertFalse(startsLikeObject([0x00, 0x7b]))
    }

    /// The parser-free reading of plain requestType bodies agrees with the
    /// parser on every body it reads, and leaves every other to it.
    func testPlainRequestTypeAgreesWithTheParser() {
        let keys = [#""requestType""#, #""requestType""#, #""requestType""#, #""request\u0054ype""#, #""x""#]
        let values = [#""NEW_SESSION""#, #""CLOSE""#, #""other""#, #""NEW_\u0053ESSION""#, "1", "[]", "{}",
                      "\"\u{7f}\"", #""é""#, "null"]
        let blanks = ["", "", " ", "\n", "\t", "\r"]
        let noise = ["", "", "", "", "", "", ",", "}", "{", ":", "\"", "\\", "x"]
        var rng = SystemRandomNumberGenerator()
        var read = 0
        for _ in 0..<30_000 {
            func any(_ list: [String]) -> String { list.randomElement(using: &rng) ?? "" }
            var body = any(blanks) + "{"
            for k in 0..<Int.random(in: 0...3, using: &rng) {
                if k > 0 { body += any(blanks) + "," + any(blanks) }
                body += any(keys) + any(blanks) + ":" + any(blanks) + any(values) + any(noise)
            }
            body += any(blanks) + "}" + any(blanks) + any(noise)
            let fast = Array(body.utf8).withUnsafeBytes { SessionRequest.plainRequestType(RequestBody($0)) }
            guard let fast else { continue }
            read += 1
            let parsed = JSON.parse(body)
            XCTAssertEqual(parsed?.keys, [SessionRequest.key], body)
            XCTAssertEqual(parsed?[SessionRequest.key]?.stringValue, fast, body)
        }
        XCTAssertGreaterThan(read, 200)
        XCTAssertEqual(kind(#" {"requestType":"CLOSE" , "requestType" : "NEW_SESSION"}"#), .newSession)
        XCTAssertNil(Array(#"{"requestType":"NEW_SESSION"} x"#.utf8).withUnsafeBytes {
            SessionRequest.plainRequestType(RequestBody($0))
        })
    }
}
