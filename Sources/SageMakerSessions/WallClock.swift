import Glibc

/// Expiry follows wall-clock time, because the Python library's files hold
/// Unix timestamps that another process compares with its own clock.
public enum WallClock {
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1_000_000_000
    }
}
