import Foundation
import GatewayTestSupport
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import X402
import X402Facilitator

#if canImport(Glibc)
import Glibc
#endif

/// The facilitator client's own HTTP/1.1 client against scripted servers on 127.0.0.1 port 0.
@Suite("Facilitator HTTP client", .timeLimit(.minutes(1)))
struct FacilitatorClientTests {
    static let verifyOK = #"{"isValid":true,"payer":"0x857b06519E91e3A54538791bDbb0E22373e36b66"}"#
    static let settleOK = #"{"success":true,"transaction":"0xabab","network":"eip155:84532"}"#
    static let supportedOK = #"{"kinds":[{"x402Version":2,"scheme":"exact","network":"eip155:84532"}]}"#
    static let payload = Array(#"{"x402Version":2,"payload":{"signature":"0x01"}}"#.utf8)
    static let requirements = Array(#"{"scheme":"exact","amount":"1000"}"#.utf8)

    static var logger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    static func fixture(_ name: String) throws -> String {
        try #require(Bundle.module.path(forResource: name, ofType: "pem", inDirectory: "Fixtures"))
    }

    /// A client on one event loop unless `group` says otherwise, so sequential calls share a pool.
    static func client(
        _ url: String, timeout: Duration = .seconds(10), connectTimeout: Duration = .seconds(2), headers: [String: String] = [:],
        caFile: String? = nil, group: (any EventLoopGroup)? = nil
    ) -> HTTPFacilitatorClient {
        HTTPFacilitatorClient(
            baseURL: url, headers: headers, timeout: timeout, connectTimeout: connectTimeout, caFile: caFile,
            eventLoopGroup: group ?? MultiThreadedEventLoopGroup.singleton.next(), logger: logger)
    }

    /// Answers verify, settle and supported like a facilitator that accepts everything.
    static let accepting: @Sendable (ScriptedHTTPServer.Request) -> ScriptedHTTPServer.Reply = { request in
        if request.uri.hasSuffix("/verify") { return .json(verifyOK) }
        if request.uri.hasSuffix("/settle") { return .json(settleOK) }
        if request.uri.hasSuffix("/supported") { return .json(supportedOK) }
        return .json("{}", status: 404)
    }

    static func withServer<T>(
        certificate: String? = nil, _ reply: @escaping @Sendable (ScriptedHTTPServer.Request) -> ScriptedHTTPServer.Reply = accepting,
        _ body: (ScriptedHTTPServer, Int) async throws -> T
    ) async throws -> T {
        // `certificate`: a fixture `NAME-cert.pem` served over TLS with its `NAME-key.pem`.
        let server = try certificate.map { name in
            try ScriptedHTTPServer(certificateFile: try fixture(name + "-cert"), keyFile: try fixture(name + "-key"), reply: reply)
        } ?? ScriptedHTTPServer(reply: reply)
        let port = try await server.start()
        do {
            let result = try await body(server, port)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    static func failure<T>(_ call: () async throws(FacilitatorFailure) -> T) async -> FacilitatorFailure? {
        do throws(FacilitatorFailure) {
            _ = try await call()
            return nil
        } catch {
            return error
        }
    }

    // MARK: Happy path and framing

    @Test("verify, settle and supported: request line, fixed headers, body spliced byte for byte, answers decoded")
    func happyPath() async throws {
        try await Self.withServer { server, port in
            let client = Self.client("http://127.0.0.1:\(port)/facilitator/", headers: ["Authorization": "Bearer t", "Content-Length": "9"])
            let verified = try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements)
            #expect(verified == VerifyResponse(isValid: true, payer: "0x857b06519E91e3A54538791bDbb0E22373e36b66"))
            let settled = try await client.settle(version: 1, paymentPayload: Self.payload, requirements: Self.requirements)
            #expect(settled.success && settled.transaction == "0xabab")
            let supported = try await client.supported()
            #expect(supported.kinds.first?.network == "eip155:84532")
            await client.shutdown()

            let requests = server.requests
            #expect(requests.map(\.method) == ["POST", "POST", "GET"])
            #expect(requests.map(\.uri) == ["/facilitator/verify", "/facilitator/settle", "/facilitator/supported"])
            let expectedBody = #"{"x402Version":2,"paymentPayload":"# + String(decoding: Self.payload, as: UTF8.self)
                + #","paymentRequirements":"# + String(decoding: Self.requirements, as: UTF8.self) + "}"
            #expect(String(decoding: requests[0].body, as: UTF8.self) == expectedBody)
            #expect(String(decoding: requests[1].body, as: UTF8.self).hasPrefix(#"{"x402Version":1,"#))
            #expect(requests[0].header("Host") == "127.0.0.1:\(port)")
            #expect(requests[0].header("Content-Type") == "application/json")
            #expect(requests[0].header("Content-Length") == String(expectedBody.utf8.count))
            #expect(requests[0].header("User-Agent") == "x402-gateway")
            #expect(requests.allSatisfy { $0.header("Authorization") == "Bearer t" })
            #expect(requests[2].header("Content-Length") == nil)
            #expect(requests[2].body.isEmpty)
        }
    }

    @Test("against the fake facilitator (Hummingbird): verify and settle answers, supported kinds")
    func fakeFacilitator() async throws {
        let facilitator = FakeFacilitator()
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        try await TestHarness.withRunning(facilitator.application { portSink.yield($0) }, logger: Self.logger) {
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            let client = Self.client("http://127.0.0.1:\(port)")
            let verified = try await client.verify(version: 2, paymentPayload: Array("{}".utf8), requirements: Array("{}".utf8))
            #expect(verified == VerifyResponse(isValid: false, invalidReason: "invalid_payload"))
            let settled = try await client.settle(version: 2, paymentPayload: Array("{}".utf8), requirements: Array("{}".utf8))
            #expect(!settled.success && settled.errorReason == "invalid_payload")
            let kinds = try await client.supported().kinds
            #expect(kinds.map(\.scheme) == ["exact", "upto", "exact"])
            #expect(kinds[1].extra?["facilitatorAddress"] == .string(FakeFacilitator.address))
            #expect(facilitator.verifyCalls == 1 && facilitator.settleCalls == 1)
            await client.shutdown()
        }
    }

    // MARK: Connections

    @Test("sequential calls on one event loop share one keep-alive connection")
    func keepAlive() async throws {
        try await Self.withServer { server, port in
            let client = Self.client("http://127.0.0.1:\(port)")
            for _ in 0..<10 { _ = try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements) }
            for _ in 0..<5 { _ = try await client.settle(version: 2, paymentPayload: Self.payload, requirements: Self.requirements) }
            _ = try await client.supported()
            #expect(server.connectionCount == 1)
            #expect(server.requests.map(\.indexOnConnection) == Array(1...16))
            await client.shutdown()
        }
    }

    @Test("concurrent calls on the whole event loop group all succeed, and their connections are reused afterwards")
    func concurrent() async throws {
        try await Self.withServer { server, port in
            let client = Self.client("http://127.0.0.1:\(port)", group: MultiThreadedEventLoopGroup.singleton)
            let calls = 32
            let ok = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<calls {
                    group.addTask {
                        if i % 2 == 0 {
                            return try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements).isValid
                        }
                        return try await client.settle(version: 2, paymentPayload: Self.payload, requirements: Self.requirements).success
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(ok == calls)
            let opened = server.connectionCount
            #expect(opened >= 1 && opened <= calls)
            for _ in 0..<8 { _ = try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements) }
            #expect(server.connectionCount == opened)
            await client.shutdown()
        }
    }

    @Test("the server closing idle pooled connections between calls: the next calls still succeed, on a new connection")
    func serverClosesIdle() async throws {
        try await Self.withServer { server, port in
            let client = Self.client("http://127.0.0.1:\(port)")
            _ = try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements)
            await server.closeConnections()
            _ = try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements)
            #expect(server.connectionCount == 2)
            await server.closeConnections()
            _ = try await client.supported()
            #expect(server.connectionCount == 3)
            await client.shutdown()
        }
    }

    @Test("a reused connection the server drops unanswered: verify is sent once more on a fresh connection, settle never")
    func staleConnection() async throws {
        // Answers the first request of each connection and drops the connection on the second.
        try await Self.withServer({ request in
            request.indexOnConnection > 1 ? .close : Self.accepting(request)
        }) { server, port in
            let client = Self.client("http://127.0.0.1:\(port)")
            _ = try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements)
            let again = try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements)
            #expect(again.isValid)
            #expect(server.requests.map { [$0.connection, $0.indexOnConnection] } == [[1, 1], [1, 2], [2, 1]])

            // Connection 2 is idle and fresh: settle takes it, the server drops it, and settle is not repeated.
            let failure = await Self.failure { () async throws(FacilitatorFailure) in
                try await client.settle(version: 2, paymentPayload: Self.payload, requirements: Self.requirements)
            }
            guard case .unreachable = failure else {
                Issue.record("expected .unreachable, got \(String(describing: failure))")
                return
            }
            #expect(server.requests.filter { $0.uri == "/settle" }.count == 1)
            await client.shutdown()
        }
    }

    @Test("shutdown closes idle connections; later calls fail .unreachable")
    func shutdown() async throws {
        try await Self.withServer { server, port in
            let client = Self.client("http://127.0.0.1:\(port)")
            _ = try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements)
            #expect(server.openConnectionCount == 1)
            await client.shutdown()
            await server.waitUntilConnectionsClosed()
            #expect(server.openConnectionCount == 0)
            let failure = await Self.failure { () async throws(FacilitatorFailure) in try await client.supported() }
            guard case .unreachable = failure else {
                Issue.record("expected .unreachable, got \(String(describing: failure))")
                return
            }
        }
    }

    // MARK: Failures

    @Test("a server that never answers: .timeout after the call's deadline, and the next call works on a new connection")
    func timeout() async throws {
        let hang = Atomic<Bool>(true)
        try await Self.withServer({ request in
            hang.load(ordering: .relaxed) ? .never : Self.accepting(request)
        }) { server, port in
            // 2 s: the call after the timeout must be answered within it in a loaded run too (1 s was not).
            let client = Self.client("http://127.0.0.1:\(port)", timeout: .seconds(2))
            let start = ContinuousClock.now
            let failure = await Self.failure { () async throws(FacilitatorFailure) in
                try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements)
            }
            #expect(failure == .timeout)
            #expect(ContinuousClock.now - start < .seconds(8))
            hang.store(false, ordering: .relaxed)
            let answer2 = try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements).isValid
            #expect(answer2)
            #expect(server.connectionCount == 2)
            await client.shutdown()
        }
    }

    @Test("cancelling the calling task ends the call at once")
    func cancellation() async throws {
        let (arrivals, arrived) = AsyncStream<Void>.makeStream()
        try await Self.withServer({ _ in
            arrived.yield()
            return .never
        }) { _, port in
            let client = Self.client("http://127.0.0.1:\(port)", timeout: .seconds(60))
            let call = Task { () -> FacilitatorFailure? in
                await Self.failure { () async throws(FacilitatorFailure) in try await client.supported() }
            }
            var iterator = arrivals.makeAsyncIterator()
            _ = await iterator.next()
            call.cancel()
            guard case .unreachable = await call.value else {
                Issue.record("expected .unreachable")
                return
            }
            await client.shutdown()
        }
    }

    /// A port bound on 127.0.0.1 but not listening (connections to it are refused), held until `close(fd)`,
    /// so no other test's server can take it meanwhile.
    static func refusingPort() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        try #require(bound)
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    @Test("a port nobody listens on is .unreachable")
    func closedPort() async throws {
        let (fd, port) = try Self.refusingPort()
        defer { close(fd) }
        let client = Self.client("http://127.0.0.1:\(port)")
        let failure = await Self.failure { () async throws(FacilitatorFailure) in
            try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements)
        }
        guard case .unreachable = failure else {
            Issue.record("expected .unreachable, got \(String(describing: failure))")
            return
        }
        await client.shutdown()
    }

    @Test("base URLs: http(s), host or IPv4/IPv6 literal, optional port and path; nothing else")
    func urls() {
        for url in ["https://x402.org/facilitator", "http://127.0.0.1:8080", "http://[::1]:9000/f/", "HTTPS://Example.COM:443"] {
            #expect(HTTPFacilitatorClient.accepts(url: url), "\(url)")
        }
        for url in ["ftp://x", "https://", "https://user@host", "https://host:0", "https://host:99999", "https://host:", "https://ho st",
                    "https://host/a b", "https://host?x=1", "https://host/#f", "http://[::1", "http://[zz]:80", "x402.org"] {
            #expect(!HTTPFacilitatorClient.accepts(url: url), "\(url)")
        }
    }

    @Test("an invalid base URL fails every call .unreachable")
    func invalidURL() async {
        let client = Self.client("ftp://example.com")
        let failure = await Self.failure { () async throws(FacilitatorFailure) in try await client.supported() }
        #expect(failure == .unreachable("invalid facilitator URL \"ftp://example.com\""))
    }

    @Test("non-2xx answers are .httpStatus, a 2xx that is not the JSON expected is .malformedResponse; the connection stays usable",
          arguments: [
              (ScriptedHTTPServer.Reply.json(#"{"error":"boom"}"#, status: 500), FacilitatorFailure.httpStatus(500)),
              (.json("{}", status: 401), .httpStatus(401)),
              (.respond(status: 302, headers: [("Location", "/elsewhere")]), .httpStatus(302)),
              (.respond(status: 304), .httpStatus(304)),
              (.json("this is not json"), .malformedResponse),
              (.json(#"{"isValid":"yes"}"#), .malformedResponse),
              (.respond(status: 204), .malformedResponse),
          ])
    func statusAndBody(reply: ScriptedHTTPServer.Reply, expected: FacilitatorFailure) async throws {
        try await Self.failsThenRecovers(first: reply, expected: expected, connections: 1)
    }

    /// The first call gets `first` and fails with `expected`; the next one is answered and succeeds,
    /// having used `connections` connections in all.
    static func failsThenRecovers(first: ScriptedHTTPServer.Reply, expected: FacilitatorFailure, connections: Int) async throws {
        let pending = Atomic<Bool>(true)
        try await Self.withServer({ request in
            pending.exchange(false, ordering: .relaxed) ? first : Self.accepting(request)
        }) { server, port in
            let client = Self.client("http://127.0.0.1:\(port)")
            let failure = await Self.failure { () async throws(FacilitatorFailure) in
                try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements)
            }
            #expect(failure == expected)
            let answer = try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements).isValid
            #expect(answer)
            #expect(server.connectionCount == connections)
            await client.shutdown()
        }
    }

    @Test("answers over 1 MiB are refused: 2xx → .malformedResponse, others → .httpStatus; the next call opens a new connection",
          arguments: [
              (ScriptedHTTPServer.Reply.respond(status: 200, headers: [("Content-Type", "application/json")],
                                                body: Array(repeating: 0x20, count: (1 << 20) + 1)), FacilitatorFailure.malformedResponse),
              (.respond(status: 200, headers: [("Transfer-Encoding", "chunked")], body: Array(repeating: 0x20, count: (1 << 20) + 100)),
               .malformedResponse),
              (.respond(status: 503, headers: [("Transfer-Encoding", "chunked")], body: Array(repeating: 0x20, count: (1 << 20) + 100)),
               .httpStatus(503)),
          ])
    func oversized(reply: ScriptedHTTPServer.Reply, expected: FacilitatorFailure) async throws {
        try await Self.failsThenRecovers(first: reply, expected: expected, connections: 2)
    }

    @Test("an answer of exactly 1 MiB is accepted")
    func atTheLimit() async throws {
        var text = Array(Self.verifyOK.utf8)
        text.append(contentsOf: Array(repeating: 0x20, count: (1 << 20) - text.count))
        let body = text
        try await Self.withServer({ _ in .respond(status: 200, body: body) }) { _, port in
            let client = Self.client("http://127.0.0.1:\(port)")
            let answer5 = try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements).isValid
            #expect(answer5)
            await client.shutdown()
        }
    }

    // MARK: Redirects

    @Test("307 and 308 are followed with the same method and body (relative and absolute Location); other hosts lose the configured headers")
    func redirects() async throws {
        try await Self.withServer { target, targetPort in
            try await Self.withServer({ request in
                switch request.uri {
                case "/old/verify": return .respond(status: 307, headers: [("Location", "/new/verify")])
                case "/old/settle": return .respond(status: 308, headers: [("Location", "http://localhost:\(targetPort)/moved/settle")])
                case "/old/supported": return .respond(status: 308, headers: [("Location", "supported-v2")])
                case "/old/supported-v2": return .respond(status: 307, headers: [("Location", "http://127.0.0.1:\(targetPort)/s")])
                default: return Self.accepting(request)
                }
            }) { origin, port in
                let client = Self.client("http://127.0.0.1:\(port)/old", headers: ["X-Api-Key": "secret"])
                let answer6 = try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements).isValid
                #expect(answer6)
                let answer7 = try await client.settle(version: 2, paymentPayload: Self.payload, requirements: Self.requirements).success
                #expect(answer7)
                _ = try? await client.supported()
                await client.shutdown()

                let first = origin.requests
                #expect(first.map(\.uri) == ["/old/verify", "/new/verify", "/old/settle", "/old/supported", "/old/supported-v2"])
                #expect(first[1].method == "POST" && first[1].body == first[0].body)
                #expect(first.allSatisfy { $0.header("X-Api-Key") == "secret" })
                let moved = target.requests
                #expect(moved.map(\.uri) == ["/moved/settle", "/s"])
                #expect(moved[0].method == "POST" && moved[0].body == first[2].body)
                #expect(moved[0].header("Host") == "localhost:\(targetPort)")
                #expect(moved[0].header("X-Api-Key") == nil)  // another host name
                #expect(moved[1].header("X-Api-Key") == "secret")  // the configured host again
            }
        }
    }

    @Test("at most 3 redirect hops are followed")
    func redirectLimit() async throws {
        try await Self.withServer({ request in
            .respond(status: 307, headers: [("Location", request.uri + "x")])
        }) { server, port in
            let client = Self.client("http://127.0.0.1:\(port)")
            let failure = await Self.failure { () async throws(FacilitatorFailure) in try await client.supported() }
            #expect(failure == .httpStatus(307))
            #expect(server.requests.map(\.uri) == ["/supported", "/supportedx", "/supportedxx", "/supportedxxx"])
            await client.shutdown()
        }
    }

    // MARK: TLS

    @Test("https with an explicitly trusted self-signed certificate for localhost: calls succeed over one connection")
    func tls() async throws {
        try await Self.withServer(certificate: "localhost") { server, port in
            let client = Self.client("https://localhost:\(port)/f", caFile: try Self.fixture("localhost-cert"))
            let answer8 = try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements).isValid
            #expect(answer8)
            let answer9 = try await client.settle(version: 2, paymentPayload: Self.payload, requirements: Self.requirements).success
            #expect(answer9)
            let answer10 = try await client.supported().kinds.count == 1
            #expect(answer10)
            #expect(server.connectionCount == 1)
            #expect(server.requests.map(\.uri) == ["/f/verify", "/f/settle", "/f/supported"])
            #expect(server.requests[0].header("Host") == "localhost:\(port)")
            await client.shutdown()
        }
    }

    @Test("https refuses a certificate the system roots do not trust, and one for another host name", arguments: [false, true])
    func tlsRefused(trustIt: Bool) async throws {
        try await Self.withServer(certificate: "localhost") { server, port in
            // Trusted but for "localhost" only, reached as 127.0.0.1; or for the right name but untrusted.
            let client = trustIt
                ? Self.client("https://127.0.0.1:\(port)", caFile: try Self.fixture("localhost-cert"))
                : Self.client("https://localhost:\(port)")
            let failure = await Self.failure { () async throws(FacilitatorFailure) in
                try await client.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements)
            }
            guard case .unreachable = failure else {
                Issue.record("expected .unreachable, got \(String(describing: failure))")
                return
            }
            #expect(server.requests.isEmpty)
            await client.shutdown()
        }
    }

    @Test("redirects: http → https is followed, https → http is refused")
    func tlsRedirects() async throws {
        try await Self.withServer(certificate: "localhost", { request in
            request.uri == "/down/verify" ? .respond(status: 307, headers: [("Location", "http://127.0.0.1:1/verify")]) : Self.accepting(request)
        }) { secure, securePort in
            try await Self.withServer({ _ in
                .respond(status: 308, headers: [("Location", "https://localhost:\(securePort)/up/verify")])
            }) { plain, plainPort in
                let up = Self.client("http://127.0.0.1:\(plainPort)", caFile: try Self.fixture("localhost-cert"))
                let answer11 = try await up.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements).isValid
                #expect(answer11)
                #expect(plain.requests.count == 1 && secure.requests.map(\.uri) == ["/up/verify"])
                await up.shutdown()

                let down = Self.client("https://localhost:\(securePort)/down", caFile: try Self.fixture("localhost-cert"))
                let failure = await Self.failure { () async throws(FacilitatorFailure) in
                    try await down.verify(version: 2, paymentPayload: Self.payload, requirements: Self.requirements)
                }
                #expect(failure == .httpStatus(307))
                await down.shutdown()
            }
        }
    }
}
