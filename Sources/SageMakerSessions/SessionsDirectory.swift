import Glibc

/// The directory that holds the sessions, as a worker sees it in one turn of
/// its event loop: opened at the turn's first use, so that a session's
/// entries are found from it instead of walking the whole configured path in
/// every system call (about 0.7 µs a create on tmpfs), and counted, for the
/// session limit.
///
/// The path stays the truth: opened again in every turn, it follows a
/// directory removed or replaced there (moved away and made again, mounted
/// over), as any change on disk is seen once per turn. Outside a worker's
/// turns (`perTurn` false) the path is used at every step.
final class SessionsDirectory {
    let path: String
    private var fd: Int32 = -1
    private var lookedUpThisTurn = false

    /// Sessions in it: its subdirectories when looked up, plus those this
    /// worker made since, minus those it took away. nil where the file
    /// system does not count them (a link count below 2) or it is missing.
    private(set) var sessions: Int64?

    /// Whether the sweep's graveyard was there when last looked for in
    /// this turn (nil: not looked for).
    private var graveyardSeen: Bool?

    init(path: String) { self.path = path }

    deinit { letGo() }

    func endTurn() { lookedUpThisTurn = false }

    /// A directory's link count is 2 plus its subdirectories (tmpfs, ext4):
    /// the sessions are counted in one `stat`. A directory this worker may
    /// not read is not opened, only reached by its path.
    func lookUp(perTurn: Bool) {
        guard !lookedUpThisTurn else { return }
        letGo()
        if perTurn { fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        var st = stat()
        let found = (fd >= 0 ? fstat(fd, &st) : stat(path, &st)) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
        sessions = found && st.st_nlink >= 2 ? max(0, Int64(st.st_nlink) - 2) : nil
        graveyardSeen = nil
        lookedUpThisTurn = perTurn
    }

    /// What the `*at` system calls need to reach `prefix + entry`: the
    /// directory opened in this turn and no prefix, or (not open) the whole
    /// path from the working directory.
    func entries(perTurn: Bool) -> (fd: Int32, prefix: String) {
        lookUp(perTurn: perTurn)
        return fd >= 0 ? (fd, "") : (AT_FDCWD, path + "/")
    }

    /// For a failure that shows the directory opened is no longer the one at
    /// the path: the next use looks the path up again.
    func letGo() {
        if fd >= 0 { close(fd) }
        fd = -1
        lookedUpThisTurn = false
    }

    /// The subdirectories counted in `sessions` that are no session: 1 while
    /// the sweep's graveyard is there (any worker's sweep may have made or
    /// removed it), else 0. One `fstatat`, once per turn.
    func graveyards() -> Int64 {
        if graveyardSeen == nil {
            var st = stat()
            let name = SessionStore.graveyardName
            let found = fd >= 0 ? fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) : lstat(path + "/" + name, &st)
            graveyardSeen = found == 0 && (st.st_mode & S_IFMT) == S_IFDIR
        }
        return graveyardSeen == true ? 1 : 0
    }

    func added() { sessions = sessions.map { $0 + 1 } }
    func removed() { sessions = sessions.map { $0 - 1 } }
}
