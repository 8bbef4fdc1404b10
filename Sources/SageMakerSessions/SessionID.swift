/// Built-in session ids are canonical lowercase UUIDs, as Python's `uuid4()`
/// writes them. Anything else is refused before a path is ever built from it,
/// so a header can never name a file outside the sessions directory.
public enum SessionID {
    public static let length = 36

    public static func isCanonical<C: Collection>(_ bytes: C) -> Bool where C.Element == UInt8 {
        if let fast = bytes.withContiguousStorageIfAvailable({ SessionKey(UnsafeRawBufferPointer($0)) != nil }) {
            return fast
        }
        return Array(bytes).withUnsafeBytes { SessionKey($0) != nil }
    }

    public static func isCanonical(_ text: String) -> Bool {
        SessionKey(text) != nil
    }

    /// A random (version 4) UUID.
    public static func generate<R: RandomNumberGenerator>(using rng: inout R) -> String {
        let words = (rng.next(), rng.next())
        return String(unsafeUninitializedCapacity: length) { out in
            let hex: StaticString = "0123456789abcdef"
            var i = 0
            for k in 0..<16 {
                var b = UInt8(truncatingIfNeeded: (k < 8 ? words.0 : words.1) >> (8 * UInt64(k % 8)))
                if k == 6 { b = (b & 0x0f) | 0x40 }
                if k == 8 { b = (b & 0x3f) | 0x80 }
                if k == 4 || k == 6 || k == 8 || k == 10 {
                    out[i] = UInt8(ascii: "-")
                    i += 1
                }
                out[i] = hex.utf8Start[Int(b >> 4)]
                out[i + 1] = hex.utf8Start[Int(b & 0x0f)]
                i += 2
            }
            return i
        }
    }

    public static func generate() -> String {
        var rng = RandomBytes()
        return generate(using: &rng)
    }
}
