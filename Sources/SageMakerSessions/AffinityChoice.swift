/// The replica a session without a home goes to: of those nginx may use now
/// (not down, not failed, not at max_conns, not tried already for this
/// request), the one with the fewest live sessions for its `weight`, so that
/// a replica of weight 2 holds twice the sessions. Replicas equally loaded
/// are taken in turn, `turn` being a counter every choice advances.
public enum AffinityChoice {
    public static func pick(count: Int, turn: UInt64, sessions: (Int) -> Int64, weight: (Int) -> Int64,
                            usable: (Int) -> Bool) -> Int? {
        var best: [Int] = []
        var bestSessions: Int64 = 0, bestWeight: Int64 = 1
        for i in 0..<max(count, 0) where usable(i) {
            let s = max(sessions(i), 0), w = max(weight(i), 1)
            if best.isEmpty {
                best = [i]
                (bestSessions, bestWeight) = (s, w)
                continue
            }
            // s / w against bestSessions / bestWeight, without division
            let (lhs, over1) = s.multipliedReportingOverflow(by: bestWeight)
            let (rhs, over2) = bestSessions.multipliedReportingOverflow(by: w)
            if over1 || over2 { continue }
            if lhs < rhs {
                best = [i]
                (bestSessions, bestWeight) = (s, w)
            } else if lhs == rhs {
                best.append(i)
            }
        }
        guard !best.isEmpty else { return nil }
        return best[Int(turn % UInt64(best.count))]
    }
}
