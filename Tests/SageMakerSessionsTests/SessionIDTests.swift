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

    /// Any 36 bytes make a key to look a session up with; only a canonical
    /// id makes one that is canonical, the only kind ever stored or used
    /// as a path.
    func testOnlyCanonicalIDsMakeCanonicalKeys() throws {
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e"
        let key = try XCTUnwrap(Array(id.utf8).withUnsafeBytes { SessionKey(unchecked: $0) })
        XCTAssertTrue(key.isCanonical)
        XCTAssertEqual(key, SessionKey(id))
        for other in [id.uppercased(), "0f8fad5b-d9cb-469f-a165-70867728950g", "0f8fad5bxd9cb-469f-a165-70867728950e",
                      "0f8fad5b-d9cb-469f-a165-70867728950\u{e9}",
                      String(repeating: "-", count: 36), String(repeating: "0", count: 36)] {
            let bytes = Array(other.utf8.prefix(36))
            let unchecked = try XCTUnwrap(bytes.withUnsafeBytes { SessionKey(unchecked: $0) }, other)
            XCTAssertFalse(unchecked.isCanonical, other)
            XCTAssertNil(bytes.withUnsafeBytes { SessionKey($0) }, other)
            XCTAssertNotEqual(unchecked, key, other)
        }
        XCTAssertNil(Array(id.utf8.dropLast()).withUnsafeBytes { SessionKey(unchecked: $0) })
        XCTAssertNil(Array((id + "0").utf8).withUnsafeBytes { SessionKey(unchecked: $0) })
    }

    /// Generated ids spread over the cache's table as random values would:
    /// 4,096 of them fill more than half of 4,096 buckets (about 63% expected).
    func testKeysOfGeneratedIDsSpreadOverTheTable() throws {
        var buckets = Set<Int>()
        for _ in 0..<4096 {
            let key = try XCTUnwrap(SessionKey(SessionID.generate()))
            buckets.insert(key._rawHashValue(seed: 12345) & 4095)
        }
        XCTAssertGreaterThan(buckets.count, 2048)
    }

    /// Any one byte changed to any other value gives another key or none.
    func testKeyChangesWithEveryByte() {
        let id = Array("0f8fad5b-d9cb-469f-a165-70867728950e".utf8)
        let key = id.withUnsafeBytes { SessionKey($0) }
        for i in 0..<id.count {
            for v in 0...255 where UInt8(v) != id[i] {
                var other = id
                other[i] = UInt8(v)
                let changed = other.withUnsafeBytes { SessionKey($0) }
                XCTAssertNotEqual(changed, key, "byte \(i) = \(v)")
                let isHex = (0x30...0x39).contains(v) || (0x61...0x66).contains(v)
                XCTAssertEqual(changed != nil, isHex && ![8, 13, 18, 23].contains(i), "byte \(i) = \(v)")
            }
        }
    }
}

final class RandomBytesTests: XCTestCase {
    /// A child forked after the parent drew from the pool draws other bytes.
    func testAForkedChildDrawsOtherBytes() throws {
        var parent = RandomBytes()
        _ = parent.next()
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        let pid = fork()
        if pid == 0 {
            var child = RandomBytes()
            var word = child.next()
            _ = write(fds[1], &word, 8)
            _exit(0)
        }
        XCTAssertGreaterThan(pid, 0)
        var fromChild: UInt64 = 0
        XCTAssertEqual(read(fds[0], &fromChild, 8), 8)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        close(fds[0])
        close(fds[1])
        let next = parent.next()
        XCTAssertNotEqual(fromChild, next, "the child repeated the parent's next bytes")
        XCTAssertNotNil(RandomBytes.page, "this kernel wipes the page on fork")
    }

    func testManyDrawsCrossRefills() {
        var rng = RandomBytes()
        var seen = Set<UInt64>()
        for _ in 0..<5000 { seen.insert(rng.next()) }
        XCTAssertEqual(seen.count, 5000)
    }
}
