import Glibc
import XCTest
@testable import SageMakerSessions

final class UTCTimestampTests: XCTestCase {
    func testEpoch() {
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: 0), "1970-01-01T00:00:00Z")
    }

    func testLeapDays() {
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: 1_709_164_800), "2024-02-29T00:00:00Z")
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: 951_782_400), "2000-02-29T00:00:00Z")
        // 2100 is not a leap year: Feb 28 is followed by Mar 1.
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: 4_107_456_000), "2100-02-28T00:00:00Z")
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: 4_107_542_400), "2100-03-01T00:00:00Z")
    }

    func testYearEnd() {
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: 1_704_067_199), "2023-12-31T23:59:59Z")
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: 1_704_067_200), "2024-01-01T00:00:00Z")
    }

    func testOrdinaryInstant() {
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: 1_700_001_200), "2023-11-14T22:33:20Z")
    }

    func testPaddingOfYearsAndFarFuture() {
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: 253_402_300_799), "9999-12-31T23:59:59Z")
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: -62_135_596_800), "0001-01-01T00:00:00Z")
    }

    func testFractionalSecondsAreTruncatedNotRounded() {
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: 1_704_067_199.999), "2023-12-31T23:59:59Z")
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: 0.5), "1970-01-01T00:00:00Z")
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: 59.9999), "1970-01-01T00:00:59Z")
    }

    func testNegativeSeconds() {
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: -1), "1969-12-31T23:59:59Z")
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: -86_400), "1969-12-31T00:00:00Z")
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: -86_401), "1969-12-30T23:59:59Z")
        // Truncation is towards the past, as Python's datetime does it.
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: -0.5), "1969-12-31T23:59:59Z")
    }

    func testJSONNumberHasSixDecimals() {
        XCTAssertEqual(UTCTimestamp.jsonNumber(unixSeconds: 0), "0.000000")
        XCTAssertEqual(UTCTimestamp.jsonNumber(unixSeconds: 1.25), "1.250000")
        XCTAssertEqual(UTCTimestamp.jsonNumber(unixSeconds: 1_700_001_200.5), "1700001200.500000")
        XCTAssertEqual(UTCTimestamp.jsonNumber(unixSeconds: 1_700_001_200), "1700001200.000000")
        XCTAssertEqual(UTCTimestamp.jsonNumber(unixSeconds: 1e12), "1000000000000.000000")
        XCTAssertEqual(UTCTimestamp.jsonNumber(unixSeconds: 0.000001), "0.000001")
        XCTAssertEqual(UTCTimestamp.jsonNumber(unixSeconds: -1.5), "-1.500000")
    }

    func testJSONNumberRoundsToTheMicrosecond() {
        XCTAssertEqual(UTCTimestamp.jsonNumber(unixSeconds: 1.0000004), "1.000000")
        XCTAssertEqual(UTCTimestamp.jsonNumber(unixSeconds: 1.9999996), "2.000000")
    }

    func testJSONNumberParsesBack() {
        for value in [0, 1.25, 1_700_001_200.5, 1_700_001_200.123456, 1e12, 42] as [Double] {
            let text = UTCTimestamp.jsonNumber(unixSeconds: value)
            guard let parsed = JSON.parse(text)?.numberValue else {
                XCTFail("\(text) does not parse as a JSON number")
                continue
            }
            XCTAssertEqual(parsed, value, accuracy: 1e-6, text)
        }
    }

    func testJSONNumberKeepsTheSignBetweenMinusOneAndZero() throws {
        let text = UTCTimestamp.jsonNumber(unixSeconds: -0.5)
        XCTAssertEqual(text, "-0.500000")
        XCTAssertEqual(JSON.parse(text)?.numberValue, -0.5)
    }

    func testJSONNumberOfHugeTimestampDoesNotTrap() throws {
        XCTAssertTrue(childExitsCleanly { _ = UTCTimestamp.jsonNumber(unixSeconds: 1e13) })
        XCTAssertTrue(childExitsCleanly { _ = UTCTimestamp.format(unixSeconds: 1e300) })
        XCTAssertTrue(childExitsCleanly { _ = UTCTimestamp.format(unixSeconds: .nan) })
        XCTAssertEqual(JSON.parse(UTCTimestamp.jsonNumber(unixSeconds: 1e13))?.numberValue, 1e13)
    }

    /// The byte-by-byte writers agree with plain string formatting.
    func testFastFormattingMatchesPlainFormatting() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let t = Double(Int64.random(in: -62_135_596_800...253_402_300_799, using: &rng))
                + Double.random(in: 0..<1, using: &rng)
            let whole = Int64(t.rounded(.down))
            let days = whole >= 0 ? whole / 86_400 : (whole - 86_399) / 86_400
            let secs = whole - days * 86_400
            let (y, m, d) = UTCTimestamp.civil(fromDays: days)
            let p = UTCTimestamp.pad
            XCTAssertEqual(UTCTimestamp.format(unixSeconds: t),
                           "\(p(y, 4))-\(p(m, 2))-\(p(d, 2))T\(p(secs / 3600, 2)):\(p(secs / 60 % 60, 2)):\(p(secs % 60, 2))Z")
            let micros = Int64((t * 1_000_000).rounded())
            XCTAssertEqual(UTCTimestamp.jsonNumber(unixSeconds: t),
                           "\(micros < 0 ? "-" : "")\(micros.magnitude / 1_000_000).\(p(Int64(micros.magnitude % 1_000_000), 6))")
        }
        XCTAssertEqual(UTCTimestamp.jsonNumber(unixSeconds: -1.5), "-1.500000")
        XCTAssertEqual(UTCTimestamp.jsonNumber(unixSeconds: 8.9e12), "8900000000000.000000")
        XCTAssertEqual(UTCTimestamp.format(unixSeconds: 1e15), UTCTimestamp.format(unixSeconds: 2e15))
    }
}
