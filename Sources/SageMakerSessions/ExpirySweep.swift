import Glibc

/// Removes expired sessions in the background of one worker, a few entries
/// per timer tick, so that no request ever waits for a scan of all sessions
/// and no tick holds the event loop for long.
final class ExpirySweep {
    /// Entries examined per tick, and the pause between ticks of one pass.
    static let batch = 16
    static let tickMs: UInt64 = 1
    /// Directories without `.expiration_ts` younger than this may belong to
    /// a create in progress (ours, or the Python library's).
    static let grace: Double = 60

    let interval: Double
    private var dir: OpaquePointer?
    private var nextPass: Double = 0

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

    func step(store: SessionStore, now: Double) -> UInt64 {
        if dir == nil {
            if now < nextPass { return UInt64(((nextPass - now) * 1000).rounded(.up)) }
            guard let opened = opendir(store.root) else {
                nextPass = now + interval
                return UInt64(interval * 1000)
            }
            dir = opened
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
        return ExpirySweep.tickMs
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
