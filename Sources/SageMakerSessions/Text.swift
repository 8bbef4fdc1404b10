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
                    guard let to = out.baseAddress, let from = bytes.baseAddress else { return }
                    (to + at).initialize(from: from, count: bytes.count)
                    at += bytes.count
                }
            }
            return at
        }
    }
}
