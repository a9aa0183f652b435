/// A path pattern as a nondeterministic automaton over bytes: one state per position in the
/// pattern, `:param` as one non-`/` byte then any number more, `*` as a loop on any byte.
struct PatternAutomaton {
    enum Atom {
        case byte(UInt8)
        case nonSlash
        case nonSlashLoop
        case anyLoop
    }

    /// A set of positions, as a bit set.
    struct States: Hashable {
        var words: [UInt64]

        var isEmpty: Bool { words.allSatisfy { $0 == 0 } }

        func contains(_ i: Int) -> Bool { words[i >> 6] & (1 << UInt64(i & 63)) != 0 }

        mutating func insert(_ i: Int) { words[i >> 6] |= 1 << UInt64(i & 63) }
    }

    let atoms: [Atom]
    let caseSensitive: Bool
    private(set) var start: States

    init(_ pattern: RoutePattern) {
        var atoms: [Atom] = []
        for piece in pattern.pieces {
            switch piece {
            case .literal(let bytes): atoms += bytes.map(Atom.byte)
            case .segment: atoms += [.nonSlash, .nonSlashLoop]
            case .any: atoms.append(.anyLoop)
            }
        }
        self.atoms = atoms
        self.caseSensitive = pattern.caseSensitive
        var start = States(words: Array(repeating: 0, count: atoms.count / 64 + 1))
        start.insert(0)
        self.start = start
        self.start = closure(start)
    }

    func accepts(_ states: States) -> Bool { states.contains(atoms.count) }

    /// The positions reached from `states` by reading `byte` (a raw request byte).
    func step(_ states: States, _ byte: UInt8) -> States {
        let byte = caseSensitive ? byte : RoutePattern.lower(byte)
        var next = States(words: Array(repeating: 0, count: states.words.count))
        for position in 0..<atoms.count where states.contains(position) {
            switch atoms[position] {
            case .byte(let expected): if expected == byte { next.insert(position + 1) }
            case .nonSlash: if byte != UInt8(ascii: "/") { next.insert(position + 1) }
            case .nonSlashLoop: if byte != UInt8(ascii: "/") { next.insert(position) }
            case .anyLoop: next.insert(position)
            }
        }
        return closure(next)
    }

    /// Adds the positions after loops (a loop may match nothing).
    private func closure(_ states: States) -> States {
        var states = states
        for position in 0..<atoms.count where states.contains(position) {
            switch atoms[position] {
            case .nonSlashLoop, .anyLoop: states.insert(position + 1)
            case .byte, .nonSlash: break
            }
        }
        return states
    }
}
