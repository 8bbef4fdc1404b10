import Glibc

/// Expiry times this worker has already read, kept honest by inotify so that
/// the files stay the only truth: every change to a cached session's
/// directory or `.expiration_ts`, by any process, is queued by the kernel in
/// the very system call that makes it, and the queue is drained before an
/// answer is given from the cache. A valid session thus costs at most one
/// `read` that finds nothing, instead of opening and parsing its file.
///
/// In nginx the queue is drained once per turn of the event loop, not once
/// per request (`start(perTurn: true)`, `endTurn()`): every request handled
/// in a turn had begun to arrive before the turn began, so a change that
/// the drain cannot see yet was made while that request was already on its
/// way, and either order is a true one. A request sent after a change was
/// made is read in a later turn, and sees it.
///
/// Bounded: at most `capacity` sessions (and inotify watches) per worker.
/// The worker's caches share one inotify instance (`Inotify`).
final class SessionCache<Key: CacheKey> {
    let capacity: Int
    private let root: String
    private let inotify: Inotify
    private var fd: Int32 { inotify.fd }
    private var rootWatch: Int32 = -1
    private var entries: [Key: (cached: Cached, watch: Int32)] = [:]
    private var watched: [Int32: Key] = [:]
    private var order: [Key] = []
    private var next = 0
    var perTurn: Bool { inotify.perTurn }
    private var listening = false
    /// The drain after which the sessions directory's watch was last tried.
    private var rootTried: UInt64 = .max

    init(root: String, capacity: Int = 4096, inotify: Inotify = Inotify()) {
        self.root = root
        self.capacity = capacity
        self.inotify = inotify
    }

    /// In the worker process, once; without it the cache stays off. With
    /// `perTurn`, the caller reports the end of each turn of its event loop.
    func start(perTurn: Bool = false) {
        inotify.start(perTurn: perTurn)
        guard !listening else { return }
        listening = true
        inotify.listen { [weak self] events in self?.apply(events) }
        watchRoot()
    }

    var isOn: Bool { fd >= 0 && rootWatch >= 0 }

    private func watchRoot() {
        guard fd >= 0 else { return }
        rootWatch = inotify_add_watch(fd, root, InotifyEvents.root)
        if rootWatch >= 0 {
            inotify.watched(root)
        } else if errno != ENOENT {
            inotify.watchFailed(root, .current)
        }
    }

    /// What is cached of `id`, after every change so far has been applied.
    func entry(of id: Key) -> Cached? {
        inotify.drainOncePerTurn()
        if rootWatch < 0, rootTried != inotify.drains {
            rootTried = inotify.drains
            watchRoot()
        }
        return entries[id]?.cached
    }

    /// A home this worker gave the session itself: the change it made on
    /// disk is applied at the next drain too, which forgets the entry.
    func update(_ id: Key, home: Home?) {
        entries[id]?.cached.home = home
    }

    /// The next answer from the cache drains the queue again.
    func endTurn() {
        inotify.endTurn()
    }

    /// Watches the session's directory, then reads it with `read`: a change
    /// made after the read is seen, one made before is read. `id` must be
    /// canonical, as the caller checked before building `directory`: a key
    /// that is found is trusted without another check.
    func remember(_ id: Key, directory: String, read: () throws(SystemError) -> Cached?) throws(SystemError) -> Cached? {
        guard isOn else { return try read() }
        let watch = inotify_add_watch(fd, directory, InotifyEvents.session)
        guard watch >= 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            inotify.sessionWatchFailed(directory, .current)
            return try read()  // out of watches: still correct, just not cached
        }
        inotify.sessionWatched()
        let value: Cached?
        do {
            value = try read()
        } catch {
            inotify_rm_watch(fd, watch)
            throw error
        }
        guard let value else {
            inotify_rm_watch(fd, watch)
            return nil
        }
        drain()  // a change between the watch and now must not be cached
        if watched[watch] == nil, entries[id] == nil || entries[id]?.watch == watch {
            insert(id, value, watch)
        }
        return value
    }

    func forget(_ id: Key) {
        guard let entry = entries.removeValue(forKey: id) else { return }
        watched[entry.watch] = nil
        inotify_rm_watch(fd, entry.watch)
    }

    private func insert(_ id: Key, _ cached: Cached, _ watch: Int32) {
        if entries.count >= capacity { evictOne() }
        entries[id] = (cached, watch)
        watched[watch] = id
        if order.count < capacity {
            order.append(id)
        } else {
            order[next] = id
            next = (next + 1) % capacity
        }
    }

    private func evictOne() {
        for _ in 0..<order.count {
            let victim = order[next]
            if entries[victim] != nil {
                forget(victim)
                return
            }
            next = (next + 1) % order.count
        }
    }

    private func clear() {
        for (_, entry) in entries { inotify_rm_watch(fd, entry.watch) }
        entries.removeAll()
        watched.removeAll()
    }

    /// Applies every queued change (of every cache on this instance).
    func drain() {
        inotify.drain()
        if rootWatch < 0 {
            rootTried = inotify.drains
            watchRoot()
        }
    }

    private func apply(_ events: UnsafeRawBufferPointer) {
        let header = MemoryLayout<inotify_event>.size
        var offset = 0
        while offset + header <= events.count {
            let wd = events.load(fromByteOffset: offset, as: Int32.self)
            let mask = events.load(fromByteOffset: offset + 4, as: UInt32.self)
            let len = Int(events.load(fromByteOffset: offset + 12, as: UInt32.self))
            let nameBytes = events[(offset + header)..<min(offset + header + len, events.count)]
            let name = String(decoding: nameBytes.prefix { $0 != 0 }, as: UTF8.self)
            offset += header + len

            if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                clear()
            } else if wd == rootWatch {
                if mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED) != 0 {
                    clear()
                    rootWatch = -1
                } else if let id = Key(entryName: name) {
                    forget(id)
                }
            } else if let id = watched[wd] {
                if mask & UInt32(IN_IGNORED) != 0 {
                    entries[id] = nil
                    watched[wd] = nil
                } else if mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF) != 0 || name == SessionStore.expirationFile
                            || name == SessionStore.homeFile {
                    forget(id)
                }
            }
        }
    }
}

/// What a worker keeps of a session it has read.
struct Cached: Equatable {
    let expiresAt: Double
    /// Read only where session affinity is configured.
    var home: Home?
}

/// What a cache is keyed by: made from the name of an entry of the sessions
/// directory, nil for an entry that is no such session.
protocol CacheKey: Hashable {
    init?(entryName: String)
}

extension SessionKey: CacheKey {
    init?(entryName: String) { self.init(entryName) }
}

/// What a cache watches: in a session's directory, any change to it or its
/// files; in the sessions directory, entries going away.
enum InotifyEvents {
    static let session = UInt32(IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE
        | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW)
    static let root = UInt32(IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF
        | IN_ONLYDIR | IN_DONT_FOLLOW)
}
