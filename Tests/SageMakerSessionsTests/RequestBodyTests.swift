import XCTest
@testable import SageMakerSessions

/// Bodies in pieces, as nginx holds them: every answer must be the one the
/// same bytes in one piece give.
final class RequestBodyTests: XCTestCase {
    /// Every way to cut `text` in up to three pieces (and one piece per byte).
    func splits(_ text: String) -> [[[UInt8]]] {
        let bytes = Array(text.utf8)
        var out: [[[UInt8]]] = [[bytes], bytes.map { [$0] }]
        for i in 0...bytes.count {
            for j in i...bytes.count {
                out.append([Array(bytes[..<i]), Array(bytes[i..<j]), Array(bytes[j...])])
            }
        }
        return out
    }

    func withBody<T>(_ pieces: [[UInt8]], _ body: (RequestBody) -> T) -> T {
        let buffers = pieces.map { piece -> UnsafeMutableRawBufferPointer in
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: max(piece.count, 1), alignment: 1)
            b.copyBytes(from: piece)
            return b
        }
        defer { buffers.forEach { $0.deallocate() } }
        let segments = zip(buffers, pieces).map { UnsafeRawBufferPointer(rebasing: $0.0[0..<$0.1.count]) }
        return body(RequestBody(segments: segments))
    }

    func testContainsAcrossBoundaries() {
        for pieces in splits(#"{"a": 1, "requestType": "x"}"#) {
            withBody(pieces) { body in
                XCTAssertTrue(body.contains(SessionRequest.keyBytes, pivot: 2), "\(pieces)")
                XCTAssertFalse(body.contains(SessionRequest.constant("requestTypo"), pivot: 2), "\(pieces)")
                XCTAssertFalse(body.contains(SessionRequest.constant("\\u")), "\(pieces)")
            }
        }
    }

    /// Every length around the vector width, each sought byte at every
    /// place: the one pass finds it wherever it is, and nothing else.
    func testHoldsEitherAtEveryPlace() {
        for n in 0...70 {
            let plain = [UInt8](repeating: UInt8(ascii: "a"), count: n)
            plain.withUnsafeBytes { XCTAssertFalse(RequestBody.holdsEither(0x71, 0x5c, in: $0), "\(n)") }
            for at in 0..<n {
                for sought: UInt8 in [0x71, 0x5c] {
                    var bytes = plain
                    bytes[at] = sought
                    bytes.withUnsafeBytes { XCTAssertTrue(RequestBody.holdsEither(0x71, 0x5c, in: $0), "\(n) \(at)") }
                }
                var near = plain
                near[at] = 0x70  // one below 'q': no false hit
                near.withUnsafeBytes { XCTAssertFalse(RequestBody.holdsEither(0x71, 0x5c, in: $0), "\(n) \(at)") }
            }
        }
    }

    func testMayHoldIsSureOnlyForOneSmallRun() {
        withBody([Array("abc".utf8)]) { XCTAssertFalse($0.mayHold(0x71, 0x5c)) }
        withBody([Array("ab".utf8), Array("c".utf8)]) { XCTAssertTrue($0.mayHold(0x71, 0x5c)) }
        withBody([[UInt8](repeating: 0x61, count: RequestBody.smallBody + 1)]) { XCTAssertTrue($0.mayHold(0x71, 0x5c)) }
        withBody([[UInt8](repeating: 0x61, count: RequestBody.smallBody)]) { XCTAssertFalse($0.mayHold(0x71, 0x5c)) }
    }

    func testStartsLikeObjectAcrossPieces() {
        withBody([Array("  \n".utf8), [], Array(" {}".utf8)]) { XCTAssertTrue($0.startsLikeObject) }
        withBody([Array("  ".utf8), Array("[{}]".utf8)]) { XCTAssertFalse($0.startsLikeObject) }
        withBody([]) { XCTAssertFalse($0.startsLikeObject) }
    }

    func testClassificationIsTheSameInPieces() {
        let cases = [#"{"requestType": "NEW_SESSION"}"#, #" {"requestType":"CLOSE"} "#,
                     #"{"requestType": "OPEN"}"#, #"{"prompt": "x"}"#, "not json", #"{"request\u0054ype": "CLOSE"}"#]
        for text in cases {
            for pieces in splits(text) {
                let kind = withBody(pieces) { body -> String in
                    switch SessionRequest.classify(body) {
                    case .newSession: return "new"
                    case .close: return "close"
                    case .malformed: return "malformed"
                    case .invocation: return "invocation"
                    }
                }
                let whole: String
                switch text.withCString({ SessionRequest.classify(UnsafeRawBufferPointer(start: $0, count: text.utf8.count)) }) {
                case .newSession: whole = "new"
                case .close: whole = "close"
                case .malformed: whole = "malformed"
                case .invocation: whole = "invocation"
                }
                XCTAssertEqual(kind, whole, "\(text) in \(pieces.count) pieces")
            }
        }
    }

    func testParseReadsEveryPiece() {
        let text = #"{"prompt": "é✓ long text", "n": [1, 2, {"k": null}]}"#
        for pieces in splits(text) {
            withBody(pieces) { body in
                XCTAssertEqual(body.parse()?.dumped(), #"{"prompt":"é✓ long text","n":[1,2,{"k":null}]}"#)
                XCTAssertEqual(body.count, text.utf8.count)
            }
        }
        withBody([Array("{\"a\":".utf8), Array("}".utf8)]) { XCTAssertNil($0.parse()) }
    }

    func testLargeBodyInManyPieces() {
        let big = "{\"prompt\": \"" + String(repeating: "x", count: 200_000) + "\"}"
        let bytes = Array(big.utf8)
        let pieces = stride(from: 0, to: bytes.count, by: 8192).map { Array(bytes[$0..<min($0 + 8192, bytes.count)]) }
        withBody(pieces) { body in
            XCTAssertEqual(body.parse()?["prompt"]?.stringValue?.utf8.count, 200_000)
        }
    }
}
