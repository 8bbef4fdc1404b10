/// One request, one verdict: what the first reader of a request's session
/// found (a value read in the rewrite phase, or the manager) is what every
/// later reader of the same request finds. Time passing between phases (a
/// slow body, an `auth_request`), or another process closing or removing
/// the session meanwhile, then cannot make two readers of one request
/// disagree: a value read from a session the manager calls expired, or a
/// session the value reader found expired that the manager calls not found.
/// A later reader is also spared a lookup.
///
/// Kept for canonical ids only. Any other id is never a built-in session,
/// whatever the time, so there is nothing to disagree on; an engine
/// session named otherwise is read by the manager alone.
///
/// Where a request keeps it: room the shim holds in the request's context
/// (`sms_verdict_t`, 64 bytes), zeroed when the context is made, for as
/// long as the request lives. `none` (no room) keeps nothing: every lookup
/// is the first. Laid out by hand, so that what the room holds does not
/// hang on how Swift lays out an enum: byte 0 says what was found (0:
/// nothing kept yet), bytes 8..<44 the id's key, 48..<56 a valid session's
/// expiry, 56..<64 its home (a pointer `Homes` keeps for the worker's life).
public struct VerdictRoom {
    let room: UnsafeMutableRawPointer?

    public static let none = VerdictRoom(nil)

    /// The bytes the room must have, aligned as a pointer.
    public static let size = 64
    static let keyOffset = 8, expiryOffset = 48, homeOffset = 56

    enum Found: UInt8 {
        case nothing = 0, valid, notFound, expired
    }

    public init(_ room: UnsafeMutableRawPointer?) {
        self.room = room
    }

    /// What this request found of `key` before, if it looked.
    @inline(__always)
    func kept(for key: SessionKey) -> SessionStore.Lookup? {
        guard let room else { return nil }
        switch Found(rawValue: room.load(as: UInt8.self)) {
        case .nothing?, nil: return nil
        case let found?:
            guard room.load(fromByteOffset: VerdictRoom.keyOffset, as: SessionKey.self) == key else { return nil }
            switch found {
            case .valid:
                return .valid(expiresAt: room.load(fromByteOffset: VerdictRoom.expiryOffset, as: Double.self),
                              home: room.load(fromByteOffset: VerdictRoom.homeOffset, as: Home?.self))
            case .notFound: return .notFound
            case .expired, .nothing: return .expired
            }
        }
    }

    /// The request's first verdict; a later one (of another id) is not kept.
    @inline(__always)
    func keep(_ lookup: SessionStore.Lookup, for key: SessionKey) {
        guard let room, room.load(as: UInt8.self) == Found.nothing.rawValue else { return }
        room.storeBytes(of: key, toByteOffset: VerdictRoom.keyOffset, as: SessionKey.self)
        let found: Found
        switch lookup {
        case .valid(let expiresAt, let home):
            room.storeBytes(of: expiresAt, toByteOffset: VerdictRoom.expiryOffset, as: Double.self)
            room.storeBytes(of: home, toByteOffset: VerdictRoom.homeOffset, as: Home?.self)
            found = .valid
        case .notFound: found = .notFound
        case .expired: found = .expired
        }
        room.storeBytes(of: found.rawValue, as: UInt8.self)
    }
}
