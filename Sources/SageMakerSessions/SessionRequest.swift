/// What a body says about sessions. A session request is a JSON object with a
/// `requestType` key; every other body, JSON or not, is an ordinary invocation.
public enum SessionRequest {
    case newSession
    case close
    /// A `requestType` object that is not a valid session request.
    case malformed(String)
    /// An ordinary invocation; `parsed` is the body when it had to be parsed.
    case invocation(parsed: JSON?)

    static let keyText: StaticString = "requestType"
    public static let key = keyText.description

    public static func classify(_ body: UnsafeRawBufferPointer) -> SessionRequest {
        classify(RequestBody(body))
    }

    public static func classify(_ body: RequestBody) -> SessionRequest {
        guard body.startsLikeObject, mayName(body) else { return .invocation(parsed: nil) }
        switch plainRequestType(body) {
        case "NEW_SESSION": return .newSession
        case "CLOSE": return .close
        default: break
        }
        guard let json = body.parse(), json.isObject else { return .invocation(parsed: nil) }
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

    /// The `requestType` of a body made of nothing but `"requestType"`
    /// members with plain ASCII string values, the last one winning as in a
    /// parser: what clients send for NEW_SESSION and CLOSE, read without
    /// building a parse tree. nil for anything else, which the parser reads.
    static func plainRequestType(_ body: RequestBody) -> String? {
        guard let bytes = body.oneRun else { return nil }
        var i = 0
        let n = bytes.count
        func blanks() {
            while i < n, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0a || bytes[i] == 0x0d { i += 1 }
        }
        func take(_ b: UInt8) -> Bool {
            blanks()
            guard i < n, bytes[i] == b else { return false }
            i += 1
            return true
        }
        /// A string of plain ASCII (no escapes, no control characters).
        func plainString() -> Range<Int>? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = i
            while i < n, bytes[i] >= 0x20, bytes[i] < 0x80, bytes[i] != UInt8(ascii: "\""), bytes[i] != UInt8(ascii: "\\") {
                i += 1
            }
            guard i < n, bytes[i] == UInt8(ascii: "\"") else { return nil }
            i += 1
            return start..<i - 1
        }
        guard take(UInt8(ascii: "{")) else { return nil }
        var value: Range<Int>? = nil
        repeat {
            guard let name = plainString(), RequestBody.same(UnsafeRawBufferPointer(rebasing: bytes[name]), keyBytes),
                  take(UInt8(ascii: ":")), let v = plainString() else { return nil }
            value = v
        } while take(UInt8(ascii: ","))
        guard take(UInt8(ascii: "}")) else { return nil }
        blanks()
        guard i == n, let value else { return nil }
        return String(decoding: bytes[value], as: UTF8.self)
    }

    /// False only when the body certainly holds no key `requestType`:
    /// neither its plain bytes nor a `\u` escape that could spell them. Saves
    /// parsing large invocations. Each scan runs from one rare byte to the
    /// next: the key's `q`, the escape's backslash; a small body without
    /// either is passed over in one pass.
    static func mayName(_ body: RequestBody) -> Bool {
        let key = keyBytes, keyPivot = 2, escape = constant("\\u")
        return body.mayHold(key[keyPivot], escape[0])
            && (body.contains(key, pivot: keyPivot) || body.contains(escape))
    }

    static var keyBytes: UnsafeRawBufferPointer { constant(keyText) }

    /// Constant text without an array: nothing to allocate, retain or
    /// initialise once on each request.
    @inline(__always)
    static func constant(_ text: StaticString) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
    }
}
