import Glibc

/// `set_sagemaker_session_value $var KEY;`: the value an engine stored under
/// KEY in a session with the Python library's `Session.put(key, value)`,
/// which writes the value as JSON to `<sessions_path>/<id>/<key>` with `/`
/// in the key written `-`.
public enum SessionValue {
    /// The largest key file read; a larger one gives no value.
    public static let maxBytes = 65_536

    public struct InvalidKey: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// The file name of KEY, by the library's own rules (`Session._path`):
    /// no `..`, no leading `/`, `/` stored as `-`, and a name that stays
    /// inside the session's directory (not empty, not `.`). Also refused:
    /// what no file can be named (a NUL, over 255 bytes).
    public static func fileName(forKey key: String) throws(InvalidKey) -> String {
        let bytes = Array(key.utf8)
        if bytes.isEmpty { throw InvalidKey(description: "the key is empty") }
        if bytes.first == UInt8(ascii: "/") {
            throw InvalidKey(description: "the key starts with \"/\" (the library refuses absolute paths)")
        }
        if zip(bytes, bytes.dropFirst()).contains(where: { $0 == UInt8(ascii: ".") && $1 == UInt8(ascii: ".") }) { throw InvalidKey(description: "the key holds \"..\" (the library refuses it)") }
        if bytes.contains(0) { throw InvalidKey(description: "the key holds a NUL byte") }
        let name = bytes.map { $0 == UInt8(ascii: "/") ? UInt8(ascii: "-") : $0 }
        if name == [UInt8(ascii: ".")] {
            throw InvalidKey(description: "the key names the session's directory itself")
        }
        if name.count > 255 { throw InvalidKey(description: "the key is longer than 255 bytes") }
        return String(decoding: name, as: UTF8.self)
    }

    /// What a read found: the value's text (nil: none), and a line for the
    /// error log when the file was there but unfit.
    public struct Found: Equatable {
        public var text: [UInt8]?
        public var log: String?
    }

    /// The value of the key file `file` in the session of the header's
    /// bytes `id`: empty unless the session is valid in `store` and the file
    /// is a regular file (a symbolic link is never followed) of at most
    /// `maxBytes` bytes holding JSON. A JSON string gives its text; any
    /// other JSON value its compact JSON text. A string holding control
    /// characters gives no value: the variable may go into a header.
    ///
    /// `verdict`: the request's. Read before the manager (in the rewrite
    /// phase), this is the request's first look at its session, and what
    /// it finds is what the manager answers from later; an expired session
    /// is left for the manager to answer, remove and count.
    public static func read(store: SessionStore, id: UnsafeRawBufferPointer, file: String,
                            now: Double = WallClock.now(), verdict: VerdictRoom = .none) -> Found {
        guard case .valid? = try? store.lookup(id, now: now, retiring: false, verdict: verdict) else { return Found() }
        let sid = String(decoding: id, as: UTF8.self)  // canonical: it was found
        let path = store.directory(of: sid) + "/" + file
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.readSmallFile(path, limit: maxBytes, regularOnly: true)
        } catch {
            switch error.code {
            case ENOENT, ENOTDIR: return Found()
            case EFBIG: return Found(log: "value \"\(file)\" of session \(sid) is larger than \(maxBytes) bytes: not read")
            case ELOOP: return Found(log: "value \"\(file)\" of session \(sid) is a symbolic link: not followed")
            case EINVAL: return Found(log: "value \"\(file)\" of session \(sid) is not a regular file: not read")
            default: return Found(log: "value \"\(file)\" of session \(sid) cannot be read: \(error)")
            }
        }
        guard let text = text(ofJSON: bytes) else {
            return Found(log: "value \"\(file)\" of session \(sid) is not JSON, or a string holding control characters")
        }
        return Found(text: text)
    }

    /// A JSON string's text, or any other JSON value's compact text; nil
    /// for what is not JSON, and for a string holding control characters.
    public static func text(ofJSON bytes: [UInt8]) -> [UInt8]? {
        guard let json = bytes.withUnsafeBytes({ JSON.parse($0) }) else { return nil }
        if json.isString {
            guard let s = json.stringValue else { return nil }
            let utf8 = Array(s.utf8)
            return utf8.contains(where: { $0 < 0x20 || $0 == 0x7f }) ? nil : utf8
        }
        guard let dumped = json.dumped() else { return nil }
        return Array(dumped.utf8)
    }
}
