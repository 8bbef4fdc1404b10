import Glibc
import XCTest
@testable import SageMakerSessions

/// Small file-system helpers for the tests, written on Glibc alone so that
/// the tests do not lean on the code under test to inspect what it did.
enum TestFS {
    /// A fresh directory under $TMPDIR (or /tmp).
    static func makeTempDirectory(file: StaticString = #filePath, line: UInt = #line) -> String {
        var base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        if base.isEmpty || !base.hasPrefix("/") { base = "/tmp" }
        var template = Array((base + "/sms-tests-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buf -> Bool in
            guard let base = buf.baseAddress else { return false }
            return mkdtemp(base) != nil
        }
        XCTAssertTrue(made, "mkdtemp failed: errno \(errno)", file: file, line: line)
        return template.withUnsafeBufferPointer { buf in
            String(cString: buf.baseAddress!)
        }
    }

    /// A Unix socket bound at `path` (its descriptor): an entry no file
    /// call can open.
    static func bindSocket(_ path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        XCTAssertEqual(bound, 0, "bind \(path): errno \(errno)")
        return fd
    }

    /// `rm -rf`, tolerant of whatever is missing.
    static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in entries(path) { removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    /// Names in a directory, without "." and "..", sorted; [] when missing.
    static func entries(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    @discardableResult
    static func mkdir(_ path: String) -> Bool {
        Glibc.mkdir(path, 0o755) == 0
    }

    @discardableResult
    static func write(_ path: String, _ text: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        if bytes.isEmpty { return true }
        return bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) } == bytes.count
    }

    static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Runs `body` in a forked child and reports whether the child ended
/// normally with status 0. Lets a test probe code that may trap without
/// taking the whole test process down with it.
func childExitsCleanly(_ body: () -> Void) -> Bool {
    fflush(nil)
    let pid = fork()
    if pid == 0 {
        // Keep a trap's crash report out of the test log.
        let devNull = open("/dev/null", O_WRONLY)
        if devNull >= 0 { dup2(devNull, 2) }
        body()
        _exit(0)
    }
    guard pid > 0 else { return false }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    // WIFEXITED && WEXITSTATUS == 0
    return (status & 0x7f) == 0 && ((status >> 8) & 0xff) == 0
}

extension JSON {
    static func parsing(_ bytes: [UInt8]) -> JSON? {
        bytes.withUnsafeBytes { JSON.parse($0) }
    }
}

extension SessionRequest {
    static func classify(_ text: String) -> SessionRequest {
        Array(text.utf8).withUnsafeBytes { classify($0) }
    }
}

extension SessionManager {
    func decide(header: String?, body: String, now: Double) -> Decision {
        decide(sessionID: header.map { Array($0.utf8) }, body: kept(body), now: now)
    }
}

/// A test case with a fresh directory, `root`, removed after each test.
class TempDirectoryTestCase: XCTestCase {
    var root = ""

    override func setUp() {
        super.setUp()
        root = TestFS.makeTempDirectory()
    }

    override func tearDown() {
        TestFS.removeTree(root)
        super.tearDown()
    }
}

extension Array where Element == JSONSplice.Piece {
    /// The spliced body, as bytes.
    var bytes: [UInt8] {
        flatMap { piece -> [UInt8] in
            switch piece {
            case .original(let b): return [UInt8](b)
            case .new(let b): return b
            }
        }
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }

    /// The spliced body re-encoded compactly, to compare its meaning.
    func dumped() -> String? {
        JSON.parse(text)?.dumped()
    }
}

extension SessionManager {
    /// The body `decision`, made for `body` and the session header `id`,
    /// passes on spliced; nil when it passes the client's body.
    func spliced(_ decision: Decision, body: UnsafeRawBufferPointer, id: String) -> [JSONSplice.Piece]? {
        let point: JSONSplice.Point
        switch decision {
        case .passWithBody(let p): point = p
        case .passSession(_, .some(let p)): point = p
        default: return nil
        }
        guard let path = injectPath else { return nil }
        return Array(id.utf8).withUnsafeBytes {
            JSONSplice.Splice(point, body: RequestBody(body), value: $0, path: path.splice).pieces
        }
    }
}

/// Bytes that outlive the call, as nginx's buffers outlive a decision: a
/// spliced body points into them. Kept for the whole test run.
func kept(_ text: String) -> UnsafeRawBufferPointer {
    kept(Array(text.utf8))
}

func kept(_ bytes: [UInt8]) -> UnsafeRawBufferPointer {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
    buffer.copyBytes(from: bytes)
    return UnsafeRawBufferPointer(rebasing: buffer[0..<bytes.count])
}
