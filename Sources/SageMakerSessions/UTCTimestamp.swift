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
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secs / 3600, 2)):\(pad(secs / 60 % 60, 2)):\(pad(secs % 60, 2))Z"
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
        let sign = m < 0 ? "-" : ""
        return "\(sign)\(m.magnitude / 1_000_000).\(pad(Int64(m.magnitude % 1_000_000), 6))"
    }
}
