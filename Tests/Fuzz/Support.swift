// Shared by every fuzz target (compiled into each one, together with
// Sources/SageMakerSessions/*.swift, as one module, so targets may use
// internal API). See run.sh.

import CJansson
import Glibc

/// Stops the run with a message when a property does not hold: libFuzzer
/// reports the abort as a crash and saves the input.
@inline(never)
func require(_ condition: Bool, _ message: @autoclosure () -> String,
             file: StaticString = #fileID, line: UInt = #line) {
    guard !condition else { return }
    fputs("PROPERTY FAILED at \(file):\(line): \(message())\n", stderr)
    abort()
}

/// The input cut at its first newline; nil when there is none.
func firstLine(_ data: UnsafeRawBufferPointer) -> (line: UnsafeRawBufferPointer, rest: UnsafeRawBufferPointer)? {
    guard let i = data.firstIndex(of: 0x0a) else { return nil }
    return (UnsafeRawBufferPointer(rebasing: data[..<i]), UnsafeRawBufferPointer(rebasing: data[(i + 1)...]))
}

func text(_ bytes: UnsafeRawBufferPointer) -> String {
    String(decoding: bytes, as: UTF8.self)
}

/// The body as nginx may hold it: in several buffers. Cut at a third and
/// two thirds of its length (and after the first byte), so the cuts move
/// through the body as the fuzzer changes its length.
func segmented(_ body: UnsafeRawBufferPointer) -> RequestBody {
    let n = body.count
    let cuts = Array(Set([0, min(1, n), n / 3, 2 * n / 3, n])).sorted()
    var segments: [UnsafeRawBufferPointer] = []
    for k in 1..<cuts.count {
        segments.append(UnsafeRawBufferPointer(rebasing: body[cuts[k - 1]..<cuts[k]]))
    }
    return RequestBody(segments: segments)
}

/// What jansson makes of the bytes, with the flags the module parses with,
/// and why it refused them. A raw NUL byte is refused here, as RFC 8259
/// does: jansson itself skips one after a number or a literal.
func janssonParse(_ bytes: UnsafeRawBufferPointer) -> (JSON?, json_error_code) {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return (nil, json_error_premature_end_of_input) }
    if bytes.contains(0) { return (nil, json_error_invalid_syntax) }
    var error = json_error_t()
    let raw = json_loadb(base.assumingMemoryBound(to: CChar.self), bytes.count,
                         Int(JSON_DECODE_ANY | JSON_ALLOW_NUL), &error)
    return (raw.map(JSON.init(owning:)), json_error_code(&error))
}

func janssonParse(_ bytes: [UInt8]) -> (JSON?, json_error_code) {
    bytes.withUnsafeBytes { janssonParse($0) }
}

/// Deepest nesting of arrays and objects, counted as jansson counts it
/// (the outermost is 1); strings are skipped. Meaningful for valid JSON.
func nestingDepth(_ bytes: UnsafeRawBufferPointer) -> Int {
    var depth = 0, deepest = 0, inString = false, escaped = false
    for b in bytes {
        if inString {
            if escaped { escaped = false } else if b == 0x5c { escaped = true } else if b == 0x22 { inString = false }
            continue
        }
        switch b {
        case 0x22: inString = true
        case 0x5b, 0x7b: depth += 1; deepest = max(deepest, depth)
        case 0x5d, 0x7d: depth -= 1
        default: break
        }
    }
    return deepest
}

/// The bytes of a spliced body.
func joined(_ pieces: [JSONSplice.Piece]) -> [UInt8] {
    var out: [UInt8] = []
    for piece in pieces {
        switch piece {
        case .original(let b): out.append(contentsOf: b)
        case .new(let b): out.append(contentsOf: b)
        }
    }
    return out
}

func joined(_ splice: JSONSplice.Splice) -> [UInt8] {
    joined(splice.pieces)
}

func equal(_ a: JSON?, _ b: JSON?) -> Bool {
    switch (a, b) {
    case (nil, nil): return true
    case let (x?, y?): return json_equal(x.raw, y.raw) != 0
    default: return false
    }
}

/// A member by exact key bytes, as jansson holds it (the last of repeated keys).
func member(_ object: JSON, _ key: String) -> JSON? {
    object[key]
}

/// The value at `segments`, walking objects by exact key.
func lookup(_ root: JSON, _ segments: [String]) -> JSON? {
    var current = root
    for s in segments {
        guard current.isObject, let next = current[s] else { return nil }
        current = next
    }
    return current
}

/// Bytes for a message.
func show(_ bytes: [UInt8]) -> String {
    String(decoding: bytes, as: UTF8.self).debugDescription
}

/// Byte-for-byte equality (`String ==` is canonical equivalence, which
/// would hide a wrong byte).
func sameBytes(_ a: String?, _ b: String) -> Bool {
    a.map { $0.utf8.elementsEqual(b.utf8) } ?? false
}
