/// The `Expires=` form of the new-session header, `YYYY-MM-DDTHH:MM:SSZ` in
/// UTC, computed without the C library's time zone state.
public enum UTCTimestamp {
    public static func format(unixSeconds: Double) -> String {
        let clamped = unixSeconds.isFinite ? min(max(unixSeconds, -1e15), 1e15) : 0
        let whole = Int64(clamped.rounded(.down))
        var days = whole / 86_400
        var secs = whole % 86_400
        if secs < 0 {
            secs += 86_400
            days -= 1
        }
        let (y, m, d) = civil(fromDays: days)
        guard (0...9999).contains(y) else {
            return pad(y, 4) + "-" + pad(m, 2) + "-" + pad(d, 2) + "T" + pad(secs / 3600, 2) + ":"
                + pad(secs / 60 % 60, 2) + ":" + pad(secs % 60, 2) + "Z"
        }
        // the usual case, written byte by byte: this is on every NEW_SESSION
        return String(unsafeUninitializedCapacity: 20) { out in
            var i = 0
            func two(_ v: Int64, then separator: UInt8) {
                out[i] = UInt8(truncatingIfNeeded: 0x30 + v / 10)
                out[i + 1] = UInt8(truncatingIfNeeded: 0x30 + v % 10)
                out[i + 2] = separator
                i += 3
            }
            out[0] = UInt8(truncatingIfNeeded: 0x30 + y / 1000)
            out[1] = UInt8(truncatingIfNeeded: 0x30 + y / 100 % 10)
            i = 2
            two(y % 100, then: UInt8(ascii: "-"))
            two(m, then: UInt8(ascii: "-"))
            two(d, then: UInt8(ascii: "T"))
            two(secs / 3600, then: UInt8(ascii: ":"))
            two(secs / 60 % 60, then: UInt8(ascii: ":"))
            two(secs % 60, then: UInt8(ascii: "Z"))
            return i
        }
    }

    /// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    static func pad(_ v: Int64, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    /// Unix seconds as the Python library writes `.expiration_ts`: a JSON
    /// number with a fractional part (microseconds here).
    public static func jsonNumber(unixSeconds: Double) -> String {
        let micros = (unixSeconds * 1_000_000).rounded()
        guard micros.isFinite, micros.magnitude < 9e18 else {
            return unixSeconds.isFinite ? "\(unixSeconds)" : "0"
        }
        let m = Int64(micros)
        return String(unsafeUninitializedCapacity: 28) { out in
            var i = 0
            if m < 0 {
                out[0] = UInt8(ascii: "-")
                i = 1
            }
            var whole = m.magnitude / 1_000_000
            var count = 1
            var rest = whole
            while rest >= 10 {
                rest /= 10
                count += 1
            }
            for k in stride(from: i + count - 1, through: i, by: -1) {
                out[k] = UInt8(truncatingIfNeeded: 0x30 + whole % 10)
                whole /= 10
            }
            i += count
            out[i] = UInt8(ascii: ".")
            var fraction = m.magnitude % 1_000_000
            for k in stride(from: i + 6, to: i, by: -1) {
                out[k] = UInt8(truncatingIfNeeded: 0x30 + fraction % 10)
                fraction /= 10
            }
            return i + 7
        }
    }
}
