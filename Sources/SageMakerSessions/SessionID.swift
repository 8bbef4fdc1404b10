/// Built-in session ids are canonical lowercase UUIDs, as Python's `uuid4()`
/// writes them. Anything else is refused before a path is ever built from it,
/// so a header can never name a file outside the sessions directory.
public enum SessionID {
    public static let length = 36

    public static func isCanonical<C: Collection>(_ bytes: C) -> Bool where C.Element == UInt8 {
        if let fast = bytes.withContiguousStorageIfAvailable({ isCanonical(UnsafeRawBufferPointer($0)) }) {
            return fast
        }
        return isCanonical(Array(bytes))
    }

    static func isCanonical(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count == length else { return false }
        var i = 0
        while i < length {
            let b = bytes[i]
            if i == 8 || i == 13 || i == 18 || i == 23 {
                if b != UInt8(ascii: "-") { return false }
            } else if !((b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66)) {
                return false
            }
            i += 1
        }
        return true
    }

    static func isCanonical(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { isCanonical($0) }
    }

    public static func isCanonical(_ text: String) -> Bool {
        isCanonical(text.utf8)
    }

    /// A random (version 4) UUID.
    public static func generate<R: RandomNumberGenerator>(using rng: inout R) -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in stride(from: 0, to: 16, by: 8) {
            var word = rng.next()
            for j in 0..<8 {
                bytes[i + j] = UInt8(truncatingIfNeeded: word)
                word >>= 8
            }
        }
        bytes[6] = (bytes[6] & 0x0f) | 0x40
        bytes[8] = (bytes[8] & 0x3f) | 0x80
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(length)
        for (i, b) in bytes.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { out.append(UInt8(ascii: "-")) }
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func generate() -> String {
        var rng = SystemRandomNumberGenerator()
        return generate(using: &rng)
    }
}
