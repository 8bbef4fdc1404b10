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
        var value = value
        return try value.withUTF8 { v in
            Result { () throws(Failure) in try set(UnsafeRawBufferPointer(v), at: Path(path), in: body) }
        }.get()
    }

    /// `value`: the string's UTF-8 bytes, where the caller holds them.
    public static func set(_ value: UnsafeRawBufferPointer, at path: Path, in body: RequestBody) throws(Failure) -> [Piece] {
        Splice(try point(at: path, in: body), body: body, value: value, path: path).pieces
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
        let path = Path(utf8: utf8)
        defer { withExtendedLifetime(path) {} }
        return try point(at: path, in: body)
    }

    /// The scan itself. Nothing is allocated for a path of one key, as
    /// nearly every one is.
    public static func point(at path: Path, in body: RequestBody) throws(Failure) -> Point {
        let keys = path.keys
        guard !keys.isEmpty else { throw .notAnObject }
        var deeper = UnsafeMutableBufferPointer<Level>(start: nil, count: 0)
        if keys.count > 1 {
            deeper = .allocate(capacity: keys.count - 1)
            deeper.initialize(repeating: Level())
        }
        defer { deeper.deallocate() }   // Level holds no reference: nothing to deinitialize
        if let one = body.oneRun {
            guard let base = one.baseAddress else { throw .notAnObject }
            var scanner = Scanner(OneRun(base, one.count), keys: keys, deeper: deeper)
            try scanner.document()
            return try scanner.point()
        }
        var scanner = Scanner(Runs(body.segments), keys: keys, deeper: deeper)
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
    /// character or DEL. Sixteen bytes a step, the last step overlapping the
    /// one before (a session id of 36 bytes takes three); eight for a
    /// shorter text. Bytes from 0x80 send it the slow way, which copies
    /// them as they are.
    @inline(__always)
    static func isVerbatim(_ text: UnsafeRawBufferPointer) -> Bool {
        guard let base = text.baseAddress else { return true }
        let n = text.count
        if n >= 16 {
            let space = SIMD16<Int8>(repeating: 0x20), quote = SIMD16<Int8>(repeating: 0x22)
            let backslash = SIMD16<Int8>(repeating: 0x5c), del = SIMD16<Int8>(repeating: 0x7f)
            var i = 0
            while true {
                let v = base.loadUnaligned(fromByteOffset: i, as: SIMD16<Int8>.self)
                if ((v .< space) .| (v .== quote) .| (v .== backslash) .| (v .== del)).isAnySet { return false }
                if i == n &- 16 { return true }
                i = min(i &+ 16, n &- 16)
            }
        }
        @inline(__always) func wordIsVerbatim(_ at: Int) -> Bool {
            let w = base.loadUnaligned(fromByteOffset: at, as: UInt64.self)
            let d = w ^ 0x7f7f_7f7f_7f7f_7f7f
            return specials(w) | ((d &- 0x0101_0101_0101_0101) & ~d & 0x8080_8080_8080_8080) == 0
        }
        if n >= 8 { return wordIsVerbatim(0) && wordIsVerbatim(n &- 8) }
        for i in 0..<n {
            let b = base.load(fromByteOffset: i, as: UInt8.self)
            if !isPlain(b) || b == 0x7f { return false }
        }
        return true
    }

    /// How many bytes `"text"`, escaped as `appendQuoted` escapes it, takes.
    static func quotedCount(_ text: UnsafeRawBufferPointer) -> Int {
        quotedCount(text, verbatim: isVerbatim(text))
    }

    /// `verbatim`: `isVerbatim(text)`, when the caller knows it already.
    @inline(__always)
    static func quotedCount(_ text: UnsafeRawBufferPointer, verbatim: Bool) -> Int {
        if verbatim { return text.count &+ 2 }
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
        writeQuoted(text, verbatim: isVerbatim(text), at: out)
    }

    static func writeQuoted(_ text: UnsafeRawBufferPointer, verbatim: Bool,
                            at out: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        var o = out
        @inline(__always) func put(_ b: UInt8) {
            o.storeBytes(of: b, as: UInt8.self)
            o += 1
        }
        put(UInt8(ascii: "\""))
        if verbatim, let base = text.baseAddress {
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
        while i < text.count, isPlain(text[i]), text[i] != 0x7f { i += 1 }
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
    /// The new body: a `Point` with what it needs to be written out, the
    /// client's body, the value and the path. Written out by the caller,
    /// into memory it provides, with `inserted(at:)`; `pieces` builds it as
    /// arrays (tests). `value` and `body` must outlive it.
    public struct Splice {
        public let body: RequestBody
        let point: Point
        let value: UnsafeRawBufferPointer
        /// What goes before the value when keys are missing (`Path`'s
        /// prefix from the first missing level), lent by the path; empty
        /// when the value replaces one.
        let prefix: UnsafeRawBufferPointer
        /// The braces that close the missing objects.
        let closers: Int
        /// Whether the value goes between quotes as it is: looked at once.
        let verbatim: Bool

        /// `path` must outlive it, as `value` and `body` must.
        public init(_ point: Point, body: RequestBody, value: UnsafeRawBufferPointer, path: borrowing Path) {
            self.point = point
            self.body = body
            self.value = value
            let missing = Int(point.missingFrom)
            if missing >= 0, missing < path.count {
                prefix = path.prefixes[missing]
                closers = path.count &- missing &- 1
            } else {
                prefix = UnsafeRawBufferPointer(start: nil, count: 0)
                closers = 0
            }
            verbatim = JSONSplice.isVerbatim(value)
        }

        public var from: Int { point.from }
        public var to: Int { point.to }
        /// Keys are written before the value: it was missing.
        var inserts: Bool { !prefix.isEmpty }

        /// How many bytes `inserted(at:)` writes.
        public var insertedCount: Int {
            let n = JSONSplice.quotedCount(value, verbatim: verbatim)
            guard inserts else { return n }
            return n &+ (point.comma ? 1 : 0) &+ prefix.count &+ closers
        }

        /// The new bytes written at `out`; past them: a comma perhaps, the
        /// missing keys, the quoted value, braces.
        @discardableResult
        public func inserted(at out: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
            guard inserts, let keys = prefix.baseAddress else {
                return JSONSplice.writeQuoted(value, verbatim: verbatim, at: out)
            }
            var o = out
            if point.comma {
                o.storeBytes(of: UInt8(ascii: ","), as: UInt8.self)
                o += 1
            }
            o.copyMemory(from: keys, byteCount: prefix.count)
            o = JSONSplice.writeQuoted(value, verbatim: verbatim, at: o + prefix.count)
            for _ in 0..<closers {
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

        /// The client's bytes before the new ones, or after them, are
        /// copied in with them when there are fewer than this: nginx then
        /// passes the body on as one buffer or two, not three, which saves
        /// it more than the copy costs (a 55-byte body goes as one buffer).
        /// A longer part stays where it lies.
        public static let copiedBelow = 1024

        /// How many bytes `write(at:)` writes: the new ones, and the short
        /// parts copied in with them.
        public var writtenCount: Int {
            let n = insertedCount
            let tail = body.count - to
            return n + (from < Splice.copiedBelow ? from : 0) + (tail < Splice.copiedBelow ? tail : 0)
        }

        /// The new body, in order, each piece given to `emit`: a long part
        /// of the client's bytes where it lies, and one piece written at
        /// `out` (`writtenCount` bytes): the new bytes, with the short
        /// parts around them copied in.
        public func write(at out: UnsafeMutableRawPointer, _ emit: (UnsafeRawBufferPointer) -> Void) {
            if let one = body.oneRun, let base = one.baseAddress, 0 <= from, from <= to, to <= one.count,
               from < Splice.copiedBelow, one.count &- to < Splice.copiedBelow {
                // nearly every body: one short run, passed on as one piece
                out.copyMemory(from: base, byteCount: from)
                let o = inserted(at: out + from)
                o.copyMemory(from: base + to, byteCount: one.count &- to)
                emit(UnsafeRawBufferPointer(start: out, count: out.distance(to: o) &+ (one.count &- to)))
                return
            }
            let copiesHead = from < Splice.copiedBelow, copiesTail = body.count - to < Splice.copiedBelow
            var o = out
            func copy(_ part: UnsafeRawBufferPointer) {
                guard let base = part.baseAddress else { return }
                o.copyMemory(from: base, byteCount: part.count)
                o += part.count
            }
            if copiesHead { originals(0, from, copy) } else { originals(0, from, emit) }
            o = inserted(at: o)
            if copiesTail { originals(to, Int.max, copy) }
            emit(UnsafeRawBufferPointer(start: out, count: out.distance(to: o)))
            if !copiesTail { originals(to, Int.max, emit) }
        }

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
