import XCTest
@testable import SageMakerSessions

final class RequestScreenTests: XCTestCase {
    private func check(_ method: String, cl: Bool = false, te: Bool = false) -> SessionError? {
        Array(method.utf8).withUnsafeBytes { RequestScreen.check(method: $0, contentLength: cl, transferEncoding: te) }
    }

    func testOrdinaryRequestsGoOn() {
        XCTAssertNil(check("POST", cl: true))
        XCTAssertNil(check("POST", te: true))
        XCTAssertNil(check("GET"))
        XCTAssertNil(check("connect"))  // not CONNECT: nginx's methods are case-sensitive
    }

    func testBothLengthsAre400() {
        XCTAssertEqual(check("POST", cl: true, te: true), .ambiguousFraming)
        XCTAssertEqual(SessionError.ambiguousFraming.answer.status, 400)
        XCTAssertEqual(SessionError.ambiguousFraming.answer.outcome, SessionOutcome.none)
    }

    func testConnectAndTraceAre405WithAllow() {
        for method in ["CONNECT", "TRACE"] {
            let answer = check(method)?.answer
            XCTAssertEqual(answer?.status, 405)
            XCTAssertEqual(answer?.header?.name, "Allow")
            XCTAssertEqual(answer?.header?.value, RequestScreen.allowed)
        }
    }
}
