// Fuzz target: parsing SAGEMAKER_TRANSFORMS_*_SESSION_DEFAULTS (or the
// directives), and the close handler's body built from them.
//
// Input: the whole of it is the defaults text.

import CJansson

/// What the defaults must turn into, built with jansson's own calls: nil
/// when they must be refused.
func expectedBody(_ text: String) -> UnsafeMutablePointer<json_t>? {
    var text = text
    let parsed: UnsafeMutablePointer<json_t>? = text.withUTF8 { buf in
        guard let base = buf.baseAddress, buf.count > 0, !buf.contains(0) else { return nil }
        var error = json_error_t()
        return base.withMemoryRebound(to: CChar.self, capacity: buf.count) {
            json_loadb($0, buf.count, Int(JSON_DECODE_ANY), &error)
        }
    }
    guard let parsed else { return nil }
    defer { json_decref(parsed) }
    guard parsed.pointee.type == JSON_OBJECT, let body = json_object() else { return nil }
    var iter = json_object_iter(parsed)
    while let it = iter {
        defer { iter = json_object_iter_next(parsed, it) }
        let key = String(decoding: UnsafeRawBufferPointer(start: json_object_iter_key(it), count: json_object_iter_key_len(it)),
                         as: UTF8.self)
        guard let path = try? JSONPath(parsing: key), path.segments.count > 1, path.segments[0] == "body" else {
            json_decref(body)
            return nil
        }
        var holder = body
        for segment in path.segments.dropFirst().dropLast() {
            if let next = segment.withCString({ json_object_getn(holder, $0, segment.utf8.count) }) {
                guard next.pointee.type == JSON_OBJECT else { json_decref(body); return nil }
                holder = next
            } else {
                let created = json_object()!
                _ = segment.withCString { json_object_setn_new(holder, $0, segment.utf8.count, created) }
                holder = created
            }
        }
        let last = path.segments.last!
        _ = last.withCString { json_object_setn(holder, $0, last.utf8.count, json_object_iter_value(it)) }
    }
    return body
}

let closePaths = [JSONPath(segments: ["session_id"]), JSONPath(segments: ["session", "id"])]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    let source = text(input)
    let expected = expectedBody(source)
    defer { if let expected { json_decref(expected) } }

    let defaults: SessionDefaults
    do {
        defaults = try SessionDefaults(parsing: source)
    } catch {
        require(expected == nil, "refused \(source.debugDescription): \(error)")
        require(!error.description.isEmpty, "no reason")
        return 0
    }
    guard let expected else {
        require(false, "accepted \(source.debugDescription) as \(defaults.template.dumped() ?? "?")")
        return 0
    }
    require(json_equal(defaults.template.raw, expected) != 0,
            "\(source.debugDescription) became \(defaults.template.dumped() ?? "?")")

    // Each request gets its own copy.
    guard let a = defaults.body(), let b = defaults.body() else { require(false, "no body"); return 0 }
    require(a.raw != b.raw && json_equal(a.raw, b.raw) != 0, "copies differ")
    if let v = JSON.string("x") { a.set("\u{1}fuzz", v) }
    require(json_equal(defaults.template.raw, expected) != 0, "a request's body changed the template")
    require(defaults.template.dumped() != nil, "the body does not print")

    // A close handler writes the session id after the defaults (at one of
    // two paths, chosen by the input's length).
    do {
        let path = closePaths[size & 1]
        let manager = SessionManager(store: nil, injectPath: nil, closeHandler: CloseHandler(requestPath: path, defaults: defaults))
        let decision = manager.decide(sessionID: Array("sid-\(size)".utf8), body: RequestBody(closeRequest), now: 1e9)
        switch decision {
        case .callEngine(.close, let body, _):
            require(sameBytes(lookup(body, path.segments)?.stringValue, "sid-\(size)"), "close body \(body.dumped() ?? "?")")
        case .answer(let answer):
            let blocker = lookup(defaults.template, Array(path.segments.prefix(1)))
            require(answer.status == 400 && blocker != nil && !blocker!.isObject, "close answered \(answer.status) \(answer.body)")
        default:
            require(false, "close decided \(decision)")
        }
    }
    return 0
}

let closeRequest: UnsafeRawBufferPointer = {
    let text = #"{"requestType": "CLOSE"}"#
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: text.utf8.count, alignment: 1)
    buffer.copyBytes(from: text.utf8)
    return UnsafeRawBufferPointer(buffer)
}()
