// Fuzz target: the JSON path language: parsing, printing, get and set.
//
// Input: the first line is a path (as a directive gives it); the rest is a
// JSON document to get from and set into. Without a newline, all of it is
// the path.

import CJansson

/// The value at `segments`, walked with jansson's own calls (the reference).
func reference(_ root: UnsafeMutablePointer<json_t>, _ segments: [String]) -> UnsafeMutablePointer<json_t>? {
    var current = root
    for s in segments {
        guard current.pointee.type == JSON_OBJECT else { return nil }
        guard let next = s.withCString({ json_object_getn(current, $0, s.utf8.count) }) else { return nil }
        current = next
    }
    return current
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    let (line, rest) = firstLine(input) ?? (input, UnsafeRawBufferPointer(start: nil, count: 0))
    let source = text(line)

    // Any list of segments prints as a path that reads back the same; one
    // holding NUL is refused (jansson cannot write such a key).
    let pieces = source.split(separator: "\t", omittingEmptySubsequences: true).map(String.init)
    if !pieces.isEmpty, !pieces.contains(where: { $0.utf8.contains(0) }) {
        let printed = JSONPath(segments: pieces).description
        let reread = try? JSONPath(parsing: printed)
        require(reread?.utf8 == pieces.map { Array($0.utf8) }, "\(pieces) prints as \(printed), which reads as \(String(describing: reread?.segments))")
    }

    let path: JSONPath
    do {
        path = try JSONPath(parsing: source)
    } catch {
        require(!"\(error)".isEmpty, "no reason")
        return 0
    }
    require(!path.segments.isEmpty && !path.segments.contains(where: \.isEmpty), "bad segments \(path.segments)")
    require(path.utf8 == path.segments.map { Array($0.utf8) }, "utf8 out of step")
    let again = try? JSONPath(parsing: path.description)
    require(again == path, "\(path.segments) prints as \(path.description), which reads as \(String(describing: again?.segments))")
    let isResponse = HandlerPath.responseRoots.contains(path.segments[0])
    require(((try? HandlerPath.response(source)) != nil) == isResponse, "response path \(path.segments)")
    let request = try? HandlerPath.request(source)
    require((request != nil) == (path.segments.count > 1 && path.segments[0] == "body"), "request path \(path.segments)")
    if let request { require(request.utf8 == Array(path.utf8.dropFirst()), "request path \(request.segments)") }

    guard let (doc, _) = Optional(janssonParse(rest)), let doc else { return 0 }

    // get
    let got = path.value(in: doc)
    let expected = reference(doc.raw, path.segments)
    require(got?.raw == expected, "get \(path.segments) found the wrong value")
    let insensitive = path.value(in: doc) { _, key, segment in key.lowercased() == segment.lowercased() }
    if got != nil { require(insensitive != nil, "a case-insensitive get misses an exact match") }

    // set
    guard let copy = doc.deepCopy(), let value = JSON.string("fuzz-\(size)") else { return 0 }
    do {
        try path.set(value, in: copy)
        require(reference(copy.raw, path.segments) == value.raw, "set \(path.segments) did not write the value")
        for k in 1..<path.segments.count {
            let holder = reference(doc.raw, Array(path.segments[..<k]))
            require(holder == nil || holder!.pointee.type == JSON_OBJECT, "set overwrote a non-object")
        }
        require(copy.dumped() != nil, "set made a document that does not print")
    } catch {
        switch error {
        case .outOfMemory:
            require(false, "out of memory")
        case .notAnObject(let prefix):
            if prefix.isEmpty {
                require(!doc.isObject, "set refused an object root")
            } else {
                let segments = (try? JSONPath(parsing: prefix))?.segments ?? []
                require(segments.count < path.segments.count && Array(path.segments.prefix(segments.count)) == segments,
                        "blocked at \(prefix), not a prefix of \(path.segments)")
                let blocker = reference(doc.raw, segments)
                require(blocker != nil && blocker!.pointee.type != JSON_OBJECT, "blocked at \(prefix) by an object")
            }
        }
    }
    return 0
}
