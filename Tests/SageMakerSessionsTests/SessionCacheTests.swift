import Glibc
import XCTest
@testable import SageMakerSessions

final class SessionCacheTests: TempDirectoryTestCase {
    let t0: Double = 1_700_000_000

    func startedStore() -> SessionStore {
        let store = SessionStore(root: root, expiration: 1200)
        store.startWorker()
        return store
    }

    func writeExpiry(_ id: String, _ value: String) {
        XCTAssertTrue(TestFS.write(root + "/" + id + "/.expiration_ts", value))
    }

    func testAValidSessionIsServedFromTheCacheUntilItsFileChanges() throws {
        let store = startedStore()
        XCTAssertTrue(store.cache.isOn)
        let created = try store.create(now: t0)
        XCTAssertEqual(try store.lookup(created.id, now: t0), .valid(expiresAt: created.expiresAt))
        XCTAssertEqual(store.cache.expiration(of: created.id), created.expiresAt)
        // another process moves the expiry into the past: seen at once
        writeExpiry(created.id, "\(t0 - 1)")
        XCTAssertNil(store.cache.expiration(of: created.id))
        XCTAssertEqual(try store.lookup(created.id, now: t0), .expired)
    }

    func testRemovalByAnotherProcessIsSeenAtOnce() throws {
        let store = startedStore()
        let created = try store.create(now: t0)
        XCTAssertEqual(try store.lookup(created.id, now: t0), .valid(expiresAt: created.expiresAt))
        TestFS.removeTree(root + "/" + created.id)
        XCTAssertEqual(try store.lookup(created.id, now: t0), .notFound)
    }

    func testRenameAwayAndBackIsReadAgain() throws {
        let store = startedStore()
        let created = try store.create(now: t0)
        XCTAssertEqual(try store.lookup(created.id, now: t0), .valid(expiresAt: created.expiresAt))
        XCTAssertEqual(rename(root + "/" + created.id, root + "/elsewhere"), 0)
        XCTAssertEqual(try store.lookup(created.id, now: t0), .notFound)
        writeExpiry("elsewhere", "\(t0 + 5)")
        XCTAssertEqual(rename(root + "/elsewhere", root + "/" + created.id), 0)
        XCTAssertEqual(try store.lookup(created.id, now: t0), .valid(expiresAt: t0 + 5))
    }

    func testPerTurnTheQueueIsReadOnceUntilTheTurnEnds() throws {
        let store = SessionStore(root: root, expiration: 1200)
        store.startWorker(perTurn: true)
        let created = try store.create(now: t0)
        XCTAssertEqual(try store.lookup(created.id, now: t0), .valid(expiresAt: created.expiresAt))
        TestFS.removeTree(root + "/" + created.id)
        // still this turn: the request was on its way before the removal
        XCTAssertEqual(try store.lookup(created.id, now: t0), .valid(expiresAt: created.expiresAt))
        store.endTurn()
        XCTAssertEqual(try store.lookup(created.id, now: t0), .notFound)
    }

    func testPerTurnASessionReadInTheTurnIsReadAfterItsWatch() throws {
        let store = SessionStore(root: root, expiration: 1200)
        store.startWorker(perTurn: true)
        let a = try store.create(now: t0), b = try store.create(now: t0)
        XCTAssertEqual(try store.lookup(a.id, now: t0), .valid(expiresAt: a.expiresAt))
        writeExpiry(b.id, "\(t0 + 7)")
        // b was never cached: read from its file, even within the turn
        XCTAssertEqual(try store.lookup(b.id, now: t0), .valid(expiresAt: t0 + 7))
        store.endTurn()
        writeExpiry(b.id, "\(t0 - 1)")
        XCTAssertEqual(try store.lookup(b.id, now: t0), .expired)
    }

    func testOtherKeysOfTheEngineDoNotEvict() throws {
        let store = startedStore()
        let created = try store.create(now: t0)
        _ = try store.lookup(created.id, now: t0)
        XCTAssertTrue(TestFS.write(root + "/" + created.id + "/history", "[1,2]"))
        XCTAssertEqual(store.cache.expiration(of: created.id), created.expiresAt)
    }

    func testClosingForgets() throws {
        let store = startedStore()
        let created = try store.create(now: t0)
        _ = try store.lookup(created.id, now: t0)
        XCTAssertEqual(try store.close(created.id, now: t0), .closed)
        XCTAssertNil(store.cache.expiration(of: created.id))
        XCTAssertEqual(try store.lookup(created.id, now: t0), .notFound)
    }

    func testCapacityBoundsTheCache() throws {
        let store = SessionStore(root: root, expiration: 1200)
        let cache = SessionCache<SessionKey>(root: root, capacity: 3)
        cache.start()
        var ids: [String] = []
        for _ in 0..<5 { ids.append(try store.create(now: t0).id) }
        for id in ids {
            let key = try XCTUnwrap(SessionKey(id))
            _ = try cache.remember(key, directory: store.directory(of: id)) { () throws(SystemError) in
                try store.read(id)
            }
        }
        let cached = ids.filter { cache.expiration(of: $0) != nil }
        XCTAssertEqual(cached, Array(ids.suffix(3)))
    }

    func testMissingSessionIsNotCached() throws {
        let store = startedStore()
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e"
        XCTAssertEqual(try store.lookup(id, now: t0), .notFound)
        XCTAssertTrue(TestFS.mkdir(root + "/" + id))
        writeExpiry(id, "\(t0 + 60)")
        XCTAssertEqual(try store.lookup(id, now: t0), .valid(expiresAt: t0 + 60))
    }

    func testRemovingTheRootClearsAndTurnsTheCacheOff() throws {
        let store = startedStore()
        let created = try store.create(now: t0)
        _ = try store.lookup(created.id, now: t0)
        TestFS.removeTree(root)
        XCTAssertEqual(try store.lookup(created.id, now: t0), .notFound)
        XCTAssertTrue(TestFS.mkdir(root))
        let again = try store.create(now: t0)
        XCTAssertEqual(try store.lookup(again.id, now: t0), .valid(expiresAt: again.expiresAt))
    }

    /// Open inotify instances of this process.
    func inotifyInstances() -> Int {
        guard let dir = opendir("/proc/self/fd") else { return -1 }
        defer { closedir(dir) }
        var n = 0
        while let e = readdir(dir) {
            let name = FileSystem.entryName(e)
            var target = [CChar](repeating: 0, count: 256)
            let len = readlink("/proc/self/fd/" + name, &target, target.count - 1)
            if len > 0, String(cString: target).contains("inotify") { n += 1 }
        }
        return n
    }

    /// Built-in and engine sessions together take one instance: a user has
    /// 128 of them by default, shared by all of nginx's workers.
    func testOneInotifyInstancePerWorkerWithAffinity() throws {
        let before = inotifyInstances()
        let store = SessionStore(root: root, expiration: 1200)
        store.affinity = true
        XCTAssertNil(store.startWorker())
        XCTAssertEqual(inotifyInstances(), before + 1)
        XCTAssertTrue(store.cache.isOn)
        XCTAssertTrue(store.engineCache.isOn)
        // both caches still follow changes made behind them
        let created = try store.create(now: t0)
        XCTAssertEqual(try store.lookup(created.id, now: t0), .valid(expiresAt: created.expiresAt))
        let engine = Array("engine-session-1".utf8)
        let home = try XCTUnwrap(store.homes.intern("10.0.0.1:80"))
        _ = try engine.withUnsafeBytes { try store.record(engineSession: $0, home: home, now: t0) }
        XCTAssertEqual(try engine.withUnsafeBytes { try store.lookup(engineSession: $0, now: t0) },
                       .valid(expiresAt: t0 + 1200, home: home))
        TestFS.removeTree(root + "/" + created.id)
        TestFS.removeTree(root + "/engine-session-1")
        XCTAssertEqual(try store.lookup(created.id, now: t0), .notFound)
        XCTAssertEqual(try engine.withUnsafeBytes { try store.lookup(engineSession: $0, now: t0) }, .notFound)
    }

    /// The sessions directory replaced: both caches on the one instance
    /// watch the new one again in the same turn, whichever drained.
    func testBothCachesWatchAReplacedDirectoryAgain() throws {
        let store = SessionStore(root: root, expiration: 1200)
        store.affinity = true
        store.startWorker(perTurn: true)
        let engine = Array("engine-session-2".utf8)
        let home = try XCTUnwrap(store.homes.intern("10.0.0.1:80"))
        XCTAssertTrue(rename(root, root + ".old") == 0 && mkdir(root, 0o755) == 0)
        store.endTurn()
        let created = try store.create(now: t0)
        XCTAssertEqual(try store.lookup(created.id, now: t0), .valid(expiresAt: created.expiresAt))
        _ = try engine.withUnsafeBytes { try store.record(engineSession: $0, home: home, now: t0) }
        XCTAssertEqual(try engine.withUnsafeBytes { try store.lookup(engineSession: $0, now: t0) },
                       .valid(expiresAt: t0 + 1200, home: home))
        XCTAssertTrue(store.cache.isOn)
        XCTAssertTrue(store.engineCache.isOn)
        TestFS.removeTree(root + ".old")
    }

    /// A worker without an instance says why, naming the limit to raise
    /// and its value now.
    func testTheFailureNamesTheLimitAndItsValue() {
        let instances = Inotify.Failure(call: "inotify_init1()", error: SystemError(EMFILE)).description
        XCTAssertTrue(instances.contains("inotify_init1() failed (\(EMFILE): "), instances)
        XCTAssertTrue(instances.contains("fs.inotify.max_user_instances (now "), instances)
        XCTAssertNotNil(Inotify.currentLimit("max_user_instances").flatMap { Int($0) })
        let watches = Inotify.Failure(call: "inotify_add_watch(\"/x\")", error: SystemError(ENOSPC)).description
        XCTAssertTrue(watches.contains("fs.inotify.max_user_watches (now \(Inotify.currentLimit("max_user_watches") ?? "")"), watches)
    }

    /// A session's watch out of fs.inotify.max_user_watches: the worker is
    /// counted uncached until a later watch is had, and says so once.
    func testASessionWatchOutOfWatchesIsCountedUntilOneIsHad() {
        var slots = [Int64](repeating: 0, count: Metrics.slots)
        let inotify = Inotify()
        var warnings: [String] = []
        slots.withUnsafeMutableBufferPointer { buf in
            Metrics.attach(buf.baseAddress)
            defer { Metrics.attach(nil) }
            inotify.start(perTurn: false)
            XCTAssertNil(inotify.takeWarning())
            inotify.sessionWatchFailed("/s/a", SystemError(ENOSPC))
            inotify.sessionWatchFailed("/s/b", SystemError(ENOSPC))
            XCTAssertEqual(Metrics.uncachedWorkers(Array(buf)), 1)
            while let w = inotify.takeWarning() { warnings.append(w) }
            inotify.sessionWatched()
            XCTAssertEqual(Metrics.uncachedWorkers(Array(buf)), 0)
            inotify.sessionWatchFailed("/s/c", SystemError(ENOSPC))  // counted again, not told again
            XCTAssertEqual(Metrics.uncachedWorkers(Array(buf)), 1)
            XCTAssertNil(inotify.takeWarning())
            inotify.stop()
            XCTAssertEqual(Metrics.uncachedWorkers(Array(buf)), 0)
            inotify.sessionWatched()  // after the exit: nothing moves
            XCTAssertEqual(Metrics.uncachedWorkers(Array(buf)), 0)
        }
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings[0].contains("inotify_add_watch(\"/s/a\") failed (\(ENOSPC): "), warnings[0])
        XCTAssertTrue(warnings[0].contains("for the sessions it cannot watch"), warnings[0])
        XCTAssertTrue(warnings[0].contains("fs.inotify.max_user_watches (now "), warnings[0])
    }

    /// A sessions directory's watch that fails, then is had: counted, then not.
    func testARootWatchHadLaterUncountsTheWorker() {
        var slots = [Int64](repeating: 0, count: Metrics.slots)
        let inotify = Inotify()
        slots.withUnsafeMutableBufferPointer { buf in
            Metrics.attach(buf.baseAddress)
            defer { Metrics.attach(nil) }
            inotify.start(perTurn: false)
            inotify.watchFailed("/root", SystemError(ENOSPC))
            XCTAssertEqual(Metrics.uncachedWorkers(Array(buf)), 1)
            XCTAssertNil(inotify.takeWarning())  // the first failure: startWorker's to tell
            inotify.sessionWatchFailed("/root/x", SystemError(ENOSPC))  // the same limit: told already
            XCTAssertNil(inotify.takeWarning())
            inotify.sessionWatched()
            XCTAssertEqual(Metrics.uncachedWorkers(Array(buf)), 1)  // the root still unwatched
            inotify.watched("/root")
            XCTAssertEqual(Metrics.uncachedWorkers(Array(buf)), 0)
        }
    }
}

extension SessionCache where Key == SessionKey {
    /// What the cache holds for a session named by its text.
    func expiration(of id: String) -> Double? {
        SessionKey(id).flatMap { entry(of: $0)?.expiresAt }
    }
}
