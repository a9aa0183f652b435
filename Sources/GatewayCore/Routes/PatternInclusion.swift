/// Whether one path pattern matches every request path another matches, decided exactly: a
/// breadth-first search over the product of both patterns' automata and the automaton of request
/// paths, which either proves inclusion or returns the shortest path that shows otherwise.
///
/// Request paths are modelled by ``PathShape`` (canonical form as the matcher sees it). Which
/// bytes a percent-escape encodes is not modelled, so an inclusion that holds only because some
/// escape can never occur in a request is not found (the route is then not reported); no
/// inclusion between ordinary patterns depends on that.
///
/// The alphabet is reduced to what the automata can tell apart: every byte in either pattern's
/// literals, `/`, `.`, `%`, and one stand-in for each class of the other bytes.
package enum PatternInclusion {
    /// A request path `inner` matches and `outer` does not, or nil when there is none (every
    /// path `inner` matches, `outer` matches too). Methods and hosts are not considered.
    package static func counterexample(inner: RoutePattern, outer: RoutePattern) -> [UInt8]? {
        let innerNFA = PatternAutomaton(inner), outerNFA = PatternAutomaton(outer)
        // Escapes are upper-case hex, unless both patterns see the path lower-cased.
        let lowerCaseHex = !inner.caseSensitive && !outer.caseSensitive
        let alphabet = Self.alphabet(inner, outer, lowerCaseHex: lowerCaseHex)

        struct State: Hashable {
            var inner: PatternAutomaton.States
            var outer: PatternAutomaton.States
            var path: PathShape
        }
        var states = [State(inner: innerNFA.start, outer: outerNFA.start, path: .start)]
        var parents: [(state: Int, byte: UInt8)] = [(-1, 0)]
        var seen: Set<State> = [states[0]]
        var next = 0
        while next < states.count {
            let state = states[next]
            if state.path.isComplete && innerNFA.accepts(state.inner) && !outerNFA.accepts(state.outer) {
                var path: [UInt8] = []
                var at = next
                while parents[at].state >= 0 {
                    path.append(parents[at].byte)
                    at = parents[at].state
                }
                return path.reversed()
            }
            for byte in alphabet {
                guard let shape = state.path.after(byte, lowerCaseHex: lowerCaseHex) else { continue }
                let inner = innerNFA.step(state.inner, byte)
                guard !inner.isEmpty else { continue }
                let successor = State(inner: inner, outer: outerNFA.step(state.outer, byte), path: shape)
                if seen.insert(successor).inserted {
                    states.append(successor)
                    parents.append((next, byte))
                }
            }
            next += 1
        }
        return nil
    }

    /// Whether `outer` matches every request path `inner` matches.
    package static func includes(_ outer: RoutePattern, _ inner: RoutePattern) -> Bool {
        counterexample(inner: inner, outer: outer) == nil
    }

    /// Request bytes that stand for every class of bytes the two patterns and ``PathShape`` tell
    /// apart: each literal byte, `/`, `.`, `%`, one hex digit and one other byte no literal
    /// mentions. A case-insensitive pattern sees bytes lower-cased: when both are, lower-case bytes
    /// suffice (every path has a lower-case twin both treat alike); when only one is, both cases
    /// of each literal letter are needed.
    private static func alphabet(_ a: RoutePattern, _ b: RoutePattern, lowerCaseHex: Bool) -> [UInt8] {
        let mixed = a.caseSensitive != b.caseSensitive
        var bytes: Set<UInt8> = [UInt8(ascii: "/"), UInt8(ascii: "."), UInt8(ascii: "%")]
        for pattern in [a, b] {
            for case .literal(let literal) in pattern.pieces {
                for byte in literal {
                    bytes.insert(byte)
                    if mixed, let other = otherCase(byte) { bytes.insert(other) }
                }
            }
        }
        func unused(_ byte: UInt8) -> Bool {
            !bytes.contains(byte) && !(otherCase(byte).map(bytes.contains) ?? false)
                && !(lowerCaseHex && (0x41...0x5A).contains(byte))
        }
        let hexDigits = Array((lowerCaseHex ? "0123456789abcdef" : "0123456789ABCDEF").utf8)
        if let hex = hexDigits.first(where: unused) { bytes.insert(hex) }
        let others = Array("qzxjkvwy-_~".utf8) + Array(0x21...0x7E)
        if let other = others.first(where: { unused($0) && !PathShape.isHex($0, lowerCase: lowerCaseHex) && !Self.unsafe.contains($0) }) {
            bytes.insert(other)
        }
        return bytes.sorted()
    }

    /// Bytes a request path never holds (``CanonicalPath`` refuses them or splits the query off).
    private static let unsafe: Set<UInt8> = [UInt8(ascii: "#"), UInt8(ascii: "\\"), UInt8(ascii: ";"), UInt8(ascii: "?")]

    private static func otherCase(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x41...0x5A: return byte + 32
        case 0x61...0x7A: return byte - 32
        default: return nil
        }
    }
}
