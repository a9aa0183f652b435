import GatewayCore
import NIOCore
import Synchronization

/// Counts the main listener's open client connections, in total and per client address, and
/// admits a new one only under `limits.maxConnections` and `limits.maxConnectionsPerClient` (read
/// from the configuration in force when the connection opens, so a reload changes them). A refused
/// connection is answered 503 by its ``GatewayHandler`` and closed; it never counts.
///
/// A client is an IPv4 address or an IPv6 /64 (one host usually holds a whole /64). Only the TCP
/// peer counts: behind a load balancer every connection has the balancer's address, which is why
/// the per-client bound is off by default.
package final class ConnectionLimiter: Sendable {
    package enum Admission: Equatable, Sendable {
        case admitted(ClientKey?)
        /// `limits.maxConnections` connections are open.
        case instanceFull
        /// `limits.maxConnectionsPerClient` connections are open from this client.
        case clientFull
    }

    /// A client address as the per-client bound groups it.
    package struct ClientKey: Hashable, Sendable {
        var high: UInt64
        var low: UInt64

        package init?(_ address: SocketAddress?) {
            // The address bytes, read from the sockaddr structures by their fixed Linux/BSD layout
            // (family and port first: 4 bytes; IPv6 then has 4 bytes of flow information).
            func bytes<T>(of value: T, _ range: Range<Int>) -> UInt64 {
                withUnsafeBytes(of: value) { raw in raw[range].reduce(0) { $0 << 8 | UInt64($1) } }
            }
            switch address {
            case .v4(let a): self.init(high: 0xFFFF, low: bytes(of: a.address, 4..<8))
            case .v6(let a): self.init(high: bytes(of: a.address, 8..<16), low: 1)
            case .unixDomainSocket, nil: return nil
            }
        }

        init(high: UInt64, low: UInt64) {
            self.high = high
            self.low = low
        }
    }

    private let total = Atomic<Int>(0)
    private let perClient = Mutex<[ClientKey: Int]>([:])

    package init() {}

    /// The connections open now.
    package var open: Int { total.load(ordering: .relaxed) }

    /// Admits a connection from `peer` under `limits`; an admitted one must be ``release(_:)``d once.
    package func admit(_ peer: SocketAddress?, limits: Limits) -> Admission {
        let count = total.wrappingAdd(1, ordering: .relaxed).newValue
        if let max = limits.maxConnections, count > max {
            total.wrappingSubtract(1, ordering: .relaxed)
            return .instanceFull
        }
        guard let max = limits.maxConnectionsPerClient, let key = ClientKey(peer) else { return .admitted(nil) }
        let admitted = perClient.withLock { counts in
            let n = counts[key, default: 0]
            guard n < max else { return false }
            counts[key] = n + 1
            return true
        }
        guard admitted else {
            total.wrappingSubtract(1, ordering: .relaxed)
            return .clientFull
        }
        return .admitted(key)
    }

    /// An admitted connection closed.
    package func release(_ admission: Admission) {
        guard case .admitted(let key) = admission else { return }
        total.wrappingSubtract(1, ordering: .relaxed)
        guard let key else { return }
        perClient.withLock { counts in
            let n = counts[key, default: 1] - 1
            counts[key] = n > 0 ? n : nil
        }
    }
}
