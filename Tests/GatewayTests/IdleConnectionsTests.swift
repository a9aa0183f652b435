import NIOCore
import Testing
import X402Facilitator

/// The client stack's one idle list (upstreams and facilitator), without sockets.
@Suite("Idle keep-alive connections")
struct IdleConnectionsTests {
    final class FakeConnection: IdleConnection {
        let origin: HTTPOrigin
        var isUsable = true
        var idleSince = NIODeadline.now()
        var idleTimeouts: [TimeAmount] = []
        var closed = false

        init(_ origin: HTTPOrigin) { self.origin = origin }

        func enterIdle(timeout: TimeAmount) {
            idleSince = .now()
            idleTimeouts.append(timeout)
        }

        func close() {
            closed = true
            isUsable = false
        }
    }

    static let a = HTTPOrigin(tls: false, authority: "127.0.0.1:8080")!
    static let b = HTTPOrigin(tls: true, authority: "api.example:443")!

    @Test("the most recently released connection of the origin comes back first; other origins are apart")
    func mostRecentFirst() {
        let list = IdleConnections<FakeConnection>(idleTimeout: .seconds(60), maxPerOrigin: 8)
        let (first, second, other) = (FakeConnection(Self.a), FakeConnection(Self.a), FakeConnection(Self.b))
        for connection in [first, second, other] { list.release(connection) }
        #expect(first.idleTimeouts == [.seconds(60)])
        #expect(list.acquire(Self.a) === second)
        #expect(list.acquire(Self.a) === first)
        #expect(list.acquire(Self.a) == nil)
        #expect(list.acquire(Self.b) === other)
    }

    @Test("at most maxPerOrigin idle per origin: the next released one is closed, not kept")
    func capped() {
        let list = IdleConnections<FakeConnection>(idleTimeout: .seconds(60), maxPerOrigin: 2)
        let connections = (0..<3).map { _ in FakeConnection(Self.a) }
        for connection in connections { list.release(connection) }
        #expect(list.count(Self.a) == 2)
        #expect(connections.map(\.closed) == [false, false, true])
        #expect(connections[2].idleTimeouts.isEmpty)
        list.release(FakeConnection(Self.b))
        #expect(list.count(Self.b) == 1)  // the cap is per origin
    }

    @Test("closed connections found on the way are dropped; an unusable one is never kept")
    func unusable() {
        let list = IdleConnections<FakeConnection>(idleTimeout: .seconds(60), maxPerOrigin: 8)
        let (good, gone) = (FakeConnection(Self.a), FakeConnection(Self.a))
        list.release(good)
        list.release(gone)
        gone.isUsable = false  // the server closed it while idle
        #expect(list.acquire(Self.a) === good)
        #expect(gone.closed)
        #expect(list.count(Self.a) == 0)
        let broken = FakeConnection(Self.a)
        broken.isUsable = false
        list.release(broken)
        #expect(broken.closed && list.count(Self.a) == 0)
    }

    @Test("with maxIdleAge, only a connection idle for less than that is taken; older ones stay")
    func maxIdleAge() {
        let list = IdleConnections<FakeConnection>(idleTimeout: .seconds(60), maxPerOrigin: 8)
        let old = FakeConnection(Self.a)
        list.release(old)
        old.idleSince = .now() - .seconds(5)
        #expect(list.acquire(Self.a, maxIdleAge: .seconds(2)) == nil)
        #expect(list.count(Self.a) == 1 && !old.closed)
        #expect(list.acquire(Self.a) === old)
    }

    @Test("remove forgets one connection; closeAll hands back every one and closes later releases")
    func removeAndCloseAll() {
        let list = IdleConnections<FakeConnection>(idleTimeout: .seconds(60), maxPerOrigin: 8)
        let (x, y, z) = (FakeConnection(Self.a), FakeConnection(Self.a), FakeConnection(Self.b))
        for connection in [x, y, z] { list.release(connection) }
        list.remove(x)
        #expect(list.count(Self.a) == 1)
        let all = list.closeAll()
        #expect(Set(all.map(ObjectIdentifier.init)) == Set([y, z].map(ObjectIdentifier.init)))
        #expect(list.acquire(Self.a) == nil && list.acquire(Self.b) == nil)
        let late = FakeConnection(Self.a)
        list.release(late)
        #expect(late.closed)
    }
}
