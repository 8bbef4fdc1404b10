import Glibc

/// Removes expired sessions in the background of one worker, a few entries
/// per timer tick, so that no request ever waits for a scan of all sessions
/// and no tick holds the event loop for long.
///
/// A pass is spread over half the interval, not run as fast as ticks allow:
/// reading 100k live sessions' files at 16 per millisecond took 8% of a
/// worker's time for 6 s; spread over 30 s, about 3%. Only a store too
/// large to cover that way ticks every millisecond.
final class ExpirySweep {
    /// Entries examined per tick, and the shortest pause between ticks.
    static let batch = 16
    static let tickMs: UInt64 = 1
    /// Directories without `.expiration_ts` younger than this may belong to
    /// a create in progress (ours, or the Python library's).
    static let grace: Double = 60

    let interval: Double
    private var dir: OpaquePointer?
    private var nextPass: Double = 0
    /// The pause between this pass's ticks.
    private var pace: UInt64 = ExpirySweep.tickMs

    init(interval: Double) {
        self.interval = interval
    }

    deinit {
        if let dir { closedir(dir) }
    }

    /// A pass every tenth of the lifetime, between 1 s and 60 s apart.
    static func interval(forExpiration seconds: Int64) -> Double {
        min(60, max(1, Double(seconds) / 10))
    }

    /// The pause between ticks that spreads a pass over `entries` across
    /// half the interval.
    static func pace(entries: Int, interval: Double) -> UInt64 {
        let ticks = max(1, (entries + batch - 1) / batch)
        return max(tickMs, UInt64(interval * 1000 / 2 / Double(ticks)))
    }

    func step(store: SessionStore, now: Double) -> UInt64 {
        if dir == nil {
            if now < nextPass { return UInt64(((nextPass - now) * 1000).rounded(.up)) }
            guard let opened = opendir(store.root) else {
                nextPass = now + interval
                return UInt64(interval * 1000)
            }
            dir = opened
            // where the file system does not count sessions, as fast as ticks allow
            pace = store.directoryCount().map { ExpirySweep.pace(entries: Int($0), interval: interval) }
                ?? ExpirySweep.tickMs
        }
        for _ in 0..<ExpirySweep.batch {
            guard let d = dir, let entry = readdir(d) else {
                if let d = dir { closedir(d) }
                dir = nil
                nextPass = now + interval
                return UInt64(interval * 1000)
            }
            examine(FileSystem.entryName(entry), store: store, now: now)
        }
        return pace
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
                if now > expiresAt { store.retire(name) }
            } else if isStale(store.directory(of: name), now: now) {
                store.retire(name)
            }
        } else if name.hasPrefix(SessionStore.removingPrefix) {
            try? FileSystem.removeTree(store.root + "/" + name)
        }
    }

    private func isStale(_ path: String, now: Double) -> Bool {
        guard let mtime = FileSystem.modificationTime(path) else { return false }
        return now - mtime > ExpirySweep.grace
    }
}
