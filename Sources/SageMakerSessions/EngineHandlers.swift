/// Engine session handlers: NEW_SESSION and CLOSE handed to the engine's own
/// session API (SGLang's `/open_session`, `/close_session`), as the Python
/// library's `register_create_session_handler` and
/// `register_close_session_handler` do.
public struct CreateHandler {
    /// Where the id is in `{"body": ..., "headers": {...}, "status_code": N}`.
    public let responsePath: JSONPath
    public let defaults: SessionDefaults

    public init(responsePath: JSONPath, defaults: SessionDefaults) {
        self.responsePath = responsePath
        self.defaults = defaults
    }
}

public struct CloseHandler {
    /// Where the id goes in the request body (the path after `body.`).
    public let requestPath: JSONPath
    public let defaults: SessionDefaults

    public init(requestPath: JSONPath, defaults: SessionDefaults) {
        self.requestPath = requestPath
        self.defaults = defaults
    }
}

/// Paths in configuration, checked when nginx reads it.
public enum HandlerPath {
    public struct Invalid: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    public static let responseRoots = ["body", "headers", "status_code"]

    /// A create handler's RESPONSE_PATH: rooted at body, headers or status_code.
    public static func response(_ text: String) throws(Invalid) -> JSONPath {
        let path = try parse(text)
        guard let root = path.segments.first, responseRoots.contains(root) else {
            throw Invalid(description: "the path must start with \"body\", \"headers\" or \"status_code\"")
        }
        return path
    }

    /// A close handler's REQUEST_PATH: `body.<path>`; returns the part in the body.
    public static func request(_ text: String) throws(Invalid) -> JSONPath {
        let path = try parse(text)
        guard path.segments.count > 1, path.segments[0] == "body" else {
            throw Invalid(description: "the path must start with \"body.\"")
        }
        return JSONPath(segments: Array(path.segments.dropFirst()))
    }

    static func parse(_ text: String) throws(Invalid) -> JSONPath {
        do {
            return try JSONPath(parsing: text)
        } catch {
            throw Invalid(description: "\(error)")
        }
    }
}

/// What nginx captured of the engine's answer to a session subrequest.
public struct EngineResponse {
    /// False when nginx could not read the whole answer (too large for the
    /// subrequest buffer, or cut short).
    public var complete: Bool
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: UnsafeRawBufferPointer

    public init(complete: Bool, status: Int, headers: [(name: String, value: String)], body: UnsafeRawBufferPointer) {
        self.complete = complete
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The document RESPONSE_PATH reads: the body as JSON, or as text when it
    /// is not JSON.
    func document() -> JSON? {
        guard let doc = JSON.object(), let headerObject = JSON.object(), let code = JSON.integer(status) else { return nil }
        let parsed = JSON.parse(body) ?? JSON.string(String(decoding: body, as: UTF8.self))
        guard let bodyValue = parsed else { return nil }
        for (name, value) in headers {
            if let v = JSON.string(value) { headerObject.set(name.lowercasedASCII(), v) }
        }
        doc.set("body", bodyValue)
        doc.set("headers", headerObject)
        doc.set("status_code", code)
        return doc
    }

    /// Header names match whatever their case; body keys match exactly.
    /// Compared as bytes: `String ==` is canonical equivalence, which would
    /// let `"cafe\u{301}"` stand for `"caf\u{e9}"` (found by fuzzing, Tests/Fuzz).
    static func matchKey(depth: Int, key: String, segment: String, path: JSONPath) -> Bool {
        if depth == 1, path.segments.first == "headers" {
            return key.utf8.elementsEqual(segment.lowercasedASCII().utf8)
        }
        return key.utf8.elementsEqual(segment.utf8)
    }

    /// The session id at `path`, as text: strings as they are, numbers in
    /// decimal; nil for anything else or nothing.
    public func sessionID(at path: JSONPath) -> String? {
        guard let doc = document(),
              let value = path.value(in: doc, keyMatch: { EngineResponse.matchKey(depth: $0, key: $1, segment: $2, path: path) })
        else { return nil }
        let text = value.stringValue ?? value.numberText
        guard let text, !text.isEmpty else { return nil }
        return text
    }
}

/// A value we can put in a response header as it is.
public enum HeaderValue {
    public static let maxLength = 256

    public static func isSafe(_ text: String) -> Bool {
        let bytes = text.utf8
        guard !bytes.isEmpty, bytes.count <= maxLength else { return false }
        return !bytes.contains { $0 < 0x20 || $0 == 0x7f }
    }
}

extension String {
    func lowercasedASCII() -> String {
        String(decoding: utf8.map { $0 >= 0x41 && $0 <= 0x5a ? $0 + 0x20 : $0 }, as: UTF8.self)
    }
}
