/// Every way a session request can fail, each mapped to exactly one answer.
public enum SessionError: Error, Equatable {
    case disabled
    case malformedRequest(String)
    case missingSessionID
    case notFound(String)
    case expired(String)
    case notAnObject(path: String)
    case tooDeep(path: String)
    case cannotInject(path: String, blockedAt: String)
    case createFailed(SystemError)
    case closeFailed(SystemError)
    case readFailed(id: String, SystemError)
    case invalidSessionID
    case repeatedSessionHeader
    case engineSessionIDMissing
    case engineSessionIDUnsafe(String)
    case engineUnreadable
    case outOfMemory
    /// An engine session's home replica cannot be reached: no other holds it.
    case homeUnavailable(id: String, home: String)
    /// Both Content-Length and Transfer-Encoding (`RequestScreen`).
    case ambiguousFraming
    /// CONNECT or TRACE (`RequestScreen`).
    case methodNotAllowed(String)

    /// The one answer, carrying the request's outcome.
    public var answer: Answer {
        var answer = reply
        answer.outcome = outcome
        return answer
    }

    private var reply: Answer {
        switch self {
        case .disabled:
            return .error(400, "Invalid payload. stateful sessions not enabled",
                          log: (.info, "stateful sessions not enabled, \(Answer.sessionIDHeader) header not supported"))
        case .malformedRequest(let detail):
            return .error(400, detail, log: (.info, detail))
        case .missingSessionID:
            return .error(400, "Session ID is required in request headers to close a session",
                          log: (.info, "no session id in request headers to close a session"))
        case .notFound(let id):
            return .error(400, "Bad request: session not found: \(id)", log: (.info, "session not found: \(id)"))
        case .expired(let id):
            return .error(400, "Bad request: session expired: \(id)", log: (.info, "session expired: \(id)"))
        case .notAnObject(let path):
            let detail = "Bad request: the body must be a JSON object to carry the session id at \"\(path)\""
            return .error(400, detail, log: (.info, detail))
        case .tooDeep(let path):
            let detail = "Bad request: the body is nested more than \(JSONSplice.maxDepth) levels deep: cannot write the session id at \"\(path)\""
            return .error(400, detail, log: (.info, detail))
        case .cannotInject(let path, let blockedAt):
            let detail = "Bad request: cannot write the session id at \"\(path)\": \"\(blockedAt)\" is not an object"
            return .error(400, detail, log: (.info, detail))
        case .createFailed(let reason) where reason == .limitReached:
            return .error(424, "Failed to create session: \(reason)",
                          log: (.warn, "failed to create session: \(reason) (sagemaker_sessions_max)"))
        case .createFailed(let reason):
            return .error(424, "Failed to create session: \(reason)", log: (.error, "failed to create session: \(reason)"))
        case .closeFailed(let reason):
            return .error(424, "Failed to close session: \(reason)", log: (.error, "failed to close session: \(reason)"))
        case .readFailed(let id, let reason):
            return .error(424, "Failed to read session: \(reason)", log: (.error, "failed to read session \(id): \(reason)"))
        case .invalidSessionID:
            return .error(400, "Bad request: the session id is not valid UTF-8",
                          log: (.info, "session id is not valid UTF-8"))
        case .repeatedSessionHeader:
            return .error(400, "Bad request: more than one \(Answer.sessionIDHeader) header",
                          log: (.info, "more than one \(Answer.sessionIDHeader) header"))
        case .engineSessionIDMissing:
            return .error(500, "Session ID not found in response",
                          log: (.warn, "session id not found in the engine's response"))
        case .engineSessionIDUnsafe(let id):
            let shown = String(decoding: id.utf8.prefix(64).map { $0 < 0x20 || $0 == 0x7f ? UInt8(ascii: "?") : $0 }, as: UTF8.self)
            return .error(500, "Session ID in response is not valid in a header (control characters, or over \(HeaderValue.maxLength) bytes)",
                          log: (.warn, "session id in the engine's response is not valid in a header: \"\(shown)\"\(id.utf8.count > 64 ? "..." : "") (\(id.utf8.count) bytes)"))
        case .engineUnreadable:
            return .error(502, "Failed to read the engine's response to the session request",
                          log: (.error, "the engine's response to a session request could not be read whole: larger than subrequest_output_buffer_size, or cut short"))
        case .outOfMemory:
            return .error(500, "Internal Server Error", log: (.error, "out of memory"))
        case .homeUnavailable(let id, let home):
            return .error(503, "Session \(id) is held by engine replica \(home), which is unavailable",
                          log: (.warn, "session \(id): its engine replica \(home) is unavailable"))
        case .ambiguousFraming:
            return .error(400, "Bad request: both Content-Length and Transfer-Encoding",
                          log: (.info, "client sent both Content-Length and Transfer-Encoding"))
        case .methodNotAllowed(let method):
            var answer = Answer.error(405, "Method Not Allowed: \(method)",
                                      log: (.info, "client sent \(method) method"))
            answer.header = ("Allow", RequestScreen.allowed)
            return answer
        }
    }
}
