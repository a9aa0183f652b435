import NIOCore

/// A keep-alive client connection as ``IdleConnections`` keeps it.
package protocol IdleConnection: AnyObject {
    var origin: HTTPOrigin { get }
    /// Open, and not closed by this side.
    var isUsable: Bool { get }
    /// When it last went idle.
    var idleSince: NIODeadline { get }
    /// Starts its idle timer: once it runs out the connection removes itself and closes.
    func enterIdle(timeout: TimeAmount)
    func close()
}

/// The idle keep-alive connections of one event loop, by origin, most recently used last: the one
/// idle list of the HTTP/1 client stack, for upstream connections (`UpstreamConnections`) and
/// facilitator connections (``HTTP1Client``). At most ``maxPerOrigin`` are kept for each origin: a
/// burst's extra connections close when released instead of idling until ``idleTimeout``. Only
/// touched on its event loop.
package final class IdleConnections<Connection: IdleConnection> {
    package let idleTimeout: TimeAmount
    package let maxPerOrigin: Int
    private var idle: [HTTPOrigin: [Connection]] = [:]
    /// Set by ``closeAll()``: connections released later are closed.
    private var closed = false

    package init(idleTimeout: TimeAmount, maxPerOrigin: Int) {
        self.idleTimeout = idleTimeout
        self.maxPerOrigin = max(0, maxPerOrigin)
    }

    /// How many connections to `origin` are idle.
    package func count(_ origin: HTTPOrigin) -> Int { idle[origin]?.count ?? 0 }

    /// The most recently used open idle connection to `origin`, or nil. With `maxIdleAge`, only a
    /// connection idle for less than that (older ones stay for other requests). Closed ones found
    /// on the way are dropped.
    package func acquire(_ origin: HTTPOrigin, maxIdleAge: TimeAmount? = nil) -> Connection? {
        guard !closed else { return nil }
        // Mutated in place through the dictionary: a copy of the list taken out would make every
        // acquire copy the whole list (it is on every proxied request's path).
        while let connection = idle[origin]?.last {
            guard connection.isUsable else {
                idle[origin]?.removeLast()
                connection.close()
                continue
            }
            if let maxIdleAge, NIODeadline.now() - connection.idleSince >= maxIdleAge { return nil }
            idle[origin]?.removeLast()
            return connection
        }
        return nil
    }

    /// Keeps a connection whose exchange ended cleanly; closes it instead when the list is closed,
    /// the connection unusable, or ``maxPerOrigin`` connections to its origin idle already.
    package func release(_ connection: Connection) {
        guard !closed, connection.isUsable, count(connection.origin) < maxPerOrigin else {
            connection.close()
            return
        }
        connection.enterIdle(timeout: idleTimeout)
        idle[connection.origin, default: []].append(connection)
    }

    /// Forgets an idle connection that closed or expired.
    package func remove(_ connection: Connection) {
        idle[connection.origin]?.removeAll { $0 === connection }
    }

    /// Empties the list for good (later releases close their connection) and returns what it held,
    /// for the caller to close.
    package func closeAll() -> [Connection] {
        closed = true
        defer { idle = [:] }
        return Array(idle.values.joined())
    }
}
