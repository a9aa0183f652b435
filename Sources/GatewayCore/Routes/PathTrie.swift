/// A radix tree over the bytes of route path patterns: the routes of one host key and one case
/// mode (see ``RouteIndex``).
///
/// An edge is a run of literal bytes, a `:param` (one whole segment) or a `*` (any run of bytes,
/// `/` included, possibly empty); a route sits at the node its pattern ends at. A search follows
/// every edge the path allows and keeps the route earliest in file order, skipping any subtree
/// whose earliest route cannot beat what was found. Its cost depends on the path and the shape of
/// the patterns, not on how many routes there are.
///
/// Frozen after building: nodes are plain integers into shared byte and index pools, so a search
/// neither allocates nor retains.
struct PathTrie: Sendable {
    struct Node: Sendable {
        /// The literal bytes an edge into this node consumes (empty for the root, params and `*`).
        var labelStart: Int32 = 0
        var labelCount: Int32 = 0
        /// Literal children, sorted by the first byte of their label.
        var childrenStart: Int32 = 0
        var childrenCount: Int32 = 0
        var param: Int32 = -1
        var any: Int32 = -1
        /// Routes whose pattern ends here, in file order.
        var entriesStart: Int32 = 0
        var entriesCount: Int32 = 0
        /// The earliest route in this subtree.
        var earliest: Int32 = .max
    }

    /// A route that ends at a node.
    struct Entry: Sendable, Equatable {
        /// Position in the route table (file order).
        var route: Int32
        /// ``MethodFilter`` code of the route's method; 0 when it takes any method.
        var method: UInt16
    }

    let caseSensitive: Bool
    private let nodes: [Node]
    private let labels: [UInt8]
    private let childFirstBytes: [UInt8]
    private let children: [Int32]
    private let entries: [Entry]

    init(builder: Builder) {
        var nodes: [Node] = []
        var labels: [UInt8] = []
        var childFirstBytes: [UInt8] = []
        var children: [Int32] = []
        var entries: [Entry] = []
        nodes.reserveCapacity(builder.nodes.count)
        for built in builder.nodes {
            var node = Node()
            node.labelStart = Int32(labels.count)
            node.labelCount = Int32(built.label.count)
            labels.append(contentsOf: built.label)
            let sorted = built.children.sorted { builder.nodes[$0].label[0] < builder.nodes[$1].label[0] }
            node.childrenStart = Int32(children.count)
            node.childrenCount = Int32(sorted.count)
            for child in sorted {
                childFirstBytes.append(builder.nodes[child].label[0])
                children.append(Int32(child))
            }
            node.param = built.param.map(Int32.init) ?? -1
            node.any = built.any.map(Int32.init) ?? -1
            node.entriesStart = Int32(entries.count)
            node.entriesCount = Int32(built.entries.count)
            entries.append(contentsOf: built.entries)
            nodes.append(node)
        }
        func settleEarliest(_ i: Int) -> Int32 {
            var earliest = nodes[i].entriesCount > 0 ? entries[Int(nodes[i].entriesStart)].route : .max
            let start = Int(nodes[i].childrenStart)
            for child in children[start..<start + Int(nodes[i].childrenCount)] { earliest = min(earliest, settleEarliest(Int(child))) }
            if nodes[i].param >= 0 { earliest = min(earliest, settleEarliest(Int(nodes[i].param))) }
            if nodes[i].any >= 0 { earliest = min(earliest, settleEarliest(Int(nodes[i].any))) }
            nodes[i].earliest = earliest
            return earliest
        }
        _ = settleEarliest(0)
        self.caseSensitive = builder.caseSensitive
        self.nodes = nodes
        self.labels = labels
        self.childFirstBytes = childFirstBytes
        self.children = children
        self.entries = entries
    }

    /// Offers `collector` every route, earlier than its `limit`, whose pattern matches `path` and
    /// whose method `methods` admits. `path` is canonical without its trailing slash; it is case
    /// folded here when the trie is case-insensitive.
    func collect<C: RouteCollector>(path: UnsafeBufferPointer<UInt8>, methods: MethodFilter, into collector: inout C) {
        guard let root = nodes.first, root.earliest < collector.limit else { return }
        var explored: [Int32: Int] = [:]
        search(0, 0, path, methods, &collector, &explored)
    }

    /// `explored` holds, for each `*` node that is not a pattern's last piece, the lowest path
    /// position from which every split has been tried in this search: the same splits are never
    /// tried twice. Without it, a route such as `/a/*/b/*/c` made one request cost time growing with
    /// the path's length to the power of its stars (found by fuzzing, docs/reliability.md); with it,
    /// each such node is tried at each position at most once. Routes offered again would change
    /// nothing: a collector's limit only falls.
    private func search<C: RouteCollector>(
        _ index: Int32, _ position: Int, _ path: UnsafeBufferPointer<UInt8>, _ methods: MethodFilter, _ collector: inout C,
        _ explored: inout [Int32: Int]
    ) {
        let node = nodes[Int(index)]
        guard node.earliest < collector.limit else { return }
        let end = path.count
        if position == end {
            let start = Int(node.entriesStart)
            for entry in entries[start..<start + Int(node.entriesCount)] {
                guard entry.route < collector.limit else { break }
                if methods.admits(entry.method) { collector.found(entry.route) }
            }
        }
        if position < end, node.childrenCount > 0, let child = child(of: node, startingWith: fold(path[position])) {
            let label = nodes[Int(child)]
            let count = Int(label.labelCount)
            if end - position >= count && labelMatches(label, path, at: position) {
                search(child, position + count, path, methods, &collector, &explored)
            }
        }
        if node.param >= 0, position < end, path[position] != UInt8(ascii: "/") {
            var next = position + 1
            while next < end && path[next] != UInt8(ascii: "/") { next += 1 }
            search(node.param, next, path, methods, &collector, &explored)
        }
        if node.any >= 0 {
            let any = nodes[Int(node.any)]
            if any.childrenCount == 0 && any.param < 0 && any.any < 0 {
                // A trailing `*`: it takes the rest of the path.
                search(node.any, end, path, methods, &collector, &explored)
            } else {
                // Splits from `position` on; those from `done` on were tried by an earlier visit.
                let done = explored[node.any] ?? end + 1
                if position < done {
                    explored[node.any] = position
                    for next in position..<done { search(node.any, next, path, methods, &collector, &explored) }
                }
            }
        }
    }

    @inline(__always)
    private func fold(_ byte: UInt8) -> UInt8 { caseSensitive ? byte : RoutePattern.lower(byte) }

    private func child(of node: Node, startingWith byte: UInt8) -> Int32? {
        var low = Int(node.childrenStart)
        var high = low + Int(node.childrenCount)
        while low < high {
            let middle = (low + high) / 2
            let candidate = childFirstBytes[middle]
            if candidate == byte { return children[middle] }
            if candidate < byte { low = middle + 1 } else { high = middle }
        }
        return nil
    }

    private func labelMatches(_ node: Node, _ path: UnsafeBufferPointer<UInt8>, at position: Int) -> Bool {
        let start = Int(node.labelStart)
        for offset in 1..<max(1, Int(node.labelCount)) where labels[start + offset] != fold(path[position + offset]) {
            return false
        }
        return true
    }
}

extension PathTrie {
    /// Builds the tree route by route, in file order.
    struct Builder {
        struct Node {
            var label: [UInt8] = []
            var children: [Int] = []
            var param: Int?
            var any: Int?
            var entries: [Entry] = []
        }

        let caseSensitive: Bool
        /// Node 0 is the root.
        private(set) var nodes: [Node] = [Node()]

        init(caseSensitive: Bool) { self.caseSensitive = caseSensitive }

        mutating func insert(_ pattern: RoutePattern, _ entry: Entry) {
            var node = 0
            for piece in pattern.pieces {
                switch piece {
                case .literal(let bytes): node = insertLiteral(bytes[...], below: node)
                case .segment: node = nodes[node].param ?? append(Node(), to: \.param, of: node)
                case .any: node = nodes[node].any ?? append(Node(), to: \.any, of: node)
                }
            }
            nodes[node].entries.append(entry)
        }

        private mutating func append(_ child: Node, to edge: WritableKeyPath<Node, Int?>, of parent: Int) -> Int {
            nodes.append(child)
            nodes[parent][keyPath: edge] = nodes.count - 1
            return nodes.count - 1
        }

        private mutating func insertLiteral(_ bytes: ArraySlice<UInt8>, below parent: Int) -> Int {
            guard let first = bytes.first else { return parent }
            guard let child = nodes[parent].children.first(where: { nodes[$0].label[0] == first }) else {
                nodes.append(Node(label: Array(bytes)))
                nodes[parent].children.append(nodes.count - 1)
                return nodes.count - 1
            }
            let label = nodes[child].label
            var common = 1
            while common < label.count && common < bytes.count && label[common] == bytes[bytes.startIndex + common] { common += 1 }
            if common < label.count {
                // Split the edge: the child keeps the common prefix, a new node takes the rest and
                // everything that hung below the child.
                var tail = nodes[child]
                tail.label = Array(label[common...])
                nodes.append(tail)
                nodes[child] = Node(label: Array(label[..<common]), children: [nodes.count - 1])
            }
            return insertLiteral(bytes.dropFirst(common), below: child)
        }
    }
}

/// Receives the routes a ``PathTrie`` search finds.
protocol RouteCollector {
    /// Only routes before this position are wanted (a search skips subtrees without one).
    var limit: Int32 { get }
    mutating func found(_ route: Int32)
}

/// Which route methods a request method passes: a route without a method takes every request,
/// and a `GET` route also takes `HEAD`.
struct MethodFilter: Sendable {
    /// The request method's code, or ``unknown`` when no route names it.
    var code: UInt16
    /// The code of `GET` when the request is `HEAD` (0 otherwise, or when no route names `GET`).
    var getForHead: UInt16

    static let unknown = UInt16.max

    @inline(__always)
    func admits(_ method: UInt16) -> Bool {
        method == 0 || method == code || (getForHead != 0 && method == getForHead)
    }
}
