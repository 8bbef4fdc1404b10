// Self-test for run.sh: leaks on purpose, so a run that does not report it
// shows that leak detection is off (as it silently is with, for example,
// ASAN_OPTIONS=malloc_context_size=0 or 1). Not a fuzz target.

import CJansson

final class Node {
    var next: Node?
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size >= 4 else { return 0 }
    if data[0] == UInt8(ascii: "S") {  // a Swift retain cycle
        let a = Node(), b = Node()
        a.next = b
        b.next = a
    }
    if data[1] == UInt8(ascii: "J") {  // a jansson value never released
        _ = json_object()
    }
    return 0
}
