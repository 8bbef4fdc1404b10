/// The requests the module refuses before it looks at a session: those
/// nginx 1.21.1 and newer refuse in their core, and nginx 1.18.0 accepts.
/// Refused here, a module location answers them the same on every nginx.
///
/// - both `Content-Length` and `Transfer-Encoding`: the body's length is
///   ambiguous (request smuggling), so the request is refused with 400
///   rather than guessed at (1.18.0 took it as chunked);
/// - `CONNECT` and `TRACE`: no session endpoint serves them, 405.
public enum RequestScreen {
    /// The methods a module location answers, for the 405's `Allow`.
    public static let allowed = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"

    /// The refusal, or nil to go on. `method` is the request line's method,
    /// as the client sent it (nginx matches it case-sensitively too).
    public static func check(method: UnsafeRawBufferPointer, contentLength: Bool,
                             transferEncoding: Bool) -> SessionError? {
        if contentLength && transferEncoding { return .ambiguousFraming }
        if method.elementsEqual("CONNECT".utf8) || method.elementsEqual("TRACE".utf8) {
            return .methodNotAllowed(String(decoding: method, as: UTF8.self))
        }
        return nil
    }
}
