import Glibc

/// A close owed to an engine for one of its sessions that expired at its
/// home: a file in the sessions directory named
/// `.expire.<tries>.<due>.<pid>.<id>` that holds the home's address.
///
/// A file, not a directory: the sessions directory's link count (the
/// session limit) does not count it. Its state is in its name, so one
/// rename both claims it (of all workers and cycles, one rename of a name
/// succeeds) and records a try. `due` is Unix milliseconds; `pid` is the
/// process calling it now, 0 when none is. On tmpfs it outlives a reload
/// or a restart of nginx, so the next cycle's sweep finds it.
struct ExpireEntry: Equatable {
    static let prefix = ".expire."

    let id: String
    var tries: Int
    var due: Int64
    var pid: Int32

    var name: String { ExpireEntry.prefix + "\(tries).\(due).\(pid)." + id }

    init(id: String, tries: Int, due: Int64, pid: Int32) {
        self.id = id
        self.tries = tries
        self.due = due
        self.pid = pid
    }

    /// nil for a name not in the format, or whose id is not an engine's.
    init?(name: String) {
        guard name.hasPrefix(ExpireEntry.prefix) else { return nil }
        let fields = name.dropFirst(ExpireEntry.prefix.count).split(separator: ".", maxSplits: 3,
                                                                    omittingEmptySubsequences: false)
        guard fields.count == 4, let tries = Int(fields[0]), tries >= 0, let due = Int64(fields[1]),
              let pid = Int32(fields[2]), pid >= 0, EngineSessionName(entryName: String(fields[3])) != nil
        else { return nil }
        self.init(id: String(fields[3]), tries: tries, due: due, pid: pid)
    }
}

/// The closes one worker owes: entries it wrote or found, waiting until
/// they are due, and those it is calling now. The directory is the truth;
/// this is what the worker knows of it.
public final class ExpireQueue {
    /// The pauses before each try after the first; once the last fails the
    /// close is given up with a `[warn]`. The last comes 15 s after the
    /// first, past nginx's default `fail_timeout` (10 s): a home that
    /// refused the first, marked failed, is tried for real once more.
    static let backoff: [Int64] = [1_000, 2_000, 4_000, 8_000]
    static var maxTries: Int { backoff.count + 1 }
    /// Calls out at once at most (each holds a connection of the worker).
    static let maxCalling = 32

    var waiting: [String: ExpireEntry] = [:]
    var calling: [String: (entry: ExpireEntry, home: Home)] = [:]
    /// Read in the worker (the queue is made before the fork).
    lazy var pid: Int32 = getpid()
    /// `[warn]` lines for the shim to log (`takeNote()`).
    var notes: [String] = []

    public init() {}

    /// No entry waiting is due before this; nil with none waiting. Kept
    /// as entries come, made exact when a look finds none due: the shim
    /// asks after every sweep tick, which must not cost a scan of all.
    private(set) var earliest: Int64?

    func add(_ entry: ExpireEntry) {
        waiting[entry.id] = entry
        earliest = min(earliest ?? entry.due, entry.due)
    }

    func refresh() {
        earliest = waiting.values.lazy.map(\.due).min()
    }

    /// Milliseconds until the next entry is due (0: now, or perhaps);
    /// nil with none waiting, or no room for another call.
    func wait(now: Int64) -> Int64? {
        guard calling.count < ExpireQueue.maxCalling, let earliest else { return nil }
        return max(0, earliest - now)
    }

    /// One found by the sweep: taken in unless this worker knows it, or a
    /// live process is calling it (which renames it back if it fails).
    func found(_ entry: ExpireEntry) {
        guard waiting[entry.id] == nil, calling[entry.id] == nil else { return }
        if entry.pid != 0 && entry.pid != pid && Metrics.alive(Int64(entry.pid)) { return }
        add(entry)
    }

    static func milliseconds(_ seconds: Double) -> Int64 { Int64((seconds * 1000).rounded(.down)) }
}

/// What became of a close once the engine answered it, for the log.
public struct ExpireOutcome: Equatable {
    public let level: Answer.LogLevel
    public let message: String
}

extension SessionStore {
    /// The sweep's hook where it removes an expired session: an engine's
    /// session with a home, where a close location is known, is taken away
    /// as the request path takes it (one rename, one winner) and owed a
    /// close. False when it is not such a session: the sweep removes it.
    /// A UUID-named session is an engine's only where no location makes
    /// built-in sessions (an engine may name its sessions by UUIDs).
    func closeExpired(_ name: String, now: Double) -> Bool {
        guard let queue = expireQueue, affinity, !(builtinSessions && SessionID.isCanonical(name)),
              EngineSessionName(entryName: name) != nil else { return false }
        var home: Home?
        guard (try? takeAway(name, burying: true, home: &home)) == true else { return true }
        Metrics.expiredSessionRemoved()
        if let home { owe(name, home: home, queue: queue, now: now) }
        return true
    }

    /// Writes the entry of a close owed now. Written whole before anyone
    /// may claim it: only its writer knows it until the sweep's next pass.
    func owe(_ id: String, home: Home, queue: ExpireQueue, now: Double) {
        let entry = ExpireEntry(id: id, tries: 0, due: ExpireQueue.milliseconds(now), pid: 0)
        do throws(SystemError) {
            try FileSystem.createFile(root + "/" + entry.name, bytes: home.text)
            queue.add(entry)
        } catch {
            queue.notes.append("session expired: \(id); its close at \(home.text) could not be recorded (\(error))")
        }
    }

    /// The request path claimed one (`claimExpired`) and calls it now: its
    /// entry is written with this worker's pid, so that a failure is tried
    /// again as the sweep's are, and a reload or a restart keeps it.
    func oweCalling(_ id: String, home: Home, now: Double) {
        guard let queue = expireQueue else { return }
        let entry = ExpireEntry(id: id, tries: 0, due: ExpireQueue.milliseconds(now), pid: queue.pid)
        do throws(SystemError) {
            try FileSystem.createFile(root + "/" + entry.name, bytes: home.text)
            queue.calling[id] = (entry, home)
        } catch {
            queue.notes.append("session expired: \(id); its close at \(home.text) could not be recorded (\(error))")
        }
    }

    /// The sweep found an entry (left by another worker, or cycle).
    func foundExpireEntry(_ name: String) {
        guard let queue = expireQueue, let entry = ExpireEntry(name: name) else { return }
        queue.found(entry)
    }

    /// The next `[warn]` line of the closes owed, once (`takeWarning`).
    func takeExpireNote() -> String? {
        guard let queue = expireQueue, !queue.notes.isEmpty else { return nil }
        return queue.notes.removeFirst()
    }

    /// Milliseconds until a close is due; nil with none owed.
    public func expireWait(now: Double = WallClock.now()) -> Int64? {
        expireQueue?.wait(now: ExpireQueue.milliseconds(now))
    }

    /// The next close due, claimed by this worker (its pid in the name),
    /// with its home; nil when none is due. Entries gone (another claimed
    /// them) or without a readable home are dropped, the latter with a warning.
    public func takeExpired(now: Double = WallClock.now()) -> (id: String, home: Home)? {
        guard let queue = expireQueue, queue.calling.count < ExpireQueue.maxCalling else { return nil }
        let ms = ExpireQueue.milliseconds(now)
        while let entry = queue.waiting.values.first(where: { $0.due <= ms }) {
            queue.waiting[entry.id] = nil
            if queue.waiting.isEmpty { queue.refresh() }
            var claimed = entry
            claimed.pid = queue.pid
            let path = root + "/" + claimed.name
            // Always renamed, even to its own name (which only checks that
            // it is there): the sweep reads names in batches, so one it
            // found may be gone since, taken or settled (by this worker too).
            guard (try? FileSystem.rename(root + "/" + entry.name, path)) != nil else { continue }
            let bytes = try? FileSystem.readSmallFile(path, limit: Homes.maxLength)
            guard let home = bytes.flatMap({ $0.withUnsafeBytes { homes.intern($0) } }) else {
                _ = unlink(path)
                queue.notes.append("session expired: \(entry.id); its close was given up: no home in \(claimed.name)")
                continue
            }
            queue.calling[entry.id] = (claimed, home)
            return (entry.id, home)
        }
        queue.refresh()
        return nil
    }

    /// The engine answered the close of `id` (or nginx did for it):
    /// counted, and the entry removed, or kept for a later try with its
    /// backoff, or given up after the last.
    public func expireAnswered(_ id: String, status: Int, complete: Bool, micros: Int64,
                               now: Double = WallClock.now()) -> ExpireOutcome? {
        Metrics.engineCall(.expire, status: status, micros: micros)
        return settleExpired(id, status: status, complete: complete, now: now)
    }

    /// The same, counted by the caller (the request path counts its calls
    /// as every engine call). nil when this worker is not calling `id`.
    func settleExpired(_ id: String, status: Int, complete: Bool, now: Double) -> ExpireOutcome? {
        guard let queue = expireQueue, let (entry, home) = queue.calling.removeValue(forKey: id) else { return nil }
        let path = root + "/" + entry.name
        let tries = entry.tries + 1
        if complete && (200..<300).contains(status) {
            _ = unlink(path)
            return ExpireOutcome(level: .info, message: "session expired: \(id); closed at its home \(home.text)")
        }
        let answer = complete ? "status \(status)" : "status \(status), answer unreadable"
        guard tries < ExpireQueue.maxTries else {
            _ = unlink(path)
            return ExpireOutcome(level: .warn, message: "session expired: \(id); its home \(home.text) did not close it "
                                 + "after \(tries) tries (\(answer)): given up")
        }
        let pause = ExpireQueue.backoff[tries - 1]
        let next = ExpireEntry(id: id, tries: tries, due: ExpireQueue.milliseconds(now) + pause, pid: 0)
        guard (try? FileSystem.rename(path, root + "/" + next.name)) != nil else {
            return ExpireOutcome(level: .warn, message: "session expired: \(id); its home \(home.text) did not close it "
                                 + "(\(answer)), and its entry is gone: not tried again")
        }
        queue.add(next)
        return ExpireOutcome(level: .info, message: "session expired: \(id); its home \(home.text) did not close it "
                             + "(\(answer)): try \(tries + 1) in \(pause / 1000) s")
    }
}

extension SessionStore {
    /// A close that cannot be made (its body could not be built from the
    /// close defaults): its entry removed, with a `[warn]`.
    public func dropExpired(_ id: String, why: String) {
        guard let queue = expireQueue, let (entry, home) = queue.calling.removeValue(forKey: id) else { return }
        _ = unlink(root + "/" + entry.name)
        queue.notes.append("session expired: \(id); its close at \(home.text) was given up: \(why)")
    }
}
