import Glibc

/// Removes expired sessions in the background of one worker, a few entries
/// per timer tick, so that no request ever waits for a scan of all sessions
/// and no tick holds the event loop for long.
///
/// A tick ends after `batch` entries or once it has run for `budget`,
/// whichever comes first, so the requests waiting behind it wait at most
/// about that long: 16 expired sessions, read and removed, held a worker
/// for about 360 µs.
///
/// With a graveyard (the shim has nginx's thread pool) an expired session
/// is only renamed into it, and the pool deletes its files: one tick takes
/// out about 8, where deleting them too took out one (10 system calls).
///
/// A pass is spread over half the interval, not run as fast as ticks allow:
/// reading 100k live sessions' files at 16 per millisecond took 8% of a
/// worker's time for 6 s; spread over 30 s, about 3%. A pass with more
/// entries than a worker examines at `rate` in that half is spread over
/// up to `longest` instead: 100k expired at a 20 s lifetime (a pass due
/// every 2 s) ran flat out, 7,000 a second, and took 11% of the core the
/// worker shared with the engine for 14 s, which every request there
/// waited its share of. After each tick the pause to the next, and how
/// many entries the next may read, are set by what is left and the time
/// left; a pass that is behind ticks every millisecond, as many as it can.
///
/// Every worker sweeps, each the entries its `share` owns: a tick reads up
/// to `batch` entries per worker, examines only its own (at most `batch`),
/// and passes over the others by their name's hash alone.
final class ExpirySweep {
    /// Entries examined per tick at most, and the shortest pause between ticks.
    static let batch = 16
    static let tickMs: UInt64 = 1
    /// The longest a tick goes on examining, in nanoseconds. A request that
    /// arrives during a tick waits at most about this long; with a graveyard
    /// a removal is about 12 µs of it (read, rename), so a tick removes
    /// about 8 and a pass 100k expired sessions in about 15 s.
    static let budget: UInt64 = 100_000
    /// Directories without `.expiration_ts` younger than this may belong to
    /// a create in progress (ours, or the Python library's).
    static let grace: Double = 60
    /// Entries a worker examines a second at most, unless half the interval
    /// asks for more, and the longest a pass is spread over: 100k expired
    /// with one worker in 20 s, well within the 30 s a pass's expired
    /// sessions are to be gone in.
    static let rate: Double = 5_000
    static let longest: Double = 20

    let interval: Double
    /// The part of each pass this worker sweeps.
    var share = SweepShare()
    private var dir: OpaquePointer?
    private var nextPass: Double = 0
    /// When this pass should be done, and how many entries the sessions
    /// directory's link count says it has left (nil where the file system
    /// does not count them: as fast as ticks allow).
    private var passEnds: Double = 0
    private var left: Int?
    /// Entries the next tick reads at most (all workers' entries).
    private var quota = ExpirySweep.batch
    /// Nanoseconds on a clock that only moves forward.
    private let clock: () -> UInt64

    init(interval: Double, clock: @escaping () -> UInt64 = ExpirySweep.monotonicNanoseconds) {
        self.interval = interval
        self.clock = clock
    }

    deinit {
        if let dir { closedir(dir) }
    }

    /// A pass is under way: its listing is open.
    var inPass: Bool { dir != nil }

    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// A pass every tenth of the lifetime, between 1 s and 60 s apart.
    static func interval(forExpiration seconds: Int64) -> Double {
        min(60, max(1, Double(seconds) / 10))
    }

    /// The pause before the next tick, for `entries` left to examine at
    /// `perTick` a tick within `seconds`.
    static func pace(entries: Int, perTick: Int, within seconds: Double) -> UInt64 {
        let perTick = max(perTick, 1)
        let ticks = max(1, (entries + perTick - 1) / perTick)
        return max(tickMs, UInt64(max(0, seconds) * 1000 / Double(ticks)))
    }

    func step(store: SessionStore, now: Double) -> UInt64 {
        if dir == nil {
            if now < nextPass { return UInt64(((nextPass - now) * 1000).rounded(.up)) }
            guard let opened = opendir(store.root) else {
                nextPass = now + interval
                return UInt64(interval * 1000)
            }
            dir = opened
            left = store.directoryCount().map { Int($0) }
            passEnds = now + ExpirySweep.span(entries: left ?? 0, workers: share.workers, interval: interval)
            quota = ExpirySweep.batch * share.workers
        }
        let deadline = clock() &+ ExpirySweep.budget
        var examined = 0
        var visited = 0
        while examined < ExpirySweep.batch && visited < quota
                && (visited == 0 || clock() < deadline) {
            guard let d = dir, let entry = readdir(d) else {
                if let d = dir { closedir(d) }
                dir = nil
                nextPass = now + interval
                return UInt64(interval * 1000)
            }
            visited += 1
            let mine = withUnsafePointer(to: &entry.pointee.d_name) {
                share.owns(UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            guard mine else { continue }
            examine(FileSystem.entryName(entry), store: store, now: now)
            examined += 1
        }
        left = left.map { max(0, $0 - visited) }
        // uncounted, or none left by the count yet the directory goes on
        guard let left, left > 0 else {
            quota = ExpirySweep.batch * share.workers
            return ExpirySweep.tickMs
        }
        let pause = ExpirySweep.pace(entries: left, perTick: visited, within: passEnds - now)
        quota = ExpirySweep.quota(entries: left, pause: pause, within: passEnds - now,
                                  most: ExpirySweep.batch * share.workers)
        return pause
    }

    /// How long a pass of `entries` is spread over: half the interval, or
    /// longer (up to `longest`) where that would ask a worker to examine
    /// more than `rate` of its share a second.
    static func span(entries: Int, workers: Int, interval: Double) -> Double {
        let atRate = Double(entries) / (rate * Double(max(workers, 1)))
        return max(interval / 2, min(longest, atRate))
    }

    /// Entries the next tick reads, `pause` milliseconds after this one, to
    /// end on time: what a pause in whole milliseconds cannot slow (1 ms,
    /// where 1.6 ms was wanted, took 8 a tick where 5 were enough). At
    /// least one; `most` once the time is up.
    static func quota(entries: Int, pause: UInt64, within seconds: Double, most: Int) -> Int {
        let ms = seconds * 1000
        guard ms > Double(pause) else { return most }
        let wanted = (Double(entries) * Double(pause) / ms).rounded(.up)
        return max(1, min(most, Int(wanted)))
    }

    private func examine(_ name: String, store: SessionStore, now: Double) {
        if SessionID.isCanonical(name) {
            let expiresAt: Double?
            do {
                expiresAt = try store.expiration(of: name)
            } catch {
                return
            }
            if let expiresAt {
                if now > expiresAt { remove(name, store: store, expired: true, now: now) }
            } else if isStale(store.directory(of: name), now: now) {
                remove(name, store: store, expired: false, now: now)
            }
        } else if name.hasPrefix(SessionStore.removingPrefix) {
            try? FileSystem.removeTree(store.root + "/" + name)
        } else if name.hasPrefix(ExpireEntry.prefix) {
            store.foundExpireEntry(name)
        } else if name == SessionStore.graveyardName {
            if store.graveyard {
                store.foundGraveyard()
            } else {
                try? FileSystem.removeTree(store.root + "/" + name)
            }
        } else if store.affinity, EngineSessionName(entryName: name) != nil {
            // an engine session recorded for its home: only once expired
            if let expiresAt = try? store.expiration(of: name), now > expiresAt {
                remove(name, store: store, expired: true, now: now)
            }
        }
    }

    /// The one place where the sweep removes a session: an expired one
    /// (counted), or a directory a create left without its expiry. With a
    /// graveyard, one rename; its files are deleted by nginx's thread pool.
    /// An engine's session with a home is owed a close instead (ExpireQueue.swift).
    private func remove(_ name: String, store: SessionStore, expired: Bool, now: Double) {
        if expired, store.closeExpired(name, now: now) { return }
        if expired {
            store.retireExpired(name, burying: true)
        } else {
            store.retire(name, burying: true)
        }
    }

    private func isStale(_ path: String, now: Double) -> Bool {
        guard let mtime = FileSystem.modificationTime(path) else { return false }
        return now - mtime > ExpirySweep.grace
    }
}
