/// The built-in session manager: what to do with one request to a
/// `sagemaker_session_manager` location.
public enum Decision {
    case pass
    /// Pass the request on with this body instead of the client's: the
    /// client's bytes with new ones spliced in.
    case passWithBody(JSONSplice.Point)
    /// Boxed: an answer is large and rare, and a request passed on should
    /// not carry its room (nor pay to destroy it).
    indirect case answer(Answer)
    /// Hand the session request to the engine: a POST of this body to the
    /// handler's URI, whose answer comes back to `answer(_:sessionID:response:)`;
    /// a CLOSE of a session with a home, to its home.
    case callEngine(EngineCall, body: JSON, route: Route?)
    /// Pass on a request of a session with session affinity: to its home,
    /// or to the one nginx picks for it; with a new body when the session
    /// id is written into it.
    case passSession(Route, body: JSONSplice.Point?)
    /// Give the client the engine's answer as it is.
    case relay
}

public enum EngineCall: Equatable {
    case create, close
    /// The close handler called for an engine-owned session that expired
    /// at its home (ExpiredEngineSession.swift): the client's answer stays
    /// `expired`, whatever the engine says.
    case expire
}

/// Where an upstream with `sagemaker_session_affinity` sends a request of
/// a known session.
public struct Route: Equatable {
    public enum Kind: Equatable {
        /// Built-in: to its home while it is available, else to another
        /// replica, which becomes its home (only a cache is lost).
        case builtin
        /// Owned by the engine: to its home, only (the engine holds its state).
        case engine
    }

    public let kind: Kind
    /// nil: a built-in session's first request, for nginx to give it one.
    public let home: Home?
}

public struct SessionManager {
    /// nil when sessions are disabled.
    public let store: SessionStore?
    /// Where the session id goes in the body of an invocation, if anywhere.
    public let injectPath: JSONPath?
    /// `injectPath`'s splice form (no keys without one), held apart and not
    /// optional: reaching it through the optional struct copies the struct
    /// (a retain for each of its arrays), and an optional held across a
    /// typed `try` is copied through its metadata (120 instructions).
    public let injectSplice: JSONSplice.Path

    public let createHandler: CreateHandler?
    public let closeHandler: CloseHandler?

    public init(store: SessionStore?, injectPath: JSONPath?,
                createHandler: CreateHandler? = nil, closeHandler: CloseHandler? = nil) {
        self.store = store
        self.injectPath = injectPath
        injectSplice = injectPath?.splice ?? JSONSplice.Path(utf8: [])
        self.createHandler = createHandler
        self.closeHandler = closeHandler
    }

    /// With any engine handler, the engine owns its sessions: invocations are
    /// not checked against the built-in store.
    public var engineOwnsSessions: Bool { createHandler != nil || closeHandler != nil }

    /// - Parameters:
    ///   - sessionID: the session header's bytes, nil when there is none.
    public func decide(sessionID: [UInt8]?, body: UnsafeRawBufferPointer, now: Double = WallClock.now(),
                       verdict: VerdictRoom = .none) -> Decision {
        decide(sessionID: sessionID, body: RequestBody(body), now: now, verdict: verdict)
    }

    /// - Parameters:
    ///   - repeatedHeader: the request has more than one session header;
    ///     which one is meant cannot be told, so a request that uses it is refused.
    ///   - verdict: the request's (`VerdictRoom`): what a reader before the
    ///     manager found of the session is what the manager answers from.
    public func decide(sessionID: [UInt8]?, body: RequestBody, repeatedHeader: Bool = false,
                       now: Double = WallClock.now(), verdict: VerdictRoom = .none) -> Decision {
        guard let sessionID else {
            return decide(header: nil, body: body, repeatedHeader: repeatedHeader, now: now, verdict: verdict)
        }
        return sessionID.withUnsafeBytes {
            decide(header: $0, body: body, repeatedHeader: repeatedHeader, now: now, verdict: verdict)
        }
    }

    /// The same with the header's bytes where nginx holds them.
    public func decide(header sessionID: UnsafeRawBufferPointer?, body: RequestBody, repeatedHeader: Bool = false,
                       now: Double = WallClock.now(), verdict: VerdictRoom = .none) -> Decision {
        do {
            return try route(sessionID: sessionID, body: body, repeatedHeader: repeatedHeader, now: now,
                             verdict: verdict)
        } catch {
            return .answer(error.answer)
        }
    }

    func route(sessionID: UnsafeRawBufferPointer?, body: RequestBody, repeatedHeader: Bool, now: Double,
               verdict: VerdictRoom) throws(SessionError) -> Decision {
        let kind = SessionRequest.classify(body)
        if repeatedHeader {
            switch kind {
            case .newSession, .malformed: break  // the header plays no part
            case .close, .invocation: throw .repeatedSessionHeader
            }
        }
        switch kind {
        case .malformed(let detail):
            throw .malformedRequest(detail)
        case .newSession:
            if let handler = createHandler {
                guard let body = handler.defaults.body() else { throw .outOfMemory }
                return .callEngine(.create, body: body, route: nil)
            }
            return .answer(try create(now: now))
        case .close:
            if let handler = closeHandler {
                let route = try engineRoute(sessionID, now: now, verdict: verdict)
                if case .expire(let call) = route { return call }
                return .callEngine(.close, body: try closeBody(handler, sessionID), route: route.route)
            }
            return .answer(try close(sessionID, now: now, verdict: verdict))
        case .invocation:
            return try invoke(sessionID, body: body, now: now, verdict: verdict)
        }
    }

    func create(now: Double) throws(SessionError) -> Answer {
        guard let store else { throw .disabled }
        let created: SessionStore.Created
        do {
            created = try store.create(now: now)
        } catch {
            throw .createFailed(error)
        }
        let expires = UTCTimestamp.format(unixSeconds: created.expiresAt)
        return Answer(status: 200, contentType: Answer.text,
                      header: (Answer.newSessionIDHeader, Text.concat(created.id, "; Expires=", expires)),
                      body: Text.concat("Session ", created.id, " created"),
                      log: created.remadeRoot
                          ? (.warn, "sessions directory \"\(store.root)\" was missing: made again; session \(created.id) created")
                          : (.info, Text.concat("session ", created.id, " created, expires ", expires)),
                      outcome: .createdBuiltin)
    }

    func close(_ sessionID: UnsafeRawBufferPointer?, now: Double, verdict: VerdictRoom = .none) throws(SessionError) -> Answer {
        guard let store else { throw .disabled }
        guard let raw = sessionID, !raw.isEmpty else { throw .missingSessionID }
        let id = String(decoding: raw, as: UTF8.self)
        let outcome: SessionStore.Closed
        do {
            outcome = try store.close(id, now: now, verdict: verdict)
        } catch {
            throw .closeFailed(error)
        }
        switch outcome {
        case .notFound: throw .notFound(id)
        case .expired: throw .expired(id)
        case .closed:
            return Answer(status: 200, contentType: Answer.text,
                          header: (Answer.closedSessionIDHeader, id),
                          body: "Session \(id) closed", log: (.info, "session \(id) closed"),
                          outcome: .closedBuiltin)
        }
    }

    func invoke(_ sessionID: UnsafeRawBufferPointer?, body: RequestBody, now: Double,
                verdict: VerdictRoom = .none) throws(SessionError) -> Decision {
        guard let raw = sessionID else { return .pass }
        if engineOwnsSessions {
            if raw.isEmpty { return .pass }
            let routing = try engineRoute(raw, now: now, verdict: verdict)
            if case .expire(let call) = routing { return call }
            let route = routing.route
            guard injectSplice.count > 0 else { return route.map { .passSession($0, body: nil) } ?? .pass }
            _ = try text(raw)
            let pieces = try inject(body)
            return route.map { .passSession($0, body: pieces) } ?? .passWithBody(pieces)
        }
        guard store != nil else { throw .disabled }
        if raw.isEmpty { return .pass }
        let found: SessionStore.Lookup
        do {
            // borrowed where it lies: `guard let` would retain it
            found = try store?.lookup(raw, now: now, verdict: verdict) ?? .notFound
        } catch {
            throw .readFailed(id: String(decoding: raw, as: UTF8.self), error)
        }
        let home: Home?
        switch found {
        case .notFound: throw .notFound(String(decoding: raw, as: UTF8.self))
        case .expired: throw .expired(String(decoding: raw, as: UTF8.self))
        case .valid(_, let found): home = found
        }
        // borrowed where it lies, as above
        if store?.affinity ?? false {
            let route = Route(kind: .builtin, home: home)
            guard injectSplice.count > 0 else { return .passSession(route, body: nil) }
            return .passSession(route, body: try inject(body))
        }
        guard injectSplice.count > 0 else { return .pass }
        return .passWithBody(try inject(body))
    }

    /// Where a request of an engine's session goes: to its home when the
    /// module recorded one (session affinity), else wherever nginx balances
    /// it, and the engine decides. One recorded and expired is refused.
    /// One expired with a home, and a close handler, is claimed and closed
    /// at its home (`expire`).
    func engineRoute(_ sessionID: UnsafeRawBufferPointer?, now: Double,
                     verdict: VerdictRoom = .none) throws(SessionError) -> EngineRouting {
        guard let raw = sessionID, !raw.isEmpty, store?.affinity ?? false else { return .route(nil) }
        let found: SessionStore.Lookup
        do {
            found = try store?.lookup(engineSession: raw, now: now, retiring: closeHandler == nil,
                                      verdict: verdict) ?? .notFound
        } catch {
            throw .readFailed(id: String(decoding: raw, as: UTF8.self), error)
        }
        switch found {
        case .notFound: return .route(nil)
        case .expired:
            if let call = try expireCall(raw) { return .expire(call) }
            throw .expired(String(decoding: raw, as: UTF8.self))
        case .valid(_, let home): return .route(home.map { Route(kind: .engine, home: $0) })
        }
    }

    /// Where the session id goes in `body`.
    func inject(_ body: RequestBody) throws(SessionError) -> JSONSplice.Point {
        do {
            return try JSONSplice.point(at: injectSplice, in: body)
        } catch {
            throw SessionManager.refusal(error, injecting: injectPath)
        }
    }

    /// Apart, so that an injection that succeeds does not copy the path.
    @inline(never)
    static func refusal(_ error: JSONSplice.Failure, injecting path: JSONPath?) -> SessionError {
        let path = path?.description ?? ""
        switch error {
        case .notAnObject: return .notAnObject(path: path)
        case .tooDeep: return .tooDeep(path: path)
        case .blocked(let prefix): return .cannotInject(path: path, blockedAt: JSONPath(segments: prefix).description)
        }
    }

    /// The close defaults with the client's session id written at the
    /// handler's path (after the defaults, so the id wins).
    func closeBody(_ handler: CloseHandler, _ sessionID: UnsafeRawBufferPointer?) throws(SessionError) -> JSON {
        guard let raw = sessionID, !raw.isEmpty else { throw .missingSessionID }
        let id = try text(raw)
        guard let body = handler.defaults.body(), let value = JSON.string(id) else { throw .outOfMemory }
        do {
            try handler.requestPath.set(value, in: body)
        } catch {
            switch error {
            case .notAnObject(let prefix):
                throw .cannotInject(path: "body." + handler.requestPath.description, blockedAt: "body." + prefix)
            case .outOfMemory: throw .outOfMemory
            }
        }
        return body
    }

    /// Session ids the engine sees must be text.
    func text(_ raw: UnsafeRawBufferPointer) throws(SessionError) -> String {
        guard let id = String(validating: raw, as: UTF8.self) else { throw .invalidSessionID }
        return id
    }

    /// The answer to the client once the engine has answered a session
    /// subrequest. `home`: the replica that answered a create, where the
    /// upstream has session affinity.
    public func answer(_ call: EngineCall, sessionID: [UInt8]?, response: EngineResponse, home: Home? = nil,
                       now: Double = WallClock.now()) -> Decision {
        if call == .expire { return .answer(expired(sessionID, response: response)) }
        guard response.complete else { return .answer(SessionError.engineUnreadable.answer) }
        guard response.status == 200 else { return .relay }
        switch call {
        case .create:
            guard let handler = createHandler, let id = response.sessionID(at: handler.responsePath) else {
                return .answer(SessionError.engineSessionIDMissing.answer)
            }
            guard HeaderValue.isSafe(id) else { return .answer(SessionError.engineSessionIDUnsafe(id).answer) }
            if let home, let store, store.affinity {
                return .answer(recorded(id, home: home, in: store, now: now))
            }
            return .answer(engineCreated(id, header: id, log: (.info, "engine created session \(id)")))
        case .expire:
            return .answer(expired(sessionID, response: response))
        case .close:
            let id = String(decoding: sessionID ?? [], as: UTF8.self)
            if store?.affinity ?? false {
                (sessionID ?? []).withUnsafeBytes { store?.forget(engineSession: $0) }
            }
            return .answer(Answer(status: 200, contentType: Answer.text,
                                  header: (Answer.closedSessionIDHeader, id),
                                  body: "Successfully closed session: \(id)",
                                  log: (.info, "engine closed session \(id)"), outcome: .closedEngine))
        }
    }
}

extension SessionManager {
    /// An engine's new session kept with its home and this store's lifetime,
    /// announced with `Expires=` as a built-in one is. The engine has the
    /// session whatever happens here: one that cannot be kept is still
    /// given to the client, and is balanced as an unknown session.
    func recorded(_ id: String, home: Home, in store: SessionStore, now: Double) -> Answer {
        let homeName = home.text
        var failure: SystemError?
        let created = Array(id.utf8).withUnsafeBytes { bytes -> SessionStore.Created? in
            do throws(SystemError) {
                return try store.record(engineSession: bytes, home: home, now: now)
            } catch {
                failure = error
                return nil
            }
        }
        guard let created else {
            let why = failure.map { "cannot be kept: \($0)" } ?? "is not a name the module can keep"
            return engineCreated(id, header: id, log: (failure == nil ? .warn : .error,
                "engine created session \(id) on \(homeName); the id \(why), so its requests are not sent to its home"))
        }
        let expires = UTCTimestamp.format(unixSeconds: created.expiresAt)
        return engineCreated(id, header: Text.concat(id, "; Expires=", expires),
                             log: (.info, Text.concat("engine created session ", id, " on ", homeName, ", expires ", expires)))
    }

    /// The client's answer to a session the engine created.
    func engineCreated(_ id: String, header: String, log: (Answer.LogLevel, String)) -> Answer {
        Answer(status: 200, contentType: Answer.text, header: (Answer.newSessionIDHeader, header),
               body: "Successfully created session: \(id)", log: log, outcome: .createdEngine)
    }
}
