/// What the status page shows, gathered by nginx at the time of a scrape.
public struct StatusSnapshot {
    /// `Metrics.slots` values (`Metrics.snapshot`).
    public var counters: [Int64]
    /// Sessions in the store now; nil when sessions are off.
    public var live: Int64?
    public var version: String
    /// Session affinity, from the upstreams that use it.
    public var replicas: [(upstream: String, replica: String, live: Int64)]
    public var upstreams: [(upstream: String, moved: Int64, unavailable: Int64)]

    public init(counters: [Int64], live: Int64?, version: String,
                replicas: [(upstream: String, replica: String, live: Int64)] = [],
                upstreams: [(upstream: String, moved: Int64, unavailable: Int64)] = []) {
        self.counters = counters
        self.live = live
        self.version = version
        self.replicas = replicas
        self.upstreams = upstreams
    }

    func counter(_ slot: Int) -> Int64 {
        slot >= 0 && slot < counters.count ? counters[slot] : 0
    }

    func counter(_ outcome: SessionOutcome) -> Int64 {
        counter(Int(outcome.rawValue))
    }
}

/// The status page in Prometheus' text exposition format (version 0.0.4):
/// every family with its `# HELP` and `# TYPE`, even one with no sample.
public enum PrometheusText {
    public static let contentType = "text/plain; version=0.0.4"

    /// The families, in the order the page shows them: name, type, help.
    public static let families: [(name: String, type: String, help: String)] = [
        ("sagemaker_sessions_live", "gauge", "Sessions in the store now."),
        ("sagemaker_sessions_created_total", "counter", "Sessions created, by the manager that made them (builtin or engine)."),
        ("sagemaker_sessions_closed_total", "counter", "Sessions closed by CLOSE requests, by the manager that closed them (builtin or engine)."),
        ("sagemaker_sessions_expired_total", "counter", "Sessions found expired and removed, by a request or by the sweep."),
        ("sagemaker_sessions_invocations_total", "counter", "Invocations passed to the engine with a session (valid built-in sessions and engine-owned ones)."),
        ("sagemaker_sessions_rejected_total", "counter", "Requests refused by the module, by reason."),
        ("sagemaker_sessions_store_errors_total", "counter", "Failures of the session store (the file system), by operation."),
        ("sagemaker_sessions_engine_calls_total", "counter", "Engine session handler calls, by call and HTTP status (nginx's own status when the engine was not reached)."),
        ("sagemaker_sessions_engine_call_duration_seconds", "histogram", "Time from an engine session handler call to its answer, by call."),
        ("sagemaker_sessions_replica_live", "gauge", "Live sessions whose home is this replica (session affinity)."),
        ("sagemaker_sessions_affinity_moved_total", "counter", "Built-in sessions moved to another replica because their home was unavailable (session affinity)."),
        ("sagemaker_sessions_affinity_unavailable_total", "counter", "Requests of engine-owned sessions refused with 503 because their home was unavailable (session affinity)."),
        ("sagemaker_sessions_build_info", "gauge", "The module's version; always 1."),
        ("sagemaker_sessions_workers_uncached", "gauge", "Workers running without the inotify session cache now (their inotify instance or watch could not be had); see fs.inotify.max_user_instances."),
    ]

    /// `sagemaker_sessions_rejected_total`'s reasons.
    public static let rejections: [SessionOutcome] = [
        .notFound, .expired, .missingID, .malformed, .disabled, .repeatedHeader, .limit, .notObject,
    ]

    /// `sagemaker_sessions_store_errors_total`'s operations.
    static let storeErrors: [(op: String, outcome: SessionOutcome)] = [
        ("create", .storeErrorCreate), ("close", .storeErrorClose), ("read", .storeErrorRead),
    ]

    static let calls: [(label: String, call: EngineCall)] = [("create", .create), ("close", .close), ("expire", .expire)]

    public static func write(_ s: StatusSnapshot) -> String {
        var out = ""
        out.reserveCapacity(8192)
        func family(_ name: String) {
            guard let f = families.first(where: { $0.name == name }) else { return }
            out += "# HELP \(f.name) \(f.help)\n# TYPE \(f.name) \(f.type)\n"
        }
        func sample(_ name: String, _ labels: [(String, String)], _ value: String) {
            out += name
            if !labels.isEmpty {
                out += "{" + labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
            }
            out += " " + value + "\n"
        }
        func sample(_ name: String, _ labels: [(String, String)], _ value: Int64) {
            sample(name, labels, String(value))
        }

        family("sagemaker_sessions_live")
        sample("sagemaker_sessions_live", [], s.live ?? 0)

        for (name, builtin, engine) in [("sagemaker_sessions_created_total", SessionOutcome.createdBuiltin, SessionOutcome.createdEngine),
                                        ("sagemaker_sessions_closed_total", .closedBuiltin, .closedEngine)] {
            family(name)
            sample(name, [("manager", "builtin")], s.counter(builtin))
            sample(name, [("manager", "engine")], s.counter(engine))
        }

        family("sagemaker_sessions_expired_total")
        sample("sagemaker_sessions_expired_total", [], s.counter(Metrics.expiredSlot))

        family("sagemaker_sessions_invocations_total")
        sample("sagemaker_sessions_invocations_total", [], s.counter(.valid) + s.counter(.passed))

        family("sagemaker_sessions_rejected_total")
        for reason in rejections {
            sample("sagemaker_sessions_rejected_total", [("reason", reason.word.description)], s.counter(reason))
        }

        family("sagemaker_sessions_store_errors_total")
        for (op, outcome) in storeErrors {
            sample("sagemaker_sessions_store_errors_total", [("op", op)], s.counter(outcome))
        }

        family("sagemaker_sessions_engine_calls_total")
        for (label, call) in calls {
            for status in Metrics.codes {
                let n = s.counter(Metrics.codeSlot(call, status: status))
                if n > 0 { sample("sagemaker_sessions_engine_calls_total", [("call", label), ("code", String(status))], n) }
            }
            let other = s.counter(Metrics.codeSlot(call, status: 0))
            if other > 0 { sample("sagemaker_sessions_engine_calls_total", [("call", label), ("code", "other")], other) }
        }

        let histogram = "sagemaker_sessions_engine_call_duration_seconds"
        family(histogram)
        for (label, call) in calls {
            let base = Metrics.histogramSlot(call)
            var cumulative: Int64 = 0
            for (i, bucket) in Metrics.buckets.enumerated() {
                cumulative += s.counter(base + i)
                sample(histogram + "_bucket", [("call", label), ("le", bucket.label)], cumulative)
            }
            cumulative += s.counter(base + Metrics.buckets.count)
            // +Inf is the count itself: the two are added to apart, so a
            // scrape between them could otherwise show +Inf below a bucket
            let count = max(cumulative, s.counter(base + Metrics.buckets.count + 2))
            sample(histogram + "_bucket", [("call", label), ("le", "+Inf")], count)
            sample(histogram + "_sum", [("call", label)], seconds(micros: s.counter(base + Metrics.buckets.count + 1)))
            sample(histogram + "_count", [("call", label)], count)
        }

        family("sagemaker_sessions_replica_live")
        for r in s.replicas {
            sample("sagemaker_sessions_replica_live", [("upstream", r.upstream), ("replica", r.replica)], r.live)
        }
        family("sagemaker_sessions_affinity_moved_total")
        for u in s.upstreams {
            sample("sagemaker_sessions_affinity_moved_total", [("upstream", u.upstream)], u.moved)
        }
        family("sagemaker_sessions_affinity_unavailable_total")
        for u in s.upstreams {
            sample("sagemaker_sessions_affinity_unavailable_total", [("upstream", u.upstream)], u.unavailable)
        }

        family("sagemaker_sessions_build_info")
        sample("sagemaker_sessions_build_info", [("version", s.version)], 1)

        family("sagemaker_sessions_workers_uncached")
        sample("sagemaker_sessions_workers_uncached", [], max(0, s.counter(Metrics.uncachedSlot)))
        return out
    }

    /// A label value as the format requires: backslash, double quote and
    /// line feed escaped.
    public static func escape(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 == 0x5c || $0 == 0x22 || $0 == 0x0a }) else { return value }
        var out = ""
        for c in value.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// Microseconds as seconds, exactly: `1.000250`.
    static func seconds(micros: Int64) -> String {
        let whole = micros / 1_000_000, fraction = String(micros % 1_000_000)
        return "\(whole)." + String(repeating: "0", count: 6 - fraction.count) + fraction
    }
}
