import CJansson
import Glibc

/// A request body as nginx holds it: one or more runs of bytes. It is looked
/// at where it lies; only parsing reads it through, and nothing assembles it
/// into one piece.
public struct RequestBody {
    /// The body when it is one run of bytes, as nearly every body is: held
    /// without an array, which would cost an allocation per request.
    private let single: UnsafeRawBufferPointer
    /// The runs when there are two or more; nil otherwise, so that a body
    /// of one run holds nothing to release.
    private let several: [UnsafeRawBufferPointer]?
    private var runs: [UnsafeRawBufferPointer] { several ?? [] }

    public init(_ bytes: UnsafeRawBufferPointer) {
        single = bytes
        several = nil
    }

    public init(segments: [UnsafeRawBufferPointer]) {
        self.init(count: segments.count) { segments[$0] }
    }

    /// From `count` runs, `run(i)` each; an array only for two or more.
    /// Inlined into the caller, so that a body of one run, as nearly every
    /// body is, costs no call of `run`.
    @inlinable
    public init(count: Int, run: (Int) -> UnsafeRawBufferPointer) {
        if count == 1 {
            self.init(run(0))
        } else {
            self.init(gathering: count, run)
        }
    }

    @usableFromInline
    init(gathering count: Int, _ run: (Int) -> UnsafeRawBufferPointer) {
        var first = UnsafeRawBufferPointer(start: nil, count: 0)
        var more: [UnsafeRawBufferPointer] = []
        for i in 0..<max(count, 0) {
            let bytes = run(i)
            if bytes.isEmpty { continue }
            if first.isEmpty {
                first = bytes
                continue
            }
            if more.isEmpty {
                more.reserveCapacity(count)
                more.append(first)
            }
            more.append(bytes)
        }
        single = more.isEmpty ? first : UnsafeRawBufferPointer(start: nil, count: 0)
        several = more.isEmpty ? nil : more
    }

    /// The runs of bytes, none empty.
    public var segments: [UnsafeRawBufferPointer] {
        if let several { return several }
        return single.isEmpty ? [] : [single]
    }

    /// The body as one run, when it is one (or empty).
    var oneRun: UnsafeRawBufferPointer? { several == nil ? single : nil }

    /// How many runs, none empty (0 for an empty body).
    public var runCount: Int { several?.count ?? (single.isEmpty ? 0 : 1) }

    public var count: Int { oneRun?.count ?? runs.reduce(0) { $0 + $1.count } }

    /// Only a body whose first non-blank byte is `{` can be a JSON object.
    var startsLikeObject: Bool {
        if let one = oneRun { return RequestBody.startsLikeObject(one) }
        for segment in runs {
            if let first = RequestBody.firstNonBlank(segment) { return first == UInt8(ascii: "{") }
        }
        return false
    }

    static func startsLikeObject(_ bytes: UnsafeRawBufferPointer) -> Bool {
        firstNonBlank(bytes) == UInt8(ascii: "{")
    }

    static func firstNonBlank(_ bytes: UnsafeRawBufferPointer) -> UInt8? {
        for b in bytes {
            switch b {
            case 0x20, 0x09, 0x0a, 0x0d: continue
            default: return b
            }
        }
        return nil
    }

    /// False only when no byte is `a` or `b`; true (perhaps) for a body of
    /// several runs or of more than `RequestBody.smallBody` bytes. Below that
    /// size one vector pass costs less than a `memchr` call for each byte.
    func mayHold(_ a: UInt8, _ b: UInt8) -> Bool {
        guard let one = oneRun, one.count <= RequestBody.smallBody else { return true }
        return RequestBody.holdsEither(a, b, in: one)
    }

    static let smallBody = 512

    static func holdsEither(_ a: UInt8, _ b: UInt8, in bytes: UnsafeRawBufferPointer) -> Bool {
        let n = bytes.count
        guard let base = bytes.baseAddress, n >= 16 else { return bytes.contains { $0 == a || $0 == b } }
        let wideA = SIMD16<UInt8>(repeating: a), wideB = SIMD16<UInt8>(repeating: b)
        var at = 0
        while true {
            let v = base.loadUnaligned(fromByteOffset: at, as: SIMD16<UInt8>.self)
            if ((v .== wideA) .| (v .== wideB)).isAnySet { return true }
            if at &+ 16 >= n { return false }
            at = min(at &+ 16, n &- 16)  // the last step overlaps the one before
        }
    }

    /// Whether `needle` occurs anywhere, across segment boundaries too.
    /// `pivot` is the index in it of a byte rare in bodies, so that the
    /// scan goes at `memchr`'s pace from one of those to the next.
    func contains(_ needle: UnsafeRawBufferPointer, pivot: Int = 0) -> Bool {
        guard !needle.isEmpty else { return true }
        if let one = oneRun { return RequestBody.search(needle, pivot: pivot, in: one) }
        var tail: [UInt8] = []
        for segment in runs {
            if !tail.isEmpty {
                let joined = tail + Array(segment.prefix(needle.count - 1))
                if joined.withUnsafeBytes({ RequestBody.search(needle, pivot: pivot, in: $0) }) { return true }
            }
            if RequestBody.search(needle, pivot: pivot, in: segment) { return true }
            tail = Array((tail + Array(segment.suffix(needle.count - 1))).suffix(needle.count - 1))
        }
        return false
    }

    static func search(_ needle: UnsafeRawBufferPointer, pivot: Int = 0, in hay: UnsafeRawBufferPointer) -> Bool {
        let n = needle.count
        guard let np = needle.baseAddress, let base = hay.baseAddress, n <= hay.count, 0 <= pivot, pivot < n else {
            return false
        }
        let byte = Int32(np.load(fromByteOffset: pivot, as: UInt8.self))
        // where the pivot byte of a whole occurrence can lie
        var at = base + pivot
        let end = base + (hay.count - (n - 1 - pivot))
        while at < end {
            guard let hit = memchr(at, byte, at.distance(to: end)) else { return false }
            let found = UnsafeRawPointer(hit)
            if memcmp(found - pivot, np, n) == 0 { return true }
            at = found + 1
        }
        return false
    }

    /// Byte for byte, with `memcmp` (the generic comparison of two byte
    /// collections goes one element at a time).
    static func same(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count, let p = a.baseAddress, let q = b.baseAddress else { return a.count == b.count }
        return memcmp(p, q, a.count) == 0
    }

    /// The body as JSON (any JSON), read straight from its segments.
    func parse() -> JSON? {
        if let one = oneRun { return one.isEmpty ? nil : JSON.parse(one) }
        if runs.contains(where: JSON.hasRawNUL) { return nil }
        let reader = SegmentReader(runs)
        var error = json_error_t()
        let flags = Int(JSON_DECODE_ANY | JSON_ALLOW_NUL)
        let raw = withExtendedLifetime(reader) {
            json_load_callback(SegmentReader.read, Unmanaged.passUnretained(reader).toOpaque(), flags, &error)
        }
        return raw.map(JSON.init(owning:))
    }
}

/// Feeds jansson's incremental parser from the segments, in order.
private final class SegmentReader {
    let segments: [UnsafeRawBufferPointer]
    var index = 0
    var offset = 0

    init(_ segments: [UnsafeRawBufferPointer]) {
        self.segments = segments
    }

    static let read: json_load_callback_t = { buffer, size, data in
        guard let buffer, let data else { return 0 }
        let reader = Unmanaged<SegmentReader>.fromOpaque(data).takeUnretainedValue()
        while reader.index < reader.segments.count {
            let segment = reader.segments[reader.index]
            let left = segment.count - reader.offset
            if left == 0 {
                reader.index += 1
                reader.offset = 0
                continue
            }
            let n = min(left, size)
            if let base = segment.baseAddress {
                buffer.copyMemory(from: base + reader.offset, byteCount: n)
            }
            reader.offset += n
            return n
        }
        return 0
    }
}
