import Glibc
import XCTest
@testable import SageMakerSessions

/// Counts up byte by byte: the first word gives bytes 00..07, the second 08..0f.
private struct CountingGenerator: RandomNumberGenerator {
    var words: [UInt64]
    var index = 0
    mutating func next() -> UInt64 {
        defer { index += 1 }
        return words[index % words.count]
    }
}

final class SessionIDTests: XCTestCase {
    func testCanonicalLowercaseUUIDIsAccepted() {
        XCTAssertTrue(SessionID.isCanonical("0f8fad5b-d9cb-469f-a165-70867728950e"))
        XCTAssertTrue(SessionID.isCanonical("00000000-0000-0000-0000-000000000000"))
        XCTAssertTrue(SessionID.isCanonical("abcdef01-2345-6789-abcd-ef0123456789"))
    }

    func testUppercaseIsRefused() {
        XCTAssertFalse(SessionID.isCanonical("0F8FAD5B-D9CB-469F-A165-70867728950E"))
        XCTAssertFalse(SessionID.isCanonical("0f8fad5b-d9cb-469f-a165-70867728950E"))
    }

    func testWrongLengthIsRefused() {
        XCTAssertFalse(SessionID.isCanonical("0f8fad5b-d9cb-469f-a165-70867728950"))
        XCTAssertFalse(SessionID.isCanonical("0f8fad5b-d9cb-469f-a165-70867728950ee"))
        XCTAssertFalse(SessionID.isCanonical("0f8fad5bd9cb469fa16570867728950e"))
        XCTAssertFalse(SessionID.isCanonical("{0f8fad5b-d9cb-469f-a165-70867728950e}"))
    }

    func testMisplacedDashesAreRefused() {
        XCTAssertFalse(SessionID.isCanonical("0f8fad5bd-9cb-469f-a165-70867728950e"))
        XCTAssertFalse(SessionID.isCanonical("0f8fad5b-d9cb-469f-a16570867728950e-"))
        XCTAssertFalse(SessionID.isCanonical("------------------------------------"))
        XCTAssertFalse(SessionID.isCanonical("0f8fad5b-d9cb-469f-a165_70867728950e"))
    }

    func testNonHexIsRefused() {
        XCTAssertFalse(SessionID.isCanonical("0f8fad5b-d9cb-469f-a165-70867728950g"))
        XCTAssertFalse(SessionID.isCanonical("0f8fad5b-d9cb-469f-a165-7086772895 e"))
    }

    func testPathTricksAreRefused() {
        XCTAssertFalse(SessionID.isCanonical("../etc"))
        let traversal = "../../../../../../../../../etc/passw"
        XCTAssertEqual(traversal.utf8.count, 36)
        XCTAssertFalse(SessionID.isCanonical(traversal))
        XCTAssertFalse(SessionID.isCanonical("0f8fad5b-d9cb-469f-a165-7086772/../e"))
        XCTAssertFalse(SessionID.isCanonical("/f8fad5b-d9cb-469f-a165-70867728950e"))
        XCTAssertFalse(SessionID.isCanonical("."))
        XCTAssertFalse(SessionID.isCanonical(".."))
    }

    func testEmptyIsRefused() {
        XCTAssertFalse(SessionID.isCanonical(""))
        XCTAssertFalse(SessionID.isCanonical([UInt8]()))
    }

    func testNULBytesAreRefused() {
        XCTAssertFalse(SessionID.isCanonical("0f8fad5b-d9cb-469f-a165-70867728950\0"))
        XCTAssertFalse(SessionID.isCanonical("\0f8fad5b-d9cb-469f-a165-70867728950e"))
        var bytes = Array("0f8fad5b-d9cb-469f-a165-70867728950e".utf8)
        XCTAssertTrue(SessionID.isCanonical(bytes))
        bytes[10] = 0
        XCTAssertFalse(SessionID.isCanonical(bytes))
    }

    func testMultibyteCharactersCountAsBytes() {
        // 35 ASCII bytes plus a two-byte character: 37 bytes, 36 characters.
        XCTAssertFalse(SessionID.isCanonical("0f8fad5b-d9cb-469f-a165-70867728950é"))
    }

    func testGenerateWithKnownRandomBytes() {
        var counting = CountingGenerator(words: [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908])
        XCTAssertEqual(SessionID.generate(using: &counting), "00010203-0405-4607-8809-0a0b0c0d0e0f")

        var zeros = CountingGenerator(words: [0])
        XCTAssertEqual(SessionID.generate(using: &zeros), "00000000-0000-4000-8000-000000000000")

        var ones = CountingGenerator(words: [UInt64.max])
        XCTAssertEqual(SessionID.generate(using: &ones), "ffffffff-ffff-4fff-bfff-ffffffffffff")
    }

    func testGeneratedIDsAreCanonicalVersion4() {
        for _ in 0..<500 {
            let id = SessionID.generate()
            XCTAssertTrue(SessionID.isCanonical(id), id)
            let bytes = Array(id.utf8)
            XCTAssertEqual(bytes.count, 36)
            XCTAssertEqual(bytes[14], UInt8(ascii: "4"), "version nibble of \(id)")
            XCTAssertTrue([UInt8(ascii: "8"), UInt8(ascii: "9"), UInt8(ascii: "a"), UInt8(ascii: "b")].contains(bytes[19]),
                          "variant nibble of \(id)")
        }
    }

    func testGeneratedIDsAreDistinct() {
        var seen = Set<String>()
        for _ in 0..<1000 { seen.insert(SessionID.generate()) }
        XCTAssertEqual(seen.count, 1000)
    }
}
