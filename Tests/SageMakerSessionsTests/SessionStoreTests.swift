import Glibc
import XCTest
@testable import SageMakerSessions

final class SessionStoreTests: TempDirectoryTestCase {
    private let t0: Double = 1_700_000_000

    /// Its sweep's clock stands still: a tick examines a whole batch, however
    /// slow the machine running the tests.
    private func store(expiration: Int64 = 1200) -> SessionStore {
        SessionStore(root: root, expiration: expiration, maxSessions: Configuration.defaultMaxSessions,
                     sweepClock: { 0 })
    }

    /// A session directory written the way the Python library writes one.
    private func writeByHand(_ id: String, expirationText: String?, extraFiles: [String: String] = [:]) {
        XCTAssertTrue(TestFS.mkdir(root + "/" + id))
        if let expirationText {
            XCTAssertTrue(TestFS.write(root + "/" + id + "/.expiration_ts", expirationText))
        }
        for (name, text) in extraFiles {
            XCTAssertTrue(TestFS.write(root + "/" + id + "/" + name, text))
        }
    }

    // MARK: create

    func testCreateWritesExpirationFile() throws {
        let s = store()
        let created = try s.create(now: t0 + 0.25)
        XCTAssertTrue(SessionID.isCanonical(created.id), created.id)
        XCTAssertEqual(created.expiresAt, 1_700_001_200.25)
        XCTAssertEqual(s.directory(of: created.id), root + "/" + created.id)
        XCTAssertTrue(TestFS.isDirectory(root + "/" + created.id))
        XCTAssertEqual(TestFS.entries(root + "/" + created.id), [".expiration_ts"])
        XCTAssertEqual(TestFS.read(root + "/" + created.id + "/.expiration_ts"), "1700001200.250000")
        // No removal entries left behind.
        XCTAssertEqual(TestFS.entries(root), [created.id])
    }

    func testCreateWithGivenID() throws {
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e"
        let created = try store(expiration: 60).create(now: t0, id: id)
        XCTAssertEqual(created, SessionStore.Created(id: id, expiresAt: t0 + 60))
        XCTAssertEqual(TestFS.read(root + "/" + id + "/.expiration_ts"), "1700000060.000000")
    }

    func testCreateOfAnExistingIDFailsAndLeavesNoStaging() throws {
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e"
        let s = store()
        _ = try s.create(now: t0, id: id)
        XCTAssertThrowsError(try s.create(now: t0 + 500, id: id)) { error in
            let code = (error as? SystemError)?.code
            XCTAssertTrue(code == ENOTEMPTY || code == EEXIST, "\(error)")
        }
        XCTAssertEqual(TestFS.entries(root), [id])
        XCTAssertEqual(TestFS.read(root + "/" + id + "/.expiration_ts"), "1700001200.000000")
    }

    /// A worker out of file descriptors (`worker_rlimit_nofile` reached) can
    /// make the directory but not open its file: the directory goes too,
    /// without needing a descriptor to list it.
    func testACreateThatCannotOpenItsFileLeavesNoDirectory() throws {
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e"
        let s = store()
        var limit = rlimit()
        XCTAssertEqual(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit), 0)
        var none = limit
        none.rlim_cur = 0
        XCTAssertEqual(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &none), 0)
        let failure: SystemError?
        do {
            _ = try s.create(now: t0, id: id)
            failure = nil
        } catch {
            failure = error
        }
        XCTAssertEqual(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit), 0)
        XCTAssertEqual(failure, SystemError(EMFILE))
        XCTAssertEqual(TestFS.entries(root), [])
    }

    func testCreateGivesDistinctIDs() throws {
        let s = store()
        let a = try s.create(now: t0)
        let b = try s.create(now: t0)
        XCTAssertNotEqual(a.id, b.id)
        XCTAssertEqual(TestFS.entries(root), [a.id, b.id].sorted())
    }

    func testCreateMakesTheRootAgainWhenItWasRemoved() throws {
        // removed while nginx runs (by hand, a cleanup job): made again, as at start-up
        let s = SessionStore(root: root + "/missing/sessions", expiration: 1200)
        let created = try s.create(now: t0)
        XCTAssertTrue(created.remadeRoot)
        XCTAssertEqual(TestFS.entries(root + "/missing/sessions"), [created.id])
        XCTAssertEqual(try s.lookup(created.id, now: t0), .valid(expiresAt: t0 + 1200))
        XCTAssertFalse(try s.create(now: t0).remadeRoot)
    }

    func testCreateFailsWhenTheRootCannotBeMade() {
        XCTAssertTrue(TestFS.write(root + "/file", "x"))
        let s = SessionStore(root: root + "/file/sessions", expiration: 1200)
        XCTAssertThrowsError(try s.create(now: t0)) { error in
            XCTAssertEqual(error as? SystemError, SystemError(ENOTDIR))
            XCTAssertEqual((error as? SystemError)?.description, "Not a directory")
        }
        XCTAssertEqual(TestFS.entries(root), ["file"])
    }

    func testCreateWithHugeExpirationDoesNotTrap() throws {
        // Configuration refuses such lifetimes; the store must not trap on them anyway.
        XCTAssertNil(Configuration.parseExpiration("10000000000000"))
        let dir = root
        XCTAssertTrue(childExitsCleanly {
            _ = try? SessionStore(root: dir, expiration: 10_000_000_000_000).create(now: 1_700_000_000)
        })
    }

    // MARK: lookup

    func testLookupValid() throws {
        let s = store()
        let created = try s.create(now: t0)
        XCTAssertEqual(try s.lookup(created.id, now: t0 + 1), .valid(expiresAt: t0 + 1200))
        // Exactly at the expiry instant the session is still valid.
        XCTAssertEqual(try s.lookup(created.id, now: t0 + 1200), .valid(expiresAt: t0 + 1200))
        XCTAssertTrue(TestFS.isDirectory(root + "/" + created.id))
    }

    func testLookupUnknownID() throws {
        XCTAssertEqual(try store().lookup("0f8fad5b-d9cb-469f-a165-70867728950e", now: t0), .notFound)
    }

    func testLookupNonCanonicalIDIsNotFound() throws {
        let s = store()
        // Even when something by that name exists, it is never looked at.
        let upper = "0F8FAD5B-D9CB-469F-A165-70867728950E"
        writeByHand(upper, expirationText: "1e12")
        XCTAssertTrue(TestFS.isDirectory(root + "/" + upper))

        XCTAssertTrue(TestFS.mkdir(root + "/x"))
        XCTAssertTrue(TestFS.write(root + "/x/.expiration_ts", "1e12"))
        let long = String(repeating: "x", count: 34)  // "./" + long is as long as an id
        writeByHand(long, expirationText: "1e12")
        let last = root.split(separator: "/").last.map(String.init) ?? ""
        for id in [upper, "./" + long, "../x", "x", "", ".", "..", "/", "../" + last + "/x"] {
            XCTAssertEqual(try s.lookup(id, now: t0), .notFound, id)
            // as a header's bytes, the form every request uses
            XCTAssertEqual(try Array(id.utf8).withUnsafeBytes { try s.lookup($0, now: t0) }, .notFound, id)
        }
    }

    func testLookupExpiredRemovesTheDirectory() throws {
        let s = store()
        let created = try s.create(now: t0)
        XCTAssertEqual(try s.lookup(created.id, now: t0 + 1200.5), .expired)
        XCTAssertFalse(TestFS.exists(root + "/" + created.id))
        XCTAssertEqual(TestFS.entries(root), [])
        // Once removed it is simply gone.
        XCTAssertEqual(try s.lookup(created.id, now: t0 + 1200.5), .notFound)
    }

    func testPythonWrittenSessionIsValid() throws {
        let s = store()
        let a = "11111111-2222-4333-8444-555555555555"
        let b = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
        let c = "01234567-89ab-4def-8123-456789abcdef"
        writeByHand(a, expirationText: "1e12")
        writeByHand(b, expirationText: "1700001200.1234567", extraFiles: ["history": "[\"hi\"]", "a-b": "{\"x\":1}"])
        writeByHand(c, expirationText: "1700001200\n")
        XCTAssertEqual(try s.lookup(a, now: t0), .valid(expiresAt: 1e12))
        XCTAssertEqual(try s.lookup(b, now: t0), .valid(expiresAt: 1_700_001_200.1234567))
        XCTAssertEqual(try s.lookup(c, now: t0), .valid(expiresAt: 1_700_001_200))
        XCTAssertEqual(try s.lookup(b, now: 1_700_001_200.2), .expired)
        XCTAssertFalse(TestFS.exists(root + "/" + b))
    }

    func testDirectoryWithoutExpirationFileIsNotFound() throws {
        let s = store()
        let id = "11111111-2222-4333-8444-555555555555"
        writeByHand(id, expirationText: nil, extraFiles: ["k": "1"])
        XCTAssertEqual(try s.lookup(id, now: t0), .notFound)
        // Possibly a create in progress elsewhere: left alone.
        XCTAssertTrue(TestFS.isDirectory(root + "/" + id))
    }

    func testUnreadableExpirationContentIsNotFound() throws {
        let s = store()
        let cases = ["", "abc", "\"1e12\"", "{}", "1e400", String(repeating: " ", count: 5000) + "1e12"]
        for (i, text) in cases.enumerated() {
            let id = "11111111-2222-4333-8444-55555555555\(i)"
            writeByHand(id, expirationText: text)
            XCTAssertEqual(try s.lookup(id, now: t0), .notFound, text)
        }
    }

    func testSessionEntryThatIsAFileIsNotFound() throws {
        let id = "11111111-2222-4333-8444-555555555555"
        XCTAssertTrue(TestFS.write(root + "/" + id, "1e12"))
        XCTAssertEqual(try store().lookup(id, now: t0), .notFound)
    }

    /// Not in the format: no session, no storage failure; the sweep removes
    /// such a directory once it is older than a create in progress can be.
    func testExpirationThatIsADirectoryOrASymlinkIsNotFoundAndSwept() throws {
        let s = store()
        let asDirectory = "11111111-2222-4333-8444-555555555555"
        let asLink = "11111111-2222-4333-8444-555555555556"
        XCTAssertTrue(TestFS.mkdir(root + "/" + asDirectory))
        XCTAssertTrue(TestFS.mkdir(root + "/" + asDirectory + "/.expiration_ts"))
        XCTAssertTrue(TestFS.mkdir(root + "/" + asLink))
        XCTAssertTrue(TestFS.write(root + "/target", "1e12"))
        XCTAssertEqual(symlink(root + "/target", root + "/" + asLink + "/.expiration_ts"), 0)
        for id in [asDirectory, asLink] {
            XCTAssertEqual(try s.lookup(id, now: t0), .notFound, id)
            XCTAssertEqual(try s.close(id, now: t0), .notFound, id)
        }
        _ = sweepUntilPassEnds(s, now: WallClock.now().rounded(.down) + 100_000)
        XCTAssertEqual(TestFS.entries(root), ["target"])
        XCTAssertTrue(TestFS.exists(root + "/target"))
    }

    /// Opening a FIFO for reading waits for a writer: a worker must not.
    func testExpirationThatIsAFIFOIsNotFoundAtOnce() throws {
        let id = "11111111-2222-4333-8444-555555555555"
        XCTAssertTrue(TestFS.mkdir(root + "/" + id))
        XCTAssertEqual(mkfifo(root + "/" + id + "/.expiration_ts", 0o644), 0)
        alarm(10)  // a wait kills the test run instead of hanging it
        defer { alarm(0) }
        XCTAssertEqual(try store().lookup(id, now: t0), .notFound)
    }

    func testSessionRemovedByAnotherProcessIsGone() throws {
        let s = store()
        let created = try s.create(now: t0)
        TestFS.removeTree(root + "/" + created.id)
        XCTAssertEqual(try s.lookup(created.id, now: t0), .notFound)
    }

    // MARK: close

    func testCloseRemovesTheDirectory() throws {
        let s = store()
        let created = try s.create(now: t0)
        XCTAssertEqual(try s.close(created.id, now: t0 + 10), .closed)
        XCTAssertFalse(TestFS.exists(root + "/" + created.id))
        XCTAssertEqual(TestFS.entries(root), [])
        XCTAssertEqual(try s.close(created.id, now: t0 + 10), .notFound)
        XCTAssertEqual(try s.lookup(created.id, now: t0 + 10), .notFound)
    }

    func testCloseRemovesPythonKeyFilesToo() throws {
        let s = store()
        let id = "11111111-2222-4333-8444-555555555555"
        writeByHand(id, expirationText: "1e12", extraFiles: ["history": "[1,2]", "cache-x": "null"])
        XCTAssertTrue(TestFS.mkdir(root + "/" + id + "/nested"))
        XCTAssertTrue(TestFS.write(root + "/" + id + "/nested/f", "1"))
        XCTAssertEqual(try s.close(id, now: t0), .closed)
        XCTAssertEqual(TestFS.entries(root), [])
    }

    func testCloseOfExpiredSession() throws {
        let s = store()
        let created = try s.create(now: t0)
        XCTAssertEqual(try s.close(created.id, now: t0 + 5000), .expired)
        XCTAssertEqual(TestFS.entries(root), [])
        XCTAssertEqual(try s.close(created.id, now: t0 + 5000), .notFound)
    }

    func testCloseOfNonCanonicalID() throws {
        XCTAssertTrue(TestFS.mkdir(root + "/x"))
        XCTAssertTrue(TestFS.write(root + "/x/.expiration_ts", "1e12"))
        XCTAssertEqual(try store().close("x", now: t0), .notFound)
        XCTAssertEqual(try store().close("../x", now: t0), .notFound)
        XCTAssertTrue(TestFS.isDirectory(root + "/x"))
    }

    // MARK: sweep

    private func sweepUntilPassEnds(_ s: SessionStore, now: Double) -> (delay: UInt64, steps: Int) {
        var steps = 0
        var delay: UInt64 = 0
        repeat {
            delay = s.sweepStep(now: now)
            steps += 1
        } while delay < UInt64(s.sweep.interval * 1000) && steps < 10_000
        return (delay, steps)
    }

    func testSweepRemovesExpiredAndStaleEntriesAndKeepsValidOnes() throws {
        let s = store()
        // Later than any real clock, so every entry's mtime is older than the grace period.
        let now = (WallClock.now()).rounded(.down) + 100_000
        let valid = try s.create(now: now)
        let expired = try s.create(now: now - 5000)
        let python = "11111111-2222-4333-8444-555555555555"
        writeByHand(python, expirationText: UTCTimestamp.jsonNumber(unixSeconds: now + 10))
        let noTimestamp = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
        writeByHand(noTimestamp, expirationText: nil)
        let gone = ".gone-" + valid.id + "-abc"
        writeByHand(gone, expirationText: "1e12", extraFiles: ["k": "1"])
        XCTAssertTrue(TestFS.mkdir(root + "/unrelated"))
        XCTAssertTrue(TestFS.write(root + "/.hidden", "x"))

        let (delay, _) = sweepUntilPassEnds(s, now: now)
        XCTAssertEqual(delay, 60_000)  // a pass every 120 s / 10, capped at 60 s
        XCTAssertEqual(TestFS.entries(root), [".hidden", python, valid.id, "unrelated"].sorted())
        XCTAssertEqual(TestFS.entries(root + "/" + valid.id), [".expiration_ts"])
    }

    func testSweepKeepsFreshWorkInProgressButRemovesGoneEntries() throws {
        let s = store()
        let now = WallClock.now()
        let noTimestamp = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
        writeByHand(noTimestamp, expirationText: nil)
        writeByHand(".gone-aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee-1", expirationText: "1")
        XCTAssertTrue(TestFS.write(root + "/.gone-file", "x"))
        _ = sweepUntilPassEnds(s, now: now)
        XCTAssertEqual(TestFS.entries(root), [noTimestamp])
    }

    func testSweepWaitsBetweenPasses() throws {
        let s = store()
        let now = (WallClock.now()).rounded(.down) + 100_000
        let created = try s.create(now: now - 5000)
        XCTAssertEqual(s.sweepStep(now: now), 60_000)
        XCTAssertEqual(TestFS.entries(root), [])
        // Before the next pass is due: only the remaining wait, nothing examined.
        let later = try s.create(now: now - 5000)
        XCTAssertEqual(s.sweepStep(now: now + 30), 30_000)
        XCTAssertEqual(TestFS.entries(root), [later.id])
        XCTAssertEqual(s.sweepStep(now: now + 60), 60_000)
        XCTAssertEqual(TestFS.entries(root), [])
        XCTAssertNotEqual(created.id, later.id)
    }

    func testSweepWorksInBatches() throws {
        let s = store()
        let now = (WallClock.now()).rounded(.down) + 100_000
        for _ in 0..<150 { _ = try s.create(now: now - 5000) }
        let keep = try s.create(now: now)
        // 151 sessions: the first batch of 16 (with . and ..) is not the end;
        // the 135 left take 9 more ticks, spread over the 30 s left
        XCTAssertEqual(s.sweepStep(now: now), 3_333)
        let (delay, steps) = sweepUntilPassEnds(s, now: now)
        XCTAssertEqual(delay, 60_000)
        XCTAssertGreaterThanOrEqual(steps, 2)
        XCTAssertEqual(TestFS.entries(root), [keep.id])
    }

    func testAPassIsSpreadOverHalfTheIntervalButTicksAtMostEveryMillisecond() {
        XCTAssertEqual(ExpirySweep.pace(entries: 1, perTick: 16, within: 30), 30_000)
        XCTAssertEqual(ExpirySweep.pace(entries: 10_000, perTick: 16, within: 30), 48)
        XCTAssertEqual(ExpirySweep.pace(entries: 100_000, perTick: 16, within: 30), 4)
        XCTAssertEqual(ExpirySweep.pace(entries: 480_000, perTick: 16, within: 30), 1)
        XCTAssertEqual(ExpirySweep.pace(entries: 5_000_000, perTick: 16, within: 30), 1)
        XCTAssertEqual(ExpirySweep.pace(entries: 100_000, perTick: 16, within: 0.5), 1)
        // ticks cut short by their time budget come more often
        XCTAssertEqual(ExpirySweep.pace(entries: 10_000, perTick: 4, within: 30), 12)
        // a pass that is behind
        XCTAssertEqual(ExpirySweep.pace(entries: 10_000, perTick: 16, within: -2), 1)
    }

    func testALargePassIsSpreadOverUpToTwentySecondsWhateverTheInterval() {
        // few entries: half the interval, as before
        XCTAssertEqual(ExpirySweep.span(entries: 1_000, workers: 1, interval: 2), 1)
        XCTAssertEqual(ExpirySweep.span(entries: 1_000, workers: 1, interval: 60), 30)
        // 100k at 5,000 a second a worker: 20 s with one, 5 s with four
        XCTAssertEqual(ExpirySweep.span(entries: 100_000, workers: 1, interval: 2), 20)
        XCTAssertEqual(ExpirySweep.span(entries: 100_000, workers: 4, interval: 2), 5)
        // never longer than 20 s, unless half the interval is
        XCTAssertEqual(ExpirySweep.span(entries: 1_000_000, workers: 1, interval: 2), 20)
        XCTAssertEqual(ExpirySweep.span(entries: 1_000_000, workers: 1, interval: 60), 30)
    }

    func testATickReadsWhatEndsThePassOnTimeWhereAWholeMillisecondIsTooLong() {
        // 100k in 20 s, a tick a millisecond: 5 a tick, not a batch of 16
        XCTAssertEqual(ExpirySweep.quota(entries: 100_000, pause: 1, within: 20, most: 16), 5)
        XCTAssertEqual(ExpirySweep.quota(entries: 100_000, pause: 1, within: 5, most: 64), 20)
        // a long pause: a whole batch
        XCTAssertEqual(ExpirySweep.quota(entries: 1_000, pause: 16, within: 1, most: 16), 16)
        // at least one; all it may once the time is up
        XCTAssertEqual(ExpirySweep.quota(entries: 1, pause: 1, within: 20, most: 16), 1)
        XCTAssertEqual(ExpirySweep.quota(entries: 100_000, pause: 1, within: -1, most: 16), 16)
        XCTAssertEqual(ExpirySweep.quota(entries: 10_000_000, pause: 1, within: 20, most: 16), 16)
    }

    /// Each read of the clock finds 60 µs gone: a tick stops after two
    /// entries (its budget is 100 µs), well before its batch of 16.
    func testATickStopsWhenItsTimeIsSpent() throws {
        var ticks: UInt64 = 0
        let s = SessionStore(root: root, expiration: 1200, maxSessions: 100, sweepClock: {
            defer { ticks += 1 }
            return ticks * 60_000
        })
        let now = (WallClock.now()).rounded(.down) + 100_000
        for _ in 0..<20 { _ = try s.create(now: now - 5000) }
        // 22 entries with . and .., two a tick, then the tick that finds the end
        let (delay, steps) = sweepUntilPassEnds(s, now: now)
        XCTAssertEqual(delay, 60_000)
        XCTAssertEqual(steps, 12)
        XCTAssertEqual(TestFS.entries(root), [])
    }

    /// With a graveyard (the shim's thread pool), the sweep only renames:
    /// expired sessions leave the sessions directory for `.graveyard`, are
    /// counted for the shim's task, and the graveyard is no session.
    func testWithAGraveyardTheSweepBuriesExpiredSessions() throws {
        let s = store()
        s.graveyard = true
        let now = (WallClock.now()).rounded(.down) + 100_000
        var expired: [String] = []
        for _ in 0..<5 { expired.append(try s.create(now: now - 5000).id) }
        let live = try s.create(now: now).id
        _ = sweepUntilPassEnds(s, now: now)
        XCTAssertEqual(TestFS.entries(root).sorted(), [SessionStore.graveyardName, live].sorted())
        // in this worker's own part of the graveyard, named by its pid
        let own = SessionStore.graveyardName + "/" + String(getpid())
        XCTAssertEqual(TestFS.entries(root + "/" + SessionStore.graveyardName), [String(getpid())])
        let buried = TestFS.entries(root + "/" + own)
        XCTAssertEqual(buried.count, 5)
        for id in expired {
            XCTAssertEqual(buried.filter { $0.hasPrefix(id + "-") }.count, 1)
            XCTAssertEqual(try s.lookup(id, now: now), .notFound)
        }
        XCTAssertEqual(s.takeBuried(), 5)
        XCTAssertEqual(s.takeBuried(), 0)
        // the graveyard is a subdirectory, not a session
        XCTAssertEqual(s.directoryCount(), 1)
        // emptied and removed by the thread: counted again as the link count says
        for name in buried { try FileSystem.removeTree(root + "/" + own + "/" + name) }
        XCTAssertEqual(rmdir(root + "/" + own), 0)
        s.endTurn()
        XCTAssertEqual(s.directoryCount(), 1)
        // a part removed by its thread is made again at the next burial
        let more = try s.create(now: now - 5000).id
        s.endTurn()
        _ = sweepUntilPassEnds(s, now: now + 500)
        XCTAssertEqual(TestFS.entries(root + "/" + own).filter { $0.hasPrefix(more + "-") }.count, 1)
        for name in TestFS.entries(root + "/" + own) { try FileSystem.removeTree(root + "/" + own + "/" + name) }
        XCTAssertEqual(rmdir(root + "/" + own), 0)
        XCTAssertEqual(rmdir(root + "/" + SessionStore.graveyardName), 0)
        s.endTurn()
        XCTAssertEqual(s.directoryCount(), 1)
        // a pass that finds a graveyard left behind asks for it to be emptied
        XCTAssertEqual(mkdir(root + "/" + SessionStore.graveyardName, 0o700), 0)
        s.endTurn()
        _ = sweepUntilPassEnds(s, now: now + 1000)
        XCTAssertGreaterThan(s.takeBuried(), 0)
    }

    /// The graveyard is no session at the limit either, whichever worker's
    /// sweep made it: a store that never buried anything does not count it.
    func testAtTheLimitAGraveyardIsNoSession() throws {
        let s = SessionStore(root: root, expiration: 1200, maxSessions: 2)
        _ = try s.create()
        XCTAssertEqual(mkdir(root + "/" + SessionStore.graveyardName, 0o700), 0)
        s.endTurn()
        XCTAssertEqual(s.directoryCount(), 1)
        _ = try s.create()
        XCTAssertThrowsError(try s.create()) { XCTAssertEqual($0 as? SystemError, .limitReached) }
    }

    /// Workers share a pass by the names' hash: each sweeps its own part,
    /// no entry is examined by two, and together they sweep them all.
    func testWorkersShareAPass() throws {
        let stores = (0..<3).map { worker -> SessionStore in
            let s = store()
            s.sweepShare = SweepShare(worker: worker, workers: 3)
            return s
        }
        let now = (WallClock.now()).rounded(.down) + 100_000
        var expired: [String] = []
        for _ in 0..<60 { expired.append(try stores[0].create(now: now - 5000).id) }
        let keep = try stores[0].create(now: now).id
        var swept: [Set<String>] = []
        for s in stores {
            let before = Set(TestFS.entries(root))
            _ = sweepUntilPassEnds(s, now: now)
            let gone = before.subtracting(TestFS.entries(root))
            for id in gone {
                let owner = id.withCString { SweepShare.hash($0) % 3 }
                XCTAssertEqual(Int(owner), s.sweepShare.worker, "\(id) swept by another worker")
            }
            swept.append(gone)
        }
        XCTAssertEqual(TestFS.entries(root), [keep])
        XCTAssertEqual(swept.reduce(Set<String>()) { $0.union($1) }, Set(expired))
        XCTAssertTrue(swept.allSatisfy { !$0.isEmpty }, "a worker swept nothing: \(swept.map(\.count))")
        // out of range: one sweeps all
        XCTAssertEqual(SweepShare(worker: 3, workers: 3), SweepShare())
        XCTAssertEqual(SweepShare(worker: 0, workers: 0), SweepShare())
    }

    /// Without one, the sweep deletes the files itself, and a graveyard
    /// found (left by nginx built with threads) is removed.
    func testWithoutAGraveyardTheSweepRemovesOneLeftBehind() throws {
        let s = store()
        let now = (WallClock.now()).rounded(.down) + 100_000
        _ = try s.create(now: now - 5000)
        XCTAssertEqual(mkdir(root + "/" + SessionStore.graveyardName, 0o700), 0)
        XCTAssertEqual(mkdir(root + "/" + SessionStore.graveyardName + "/x", 0o700), 0)
        _ = sweepUntilPassEnds(s, now: now)
        XCTAssertEqual(TestFS.entries(root), [])
        XCTAssertEqual(s.takeBuried(), 0)
    }

    func testSweepIntervalFollowsExpiration() {
        XCTAssertEqual(ExpirySweep.interval(forExpiration: 1), 1)
        XCTAssertEqual(ExpirySweep.interval(forExpiration: 5), 1)
        XCTAssertEqual(ExpirySweep.interval(forExpiration: 100), 10)
        XCTAssertEqual(ExpirySweep.interval(forExpiration: 1200), 60)
        XCTAssertEqual(ExpirySweep.interval(forExpiration: 86_400), 60)
    }

    func testSweepOfMissingRoot() {
        let s = SessionStore(root: root + "/missing", expiration: 100)
        XCTAssertEqual(s.sweepStep(now: t0), 10_000)
    }
}

final class SessionLimitTests: TempDirectoryTestCase {
    func testNewSessionsStopAtTheLimitAndResumeAfterAClose() throws {
        let store = SessionStore(root: root, expiration: 1200, maxSessions: 2)
        let first = try store.create()
        _ = try store.create()
        XCTAssertEqual(store.directoryCount(), 2)
        XCTAssertThrowsError(try store.create()) { error in
            XCTAssertEqual(error as? SystemError, .limitReached)
            XCTAssertEqual("\(error)", "session limit reached")
        }
        XCTAssertEqual(try store.close(first.id), .closed)
        XCTAssertNoThrow(try store.create())
    }

    func testPerTurnTheLimitCountsOnceAndFollowsThisWorkersCreatesAndCloses() throws {
        let store = SessionStore(root: root, expiration: 1200, maxSessions: 3)
        store.startWorker(perTurn: true)
        let first = try store.create()
        _ = try store.create()
        XCTAssertEqual(try store.close(first.id), .closed)
        _ = try store.create()
        let last = try store.create()
        XCTAssertThrowsError(try store.create()) { XCTAssertEqual($0 as? SystemError, .limitReached) }
        // removed by another process: counted again in the next turn
        TestFS.removeTree(root + "/" + last.id)
        XCTAssertThrowsError(try store.create()) { XCTAssertEqual($0 as? SystemError, .limitReached) }
        store.endTurn()
        XCTAssertNoThrow(try store.create())
        XCTAssertEqual(store.directoryCount(), 3)
    }

    func testTheLimitAnswer() throws {
        let m = SessionManager(store: SessionStore(root: root, expiration: 1200, maxSessions: 1), injectPath: nil)
        _ = m.decide(sessionID: nil, body: RequestBody(kept(#"{"requestType":"NEW_SESSION"}"#)))
        guard case .answer(let a) = m.decide(sessionID: nil, body: RequestBody(kept(#"{"requestType":"NEW_SESSION"}"#)))
        else { return XCTFail() }
        XCTAssertEqual(a.status, 424)
        XCTAssertEqual(a.body, #"{"detail":"Failed to create session: session limit reached"}"#)
        XCTAssertEqual(a.log?.level, .warn)
    }
}
