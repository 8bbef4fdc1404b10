/// A session id's 36 bytes as they came: what each worker's cache is keyed
/// by, so that checking a session on every request neither allocates, hashes
/// text nor decodes hex. Any 36 bytes make a key to look up with
/// (`init(unchecked:)`); only canonical ones (lowercase, hyphens in place) are
/// ever stored, which is also what makes an id safe to use as a directory
/// name, so a key that is found needs no other check.
public struct SessionKey: Hashable {
    /// Bytes 0..<8, 8..<16, 16..<24, 24..<32 and 32..<36, the first of each
    /// in the lowest byte.
    let w0, w1, w2, w3: UInt64
    let w4: UInt32

    /// Any 36 bytes; nil for another length.
    @inline(__always)
    init?(unchecked bytes: UnsafeRawBufferPointer) {
        guard bytes.count == SessionID.length, let p = bytes.baseAddress else { return nil }
        w0 = p.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
        w1 = p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        w2 = p.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
        w3 = p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
        w4 = p.loadUnaligned(fromByteOffset: 32, as: UInt32.self)
    }

    /// nil unless `bytes` is a canonical lowercase UUID.
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard let key = SessionKey(unchecked: bytes), key.isCanonical else { return nil }
        self = key
    }

    public init?(_ text: String) {
        guard let key = SessionKey(unchecked: text), key.isCanonical else { return nil }
        self = key
    }

    /// Any text of 36 bytes.
    init?(unchecked text: String) {
        var text = text
        guard let key = text.withUTF8({ SessionKey(unchecked: UnsafeRawBufferPointer($0)) }) else { return nil }
        self = key
    }

    /// Lowercase hex digits with hyphens at 8, 13, 18 and 23: bytes 0 and 5
    /// of `w1`, 2 and 7 of `w2`. Eight bytes at a time.
    var isCanonical: Bool {
        let hyphens1: UInt64 = 0x0000_ff00_0000_00ff, hyphens2: UInt64 = 0xff00_0000_00ff_0000
        let dash = UInt64(UInt8(ascii: "-")) &* 0x0101_0101_0101_0101
        let zero = UInt64(UInt8(ascii: "0")) &* 0x0101_0101_0101_0101
        guard w1 & hyphens1 == dash & hyphens1, w2 & hyphens2 == dash & hyphens2 else { return false }
        return SessionKey.isHex8(w0) && SessionKey.isHex8(w1 & ~hyphens1 | zero & hyphens1)
            && SessionKey.isHex8(w2 & ~hyphens2 | zero & hyphens2) && SessionKey.isHex8(w3)
            && SessionKey.isHex8(UInt64(w4) | zero << 32)
    }

    /// Whether all eight bytes of `w` are lowercase hex digits.
    @inline(__always)
    static func isHex8(_ w: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highBits: UInt64 = 0x8080_8080_8080_8080
        guard w & highBits == 0 else { return false }
        // with no byte above 0x7f, these sums never carry into the next byte
        let digit = (w &+ (0x80 - 0x30) &* ones) & ~(w &+ (0x7f - 0x39) &* ones) & highBits
        let letter = (w &+ (0x80 - 0x61) &* ones) & ~(w &+ (0x7f - 0x66) &* ones) & highBits
        return digit | letter == highBits
    }

    /// The cache looks a key up on every request: the hex digits of a
    /// generated id are random already, so the words are mixed with the
    /// table's seed instead of hashed as text.
    public func _rawHashValue(seed: Int) -> Int {
        let k: UInt64 = 0x9e37_79b9_7f4a_7c15
        let h = ((w0 ^ UInt64(UInt(bitPattern: seed))) &* k ^ w1 ^ w2 &* k ^ w3 ^ UInt64(w4)) &* k
        return Int(truncatingIfNeeded: h ^ h >> 29)
    }
}
