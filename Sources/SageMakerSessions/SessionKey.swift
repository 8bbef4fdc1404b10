/// A canonical session id read as its 16 bytes: what each worker's cache is
/// keyed by, so that checking a session on every request neither allocates
/// nor hashes text. Only the canonical form (lowercase, hyphens in place) has
/// a key, which is also what makes an id safe to use as a directory name.
public struct SessionKey: Hashable {
    let high: UInt64
    let low: UInt64

    /// nil unless `bytes` is a canonical lowercase UUID.
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count == SessionID.length, let p = bytes.baseAddress else { return nil }
        let dashes = p.load(fromByteOffset: 8, as: UInt8.self) & p.load(fromByteOffset: 13, as: UInt8.self)
            & p.load(fromByteOffset: 18, as: UInt8.self) & p.load(fromByteOffset: 23, as: UInt8.self)
        let anyDash = p.load(fromByteOffset: 8, as: UInt8.self) | p.load(fromByteOffset: 13, as: UInt8.self)
            | p.load(fromByteOffset: 18, as: UInt8.self) | p.load(fromByteOffset: 23, as: UInt8.self)
        guard dashes == UInt8(ascii: "-"), anyDash == UInt8(ascii: "-") else { return nil }
        // 8 + 4 + 4 + 4 + 8 + 4 hex digits
        let quad = { (offset: Int) -> UInt64 in
            UInt64(p.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) | 0x3030_3030_0000_0000
        }
        guard let a = SessionKey.hex8(p.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
              let b = SessionKey.hex8(quad(9)), let c = SessionKey.hex8(quad(14)),
              let d = SessionKey.hex8(quad(19)),
              let e = SessionKey.hex8(p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
              let f = SessionKey.hex8(quad(32)) else { return nil }
        high = a << 32 | (b >> 16) << 16 | c >> 16
        low = (d >> 16) << 48 | e << 16 | f >> 16
    }

    /// Eight lowercase hex digits, the first in the lowest byte of `w`, as
    /// their 32-bit value; nil if any byte is not one. All eight at once.
    @inline(__always)
    static func hex8(_ w: UInt64) -> UInt64? {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highBits: UInt64 = 0x8080_8080_8080_8080
        guard w & highBits == 0 else { return nil }
        // with no byte above 0x7f, these sums never carry into the next byte
        let digit = (w &+ (0x80 - 0x30) &* ones) & ~(w &+ (0x7f - 0x39) &* ones) & highBits
        let letter = (w &+ (0x80 - 0x61) &* ones) & ~(w &+ (0x7f - 0x66) &* ones) & highBits
        guard digit | letter == highBits else { return nil }
        var v = (w & 0x0f0f_0f0f_0f0f_0f0f) &+ (letter >> 7) &* 9
        v = (v << 4 | v >> 8) & 0x00ff_00ff_00ff_00ff
        v = (v << 8 | v >> 16) & 0x0000_ffff_0000_ffff
        return (v << 16 | v >> 32) & 0xffff_ffff
    }

    /// The cache looks a key up on every request: its bits are random
    /// already (and only sessions found on disk are ever stored), so they
    /// are mixed with the table's seed instead of hashed again.
    public func _rawHashValue(seed: Int) -> Int {
        Int(truncatingIfNeeded: (high ^ UInt64(UInt(bitPattern: seed))) &* 0x9e37_79b9_7f4a_7c15 ^ low)
    }

    public init?(_ text: String) {
        var text = text
        guard let key = text.withUTF8({ SessionKey(UnsafeRawBufferPointer($0)) }) else { return nil }
        self = key
    }
}
