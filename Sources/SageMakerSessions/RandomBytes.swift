import Glibc

/// The randomness of session ids, drawn from the kernel 4 KiB at a time
/// instead of one `getrandom` call per id. The buffer is a page the kernel
/// wipes in a forked child (`MADV_WIPEONFORK`), so a worker forked from a
/// process that had drawn from it starts empty: no two processes ever hand
/// out the same bytes. Where the kernel cannot do that, every draw asks it.
public struct RandomBytes: RandomNumberGenerator {
    public init() {}

    static let size = 4096

    /// The page: its first word is where the unused bytes begin, 0 when
    /// there are none (as after a wipe).
    static let page: UnsafeMutableRawPointer? = {
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              p != MAP_FAILED else { return nil }
        guard madvise(p, size, 18 /* MADV_WIPEONFORK */) == 0 else {
            munmap(p, size)
            return nil
        }
        return p
    }()

    public mutating func next() -> UInt64 {
        guard let page = RandomBytes.page else {
            var system = SystemRandomNumberGenerator()
            return system.next()
        }
        var at = page.load(as: Int.self)
        if at < 8 || at + 8 > RandomBytes.size {
            RandomBytes.fill(page + 8, RandomBytes.size - 8)
            at = 8
        }
        page.storeBytes(of: at + 8, as: Int.self)
        return page.loadUnaligned(fromByteOffset: at, as: UInt64.self)
    }

    /// The Swift runtime's own draw from the kernel (getrandom), which
    /// `SystemRandomNumberGenerator` makes 8 bytes at a time; it traps if
    /// the kernel cannot answer, as that generator does.
    static func fill(_ buffer: UnsafeMutableRawPointer, _ count: Int) {
        swift_stdlib_random(buffer, count)
    }
}

@_silgen_name("swift_stdlib_random")
func swift_stdlib_random(_ buffer: UnsafeMutableRawPointer, _ count: Int)
