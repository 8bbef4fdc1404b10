/// An engine-owned session that expired at its home is closed at the
/// engine once: the module gave it its lifetime, so the engine would
/// otherwise keep it (and the KV cache it pins) until its own idle timeout,
/// or forever. Whoever takes its record away (one rename, so one worker of
/// all) calls the configured close handler for it, at its home, with the
/// close defaults and the id at REQUEST_PATH, as a client's CLOSE would.
/// The client that found it still gets `expired`. Where a close location
/// is known (ExpireQueue.swift) the call is recorded as an entry first, so
/// that a refusal is tried again, as the sweep's closes are.

/// Where a request of an engine's session goes, or the close of one that
/// expired (`.callEngine(.expire, ...)`) in its stead.
enum EngineRouting {
    case route(Route?)
    case expire(Decision)

    var route: Route? {
        if case .route(let route) = self { return route }
        return nil
    }
}

extension SessionStore {
    /// Takes away an engine session found expired; its home when this caller
    /// took it (and so must close it), nil when another had, or it had none.
    public func claimExpired(engineSession id: UnsafeRawBufferPointer) -> Home? {
        let text: String
        if SessionKey(id) != nil {
            text = String(decoding: id, as: UTF8.self)
        } else if let name = EngineSessionName(id) {
            text = name.text
        } else {
            return nil
        }
        var home: Home?
        guard (try? takeAway(text, home: &home)) == true else { return nil }
        Metrics.expiredSessionRemoved()
        if let home { oweCalling(text, home: home, now: WallClock.now()) }
        return home
    }
}

extension SessionManager {
    /// The close call for an expired engine session this request claimed;
    /// nil without a close handler, or when it is not this request's to close.
    func expireCall(_ raw: UnsafeRawBufferPointer) throws(SessionError) -> Decision? {
        guard closeHandler != nil, let store else { return nil }
        guard let home = store.claimExpired(engineSession: raw) else { return nil }
        do {
            return try expireCall(raw, home: home)
        } catch {
            store.dropExpired(String(decoding: raw, as: UTF8.self), why: error.answer.body)
            throw error
        }
    }

    /// The close call of an expired engine session already claimed, at its
    /// home: the request path's, and the sweep's (ExpireQueue.swift).
    public func expireCall(_ raw: UnsafeRawBufferPointer, home: Home) throws(SessionError) -> Decision? {
        guard let handler = closeHandler else { return nil }
        return .callEngine(.expire, body: try closeBody(handler, raw), route: Route(kind: .engine, home: home))
    }

    /// The client's answer once the engine answered the close of its expired
    /// session: `expired`, with the engine's answer in the log line (a
    /// `[warn]` when it did not close it).
    func expired(_ sessionID: [UInt8]?, response: EngineResponse) -> Answer {
        let id = String(decoding: sessionID ?? [], as: UTF8.self)
        var answer = SessionError.expired(id).answer
        // its entry (ExpireQueue.swift): kept for another try, or given up
        if let settled = store?.settleExpired(id, status: response.status, complete: response.complete,
                                              now: WallClock.now()) {
            answer.log = (settled.level, settled.message)
            return answer
        }
        if response.complete && response.status == 200 {
            answer.log = (.info, "session expired: \(id); closed at the engine")
        } else {
            answer.log = (.warn, "session expired: \(id); the engine did not close it (status \(response.status)"
                + (response.complete ? ")" : ", answer unreadable)"))
        }
        return answer
    }
}
