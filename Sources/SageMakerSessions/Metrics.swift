import CAtomics
import Glibc

/// The status page's counters: 64-bit slots in memory that every nginx
/// worker shares (an nginx shared zone, kept across reloads), each added to
/// with one atomic add and no lock. Which slot counts what is decided here;
/// nginx only provides the memory (`attach`), `Metrics.slots` of them.
///
/// Without memory attached (no `sagemaker_sessions_status` location, `nginx
/// -t`, unit tests that attach none) nothing is counted.
public enum Metrics {
    /// The shared slots, or nil. Set once in each worker process.
    static var counters: UnsafeMutablePointer<Int64>? = nil

    public static func attach(_ memory: UnsafeMutablePointer<Int64>?) {
        counters = memory
    }

    // MARK: layout (append only: a reload to a build whose layout differs
    // gets a zone of another size, hence a new one)

    /// One slot per outcome, by its raw value (slot 0, `none`, unused).
    static let outcomeSlots = SessionOutcome.allCases.count
    /// Expired sessions removed.
    static let expiredSlot = outcomeSlots
    /// Engine calls by status: per call, a slot for each of 100...599 and
    /// one (index 0) for any other number.
    static let engineCallsBase = expiredSlot + 1
    static let codes = 100...599
    static let codeSlots = codes.count + 1
    /// Engine call durations, per call: a slot for each bucket (not
    /// cumulative: the text writer adds them up), one past the last bound,
    /// the sum in microseconds, the count.
    static let histogramBase = engineCallsBase + 2 * codeSlots
    /// Bounds in microseconds, and as the `le` label writes them.
    static let buckets: [(micros: Int64, label: String)] = [
        (1_000, "0.001"), (2_500, "0.0025"), (5_000, "0.005"), (10_000, "0.01"), (25_000, "0.025"),
        (50_000, "0.05"), (100_000, "0.1"), (250_000, "0.25"), (500_000, "0.5"), (1_000_000, "1"),
        (2_500_000, "2.5"), (5_000_000, "5"), (10_000_000, "10"), (30_000_000, "30"),
    ]
    static let histogramSlots = buckets.count + 3

    /// The `expire` call (ExpiredEngineSession.swift): its codes, then its
    /// histogram, after the first two calls' (appended, not interleaved).
    static let expireCodesBase = histogramBase + 2 * histogramSlots
    static let expireHistogramBase = expireCodesBase + codeSlots

    /// Workers running without the inotify cache now (a gauge). Not kept
    /// in memory: `snapshot` writes it there, counting the live pids in the
    /// slots after it. A worker killed by a signal (kill -9, a crash) cannot
    /// take back a +1; its pid, dead, is not counted, and its slot is taken
    /// again by the next worker that needs one.
    static let uncachedSlot = expireHistogramBase + histogramSlots
    /// One slot per uncached worker, holding its pid (0: free).
    static let uncachedPidBase = uncachedSlot + 1
    static let uncachedPidSlots = 1024

    /// How many slots nginx must provide.
    public static let slots = uncachedPidBase + uncachedPidSlots

    static func callIndex(_ call: EngineCall) -> Int { call == .create ? 0 : 1 }

    static func codeSlot(_ call: EngineCall, status: Int) -> Int {
        let base = call == .expire ? expireCodesBase : engineCallsBase + callIndex(call) * codeSlots
        return base + (codes.contains(status) ? status - codes.lowerBound + 1 : 0)
    }

    static func histogramSlot(_ call: EngineCall) -> Int {
        call == .expire ? expireHistogramBase : histogramBase + callIndex(call) * histogramSlots
    }

    // MARK: counting

    @inline(__always)
    static func add(_ slot: Int, _ n: Int64 = 1) {
        if let counters { sms_atomic_add(counters + slot, n) }
    }

    /// A request's outcome, once decided.
    @inline(__always)
    public static func count(_ outcome: SessionOutcome) {
        if outcome != .none { add(Int(outcome.rawValue)) }
    }

    /// This worker runs without its cache now (true), or no more (false):
    /// it holds a slot with its pid while it does.
    static func workerUncached(_ uncached: Bool, pid: Int64 = Int64(getpid())) {
        guard let counters else { return }
        let pids = counters + uncachedPidBase
        if let mine = (0..<uncachedPidSlots).first(where: { sms_atomic_load(pids + $0) == pid }) {
            if !uncached { _ = sms_atomic_cas(pids + mine, pid, 0) != 0 }
            return
        }
        guard uncached else { return }
        for i in 0..<uncachedPidSlots {
            let held = sms_atomic_load(pids + i)
            if (held == 0 || !alive(held)), sms_atomic_cas(pids + i, held, pid) != 0 { return }
        }
        // more uncached workers than slots: the gauge undercounts
    }

    /// A pid in a slot names a running process (EPERM: running as another user).
    static func alive(_ pid: Int64) -> Bool {
        pid > 0 && pid <= Int64(Int32.max) && (kill(pid_t(pid), 0) == 0 || errno == EPERM)
    }

    /// The live pids in the uncached workers' slots.
    static func uncachedWorkers(_ counters: [Int64]) -> Int64 {
        guard counters.count >= slots else { return 0 }
        return Int64(counters[uncachedPidBase..<slots].filter { $0 != 0 && alive($0) }.count)
    }

    static func expiredSessionRemoved() {
        add(expiredSlot)
    }

    /// An engine session call answered with `status` (nginx's own status
    /// when the engine could not be reached) after `micros` microseconds.
    public static func engineCall(_ call: EngineCall, status: Int, micros: Int64) {
        add(codeSlot(call, status: status))
        let base = histogramSlot(call)
        let micros = max(0, micros)
        let bucket = buckets.firstIndex { micros <= $0.micros } ?? buckets.count
        add(base + bucket)
        add(base + buckets.count + 1, micros)
        add(base + buckets.count + 2)
    }

    /// The slots as they are now (each read atomically; the whole is not
    /// one instant, as with any scrape of live counters).
    public static func snapshot(_ memory: UnsafePointer<Int64>, count: Int) -> [Int64] {
        var counters = (0..<min(count, slots)).map { sms_atomic_load(memory + $0) }
            + Array(repeating: 0, count: max(0, slots - count))
        counters[uncachedSlot] = uncachedWorkers(counters)
        return counters
    }
}
