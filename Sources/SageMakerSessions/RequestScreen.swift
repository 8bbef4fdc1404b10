import Glibc

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
        if matches(method, "CONNECT") || matches(method, "TRACE") {
            return .methodNotAllowed(String(decoding: method, as: UTF8.self))
        }
        return nil
    }

    /// Lengths first: every request passes here, and its method is rarely
    /// 5 or 7 bytes long (a String comparison cost hundreds of instructions).
    @inline(__always)
    private static func matches(_ method: UnsafeRawBufferPointer, _ name: StaticString) -> Bool {
        guard method.count == name.utf8CodeUnitCount, let base = method.baseAddress else { return false }
        return memcmp(base, name.utf8Start, method.count) == 0
    }
}
