/// An id the engine gave a session, kept by the module as a directory of
/// its own once the session has a home. SGLang's are 32 hex digits; any
/// other is kept if it is safe as one path component and at most 64 bytes,
/// and is otherwise balanced as an unknown session (the engine decides).
///
/// Held as its bytes in eight words, as `SessionKey` holds a UUID: a request
/// of a cached session is looked up without making a `String`, hashing
/// text or checking every byte. Any 1 to 64 bytes make a key to look up
/// with (`init(unchecked:)`); only storable ones are ever stored, so a key
/// that is found needs no other check.
struct EngineSessionName: CacheKey {
    static let maxLength = 64

    let w0, w1, w2, w3, w4, w5, w6, w7: UInt64
    let count: Int

    /// Any 1 to 64 bytes; nil for another length.
    @inline(__always)
    init?(unchecked bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= 1, bytes.count <= EngineSessionName.maxLength else { return nil }
        var w: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &w) { $0.copyMemory(from: bytes) }
        (w0, w1, w2, w3, w4, w5, w6, w7) = w
        count = bytes.count
    }

    /// nil unless `bytes` is storable: letters, digits and `-_.:`, not
    /// starting with a dot (which names entries being removed and a
    /// session's own files).
    init?(_ bytes: UnsafeRawBufferPointer) {
        guard let key = EngineSessionName(unchecked: bytes), key.isStorable else { return nil }
        self = key
    }

    init?(entryName: String) {
        var name = entryName
        guard let made = name.withUTF8({ EngineSessionName(UnsafeRawBufferPointer($0)) }) else { return nil }
        self = made
    }

    private func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        withUnsafeBytes(of: (w0, w1, w2, w3, w4, w5, w6, w7)) { body(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
    }

    var isStorable: Bool {
        withBytes { bytes in
            guard bytes.first != UInt8(ascii: ".") else { return false }
            // a bit for each allowed byte: 0x2d-0x2e, 0x30-0x3a; 0x41-0x5a, 0x5f, 0x61-0x7a
            let low: UInt64 = 0x07ff_6000_0000_0000, high: UInt64 = 0x07ff_fffe_87ff_fffe
            for b in bytes {
                let bits = b < 64 ? low : b < 128 ? high : 0
                if bits >> UInt64(b & 63) & 1 == 0 { return false }
            }
            return true
        }
    }

    var text: String { withBytes { String(decoding: $0, as: UTF8.self) } }

    static func == (a: EngineSessionName, b: EngineSessionName) -> Bool {
        a.count == b.count && a.w0 == b.w0 && a.w1 == b.w1 && a.w2 == b.w2 && a.w3 == b.w3
            && a.w4 == b.w4 && a.w5 == b.w5 && a.w6 == b.w6 && a.w7 == b.w7
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(_rawHashValue(seed: 0))
    }

    /// An engine's ids are random already (SGLang's are a UUID's hex): the
    /// words are mixed with the table's seed instead of hashed as text.
    func _rawHashValue(seed: Int) -> Int {
        let k: UInt64 = 0x9e37_79b9_7f4a_7c15
        let a = (w0 ^ UInt64(UInt(bitPattern: seed))) &* k ^ w1 ^ (w2 &* k) ^ w3
        let b = (w4 &* k) ^ w5 ^ (w6 &* k) ^ w7 ^ UInt64(count)
        let h = (a &* k ^ b) &* k
        return Int(truncatingIfNeeded: h ^ h >> 29)
    }
}
