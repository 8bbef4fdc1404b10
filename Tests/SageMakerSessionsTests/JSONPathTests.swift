import Glibc
import XCTest
@testable import SageMakerSessions

final class JSONPathTests: XCTestCase {
    private func segments(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> [String]? {
        do {
            return try JSONPath(parsing: text).segments
        } catch {
            XCTFail("\(text) did not parse: \(error)", file: file, line: line)
            return nil
        }
    }

    private func parseError(_ text: String) -> JSONPath.ParseError? {
        do {
            let path = try JSONPath(parsing: text)
            XCTFail("\(text) parsed as \(path.segments)")
            return nil
        } catch let error as JSONPath.ParseError {
            return error
        } catch {
            XCTFail("unexpected error type \(error)")
            return nil
        }
    }

    // MARK: parsing

    func testSingleSegment() {
        XCTAssertEqual(segments("a"), ["a"])
        XCTAssertEqual(segments("session_id"), ["session_id"])
    }

    func testDottedSegments() {
        XCTAssertEqual(segments("a.b.c"), ["a", "b", "c"])
        XCTAssertEqual(segments("body.session_id"), ["body", "session_id"])
    }

    func testQuotedSegment() {
        XCTAssertEqual(segments("headers.\"X-Session-Id\""), ["headers", "X-Session-Id"])
        XCTAssertEqual(segments("\"a\".b"), ["a", "b"])
    }

    func testQuotedSegmentMayHoldDotsAndSpaces() {
        XCTAssertEqual(segments("a.\"b.c\".d"), ["a", "b.c", "d"])
        XCTAssertEqual(segments("\"x y\""), ["x y"])
    }

    func testEscapesInQuotedSegment() {
        XCTAssertEqual(segments(#""a\"b""#), ["a\"b"])
        XCTAssertEqual(segments(#""a\\b""#), ["a\\b"])
        XCTAssertEqual(segments(#""a\.b".c"#), ["a.b", "c"])
    }

    func testEmptyPathIsAnError() {
        XCTAssertEqual(parseError(""), .empty)
    }

    func testLeadingDotIsAnError() {
        XCTAssertEqual(parseError(".a"), .emptySegment(at: 0))
    }

    func testTrailingDotIsAnError() {
        XCTAssertEqual(parseError("a."), .emptySegment(at: 2))
    }

    func testDoubleDotIsAnError() {
        XCTAssertEqual(parseError("a..b"), .emptySegment(at: 2))
    }

    func testUnterminatedQuoteIsAnError() {
        XCTAssertEqual(parseError("\"abc"), .unterminatedQuote)
        XCTAssertEqual(parseError("a.\"b"), .unterminatedQuote)
        XCTAssertEqual(parseError(#""abc\""#), .unterminatedQuote)
        XCTAssertEqual(parseError(#""abc\"#), .unterminatedQuote)
    }

    func testEmptyQuotedSegmentIsAnError() {
        XCTAssertEqual(parseError("\"\""), .emptySegment(at: 0))
        XCTAssertEqual(parseError("a.\"\""), .emptySegment(at: 2))
    }

    func testTextAfterClosingQuoteIsAnError() {
        XCTAssertEqual(parseError("\"a\"b"), .unexpected("b", at: 3))
    }

    func testQuoteOrBlankInsideBareSegmentIsAnError() {
        XCTAssertEqual(parseError("a\"b"), .unexpected("\"", at: 1))
        XCTAssertEqual(parseError("a b"), .unexpected(" ", at: 1))
        XCTAssertEqual(parseError("a.b\tc"), .unexpected("\t", at: 3))
        XCTAssertEqual(parseError("a\u{01}"), .unexpected("\u{01}", at: 1))
    }

    func testParseErrorDescriptions() {
        XCTAssertEqual(JSONPath.ParseError.empty.description, "the path is empty")
        XCTAssertEqual(JSONPath.ParseError.emptySegment(at: 2).description, "empty segment at offset 2")
        XCTAssertEqual(JSONPath.ParseError.unterminatedQuote.description, "unterminated quoted segment")
        XCTAssertEqual(JSONPath.ParseError.unexpected("x", at: 4).description, "unexpected \"x\" at offset 4")
    }

    // MARK: description

    func testDescription() throws {
        XCTAssertEqual(try JSONPath(parsing: "a.b.c").description, "a.b.c")
        XCTAssertEqual(try JSONPath(parsing: "headers.\"X-Session-Id\"").description, "headers.X-Session-Id")
        XCTAssertEqual(try JSONPath(parsing: "a.\"b.c\"").description, "a.\"b.c\"")
        XCTAssertEqual(JSONPath(segments: ["a\"b"]).description, #""a\"b""#)
        XCTAssertEqual(JSONPath(segments: ["x.y\\z"]).description, #""x.y\\z""#)
        XCTAssertEqual(JSONPath(segments: ["x y"]).description, "\"x y\"")
    }

    func testDescriptionRoundTrips() throws {
        for text in ["a", "a.b.c", "headers.\"X-Session-Id\"", "a.\"b.c\".d", #""a\"b".c"#,
                     #""a\\b""#, "\"x y\".z", "a\\b"] {
            let path = try JSONPath(parsing: text)
            XCTAssertEqual(try JSONPath(parsing: path.description), path, "\(text) -> \(path.description)")
        }
    }

    func testDescriptionRoundTripsForOtherBlanks() throws {
        // A quoted segment may hold a tab; the parser refuses it unquoted.
        let path = try JSONPath(parsing: "\"a\tb\".c")
        XCTAssertEqual(path.segments, ["a\tb", "c"])
        let reparsed = try JSONPath(parsing: path.description)
        XCTAssertEqual(reparsed, path)
    }

    // MARK: value(in:)

    func testValueAtPath() throws {
        let doc = try XCTUnwrap(JSON.parse(#"{"a":{"b":{"c":"deep"}},"x":1,"d.e":"dotted"}"#))
        XCTAssertEqual(try JSONPath(parsing: "a.b.c").value(in: doc)?.stringValue, "deep")
        XCTAssertEqual(try JSONPath(parsing: "x").value(in: doc)?.numberText, "1")
        XCTAssertEqual(try JSONPath(parsing: "\"d.e\"").value(in: doc)?.stringValue, "dotted")
        XCTAssertEqual(try JSONPath(parsing: "a.b").value(in: doc)?.dumped(), #"{"c":"deep"}"#)
    }

    func testValueMissing() throws {
        let doc = try XCTUnwrap(JSON.parse(#"{"a":{"b":1},"s":"str"}"#))
        XCTAssertNil(try JSONPath(parsing: "a.c").value(in: doc))
        XCTAssertNil(try JSONPath(parsing: "a.b.c").value(in: doc))  // through a number
        XCTAssertNil(try JSONPath(parsing: "s.x").value(in: doc))    // through a string
        XCTAssertNil(try JSONPath(parsing: "A").value(in: doc))      // body keys match exactly
        let array = try XCTUnwrap(JSON.parse("[1,2]"))
        XCTAssertNil(try JSONPath(parsing: "a").value(in: array))
    }

    func testValueWithCaseInsensitiveKeyMatch() throws {
        let doc = try XCTUnwrap(JSON.parse(#"{"body":{"Id":"b"},"headers":{"x-session-id":"abc"},"status_code":200}"#))
        var seenDepths: [Int] = []
        let headersInsensitive: (Int, String, String) -> Bool = { depth, key, segment in
            seenDepths.append(depth)
            if depth == 1 { return key.lowercased() == segment.lowercased() }
            return key == segment
        }
        XCTAssertEqual(try JSONPath(parsing: "headers.X-Session-Id").value(in: doc, keyMatch: headersInsensitive)?.stringValue, "abc")
        XCTAssertEqual(try JSONPath(parsing: "headers.\"X-SESSION-ID\"").value(in: doc, keyMatch: headersInsensitive)?.stringValue, "abc")
        XCTAssertTrue(seenDepths.contains(0) && seenDepths.contains(1))
        XCTAssertFalse(seenDepths.contains(2))
        // Depth 0 stays exact under this closure.
        XCTAssertNil(try JSONPath(parsing: "Headers.x-session-id").value(in: doc, keyMatch: headersInsensitive))
        XCTAssertEqual(try JSONPath(parsing: "status_code").value(in: doc, keyMatch: headersInsensitive)?.numberText, "200")
    }

    // MARK: set(_:in:)

    func testSetCreatesNestedObjects() throws {
        let doc = try XCTUnwrap(JSON.parse(#"{"a":1}"#))
        try JSONPath(parsing: "meta.session.id").set(try XCTUnwrap(JSON.string("s1")), in: doc)
        XCTAssertEqual(doc.dumped(), #"{"a":1,"meta":{"session":{"id":"s1"}}}"#)
    }

    func testSetIntoExistingObject() throws {
        let doc = try XCTUnwrap(JSON.parse(#"{"meta":{"x":2}}"#))
        try JSONPath(parsing: "meta.sid").set(try XCTUnwrap(JSON.string("s1")), in: doc)
        XCTAssertEqual(doc.dumped(), #"{"meta":{"x":2,"sid":"s1"}}"#)
    }

    func testSetOverwritesALeaf() throws {
        let doc = try XCTUnwrap(JSON.parse(#"{"session_id":"old","b":[1]}"#))
        try JSONPath(parsing: "session_id").set(try XCTUnwrap(JSON.string("new")), in: doc)
        XCTAssertEqual(doc.dumped(), #"{"session_id":"new","b":[1]}"#)
        try JSONPath(parsing: "b").set(try XCTUnwrap(JSON.string("x")), in: doc)
        XCTAssertEqual(doc.dumped(), #"{"session_id":"new","b":"x"}"#)
    }

    func testSetQuotedSegment() throws {
        let doc = try XCTUnwrap(JSON.object())
        try JSONPath(parsing: "\"a.b\".c").set(try XCTUnwrap(JSON.string("v")), in: doc)
        XCTAssertEqual(doc.dumped(), #"{"a.b":{"c":"v"}}"#)
    }

    func testSetRefusesNonObjectIntermediate() throws {
        let doc = try XCTUnwrap(JSON.parse(#"{"a":{"b":5}}"#))
        let value = try XCTUnwrap(JSON.string("v"))
        XCTAssertThrowsError(try JSONPath(parsing: "a.b.c.d").set(value, in: doc)) { error in
            XCTAssertEqual(error as? JSONPath.SetError, .notAnObject(prefix: "a.b"))
        }
        // Nothing was written.
        XCTAssertEqual(doc.dumped(), #"{"a":{"b":5}}"#)

        let arrays = try XCTUnwrap(JSON.parse(#"{"list":[1]}"#))
        XCTAssertThrowsError(try JSONPath(parsing: "list.x").set(value, in: arrays)) { error in
            XCTAssertEqual(error as? JSONPath.SetError, .notAnObject(prefix: "list"))
        }
        let quoted = try XCTUnwrap(JSON.parse(#"{"x.y":"s"}"#))
        XCTAssertThrowsError(try JSONPath(parsing: "\"x.y\".z").set(value, in: quoted)) { error in
            XCTAssertEqual(error as? JSONPath.SetError, .notAnObject(prefix: "\"x.y\""))
        }
    }

    func testSetRefusesRootThatIsNotAnObject() throws {
        let value = try XCTUnwrap(JSON.string("v"))
        for text in ["[1,2]", "\"s\"", "3", "null"] {
            let root = try XCTUnwrap(JSON.parse(text))
            XCTAssertThrowsError(try JSONPath(parsing: "a").set(value, in: root)) { error in
                XCTAssertEqual(error as? JSONPath.SetError, .notAnObject(prefix: ""), text)
            }
        }
    }
}
