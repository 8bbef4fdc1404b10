/// Strings joined in one allocation. Interpolation grows its result piece by
/// piece, which on every NEW_SESSION cost more than the files it writes.
enum Text {
    static func concat(_ parts: String...) -> String {
        var total = 0
        for part in parts { total += part.utf8.count }
        return String(unsafeUninitializedCapacity: total) { out in
            var at = 0
            for var part in parts {
                part.withUTF8 { bytes in
                    guard let base = out.baseAddress else { return }
                    UnsafeMutableRawPointer(base + at).copyMemory(from: UnsafeRawPointer(bytes.baseAddress ?? UnsafePointer(base)), byteCount: bytes.count)
                    at += bytes.count
                }
            }
            return at
        }
    }
}
