import Glibc
import XCTest
@testable import SageMakerSessions

final class JSONTests: XCTestCase {
    func testParseObject() throws {
        let json = try XCTUnwrap(JSON.parse(#"{"a":1,"b":"two"}"#))
        XCTAssertTrue(json.isObject)
        XCTAssertFalse(json.isString)
        XCTAssertFalse(json.isNumber)
        XCTAssertEqual(json["a"]?.numberValue, 1)
        XCTAssertEqual(json["b"]?.stringValue, "two")
        XCTAssertNil(json["c"])
    }

    func testParseArray() throws {
        let json = try XCTUnwrap(JSON.parse("[1, 2, 3]"))
        XCTAssertFalse(json.isObject)
        XCTAssertEqual(json.dumped(), "[1,2,3]")
        XCTAssertEqual(json.keys, [])
        XCTAssertNil(json["a"])
    }

    func testParseBareString() throws {
        let json = try XCTUnwrap(JSON.parse(#""hello""#))
        XCTAssertTrue(json.isString)
        XCTAssertEqual(json.stringValue, "hello")
        XCTAssertNil(json.numberValue)
        XCTAssertNil(json.numberText)
    }

    func testParseBareNumber() throws {
        let json = try XCTUnwrap(JSON.parse("42"))
        XCTAssertTrue(json.isNumber)
        XCTAssertEqual(json.numberValue, 42)
        XCTAssertNil(json.stringValue)
    }

    func testParseToleratesSurroundingWhitespace() throws {
        XCTAssertEqual(JSON.parse(" \n[1] \r\n\t")?.dumped(), "[1]")
    }

    func testInvalidTextIsNil() {
        for text in ["{", "}", "[1,]", "{\"a\":}", "abc", "1 2", "{}x", "'a'", "{a:1}", "tru", "\"unterminated"] {
            XCTAssertNil(JSON.parse(text), text)
        }
    }

    func testEmptyAndBlankAreNil() {
        XCTAssertNil(JSON.parse(""))
        XCTAssertNil(JSON.parse("   "))
        XCTAssertNil(JSON.parsing([]))
        XCTAssertNil(JSON.parse(UnsafeRawBufferPointer(start: nil, count: 0)))
    }

    func testInvalidUTF8IsNil() {
        XCTAssertNil(JSON.parsing([0x22, 0xff, 0x22]))                   // "\xff"
        XCTAssertNil(JSON.parsing([0x22, 0xc3, 0x22]))                   // truncated sequence
        XCTAssertNil(JSON.parsing([0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x3a, 0x31, 0x7d]))  // surrogate as key
        XCTAssertNil(JSON.parsing([0xfe, 0xff]))
    }

    func testNULInStrings() throws {
        let json = try XCTUnwrap(JSON.parse(#""a\u0000b""#))
        XCTAssertEqual(json.stringValue, "a\u{0}b")
        XCTAssertEqual(json.stringValue?.utf8.count, 3)
        XCTAssertEqual(json.dumped(), #""a\u0000b""#)
    }

    func testNULInKeysIsRefused() {
        // jansson accepts \u0000 in string values but never in object keys.
        XCTAssertNil(JSON.parse(#"{"a\u0000b":1,"a":2}"#))
        XCTAssertNotNil(JSON.parse(#"{"a":"b\u0000c"}"#))
    }

    func testRawNULByteIsRefused() {
        XCTAssertNil(JSON.parsing([0x22, 0x61, 0x00, 0x62, 0x22]))
        XCTAssertNil(JSON.parsing([0x5b, 0x31, 0x5d, 0x00]))
    }

    func testDeepNestingIsNilWithoutCrashing() {
        let depth = 100_000
        let open = [UInt8](repeating: UInt8(ascii: "["), count: depth)
        XCTAssertNil(JSON.parsing(open))
        XCTAssertNil(JSON.parsing(open + [UInt8](repeating: UInt8(ascii: "]"), count: depth)))
        var objects: [UInt8] = []
        for _ in 0..<depth { objects += Array(#"{"a":"#.utf8) }
        XCTAssertNil(JSON.parsing(objects))
    }

    func testModerateNestingParses() throws {
        let depth = 100
        let text = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        XCTAssertEqual(try XCTUnwrap(JSON.parse(text)).dumped(), text)
    }

    func testStringValueOfNonString() throws {
        XCTAssertNil(try XCTUnwrap(JSON.parse("{}")).stringValue)
        XCTAssertNil(try XCTUnwrap(JSON.parse("null")).stringValue)
        XCTAssertNil(try XCTUnwrap(JSON.parse("1")).stringValue)
    }

    func testStringValueUnicode() throws {
        XCTAssertEqual(try XCTUnwrap(JSON.parse(#""\u00e9\ud83d\ude00 é""#)).stringValue, "é😀 é")
    }

    func testNumberTextForIntegers() throws {
        XCTAssertEqual(try XCTUnwrap(JSON.parse("42")).numberText, "42")
        XCTAssertEqual(try XCTUnwrap(JSON.parse("-7")).numberText, "-7")
        XCTAssertEqual(try XCTUnwrap(JSON.parse("0")).numberText, "0")
        // Every digit of a large integer survives (a Double would round it).
        XCTAssertEqual(try XCTUnwrap(JSON.parse("9007199254740993")).numberText, "9007199254740993")
        XCTAssertEqual(try XCTUnwrap(JSON.parse("9223372036854775807")).numberText, "9223372036854775807")
    }

    func testNumberTextForReals() throws {
        XCTAssertEqual(try XCTUnwrap(JSON.parse("1.5")).numberText, "1.5")
        XCTAssertEqual(try XCTUnwrap(JSON.parse("-0.25")).numberText, "-0.25")
        XCTAssertEqual(try XCTUnwrap(JSON.parse("1e2")).numberText, "100")
        XCTAssertEqual(try XCTUnwrap(JSON.parse("12345678.0")).numberText, "12345678")
        XCTAssertEqual(try XCTUnwrap(JSON.parse("1e300")).numberText, "1e+300")
        XCTAssertEqual(try XCTUnwrap(JSON.parse("1e2")).numberValue, 100)
    }

    func testNumberTextOfNonNumbers() throws {
        XCTAssertNil(try XCTUnwrap(JSON.parse(#""1""#)).numberText)
        XCTAssertNil(try XCTUnwrap(JSON.parse("true")).numberText)
        XCTAssertNil(try XCTUnwrap(JSON.parse("null")).numberValue)
    }

    func testKeysKeepTheirOrder() throws {
        let json = try XCTUnwrap(JSON.parse(#"{"z":1,"a":2,"m":3,"b":4}"#))
        XCTAssertEqual(json.keys, ["z", "a", "m", "b"])
        XCTAssertEqual(json.dumped(), #"{"z":1,"a":2,"m":3,"b":4}"#)
    }

    func testDuplicateKeysKeepTheLastValue() throws {
        let json = try XCTUnwrap(JSON.parse(#"{"a":1,"a":2}"#))
        XCTAssertEqual(json.keys, ["a"])
        XCTAssertEqual(json["a"]?.numberText, "2")
    }

    func testDumpedIsCompact() throws {
        let json = try XCTUnwrap(JSON.parse(#"{ "a" : [1, 2, {"b": null}], "c": "x\ny", "d": true }"#))
        XCTAssertEqual(json.dumped(), #"{"a":[1,2,{"b":null}],"c":"x\ny","d":true}"#)
    }

    func testDumpedKeepsUnicodeAndSlashes() throws {
        let json = try XCTUnwrap(JSON.parse(#"{"p":"../x/é"}"#))
        XCTAssertEqual(json.dumped(), #"{"p":"../x/é"}"#)
    }

    func testDumpIntoCallerMemory() throws {
        let json = try XCTUnwrap(JSON.parse(#"{"k":[true,false]}"#))
        var requested = 0
        let storage = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 1)
        defer { storage.deallocate() }
        let bytes = try XCTUnwrap(json.dump(into: { n in
            requested = n
            return storage
        }))
        XCTAssertEqual(requested, 18)
        XCTAssertEqual(String(decoding: bytes, as: UTF8.self), #"{"k":[true,false]}"#)
        XCTAssertNil(json.dump(into: { _ in nil }))
    }

    func testBuildObjectAndSet() throws {
        let object = try XCTUnwrap(JSON.object())
        XCTAssertTrue(object.isObject)
        XCTAssertEqual(object.dumped(), "{}")
        XCTAssertTrue(object.set("k", try XCTUnwrap(JSON.string("v"))))
        XCTAssertTrue(object.set("n", try XCTUnwrap(JSON.parse("1"))))
        XCTAssertEqual(object.dumped(), #"{"k":"v","n":1}"#)
        XCTAssertTrue(object.set("k", try XCTUnwrap(JSON.string("w"))))
        XCTAssertEqual(object.dumped(), #"{"k":"w","n":1}"#)
    }

    func testSetOnNonObjectFails() throws {
        let array = try XCTUnwrap(JSON.parse("[]"))
        XCTAssertFalse(array.set("k", try XCTUnwrap(JSON.string("v"))))
        XCTAssertEqual(array.dumped(), "[]")
    }

    func testStringEscapesWhenDumped() throws {
        let string = try XCTUnwrap(JSON.string("q\"b\\c\u{1}"))
        XCTAssertEqual(string.stringValue, "q\"b\\c\u{1}")
        XCTAssertEqual(string.dumped(), #""q\"b\\c\u0001""#)
    }

    func testMemberIsSharedWithParent() throws {
        let doc = try XCTUnwrap(JSON.parse(#"{"inner":{}}"#))
        let inner = try XCTUnwrap(doc["inner"])
        XCTAssertTrue(inner.set("x", try XCTUnwrap(JSON.string("y"))))
        XCTAssertEqual(doc.dumped(), #"{"inner":{"x":"y"}}"#)
    }
}
