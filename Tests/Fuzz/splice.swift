// Fuzz target: writing the session id into an invocation body
// (JSONSplice), checked against jansson's reading of the same body.
//
// Input: first line, the path (`session_id` when it is not a valid path);
// second line, the session id; the rest, the body.

import CJansson

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    guard let (pathLine, afterPath) = firstLine(input), let (idLine, body) = firstLine(afterPath) else { return 0 }
    let path = (try? JSONPath(parsing: text(pathLine)))?.segments ?? ["session_id"]
    let id = text(idLine)

    let result: Result<[JSONSplice.Piece], JSONSplice.Failure>
    do throws(JSONSplice.Failure) {
        result = .success(try JSONSplice.set(id, at: path, in: RequestBody(body)))
    } catch {
        result = .failure(error)
    }
    // The same answer however nginx buffered the body.
    do throws(JSONSplice.Failure) {
        let other = try JSONSplice.set(id, at: path, in: segmented(body))
        guard case .success(let pieces) = result else { require(false, "only the segmented body was accepted"); return 0 }
        require(joined(other) == joined(pieces), "a segmented body spliced differently")
    } catch {
        guard case .failure(let failure) = result else { require(false, "only the segmented body was refused"); return 0 }
        require(error == failure, "a segmented body failed differently: \(error) vs \(failure)")
    }

    let (original, reason) = janssonParse(body)
    /// Refusals of jansson's own that a JSON object may meet: numbers it
    /// cannot hold, NUL in a key, nesting past its depth (which counts
    /// scalars too).
    let janssonOnly = reason == json_error_numeric_overflow || reason == json_error_null_byte_in_key
        || reason == json_error_stack_overflow
    // What jansson makes of the same edit.
    var edited: JSON? = nil
    var blockedAt: [String]? = nil
    if let original, original.isObject, let copy = original.deepCopy(), let value = JSON.string(id) {
        do throws(JSONPath.SetError) {
            try JSONPath(segments: path).set(value, in: copy)
            edited = copy
        } catch {
            guard case .notAnObject(let prefix) = error else {
                // jansson cannot hold a key with NUL in it, JSON can: nothing to compare with
                require(path.contains { $0.utf8.contains(0) }, "out of memory")
                return 0
            }
            blockedAt = (try? JSONPath(parsing: prefix))?.segments
        }
    }

    switch result {
    case .success(let pieces):
        let out = joined(pieces)
        if original == nil {
            require(janssonOnly, "spliced a body jansson refuses (\(reason)): \(show(out))")
            return 0
        }
        let (parsed, outReason) = janssonParse(out)
        guard let parsed else {
            // jansson cannot hold a key with NUL in it, JSON can.
            require(outReason == json_error_null_byte_in_key && path.contains { $0.utf8.contains(0) },
                    "the spliced body is not JSON (\(outReason)): \(show(out))")
            return 0
        }
        require(sameBytes(lookup(parsed, path)?.stringValue, id), "the id is not at \(path) in \(parsed.dumped() ?? "?")")
        require(edited != nil, "spliced where jansson is blocked at \(blockedAt ?? [])")
        require(equal(parsed, edited), "spliced \(parsed.dumped() ?? "?"), jansson made \(edited?.dumped() ?? "?")")
    case .failure(.notAnObject):
        require(original == nil || !original!.isObject, "refused a JSON object: \(original!.dumped() ?? "?")")
    case .failure(.tooDeep):
        require(nestingDepth(body) > JSONSplice.maxDepth, "too deep at depth \(nestingDepth(body))")
        require(original == nil, "too deep for the splice, not for jansson")
    case .failure(.blocked(let prefix)):
        if original == nil { require(janssonOnly, "blocked in a body jansson refuses (\(reason))"); return 0 }
        require(blockedAt == prefix, "blocked at \(prefix), jansson at \(blockedAt ?? [])")
    }
    return 0
}
