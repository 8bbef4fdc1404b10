import CSageMakerSessions
import SageMakerSessions

// The C ABI of the closes owed for expired engine sessions
// (ExpireQueue.swift), called by nginx/ngx_http_sagemaker_sessions_expire.c.

@_cdecl("sms_store_close_expired")
public func sms_store_close_expired(_ store: UnsafeMutableRawPointer?) {
    guard let sessions = object(store, as: SessionStore.self), sessions.expireQueue == nil else { return }
    sessions.expireQueue = ExpireQueue()
}

@_cdecl("sms_store_makes_sessions")
public func sms_store_makes_sessions(_ store: UnsafeMutableRawPointer?) {
    object(store, as: SessionStore.self)?.builtinSessions = true
}

@_cdecl("sms_expire_wait")
public func sms_expire_wait(_ store: UnsafeMutableRawPointer?) -> Int64 {
    object(store, as: SessionStore.self)?.expireWait() ?? -1
}

@_cdecl("sms_expire_take")
public func sms_expire_take(_ store: UnsafeMutableRawPointer?, _ location: UnsafeMutableRawPointer?,
                            _ alloc: sms_alloc_pt?, _ pool: UnsafeMutableRawPointer?,
                            _ output: UnsafeMutablePointer<sms_decision_t>?) -> Int32 {
    guard let alloc, let output, let sessions = object(store, as: SessionStore.self) else { return -1 }
    while let (id, home) = sessions.takeExpired() {
        var why = "no close handler"
        let made: Decision? = Array(id.utf8).withUnsafeBytes { raw in
            borrow(location, as: Location.self) { location -> Decision? in
                do throws(SessionError) {
                    return try location.configured.expireCall(raw, home: home)
                } catch {
                    why = error.answer.log?.message ?? error.answer.body
                    return nil
                }
            } ?? nil
        }
        guard let decision = made else {
            sessions.dropExpired(id, why: why)
            continue
        }
        guard write(decision, to: output, body: RequestBody(UnsafeRawBufferPointer(start: nil, count: 0)),
                    header: nil, location: location, { alloc(pool, $0) }) == 0,
              let sid = put(id, { alloc(pool, $0) }) else { return -1 }
        output.pointee.session_id = sid
        return 1
    }
    return 0
}

@_cdecl("sms_expire_answered")
public func sms_expire_answered(_ store: UnsafeMutableRawPointer?, _ id: UnsafePointer<sms_str_t>?,
                                _ response: UnsafePointer<sms_engine_response_t>?,
                                _ message: UnsafeMutablePointer<CChar>?, _ len: Int) -> Int32 {
    guard let id, let response, let sessions = object(store, as: SessionStore.self) else { return 0 }
    let e = response.pointee
    guard let outcome = sessions.expireAnswered(string(id.pointee), status: Int(e.status), complete: e.complete != 0,
                                                micros: e.duration_us) else { return 0 }
    copy(outcome.message, to: message, len)
    return outcome.level.rawValue
}
