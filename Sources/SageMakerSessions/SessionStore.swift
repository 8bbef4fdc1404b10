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
    let cache: SessionCache<SessionKey>
    /// Engine sessions recorded for their home, by ids that are not UUIDs.
    let engineCache: SessionCache<EngineSessionName>
    let sessionsDirectory: SessionsDirectory
    /// The worker's one inotify instance, for both caches.
    let inotify = Inotify()
    /// The replicas sessions are homed on, and the tally of each one's sessions.
    public let homes = Homes()
    /// Some upstream has `sagemaker_session_affinity`: a session's home is
    /// read with its expiry, and an engine session with a home is recorded.
    public var affinity = false
    /// Closes owed to engines for their sessions the sweep found expired
    /// (ExpireQueue.swift); nil where no close location is known.
    public var expireQueue: ExpireQueue?
    /// Some location's manager makes its own sessions (no engine handlers).
    /// Where none does, every session is an engine's, UUID-named ones too.
    public var builtinSessions = false

    /// Entries named like this are being removed, never sessions.
    static let removingPrefix = ".gone-"
    /// The subdirectory the sweep moves expired sessions into, whose files
    /// nginx's thread pool deletes: nobody watches it, and nobody waits.
    public static let graveyardName = ".graveyard"
    /// The shim has a thread pool that empties the graveyard: the sweep
    /// buries sessions instead of deleting their files itself.
    public var graveyard = false
    /// Sessions buried since the shim last asked (`takeBuried()`).
    private var buried = 0
    /// Makes graveyard names unique within this process without a system call.
    private var burials: UInt64 = 0
    /// Read at the first burial, in the worker (the store is made before the fork).
    private lazy var pid = String(getpid())
    /// The file that makes a directory a session, holding its expiry time.
    static let expirationFile = ".expiration_ts"
    /// The file holding a session's home, the address of its replica.
    static let homeFile = ".home"

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
        self.cache = SessionCache(root: root, inotify: inotify)
        self.engineCache = SessionCache(root: root, inotify: inotify)
        self.sessionsDirectory = SessionsDirectory(path: root)
    }

    /// Called in each worker process: turns on the inotify-kept cache. With
    /// `perTurn`, changes on disk are read once per turn of the worker's
    /// event loop, whose end the worker reports with `endTurn()`: the
    /// changes to cached sessions, the number of sessions the limit counts,
    /// and which directory the sessions directory's path names.
    ///
    /// Returns why the cache is off (inotify's instance or the sessions
    /// directory's watch could not be had), for one `[warn]`; the worker
    /// is then counted in `sagemaker_sessions_workers_uncached` until
    /// `stopWorker()`, or until a later try gets it an instance (a reload's
    /// new workers start while the old ones still hold theirs).
    @discardableResult
    public func startWorker(perTurn: Bool = false) -> String? {
        cache.start(perTurn: perTurn)
        if affinity { engineCache.start(perTurn: perTurn) }
        return inotify.failure?.description
    }

    /// The next `[warn]` line the worker has to log, once; nil when there is
    /// nothing new to tell: a failure met after the worker started (a
    /// session's watch out of fs.inotify.max_user_watches, one per limit),
    /// or a close owed to an engine that could not be recorded or was given up.
    public func takeWarning() -> String? {
        inotify.takeWarning() ?? takeExpireNote()
    }

    /// The worker exits: it is no longer one running without the cache.
    public func stopWorker() {
        inotify.stop()
    }

    public func endTurn() {
        inotify.endTurn()
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
        case valid(expiresAt: Double, home: Home? = nil)
        case notFound
        case expired
    }

    public func directory(of id: String) -> String { root + "/" + id }

    /// How many sessions the limit counts; nil (no limit) on a file system
    /// that does not count a directory's subdirectories.
    public func directoryCount() -> Int64? {
        sessionsDirectory.lookUp(perTurn: cache.perTurn)
        return sessionsDirectory.sessions.map { max(0, $0 - sessionsDirectory.graveyards()) }
    }

    /// The graveyard is looked for only when the link count reaches the
    /// limit, the one count it can change: a create below it costs no more.
    func isFull() -> Bool {
        sessionsDirectory.lookUp(perTurn: cache.perTurn)
        guard let count = sessionsDirectory.sessions, count >= maxSessions else { return false }
        return count - sessionsDirectory.graveyards() >= maxSessions
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
        return try make(id, home: nil, replacing: false, now: now)
    }

    /// A session's directory, its home if it has one, then its expiry.
    /// `replacing`: one there already under this id is taken away first.
    private func make(_ id: String, home: Home?, replacing: Bool, now: Double) throws(SystemError) -> Created {
        let expiresAt = now + Double(expiration)
        var (fd, prefix) = entries()
        var remadeRoot = false
        do {
            try FileSystem.makeDirectory(prefix + id, in: fd)
        } catch {
            switch error.code {
            case EEXIST where replacing:
                _ = try takeAway(id)
            case ENOENT:
                // The sessions directory itself is gone (removed by hand, by a
                // cleanup job): made again, as at start-up, where the workers'
                // user may (/dev/shm, /tmp); the sessions that were in it are gone.
                // Or the one held open was replaced in this turn: the path decides.
                sessionsDirectory.letGo()
                if !FileSystem.isDirectory(root) {
                    try FileSystem.makeDirectories(root)
                    remadeRoot = true
                }
            default:
                throw error
            }
            (fd, prefix) = entries()
            try FileSystem.makeDirectory(prefix + id, in: fd)
        }
        do {
            if let home {
                try FileSystem.createFile(prefix + id + "/" + SessionStore.homeFile, in: fd, bytes: home.text)
            }
            try FileSystem.createFile(prefix + id + "/" + SessionStore.expirationFile, in: fd,
                                      bytes: UTCTimestamp.jsonNumber(unixSeconds: expiresAt))
        } catch {
            try? FileSystem.removeTree(prefix + id, in: fd, expecting: SessionStore.expirationFile)
            throw error
        }
        sessionsDirectory.added()
        homes.count(home, 1)
        return Created(id: id, expiresAt: expiresAt, remadeRoot: remadeRoot)
    }

    /// Checks a session on disk. An expired one is removed on the spot, and is
    /// reported as expired to this caller and as not found to later ones
    /// (other than later readers of the same request, which find its `verdict`).
    public func lookup(_ id: String, now: Double = WallClock.now(),
                       verdict: VerdictRoom = .none) throws(SystemError) -> Lookup {
        guard let key = SessionKey(unchecked: id) else { return .notFound }
        return try lookup(key, id, now: now, verdict: verdict)
    }

    /// The same for a header's bytes: a session this worker has seen before
    /// is checked without building its id as text.
    ///
    /// With `retiring: false` an expired session is left where it is: for a
    /// reader that runs before the request's manager (a session value read
    /// in the rewrite phase), so that the manager, later in the same
    /// request, still finds it expired, answers `expired`, and removes and
    /// counts it once.
    ///
    /// `verdict`: the request's (`VerdictRoom`). Its first lookup of the
    /// session keeps what it found there, and every later one answers the
    /// same without looking again: one request, one verdict. A retiring
    /// reader (the manager) given a kept `expired` removes the session.
    public func lookup(_ id: UnsafeRawBufferPointer, now: Double = WallClock.now(),
                       retiring: Bool = true, verdict: VerdictRoom = .none) throws(SystemError) -> Lookup {
        guard let key = SessionKey(unchecked: id) else { return .notFound }
        return try lookup(key, String(decoding: id, as: UTF8.self), now: now, retiring: retiring, verdict: verdict)
    }

    /// Only canonical ids are cached: one that is found was checked when
    /// it was stored; any other is checked before its path is built.
    func lookup(_ key: SessionKey, _ id: @autoclosure () -> String, now: Double,
                retiring: Bool = true, verdict: VerdictRoom = .none) throws(SystemError) -> Lookup {
        if let kept = verdict.kept(for: key) {
            if retiring, kept == .expired { retireExpired(id()) }
            return kept
        }
        let known = cache.entry(of: key)
        if known == nil, !key.isCanonical { return .notFound }
        let found = try lookup(key, known, in: cache, id(), now: now, retiring: retiring)
        verdict.keep(found, for: key)
        return found
    }

    /// An engine's session, recorded when it got a home: by the UUID cache
    /// for an id that is one, else by its name; an id never recorded (or
    /// that cannot be) is not found.
    /// With `retiring: false` an expired one is left for its claim
    /// (`claimExpired(engineSession:)`).
    /// A UUID's `verdict` is shared with the request's other readers; a
    /// name is read by the manager alone, so it keeps none.
    public func lookup(engineSession id: UnsafeRawBufferPointer, now: Double = WallClock.now(),
                       retiring: Bool = true, verdict: VerdictRoom = .none) throws(SystemError) -> Lookup {
        if let key = SessionKey(id) {
            return try lookup(key, String(decoding: id, as: UTF8.self), now: now, retiring: retiring,
                              verdict: verdict)
        }
        guard let name = EngineSessionName(unchecked: id) else { return .notFound }
        let known = engineCache.entry(of: name)
        if known == nil, !name.isStorable { return .notFound }
        return try lookup(name, known, in: engineCache, name.text, now: now, retiring: retiring)
    }

    /// `key` names an entry that may be read: canonical, or checked as a
    /// name. `cached` is what the cache holds of it.
    @inline(__always)
    private func lookup<Key>(_ key: Key, _ cached: Cached?, in cache: SessionCache<Key>,
                             _ id: @autoclosure () -> String, now: Double,
                             retiring: Bool = true) throws(SystemError) -> Lookup {
        var known = cached
        if known == nil {
            let id = id()
            known = try cache.remember(key, directory: directory(of: id)) { () throws(SystemError) -> Cached? in
                try self.read(id)
            }
        }
        guard let known else { return .notFound }
        if now > known.expiresAt {
            if retiring { retireExpired(id()) }
            return .expired
        }
        return .valid(expiresAt: known.expiresAt, home: known.home)
    }

    /// A session's expiry and, with affinity, its home.
    func read(_ id: String) throws(SystemError) -> Cached? {
        guard let expiresAt = try expiration(of: id) else { return nil }
        return Cached(expiresAt: expiresAt, home: affinity ? try home(of: id) : nil)
    }

    /// The home written in a session's `.home`; nil without one, or with
    /// one that names no replica (empty, too long).
    func home(of id: String) throws(SystemError) -> Home? {
        do {
            let (fd, prefix) = entries()
            let bytes = try FileSystem.readSmallFile(prefix + id + "/" + SessionStore.homeFile, in: fd,
                                                     limit: Homes.maxLength)
            return bytes.withUnsafeBytes { homes.intern($0) }
        } catch {
            switch error.code {
            case ENOENT, ENOTDIR, EFBIG, EISDIR, ELOOP: return nil
            default: throw error
            }
        }
    }

    /// Gives a session the home nginx chose for it. Its first home
    /// (`replacing` nil) may be given by two workers at once: the first
    /// written wins, and is what this returns. A session's home replaced
    /// because it was unavailable is `replacing`. nil when the session is
    /// gone or cannot have a home.
    public func setHome(_ id: UnsafeRawBufferPointer, to home: Home, replacing previous: Home?) -> Home? {
        guard let name = EngineSessionName(id) else { return nil }
        let (fd, prefix) = entries()
        let file = prefix + name.text + "/" + SessionStore.homeFile
        let written = prefix + name.text + "/" + removingName(for: SessionStore.homeFile)
        do {
            try FileSystem.createFile(written, in: fd, bytes: home.text)
        } catch {
            return nil
        }
        var given = home
        if previous == nil {
            if linkat(fd, written, fd, file, 0) != 0 {
                let existing = errno == EEXIST ? try? self.home(of: name.text) : nil
                unlinkat(fd, written, 0)
                guard let existing else { return nil }
                given = existing
            } else {
                unlinkat(fd, written, 0)
                homes.count(home, 1)
            }
        } else {
            guard renameat(fd, written, fd, file) == 0 else {
                unlinkat(fd, written, 0)
                return nil
            }
            homes.count(previous, -1)
            homes.count(home, 1)
        }
        if let key = SessionKey(id) { cache.update(key, home: given) } else { engineCache.update(name, home: given) }
        return given
    }

    /// Records a session the engine created on `home`, with this store's
    /// lifetime, as a built-in one is kept: its home first, so that it is
    /// never a session without one. An id the engine gave again replaces
    /// what was recorded under it. nil for an id that cannot be a directory.
    public func record(engineSession id: UnsafeRawBufferPointer, home: Home,
                       now: Double = WallClock.now()) throws(SystemError) -> Created? {
        guard let name = EngineSessionName(id) else { return nil }
        return try make(name.text, home: home, replacing: true, now: now)
    }

    /// An engine session the engine closed: its record and home go too.
    public func forget(engineSession id: UnsafeRawBufferPointer) {
        guard let name = EngineSessionName(id) else { return }
        retire(name.text)
    }

    /// How many sessions each home has, read from the files: the tally
    /// nginx starts from when it starts (a reload keeps the one it has).
    public func countHomes(_ each: (_ home: Home, _ sessions: Int64) -> Void) {
        guard let dir = opendir(root) else { return }
        defer { closedir(dir) }
        var tally: [Home: Int64] = [:]
        while let entry = readdir(dir) {
            let name = FileSystem.entryName(entry)
            guard EngineSessionName(entryName: name) != nil,
                  (try? expiration(of: name)) != nil,
                  let home = try? home(of: name) else { continue }
            tally[home, default: 0] += 1
        }
        for (home, n) in tally { each(home, n) }
    }

    public enum Closed: Equatable {
        case closed
        case notFound
        case expired
    }

    /// Of two closes racing on one session, exactly one wins the rename.
    public func close(_ id: String, now: Double = WallClock.now(),
                      verdict: VerdictRoom = .none) throws(SystemError) -> Closed {
        switch try lookup(id, now: now, verdict: verdict) {
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

    func retire(_ id: String, burying: Bool = false) {
        _ = try? takeAway(id, burying: burying)
    }

    /// An expired session removed, by a request or by the sweep, is counted
    /// once: by whoever took it away.
    func retireExpired(_ id: String, burying: Bool = false) {
        if (try? takeAway(id, burying: burying)) == true { Metrics.expiredSessionRemoved() }
    }

    /// How many sessions were buried since the last call: the shim posts
    /// its graveyard task when there are some.
    public func takeBuried() -> Int {
        defer { buried = 0 }
        return buried
    }

    /// The sweep found the graveyard in a pass (left by a worker that ended
    /// before its thread was done): emptied as if just filled.
    func foundGraveyard() {
        buried += 1
    }

    /// Takes a session out of sight, then removes its files; false when it
    /// was gone already. A failure to remove leaves a dot-entry that the
    /// sweep finishes later. Its home, if it has one, has one session less.
    ///
    /// `burying` (the sweep, with a graveyard): one rename into the
    /// graveyard and no more; its files are the thread pool's to delete.
    private func takeAway(_ id: String, burying: Bool = false) throws(SystemError) -> Bool {
        var home: Home?
        return try takeAway(id, burying: burying, home: &home)
    }

    /// The same, with the home the session had (when this caller took it).
    func takeAway(_ id: String, burying: Bool = false, home taken: inout Home?) throws(SystemError) -> Bool {
        if let key = SessionKey(id) {
            cache.forget(key)
        } else if let name = EngineSessionName(entryName: id) {
            engineCache.forget(name)
        }
        let (fd, prefix) = entries()
        var burying = burying && graveyard
        var goneName = burying ? buryingName(for: id) : removingName(for: id)
        do {
            try FileSystem.rename(prefix + id, prefix + goneName, in: fd)
        } catch {
            guard burying, error.code != ENOENT || remakeGraveyard(in: fd, prefix: prefix) else {
                // the session is gone (or the graveyard could not be made again)
                if error.code == ENOENT { return false }
                throw error
            }
            // The graveyard was removed by a thread (made again now), or a
            // directory another user owns cannot change its parent (its `..`
            // would change): renamed beside the sessions as without one.
            if error.code != ENOENT {
                burying = false
                goneName = removingName(for: id)
            }
            do {
                try FileSystem.rename(prefix + id, prefix + goneName, in: fd)
            } catch {
                if error.code == ENOENT { return false }
                throw error
            }
        }
        let gone = prefix + goneName
        sessionsDirectory.removed()
        if affinity, let home = try? home(of: goneName) {
            taken = home
            homes.count(home, -1)
            _ = unlinkat(fd, gone + "/" + SessionStore.homeFile, 0)
        }
        if burying && graveyard {
            buried += 1
        } else {
            try? FileSystem.removeTree(gone, in: fd, expecting: SessionStore.expirationFile)
        }
        return true
    }

    func removingName(for id: String) -> String {
        var rng = RandomBytes()
        return SessionStore.removingPrefix + id + "-" + String(rng.next(), radix: 36)
    }

    /// In this worker's own part of the graveyard, `.graveyard/<pid>`,
    /// which only its thread empties: threads of several workers never
    /// contend for one entry (emptying one shared directory, 8 workers'
    /// threads tried the same entries and fell behind the renames). Unique
    /// among this process's burials; never a session's name.
    private func buryingName(for id: String) -> String {
        burials &+= 1
        return SessionStore.graveyardName + "/" + pid + "/" + id + "-" + String(burials)
    }

    /// A burial found no such directory: the graveyard, or this worker's part
    /// of it, made again (a thread removes each once empty). False when
    /// both were there, so that it was the session that was gone.
    private func remakeGraveyard(in fd: Int32, prefix: String) -> Bool {
        let top = prefix + SessionStore.graveyardName
        let madeTop = (try? FileSystem.makeDirectory(top, in: fd, mode: 0o700)) != nil
        let madeOwn = (try? FileSystem.makeDirectory(top + "/" + pid, in: fd, mode: 0o700)) != nil
        return madeTop || madeOwn
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

    /// A pass is under way (its listing open).
    public var sweepInPass: Bool { sweep.inPass }

    /// The part of each pass this worker sweeps (every worker sweeps one).
    public var sweepShare: SweepShare {
        get { sweep.share }
        set { sweep.share = newValue }
    }
}
