/// An id the engine gave a session, kept by the module as a directory of
/// its own once the session has a home. SGLang's are 32 hex digits; any
/// other is kept if it is safe as one path component, and is otherwise
/// balanced as an unknown session (the engine decides).
struct EngineSessionName: CacheKey {
    static let maxLength = 128

    let text: String

    /// Letters, digits and `-_.:`, not starting with a dot (which names
    /// entries being removed and the session's own files).
    init?(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty, bytes.count <= EngineSessionName.maxLength, bytes[0] != UInt8(ascii: ".") else {
            return nil
        }
        for b in bytes {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"),
                 UInt8(ascii: "."), UInt8(ascii: ":"):
                continue
            default:
                return nil
            }
        }
        text = String(decoding: bytes, as: UTF8.self)
    }

    init?(entryName: String) {
        var name = entryName
        guard let made = name.withUTF8({ EngineSessionName(UnsafeRawBufferPointer($0)) }) else { return nil }
        self = made
    }
}
