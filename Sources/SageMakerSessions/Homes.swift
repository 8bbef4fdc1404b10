/// The engine replica a session's requests go to, by the address written on
/// its `server` line ("127.0.0.1:30001"): reordering or adding servers moves
/// no session. Its name is kept once by `Homes`, after a byte holding its
/// length, so that a home is one pointer (a cached session carries it in
/// eight bytes): compared by address, and handed to nginx without a copy.
public struct Home: Hashable {
    let kept: UnsafePointer<UInt8>

    public var name: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: kept + 1, count: Int(kept[0])) }

    public var text: String { String(decoding: name, as: UTF8.self) }
}

/// Every home this worker has seen, each name kept once in memory that never
/// moves or goes away while the worker lives (there are as many as replicas).
/// Every change in how many live sessions a home has goes through `count`,
/// which nginx points at its shared-memory tally.
public final class Homes {
    /// Longer names are not homes: nginx's own limit on a server address is far below.
    public static let maxLength = 255

    private var byName: [[UInt8]: Home] = [:]
    /// Told of every session gained (+1) or lost (-1) by a home.
    public var counter: ((_ name: UnsafeRawBufferPointer, _ delta: Int64) -> Void)?

    public init() {}

    deinit {
        for home in byName.values { UnsafeMutablePointer(mutating: home.kept).deallocate() }
    }

    /// nil for an empty or too long name.
    public func intern(_ name: UnsafeRawBufferPointer) -> Home? {
        guard !name.isEmpty, name.count <= Homes.maxLength else { return nil }
        let bytes = [UInt8](name)
        if let home = byName[bytes] { return home }
        let kept = UnsafeMutablePointer<UInt8>.allocate(capacity: name.count + 1)
        kept[0] = UInt8(name.count)
        UnsafeMutableRawBufferPointer(start: kept + 1, count: name.count).copyMemory(from: name)
        let home = Home(kept: kept)
        byName[bytes] = home
        return home
    }

    public func intern(_ name: String) -> Home? {
        var name = name
        return name.withUTF8 { intern(UnsafeRawBufferPointer($0)) }
    }

    func count(_ home: Home?, _ delta: Int64) {
        guard let home, let counter else { return }
        counter(home.name, delta)
    }
}
