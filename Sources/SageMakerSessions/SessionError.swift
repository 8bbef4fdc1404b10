/// Every way a session request can fail, each mapped to exactly one answer.
public enum SessionError: Error, Equatable {
    case disabled
    case malformedRequest(String)
    case missingSessionID
    case notFound(String)
    case expired(String)
    case notAnObject(path: String)
    case cannotInject(path: String, blockedAt: String)
    case createFailed(SystemError)
    case closeFailed(SystemError)
    case readFailed(id: String, SystemError)
    case outOfMemory

    public var answer: Answer {
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
        case .cannotInject(let path, let blockedAt):
            let detail = "Bad request: cannot write the session id at \"\(path)\": \"\(blockedAt)\" is not an object"
            return .error(400, detail, log: (.info, detail))
        case .createFailed(let reason):
            return .error(424, "Failed to create session: \(reason)", log: (.error, "failed to create session: \(reason)"))
        case .closeFailed(let reason):
            return .error(424, "Failed to close session: \(reason)", log: (.error, "failed to close session: \(reason)"))
        case .readFailed(let id, let reason):
            return .error(424, "Failed to read session: \(reason)", log: (.error, "failed to read session \(id): \(reason)"))
        case .outOfMemory:
            return .error(500, "Internal Server Error", log: (.error, "out of memory"))
        }
    }
}
