import XCTest
@testable import SageMakerSessions

final class SessionDefaultsTests: XCTestCase {
    func body(_ text: String) throws -> String? {
        try SessionDefaults(parsing: text).body()?.dumped()
    }

    func testKeysBecomeABody() throws {
        XCTAssertEqual(try body(#"{"body.capacity": 1024}"#), #"{"capacity":1024}"#)
        XCTAssertEqual(try body(#"{"body.capacity": 1024, "body.timeout": 30}"#), #"{"capacity":1024,"timeout":30}"#)
        XCTAssertEqual(try body(#"{"body.metadata.size": 100, "body.metadata.kind": "x"}"#),
                       #"{"metadata":{"size":100,"kind":"x"}}"#)
        XCTAssertEqual(try body(#"{"body.force": false, "body.tags": [1, "a"], "body.o": {"k": null}}"#),
                       #"{"force":false,"tags":[1,"a"],"o":{"k":null}}"#)
        XCTAssertEqual(try body(#"{"body.\"a.b\"": 1}"#), #"{"a.b":1}"#)
        XCTAssertEqual(try body("{}"), "{}")
    }

    func testEachRequestGetsItsOwnCopy() throws {
        let defaults = try SessionDefaults(parsing: #"{"body.a": {"b": 1}}"#)
        let first = try XCTUnwrap(defaults.body())
        XCTAssertTrue(try XCTUnwrap(first["a"]).set("c", try XCTUnwrap(JSON.integer(2))))
        XCTAssertEqual(defaults.body()?.dumped(), #"{"a":{"b":1}}"#)
    }

    func testEmpty() throws {
        XCTAssertEqual(SessionDefaults.empty?.body()?.dumped(), "{}")
    }

    func testInvalid() {
        let cases: [(String, String)] = [
            ("", "invalid JSON"),
            ("capacity: 1024", "invalid JSON"),
            (#"{"body.capacity": }"#, "invalid JSON"),
            ("[1]", "a JSON object"),
            (#""body.x""#, "a JSON object"),
            (#"{"capacity": 1}"#, #"key "capacity": the path must start with "body.""#),
            (#"{"body": 1}"#, #"key "body": the path must start with "body.""#),
            (#"{"body.": 1}"#, #"key "body.": empty segment at offset 5"#),
            (#"{"headers.x": 1}"#, #"must start with "body.""#),
            (#"{"body..x": 1}"#, #"key "body..x": empty segment at offset 5"#),
            (#"{"body.a": 1, "body.a.b": 2}"#, "conflicts"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try SessionDefaults(parsing: text), text) { error in
                let description = (error as? SessionDefaults.Invalid)?.description ?? ""
                XCTAssertTrue(description.contains(expected), "\(text): \(description)")
            }
        }
    }

    func testInvalidJSONSaysWhere() {
        XCTAssertThrowsError(try SessionDefaults(parsing: "{\"body.a\": 1,\n  oops}")) { error in
            XCTAssertTrue("\(error)".contains("line 2"), "\(error)")
        }
    }
}
