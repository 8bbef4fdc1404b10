import Glibc

/// What a body says about sessions. A session request is a JSON object with a
/// `requestType` key; every other body, JSON or not, is an ordinary invocation.
public enum SessionRequest {
    case newSession
    case close
    /// A `requestType` object that is not a valid session request.
    case malformed(String)
    /// An ordinary invocation; `parsed` is the body when it had to be parsed.
    case invocation(parsed: JSON?)

    public static let key = "requestType"

    public static func classify(_ body: UnsafeRawBufferPointer) -> SessionRequest {
        guard startsLikeObject(body), mayName(key, body) else { return .invocation(parsed: nil) }
        guard let json = JSON.parse(body), json.isObject else { return .invocation(parsed: nil) }
        guard let type = json[key] else { return .invocation(parsed: json) }
        let extra = json.keys.filter { $0 != key }
        if !extra.isEmpty {
            let names = extra.prefix(5).map { "\"\($0)\"" }.joined(separator: ", ")
            return .malformed("Invalid session request: unexpected key\(extra.count > 1 ? "s" : "") \(names) besides \"requestType\"")
        }
        switch type.stringValue {
        case "NEW_SESSION": return .newSession
        case "CLOSE": return .close
        case .some(let other):
            return .malformed("Invalid session request: requestType must be \"NEW_SESSION\" or \"CLOSE\", not \"\(other)\"")
        case .none:
            return .malformed("Invalid session request: requestType must be a string, \"NEW_SESSION\" or \"CLOSE\"")
        }
    }

    /// Only a body whose first non-blank byte is `{` can be a JSON object.
    static func startsLikeObject(_ body: UnsafeRawBufferPointer) -> Bool {
        for b in body {
            switch b {
            case 0x20, 0x09, 0x0a, 0x0d: continue
            case UInt8(ascii: "{"): return true
            default: return false
            }
        }
        return false
    }

    /// False only when the body certainly holds no key `name`: neither the
    /// plain bytes nor a `\u` escape that could spell them. Saves parsing
    /// large invocations.
    static func mayName(_ name: String, _ body: UnsafeRawBufferPointer) -> Bool {
        contains(Array(name.utf8), body) || contains(Array("\\u".utf8), body)
    }

    static func contains(_ needle: [UInt8], _ hay: UnsafeRawBufferPointer) -> Bool {
        guard var p = hay.baseAddress, let first = needle.first else { return false }
        var remaining = hay.count
        return needle.withUnsafeBytes { n -> Bool in
            guard let np = n.baseAddress else { return false }
            while remaining >= needle.count {
                guard let hit = memchr(p, Int32(first), remaining - needle.count + 1) else { return false }
                if memcmp(hit, np, needle.count) == 0 { return true }
                let skipped = p.distance(to: UnsafeRawPointer(hit)) + 1
                p += skipped
                remaining -= skipped
            }
            return false
        }
    }
}
