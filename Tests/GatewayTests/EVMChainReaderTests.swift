import FixtureEditing
import GatewayTestSupport
import NIOCore
import NIOPosix
import Testing
import X402
import X402Crypto
import X402Facilitator

/// The JSON-RPC reader reconciliation uses, against a scripted node on 127.0.0.1 port 0.
@Suite("EVM chain reader (JSON-RPC)", .timeLimit(.minutes(1)))
struct EVMChainReaderTests {
    static let token = EVMAddress(hex: "0x036CbD53842c5426634e7929541eC2318f3dCF7e")!
    static let payer = EVMAddress(hex: "0x857b06519E91e3A54538791bDbb0E22373e36b66")!
    static let nonce = (0..<32).map { UInt8($0 * 7 & 0xFF) }
    static let nonceHex = "0x" + Hex.encode(nonce)
    static let tx = "0x" + String(repeating: "ab", count: 32)

    static func reader(_ url: String, timeout: Duration = .seconds(5)) throws -> EVMChainReader {
        try #require(EVMChainReader(url: url, timeout: timeout, eventLoopGroup: MultiThreadedEventLoopGroup.singleton.next()))
    }

    /// Runs `body` with a node, then stops it.
    static func withNode<T>(_ state: FakeChainNode.State = FakeChainNode.State(), _ body: (FakeChainNode) async throws -> T) async throws -> T {
        let node = try await FakeChainNode.start(state)
        do {
            let result = try await body(node)
            await node.stop()
            return result
        } catch {
            await node.stop()
            throw error
        }
    }

    static func failure<T>(_ call: () async throws(ChainReadFailure) -> T) async -> ChainReadFailure? {
        do throws(ChainReadFailure) {
            _ = try await call()
            return nil
        } catch {
            return error
        }
    }

    // MARK: Known answers

    @Test("the selector and event topics are Keccak-256 of their signatures, as published")
    func knownAnswers() {
        #expect(Hex.encode(EVMChainReader.authorizationStateSelector) == "e94a0102")
        #expect(EVMChainReader.authorizationStateSelector == Array(Keccak256.hash("authorizationState(address,bytes32)").prefix(4)))
        #expect(Hex.encode(EVMChainReader.authorizationUsedTopic) == "98de503528ee59b575ef0c0a2576a82497bfc029a5685b209e9ec333479b10a5")
        #expect(Hex.encode(EVMChainReader.authorizationCanceledTopic) == "1cdd46ff242716cdaa72d159d339a485b3438398348d68f09d7c8c0a59353d81")
    }

    @Test("eth_call parameters: selector, the authorizer as a left-padded word, the nonce, at a hex block number")
    func callEncoding() throws {
        let params = try EVMChainReader.authorizationStateParams(token: Self.token, authorizer: Self.payer, nonce: Self.nonce, block: 31)
        let data = "0xe94a0102" + "000000000000000000000000857b06519e91e3a54538791bdbb0e22373e36b66" + String(Self.nonceHex.dropFirst(2))
        #expect(params == #"[{"to":"0x036cbd53842c5426634e7929541ec2318f3dcf7e","data":"\#(data)"},"0x1f"]"#)
        #expect(EVMChainReader.quantityHex(0) == "0x0")
        #expect(String(buffer: EVMChainReader.requestBody(id: 7, method: "eth_call", params: "[]"))
            == #"{"jsonrpc":"2.0","id":7,"method":"eth_call","params":[]}"#)
    }

    @Test("eth_getLogs filter: the token, either event as topic0, the authorizer word and the nonce, a block range")
    func logsEncoding() throws {
        let params = try EVMChainReader.authorizationEventsParams(token: Self.token, authorizer: Self.payer, nonce: Self.nonce, from: 1, to: 0x2710)
        let used = "0x98de503528ee59b575ef0c0a2576a82497bfc029a5685b209e9ec333479b10a5"
        let canceled = "0x1cdd46ff242716cdaa72d159d339a485b3438398348d68f09d7c8c0a59353d81"
        #expect(params == #"[{"address":"0x036cbd53842c5426634e7929541ec2318f3dcf7e","fromBlock":"0x1","toBlock":"0x2710","topics":[["\#(used)","\#(canceled)"],"0x000000000000000000000000857b06519e91e3a54538791bdbb0e22373e36b66","\#(Self.nonceHex)"]}]"#)
    }

    @Test("a nonce that is not 32 bytes is refused before anything is sent")
    func shortNonce() {
        #expect(throws: ChainReadFailure.self) {
            try EVMChainReader.authorizationStateParams(token: Self.token, authorizer: Self.payer, nonce: [1, 2, 3], block: 1)
        }
    }

    // MARK: Answers

    static let zeros = String(repeating: "0", count: 62)
    static let boolCases: [(String, Bool?)] = [
        ("0x" + zeros + "00", false),
        ("0x" + zeros + "01", true),
        ("0x", nil),  // no contract at the address
        ("0x" + zeros + "02", nil),
        ("0x" + zeros, nil),
        ("0x" + zeros + "00" + zeros + "01", nil),
        ("0x1", nil),
        ("1", nil),
    ]

    @Test("an ABI bool is exactly one word holding 0 or 1; anything else is malformed, never false", arguments: boolCases)
    func bools(result: String, expected: Bool?) {
        let decoded = try? EVMChainReader.decodeBool(.string(result))
        #expect(decoded == expected)
    }

    @Test("a JSON-RPC answer must carry the request's id; an error object becomes rpcError with a printable message")
    func answers() throws {
        #expect(try EVMChainReader.result(Array(#"{"jsonrpc":"2.0","id":3,"result":"0x1"}"#.utf8), id: 3) == .string("0x1"))
        #expect(throws: ChainReadFailure.malformedResponse("the answer's id is not the request's")) {
            try EVMChainReader.result(Array(#"{"jsonrpc":"2.0","id":4,"result":"0x1"}"#.utf8), id: 3)
        }
        #expect(throws: ChainReadFailure.malformedResponse("no result")) {
            try EVMChainReader.result(Array(#"{"jsonrpc":"2.0","id":3}"#.utf8), id: 3)
        }
        let long = String(repeating: "x", count: 500)
        #expect(throws: ChainReadFailure.rpcError(code: -32000, message: "bad\(String(repeating: "x", count: 197))")) {
            try EVMChainReader.result(Array(#"{"jsonrpc":"2.0","id":3,"error":{"code":-32000,"message":"bad\n\#(long)"}}"#.utf8), id: 3)
        }
        #expect(throws: ChainReadFailure.self) { try EVMChainReader.result(Array(#"{"id":3,"result":1,"result":2}"#.utf8), id: 3) }
        #expect(throws: ChainReadFailure.self) { try EVMChainReader.result(Array("[1]".utf8), id: 3) }
        #expect(throws: ChainReadFailure.self) { try EVMChainReader.quantity(.string("0x"), "q") }
        #expect(throws: ChainReadFailure.self) { try EVMChainReader.quantity(.string("0x1ffffffffffffffff"), "q") }
        #expect(try EVMChainReader.quantity(.string("0x01"), "q") == 1)
    }

    @Test("logs name a transaction only when they are the token's event for this authorizer and nonce, and not removed")
    func logs() throws {
        let used = "0x" + Hex.encode(EVMChainReader.authorizationUsedTopic)
        let canceled = "0x" + Hex.encode(EVMChainReader.authorizationCanceledTopic)
        let word = EVMChainReader.word(Self.payer)
        func log(address: String = Self.token.lowercaseHex, topic0: String = used, authorizer: String = word, nonce: String = Self.nonceHex,
                 tx: String = Self.tx, removed: Bool = false) -> String {
            #"{"address":"\#(address)","topics":["\#(topic0)","\#(authorizer)","\#(nonce)"],"transactionHash":"\#(tx)","removed":\#(removed)}"#
        }
        func events(_ logs: [String]) throws -> [AuthorizationEvent] {
            try EVMChainReader.decodeEvents(try JSONReader.parse(Array("[\(logs.joined(separator: ","))]".utf8)),
                                            token: Self.token, authorizer: Self.payer, nonce: Self.nonce)
        }
        #expect(try events([log()]) == [.used(transaction: Self.tx)])
        #expect(try events([log(address: "0x036CBD53842C5426634E7929541EC2318F3DCF7E", tx: Self.tx.uppercased().replacingOccurrences(of: "0X", with: "0x"))])
            == [.used(transaction: Self.tx)])
        #expect(try events([log(topic0: canceled)]) == [.canceled(transaction: Self.tx)])
        #expect(try events([log(removed: true)]) == [])
        #expect(try events([log(address: "0x" + String(repeating: "1", count: 40))]) == [])
        #expect(try events([log(nonce: "0x" + String(repeating: "0", count: 64))]) == [])
        #expect(try events([log(authorizer: EVMChainReader.word(Self.token))]) == [])
        #expect(try events([log(topic0: "0x" + String(repeating: "0", count: 64))]) == [])
        #expect(throws: ChainReadFailure.self) { try events([log(tx: "0x12")]) }
        #expect(throws: ChainReadFailure.self) { try EVMChainReader.decodeEvents(.null, token: Self.token, authorizer: Self.payer, nonce: Self.nonce) }
    }

    // MARK: Over the wire

    @Test("calls go to the URL's path and query as JSON-RPC POSTs on one keep-alive connection")
    func overTheWire() async throws {
        var state = FakeChainNode.State()
        state.used[FakeChainNode.key(Self.payer.lowercaseHex, Self.nonceHex)] = (Self.tx, 90)
        try await Self.withNode(state) { node in
        let reader = try Self.reader(node.url)
        #expect(reader.host == "127.0.0.1:\(node.port)")
        #expect(try await reader.chainID() == 84532)
        try await reader.checkChain(84532)
        let head = try await reader.head()
        #expect(head == ChainHead(number: 100, timestamp: 1_800_000_000))
        #expect(try await reader.authorizationState(token: Self.token, authorizer: Self.payer, nonce: Self.nonce, at: 100))
        #expect(try await !reader.authorizationState(token: Self.token, authorizer: Self.payer, nonce: Self.nonce, at: 89))
        #expect(try await reader.authorizationEvents(token: Self.token, authorizer: Self.payer, nonce: Self.nonce, from: 1, to: 100)
            == [.used(transaction: Self.tx)])
        #expect(await Self.failure { () async throws(ChainReadFailure) in try await reader.checkChain(8453) } == .wrongChain(expected: 8453, actual: 84532))

        let requests = node.server.requests
        #expect(requests.allSatisfy { $0.method == "POST" && $0.uri == "/v2/secret-key?apikey=secret-key" })
        #expect(requests.allSatisfy { $0.header("Content-Type") == "application/json" })
        #expect(node.methods == ["eth_chainId", "eth_chainId", "eth_getBlockByNumber", "eth_call", "eth_call", "eth_getLogs", "eth_chainId"])
        #expect(Set(requests.map(\.connection)).count == 1)
        // The ids differ per call.
        let ids = requests.compactMap { request -> String? in
            guard case .number(let id)? = (try? JSONReader.parse(request.body))?["id"] else { return nil }
            return id
        }
        #expect(Set(ids).count == requests.count)
        await reader.shutdown()
        }
    }

    @Test("an address without code answers 0x: a failure, never 'unused'")
    func noContract() async throws {
        try await Self.withNode { node in
        let reader = try Self.reader(node.url)
        let other = EVMAddress(hex: "0x" + String(repeating: "1", count: 40))!
        let failure = await Self.failure { () async throws(ChainReadFailure) in try await reader.authorizationState(token: other, authorizer: Self.payer, nonce: Self.nonce, at: 1) }
        await reader.shutdown()
        guard case .malformedResponse? = failure else { Issue.record("expected malformedResponse, got \(String(describing: failure))"); return }
        }
    }

    @Test("transport failures: HTTP status, closed port, no answer in time; none names the URL's path or query")
    func transport() async throws {
        let node = try await FakeChainNode.start()
        node.update { $0.fault = .json("{}", status: 503) }
        let reader = try Self.reader(node.url)
        let status = await Self.failure { () async throws(ChainReadFailure) in try await reader.chainID() }
        #expect(status == .httpStatus(503))
        node.update { $0.fault = .never }
        let slow = try Self.reader(node.url, timeout: .milliseconds(200))
        let timeout = await Self.failure { () async throws(ChainReadFailure) in try await slow.head() }
        #expect(timeout == .timeout)
        node.update { $0.fault = .json(#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"header not found"}}"#) }
        let rpc = await Self.failure { () async throws(ChainReadFailure) in try await reader.head() }
        #expect(rpc == .rpcError(code: -32000, message: "header not found"))
        await node.stop()
        let fresh = try Self.reader(node.url)
        let closed = await Self.failure { () async throws(ChainReadFailure) in try await fresh.chainID() }
        guard case .unreachable? = closed else { Issue.record("expected unreachable, got \(String(describing: closed))"); return }
        for failure in [status, timeout, rpc, closed] {
            #expect(failure.map { "\($0)".contains("secret") } == false)
            #expect(failure?.isTransport == (failure != rpc))
        }
        await reader.shutdown()
        await slow.shutdown()
        await fresh.shutdown()
    }

    @Test("only absolute http(s) URLs without user info are accepted")
    func urls() {
        #expect(EVMChainReader.accepts(url: "https://base-mainnet.g.alchemy.com/v2/KEY"))
        #expect(EVMChainReader.accepts(url: "http://127.0.0.1:8545"))
        #expect(EVMChainReader.accepts(url: "https://rpc.example.com/?apikey=KEY"))
        #expect(!EVMChainReader.accepts(url: "https://user:pass@rpc.example.com/"))
        #expect(!EVMChainReader.accepts(url: "wss://rpc.example.com/"))
        #expect(!EVMChainReader.accepts(url: "rpc.example.com"))
        #expect(!EVMChainReader.accepts(url: "https://rpc.example.com/#x"))
    }
}
