/// An exact sum of non-negative integers written in decimal (atomic token units: a uint256 fits no
/// SQL or Swift integer), kept as base-10⁹ limbs, least significant first. No floating point.
///
/// The SQL ledgers count the rows of each distinct amount; the totals are made here, with
/// ``add(_:times:)``.
public struct DecimalSum: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// 10⁹: one limb.
    static let base: UInt64 = 1_000_000_000
    /// Base-10⁹ limbs, least significant first, without leading zero limbs (zero is `[]`).
    private var limbs: [UInt64] = []

    public init() {}

    /// The value of `decimal` (ASCII digits only); nil for anything else, or an empty string.
    public init?(_ decimal: some StringProtocol) {
        guard add(decimal) else { return nil }
    }

    public var isZero: Bool { limbs.isEmpty }

    /// Adds `decimal` (ASCII digits). Returns false, adding nothing, when it is empty or holds anything else.
    @discardableResult
    public mutating func add(_ decimal: some StringProtocol) -> Bool {
        let digits = Array(decimal.utf8)
        guard !digits.isEmpty, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
        var end = digits.count
        var place = 0
        while end > 0 {
            let start = max(0, end - 9)
            var limb: UInt64 = 0
            for digit in digits[start..<end] { limb = limb * 10 + UInt64(digit - 0x30) }
            add(slice: limb, at: place)
            end = start
            place += 1
        }
        return true
    }

    /// Adds `value × 10^(9·place)`. `value` may be any UInt64 (carries go up as far as needed).
    public mutating func add(slice value: UInt64, at place: Int) {
        precondition(place >= 0)
        var carry = value
        var i = place
        while carry > 0 {
            while limbs.count <= i { limbs.append(0) }
            let sum = limbs[i] + carry % Self.base  // < 2·10⁹: no overflow
            limbs[i] = sum % Self.base
            carry = carry / Self.base + sum / Self.base
            i += 1
        }
    }

    public mutating func add(_ other: DecimalSum) {
        for (place, limb) in other.limbs.enumerated() { add(slice: limb, at: place) }
    }

    /// Adds `other × count` (an amount that a SQL group counted `count` times).
    public mutating func add(_ other: DecimalSum, times count: Int) {
        precondition(count >= 0)
        var remaining = UInt64(count)
        // limb (< 10⁹ < 2³⁰) × factor (< 2³²) < 2⁶²: no overflow.
        while remaining > 0 {
            let factor = min(remaining, UInt64(UInt32.max))
            for (place, limb) in other.limbs.enumerated() { add(slice: limb * factor, at: place) }
            remaining -= factor
        }
    }

    public static func + (lhs: DecimalSum, rhs: DecimalSum) -> DecimalSum {
        var sum = lhs
        sum.add(rhs)
        return sum
    }

    public static func < (lhs: DecimalSum, rhs: DecimalSum) -> Bool {
        if lhs.limbs.count != rhs.limbs.count { return lhs.limbs.count < rhs.limbs.count }
        for i in stride(from: lhs.limbs.count - 1, through: 0, by: -1) where lhs.limbs[i] != rhs.limbs[i] {
            return lhs.limbs[i] < rhs.limbs[i]
        }
        return false
    }

    /// Decimal digits, no leading zeros ("0" for zero).
    public var description: String {
        guard let top = limbs.last else { return "0" }
        var text = String(top)
        for limb in limbs.dropLast().reversed() {
            let digits = String(limb)
            text += String(repeating: "0", count: 9 - digits.count) + digits
        }
        return text
    }
}
