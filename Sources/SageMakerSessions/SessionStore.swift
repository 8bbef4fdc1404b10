import Glibc

/// Sessions as the Python library keeps them: one directory per session under
/// `root`, holding `.expiration_ts` and one JSON file per key. The files are
/// the only truth, shared by every worker, every reload and the engine.
///
/// No reader ever sees half a session: one is a session only once its
/// `.expiration_ts` is written, and it is renamed out of place (one atomic
/// step, which decides races between closes) before its files are removed.
public final class SessionStore {
    public let root: String
    public let expiration: Int64
    public let maxSessions: Int64
    let sweep: ExpirySweep
    let cache: SessionCache

    /// Entries named like this are being removed, never sessions.
    static let removingPrefix = ".gone-"

    public init(root: String, expiration: Int64, maxSessions: Int64 = Configuration.defaultMaxSessions) {
        self.root = root
        self.expiration = expiration
        self.maxSessions = maxSessions
        self.sweep = ExpirySweep(interval: ExpirySweep.interval(forExpiration: expiration))
        self.cache = SessionCache(root: root)
    }

    /// Sessions on disk when first counted in this turn, plus those made since.
    private var count: Int64?
    private var countedThisTurn = false

    /// Called in each worker process: turns on the inotify-kept cache. With
    /// `perTurn`, changes on disk are read once per turn of the worker's
    /// event loop, whose end the worker reports with `endTurn()`: the
    /// changes to cached sessions, and the number of sessions the limit
    /// counts.
    public func startWorker(perTurn: Bool = false) {
        cache.start(perTurn: perTurn)
    }

    public func endTurn() {
        cache.endTurn()
        countedThisTurn = false
    }

    public struct Created: Equatable {
        public let id: String
        public let expiresAt: Double
        /// The sessions directory was missing (removed while nginx ran) and
        /// this create made it again.
        public var remadeRoot = false
    }

    public enum Lookup: Equatable {
        case valid(expiresAt: Double)
        case notFound
        case expired
    }

    public func directory(of id: String) -> String { root + "/" + id }

    /// How many session directories there are, in one `stat`: a directory's
    /// link count is 2 plus its subdirectories (tmpfs, ext4). A file system
    /// that does not count (link count 1) sets no limit.
    public func directoryCount() -> Int64? {
        var st = stat()
        guard stat(root, &st) == 0, st.st_nlink >= 2 else { return nil }
        return Int64(st.st_nlink) - 2
    }

    func isFull() -> Bool {
        if !countedThisTurn {
            count = directoryCount()
            countedThisTurn = cache.perTurn
        }
        guard let count else { return false }
        return count >= maxSessions
    }

    /// The directory appears first and counts as a session only once its
    /// `.expiration_ts` is there: a reader in between finds no session, and a
    /// create cut short leaves an empty directory that the sweep removes.
    public func create(now: Double = WallClock.now(), id: String = SessionID.generate()) throws(SystemError) -> Created {
        guard !isFull() else { throw SystemError.limitReached }
        let expiresAt = now + Double(expiration)
        let directory = directory(of: id)
        var remadeRoot = false
        do {
            try FileSystem.makeDirectory(directory)
        } catch {
            // The sessions directory itself is gone (removed by hand, by a
            // cleanup job): made again, as at start-up, where the workers'
            // user may (/dev/shm, /tmp); the sessions that were in it are gone.
            guard error.code == ENOENT, !FileSystem.isDirectory(root) else { throw error }
            try FileSystem.makeDirectories(root)
            try FileSystem.makeDirectory(directory)
            remadeRoot = true
        }
        do {
            try FileSystem.createFile(directory + "/.expiration_ts",
                                      bytes: UTCTimestamp.jsonNumber(unixSeconds: expiresAt))
        } catch {
            try? FileSystem.removeTree(directory)
            throw error
        }
        count = count.map { $0 + 1 }
        return Created(id: id, expiresAt: expiresAt, remadeRoot: remadeRoot)
    }

    /// Checks a session on disk. An expired one is removed on the spot, and is
    /// reported as expired to this caller and as not found to later ones.
    public func lookup(_ id: String, now: Double = WallClock.now()) throws(SystemError) -> Lookup {
        guard let key = SessionKey(id) else { return .notFound }
        return try lookup(key, id, now: now)
    }

    /// The same for a header's bytes: a session this worker has seen before
    /// is checked without building its id as text.
    public func lookup(_ id: UnsafeRawBufferPointer, now: Double = WallClock.now()) throws(SystemError) -> Lookup {
        guard let key = SessionKey(id) else { return .notFound }
        return try lookup(key, String(decoding: id, as: UTF8.self), now: now)
    }

    func lookup(_ key: SessionKey, _ id: @autoclosure () -> String, now: Double) throws(SystemError) -> Lookup {
        var known = cache.expiration(of: key)
        if known == nil {
            let id = id()
            known = try cache.remember(key, directory: directory(of: id)) { () throws(SystemError) -> Double? in
                try self.expiration(of: id)
            }
        }
        guard let expiresAt = known else { return .notFound }
        if now > expiresAt {
            retire(id())
            return .expired
        }
        return .valid(expiresAt: expiresAt)
    }

    public enum Closed: Equatable {
        case closed
        case notFound
        case expired
    }

    /// Of two closes racing on one session, exactly one wins the rename.
    public func close(_ id: String, now: Double = WallClock.now()) throws(SystemError) -> Closed {
        switch try lookup(id, now: now) {
        case .notFound: return .notFound
        case .expired: return .expired
        case .valid: break
        }
        let gone = removingName(for: id)
        if let key = SessionKey(id) { cache.forget(key) }
        do {
            try FileSystem.rename(directory(of: id), gone)
        } catch {
            if error.code == ENOENT { return .notFound }
            throw error
        }
        count = count.map { $0 - 1 }
        try? FileSystem.removeTree(gone)
        return .closed
    }

    /// The expiry time written in a session's `.expiration_ts`; nil when the
    /// session (or that file) does not exist or does not hold a number.
    func expiration(of id: String) throws(SystemError) -> Double? {
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.readSmallFile(directory(of: id) + "/.expiration_ts")
        } catch {
            if error.code == ENOENT || error.code == ENOTDIR || error.code == EFBIG { return nil }
            throw error
        }
        return bytes.withUnsafeBytes { JSON.parse($0)?.numberValue }
    }

    /// Takes a session out of sight, then removes its files; a failure to
    /// remove leaves a dot-entry that the sweep finishes later.
    func retire(_ id: String) {
        if let key = SessionKey(id) { cache.forget(key) }
        let gone = removingName(for: id)
        guard (try? FileSystem.rename(directory(of: id), gone)) != nil else { return }
        count = count.map { $0 - 1 }
        try? FileSystem.removeTree(gone)
    }

    func removingName(for id: String) -> String {
        var rng = SystemRandomNumberGenerator()
        return root + "/" + SessionStore.removingPrefix + id + "-" + String(rng.next(), radix: 36)
    }

    /// Makes the directory usable by nginx's worker user when the master runs
    /// as root.
    public func grant(uid: uid_t, gid: gid_t) throws(SystemError) {
        guard geteuid() == 0 else { return }
        var st = stat()
        guard stat(root, &st) == 0 else { throw .current }
        if st.st_uid == uid && st.st_gid == gid { return }
        if chown(root, uid, gid) != 0 { throw .current }
    }

    /// One bounded step of the sweep; returns milliseconds until the next.
    public func sweepStep(now: Double = WallClock.now()) -> UInt64 {
        sweep.step(store: self, now: now)
    }
}
