import Glibc

/// Writes one string into a JSON object body without re-encoding the rest:
/// the body is checked to be a JSON object (RFC 8259, UTF-8) in one pass over
/// nginx's buffers, and the new body is those same bytes with a small piece
/// spliced in. Numbers, key order, spacing and every other byte the client
/// sent reach the engine as they were, and a large body is never copied.
public enum JSONSplice {
    /// A part of the new body: bytes of the client's body, or new bytes.
    public enum Piece: Equatable {
        case original(UnsafeRawBufferPointer)
        case new([UInt8])

        public static func == (a: Piece, b: Piece) -> Bool {
            switch (a, b) {
            case (.original(let x), .original(let y)): return x.baseAddress == y.baseAddress && x.count == y.count
            case (.new(let x), .new(let y)): return x == y
            default: return false
            }
        }
    }

    public enum Failure: Error, Equatable {
        /// Not a JSON object (or not JSON at all).
        case notAnObject
        /// A value on the way is not an object; the path up to it.
        case blocked(prefix: [String])
        /// Nested deeper than `maxDepth` (jansson's bound): not read further.
        case tooDeep
    }

    /// Nesting deeper than this is refused, as jansson refuses it.
    static let maxDepth = 2048

    /// The body with `value` (a string) at `path`, where the last occurrence
    /// of a repeated key is the one a JSON parser keeps.
    public static func set(_ value: String, at path: [String], in body: RequestBody) throws(Failure) -> [Piece] {
        try set(value, at: path, utf8: path.map { Array($0.utf8) }, in: body)
    }

    /// `utf8`: the path's segments as bytes, computed once per location.
    public static func set(_ value: String, at path: [String], utf8: [[UInt8]], in body: RequestBody) throws(Failure) -> [Piece] {
        var value = value
        return try value.withUTF8 { v in
            Result { () throws(Failure) in try set(UnsafeRawBufferPointer(v), at: path, utf8: utf8, in: body) }
        }.get()
    }

    /// `value`: the string's UTF-8 bytes, where the caller holds them.
    public static func set(_ value: UnsafeRawBufferPointer, at path: [String], utf8: [[UInt8]],
                           in body: RequestBody) throws(Failure) -> [Piece] {
        try splice(value, at: utf8, in: body).pieces
    }

    /// The same decision as `set`, without building the new body: where the
    /// quoted value goes, which the caller writes out where it wants (the
    /// shim's pool). Nothing is allocated for a one-run body and a one-key
    /// path, as nearly every injection is. `value` must outlive the result.
    public static func splice(_ value: UnsafeRawBufferPointer, at utf8: [[UInt8]],
                              in body: RequestBody) throws(Failure) -> Splice {
        Splice(try point(at: utf8, in: body), body: body, value: value, path: utf8)
    }

    /// Per level of `path`, what goes before the value when the keys from
    /// that level on are missing: `"a":{"b":` for `a.b` from level 0.
    public static func keys(_ path: [[UInt8]]) -> [[UInt8]] {
        (0..<path.count).map { level in
            var out: [UInt8] = []
            for k in level..<path.count {
                if k > level { out.append(UInt8(ascii: "{")) }
                path[k].withUnsafeBytes { appendQuoted($0, to: &out) }
                out.append(UInt8(ascii: ":"))
            }
            return out
        }
    }

    /// Where the value goes, as four plain numbers: what a decision
    /// carries, so that a decision stays small and holds no reference (its
    /// copies and its end cost nothing on the requests passed on as they are).
    public static func point(at utf8: [[UInt8]], in body: RequestBody) throws(Failure) -> Point {
        guard !utf8.isEmpty else { throw .notAnObject }
        var scanner = Scanner(body: body, path: utf8)
        try scanner.document()
        return try scanner.point()
    }

    /// The client's bytes [from, to) are replaced; from `missingFrom` on
    /// (-1: none) the path's keys were missing and are written too, after a
    /// comma when `comma`.
    public struct Point: Equatable {
        public let from: Int
        public let to: Int
        let missingFrom: Int32
        let comma: Bool
    }

    /// Whether `text` goes between quotes as it is: no `"`, `\\`, control
    /// character or DEL, eight bytes a step (a session id is 36 such bytes).
    /// Bytes from 0x80 send it the slow way, which copies them as they are.
    @inline(__always)
    static func isVerbatim(_ text: UnsafeRawBufferPointer) -> Bool {
        guard let base = text.baseAddress else { return true }
        let n = text.count
        var i = 0
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        while i &+ 8 <= n {
            let w = (base + i).loadUnaligned(as: UInt64.self)
            let control = (w &- 0x2020_2020_2020_2020) & ~w
            let q = w ^ 0x2222_2222_2222_2222, s = w ^ 0x5c5c_5c5c_5c5c_5c5c, d = w ^ 0x7f7f_7f7f_7f7f_7f7f
            let hits = control | ((q &- ones) & ~q) | ((s &- ones) & ~s) | ((d &- ones) & ~d)
            if (w | hits) & highs != 0 { return false }
            i &+= 8
        }
        while i < n {
            let b = base.load(fromByteOffset: i, as: UInt8.self)
            if !Scanner.isPlain(b) || b == 0x7f { return false }
            i &+= 1
        }
        return true
    }

    /// How many bytes `"text"`, escaped as `appendQuoted` escapes it, takes.
    static func quotedCount(_ text: UnsafeRawBufferPointer) -> Int {
        if isVerbatim(text) { return text.count &+ 2 }
        var n = 2
        for b in text {
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x0a, 0x0d, 0x09: n &+= 2
            case 0..<0x20, 0x7f: n &+= 6
            default: n &+= 1
            }
        }
        return n
    }

    /// `"text"` written at `out` as `appendQuoted` writes it; past the end.
    static func writeQuoted(_ text: UnsafeRawBufferPointer, at out: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        var o = out
        @inline(__always) func put(_ b: UInt8) {
            o.storeBytes(of: b, as: UInt8.self)
            o += 1
        }
        put(UInt8(ascii: "\""))
        if isVerbatim(text), let base = text.baseAddress {
            o.copyMemory(from: base, byteCount: text.count)
            o += text.count
            put(UInt8(ascii: "\""))
            return o
        }
        for b in text {
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                put(0x5c)
                put(b)
            case 0x0a:
                put(0x5c)
                put(UInt8(ascii: "n"))
            case 0x0d:
                put(0x5c)
                put(UInt8(ascii: "r"))
            case 0x09:
                put(0x5c)
                put(UInt8(ascii: "t"))
            case 0..<0x20, 0x7f:
                let hex: StaticString = "0123456789abcdef"
                put(0x5c)
                put(UInt8(ascii: "u"))
                put(0x30)
                put(0x30)
                put(hex.utf8Start[Int(b >> 4)])
                put(hex.utf8Start[Int(b & 0x0f)])
            default:
                put(b)
            }
        }
        put(UInt8(ascii: "\""))
        return o
    }

    /// `"text"`, escaped as JSON requires, appended to `out`.
    static func appendQuoted(_ text: String, to out: inout [UInt8]) {
        var text = text
        text.withUTF8 { appendQuoted(UnsafeRawBufferPointer($0), to: &out) }
    }

    static func appendQuoted(_ text: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.reserveCapacity(out.count + text.count + 2)
        out.append(UInt8(ascii: "\""))
        var i = 0
        while i < text.count, Scanner.isPlain(text[i]), text[i] != 0x7f { i += 1 }
        if i == text.count {
            out.append(contentsOf: text)
            out.append(UInt8(ascii: "\""))
            return
        }
        for b in text {
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out.append(0x5c)
                out.append(b)
            case 0x0a:
                out.append(0x5c)
                out.append(UInt8(ascii: "n"))
            case 0x0d:
                out.append(0x5c)
                out.append(UInt8(ascii: "r"))
            case 0x09:
                out.append(0x5c)
                out.append(UInt8(ascii: "t"))
            case 0..<0x20, 0x7f:
                let hex: StaticString = "0123456789abcdef"
                out.append(0x5c)
                out.append(UInt8(ascii: "u"))
                out.append(0x30)
                out.append(0x30)
                out.append(hex.utf8Start[Int(b >> 4)])
                out.append(hex.utf8Start[Int(b & 0x0f)])
            default:
                out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    static func quoted(_ text: UnsafeRawBufferPointer) -> [UInt8] {
        var out: [UInt8] = []
        appendQuoted(text, to: &out)
        return out
    }
}

extension JSONSplice {
    /// One pass over the body's bytes, across its segments.
    struct Scanner {
        struct Found {
            var start: Int
            var end: Int
            var isObject: Bool
        }

        /// An object on the path: where it closes, whether it is empty.
        struct Holder {
            var close: Int
            var isEmpty: Bool
        }

        struct Level {
            var found: Found?
            var holder: Holder?
        }

        /// The first level inline, the deeper ones (if any) in an array:
        /// a path of one key, as nearly every one is, allocates nothing.
        struct Levels {
            var first = Level()
            var deeper: [Level] = []

            init(_ count: Int) {
                guard count > 1 else { return }
                // not Array(repeating:count:): its storage type is looked up at run time
                deeper.reserveCapacity(count - 1)
                for _ in 1..<count { deeper.append(Level()) }
            }

            subscript(i: Int) -> Level {
                get { i == 0 ? first : deeper[i - 1] }
                set {
                    if i == 0 { first = newValue } else { deeper[i - 1] = newValue }
                }
            }
        }

        /// The runs of a body of several; nil for one run (no array made).
        let runs: [UnsafeRawBufferPointer]?
        let path: [[UInt8]]
        var segment = 0
        var offset = 0
        var position = 0

        /// Per level of the path: the last value found for its key, and the
        /// object that holds it.
        var levels: Levels

        /// The segment being read: the body's `segment`th run.
        var current: UnsafeRawBufferPointer

        init(body: RequestBody, path: [[UInt8]]) {
            runs = body.oneRun == nil ? body.segments : nil
            self.path = path
            levels = Levels(path.count)
            current = body.oneRun ?? runs?.first ?? UnsafeRawBufferPointer(start: nil, count: 0)
        }

        // MARK: reading

        @inline(__always)
        mutating func peek() -> UInt8? {
            if offset < current.count { return current[offset] }
            return peekNextSegment()
        }

        mutating func peekNextSegment() -> UInt8? {
            guard let runs else { return nil }
            while offset >= current.count && segment + 1 < runs.count {
                segment += 1
                offset = 0
                current = runs[segment]
            }
            return offset < current.count ? current[offset] : nil
        }

        @inline(__always)
        mutating func advance() {
            offset += 1
            position += 1
        }

        @inline(__always)
        mutating func next() -> UInt8? {
            guard let b = peek() else { return nil }
            advance()
            return b
        }

        @inline(__always)
        mutating func skipBlanks() {
            while let b = peek(), b == 0x20 || b == 0x09 || b == 0x0a || b == 0x0d { advance() }
        }

        @inline(__always)
        mutating func expect(_ byte: UInt8) throws(Failure) {
            guard next() == byte else { throw .notAnObject }
        }

        // MARK: grammar

        mutating func document() throws(Failure) {
            skipBlanks()
            guard peek() == UInt8(ascii: "{") else { throw .notAnObject }
            try object(depth: 1, level: 0)
            skipBlanks()
            guard peek() == nil else { throw .notAnObject }
        }

        /// `level`: this object holds path[level] (nil: off the path).
        mutating func object(depth: Int, level: Int?) throws(Failure) {
            guard depth <= JSONSplice.maxDepth else { throw .tooDeep }
            try expect(UInt8(ascii: "{"))
            skipBlanks()
            var isEmpty = true
            if peek() == UInt8(ascii: "}") {
                if let level { levels[level].holder = Holder(close: position, isEmpty: true) }
                advance()
                return
            }
            while true {
                skipBlanks()
                let matches = try key(matching: level.map { path[$0] })
                skipBlanks()
                try expect(UInt8(ascii: ":"))
                skipBlanks()
                isEmpty = false
                if matches, let level {
                    for deeper in (level + 1)..<max(level + 1, path.count) {
                        levels[deeper] = Level()
                    }
                    let start = position
                    let isObject = peek() == UInt8(ascii: "{")
                    let inner = isObject && level + 1 < path.count ? level + 1 : nil
                    try value(depth: depth + 1, level: inner)
                    levels[level].found = Found(start: start, end: position, isObject: isObject)
                } else {
                    try value(depth: depth + 1, level: nil)
                }
                skipBlanks()
                switch next() {
                case UInt8(ascii: ","): continue
                case UInt8(ascii: "}"):
                    if let level { levels[level].holder = Holder(close: position - 1, isEmpty: isEmpty) }
                    return
                default: throw .notAnObject
                }
            }
        }

        mutating func value(depth: Int, level: Int?) throws(Failure) {
            switch peek() {
            case UInt8(ascii: "{"): try object(depth: depth, level: level)
            case UInt8(ascii: "["): try array(depth: depth)
            case UInt8(ascii: "\""): _ = try string(matching: nil)
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            default: try number()
            }
        }

        mutating func array(depth: Int) throws(Failure) {
            guard depth <= JSONSplice.maxDepth else { throw .tooDeep }
            try expect(UInt8(ascii: "["))
            skipBlanks()
            if peek() == UInt8(ascii: "]") {
                advance()
                return
            }
            while true {
                skipBlanks()
                try value(depth: depth + 1, level: nil)
                skipBlanks()
                switch next() {
                case UInt8(ascii: ","): continue
                case UInt8(ascii: "]"): return
                default: throw .notAnObject
                }
            }
        }

        mutating func literal(_ word: StaticString) throws(Failure) {
            let bytes = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
            for b in bytes { try expect(b) }
        }

        mutating func number() throws(Failure) {
            if peek() == UInt8(ascii: "-") { advance() }
            guard let first = next(), first >= 0x30, first <= 0x39 else { throw .notAnObject }
            if first != 0x30 { digits() }
            if peek() == UInt8(ascii: ".") {
                advance()
                guard digits() > 0 else { throw .notAnObject }
            }
            if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
                advance()
                if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { advance() }
                guard digits() > 0 else { throw .notAnObject }
            }
        }

        @discardableResult
        mutating func digits() -> Int {
            var n = 0
            while let b = peek(), b >= 0x30, b <= 0x39 {
                advance()
                n += 1
            }
            return n
        }

        /// A member's key; whether it is `wanted` (compared after unescaping).
        mutating func key(matching wanted: [UInt8]?) throws(Failure) -> Bool {
            guard peek() == UInt8(ascii: "\"") else { throw .notAnObject }
            return try string(matching: wanted)
        }

        /// A string, validated: escapes, no control characters, UTF-8.
        /// With `wanted`, whether its decoded bytes are exactly those,
        /// compared as they go by.
        mutating func string(matching wanted: [UInt8]?) throws(Failure) -> Bool {
            try expect(UInt8(ascii: "\""))
            var match = Match(wanted)
            while true {
                if match.isOn {
                    let from = offset
                    skipPlainRun()
                    if offset > from, let base = current.baseAddress {
                        match.feed(UnsafeRawBufferPointer(start: base + from, count: offset - from))
                    }
                } else {
                    skipPlainRun()
                }
                guard let b = next() else { throw .notAnObject }
                switch b {
                case UInt8(ascii: "\""):
                    return match.complete
                case UInt8(ascii: "\\"):
                    try escape(into: &match)
                case 0..<0x20:
                    throw .notAnObject
                case 0x80...:
                    try multibyte(b, into: &match)
                default:
                    match.feed(b)
                }
            }
        }

        /// Skips, sixteen then eight at a time, bytes that need no look:
        /// ASCII, not a control character, not `"` or `\`. Read as signed
        /// bytes, one comparison `< 0x20` finds both the control characters
        /// and every byte from 0x80 (negative), so a vector of sixteen takes
        /// three comparisons: under one instruction a byte of a long string.
        @inline(__always)
        mutating func skipPlainRun() {
            guard let base = current.baseAddress else { return }
            let count = current.count
            var i = offset
            let space = SIMD16<Int8>(repeating: 0x20), quote = SIMD16<Int8>(repeating: 0x22)
            let backslash = SIMD16<Int8>(repeating: 0x5c)
            while i <= count &- 16 {   // count >= offset >= 0: no overflow
                let v = (base + i).loadUnaligned(as: SIMD16<Int8>.self)
                if any((v .< space) .| (v .== quote) .| (v .== backslash)) { break }
                i &+= 16
            }
            while i + 8 <= count {
                let w = (base + i).loadUnaligned(as: UInt64.self)
                let high = w & 0x8080_8080_8080_8080
                let control = (w &- 0x2020_2020_2020_2020) & ~w & 0x8080_8080_8080_8080
                let q = w ^ 0x2222_2222_2222_2222
                let quote = (q &- 0x0101_0101_0101_0101) & ~q & 0x8080_8080_8080_8080
                let s = w ^ 0x5c5c_5c5c_5c5c_5c5c
                let slash = (s &- 0x0101_0101_0101_0101) & ~s & 0x8080_8080_8080_8080
                if high | control | quote | slash != 0 { break }
                i += 8
            }
            while i < count, Scanner.isPlain(base.load(fromByteOffset: i, as: UInt8.self)) { i += 1 }
            position += i - offset
            offset = i
        }

        @inline(__always)
        static func isPlain(_ b: UInt8) -> Bool {
            b >= 0x20 && b < 0x80 && b != UInt8(ascii: "\"") && b != UInt8(ascii: "\\")
        }

        mutating func escape(into out: inout Match) throws(Failure) {
            guard let e = next() else { throw .notAnObject }
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.feed(e)
            case UInt8(ascii: "b"): out.feed(0x08)
            case UInt8(ascii: "f"): out.feed(0x0c)
            case UInt8(ascii: "n"): out.feed(0x0a)
            case UInt8(ascii: "r"): out.feed(0x0d)
            case UInt8(ascii: "t"): out.feed(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xd800 && scalar < 0xdc00 {
                    // a high surrogate must be followed by a low one
                    try expect(UInt8(ascii: "\\"))
                    try expect(UInt8(ascii: "u"))
                    let low = try hex4()
                    guard low >= 0xdc00 && low < 0xe000 else { throw .notAnObject }
                    scalar = 0x10000 + ((scalar - 0xd800) << 10) + (low - 0xdc00)
                } else if scalar >= 0xdc00 && scalar < 0xe000 {
                    throw .notAnObject
                }
                if out.isOn, let s = Unicode.Scalar(scalar) {
                    for b in UTF8.encode(s) ?? UTF8.EncodedScalar() { out.feed(b) }
                }
            default:
                throw .notAnObject
            }
        }

        mutating func hex4() throws(Failure) -> UInt32 {
            var v: UInt32 = 0
            for _ in 0..<4 {
                guard let h = next() else { throw .notAnObject }
                switch h {
                case 0x30...0x39: v = v << 4 | UInt32(h - 0x30)
                case 0x61...0x66: v = v << 4 | UInt32(h - 0x61 + 10)
                case 0x41...0x46: v = v << 4 | UInt32(h - 0x41 + 10)
                default: throw .notAnObject
                }
            }
            return v
        }

        /// The rest of a UTF-8 sequence begun by `lead` (shortest form only,
        /// no surrogates, at most U+10FFFF).
        mutating func multibyte(_ lead: UInt8, into out: inout Match) throws(Failure) {
            let count: Int
            var low: UInt8 = 0x80, high: UInt8 = 0xbf
            switch lead {
            case 0xc2...0xdf: count = 1
            case 0xe0: count = 2; low = 0xa0
            case 0xe1...0xec, 0xee...0xef: count = 2
            case 0xed: count = 2; high = 0x9f
            case 0xf0: count = 3; low = 0x90
            case 0xf1...0xf3: count = 3
            case 0xf4: count = 3; high = 0x8f
            default: throw .notAnObject
            }
            out.feed(lead)
            for k in 0..<count {
                guard let c = next(), c >= (k == 0 ? low : 0x80), c <= (k == 0 ? high : 0xbf) else { throw .notAnObject }
                out.feed(c)
            }
        }

        // MARK: the new body

        func point() throws(Failure) -> Point {
            for level in 0..<path.count {
                guard let hit = levels[level].found else {
                    // insert what is missing before the holder's closing brace
                    guard let holder = levels[level].holder else { throw .notAnObject }
                    return Point(from: holder.close, to: holder.close, missingFrom: Int32(truncatingIfNeeded: level),
                                 comma: !holder.isEmpty)
                }
                if level == path.count - 1 {
                    return Point(from: hit.start, to: hit.end, missingFrom: -1, comma: false)
                }
                guard hit.isObject else {
                    throw .blocked(prefix: path[...level].map { String(decoding: $0, as: UTF8.self) })
                }
            }
            throw .notAnObject
        }
    }

    /// The new body: a `Point` with what it needs to be written out, the
    /// client's body, the value and the path. Written out by the caller,
    /// into memory it provides, with `inserted(at:)`; `pieces` builds it as
    /// arrays (tests). `value` and `body` must outlive it.
    public struct Splice {
        public let body: RequestBody
        let point: Point
        let value: UnsafeRawBufferPointer
        let path: [[UInt8]]
        /// `JSONSplice.keys(path)`: what goes before the value when the keys
        /// from a level on are missing.
        let keys: [[UInt8]]

        public init(_ point: Point, body: RequestBody, value: UnsafeRawBufferPointer, path: [[UInt8]]) {
            self.init(point, body: body, value: value, path: path, keys: JSONSplice.keys(path))
        }

        /// `keys`: `JSONSplice.keys(path)`, made once per location.
        public init(_ point: Point, body: RequestBody, value: UnsafeRawBufferPointer, path: [[UInt8]],
                    keys: [[UInt8]]) {
            self.point = point
            self.body = body
            self.value = value
            self.path = path
            self.keys = keys
        }

        public var from: Int { point.from }
        public var to: Int { point.to }
        var missingFrom: Int { Int(point.missingFrom) }
        var comma: Bool { point.comma }

        /// How many bytes `inserted(at:)` writes.
        public var insertedCount: Int {
            let n = JSONSplice.quotedCount(value)
            guard missingFrom >= 0, missingFrom < keys.count else { return n }
            return n + (comma ? 1 : 0) + keys[missingFrom].count + (path.count - missingFrom - 1)
        }

        /// The new bytes written at `out`; past them: a comma perhaps, the
        /// missing keys (made once per location), the quoted value, braces.
        @discardableResult
        public func inserted(at out: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
            guard missingFrom >= 0, missingFrom < keys.count else { return JSONSplice.writeQuoted(value, at: out) }
            var o = out
            if comma {
                o.storeBytes(of: UInt8(ascii: ","), as: UInt8.self)
                o += 1
            }
            let prefix = keys[missingFrom]
            o = prefix.withUnsafeBytes { p in
                guard let base = p.baseAddress else { return o }
                o.copyMemory(from: base, byteCount: p.count)
                return o + p.count
            }
            o = JSONSplice.writeQuoted(value, at: o)
            for _ in 0..<(path.count - missingFrom - 1) {
                o.storeBytes(of: UInt8(ascii: "}"), as: UInt8.self)
                o += 1
            }
            return o
        }

        /// The client's bytes [a, b), as slices of its runs, each given to `emit`.
        @inline(__always)
        public func originals(_ a: Int, _ b: Int, _ emit: (UnsafeRawBufferPointer) -> Void) {
            if let one = body.oneRun {
                let x = max(a, 0), y = min(b, one.count)
                if x < y { emit(UnsafeRawBufferPointer(rebasing: one[x..<y])) }
                return
            }
            var start = 0
            for segment in body.segments {
                let end = start + segment.count
                let x = max(a, start), y = min(b, end)
                if x < y { emit(UnsafeRawBufferPointer(rebasing: segment[(x - start)..<(y - start)])) }
                start = end
            }
        }

        /// At most this many pieces make the new body.
        public var maxPieces: Int { 2 * max(body.runCount, 1) + 1 }

        /// The new body as pieces.
        public var pieces: [Piece] {
            var out: [Piece] = []
            originals(0, from) { out.append(.original($0)) }
            var new = [UInt8](repeating: 0, count: insertedCount)
            new.withUnsafeMutableBytes { if let base = $0.baseAddress { inserted(at: base) } }
            out.append(.new(new))
            originals(to, Int.max) { out.append(.original($0)) }
            return out
        }
    }
}

/// Compares a string's decoded bytes with the wanted ones, byte by byte.
struct Match {
    let wanted: [UInt8]?
    var index = 0
    var failed = false

    init(_ wanted: [UInt8]?) {
        self.wanted = wanted
    }

    var isOn: Bool { wanted != nil && !failed }

    @inline(__always)
    mutating func feed(_ b: UInt8) {
        guard let wanted, !failed else { return }
        if index < wanted.count, wanted[index] == b {
            index += 1
        } else {
            failed = true
        }
    }

    /// A run of plain bytes at once: one `memcmp`, not a call a byte.
    @inline(__always)
    mutating func feed(_ run: UnsafeRawBufferPointer) {
        guard let wanted, !failed else { return }
        guard index &+ run.count <= wanted.count, let p = run.baseAddress else {
            failed = true
            return
        }
        let same = wanted.withUnsafeBytes { w in
            w.baseAddress.map { memcmp($0 + index, p, run.count) == 0 } ?? false
        }
        if same { index &+= run.count } else { failed = true }
    }

    var complete: Bool { wanted != nil && !failed && index == wanted?.count }
}
