/// A dotted path into a JSON document: `a.b.c`, where a segment may be quoted
/// (`headers."X-Session-Id"`) to hold dots. Paths are compiled once, when nginx
/// reads its configuration, so that a bad one fails `nginx -t`.
public struct JSONPath: Equatable, CustomStringConvertible {
    public let segments: [String]
    /// The segments as bytes, for matching against raw JSON.
    public let utf8: [[UInt8]]
    /// The path made ready for an injection (its keys, and what is written
    /// when they are missing), once here rather than on each request.
    public let splice: JSONSplice.Path

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case empty
        case emptySegment(at: Int)
        case unterminatedQuote
        case unexpected(Character, at: Int)

        public var description: String {
            switch self {
            case .empty: return "the path is empty"
            case .emptySegment(let at): return "empty segment at offset \(at)"
            case .unterminatedQuote: return "unterminated quoted segment"
            case .unexpected(let c, let at): return "unexpected \"\(c)\" at offset \(at)"
            }
        }
    }

    public static func == (a: JSONPath, b: JSONPath) -> Bool { a.segments == b.segments }

    public init(segments: [String]) {
        self.segments = segments
        self.utf8 = segments.map { Array($0.utf8) }
        self.splice = JSONSplice.Path(utf8: utf8)
    }

    /// Read by Unicode scalar, not by `Character`: a combining mark after a
    /// quote or a dot would otherwise hide it in one grapheme cluster
    /// (found by fuzzing, Tests/Fuzz).
    public init(parsing text: String) throws {
        let chars = Array(text.unicodeScalars)
        guard !chars.isEmpty else { throw ParseError.empty }
        var segments: [String] = []
        var i = 0
        while true {
            var segment = String.UnicodeScalarView()
            if i < chars.count, chars[i] == "\"" {
                i += 1
                var closed = false
                while i < chars.count {
                    let c = chars[i]
                    // a key holding NUL cannot be written by jansson (found by fuzzing)
                    if c.value == 0 { throw ParseError.unexpected(Character(c), at: i) }
                    if c == "\\", i + 1 < chars.count {
                        if chars[i + 1].value == 0 { throw ParseError.unexpected(Character(chars[i + 1]), at: i + 1) }
                        segment.append(chars[i + 1])
                        i += 2
                        continue
                    }
                    if c == "\"" {
                        closed = true
                        i += 1
                        break
                    }
                    segment.append(c)
                    i += 1
                }
                guard closed else { throw ParseError.unterminatedQuote }
                guard !segment.isEmpty else { throw ParseError.emptySegment(at: i - 2) }
                if i < chars.count, chars[i] != "." { throw ParseError.unexpected(Character(chars[i]), at: i) }
            } else {
                let start = i
                while i < chars.count, chars[i] != "." {
                    let c = chars[i]
                    if !JSONPath.isBare(c) || c == "\"" {
                        throw ParseError.unexpected(Character(c), at: i)
                    }
                    segment.append(c)
                    i += 1
                }
                guard !segment.isEmpty else { throw ParseError.emptySegment(at: start) }
            }
            segments.append(String(segment))
            if i >= chars.count { break }
            i += 1  // the dot
            if i >= chars.count { throw ParseError.emptySegment(at: i) }
        }
        self.init(segments: segments)
    }

    /// Scalars a segment may hold without quotes.
    static func isBare(_ c: Unicode.Scalar) -> Bool {
        if c.isASCII { return !(c == "." || c == "\"" || c.value <= 0x20 || c.value == 0x7f) }
        return !c.properties.isWhitespace
    }

    public var description: String {
        segments.map { s in
            s.unicodeScalars.contains(where: { !JSONPath.isBare($0) })
                ? "\"" + s.replacingAll("\\", with: "\\\\").replacingAll("\"", with: "\\\"") + "\""
                : s
        }.joined(separator: ".")
    }

    /// The value at this path, or nil. `keyMatch` lets header names match
    /// case-insensitively while body keys match exactly.
    public func value(in root: JSON, keyMatch: ((Int, String, String) -> Bool)? = nil) -> JSON? {
        var current = root
        for (depth, segment) in segments.enumerated() {
            if let match = keyMatch {
                guard let key = current.keys.first(where: { match(depth, $0, segment) }),
                      let next = current[key] else { return nil }
                current = next
            } else {
                guard let next = current[segment] else { return nil }
                current = next
            }
        }
        return current
    }

    public enum SetError: Error, Equatable {
        /// A segment before the last one holds something that is not an object.
        case notAnObject(prefix: String)
        case outOfMemory
    }

    /// Writes `value` at this path, creating the objects that are missing.
    /// Existing non-object values on the way are an error, never overwritten:
    /// silently dropping a client's field is worse than refusing the request.
    public func set(_ value: JSON, in root: JSON) throws(SetError) {
        guard root.isObject else { throw .notAnObject(prefix: "") }
        var current = root
        for (depth, segment) in segments.dropLast().enumerated() {
            if let next = current[segment] {
                guard next.isObject else {
                    throw .notAnObject(prefix: JSONPath(segments: Array(segments[...depth])).description)
                }
                current = next
            } else {
                guard let created = JSON.object(), current.set(segment, created) else { throw .outOfMemory }
                current = created
            }
        }
        guard let last = segments.last, current.set(last, value) else { throw .outOfMemory }
    }
}

extension String {
    func replacingAll(_ target: Unicode.Scalar, with replacement: String) -> String {
        var out = String.UnicodeScalarView()
        for c in unicodeScalars {
            if c == target { out.append(contentsOf: replacement.unicodeScalars) } else { out.append(c) }
        }
        return String(out)
    }
}
