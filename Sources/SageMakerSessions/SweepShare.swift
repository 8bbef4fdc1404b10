import Glibc

/// Which of the sessions directory's entries one worker sweeps: those whose
/// name hashes to its number, so that every worker sweeps its own part of
/// each pass and no entry is swept by two.
///
/// Why: with one sweeping worker the pass slowed as workers were added
/// (100k expired sessions under load: 16.8 s with 1 worker, 26.7 s with 8),
/// since that worker's ticks got a smaller share of the cores. Shared, each
/// worker renames a 1/n part and the pass keeps its length. No worker
/// needs to know what another does: the hash decides, and a worker that
/// restarts takes up its number's part again.
public struct SweepShare: Equatable {
    /// This worker's number, from 0, and the number of workers.
    public let worker: Int
    public let workers: Int

    /// Out of range (a single process, or nothing said): one worker sweeps all.
    public init(worker: Int = 0, workers: Int = 1) {
        if workers > 1 && worker >= 0 && worker < workers {
            self.worker = worker
            self.workers = workers
        } else {
            self.worker = 0
            self.workers = 1
        }
    }

    /// Whether the entry named by these bytes (up to its NUL) is this
    /// worker's: FNV-1a of the name, read where `readdir` left it, so that
    /// another worker's entry costs no `String` and no system call.
    func owns(_ name: UnsafePointer<CChar>) -> Bool {
        guard workers > 1 else { return true }
        return Int(SweepShare.hash(name) % UInt64(workers)) == worker
    }

    static func hash(_ name: UnsafePointer<CChar>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        var p = name
        while p.pointee != 0 {
            h = (h ^ UInt64(UInt8(bitPattern: p.pointee))) &* 0x0000_0100_0000_01b3
            p += 1
        }
        return h
    }
}
