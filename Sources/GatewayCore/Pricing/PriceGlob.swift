/// A value pattern of a price rule (`is:`): `*` matches any run of characters (none included),
/// `?` exactly one, every other character itself; over the whole value, case-sensitive. There is
/// no escape: a rule cannot ask for a literal `*` or `?` other than through `?`.
///
/// Characters are Unicode scalars, compared as sent (no normalisation: a decomposed `é` is two
/// scalars, so `?` does not match it).
public struct PriceGlob: Sendable, Hashable, CustomStringConvertible {
    enum Token: Sendable, Hashable {
        case scalar(Unicode.Scalar)
        case one
        case any
    }

    let tokens: [Token]
    public let description: String

    public init(_ text: String) {
        description = text
        var tokens: [Token] = []
        for scalar in text.unicodeScalars {
            switch scalar {
            case "*": if tokens.last != .any { tokens.append(.any) }
            case "?": tokens.append(.one)
            default: tokens.append(.scalar(scalar))
            }
        }
        self.tokens = tokens
    }

    /// Whether the pattern matches every value (`*`).
    public var matchesEverything: Bool { tokens == [.any] }

    public func matches(_ value: String) -> Bool {
        var states = closure([0])
        for scalar in value.unicodeScalars {
            states = step(states, scalar)
            if states.isEmpty { return false }
        }
        return states.contains(tokens.count)
    }

    /// Whether every value `other` matches, this pattern matches too (decided exactly: a search of
    /// the product of both automata over the scalars either pattern names plus one stand-in for
    /// all the others).
    public func covers(_ other: PriceGlob) -> Bool {
        var alphabet = Set<Unicode.Scalar>()
        for case .scalar(let s) in tokens + other.tokens { alphabet.insert(s) }
        // A scalar neither pattern names: `?` and `*` treat every such scalar alike.
        var standIn = Unicode.Scalar(0xE000)!
        while alphabet.contains(standIn) { standIn = Unicode.Scalar(standIn.value + 1)! }
        alphabet.insert(standIn)
        struct Pair: Hashable {
            var mine: Set<Int>
            var theirs: Set<Int>
        }
        let start = Pair(mine: closure([0]), theirs: other.closure([0]))
        var seen: Set<Pair> = [start]
        var queue = [start]
        while let pair = queue.popLast() {
            if pair.theirs.contains(other.tokens.count) && !pair.mine.contains(tokens.count) { return false }
            for scalar in alphabet {
                let next = Pair(mine: step(pair.mine, scalar), theirs: other.step(pair.theirs, scalar))
                if next.theirs.isEmpty { continue }
                if seen.insert(next).inserted { queue.append(next) }
            }
        }
        return true
    }

    /// The positions reachable from `states` without reading anything (skipping `*`s).
    func closure(_ states: Set<Int>) -> Set<Int> {
        var out = states
        for state in states {
            var at = state
            while at < tokens.count, tokens[at] == .any {
                at += 1
                out.insert(at)
            }
        }
        return out
    }

    func step(_ states: Set<Int>, _ scalar: Unicode.Scalar) -> Set<Int> {
        var next = Set<Int>()
        for state in states where state < tokens.count {
            switch tokens[state] {
            case .any: next.insert(state)
            case .one: next.insert(state + 1)
            case .scalar(let s) where s == scalar: next.insert(state + 1)
            case .scalar: break
            }
        }
        return closure(next)
    }
}
