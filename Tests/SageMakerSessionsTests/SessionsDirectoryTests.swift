import Glibc
import XCTest

@testable import SageMakerSessions

/// A worker holds the sessions directory open; the path stays the truth.
final class SessionsDirectoryTests: TempDirectoryTestCase {
    var path: String { root + "/sessions" }

    func worker() throws -> SessionStore {
        XCTAssertEqual(mkdir(path, 0o755), 0)
        let store = SessionStore(root: path, expiration: 1200)
        store.startWorker(perTurn: true)
        return store
    }

    func isValid(_ lookup: SessionStore.Lookup) -> Bool {
        if case .valid = lookup { return true }
        return false
    }

    func testAWorkerMakesReadsAndClosesSessionsThroughTheDirectoryItHolds() throws {
        let store = try worker()
        let a = try store.create()
        XCTAssertEqual(TestFS.entries(path + "/" + a.id), [".expiration_ts"])
        store.endTurn()
        XCTAssertTrue(try isValid(store.lookup(a.id)))
        XCTAssertEqual(try store.close(a.id), .closed)
        XCTAssertEqual(TestFS.entries(path), [])
        XCTAssertEqual(store.directoryCount(), 0)
    }

    func testADirectoryReplacedAtThePathIsLetGoOfInTheNextTurn() throws {
        let store = try worker()
        let before = try store.create()
        store.endTurn()
        XCTAssertEqual(rename(path, root + "/old"), 0)
        XCTAssertEqual(mkdir(path, 0o755), 0)
        let written = SessionStore(root: path, expiration: 1200)  // another process
        let theirs = try written.create()

        let after = try store.create()
        XCTAssertFalse(after.remadeRoot)
        XCTAssertEqual(TestFS.entries(path), [after.id, theirs.id].sorted())
        XCTAssertEqual(TestFS.entries(root + "/old"), [before.id])
        XCTAssertTrue(try isValid(store.lookup(theirs.id)))
        XCTAssertEqual(try store.lookup(before.id), .notFound)
        XCTAssertEqual(try store.close(after.id), .closed)
        XCTAssertEqual(TestFS.entries(path), [theirs.id])
        XCTAssertEqual(TestFS.entries(root + "/old"), [before.id])
    }

    func testADirectoryRemovedAndMadeAgainInTheSameTurnIsFoundByItsPath() throws {
        let store = try worker()
        _ = try store.create()
        TestFS.removeTree(path)
        XCTAssertEqual(mkdir(path, 0o755), 0)
        let after = try store.create()
        XCTAssertFalse(after.remadeRoot)
        XCTAssertEqual(TestFS.entries(path), [after.id])
    }

    func testADirectoryRemovedInTheSameTurnIsMadeAgain() throws {
        let store = try worker()
        _ = try store.create()
        TestFS.removeTree(path)
        let after = try store.create()
        XCTAssertTrue(after.remadeRoot)
        XCTAssertEqual(TestFS.entries(path), [after.id])
        store.endTurn()
        XCTAssertTrue(try isValid(store.lookup(after.id)))
    }
}
