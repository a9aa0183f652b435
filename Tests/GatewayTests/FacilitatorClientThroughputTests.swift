import AsyncHTTPClient
import Foundation
import GatewayTestSupport
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing
import X402
import X402Facilitator

#if canImport(Glibc)
import Glibc
#endif

/// A probe, off by default and never asserting on time: sequential verify calls through the
/// facilitator client against local servers, the NIO HTTP/1.1 client next to the AsyncHTTPClient
/// path it replaced. Run it in a release build:
///   X402_FACILITATOR_BENCH=1 swift test -c release --filter FacilitatorClientThroughput
@Suite("Facilitator client throughput probe", .serialized, .enabled(if: ProcessInfo.processInfo.environment["X402_FACILITATOR_BENCH"] != nil))
struct FacilitatorClientThroughputTests {
    static let payload = Array(#"{"x402Version":2,"accepted":{"scheme":"exact","network":"eip155:84532"},"payload":{"signature":"0x01","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"1000","validAfter":"0","validBefore":"9999999999","nonce":"0x01"}}}"#.utf8)
    static let requirements = Array(#"{"scheme":"exact","network":"eip155:84532","amount":"1000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":300,"extra":{"name":"USDC","version":"2"}}"#.utf8)

    static var logger: Logger {
        var logger = Logger(label: "bench")
        logger.logLevel = .critical
        return logger
    }

    /// Process CPU time (user + system) in microseconds: the client's and the local server's.
    static func cpuMicroseconds() -> Double {
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        let user = Double(usage.ru_utime.tv_sec) * 1e6 + Double(usage.ru_utime.tv_usec)
        let system = Double(usage.ru_stime.tv_sec) * 1e6 + Double(usage.ru_stime.tv_usec)
        return user + system
    }

    static func measure(_ label: String, calls: Int, _ facilitator: any Facilitator) async throws {
        for _ in 0..<300 { _ = try await facilitator.verify(version: 2, paymentPayload: payload, requirements: requirements) }
        let clock = ContinuousClock()
        let cpuBefore = cpuMicroseconds()
        let elapsed = try await clock.measure {
            for _ in 0..<calls { _ = try await facilitator.verify(version: 2, paymentPayload: payload, requirements: requirements) }
        }
        let cpu = cpuMicroseconds() - cpuBefore
        let wall = (Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12) / Double(calls)
        print("\(label): \(String(format: "%.1f", wall)) µs/call wall, \(String(format: "%.1f", cpu / Double(calls))) µs/call CPU (client + server)")
    }

    static func compare(_ server: String, url: String) async throws {
        let calls = Int(ProcessInfo.processInfo.environment["X402_FACILITATOR_BENCH_CALLS"] ?? "") ?? 5000
        let group = MultiThreadedEventLoopGroup.singleton
        let new = HTTPFacilitatorClient(baseURL: url, headers: [:], timeout: .seconds(10), eventLoopGroup: group, logger: logger)
        let old = LegacyAsyncHTTPClientFacilitator(baseURL: url, timeout: .seconds(10), eventLoopGroup: group, logger: logger)
        // X402_FACILITATOR_BENCH_CLIENT=new (or old) measures one client only, e.g. under a profiler.
        let only = ProcessInfo.processInfo.environment["X402_FACILITATOR_BENCH_CLIENT"]
        for round in 1...2 {
            if only != "new" { try await measure("\(server), round \(round), AsyncHTTPClient", calls: calls, old) }
            if only != "old" { try await measure("\(server), round \(round), NIO HTTP1Client ", calls: calls, new) }
        }
        await new.shutdown()
        try await old.shutdown()
    }

    @Test("sequential verify calls against the scripted NIO server (canned answer)")
    func scripted() async throws {
        let server = try ScriptedHTTPServer { _ in .json(#"{"isValid":false,"invalidReason":"bench","payer":"0x857b06519E91e3A54538791bDbb0E22373e36b66"}"#) }
        let port = try await server.start()
        try await Self.compare("scripted NIO server", url: "http://127.0.0.1:\(port)")
        await server.stop()
    }

    @Test("sequential verify calls against the fake facilitator (Hummingbird, refuses without checking the signature)")
    func fakeFacilitator() async throws {
        let facilitator = FakeFacilitator()
        facilitator.setFault(.verifyRefuses("bench"))
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        try await TestHarness.withRunning(facilitator.application { portSink.yield($0) }, logger: Self.logger) {
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            try await Self.compare("FakeFacilitator", url: "http://127.0.0.1:\(port)")
        }
    }
}

/// The facilitator call path before the NIO client (AsyncHTTPClient, as configured then), kept
/// only to compare against.
final class LegacyAsyncHTTPClientFacilitator: Facilitator {
    private let baseURL: String
    private let timeout: Duration
    private let client: HTTPClient
    private let logger: Logger

    init(baseURL: String, timeout: Duration, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.baseURL = baseURL
        self.timeout = timeout
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .follow(max: 3, allowCycles: false),
            timeout: .init(connect: .seconds(2), read: .milliseconds(timeout.wholeMilliseconds)))
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
        self.client = HTTPClient(eventLoopGroup: eventLoopGroup, configuration: configuration)
        self.logger = logger
    }

    func shutdown() async throws { try await client.shutdown() }

    func verify(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> VerifyResponse {
        try await post("/verify", body: Self.body(version, paymentPayload, requirements))
    }

    func settle(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> SettleResponse {
        try await post("/settle", body: Self.body(version, paymentPayload, requirements))
    }

    func supported() async throws(FacilitatorFailure) -> SupportedResponse {
        var request = HTTPClientRequest(url: baseURL + "/supported")
        request.method = .GET
        return try await execute(request)
    }

    private static func body(_ version: Int, _ payload: [UInt8], _ requirements: [UInt8]) -> [UInt8] {
        var out = Array("{\"x402Version\":\(version),\"paymentPayload\":".utf8)
        out.append(contentsOf: payload)
        out.append(contentsOf: Array(",\"paymentRequirements\":".utf8))
        out.append(contentsOf: requirements)
        out.append(UInt8(ascii: "}"))
        return out
    }

    private func post<T: Decodable>(_ path: String, body: [UInt8]) async throws(FacilitatorFailure) -> T {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: body))
        return try await execute(request)
    }

    private func execute<T: Decodable>(_ request: HTTPClientRequest) async throws(FacilitatorFailure) -> T {
        let deadline = NIODeadline.now() + .milliseconds(timeout.wholeMilliseconds)
        let body: ByteBuffer
        let status: Int
        do {
            let response = try await client.execute(request, deadline: deadline, logger: logger)
            status = Int(response.status.code)
            body = try await response.body.collect(upTo: 1 << 20)
        } catch {
            throw .unreachable(String(describing: error))
        }
        guard (200..<300).contains(status) else { throw .httpStatus(status) }
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
        } catch {
            throw .malformedResponse
        }
    }
}
