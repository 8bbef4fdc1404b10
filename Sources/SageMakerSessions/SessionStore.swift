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
    let sessionsDirectory: SessionsDirectory

    /// Entries named like this are being removed, never sessions.
    static let removingPrefix = ".gone-"
    /// The file that makes a directory a session, holding its expiry time.
    static let expirationFile = ".expiration_ts"

    public convenience init(root: String, expiration: Int64, maxSessions: Int64 = Configuration.defaultMaxSessions) {
        self.init(root: root, expiration: expiration, maxSessions: maxSessions,
                  sweepClock: ExpirySweep.monotonicNanoseconds)
    }

    /// With the clock that bounds each sweep tick.
    init(root: String, expiration: Int64, maxSessions: Int64, sweepClock: @escaping () -> UInt64) {
        self.root = root
        self.expiration = expiration
        self.maxSessions = maxSessions
        self.sweep = ExpirySweep(interval: ExpirySweep.interval(forExpiration: expiration), clock: sweepClock)
        self.cache = SessionCache(root: root)
        self.sessionsDirectory = SessionsDirectory(path: root)
    }

    /// Called in each worker process: turns on the inotify-kept cache. With
    /// `perTurn`, changes on disk are read once per turn of the worker's
    /// event loop, whose end the worker reports with `endTurn()`: the
    /// changes to cached sessions, the number of sessions the limit counts,
    /// and which directory the sessions directory's path names.
    public func startWorker(perTurn: Bool = false) {
        cache.start(perTurn: perTurn)
    }

    public func endTurn() {
        cache.endTurn()
        sessionsDirectory.endTurn()
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

    /// How many sessions the limit counts; nil (no limit) on a file system
    /// that does not count a directory's subdirectories.
    public func directoryCount() -> Int64? {
        sessionsDirectory.lookUp(perTurn: cache.perTurn)
        return sessionsDirectory.sessions
    }

    func isFull() -> Bool {
        guard let count = directoryCount() else { return false }
        return count >= maxSessions
    }

    /// Where a session's entries are reached from; see `SessionsDirectory`.
    private func entries() -> (fd: Int32, prefix: String) {
        sessionsDirectory.entries(perTurn: cache.perTurn)
    }

    /// The directory appears first and counts as a session only once its
    /// `.expiration_ts` is there: a reader in between finds no session, and a
    /// create cut short leaves an empty directory that the sweep removes.
    public func create(now: Double = WallClock.now(), id: String = SessionID.generate()) throws(SystemError) -> Created {
        guard !isFull() else { throw SystemError.limitReached }
        let expiresAt = now + Double(expiration)
        var (fd, prefix) = entries()
        var remadeRoot = false
        do {
            try FileSystem.makeDirectory(prefix + id, in: fd)
        } catch {
            // The sessions directory itself is gone (removed by hand, by a
            // cleanup job): made again, as at start-up, where the workers'
            // user may (/dev/shm, /tmp); the sessions that were in it are gone.
            // Or the one held open was replaced in this turn: the path decides.
            guard error.code == ENOENT else { throw error }
            sessionsDirectory.letGo()
            if !FileSystem.isDirectory(root) {
                try FileSystem.makeDirectories(root)
                remadeRoot = true
            }
            (fd, prefix) = entries()
            try FileSystem.makeDirectory(prefix + id, in: fd)
        }
        do {
            try FileSystem.createFile(prefix + id + "/" + SessionStore.expirationFile, in: fd,
                                      bytes: UTCTimestamp.jsonNumber(unixSeconds: expiresAt))
        } catch {
            try? FileSystem.removeTree(prefix + id, in: fd, expecting: SessionStore.expirationFile)
            throw error
        }
        sessionsDirectory.added()
        return Created(id: id, expiresAt: expiresAt, remadeRoot: remadeRoot)
    }

    /// Checks a session on disk. An expired one is removed on the spot, and is
    /// reported as expired to this caller and as not found to later ones.
    public func lookup(_ id: String, now: Double = WallClock.now()) throws(SystemError) -> Lookup {
        guard let key = SessionKey(unchecked: id) else { return .notFound }
        return try lookup(key, id, now: now)
    }

    /// The same for a header's bytes: a session this worker has seen before
    /// is checked without building its id as text.
    public func lookup(_ id: UnsafeRawBufferPointer, now: Double = WallClock.now()) throws(SystemError) -> Lookup {
        guard let key = SessionKey(unchecked: id) else { return .notFound }
        return try lookup(key, String(decoding: id, as: UTF8.self), now: now)
    }

    /// Only canonical ids are cached: one that is found was checked when
    /// it was stored; any other is checked before its path is built.
    func lookup(_ key: SessionKey, _ id: @autoclosure () -> String, now: Double) throws(SystemError) -> Lookup {
        var known = cache.expiration(of: key)
        if known == nil {
            guard key.isCanonical else { return .notFound }
            let id = id()
            known = try cache.remember(key, directory: directory(of: id)) { () throws(SystemError) -> Double? in
                try self.expiration(of: id)
            }
        }
        guard let expiresAt = known else { return .notFound }
        if now > expiresAt {
            retireExpired(id())
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
        return try takeAway(id) ? .closed : .notFound
    }

    /// The expiry time written in a session's `.expiration_ts`; nil when the
    /// session (or that file) does not exist or is not in the format: not a
    /// number, too large, a directory, a symbolic link (never followed).
    func expiration(of id: String) throws(SystemError) -> Double? {
        let bytes: [UInt8]
        do {
            let (fd, prefix) = entries()
            bytes = try FileSystem.readSmallFile(prefix + id + "/" + SessionStore.expirationFile, in: fd)
        } catch {
            switch error.code {
            case ENOENT, ENOTDIR, EFBIG, EISDIR, ELOOP: return nil  // no session in the format
            default: throw error
            }
        }
        return bytes.withUnsafeBytes { JSON.parse($0)?.numberValue }
    }

    func retire(_ id: String) {
        _ = try? takeAway(id)
    }

    /// An expired session removed, by a request or by the sweep, is counted
    /// once: by whoever took it away.
    func retireExpired(_ id: String) {
        if (try? takeAway(id)) == true { Metrics.expiredSessionRemoved() }
    }

    /// Takes a session out of sight, then removes its files; false when it
    /// was gone already. A failure to remove leaves a dot-entry that the
    /// sweep finishes later.
    private func takeAway(_ id: String) throws(SystemError) -> Bool {
        if let key = SessionKey(id) { cache.forget(key) }
        let (fd, prefix) = entries()
        let gone = prefix + removingName(for: id)
        do {
            try FileSystem.rename(prefix + id, gone, in: fd)
        } catch {
            if error.code == ENOENT { return false }
            throw error
        }
        sessionsDirectory.removed()
        try? FileSystem.removeTree(gone, in: fd, expecting: SessionStore.expirationFile)
        return true
    }

    func removingName(for id: String) -> String {
        var rng = SystemRandomNumberGenerator()
        return SessionStore.removingPrefix + id + "-" + String(rng.next(), radix: 36)
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
