import CSageMakerSessions
import Glibc
import SageMakerSessions

// The C ABI of the module: thin conversions between the shim's structs and
// the Swift core. No decision is made here.

@_cdecl("sms_main_conf_resolve")
public func sms_main_conf_resolve(_ input: UnsafePointer<sms_main_directives_t>?,
                                  _ output: UnsafeMutablePointer<sms_main_resolved_t>?) -> Int32 {
    guard let input, let output else { return -1 }
    let d = input.pointee
    let directives = Configuration.Directives(
        enabled: d.enabled < 0 ? nil : d.enabled != 0,
        path: d.path.data == nil ? nil : string(d.path),
        expiration: d.expiration < 0 ? nil : d.expiration)
    output.pointee.enabled = 0
    output.pointee.store = nil
    copy("", to: &output.pointee.path)
    copy("", to: &output.pointee.warning)
    copy("", to: &output.pointee.error)
    do {
        let config = try Configuration.resolve(directives)
        output.pointee.enabled = config.enabled ? 1 : 0
        output.pointee.expiration = config.expiration
        copy(config.path, to: &output.pointee.path)
        guard config.enabled else { return 0 }
        let (path, warning) = try config.prepareDirectory()
        copy(path, to: &output.pointee.path)
        if let warning { copy(warning, to: &output.pointee.warning) }
        let store = SessionStore(root: path, expiration: config.expiration)
        output.pointee.store = Unmanaged.passRetained(store).toOpaque()
        return 0
    } catch {
        copy(error.description, to: &output.pointee.error)
        return -1
    }
}

@_cdecl("sms_store_grant")
public func sms_store_grant(_ store: UnsafeMutableRawPointer?, _ uid: UInt32, _ gid: UInt32,
                            _ err: UnsafeMutablePointer<CChar>?, _ errlen: Int) -> Int32 {
    guard let store else { return 0 }
    do {
        try Unmanaged<SessionStore>.fromOpaque(store).takeUnretainedValue().grant(uid: uid, gid: gid)
        return 0
    } catch {
        copy(error.description, to: err, errlen)
        return -1
    }
}

@_cdecl("sms_store_release")
public func sms_store_release(_ store: UnsafeMutableRawPointer?) {
    guard let store else { return }
    Unmanaged<SessionStore>.fromOpaque(store).release()
}

/// Compiled paths are boxed so that C can hold them.
final class PathBox {
    let path: JSONPath
    init(_ path: JSONPath) { self.path = path }
}

@_cdecl("sms_path_compile")
public func sms_path_compile(_ data: UnsafePointer<UInt8>?, _ len: Int,
                             _ err: UnsafeMutablePointer<CChar>?, _ errlen: Int) -> UnsafeMutableRawPointer? {
    let text = string(sms_str_t(data: data, len: len))
    do {
        let path = try JSONPath(parsing: text)
        return Unmanaged.passRetained(PathBox(path)).toOpaque()
    } catch {
        copy("\(error)", to: err, errlen)
        return nil
    }
}

@_cdecl("sms_path_release")
public func sms_path_release(_ path: UnsafeMutableRawPointer?) {
    guard let path else { return }
    Unmanaged<PathBox>.fromOpaque(path).release()
}

@_cdecl("sms_decide")
public func sms_decide(_ store: UnsafeMutableRawPointer?, _ injectPath: UnsafeMutableRawPointer?,
                       _ request: UnsafePointer<sms_request_t>?, _ alloc: sms_alloc_pt?,
                       _ pool: UnsafeMutableRawPointer?,
                       _ output: UnsafeMutablePointer<sms_decision_t>?) -> Int32 {
    guard let request, let alloc, let output else { return -1 }
    let manager = SessionManager(
        store: store.map { Unmanaged<SessionStore>.fromOpaque($0).takeUnretainedValue() },
        injectPath: injectPath.map { Unmanaged<PathBox>.fromOpaque($0).takeUnretainedValue().path })
    let r = request.pointee
    let sessionID: [UInt8]? = r.session_id.data.map { Array(UnsafeBufferPointer(start: $0, count: r.session_id.len)) }
    let body = UnsafeRawBufferPointer(start: r.body.data, count: r.body.data == nil ? 0 : r.body.len)
    let allocate: (Int) -> UnsafeMutableRawPointer? = { alloc(pool, $0) }

    var out = sms_decision_t()
    switch manager.decide(sessionID: sessionID, body: body) {
    case .pass:
        out.action = SMS_PASS
    case .passWithBody(let document):
        guard let bytes = document.dump(into: allocate) else { return -1 }
        out.action = SMS_PASS_NEW_BODY
        out.body = sms_str_t(data: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), len: bytes.count)
    case .answer(let answer):
        out.action = SMS_RESPOND
        out.status = Int32(answer.status)
        guard let contentType = put(answer.contentType, allocate), let body = put(answer.body, allocate) else { return -1 }
        out.content_type = contentType
        out.body = body
        if let header = answer.header {
            guard let name = put(header.name, allocate), let value = put(header.value, allocate) else { return -1 }
            out.header_name = name
            out.header_value = value
        }
        if let log = answer.log {
            guard let message = put(log.message, allocate) else { return -1 }
            out.log_level = log.level.rawValue
            out.log_message = message
        }
    }
    output.pointee = out
    return 0
}

@_cdecl("sms_sweep_step")
public func sms_sweep_step(_ store: UnsafeMutableRawPointer?) -> UInt64 {
    guard let store else { return 60_000 }
    return Unmanaged<SessionStore>.fromOpaque(store).takeUnretainedValue().sweepStep()
}

// MARK: - conversions

func string(_ s: sms_str_t) -> String {
    guard let data = s.data else { return "" }
    return String(decoding: UnsafeBufferPointer(start: data, count: s.len), as: UTF8.self)
}

/// Copies into memory from the caller's allocator (the request pool).
func put(_ text: String, _ allocate: (Int) -> UnsafeMutableRawPointer?) -> sms_str_t? {
    var text = text
    return text.withUTF8 { buf -> sms_str_t? in
        if buf.isEmpty { return sms_str_t(data: nil, len: 0) }
        guard let dest = allocate(buf.count), let src = buf.baseAddress else { return nil }
        dest.copyMemory(from: src, byteCount: buf.count)
        return sms_str_t(data: dest.assumingMemoryBound(to: UInt8.self), len: buf.count)
    }
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
