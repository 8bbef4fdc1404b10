// Fuzz target: request classification, and what SessionManager decides from
// a session header and a body (without a store: nothing touches the disk).
//
// Input: when it holds a newline, the first line is the session header
// (`**` in front: the request carries the header twice) and the rest is the
// body; otherwise all of it is the body and there is no header.

import CJansson

let injectPath = JSONPath(segments: ["metadata", "session_id"])
let createDefaults = try! SessionDefaults(parsing: #"{"body.capacity": 1024}"#)
let closeDefaults = try! SessionDefaults(parsing: #"{"body.session_id": "default", "body.flush": true}"#)
/// Sessions disabled, built-in manager.
let disabled = SessionManager(store: nil, injectPath: injectPath)
/// Engine handlers for both request types: no store is consulted.
let engine = SessionManager(
    store: nil, injectPath: injectPath,
    createHandler: CreateHandler(responsePath: JSONPath(segments: ["body", "session_id"]), defaults: createDefaults),
    closeHandler: CloseHandler(requestPath: JSONPath(segments: ["session_id"]), defaults: closeDefaults))

enum Kind: Equatable {
    case newSession, close, malformed(String), invocation
}

func kind(_ r: SessionRequest) -> Kind {
    switch r {
    case .newSession: return .newSession
    case .close: return .close
    case .malformed(let m): return .malformed(m)
    case .invocation: return .invocation
    }
}

/// The request being decided, for `joined(_ point:)` (one input at a time).
var current: (body: UnsafeRawBufferPointer, header: [UInt8]) = (UnsafeRawBufferPointer(start: nil, count: 0), [])

/// The bytes of the body a decision passes on.
func joined(_ point: JSONSplice.Point) -> [UInt8] {
    current.header.withUnsafeBytes {
        joined(JSONSplice.Splice(point, body: RequestBody(current.body), value: $0, path: injectPath.splice).pieces)
    }
}

/// The decision as text, for a message.
func describe(_ d: Decision) -> String {
    switch d {
    case .pass: return "pass"
    case .relay: return "relay"
    case .passWithBody(let pieces): return "passWithBody \(show(joined(pieces)))"
    case .answer(let a): return "answer \(a.status) \(a.body) \(a.header.map { "\($0.name): \($0.value)" } ?? "")"
    case .callEngine(let call, let body, _): return "callEngine \(call) \(body.dumped() ?? "?")"
    case .passSession(_, let pieces): return "passSession \(pieces.map { show(joined($0)) } ?? "-")"
    }
}

func isPass(_ d: Decision) -> Bool {
    if case .pass = d { return true }
    return false
}

func status(_ d: Decision) -> Int? {
    if case .answer(let a) = d { return a.status }
    return nil
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    var header: [UInt8]? = nil
    var repeated = false
    var body = input
    if let (line, rest) = firstLine(input) {
        header = Array(line)
        if header!.starts(with: [0x2a, 0x2a]) { repeated = true; header!.removeFirst(2) }
        body = rest
    }

    // What the classification must be, from jansson's reading of the body.
    let kindOne = kind(SessionRequest.classify(RequestBody(body)))
    let kindSegmented = kind(SessionRequest.classify(segmented(body)))
    require(kindOne == kindSegmented, "classification depends on buffering: \(kindOne) vs \(kindSegmented)")
    let (parsed, _) = janssonParse(body)
    if let parsed, parsed.isObject, let type = parsed[SessionRequest.key] {
        if parsed.keys.count > 1 {
            require(kindOne != .invocation && kindOne != .newSession && kindOne != .close,
                    "a requestType object with other keys is \(kindOne)")
        } else {
            switch type.stringValue {
            case "NEW_SESSION": require(kindOne == .newSession, "NEW_SESSION classified \(kindOne)")
            case "CLOSE": require(kindOne == .close, "CLOSE classified \(kindOne)")
            default:
                if case .malformed = kindOne {} else { require(false, "bad requestType classified \(kindOne)") }
            }
        }
    } else {
        require(kindOne == .invocation, "no requestType object, classified \(kindOne)")
    }

    // The decisions of both managers. (How buffering affects an injection
    // is the splice target's concern; here only one buffering is decided.)
    current = (body, header ?? [])
    for manager in [disabled, engine] {
        let d = manager.decide(sessionID: header, body: RequestBody(body), repeatedHeader: repeated, now: 1e9)
        if case .malformed = kindOne { require(status(d) == 400, "malformed request: \(describe(d))") }
        if repeated, kindOne == .close || kindOne == .invocation {
            require(status(d) == 400, "repeated header not refused: \(describe(d))")
            continue
        }
        switch (manager.engineOwnsSessions, kindOne) {
        case (_, .malformed):
            break  // checked above
        case (false, .newSession), (false, .close):
            require(status(d) == 400, "disabled, session request: \(describe(d))")
        case (false, .invocation):
            require(header == nil ? isPass(d) : status(d) == 400, "disabled, invocation: \(describe(d))")
        case (true, .newSession):
            guard case .callEngine(.create, let b, _) = d else { require(false, "create: \(describe(d))"); break }
            require(equal(b, createDefaults.body()), "create body \(b.dumped() ?? "?")")
        case (true, .close):
            guard let h = header, !h.isEmpty, let id = String(validating: h, as: UTF8.self) else {
                require(status(d) == 400, "close without a usable header: \(describe(d))")
                break
            }
            guard case .callEngine(.close, let b, _) = d else { require(false, "close: \(describe(d))"); break }
            require(sameBytes(b["session_id"]?.stringValue, id) && b["flush"] != nil, "close body \(b.dumped() ?? "?")")
        case (true, .invocation):
            guard let h = header, !h.isEmpty else { require(isPass(d), "invocation: \(describe(d))"); break }
            guard let id = String(validating: h, as: UTF8.self) else {
                require(status(d) == 400, "invocation, header not UTF-8: \(describe(d))")
                break
            }
            switch d {
            case .passWithBody(let pieces):
                let (out, _) = janssonParse(joined(pieces))
                if parsed != nil {
                    require(sameBytes(out.flatMap { lookup($0, injectPath.segments) }?.stringValue, id),
                            "injected body lacks the id: \(describe(d))")
                }
            case .answer(let a):
                require(a.status == 400, "invocation: \(describe(d))")
                if let parsed, parsed.isObject, nestingDepth(body) < JSONSplice.maxDepth {
                    let blocker = lookup(parsed, ["metadata"])
                    require(blocker != nil && !blocker!.isObject, "a JSON object was refused: \(describe(d))")
                }
            default:
                require(false, "invocation: \(describe(d))")
            }
        }
    }
    return 0
}
