import Glibc

/// The one inotify instance of a worker, shared by its session caches
/// (built-in sessions, and engine sessions recorded for their home): Linux
/// allows a user `fs.inotify.max_user_instances` of them (128 by default),
/// and all of nginx's workers run as one user, so a worker takes one at
/// most. Its queue is read here and each event handed to every cache; each
/// cache knows its own watches.
final class Inotify {
    private(set) var fd: Int32 = -1
    private(set) var perTurn = false
    private var drainedThisTurn = false
    private var buffer = [UInt8](repeating: 0, count: 4096)
    private var listeners: [(UnsafeRawBufferPointer) -> Void] = []
    /// Why this worker has no instance, or no watch of the sessions
    /// directory, once it tried: the caches are off (still right, slower).
    private(set) var failure: Failure?
    /// Counted in `sagemaker_sessions_workers_uncached`: while it has no
    /// instance, a sessions directory unwatched, or its last try at a
    /// session's watch failed (out of fs.inotify.max_user_watches). The
    /// gauge's semantics hold for the last: sessions past the limit are
    /// read from disk on every request, as without a cache.
    private(set) var counted = false
    private var rootsUnwatched: Set<String> = []
    private var sessionWatchesOut = false
    /// Limits already named in a [warn]: one each per worker.
    private var toldLimits: Set<String> = []
    private var untold: [String] = []
    /// A worker without an instance tries again at most this often: a
    /// reload's new workers start while the old ones still hold theirs.
    static let retryNanoseconds: UInt64 = 1_000_000_000
    private var lastTry: UInt64 = 0
    private let clock: () -> UInt64

    struct Failure: Equatable, CustomStringConvertible {
        let call: String
        let error: SystemError
        /// The kernel limit to raise, under /proc/sys/fs/inotify/.
        let limit: String
        /// Its value now, as read from /proc; nil when it cannot be read.
        let current: String?

        /// The whole cache is off (no instance, no directory watch), or
        /// only the sessions whose watch could not be had.
        let whole: Bool

        var description: String {
            "inotify: \(call) failed (\(error.code): \(error)): this worker runs without its session cache "
                + (whole ? "and reads every session's files on each request"
                         : "for the sessions it cannot watch, and reads their files on each request")
                + "; raise fs.inotify.\(limit) (now " + (current ?? "unknown") + ")"
        }

        init(call: String, error: SystemError, limit: String? = nil, current: String? = nil, whole: Bool = true) {
            self.call = call
            self.whole = whole
            self.error = error
            let limit = limit ?? (error.code == ENOSPC ? "max_user_watches" : "max_user_instances")
            self.limit = limit
            self.current = current ?? Inotify.currentLimit(limit)
        }
    }

    init(clock: @escaping () -> UInt64 = ExpirySweep.monotonicNanoseconds) {
        self.clock = clock
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// In the worker process, once.
    func start(perTurn: Bool) {
        guard fd < 0, failure == nil else { return }
        self.perTurn = perTurn
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        if fd < 0 {
            failed(Failure(call: "inotify_init1()", error: .current))
            lastTry = clock()
        }
    }

    /// A watch of the sessions directory could not be had: the caches stay
    /// off (each drain tries again). The first failure is the one told.
    func watchFailed(_ path: String, _ error: SystemError) {
        rootsUnwatched.insert(path)
        failed(Failure(call: "inotify_add_watch(\"\(path)\")", error: error))
    }

    /// The sessions directory `path` is watched (again).
    func watched(_ path: String) {
        guard rootsUnwatched.remove(path) != nil else { return }
        recount()
    }

    /// A session's watch could not be had (ENOSPC: the user's
    /// fs.inotify.max_user_watches are all taken): that session is read
    /// from disk, uncached. Told once per worker, in the next `takeWarning`.
    func sessionWatchFailed(_ path: String, _ error: SystemError) {
        sessionWatchesOut = true
        let why = Failure(call: "inotify_add_watch(\"\(path)\")", error: error, whole: false)
        if failure == nil { failure = why }
        if toldLimits.insert(why.limit).inserted { untold.append(why.description) }
        recount()
    }

    /// A session's watch was had: watches are to be had again.
    func sessionWatched() {
        guard sessionWatchesOut else { return }
        sessionWatchesOut = false
        recount()
    }

    /// What was not told yet (a failure after the worker started), once.
    func takeWarning() -> String? {
        untold.isEmpty ? nil : untold.removeFirst()
    }

    private func failed(_ why: Failure) {
        if failure == nil {
            failure = why
            toldLimits.insert(why.limit)  // startWorker returns it for the [warn]
        } else if toldLimits.insert(why.limit).inserted {
            untold.append(why.description)
        }
        recount()
    }

    /// The gauge follows whether this worker runs without (part of) its cache now.
    private func recount() {
        guard !stopped else { return }
        let uncached = (fd < 0 && failure != nil) || !rootsUnwatched.isEmpty || sessionWatchesOut
        guard uncached != counted else { return }
        counted = uncached
        Metrics.workerUncached(uncached)
    }
    private var stopped = false

    /// Without an instance, one more try (at most once a second); a worker
    /// that gets one is counted as uncached no more.
    private func retry() {
        let now = clock()
        guard now &- lastTry >= Inotify.retryNanoseconds else { return }
        lastTry = now
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        if fd >= 0 { recount() }
    }

    /// The worker exits: it is no longer one running without the cache.
    func stop() {
        stopped = true
        if counted {
            counted = false
            Metrics.workerUncached(false)
        }
    }

    /// `apply` is given every chunk of events read.
    func listen(_ apply: @escaping (UnsafeRawBufferPointer) -> Void) {
        listeners.append(apply)
    }

    /// Drains the queue, once per turn when `perTurn`.
    func drainOncePerTurn() {
        guard !drainedThisTurn else { return }
        if fd < 0, failure != nil { retry() }
        drain()
        drainedThisTurn = perTurn
    }

    func endTurn() {
        drainedThisTurn = false
    }

    /// Drains so far: a cache without its watch of the sessions directory
    /// tries again once a drain (once a turn), whichever cache drained.
    private(set) var drains: UInt64 = 0

    /// Applies every queued change, in every cache.
    func drain() {
        drains &+= 1
        guard fd >= 0 else { return }
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return }  // EAGAIN: nothing changed
            buffer.withUnsafeBytes { raw in
                let events = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                for apply in listeners { apply(events) }
            }
        }
    }

    /// `/proc/sys/fs/inotify/<limit>`'s value, trimmed.
    static func currentLimit(_ limit: String) -> String? {
        guard let bytes = try? FileSystem.readSmallFile("/proc/sys/fs/inotify/" + limit, limit: 64) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self).filter { !$0.isWhitespace }
        return text.isEmpty ? nil : text
    }
}
