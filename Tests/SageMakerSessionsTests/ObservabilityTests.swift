import Glibc
import XCTest
@testable import SageMakerSessions

final class PrometheusTextTests: XCTestCase {
    func testEveryFamilyHasHelpAndTypeEvenWithoutSamples() {
        let text = PrometheusText.write(StatusSnapshot(counters: [], live: nil, version: "1.2.3"))
        for family in PrometheusText.families {
            XCTAssertTrue(text.contains("# HELP \(family.name) "), family.name)
            XCTAssertTrue(text.contains("# TYPE \(family.name) \(family.type)\n"), family.name)
        }
        XCTAssertTrue(text.contains("sagemaker_sessions_live 0\n"))
        XCTAssertTrue(text.contains("sagemaker_sessions_build_info{version=\"1.2.3\"} 1\n"))
        XCTAssertTrue(text.contains("sagemaker_sessions_workers_uncached 0\n"))
        XCTAssertTrue(text.hasSuffix("\n"))
        // no engine call yet: the family's lines only
        XCTAssertFalse(text.contains("sagemaker_sessions_engine_calls_total{"))
    }

    func testCountersAreSummedIntoTheirRows() {
        var counters = [Int64](repeating: 0, count: Metrics.slots)
        counters[Int(SessionOutcome.createdBuiltin.rawValue)] = 5
        counters[Int(SessionOutcome.closedEngine.rawValue)] = 2
        counters[Int(SessionOutcome.valid.rawValue)] = 7
        counters[Int(SessionOutcome.passed.rawValue)] = 3
        counters[Int(SessionOutcome.notFound.rawValue)] = 4
        counters[Int(SessionOutcome.storeErrorClose.rawValue)] = 1
        counters[Metrics.expiredSlot] = 9
        counters[Metrics.codeSlot(.create, status: 200)] = 6
        counters[Metrics.codeSlot(.close, status: 0)] = 1
        let text = PrometheusText.write(StatusSnapshot(counters: counters, live: 12, version: "v"))
        for line in ["sagemaker_sessions_live 12",
                     "sagemaker_sessions_created_total{manager=\"builtin\"} 5",
                     "sagemaker_sessions_created_total{manager=\"engine\"} 0",
                     "sagemaker_sessions_closed_total{manager=\"engine\"} 2",
                     "sagemaker_sessions_invocations_total 10",
                     "sagemaker_sessions_expired_total 9",
                     "sagemaker_sessions_rejected_total{reason=\"not_found\"} 4",
                     "sagemaker_sessions_rejected_total{reason=\"not_object\"} 0",
                     "sagemaker_sessions_store_errors_total{op=\"close\"} 1",
                     "sagemaker_sessions_engine_calls_total{call=\"create\",code=\"200\"} 6",
                     "sagemaker_sessions_engine_calls_total{call=\"close\",code=\"other\"} 1"] {
            XCTAssertTrue(text.contains(line + "\n"), line)
        }
    }

    func testHistogramBucketsAreCumulativeAndEndInTheCount() {
        var counters = [Int64](repeating: 0, count: Metrics.slots)
        let base = Metrics.histogramSlot(.create)
        counters[base + 0] = 1                       // <= 1 ms
        counters[base + 3] = 2                       // <= 10 ms
        counters[base + Metrics.buckets.count] = 1   // over the last bound
        counters[base + Metrics.buckets.count + 1] = 3_500_250
        counters[base + Metrics.buckets.count + 2] = 4
        let text = PrometheusText.write(StatusSnapshot(counters: counters, live: 0, version: "v"))
        let h = "sagemaker_sessions_engine_call_duration_seconds"
        for line in ["\(h)_bucket{call=\"create\",le=\"0.001\"} 1",
                     "\(h)_bucket{call=\"create\",le=\"0.005\"} 1",
                     "\(h)_bucket{call=\"create\",le=\"0.01\"} 3",
                     "\(h)_bucket{call=\"create\",le=\"30\"} 3",
                     "\(h)_bucket{call=\"create\",le=\"+Inf\"} 4",
                     "\(h)_sum{call=\"create\"} 3.500250",
                     "\(h)_count{call=\"create\"} 4",
                     "\(h)_count{call=\"close\"} 0"] {
            XCTAssertTrue(text.contains(line + "\n"), line)
        }
    }

    func testAffinityRowsWithTheirLabelsEscaped() {
        let text = PrometheusText.write(StatusSnapshot(
            counters: [], live: 0, version: "v",
            replicas: [("engines", "127.0.0.1:8001", 3), ("we\"ird\\\n", "[::1]:80", 0)],
            upstreams: [("engines", 2, 1)]))
        for line in ["sagemaker_sessions_replica_live{upstream=\"engines\",replica=\"127.0.0.1:8001\"} 3",
                     "sagemaker_sessions_replica_live{upstream=\"we\\\"ird\\\\\\n\",replica=\"[::1]:80\"} 0",
                     "sagemaker_sessions_affinity_moved_total{upstream=\"engines\"} 2",
                     "sagemaker_sessions_affinity_unavailable_total{upstream=\"engines\"} 1"] {
            XCTAssertTrue(text.contains(line + "\n"), line)
        }
    }

    func testSecondsAreExact() {
        XCTAssertEqual(PrometheusText.seconds(micros: 0), "0.000000")
        XCTAssertEqual(PrometheusText.seconds(micros: 1), "0.000001")
        XCTAssertEqual(PrometheusText.seconds(micros: 12_345_678), "12.345678")
    }
}

final class MetricsTests: XCTestCase {
    override func tearDown() {
        Metrics.attach(nil)
    }

    func testCountingAddsToTheAttachedSlotsOnly() {
        Metrics.count(.valid)  // nothing attached: nothing counted, no crash
        var slots = [Int64](repeating: 0, count: Metrics.slots)
        slots.withUnsafeMutableBufferPointer { buf in
            Metrics.attach(buf.baseAddress)
            Metrics.count(.valid)
            Metrics.count(.valid)
            Metrics.count(.none)
            Metrics.count(.limit)
            Metrics.engineCall(.close, status: 404, micros: 7_000)
            Metrics.engineCall(.close, status: 1000, micros: 60_000_000)
            Metrics.attach(nil)
        }
        XCTAssertEqual(slots[Int(SessionOutcome.valid.rawValue)], 2)
        XCTAssertEqual(slots[Int(SessionOutcome.limit.rawValue)], 1)
        XCTAssertEqual(slots[0], 0)
        XCTAssertEqual(slots[Metrics.codeSlot(.close, status: 404)], 1)
        XCTAssertEqual(slots[Metrics.codeSlot(.close, status: 0)], 1)
        let base = Metrics.histogramSlot(.close)
        XCTAssertEqual(slots[base + 3], 1)                          // 7 ms: <= 10 ms
        XCTAssertEqual(slots[base + Metrics.buckets.count], 1)      // 60 s: past the last bound
        XCTAssertEqual(slots[base + Metrics.buckets.count + 1], 60_007_000)
        XCTAssertEqual(slots[base + Metrics.buckets.count + 2], 2)
        XCTAssertEqual(slots.reduce(0, +) - 60_007_000, 2 + 1 + 1 + 1 + 1 + 1 + 2)
    }

    /// A gauge: a worker without its cache holds a slot with its pid until
    /// it exits or gets one; a dead pid (a worker killed by a signal) is
    /// not counted, and its slot is taken again.
    func testUncachedWorkersAreAGaugeOfLivePids() throws {
        let child = fork()
        if child == 0 { _exit(0) }
        var status: Int32 = 0
        XCTAssertEqual(waitpid(child, &status, 0), child)
        var slots = [Int64](repeating: 0, count: Metrics.slots)
        var snapshot: [Int64] = []
        slots.withUnsafeMutableBufferPointer { buf in
            Metrics.attach(buf.baseAddress)
            defer { Metrics.attach(nil) }
            Metrics.workerUncached(true, pid: Int64(child))   // then killed: its slot stays
            XCTAssertEqual(buf[Metrics.uncachedPidBase], Int64(child))
            Metrics.workerUncached(true)
            Metrics.workerUncached(true)                      // once per worker
            XCTAssertEqual(buf[Metrics.uncachedPidBase], Int64(getpid()))  // the dead pid's slot, taken again
            Metrics.workerUncached(true, pid: 1)              // another live process
            snapshot = Metrics.snapshot(buf.baseAddress!, count: Metrics.slots)
            Metrics.workerUncached(false)
            XCTAssertEqual(Metrics.uncachedWorkers(Array(buf)), 1)
        }
        XCTAssertEqual(snapshot[Metrics.uncachedSlot], 2)
        let text = PrometheusText.write(StatusSnapshot(counters: snapshot, live: 0, version: "1"))
        XCTAssertTrue(text.contains("sagemaker_sessions_workers_uncached 2\n"), text)
    }

    /// The close of an expired engine session has its own row.
    func testExpireCallsAreCountedApart() {
        var slots = [Int64](repeating: 0, count: Metrics.slots)
        slots.withUnsafeMutableBufferPointer { buf in
            Metrics.attach(buf.baseAddress)
            Metrics.engineCall(.expire, status: 502, micros: 10)
            Metrics.engineCall(.close, status: 200, micros: 10)
            Metrics.attach(nil)
        }
        let text = PrometheusText.write(StatusSnapshot(counters: slots, live: 0, version: "1"))
        XCTAssertTrue(text.contains(#"sagemaker_sessions_engine_calls_total{call="expire",code="502"} 1"#), text)
        XCTAssertTrue(text.contains(#"sagemaker_sessions_engine_calls_total{call="close",code="200"} 1"#), text)
        XCTAssertFalse(text.contains(#"call="expire",code="200""#), text)
    }

    func testTheLayoutHasNoOverlap() {
        XCTAssertLessThan(Metrics.expiredSlot, Metrics.engineCallsBase)
        XCTAssertEqual(Metrics.codeSlot(.close, status: 599) + 1, Metrics.histogramBase)
        XCTAssertEqual(Metrics.histogramSlot(.close) + Metrics.histogramSlots, Metrics.codeSlot(.expire, status: 0))
        XCTAssertEqual(Metrics.codeSlot(.expire, status: 599) + 1, Metrics.histogramSlot(.expire))
        XCTAssertEqual(Metrics.histogramSlot(.expire) + Metrics.histogramSlots, Metrics.uncachedSlot)
        XCTAssertEqual(Metrics.uncachedSlot + 1, Metrics.uncachedPidBase)
        XCTAssertEqual(Metrics.uncachedPidBase + Metrics.uncachedPidSlots, Metrics.slots)
    }
}

final class SessionOutcomeTests: TempDirectoryTestCase {
    func testWords() {
        let words = Set(SessionOutcome.allCases.map { $0.word.description })
        XCTAssertEqual(words, ["", "created", "closed", "valid", "passed", "not_found", "expired", "missing_id",
                               "malformed", "disabled", "repeated_header", "limit", "not_object", "store_error",
                               "engine_error"])
    }

    func testOutcomesOfTheBuiltInManager() throws {
        let store = SessionStore(root: root, expiration: 60, maxSessions: 1)
        let manager = SessionManager(store: store, injectPath: try JSONPath(parsing: "session_id"))
        func outcome(_ body: String, _ header: String?, repeated: Bool = false) -> SessionOutcome {
            var bytes = Array(body.utf8)
            return bytes.withUnsafeMutableBytes { raw in
                let headerBytes = header.map { Array($0.utf8) }
                let decision = manager.decide(sessionID: headerBytes, body: RequestBody(UnsafeRawBufferPointer(raw)),
                                              repeatedHeader: repeated)
                return (headerBytes ?? []).withUnsafeBytes { h in
                    SessionOutcome.of(decision, header: header == nil ? nil : h, engineOwnsSessions: false)
                }
            }
        }
        XCTAssertEqual(outcome(#"{"requestType":"NEW_SESSION"}"#, nil), .createdBuiltin)
        XCTAssertEqual(outcome(#"{"requestType":"NEW_SESSION"}"#, nil), .limit)
        let id = try XCTUnwrap(try? FileSystemList.sessions(in: root).first)
        XCTAssertEqual(outcome(#"{"p":1}"#, id), .valid)
        XCTAssertEqual(outcome(#"{"p":1}"#, nil), SessionOutcome.none)
        XCTAssertEqual(outcome(#"{"p":1}"#, ""), SessionOutcome.none)
        XCTAssertEqual(outcome("[1]", id), .notObject)
        XCTAssertEqual(outcome(#"{"p":1}"#, id, repeated: true), .repeatedHeader)
        XCTAssertEqual(outcome(#"{"requestType":"OPEN"}"#, id), .malformed)
        XCTAssertEqual(outcome(#"{"requestType":"CLOSE"}"#, nil), .missingID)
        XCTAssertEqual(outcome(#"{"p":1}"#, "00000000-0000-4000-8000-000000000000"), .notFound)
        XCTAssertEqual(outcome(#"{"requestType":"CLOSE"}"#, id), .closedBuiltin)
        let off = SessionManager(store: nil, injectPath: nil)
        var body = Array(#"{"p":1}"#.utf8)
        let decision = body.withUnsafeMutableBytes { off.decide(sessionID: Array(id.utf8), body: UnsafeRawBufferPointer($0)) }
        XCTAssertEqual(SessionOutcome.of(decision, header: nil, engineOwnsSessions: false), .disabled)
    }

    func testEngineAnswers() throws {
        let path = try HandlerPath.response("body.session_id")
        let manager = SessionManager(store: nil, injectPath: nil,
                                     createHandler: CreateHandler(responsePath: path, defaults: try XCTUnwrap(SessionDefaults.empty)))
        func outcome(_ status: Int, _ body: String, complete: Bool = true) -> SessionOutcome {
            var bytes = Array(body.utf8)
            return bytes.withUnsafeMutableBytes { raw in
                let d = manager.answer(.create, sessionID: nil,
                                       response: EngineResponse(complete: complete, status: status, headers: [],
                                                                body: UnsafeRawBufferPointer(raw)))
                return SessionOutcome.of(d, header: nil, engineOwnsSessions: true)
            }
        }
        XCTAssertEqual(outcome(200, #"{"session_id":"e1"}"#), .createdEngine)
        XCTAssertEqual(outcome(200, #"{}"#), .engineError)
        XCTAssertEqual(outcome(500, #"{}"#), .engineError)
        XCTAssertEqual(outcome(200, #"{"session_id":"e1"}"#, complete: false), .engineError)
    }

    func testExpiredSessionsAreCountedByWhoeverRemovesThem() throws {
        let store = SessionStore(root: root, expiration: 1)
        let created = try store.create(now: 1000)
        var slots = [Int64](repeating: 0, count: Metrics.slots)
        slots.withUnsafeMutableBufferPointer { buf in
            Metrics.attach(buf.baseAddress)
            XCTAssertEqual(try? store.lookup(created.id, now: 2000), .expired)
            XCTAssertEqual(try? store.lookup(created.id, now: 2000), .notFound)
            Metrics.attach(nil)
        }
        XCTAssertEqual(slots[Metrics.expiredSlot], 1)
    }
}

/// Session directories, listed with Glibc alone.
enum FileSystemList {
    static func sessions(in dir: String) throws -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafePointer(to: &e.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if SessionID.isCanonical(name) { names.append(name) }
        }
        return names
    }
}

final class SessionValueTests: TempDirectoryTestCase {
    func testKeysByTheLibrarysRules() throws {
        XCTAssertEqual(try SessionValue.fileName(forKey: "lora/adapter"), "lora-adapter")
        XCTAssertEqual(try SessionValue.fileName(forKey: "a/b/c"), "a-b-c")
        XCTAssertEqual(try SessionValue.fileName(forKey: ".expiration_ts"), ".expiration_ts")
        XCTAssertEqual(try SessionValue.fileName(forKey: "a/"), "a-")
        for key in ["", "/etc/passwd", "..", "../x", "a..b", "x/..", ".", String(repeating: "k", count: 256), "a\u{0}b"] {
            XCTAssertThrowsError(try SessionValue.fileName(forKey: key), key)
        }
    }

    func testJSONText() {
        func text(_ json: String) -> String? {
            SessionValue.text(ofJSON: Array(json.utf8)).map { String(decoding: $0, as: UTF8.self) }
        }
        XCTAssertEqual(text(#""tenant-a/lora""#), "tenant-a/lora")
        XCTAssertEqual(text(#""caf\u00e9""#), "café")
        XCTAssertEqual(text(#"{"a": [1, 2], "b": "x\ny"}"#), #"{"a":[1,2],"b":"x\ny"}"#)
        XCTAssertEqual(text("42"), "42")
        XCTAssertEqual(text("null"), "null")
        XCTAssertEqual(text(#""""#), "")
        XCTAssertNil(text(#""a\r\nb""#))
        XCTAssertNil(text(#""a\u0000b""#))
        XCTAssertNil(text("{not json"))
        XCTAssertNil(text(""))
    }

    func testReadOnlyAValidSessionsRegularSmallFiles() throws {
        let store = SessionStore(root: root, expiration: 60)
        let created = try store.create()
        let sessionDir = store.directory(of: created.id)
        func read(_ id: String, _ file: String) -> SessionValue.Found {
            var id = id
            return id.withUTF8 { SessionValue.read(store: store, id: UnsafeRawBufferPointer($0), file: file) }
        }
        XCTAssertEqual(read(created.id, "lora-adapter"), SessionValue.Found())
        TestFS.write(sessionDir + "/lora-adapter", #""a1""#)
        XCTAssertEqual(read(created.id, "lora-adapter").text, Array("a1".utf8))
        XCTAssertEqual(read("00000000-0000-4000-8000-000000000000", "lora-adapter"), SessionValue.Found())
        XCTAssertEqual(read("../" + created.id, "lora-adapter"), SessionValue.Found())
        TestFS.write(root + "/outside", #""secret""#)
        XCTAssertEqual(symlink(root + "/outside", sessionDir + "/link"), 0)
        XCTAssertNil(read(created.id, "link").text)
        XCTAssertNotNil(read(created.id, "link").log)
        TestFS.write(sessionDir + "/big", "\"" + String(repeating: "x", count: SessionValue.maxBytes) + "\"")
        XCTAssertNil(read(created.id, "big").text)
        XCTAssertEqual(mkfifo(sessionDir + "/fifo", 0o644), 0)
        XCTAssertNil(read(created.id, "fifo").text)
    }

    /// A value read before the manager leaves an expired session for it:
    /// the manager answers `expired`, and it is counted once.
    func testReadingAValueOfAnExpiredSessionChangesNoVerdict() throws {
        let store = SessionStore(root: root, expiration: 1)
        let created = try store.create(now: 1000)
        TestFS.write(store.directory(of: created.id) + "/k", #""v""#)
        let manager = SessionManager(store: store, injectPath: nil)
        var slots = [Int64](repeating: 0, count: Metrics.slots)
        var id = created.id
        slots.withUnsafeMutableBufferPointer { buf in
            Metrics.attach(buf.baseAddress)
            id.withUTF8 { raw in
                let bytes = UnsafeRawBufferPointer(raw)
                XCTAssertEqual(SessionValue.read(store: store, id: bytes, file: "k", now: 2000), SessionValue.Found())
                XCTAssertEqual(SessionValue.read(store: store, id: bytes, file: "k", now: 2000), SessionValue.Found())
                XCTAssertEqual(try? store.lookup(bytes, now: 2000, retiring: false), .expired)
            }
            guard case .answer(let answer) = manager.decide(sessionID: Array(created.id.utf8), body: UnsafeRawBufferPointer(start: nil, count: 0), now: 2000) else {
                return XCTFail("not answered")
            }
            XCTAssertEqual(answer.outcome, .expired)
            XCTAssertTrue(answer.body.contains("session expired"), answer.body)
            Metrics.attach(nil)
        }
        XCTAssertEqual(slots[Metrics.expiredSlot], 1)
        XCTAssertFalse(FileSystem.isDirectory(store.directory(of: created.id)))
    }
}
