/// Where `JSONSplice`'s grammar reads its bytes from: one run (nearly every
/// body) or several, as nginx buffered them. `peek` gives 0 past the end:
/// a raw NUL byte is never valid JSON where the grammar looks at one, so
/// the end and a NUL fail alike, and only the document's end asks `atEnd`.
protocol SpliceInput {
    /// Bytes read so far: the offset in the whole body.
    var position: Int { get }
    mutating func peek() -> UInt8
    /// One byte on; only after `peek` gave a byte that is not 0.
    mutating func advance()
    mutating func atEnd() -> Bool
    /// Skips the plain string bytes that follow (see `JSONSplice.plainEnd`)
    /// and gives them, all in one run.
    mutating func skipPlain() -> UnsafeRawBufferPointer
}

extension JSONSplice {
    /// A body of one run: a pointer and an index, so that the grammar
    /// compiled for it reads a byte with one comparison and one load.
    struct OneRun: SpliceInput {
        let base: UnsafeRawPointer
        let count: Int
        var i = 0

        init(_ base: UnsafeRawPointer, _ count: Int) {
            self.base = base
            self.count = count
        }

        var position: Int { i }

        @inline(__always)
        mutating func peek() -> UInt8 { i < count ? base.load(fromByteOffset: i, as: UInt8.self) : 0 }

        @inline(__always)
        mutating func advance() { i &+= 1 }

        @inline(__always)
        mutating func atEnd() -> Bool { i >= count }

        @inline(__always)
        mutating func skipPlain() -> UnsafeRawBufferPointer {
            let from = i
            i = JSONSplice.plainEnd(base, from, count)
            return UnsafeRawBufferPointer(start: base + from, count: i &- from)
        }
    }

    /// A body of several runs, read one after the other; a token may cross
    /// from one to the next.
    struct Runs: SpliceInput {
        let runs: [UnsafeRawBufferPointer]
        var segment = 0
        var current: UnsafeRawBufferPointer
        var offset = 0
        /// Where `current` begins in the whole body.
        var start = 0

        init(_ runs: [UnsafeRawBufferPointer]) {
            self.runs = runs
            current = runs.first ?? UnsafeRawBufferPointer(start: nil, count: 0)
        }

        var position: Int { start + offset }

        @inline(__always)
        mutating func peek() -> UInt8 {
            if offset < current.count { return current[offset] }
            return nextRun() ? current[offset] : 0
        }

        /// On to the next run that holds a byte; false at the end.
        mutating func nextRun() -> Bool {
            while offset >= current.count && segment + 1 < runs.count {
                start += current.count
                segment += 1
                offset = 0
                current = runs[segment]
            }
            return offset < current.count
        }

        @inline(__always)
        mutating func advance() { offset += 1 }

        mutating func atEnd() -> Bool { offset >= current.count && !nextRun() }

        mutating func skipPlain() -> UnsafeRawBufferPointer {
            guard offset < current.count || nextRun(), let base = current.baseAddress else {
                return UnsafeRawBufferPointer(start: nil, count: 0)
            }
            let from = offset
            offset = JSONSplice.plainEnd(base, from, current.count)
            return UnsafeRawBufferPointer(start: base + from, count: offset - from)
        }
    }

    /// The first byte from `from` on that is not plain in a string (a
    /// control character, `"`, `\` or a byte from 0x80), or `count`.
    /// Sixty-four bytes a step while none is found (the bulk of a long
    /// prompt: four vectors, one test), then sixteen, then eight: read as signed bytes, one
    /// comparison `< 0x20` finds both the control characters and the bytes
    /// from 0x80 (negative), so a step takes three comparisons. The byte
    /// found is located by its bit, not by going back byte by byte, and the
    /// last few bytes are read as one word that ends at `count`.
    @inline(__always)
    static func plainEnd(_ base: UnsafeRawPointer, _ from: Int, _ count: Int) -> Int {
        var i = from
        let space = SIMD16<Int8>(repeating: 0x20), quote = SIMD16<Int8>(repeating: 0x22)
        let backslash = SIMD16<Int8>(repeating: 0x5c)
        @inline(__always) func hits(_ at: Int) -> SIMDMask<SIMD16<Int8>.MaskStorage> {
            let v = base.loadUnaligned(fromByteOffset: at, as: SIMD16<Int8>.self)
            return (v .< space) .| (v .== quote) .| (v .== backslash)
        }
        while i <= count &- 64 {   // the one found is then located sixteen bytes a step
            if (hits(i) .| hits(i &+ 16) .| hits(i &+ 32) .| hits(i &+ 48)).isAnySet { break }
            i &+= 64
        }
        while i <= count &- 16 {   // count >= i >= 0: no overflow
            let hit = hits(i)
            if hit.isAnySet {
                let lanes = unsafeBitCast(SIMD16<Int8>(repeating: 0).replacing(with: -1, where: hit),
                                          to: SIMD2<UInt64>.self)
                let low = UInt64(littleEndian: lanes[0]), high = UInt64(littleEndian: lanes[1])
                return i &+ (low != 0 ? low.trailingZeroBitCount : 64 &+ high.trailingZeroBitCount) &>> 3
            }
            i &+= 16
        }
        while i <= count &- 8 {
            let hits = specials(UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
            if hits != 0 { return i &+ hits.trailingZeroBitCount &>> 3 }
            i &+= 8
        }
        guard i < count else { return count }
        guard count >= 8 else {
            while i < count, isPlain(base.load(fromByteOffset: i, as: UInt8.self)) { i &+= 1 }
            return i
        }
        // The word that ends at `count`, shifted so that its first byte is
        // the one at `i`; the zero bytes shifted in count as control
        // characters, so a hit is always found, at `count` at the latest.
        let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: count &- 8, as: UInt64.self))
        let skip = UInt64(truncatingIfNeeded: i &- (count &- 8)) &* 8
        return min(i &+ specials(word &>> skip).trailingZeroBitCount &>> 3, count)
    }

    /// The high bit of each byte of `w` that is not plain. Exact for the
    /// lowest such byte (a borrow only runs upwards, so a byte above one may
    /// be marked too): what `plainEnd` needs.
    @inline(__always)
    static func specials(_ w: UInt64) -> UInt64 {
        let highs: UInt64 = 0x8080_8080_8080_8080, ones: UInt64 = 0x0101_0101_0101_0101
        let control = (w &- 0x2020_2020_2020_2020) & ~w
        let q = w ^ 0x2222_2222_2222_2222, s = w ^ 0x5c5c_5c5c_5c5c_5c5c
        return (w | control | ((q &- ones) & ~q) | ((s &- ones) & ~s)) & highs
    }

    /// Byte for byte, a word at a time, inline: a key is short, and most
    /// differ from the wanted one in length already.
    @inline(__always)
    static func same(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        let n = a.count
        guard n == b.count else { return false }
        guard n > 0, let p = a.baseAddress, let q = b.baseAddress else { return true }
        if n < 8 {
            for k in 0..<n where p.load(fromByteOffset: k, as: UInt8.self) != q.load(fromByteOffset: k, as: UInt8.self) {
                return false
            }
            return true
        }
        var k = 0
        while k < n &- 8 {
            if p.loadUnaligned(fromByteOffset: k, as: UInt64.self) != q.loadUnaligned(fromByteOffset: k, as: UInt64.self) {
                return false
            }
            k &+= 8
        }
        // the last word ends at n (it may overlap the one before)
        return p.loadUnaligned(fromByteOffset: n &- 8, as: UInt64.self) == q.loadUnaligned(fromByteOffset: n &- 8, as: UInt64.self)
    }

    @inline(__always)
    static func isPlain(_ b: UInt8) -> Bool {
        b >= 0x20 && b < 0x80 && b != UInt8(ascii: "\"") && b != UInt8(ascii: "\\")
    }
}

extension JSONSplice {
    /// Where the value of a path's key was found.
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

    /// A level of the path: the last value of its key, the object that
    /// holds it.
    struct Level {
        var found: Found?
        var holder: Holder?
    }

    /// One pass over the body: checks that it is a JSON object (RFC 8259,
    /// UTF-8) and notes, for each level of the path, the last value of its
    /// key and the object that holds it. Written once, compiled for each
    /// input; the string and blank scans are where a body's bytes go.
    struct Scanner<Input: SpliceInput> {
        /// The first level inline, the deeper ones (if any) in memory the
        /// caller lends: a path of one key, as nearly every one is,
        /// allocates nothing, and the scanner holds no reference (nothing
        /// to retain or release).
        struct Levels {
            var first = Level()
            let deeper: UnsafeMutableBufferPointer<Level>

            @inline(__always)
            subscript(i: Int) -> Level {
                get { i == 0 ? first : deeper[i - 1] }
                set {
                    if i == 0 { first = newValue } else { deeper[i - 1] = newValue }
                }
            }
        }

        var input: Input
        /// The path's keys, lent by the caller (`Path`).
        let keys: UnsafeBufferPointer<UnsafeRawBufferPointer>
        /// Per level of the path: the last value found for its key, and the
        /// object that holds it.
        var levels: Levels

        /// Everything lent must outlive the scanner; `deeper` holds
        /// keys.count - 1 levels.
        init(_ input: Input, keys: UnsafeBufferPointer<UnsafeRawBufferPointer>,
             deeper: UnsafeMutableBufferPointer<Level>) {
            self.input = input
            self.keys = keys
            levels = Levels(deeper: deeper)
        }

        // MARK: grammar

        mutating func document() throws(Failure) {
            skipBlanks()
            guard input.peek() == UInt8(ascii: "{") else { throw .notAnObject }
            try object(depth: 1, level: 0)
            skipBlanks()
            guard input.atEnd() else { throw .notAnObject }
        }

        /// Blanks are space, tab, line feed and carriage return: bits 32, 9,
        /// 10 and 13 of one constant.
        @inline(__always)
        mutating func skipBlanks() {
            while true {
                let b = input.peek()
                guard b <= 0x20, (0x1_0000_2600 as UInt64) &>> UInt64(b) & 1 != 0 else { return }
                input.advance()
            }
        }

        @inline(__always)
        mutating func expect(_ byte: UInt8) throws(Failure) {
            guard input.peek() == byte else { throw .notAnObject }
            input.advance()
        }

        /// At `{`. `level`: this object holds path[level] (-1: off the path).
        mutating func object(depth: Int, level: Int) throws(Failure) {
            guard depth <= JSONSplice.maxDepth else { throw .tooDeep }
            input.advance()
            skipBlanks()
            if input.peek() == UInt8(ascii: "}") {
                if level >= 0 { levels[level].holder = Holder(close: input.position, isEmpty: true) }
                input.advance()
                return
            }
            while true {
                skipBlanks()
                guard input.peek() == UInt8(ascii: "\"") else { throw .notAnObject }
                let matches = level >= 0 ? try key(matching: level) : try string()
                skipBlanks()
                try expect(UInt8(ascii: ":"))
                skipBlanks()
                if matches {
                    for deeper in (level + 1)..<max(level + 1, keys.count) {
                        levels[deeper] = Level()
                    }
                    let start = input.position
                    let isObject = input.peek() == UInt8(ascii: "{")
                    try value(depth: depth + 1, level: isObject && level + 1 < keys.count ? level + 1 : -1)
                    levels[level].found = Found(start: start, end: input.position, isObject: isObject)
                } else {
                    try value(depth: depth + 1, level: -1)
                }
                skipBlanks()
                let b = input.peek()
                if b == UInt8(ascii: ",") {
                    input.advance()
                    continue
                }
                guard b == UInt8(ascii: "}") else { throw .notAnObject }
                if level >= 0 { levels[level].holder = Holder(close: input.position, isEmpty: false) }
                input.advance()
                return
            }
        }

        mutating func value(depth: Int, level: Int) throws(Failure) {
            switch input.peek() {
            case UInt8(ascii: "\""): _ = try string()
            case UInt8(ascii: "{"): try object(depth: depth, level: level)
            case UInt8(ascii: "["): try array(depth: depth)
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            default: try number()
            }
        }

        /// At `[`.
        mutating func array(depth: Int) throws(Failure) {
            guard depth <= JSONSplice.maxDepth else { throw .tooDeep }
            input.advance()
            skipBlanks()
            if input.peek() == UInt8(ascii: "]") {
                input.advance()
                return
            }
            while true {
                skipBlanks()
                try value(depth: depth + 1, level: -1)
                skipBlanks()
                let b = input.peek()
                if b == UInt8(ascii: ",") {
                    input.advance()
                    continue
                }
                guard b == UInt8(ascii: "]") else { throw .notAnObject }
                input.advance()
                return
            }
        }

        mutating func literal(_ word: StaticString) throws(Failure) {
            let bytes = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
            for b in bytes { try expect(b) }
        }

        mutating func number() throws(Failure) {
            if input.peek() == UInt8(ascii: "-") { input.advance() }
            let first = input.peek()
            guard first >= 0x30, first <= 0x39 else { throw .notAnObject }
            input.advance()
            if first != 0x30 { digits() }
            if input.peek() == UInt8(ascii: ".") {
                input.advance()
                guard digits() > 0 else { throw .notAnObject }
            }
            let e = input.peek()
            if e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
                input.advance()
                let sign = input.peek()
                if sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") { input.advance() }
                guard digits() > 0 else { throw .notAnObject }
            }
        }

        @discardableResult
        @inline(__always)
        mutating func digits() -> Int {
            var n = 0
            while true {
                let b = input.peek()
                guard b >= 0x30, b <= 0x39 else { return n }
                input.advance()
                n += 1
            }
        }

        /// At a key's `"`: whether it is path[level] once unescaped.
        mutating func key(matching level: Int) throws(Failure) -> Bool {
            let got = scan(matching: keys[level])
            guard got >= 0 else { throw .notAnObject }
            return got == 1
        }

        /// At a `"`: a string, whose bytes are not compared with anything.
        @inline(__always)
        mutating func string() throws(Failure) -> Bool {
            guard scan(matching: nil) >= 0 else { throw .notAnObject }
            return false
        }

        /// At a `"`: a string, validated (escapes, no control characters,
        /// UTF-8); with `wanted`, compared with it once unescaped, as it
        /// goes by. -1: not valid; 1: valid and equal to `wanted`; else 0.
        /// Not throwing, so that a key can be compared inside the closure
        /// that lends the wanted bytes.
        @inline(__always)
        mutating func scan(matching wanted: UnsafeRawBufferPointer?) -> Int {
            input.advance()
            let run = input.skipPlain()
            if input.peek() == UInt8(ascii: "\"") {   // no escape, nothing beyond ASCII: nearly every string
                input.advance()
                guard let wanted else { return 0 }
                return JSONSplice.same(run, wanted) ? 1 : 0
            }
            var match = Match(wanted)
            match.feed(run)
            return scanRest(&match)
        }

        /// The rest of a string that holds an escape or a byte beyond ASCII
        /// (or is not valid).
        mutating func scanRest(_ match: inout Match) -> Int {
            while true {
                let b = input.peek()
                switch b {
                case UInt8(ascii: "\""):
                    input.advance()
                    return match.complete ? 1 : 0
                case UInt8(ascii: "\\"):
                    input.advance()
                    guard escape(into: &match) else { return -1 }
                case 0..<0x20:
                    return -1
                case 0x80...:
                    input.advance()
                    guard multibyte(b, into: &match) else { return -1 }
                default:
                    input.advance()
                    match.feed(b)
                }
                let run = input.skipPlain()
                if match.isOn { match.feed(run) }
            }
        }

        /// After a `\`.
        mutating func escape(into out: inout Match) -> Bool {
            let e = input.peek()
            guard e != 0 else { return false }
            input.advance()
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.feed(e)
            case UInt8(ascii: "b"): out.feed(0x08)
            case UInt8(ascii: "f"): out.feed(0x0c)
            case UInt8(ascii: "n"): out.feed(0x0a)
            case UInt8(ascii: "r"): out.feed(0x0d)
            case UInt8(ascii: "t"): out.feed(0x09)
            case UInt8(ascii: "u"):
                guard var scalar = hex4() else { return false }
                if scalar >= 0xd800 && scalar < 0xdc00 {
                    // a high surrogate must be followed by a low one
                    guard input.peek() == UInt8(ascii: "\\") else { return false }
                    input.advance()
                    guard input.peek() == UInt8(ascii: "u") else { return false }
                    input.advance()
                    guard let low = hex4(), low >= 0xdc00 && low < 0xe000 else { return false }
                    scalar = 0x10000 + ((scalar - 0xd800) << 10) + (low - 0xdc00)
                } else if scalar >= 0xdc00 && scalar < 0xe000 {
                    return false
                }
                if out.isOn, let s = Unicode.Scalar(scalar) {
                    for b in UTF8.encode(s) ?? UTF8.EncodedScalar() { out.feed(b) }
                }
            default:
                return false
            }
            return true
        }

        mutating func hex4() -> UInt32? {
            var v: UInt32 = 0
            for _ in 0..<4 {
                let h = input.peek()
                switch h {
                case 0x30...0x39: v = v << 4 | UInt32(h - 0x30)
                case 0x61...0x66: v = v << 4 | UInt32(h - 0x61 + 10)
                case 0x41...0x46: v = v << 4 | UInt32(h - 0x41 + 10)
                default: return nil
                }
                input.advance()
            }
            return v
        }

        /// The rest of a UTF-8 sequence begun by `lead` (shortest form only,
        /// no surrogates, at most U+10FFFF).
        mutating func multibyte(_ lead: UInt8, into out: inout Match) -> Bool {
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
            default: return false
            }
            out.feed(lead)
            for k in 0..<count {
                let c = input.peek()
                guard c >= (k == 0 ? low : 0x80), c <= (k == 0 ? high : 0xbf) else { return false }
                input.advance()
                out.feed(c)
            }
            return true
        }

        // MARK: the new body

        func point() throws(Failure) -> Point {
            for level in 0..<keys.count {
                guard let hit = levels[level].found else {
                    // insert what is missing before the holder's closing brace
                    guard let holder = levels[level].holder else { throw .notAnObject }
                    return Point(from: holder.close, to: holder.close, missingFrom: Int32(truncatingIfNeeded: level),
                                 comma: !holder.isEmpty)
                }
                if level == keys.count - 1 {
                    return Point(from: hit.start, to: hit.end, missingFrom: -1, comma: false)
                }
                guard hit.isObject else {
                    throw .blocked(prefix: keys.prefix(level + 1).map { String(decoding: $0, as: UTF8.self) })
                }
            }
            throw .notAnObject
        }
    }
}

/// Compares a string's decoded bytes with the wanted ones as they go by.
/// The wanted bytes are lent, not held: nothing to retain.
struct Match {
    let wanted: UnsafeRawBufferPointer?
    var index = 0
    var failed = false

    init(_ wanted: UnsafeRawBufferPointer?) {
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

    /// A run of plain bytes at once: one comparison, not one a byte.
    @inline(__always)
    mutating func feed(_ run: UnsafeRawBufferPointer) {
        guard let wanted, !failed, !run.isEmpty else { return }
        guard index &+ run.count <= wanted.count,
              JSONSplice.same(run, UnsafeRawBufferPointer(rebasing: wanted[index..<(index &+ run.count)])) else {
            failed = true
            return
        }
        index &+= run.count
    }

    var complete: Bool { wanted != nil && !failed && index == wanted?.count }
}
