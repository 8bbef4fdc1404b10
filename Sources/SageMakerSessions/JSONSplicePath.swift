extension JSONSplice {
    /// A path made ready for splicing, once per location: its keys and, for
    /// each level, what goes before the value when the keys from that level
    /// on are missing (`"a":{"b":` for `a.b` from level 0), all in memory
    /// that lives as long as the path. A request reaches them as plain
    /// pointers: an array of arrays would be retained and released, or lent
    /// through a closure, at each use.
    public final class Path {
        /// The keys' bytes, one run each.
        let keys: UnsafeBufferPointer<UnsafeRawBufferPointer>
        /// Per level, the missing keys' bytes from that level on.
        let prefixes: UnsafeBufferPointer<UnsafeRawBufferPointer>
        private let runs: UnsafeMutableBufferPointer<UnsafeRawBufferPointer>
        private let bytes: UnsafeMutableRawPointer

        public convenience init(_ segments: [String]) {
            self.init(utf8: segments.map { Array($0.utf8) })
        }

        public init(utf8: [[UInt8]]) {
            let parts = utf8 + JSONSplice.keys(utf8)
            let bytes = UnsafeMutableRawPointer.allocate(byteCount: max(1, parts.reduce(0) { $0 + $1.count }),
                                                         alignment: 8)
            let runs = UnsafeMutableBufferPointer<UnsafeRawBufferPointer>.allocate(capacity: max(1, parts.count))
            var at = 0
            for (i, part) in parts.enumerated() {
                part.withUnsafeBytes { source in
                    if let from = source.baseAddress { (bytes + at).copyMemory(from: from, byteCount: source.count) }
                }
                runs[i] = UnsafeRawBufferPointer(start: bytes + at, count: part.count)
                at += part.count
            }
            self.bytes = bytes
            self.runs = runs
            keys = UnsafeBufferPointer(rebasing: runs[0..<utf8.count])
            prefixes = UnsafeBufferPointer(rebasing: runs[utf8.count..<parts.count])
        }

        deinit {
            runs.deallocate()
            bytes.deallocate()
        }

        public var count: Int { keys.count }

        /// The keys up to `level`, as text: where an injection was blocked.
        func segments(through level: Int) -> [String] {
            keys.prefix(level + 1).map { String(decoding: $0, as: UTF8.self) }
        }
    }
}
