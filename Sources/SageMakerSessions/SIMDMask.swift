extension SIMDMask where Storage == SIMD16<Int8> {
    /// Whether any lane is set. `any(_:)` reduces the sixteen lanes one by
    /// one (about fourteen instructions, as much as the compares before
    /// it); the mask's two words or-ed tell it in three.
    @inline(__always)
    var isAnySet: Bool {
        let words = unsafeBitCast(self, to: SIMD2<UInt64>.self)
        return words[0] | words[1] != 0
    }
}
