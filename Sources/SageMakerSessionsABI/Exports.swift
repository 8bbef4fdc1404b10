import CSageMakerSessions
import Glibc
import SageMakerSessions

// The C ABI of the module: thin conversions between the shim's structs and
// the Swift core. No decision is made here.

// MARK: - configuration

@_cdecl("sms_main_conf_resolve")
public func sms_main_conf_resolve(_ input: UnsafePointer<sms_main_directives_t>?,
                                  _ output: UnsafeMutablePointer<sms_main_resolved_t>?) -> Int32 {
    guard let input, let output else { return -1 }
    let d = input.pointee
    let directives = Configuration.Directives(
        enabled: d.enabled < 0 ? nil : d.enabled != 0,
        path: d.path.data == nil ? nil : string(d.path),
        expiration: d.expiration < 0 ? nil : d.expiration,
        maxSessions: d.max < 0 ? nil : d.max)
    output.pointee.enabled = 0
    output.pointee.store = nil
    copy("", to: &output.pointee.path)
    copy("", to: &output.pointee.warning)
    copy("", to: &output.pointee.error)
    do {
        let config = try Configuration.resolve(directives)
        output.pointee.enabled = config.enabled ? 1 : 0
        output.pointee.expiration = config.expiration
        output.pointee.max = config.maxSessions
        copy(config.path, to: &output.pointee.path)
        guard config.enabled else { return 0 }
        let (path, warning) = try config.prepareDirectory()
        copy(path, to: &output.pointee.path)
        if let warning { copy(warning, to: &output.pointee.warning) }
        output.pointee.store = retain(SessionStore(root: path, expiration: config.expiration,
                                                   maxSessions: config.maxSessions))
        return 0
    } catch {
        copy(error.description, to: &output.pointee.error)
        return -1
    }
}

@_cdecl("sms_store_grant")
public func sms_store_grant(_ store: UnsafeMutableRawPointer?, _ uid: UInt32, _ gid: UInt32,
                           _ err: UnsafeMutablePointer<CChar>?, _ errlen: Int) -> Int32 {
    guard let store = object(store, as: SessionStore.self) else { return 0 }
    do {
        try store.grant(uid: uid, gid: gid)
        return 0
    } catch {
        copy(error.description, to: err, errlen)
        return -1
    }
}

/// Configuration values are boxed so that C can hold them.
final class Box<Value> {
    let value: Value
    init(_ value: Value) { self.value = value }
}

@_cdecl("sms_path_compile")
public func sms_path_compile(_ data: UnsafePointer<UInt8>?, _ len: Int, _ kind: Int32,
                             _ err: UnsafeMutablePointer<CChar>?, _ errlen: Int) -> UnsafeMutableRawPointer? {
    let text = string(sms_str_t(data: data, len: len))
    do {
        let path: JSONPath
        switch kind {
        case SMS_PATH_RESPONSE: path = try HandlerPath.response(text)
        case SMS_PATH_REQUEST: path = try HandlerPath.request(text)
        default: path = try JSONPath(parsing: text)
        }
        return retain(Box(path))
    } catch {
        copy("\(error)", to: err, errlen)
        return nil
    }
}

@_cdecl("sms_defaults_compile")
public func sms_defaults_compile(_ data: UnsafePointer<UInt8>?, _ len: Int,
                                 _ err: UnsafeMutablePointer<CChar>?, _ errlen: Int) -> UnsafeMutableRawPointer? {
    do {
        return retain(Box(try SessionDefaults(parsing: string(sms_str_t(data: data, len: len)))))
    } catch {
        copy(error.description, to: err, errlen)
        return nil
    }
}

@_cdecl("sms_defaults_from_env")
public func sms_defaults_from_env(_ variable: UnsafePointer<CChar>?,
                                  _ err: UnsafeMutablePointer<CChar>?, _ errlen: Int) -> UnsafeMutableRawPointer? {
    copy("", to: err, errlen)
    guard let variable, let value = getenv(variable) else { return nil }
    let name = String(cString: variable)
    do {
        return retain(Box(try SessionDefaults(parsing: String(cString: value))))
    } catch {
        copy("\(name): \(error.description)", to: err, errlen)
        return nil
    }
}

@_cdecl("sms_location_create")
public func sms_location_create(_ injectPath: UnsafeMutableRawPointer?,
                                _ createPath: UnsafeMutableRawPointer?, _ createDefaults: UnsafeMutableRawPointer?,
                                _ closePath: UnsafeMutableRawPointer?, _ closeDefaults: UnsafeMutableRawPointer?)
    -> UnsafeMutableRawPointer? {
    guard let none = SessionDefaults.empty else { return nil }
    let path = { (p: UnsafeMutableRawPointer?) in object(p, as: Box<JSONPath>.self)?.value }
    let defaults = { (p: UnsafeMutableRawPointer?) in object(p, as: Box<SessionDefaults>.self)?.value ?? none }
    let manager = SessionManager(
        store: nil,
        injectPath: path(injectPath),
        createHandler: path(createPath).map { CreateHandler(responsePath: $0, defaults: defaults(createDefaults)) },
        closeHandler: path(closePath).map { CloseHandler(requestPath: $0, defaults: defaults(closeDefaults)) })
    return retain(Location(manager))
}

/// A location's manager, joined on first use to the store of its cycle (a
/// location belongs to one configuration, hence to one store), so that a
/// request does not put a manager together again.
final class Location {
    let configured: SessionManager
    /// Held retained, and reached without a retain and a release on every
    /// request.
    private var bound: Unmanaged<Bound>?

    /// Held in a class, so that a request borrows the manager instead of
    /// copying it (a retain and a release for each of its references).
    final class Bound {
        let store: UnsafeMutableRawPointer?
        let manager: SessionManager

        init(_ store: UnsafeMutableRawPointer?, _ manager: SessionManager) {
            self.store = store
            self.manager = manager
        }

        func decide(_ header: UnsafeRawBufferPointer?, _ body: RequestBody, repeatedHeader: Bool,
                    verdict: VerdictRoom) -> Decision {
            manager.decide(header: header, body: body, repeatedHeader: repeatedHeader, verdict: verdict)
        }
    }

    /// Whether an invocation with a session header is passed on unchecked
    /// (its outcome `passed`, not `valid`).
    let engineOwnsSessions: Bool
    /// Where an injection writes the session id (the manager's).
    let injectSplice: JSONSplice.Path

    init(_ configured: SessionManager) {
        self.configured = configured
        self.engineOwnsSessions = configured.engineOwnsSessions
        injectSplice = configured.injectSplice
    }

    deinit { bound?.release() }

    func decide(_ store: UnsafeMutableRawPointer?, _ header: UnsafeRawBufferPointer?, _ body: RequestBody,
                repeatedHeader: Bool, verdict: VerdictRoom) -> Decision {
        joined(store)._withUnsafeGuaranteedRef {
            $0.decide(header, body, repeatedHeader: repeatedHeader, verdict: verdict)
        }
    }

    /// The manager joined to this cycle's store, which the engine's answer
    /// to a create may record a session in.
    func answer(_ store: UnsafeMutableRawPointer?, _ call: EngineCall, sessionID: [UInt8]?, response: EngineResponse,
                home: UnsafePointer<sms_str_t>?) -> Decision {
        joined(store)._withUnsafeGuaranteedRef { bound in
            let replica = home.flatMap { $0.pointee.data == nil ? nil : bound.manager.store?.homes.intern(bytes($0.pointee)) }
            return bound.manager.answer(call, sessionID: sessionID, response: response, home: replica)
        }
    }

    private func joined(_ store: UnsafeMutableRawPointer?) -> Unmanaged<Bound> {
        if let bound, bound._withUnsafeGuaranteedRef({ $0.store == store }) { return bound }
        bound?.release()
        let joined = Unmanaged.passRetained(Bound(store, SessionManager(store: object(store, as: SessionStore.self),
                                                                        injectPath: configured.injectPath,
                                                                        createHandler: configured.createHandler,
                                                                        closeHandler: configured.closeHandler)))
        bound = joined
        return joined
    }
}

@_cdecl("sms_release")
public func sms_release(_ handle: UnsafeMutableRawPointer?) {
    guard let handle else { return }
    Unmanaged<AnyObject>.fromOpaque(handle).release()
}

// MARK: - requests

/// What the location's manager decides with this cycle's store.
func decide(_ store: UnsafeMutableRawPointer?, _ location: UnsafeMutableRawPointer?, _ header: UnsafeRawBufferPointer?,
            _ body: RequestBody, repeatedHeader: Bool, verdict: VerdictRoom) -> Decision {
    borrow(location, as: Location.self) { $0.decide(store, header, body, repeatedHeader: repeatedHeader, verdict: verdict) }
        ?? SessionManager(store: object(store, as: SessionStore.self), injectPath: nil)
            .decide(header: header, body: body, repeatedHeader: repeatedHeader, verdict: verdict)
}

/// The request's verdict where the shim keeps it (its context); none when
/// the shim gave no room, or too little (checked when compiled).
@inline(__always)
func verdict(_ room: UnsafeMutablePointer<sms_verdict_t>?) -> VerdictRoom {
    guard MemoryLayout<sms_verdict_t>.size >= VerdictRoom.size else { return .none }
    return VerdictRoom(UnsafeMutableRawPointer(room))
}

/// The session header's value where nginx holds it; nil when absent.
func header(_ request: sms_request_t) -> UnsafeRawBufferPointer? {
    request.session_id.data == nil ? nil : bytes(request.session_id)
}

func bytes(_ s: sms_str_t) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: s.data, count: s.data == nil ? 0 : s.len)
}

@_cdecl("sms_decide")
public func sms_decide(_ store: UnsafeMutableRawPointer?, _ location: UnsafeMutableRawPointer?,
                       _ request: UnsafePointer<sms_request_t>?, _ alloc: sms_alloc_pt?,
                       _ pool: UnsafeMutableRawPointer?,
                       _ output: UnsafeMutablePointer<sms_decision_t>?) -> Int32 {
    guard let request, let alloc, let output else { return -1 }
    let r = request.pointee
    let body = RequestBody(count: r.body == nil ? 0 : r.nbody) { bytes(r.body[$0]) }
    let decision = decide(store, location, header(r), body, repeatedHeader: r.session_ids > 1,
                          verdict: verdict(r.verdict))
    // told before the decision is written, which then consumes it
    let outcome = SessionOutcome.of(decision, header: header(r),
                                    engineOwnsSessions: borrow(location, as: Location.self) { $0.engineOwnsSessions } ?? false)
    let written = write(decision, to: output, body: body, header: header(r), location: location) { alloc(pool, $0) }
    record(outcome, request: r, to: output)
    return written
}

/// A request's framing and method, screened before anything else: one
/// answer on every nginx, whatever its core lets through.
@_cdecl("sms_screen")
public func sms_screen(_ request: UnsafePointer<sms_screen_t>?, _ alloc: sms_alloc_pt?,
                       _ pool: UnsafeMutableRawPointer?, _ output: UnsafeMutablePointer<sms_decision_t>?) -> Int32 {
    guard let request, let alloc, let output else { return -1 }
    let r = request.pointee
    guard let refusal = RequestScreen.check(method: bytes(r.method), contentLength: r.content_length != 0,
                                            transferEncoding: r.transfer_encoding != 0) else {
        output.pointee.action = SMS_PASS
        return 0
    }
    return write(refusal.answer, to: output) { alloc(pool, $0) }
}

@_cdecl("sms_engine_answer")
public func sms_engine_answer(_ store: UnsafeMutableRawPointer?, _ location: UnsafeMutableRawPointer?, _ call: Int32,
                              _ request: UnsafePointer<sms_request_t>?,
                              _ response: UnsafePointer<sms_engine_response_t>?,
                              _ home: UnsafePointer<sms_str_t>?,
                              _ alloc: sms_alloc_pt?, _ pool: UnsafeMutableRawPointer?,
                              _ output: UnsafeMutablePointer<sms_decision_t>?) -> Int32 {
    guard let request, let response, let alloc, let output else { return -1 }
    let e = response.pointee
    var headers: [(name: String, value: String)] = []
    if let list = e.headers {
        for i in 0..<e.nheaders { headers.append((string(list[i].name), string(list[i].value))) }
    }
    let captured = EngineResponse(complete: e.complete != 0, status: Int(e.status), headers: headers, body: bytes(e.body))
    let engineCall: EngineCall = call == SMS_CALL_CLOSE ? .close : call == SMS_CALL_EXPIRE ? .expire : .create
    let sessionID = header(request.pointee).map { Array($0) }
    let decision = borrow(location, as: Location.self) {
        $0.answer(store, engineCall, sessionID: sessionID, response: captured, home: home)
    } ?? SessionManager(store: nil, injectPath: nil).answer(engineCall, sessionID: sessionID, response: captured)
    let written = write(decision, to: output, body: RequestBody(UnsafeRawBufferPointer(start: nil, count: 0)),
                        header: header(request.pointee), location: location) { alloc(pool, $0) }
    Metrics.engineCall(engineCall, status: Int(e.status), micros: e.duration_us)
    var outcome = SessionOutcome.of(decision, header: nil, engineOwnsSessions: true)
    if outcome == .none { outcome = .engineError }
    record(outcome, request: request.pointee, to: output, newSession: call == SMS_CALL_CREATE)
    return written
}

/// 1 with `warning` written when the worker runs without its cache.
@_cdecl("sms_store_worker_init")
public func sms_store_worker_init(_ store: UnsafeMutableRawPointer?, _ warning: UnsafeMutablePointer<CChar>?,
                                  _ len: Int) -> Int32 {
    guard let why = object(store, as: SessionStore.self)?.startWorker(perTurn: true) else { return 0 }
    copy(why, to: warning, len)
    return 1
}

@_cdecl("sms_store_worker_exit")
public func sms_store_worker_exit(_ store: UnsafeMutableRawPointer?) {
    object(store, as: SessionStore.self)?.stopWorker()
}

@_cdecl("sms_store_end_turn")
public func sms_store_end_turn(_ store: UnsafeMutableRawPointer?) {
    borrow(store, as: SessionStore.self) { $0.endTurn() }
}

/// 1 with `warning` written when the worker has something new to warn of
/// (the cache's limits, the closes owed to engines).
@_cdecl("sms_store_warning")
public func sms_store_warning(_ store: UnsafeMutableRawPointer?, _ warning: UnsafeMutablePointer<CChar>?,
                              _ len: Int) -> Int32 {
    guard let why = object(store, as: SessionStore.self)?.takeWarning() else { return 0 }
    copy(why, to: warning, len)
    return 1
}

@_cdecl("sms_sweep_step")
public func sms_sweep_step(_ store: UnsafeMutableRawPointer?) -> UInt64 {
    object(store, as: SessionStore.self)?.sweepStep() ?? 60_000
}

@_cdecl("sms_sweep_use_graveyard")
public func sms_sweep_use_graveyard(_ store: UnsafeMutableRawPointer?) {
    object(store, as: SessionStore.self)?.graveyard = true
}

@_cdecl("sms_sweep_take_buried")
public func sms_sweep_take_buried(_ store: UnsafeMutableRawPointer?) -> Int64 {
    Int64(object(store, as: SessionStore.self)?.takeBuried() ?? 0)
}

/// 1 while a pass is under way: the graveyard's part stays until it is over.
@_cdecl("sms_sweep_in_pass")
public func sms_sweep_in_pass(_ store: UnsafeMutableRawPointer?) -> Int32 {
    (object(store, as: SessionStore.self)?.sweepInPass ?? false) ? 1 : 0
}

/// This worker sweeps the entries whose name hashes to `worker` of `workers`.
@_cdecl("sms_sweep_share")
public func sms_sweep_share(_ store: UnsafeMutableRawPointer?, _ worker: Int64, _ workers: Int64) {
    object(store, as: SessionStore.self)?.sweepShare = SweepShare(worker: Int(worker), workers: Int(workers))
}

// MARK: - conversions

/// `output` arrives zeroed (the shim clears it), so only what the action
/// uses is written: passing a request on writes one field.
@inline(__always)
func write(_ decision: Decision, to output: UnsafeMutablePointer<sms_decision_t>,
           body: RequestBody, header: UnsafeRawBufferPointer?, location: UnsafeMutableRawPointer?,
           _ allocate: (Int) -> UnsafeMutableRawPointer?) -> Int32 {
    switch decision {
    case .pass:
        output.pointee.action = SMS_PASS
    case .relay:
        output.pointee.action = SMS_RELAY
    case .passWithBody(let point):
        return write(point, body, header, location, to: output, allocate)
    case .callEngine(let call, let document, let route):
        guard let bytes = document.dump(into: allocate) else { return -1 }
        output.pointee.body = sms_str_t(data: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), len: bytes.count)
        switch call {
        case .create: output.pointee.action = SMS_CALL_CREATE
        case .close: output.pointee.action = SMS_CALL_CLOSE
        case .expire: output.pointee.action = SMS_CALL_EXPIRE
        }
        if let route { write(route, to: output) }
    case .passSession(let route, let point):
        write(route, to: output)
        guard let point else {
            output.pointee.action = SMS_PASS
            return 0
        }
        return write(point, body, header, location, to: output, allocate)
    case .answer(let answer):
        return write(answer, to: output, allocate)
    }
    return 0
}

/// A body to pass on: the client's long runs where they lie, the new bytes
/// (with the short runs around them copied in, `Splice.write`) written
/// straight after the list of pieces, in the same allocation.
/// Apart, so that the decisions passed on as they are do not carry its frame.
@inline(never)
func write(_ point: JSONSplice.Point, _ body: RequestBody, _ header: UnsafeRawBufferPointer?,
           _ location: UnsafeMutableRawPointer?, to output: UnsafeMutablePointer<sms_decision_t>,
           _ allocate: (Int) -> UnsafeMutableRawPointer?) -> Int32 {
    guard let header else { return -1 }
    return borrow(location, as: Location.self) { place in
        place.injectSplice.count > 0
            ? write(JSONSplice.Splice(point, body: body, value: header, path: place.injectSplice), to: output, allocate)
            : -1
    } ?? -1
}

/// The splice written out: the list of pieces, then the new bytes.
@inline(__always)
func write(_ splice: JSONSplice.Splice, to output: UnsafeMutablePointer<sms_decision_t>,
           _ allocate: (Int) -> UnsafeMutableRawPointer?) -> Int32 {
    let most = splice.maxPieces, stride = MemoryLayout<sms_str_t>.stride
    guard let room = allocate(most * stride + splice.writtenCount) else { return -1 }
    let list = room.bindMemory(to: sms_str_t.self, capacity: most)
    var n = 0
    splice.write(at: room + most * stride) { bytes in
        list[n] = sms_str_t(data: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), len: bytes.count)
        n += 1
    }
    output.pointee.action = SMS_PASS_NEW_BODY
    output.pointee.pieces = UnsafePointer(list)
    output.pointee.npieces = n
    return 0
}

func write(_ route: Route, to output: UnsafeMutablePointer<sms_decision_t>) {
    output.pointee.route = route.kind == .engine ? SMS_ROUTE_ENGINE : SMS_ROUTE_BUILTIN
    if let home = route.home {
        output.pointee.home = sms_str_t(data: home.name.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                        len: home.name.count)
    }
}

// Apart, so that the decisions of nearly every request do not carry the
// frame an answer needs.
@inline(never)
func write(_ answer: Answer, to output: UnsafeMutablePointer<sms_decision_t>,
           _ allocate: (Int) -> UnsafeMutableRawPointer?) -> Int32 {
    guard let contentType = put(answer.contentType, allocate), let body = put(answer.body, allocate) else { return -1 }
    output.pointee.action = SMS_RESPOND
    output.pointee.status = Int32(answer.status)
    output.pointee.content_type = contentType
    output.pointee.body = body
    if let header = answer.header {
        guard let name = put(header.name, allocate), let value = put(header.value, allocate) else { return -1 }
        output.pointee.header_name = name
        output.pointee.header_value = value
    }
    if let log = answer.log {
        guard let message = put(log.message, allocate) else { return -1 }
        output.pointee.log_level = log.level.rawValue
        output.pointee.log_message = message
    }
    return 0
}

func retain(_ object: AnyObject) -> UnsafeMutableRawPointer {
    Unmanaged.passRetained(object).toOpaque()
}

func object<T: AnyObject>(_ handle: UnsafeMutableRawPointer?, as type: T.Type) -> T? {
    handle.map { Unmanaged<T>.fromOpaque($0).takeUnretainedValue() }
}

/// The object C holds, used without a retain and release around the use:
/// C keeps it alive throughout. nil when there is none.
@inline(__always)
func borrow<T: AnyObject, R>(_ handle: UnsafeMutableRawPointer?, as type: T.Type, _ use: (T) -> R) -> R? {
    guard let handle else { return nil }
    return Unmanaged<T>.fromOpaque(handle)._withUnsafeGuaranteedRef(use)
}

func string(_ s: sms_str_t) -> String {
    guard let data = s.data else { return "" }
    return String(decoding: UnsafeBufferPointer(start: data, count: s.len), as: UTF8.self)
}

/// Copies into memory from the caller's allocator (the request pool).
func put(_ text: String, _ allocate: (Int) -> UnsafeMutableRawPointer?) -> sms_str_t? {
    var text = text
    return text.withUTF8 { put(UnsafeRawBufferPointer($0), allocate) }
}

func put(_ bytes: [UInt8], _ allocate: (Int) -> UnsafeMutableRawPointer?) -> sms_str_t? {
    bytes.withUnsafeBytes { put($0, allocate) }
}

func put(_ buf: UnsafeRawBufferPointer, _ allocate: (Int) -> UnsafeMutableRawPointer?) -> sms_str_t? {
    if buf.isEmpty { return sms_str_t(data: nil, len: 0) }
    guard let dest = allocate(buf.count), let src = buf.baseAddress else { return nil }
    dest.copyMemory(from: src, byteCount: buf.count)
    return sms_str_t(data: dest.assumingMemoryBound(to: UInt8.self), len: buf.count)
}

/// NUL-terminated, truncated to fit.
func copy(_ text: String, to dest: UnsafeMutablePointer<CChar>?, _ capacity: Int) {
    guard let dest, capacity > 0 else { return }
    let bytes = Array(text.utf8.prefix(capacity - 1))
    for (i, b) in bytes.enumerated() { dest[i] = CChar(bitPattern: b) }
    dest[bytes.count] = 0
}

func copy<T>(_ text: String, to tuple: inout T) {
    withUnsafeMutableBytes(of: &tuple) { raw in
        copy(text, to: raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count)
    }
}

// MARK: - observability

/// A request's outcome: counted, and given to the shim for the variables
/// with the request's session id (the header's, or the new session's; none
/// for NEW_SESSION that made none).
@inline(__always)
func record(_ outcome: SessionOutcome, request: sms_request_t, to output: UnsafeMutablePointer<sms_decision_t>,
            newSession: Bool = false) {
    Metrics.count(outcome)
    output.pointee.outcome = outcome.rawValue
    switch outcome {
    case .none:
        return
    case .createdBuiltin:
        // the header's value is "<id>; Expires=..."
        let value = output.pointee.header_value
        output.pointee.session_id = sms_str_t(data: value.data, len: min(value.len, SessionID.length))
    case .createdEngine:
        // "<id>", or "<id>; Expires=..." for a session given a home
        let value = output.pointee.header_value
        var n = 0
        while n < value.len, let data = value.data, data[n] != UInt8(ascii: ";") { n += 1 }
        output.pointee.session_id = sms_str_t(data: value.data, len: n)
    default:
        if !newSession && !outcome.isNewSession { output.pointee.session_id = request.session_id }
    }
}

@_cdecl("sms_metrics_slots")
public func sms_metrics_slots() -> Int {
    Metrics.slots
}

@_cdecl("sms_metrics_attach")
public func sms_metrics_attach(_ counters: UnsafeMutablePointer<Int64>?) {
    Metrics.attach(counters)
}

@_cdecl("sms_status_text")
public func sms_status_text(_ store: UnsafeMutableRawPointer?, _ input: UnsafePointer<sms_status_t>?,
                            _ alloc: sms_alloc_pt?, _ pool: UnsafeMutableRawPointer?,
                            _ contentType: UnsafeMutablePointer<sms_str_t>?,
                            _ text: UnsafeMutablePointer<sms_str_t>?) -> Int32 {
    guard let input, let alloc, let contentType, let text else { return -1 }
    let s = input.pointee
    var replicas: [(upstream: String, replica: String, live: Int64)] = []
    if let list = s.replicas {
        for i in 0..<s.nreplicas { replicas.append((string(list[i].upstream), string(list[i].replica), list[i].live)) }
    }
    var upstreams: [(upstream: String, moved: Int64, unavailable: Int64)] = []
    if let list = s.upstreams {
        for i in 0..<s.nupstreams { upstreams.append((string(list[i].upstream), list[i].moved, list[i].unavailable)) }
    }
    let counters = s.counters.map { Metrics.snapshot($0, count: s.ncounters) } ?? []
    let snapshot = StatusSnapshot(counters: counters, live: object(store, as: SessionStore.self)?.liveSessions(),
                                  version: string(s.version), replicas: replicas, upstreams: upstreams)
    guard let type = put(PrometheusText.contentType, { alloc(pool, $0) }),
          let body = put(PrometheusText.write(snapshot), { alloc(pool, $0) }) else { return -1 }
    contentType.pointee = type
    text.pointee = body
    return 0
}

@_cdecl("sms_outcome_word")
public func sms_outcome_word(_ outcome: Int32) -> sms_str_t {
    guard let o = SessionOutcome(rawValue: outcome), o != .none else { return sms_str_t(data: nil, len: 0) }
    return sms_str_t(data: o.word.utf8Start, len: o.word.utf8CodeUnitCount)
}

@_cdecl("sms_session_key_check")
public func sms_session_key_check(_ key: UnsafePointer<UInt8>?, _ len: Int, _ name: UnsafeMutablePointer<UInt8>?,
                                  _ err: UnsafeMutablePointer<CChar>?, _ errlen: Int) -> Int32 {
    guard let name else { return -1 }
    do {
        let file = Array(try SessionValue.fileName(forKey: string(sms_str_t(data: key, len: len))).utf8)
        guard file.count <= len else { return -1 }
        for (i, b) in file.enumerated() { name[i] = b }
        return Int32(file.count)
    } catch {
        copy(error.description, to: err, errlen)
        return -1
    }
}

@_cdecl("sms_session_value")
public func sms_session_value(_ store: UnsafeMutableRawPointer?, _ sessionID: UnsafePointer<sms_str_t>?,
                              _ file: UnsafePointer<sms_str_t>?, _ room: UnsafeMutablePointer<sms_verdict_t>?,
                              _ alloc: sms_alloc_pt?, _ pool: UnsafeMutableRawPointer?,
                              _ output: UnsafeMutablePointer<sms_value_t>?) -> Int32 {
    guard let alloc, let output, let sessionID, let file else { return -1 }
    guard let store = object(store, as: SessionStore.self), sessionID.pointee.data != nil else { return 0 }
    let found = SessionValue.read(store: store, id: bytes(sessionID.pointee), file: string(file.pointee),
                                  verdict: verdict(room))
    if let text = found.text {
        guard let value = put(text, { alloc(pool, $0) }) else { return -1 }
        output.pointee.value = value
    }
    if let log = found.log {
        guard let message = put(log, { alloc(pool, $0) }) else { return -1 }
        output.pointee.log_level = Answer.LogLevel.warn.rawValue
        output.pointee.log_message = message
    }
    return 0
}

// MARK: - session affinity

@_cdecl("sms_store_affinity")
public func sms_store_affinity(_ store: UnsafeMutableRawPointer?) {
    object(store, as: SessionStore.self)?.affinity = true
}

@_cdecl("sms_store_count_homes")
public func sms_store_count_homes(_ store: UnsafeMutableRawPointer?, _ counter: sms_home_counter_pt?,
                                  _ data: UnsafeMutableRawPointer?) {
    guard let counter else { return }
    object(store, as: SessionStore.self)?.countHomes { home, n in
        counter(data, home.name.baseAddress?.assumingMemoryBound(to: UInt8.self), home.name.count, n)
    }
}

@_cdecl("sms_store_set_counter")
public func sms_store_set_counter(_ store: UnsafeMutableRawPointer?, _ counter: sms_home_counter_pt?,
                                  _ data: UnsafeMutableRawPointer?) {
    guard let counter else { return }
    object(store, as: SessionStore.self)?.homes.counter = { name, delta in
        counter(data, name.baseAddress?.assumingMemoryBound(to: UInt8.self), name.count, delta)
    }
}

@_cdecl("sms_affinity_pick")
public func sms_affinity_pick(_ replicas: UnsafePointer<sms_replica_t>?, _ n: Int, _ turn: UInt64) -> Int32 {
    guard let replicas else { return -1 }
    return AffinityChoice.pick(count: n, turn: turn, sessions: { replicas[$0].sessions },
                               weight: { replicas[$0].weight }, usable: { replicas[$0].usable != 0 })
        .map { Int32($0) } ?? -1
}

@_cdecl("sms_session_home")
public func sms_session_home(_ store: UnsafeMutableRawPointer?, _ id: UnsafePointer<sms_str_t>?,
                             _ home: UnsafePointer<sms_str_t>?, _ previous: UnsafePointer<sms_str_t>?,
                             _ output: UnsafeMutablePointer<sms_str_t>?) -> Int32 {
    guard let sessions = object(store, as: SessionStore.self), let id, let home, let output,
          let chosen = sessions.homes.intern(bytes(home.pointee)) else { return -1 }
    let replaced = previous.flatMap { sessions.homes.intern(bytes($0.pointee)) }
    guard let given = sessions.setHome(bytes(id.pointee), to: chosen, replacing: replaced) else { return -1 }
    output.pointee = sms_str_t(data: given.name.baseAddress?.assumingMemoryBound(to: UInt8.self), len: given.name.count)
    return 0
}

@_cdecl("sms_home_unavailable")
public func sms_home_unavailable(_ id: UnsafePointer<sms_str_t>?, _ home: UnsafePointer<sms_str_t>?,
                                 _ alloc: sms_alloc_pt?, _ pool: UnsafeMutableRawPointer?,
                                 _ output: UnsafeMutablePointer<sms_decision_t>?) -> Int32 {
    guard let id, let home, let alloc, let output else { return -1 }
    let answer = SessionError.homeUnavailable(id: string(id.pointee), home: string(home.pointee)).answer
    output.pointee.outcome = answer.outcome.rawValue
    return write(answer, to: output) { alloc(pool, $0) }
}
