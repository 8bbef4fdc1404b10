import CJansson
import Glibc

/// One owned jansson value: the reference is dropped however a decision ends,
/// so no request path can leak a parsed body.
public final class JSON {
    let raw: UnsafeMutablePointer<json_t>

    init(owning raw: UnsafeMutablePointer<json_t>) {
        self.raw = raw
    }

    deinit {
        json_decref(raw)
    }

    /// Parses any JSON text (not only objects); nil when it is not JSON.
    /// Strings may hold NUL, as they may in JSON; jansson bounds nesting depth.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> JSON? {
        guard let base = bytes.baseAddress, bytes.count > 0, !hasRawNUL(bytes) else { return nil }
        var error = json_error_t()
        let flags = JSON_DECODE_ANY | JSON_ALLOW_NUL
        guard let raw = json_loadb(base.assumingMemoryBound(to: CChar.self), bytes.count,
                                   Int(flags), &error) else { return nil }
        return JSON(owning: raw)
    }

    /// A raw NUL byte is never valid JSON (inside a string it must be
    /// escaped), but jansson skips one that follows a number or a literal:
    /// `{"a": 1\0}` would parse. Found by fuzzing (Tests/Fuzz).
    static func hasRawNUL(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return false }
        return memchr(base, 0, bytes.count) != nil
    }

    /// Like `parse`, with jansson's reason when it is not JSON.
    public static func parseExplained(_ text: String) -> (JSON?, String) {
        var text = text
        return text.withUTF8 { buf -> (JSON?, String) in
            var error = json_error_t()
            guard let base = buf.baseAddress, buf.count > 0 else { return (nil, "empty text") }
            if let nul = buf.firstIndex(of: 0) { return (nil, "NUL byte at offset \(nul)") }
            let raw = base.withMemoryRebound(to: CChar.self, capacity: buf.count) {
                json_loadb($0, buf.count, Int(JSON_DECODE_ANY), &error)
            }
            guard let raw else {
                let reason = withUnsafeBytes(of: &error.text) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                return (nil, "\(reason) at line \(error.line), column \(error.column)")
            }
            return (JSON(owning: raw), "")
        }
    }

    public static func parse(_ text: String) -> JSON? {
        var text = text
        return text.withUTF8 { parse(UnsafeRawBufferPointer($0)) }
    }

    public static func object() -> JSON? {
        json_object().map(JSON.init(owning:))
    }

    /// nil when the bytes are not valid UTF-8 (jansson keeps strings valid).
    public static func string(_ value: String) -> JSON? {
        value.withCString { json_stringn($0, value.utf8.count).map(JSON.init(owning:)) }
    }

    public static func integer(_ value: Int) -> JSON? {
        json_integer(json_int_t(value)).map(JSON.init(owning:))
    }

    /// An independent copy, so a template is never changed by a request.
    public func deepCopy() -> JSON? {
        json_deep_copy(raw).map(JSON.init(owning:))
    }

    public var isObject: Bool { raw.pointee.type == JSON_OBJECT }
    public var isString: Bool { raw.pointee.type == JSON_STRING }
    public var isNumber: Bool { raw.pointee.type == JSON_INTEGER || raw.pointee.type == JSON_REAL }

    public var stringValue: String? {
        guard isString, let p = json_string_value(raw) else { return nil }
        let bytes = UnsafeRawBufferPointer(start: p, count: json_string_length(raw))
        return String(decoding: bytes, as: UTF8.self)
    }

    public var numberValue: Double? {
        isNumber ? json_number_value(raw) : nil
    }

    /// Integers keep every digit; reals are written as jansson writes them.
    public var numberText: String? {
        switch raw.pointee.type {
        case JSON_INTEGER: return String(json_integer_value(raw))
        case JSON_REAL:
            let v = json_real_value(raw)
            if v == v.rounded(), v.magnitude < 9e15 { return String(Int64(v)) }
            return "\(v)"  // the shortest text that reads back the same
        default: return nil
        }
    }

    /// Keys are read, looked up and set through jansson's NUL-terminated calls, not
    /// 2.14's `…n` ones: Ubuntu 22.04 ships jansson 2.13.1, and the module must load
    /// there. Nothing is lost: jansson's parser refuses a NUL byte in an object key.
    public var keys: [String] {
        guard isObject else { return [] }
        var keys: [String] = []
        var iter = json_object_iter(raw)
        while let it = iter {
            if let k = json_object_iter_key(it) {
                keys.append(String(cString: k))
            }
            iter = json_object_iter_next(raw, it)
        }
        return keys
    }

    /// A borrowed member, retained for the caller.
    public subscript(key: String) -> JSON? {
        guard isObject else { return nil }
        guard !key.utf8.contains(0) else { return nil }
        let member = key.withCString { json_object_get(raw, $0) }
        guard let member else { return nil }
        return JSON(owning: json_incref(member))
    }

    /// Sets a member; false when out of memory or the key is not UTF-8.
    @discardableResult
    public func set(_ key: String, _ value: JSON) -> Bool {
        guard isObject else { return false }
        guard !key.utf8.contains(0) else { return false }
        return key.withCString { json_object_set(raw, $0, value.raw) == 0 }
    }

    /// Compact text, written straight into memory the caller provides.
    public func dump(into allocate: (Int) -> UnsafeMutableRawPointer?) -> UnsafeRawBufferPointer? {
        let flags = Int(JSON_COMPACT | JSON_ENCODE_ANY)
        let size = json_dumpb(raw, nil, 0, flags)
        guard size > 0, let dest = allocate(size) else { return nil }
        let written = json_dumpb(raw, dest.assumingMemoryBound(to: CChar.self), size, flags)
        guard written == size else { return nil }
        return UnsafeRawBufferPointer(start: dest, count: size)
    }

    public func dumped() -> String? {
        var storage: UnsafeMutableRawPointer?
        defer { storage?.deallocate() }
        guard let bytes = dump(into: { n in
            storage = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 1)
            return storage
        }) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
