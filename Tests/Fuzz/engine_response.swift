// Fuzz target: reading the session id out of an engine's answer to a create
// subrequest (EngineResponse, RESPONSE_PATH), and the answer the client gets.
//
// Input: first line, the RESPONSE_PATH (`body.session_id` when it is not a
// valid one); second line, the status (200 when not a number); then
// `Name: value` header lines up to an empty line; the rest, the body.

import CJansson

func lowerASCII(_ bytes: some Sequence<UInt8>) -> [UInt8] {
    bytes.map { $0 >= 0x41 && $0 <= 0x5a ? $0 + 0x20 : $0 }
}

/// The id the contract says is there, found without EngineResponse.
func expectedID(_ path: [String], status: Int, headers: [(name: String, value: String)], body: UnsafeRawBufferPointer) -> String? {
    switch path[0] {
    case "status_code":
        return path.count == 1 ? String(status) : nil
    case "headers":
        guard path.count == 2 else { return nil }
        let wanted = lowerASCII(path[1].utf8)
        let value = headers.last { lowerASCII($0.name.utf8) == wanted }?.value
        return value?.isEmpty == false ? value : nil
    default:
        let (parsed, _) = janssonParse(body)
        guard let parsed else {
            let text = String(decoding: body, as: UTF8.self)
            return path.count == 1 && !text.isEmpty ? text : nil
        }
        var current = parsed.raw
        for s in path.dropFirst() {
            guard current.pointee.type == JSON_OBJECT,
                  let next = s.withCString({ json_object_getn(current, $0, s.utf8.count) }) else { return nil }
            current = next
        }
        let value = JSON(owning: json_incref(current))
        if let s = value.stringValue { return s.isEmpty ? nil : s }
        if let n = value.numberText {
            if current.pointee.type == JSON_INTEGER {
                require(n == String(json_integer_value(current)), "integer \(json_integer_value(current)) written \(n)")
            } else {
                require(Double(n) == json_real_value(current), "real \(json_real_value(current)) written \(n)")
            }
            return n
        }
        return nil
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    guard let (pathLine, afterPath) = firstLine(input), let (statusLine, afterStatus) = firstLine(afterPath) else { return 0 }
    let path = (try? HandlerPath.response(text(pathLine))) ?? JSONPath(segments: ["body", "session_id"])
    let status = Int(text(statusLine)).flatMap { (0...999).contains($0) ? $0 : nil } ?? 200
    var headers: [(name: String, value: String)] = []
    var rest = afterStatus
    while let (line, after) = firstLine(rest) {
        rest = after
        if line.isEmpty { break }
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.endIndex
        let value = line[colon...].dropFirst().drop { $0 == 0x20 }
        headers.append((text(UnsafeRawBufferPointer(rebasing: line[..<colon])), text(UnsafeRawBufferPointer(rebasing: value))))
    }
    let body = rest

    let response = EngineResponse(complete: true, status: status, headers: headers, body: body)
    let expected = status == 200 ? expectedID(path.segments, status: status, headers: headers, body: body) : nil

    // What the client is told (which reads the id with sessionID(at:)).
    let manager = SessionManager(store: nil, injectPath: nil,
                                 createHandler: CreateHandler(responsePath: path, defaults: SessionDefaults.empty!))
    switch manager.answer(.create, sessionID: nil, response: response) {
    case .relay:
        require(status != 200, "a 200 relayed")
    case .answer(let answer):
        require(status == 200, "status \(status) answered \(answer.status)")
        if let expected, HeaderValue.isSafe(expected) {
            require(answer.status == 200 && answer.header?.value.utf8.elementsEqual(expected.utf8) == true,
                    "expected \(expected.debugDescription), answered \(answer.status) \(answer.body) \(answer.header?.value.debugDescription ?? "")")
            require(!answer.header!.value.utf8.contains { $0 < 0x20 || $0 == 0x7f }, "unsafe header")
        } else {
            let wanted = expected == nil ? SessionError.engineSessionIDMissing : SessionError.engineSessionIDUnsafe(expected!)
            require(answer == wanted.answer, "expected \(expected?.debugDescription ?? "nil"), answered \(answer.status) \(answer.body)")
        }
    default:
        require(false, "unexpected decision")
    }
    var cut = response
    cut.complete = false
    if case .answer(let a) = manager.answer(.create, sessionID: nil, response: cut) {
        require(a.status == 502, "an incomplete answer gave \(a.status)")
    } else {
        require(false, "an incomplete answer was not refused")
    }
    return 0
}
