import Glibc

/// An errno with the text the C library gives it, which is what the
/// `Failed to ... session: <reason>` answers show.
public struct SystemError: Error, Equatable, CustomStringConvertible {
    public let code: Int32

    public init(_ code: Int32) { self.code = code }

    public static var current: SystemError { SystemError(errno) }

    /// Not from the C library: the store holds `sagemaker_sessions_max`.
    public static let limitReached = SystemError(-1)

    public var description: String {
        if self == .limitReached { return "session limit reached" }
        guard let text = strerror(code) else { return "error \(code)" }
        return String(cString: text)
    }
}

/// The few file operations the store needs: on a path, or on a name in a
/// directory held open (`in`). Small tmpfs operations only: this runs
/// inside nginx's event loop.
enum FileSystem {
    static func makeDirectory(_ path: String, in dir: Int32 = AT_FDCWD, mode: mode_t = 0o755) throws(SystemError) {
        if mkdirat(dir, path, mode) != 0 { throw .current }
    }

    /// `mkdir -p`.
    static func makeDirectories(_ path: String) throws(SystemError) {
        var prefix = ""
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + part
            if mkdir(prefix, 0o755) != 0 {
                let e = errno
                if e != EEXIST { throw SystemError(e) }
            }
        }
        guard isDirectory(path) else { throw SystemError(ENOTDIR) }
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates a new file holding `bytes`; fails if it exists.
    static func createFile(_ path: String, in dir: Int32 = AT_FDCWD, bytes: String) throws(SystemError) {
        let fd = openat(dir, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0 { throw .current }
        var bytes = bytes
        let ok = bytes.withUTF8 { buf -> Bool in
            var done = 0
            while done < buf.count {
                let n = write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                done += n
            }
            return true
        }
        let e = errno
        close(fd)
        if !ok { throw SystemError(e) }
    }

    /// Reads a small file whole; files larger than `limit` are an error.
    /// Never waits: a FIFO another process put in its place reads as empty.
    /// With `regularOnly`, anything but a regular file is EINVAL, and a file
    /// larger than `limit` is refused before it is read (one `fstat` more).
    static func readSmallFile(_ path: String, in dir: Int32 = AT_FDCWD, limit: Int = 4096,
                              regularOnly: Bool = false) throws(SystemError) -> [UInt8] {
        let fd = openat(dir, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        if fd < 0 { throw .current }
        defer { close(fd) }
        var wanted = limit
        if regularOnly {
            var st = stat()
            if fstat(fd, &st) != 0 { throw .current }
            guard (st.st_mode & S_IFMT) == S_IFREG else { throw SystemError(EINVAL) }
            guard st.st_size <= limit else { throw SystemError(EFBIG) }
            wanted = Int(st.st_size)  // one byte more shows a file that grew since
        }
        var failure: Int32 = 0
        let out = [UInt8](unsafeUninitializedCapacity: wanted + 1) { buffer, count in
            var total = 0
            while total <= wanted, let base = buffer.baseAddress {
                let n = read(fd, base + total, wanted + 1 - total)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    break
                }
                total += n
                // a regular file gives all it has at once: a short read is its end
                if n == 0 || total <= limit { break }
            }
            count = total
        }
        if failure != 0 { throw SystemError(failure) }
        if out.count > limit { throw SystemError(EFBIG) }
        return out
    }

    static func rename(_ from: String, _ to: String, in dir: Int32 = AT_FDCWD) throws(SystemError) {
        if renameat(dir, from, dir, to) != 0 { throw .current }
    }

    /// Modification time in Unix seconds, nil if the entry is gone.
    static func modificationTime(_ path: String) -> Double? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1_000_000_000
    }

    /// `removeTree` for a directory that should hold only `name`, as a
    /// session's holds only `.expiration_ts`: two system calls where listing
    /// it takes five more. Whatever else it holds is listed and removed too.
    static func removeTree(_ path: String, in dir: Int32 = AT_FDCWD, expecting name: String) throws(SystemError) {
        if unlinkat(dir, path + "/" + name, 0) == 0 || errno == ENOENT,
           unlinkat(dir, path, AT_REMOVEDIR) == 0 || errno == ENOENT {
            return
        }
        try removeTree(path, in: dir)
    }

    /// `rm -rf` of one session directory: regular entries and, for whatever
    /// another process left there, nested directories a few levels deep.
    static func removeTree(_ path: String, in dir: Int32 = AT_FDCWD) throws(SystemError) {
        let fd = openat(dir, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return }
            if errno == ENOTDIR || errno == ELOOP {
                if unlinkat(dir, path, 0) != 0, errno != ENOENT { throw .current }
                return
            }
            throw .current
        }
        try removeContents(of: fd, depth: 0)
        if unlinkat(dir, path, AT_REMOVEDIR) != 0, errno != ENOENT { throw .current }
    }

    private static func removeContents(of fd: Int32, depth: Int) throws(SystemError) {
        guard let dir = fdopendir(fd) else {
            let e = errno
            close(fd)
            throw SystemError(e)
        }
        defer { closedir(dir) }
        var failure: SystemError?
        while let entry = readdir(dir) {
            let name = entryName(entry)
            if name == "." || name == ".." { continue }
            if unlinkat(fd, name, 0) == 0 || errno == ENOENT { continue }
            guard errno == EISDIR, depth < 8 else {
                failure = .current
                continue
            }
            let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if child < 0 {
                failure = .current
                continue
            }
            do {
                try removeContents(of: child, depth: depth + 1)
            } catch {
                failure = error
            }
            if unlinkat(fd, name, AT_REMOVEDIR) != 0, errno != ENOENT { failure = .current }
        }
        if let failure { throw failure }
    }

    static func entryName(_ entry: UnsafeMutablePointer<dirent>) -> String {
        withUnsafePointer(to: &entry.pointee.d_name) {
            String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
        }
    }
}
