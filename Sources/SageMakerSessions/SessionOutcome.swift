import Glibc

/// What became of a request's session: the word `$sagemaker_session_outcome`
/// gives, and the counter of the status page it adds to. `none` when the
/// request involves no session.
///
/// The raw values cross the C ABI (`sms_decision_t.outcome`) and index the
/// shared counters (`Metrics`): append new cases, never renumber.
public enum SessionOutcome: Int32, CaseIterable {
    case none = 0
    case createdBuiltin, createdEngine
    case closedBuiltin, closedEngine
    /// A built-in session checked and found valid.
    case valid
    /// An engine-owned session passed on without a check.
    case passed
    case notFound, expired, missingID, malformed, disabled, repeatedHeader, limit, notObject
    case storeErrorCreate, storeErrorClose, storeErrorRead
    case engineError

    /// The variable's word; empty for `none`. Static text: giving it to nginx
    /// allocates nothing.
    public var word: StaticString {
        switch self {
        case .none: return ""
        case .createdBuiltin, .createdEngine: return "created"
        case .closedBuiltin, .closedEngine: return "closed"
        case .valid: return "valid"
        case .passed: return "passed"
        case .notFound: return "not_found"
        case .expired: return "expired"
        case .missingID: return "missing_id"
        case .malformed: return "malformed"
        case .disabled: return "disabled"
        case .repeatedHeader: return "repeated_header"
        case .limit: return "limit"
        case .notObject: return "not_object"
        case .storeErrorCreate, .storeErrorClose, .storeErrorRead: return "store_error"
        case .engineError: return "engine_error"
        }
    }

    /// The request's session is the new one (or none, if it was not made):
    /// a session header that came with NEW_SESSION is not its session.
    public var isNewSession: Bool {
        switch self {
        case .createdBuiltin, .createdEngine, .limit, .storeErrorCreate: return true
        default: return false
        }
    }

    /// An ordinary invocation passed on: valid built-in session, engine-owned
    /// session, or no session at all.
    @inlinable @inline(__always)
    public static func passing(header: UnsafeRawBufferPointer?, engineOwnsSessions: Bool) -> SessionOutcome {
        guard let header, !header.isEmpty else { return .none }
        return engineOwnsSessions ? .passed : .valid
    }

    /// The outcome of a decision: the one its answer carries, or the one of
    /// a request passed on; none while the engine has yet to answer.
    @inline(__always)
    public static func of(_ decision: Decision, header: UnsafeRawBufferPointer?,
                          engineOwnsSessions: Bool) -> SessionOutcome {
        switch decision {
        case .pass, .passWithBody, .passSession: return passing(header: header, engineOwnsSessions: engineOwnsSessions)
        case .answer(let answer): return answer.outcome
        case .callEngine: return .none
        case .relay: return .engineError
        }
    }
}

extension SessionStore {
    /// Sessions in the store now: the sessions directory's subdirectories
    /// (one `stat`), or where the file system does not count them, its
    /// entries named as sessions.
    public func liveSessions() -> Int64 {
        if let count = directoryCount() { return max(0, count) }
        guard let dir = opendir(root) else { return 0 }
        defer { closedir(dir) }
        var count: Int64 = 0
        while let entry = readdir(dir) {
            if SessionID.isCanonical(FileSystem.entryName(entry)) { count += 1 }
        }
        return count
    }
}

extension SessionError {
    /// The outcome of a request refused with this error.
    public var outcome: SessionOutcome {
        switch self {
        case .disabled: return .disabled
        case .malformedRequest, .invalidSessionID, .tooDeep: return .malformed
        case .missingSessionID: return .missingID
        case .notFound: return .notFound
        case .expired: return .expired
        case .notAnObject, .cannotInject: return .notObject
        case .createFailed(let reason) where reason == .limitReached: return .limit
        case .createFailed: return .storeErrorCreate
        case .closeFailed: return .storeErrorClose
        case .readFailed: return .storeErrorRead
        case .repeatedSessionHeader: return .repeatedHeader
        case .engineSessionIDMissing, .engineSessionIDUnsafe, .engineUnreadable, .homeUnavailable: return .engineError
        case .outOfMemory, .ambiguousFraming, .methodNotAllowed: return .none  // not the session's doing
        }
    }
}
