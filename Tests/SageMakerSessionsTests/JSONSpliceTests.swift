import XCTest
@testable import SageMakerSessions

final class JSONSpliceTests: XCTestCase {
    func spliced(_ text: String, _ path: [String], _ value: String = "ID") throws -> String {
        try JSONSplice.set(value, at: path, in: RequestBody(kept(text))).text
    }

    /// What jansson makes of the same edit: the meaning must agree.
    func janssonSet(_ text: String, _ path: [String], _ value: String) -> String? {
        guard let doc = JSON.parse(text), let v = JSON.string(value) else { return nil }
        do { try JSONPath(segments: path).set(v, in: doc) } catch { return nil }
        return doc.dumped()
    }

    func testInsertsWhereMissing() throws {
        XCTAssertEqual(try spliced(#"{"text": "hi"}"#, ["session_id"]), #"{"text": "hi","session_id":"ID"}"#)
        XCTAssertEqual(try spliced("{}", ["session_id"]), #"{"session_id":"ID"}"#)
        XCTAssertEqual(try spliced(" { \n } ", ["a", "b"]), #" { "# + "\n" + #" "a":{"b":"ID"}} "#)
        XCTAssertEqual(try spliced(#"{"text": "hi"}"#, ["session_params", "id"]),
                       #"{"text": "hi","session_params":{"id":"ID"}}"#)
        XCTAssertEqual(try spliced(#"{"m": {"u": 1}}"#, ["m", "s", "id"]), #"{"m": {"u": 1,"s":{"id":"ID"}}}"#)
        XCTAssertEqual(try spliced(#"{"m": {}}"#, ["m", "id"]), #"{"m": {"id":"ID"}}"#)
    }

    func testReplacesWhatIsThere() throws {
        XCTAssertEqual(try spliced(#"{"session_id": "forged", "p": 1}"#, ["session_id"]),
                       #"{"session_id": "ID", "p": 1}"#)
        XCTAssertEqual(try spliced(#"{"a": {"b": [1, {"c": 2}]}}"#, ["a", "b"]), #"{"a": {"b": "ID"}}"#)
        XCTAssertEqual(try spliced(#"{"sess\u0069on_id": 5}"#, ["session_id"]), #"{"sess\u0069on_id": "ID"}"#)
    }

    func testTheLastOfRepeatedKeysIsTheOneThatCounts() throws {
        XCTAssertEqual(try spliced(#"{"k": 1, "k": 2}"#, ["k"]), #"{"k": 1, "k": "ID"}"#)
        XCTAssertEqual(try spliced(#"{"m": {"x": 1}, "m": {"y": 2}}"#, ["m", "id"]),
                       #"{"m": {"x": 1}, "m": {"y": 2,"id":"ID"}}"#)
    }

    func testClientBytesAreKept() throws {
        let text = #"{"big": 123456789012345678901234567890, "f": 1.10, "e": -0.5E+3, "u": "é\u00e9\ud83d\ude00"}"#
        let out = try spliced(text, ["sid"])
        XCTAssertEqual(out, String(text.dropLast()) + #","sid":"ID"}"#)
    }

    func testValuesAreEscaped() throws {
        XCTAssertEqual(try spliced("{}", ["a\"b"], "x\"y\\z\n"), #"{"a\"b":"x\"y\\z\n"}"#)
    }

    func testBlockedByANonObject() {
        for (text, path, prefix) in [(#"{"m": "s"}"#, ["m", "id"], ["m"]),
                                     (#"{"m": {"n": [1]}}"#, ["m", "n", "id"], ["m", "n"]),
                                     (#"{"m": {"id": 1}, "m": 3}"#, ["m", "id"], ["m"])] {
            XCTAssertThrowsError(try spliced(text, path)) { error in
                XCTAssertEqual(error as? JSONSplice.Failure, .blocked(prefix: prefix), text)
            }
        }
    }

    func testNotAnObject() {
        let bad = ["", " ", "[1]", "\"s\"", "1", "null", "{", "}", "{\"a\":}", "{\"a\":1,}", "{\"a\" 1}", "{a:1}",
                   "{'a':1}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":1e}", "{\"a\":-}", "{\"a\":NaN}",
                   "{\"a\":tru}", "{\"a\":[1,]}", "{\"a\":[1 2]}", "{\"a\":1} x", "{\"a\":1}{}", "{\"a\":\"\\x\"}",
                   "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}", "{\"a\":\"\\u12\"}", "{\"a\":\"tab\there\"}",
                   "{\"a\":\"x}", "{\"a\":+1}", "{1:2}"]
        for text in bad {
            XCTAssertThrowsError(try spliced(text, ["id"]), text) { error in
                XCTAssertEqual(error as? JSONSplice.Failure, .notAnObject, text)
            }
            XCTAssertTrue(JSON.parse(text)?.isObject != true, "jansson accepts \(text)")
        }
    }

    func testInvalidUTF8IsNotJSON() {
        for bytes: [UInt8] in [[0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d],           // {"a":"\xff"}
                               [0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc0, 0xaf, 0x22, 0x7d],     // overlong
                               [0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d], // surrogate
                               [0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xe2, 0x82, 0x22, 0x7d]] {    // cut short
            XCTAssertThrowsError(try JSONSplice.set("x", at: ["id"], in: RequestBody(kept(bytes))), "\(bytes)")
        }
    }

    func testDepthIsBounded() {
        let deep = String(repeating: "{\"a\":", count: 3000) + "1" + String(repeating: "}", count: 3000)
        XCTAssertThrowsError(try spliced(deep, ["id"])) { XCTAssertEqual($0 as? JSONSplice.Failure, .tooDeep) }
        let ok = String(repeating: "{\"a\":", count: 1000) + "1" + String(repeating: "}", count: 1000)
        XCTAssertNoThrow(try spliced(ok, ["id"]))
        let arrays = "{\"a\":" + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}"
        XCTAssertThrowsError(try spliced(arrays, ["id"])) { XCTAssertEqual($0 as? JSONSplice.Failure, .tooDeep) }
        // exactly at the bound: the object and 2047 arrays inside it
        let edge = "{\"a\":" + String(repeating: "[", count: 2047) + String(repeating: "]", count: 2047) + "}"
        XCTAssertNoThrow(try spliced(edge, ["id"]))
        XCTAssertNotNil(JSON.parse(edge), "jansson's bound is the same")
        let over = "{\"a\":" + String(repeating: "[", count: 2048) + String(repeating: "]", count: 2048) + "}"
        XCTAssertThrowsError(try spliced(over, ["id"])) { XCTAssertEqual($0 as? JSONSplice.Failure, .tooDeep) }
        XCTAssertNil(JSON.parse(over), "jansson's bound is the same")
    }

    func testAgreesWithJansson() throws {
        let docs = [#"{"a": 1}"#, #"{"a": {"b": {"c": null}}, "d": [true, false]}"#, "{}",
                    #"{"x": "\u00e9\n\t\"", "y": -1.5e-7, "z": [[], {}, [{"k": "v"}]]}"#,
                    #"{"session_params": {"rid": "r"}, "text": "long long text"}"#]
        let paths = [["id"], ["a", "id"], ["session_params", "id"], ["z"], ["x"], ["a", "b", "c"], ["new", "deep", "id"]]
        for doc in docs {
            for path in paths {
                let ours = try? spliced(doc, path, "v-1")
                let theirs = janssonSet(doc, path, "v-1")
                XCTAssertEqual(ours.flatMap { JSON.parse($0)?.dumped() }, theirs, "\(doc) at \(path)")
            }
        }
    }

    func testPiecesPointIntoTheClientsBuffers() throws {
        let body = kept(#"{"prompt": "a large body"}"#)
        let pieces = try JSONSplice.set("ID", at: ["sid"], in: RequestBody(body))
        XCTAssertEqual(pieces.count, 3)
        guard case .original(let head) = pieces[0], case .new = pieces[1], case .original(let tail) = pieces[2] else {
            return XCTFail("\(pieces)")
        }
        XCTAssertEqual(head.baseAddress, body.baseAddress)
        XCTAssertEqual(head.count, body.count - 1)
        XCTAssertEqual(tail.count, 1)
    }

    func testSameResultInPieces() throws {
        let text = #"{"prompt": "héllo", "meta": {"k": [1, 2]}, "n": 12.5}"#
        let expected = try spliced(text, ["meta", "session_id"])
        let bytes = Array(text.utf8)
        for i in 0...bytes.count {
            for j in stride(from: i, through: bytes.count, by: 3) {
                let parts = [kept(Array(bytes[..<i])), kept(Array(bytes[i..<j])), kept(Array(bytes[j...]))]
                let out = try JSONSplice.set("ID", at: ["meta", "session_id"], in: RequestBody(segments: parts))
                XCTAssertEqual(out.text, expected, "split at \(i), \(j)")
            }
        }
    }

    /// Long strings are skipped sixteen and eight bytes at a time: a byte
    /// that needs a look (control, quote, backslash, 0x7f, 0x80 and up, in
    /// and out of a valid sequence) at every position of a 40-byte string,
    /// in every vector lane and in the tail, gets jansson's verdict.
    func testEveryByteClassAtEveryPositionOfALongString() throws {
        let specials: [[UInt8]] = [[0x00], [0x1f], [0x09], [0x22], [0x5c], [0x5c, 0x6e], [0x5c, 0x78], [0x7f], [0x80],
                                   [0xff], [0xc3, 0xa9], [0xe2, 0x82, 0xac], [0xf0, 0x9f, 0x98, 0x80], [0xc3], [0x20], [0x7e]]
        for special in specials {
            for at in 0...40 {
                var bytes = Array(#"{"prompt":""#.utf8) + Array(repeating: UInt8(ascii: "a"), count: 40)
                bytes.insert(contentsOf: special, at: 11 + at)
                bytes += Array(#"","n":1}"#.utf8)
                let accepted = (try? JSONSplice.set("ID", at: ["id"], in: RequestBody(kept(bytes)))) != nil
                let jansson = bytes.withUnsafeBytes { JSON.parse($0)?.isObject == true }
                XCTAssertEqual(accepted, jansson, "\(special) at \(at)")
            }
        }
    }

    /// `plainEnd` finds the first byte that needs a look by its bit, in a
    /// vector, a word, or the last word read back from the end: at every
    /// start and every place in buffers of 0 to 40 bytes, alone and just
    /// before the bytes a borrow could mark wrongly (`"#`, `\]`, 0x1f 0x20).
    func testPlainEndFindsTheFirstSpecialByte() {
        let specials: [[UInt8]] = [[0x00], [0x1f], [0x22], [0x5c], [0x80], [0xff], [0x22, 0x23], [0x5c, 0x5d],
                                   [0x1f, 0x20], [0x00, 0x21], [0x80, 0x22]]
        check(plainEndIn: Array(0...40), from: nil, specials)
        // past the 64-byte steps: every place, from the starts around a step's edges
        check(plainEndIn: [63, 64, 65, 127, 128, 129, 150], from: [0, 1, 15, 16, 17, 47, 48, 63, 64, 65, 80], specials)
    }

    private func check(plainEndIn counts: [Int], from starts: [Int]?, _ specials: [[UInt8]]) {
        for count in counts {
            for special in specials + [[]] {
                for at in 0...max(count - special.count, 0) where special.count <= count {
                    var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: count)
                    bytes.replaceSubrange(at..<(at + special.count), with: special)
                    let buffer = kept(bytes)
                    for from in starts?.filter({ $0 <= count }) ?? Array(0...count) {
                        var expected = from
                        while expected < count, JSONSplice.isPlain(bytes[expected]) { expected += 1 }
                        let got = buffer.baseAddress.map { JSONSplice.plainEnd($0, from, count) } ?? 0
                        XCTAssertEqual(got, expected, "\(bytes) from \(from)")
                    }
                }
            }
        }
    }

    /// Keys are compared a word at a time: equal, and differing at each
    /// place, for lengths 0 to 20.
    func testSameComparesEveryByte() {
        for n in 0...20 {
            let a = kept((0..<n).map { UInt8(0x61 + $0) })
            XCTAssertTrue(JSONSplice.same(a, kept((0..<n).map { UInt8(0x61 + $0) })), "\(n)")
            XCTAssertFalse(JSONSplice.same(a, kept((0...n).map { UInt8(0x61 + $0) })), "\(n) and \(n + 1)")
            for at in 0..<n {
                var other = (0..<n).map { UInt8(0x61 + $0) }
                other[at] ^= 0x20
                XCTAssertFalse(JSONSplice.same(a, kept(other)), "\(n) at \(at)")
            }
        }
    }

    /// A body in runs is read as the same bytes in one: every two-way cut
    /// of bodies that pass and fail in each part of the grammar.
    func testEveryCutGivesTheSameAnswer() {
        let docs = [#"{"a":"x\u00e9y","b":[1,-2.5e+3,true,false,null],"c":{"id":"é"}}"#, #"{"id":1,"id":{}}"#,
                    "{\"a\":\"\u{1}\"}", #"{"a":"\ud83d\ude00"}"#, #"{"a":tru}"#, #"{"a":1} x"#, #" { } "#,
                    #"{"c":{"id":"v"} }"#, #"{"a":"\x"}"#, #"{"a":01}"#]
        for doc in docs {
            let bytes = Array(doc.utf8)
            let whole = Result { () throws(JSONSplice.Failure) in try JSONSplice.point(at: [Array("c".utf8), Array("id".utf8)], in: RequestBody(kept(bytes))) }
            for cut in 0...bytes.count {
                let body = RequestBody(segments: [kept(Array(bytes[..<cut])), kept(Array(bytes[cut...]))])
                let parts = Result { () throws(JSONSplice.Failure) in try JSONSplice.point(at: [Array("c".utf8), Array("id".utf8)], in: body) }
                XCTAssertEqual(parts, whole, "\(doc) cut at \(cut)")
            }
        }
    }

    /// What the shim passes on: a short body as one piece, copied with
    /// the id; a long one with its long parts where they lie and its short
    /// ones copied next to the id; in runs too. Always the bytes `pieces` makes.
    func testWrittenBodyCopiesOnlyItsShortParts() throws {
        let long = String(repeating: "x", count: 3000)
        let cases: [(String, [String], Int)] = [
            (#"{"prompt":"hello, how are you today?","max_tokens":128}"#, ["session_id"], 1),
            (#"{"prompt":"\#(long)"}"#, ["session_id"], 2),                          // the tail "}" copied
            (#"{"session_id":"x","prompt":"\#(long)"}"#, ["session_id"], 2),        // the head copied
            (#"{"a":"\#(long)","session_id":"x","b":"\#(long)"}"#, ["session_id"], 3),
        ]
        for (text, path, count) in cases {
            let bytes = Array(text.utf8)
            for cut in [0, 1, bytes.count / 2, bytes.count - 1] {
                let body = cut == 0 ? RequestBody(kept(bytes))
                    : RequestBody(segments: [kept(Array(bytes[..<cut])), kept(Array(bytes[cut...]))])
                let compiled = JSONSplice.Path(path)
                defer { withExtendedLifetime(compiled) {} }
                let point = try JSONSplice.point(at: compiled, in: body)
                let id = kept("ID")
                let splice = JSONSplice.Splice(point, body: body, value: id, path: compiled)
                let room = UnsafeMutableRawPointer.allocate(byteCount: splice.writtenCount, alignment: 1)
                defer { room.deallocate() }
                var got: [UnsafeRawBufferPointer] = []
                splice.write(at: room) { got.append($0) }
                XCTAssertEqual(got.flatMap { Array($0) }, splice.pieces.bytes, "\(count) cut \(cut)")
                let written = got.filter { $0.baseAddress == UnsafeRawPointer(room) }
                XCTAssertEqual(written.count, 1)
                XCTAssertEqual(written.first?.count, splice.writtenCount)
                if cut == 0 { XCTAssertEqual(got.count, count, "\(text.prefix(40)) in \(got.map { $0.count })") }
                XCTAssertLessThanOrEqual(got.count, splice.maxPieces)
            }
        }
    }

    /// The shim's writer (count, then bytes into its pool) quotes as
    /// `appendQuoted` does: every byte alone, at each place of texts
    /// shorter than a word, of one or two words, of one vector or more, and
    /// a session id.
    func testQuotedInPlaceAsAppended() {
        var cases: [[UInt8]] = [[], Array("2b4e1d2c-9f0a-4c3e-8d7b-6a5f4e3d2c1b".utf8), Array("héllo wörld, ünïcode".utf8)]
        for b in 0...255 {
            for count in [7, 9, 15, 16, 17, 36] {
                for at in 0..<count {
                    var text = [UInt8](repeating: UInt8(ascii: "a"), count: count)
                    text[at] = UInt8(b)
                    cases.append(text)
                }
            }
        }
        for text in cases {
            text.withUnsafeBytes { bytes in
                var expected: [UInt8] = []
                JSONSplice.appendQuoted(bytes, to: &expected)
                XCTAssertEqual(JSONSplice.quotedCount(bytes), expected.count, "\(text)")
                var out = [UInt8](repeating: 0, count: expected.count + 8)
                let written = out.withUnsafeMutableBytes { room -> Int in
                    guard let base = room.baseAddress else { return -1 }
                    return base.distance(to: JSONSplice.writeQuoted(bytes, at: base))
                }
                XCTAssertEqual(Array(out.prefix(max(written, 0))), expected, "\(text)")
            }
        }
    }
}
