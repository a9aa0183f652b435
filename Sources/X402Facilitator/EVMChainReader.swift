import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization
import X402
import X402Crypto

/// Why a chain read failed. Transport trouble (`unreachable`, `timeout`, `httpStatus`) says the node
/// is not answering; the others say it answered something unusable.
public enum ChainReadFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// Could not connect, or the connection broke before an answer.
    case unreachable(String)
    /// No answer within the call's deadline.
    case timeout
    /// Answered with a non-2xx status.
    case httpStatus(Int)
    /// Answered 2xx with something that is not the JSON-RPC answer expected (what was wrong).
    case malformedResponse(String)
    /// A JSON-RPC error object (the node's message, printable ASCII, at most 200 characters).
    case rpcError(code: Int, message: String)
    /// The node serves another chain than the one it is configured for.
    case wrongChain(expected: UInt64, actual: UInt64)

    /// The node did not answer: later calls of this round would fail the same way.
    public var isTransport: Bool {
        switch self {
        case .unreachable, .timeout, .httpStatus: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .unreachable(let why): "rpc unreachable: \(why)"
        case .timeout: "rpc did not answer in time"
        case .httpStatus(let code): "rpc answered HTTP \(code)"
        case .malformedResponse(let what): "rpc answered malformed JSON-RPC: \(what)"
        case .rpcError(let code, let message): "rpc error \(code): \(message)"
        case .wrongChain(let expected, let actual): "rpc serves chain \(actual), configured for chain \(expected)"
        }
    }
}

/// The chain head a round reads at.
public struct ChainHead: Sendable, Equatable {
    public var number: UInt64
    /// Unix seconds.
    public var timestamp: UInt64

    public init(number: UInt64, timestamp: UInt64) {
        self.number = number
        self.timestamp = timestamp
    }
}

/// An EIP-3009 event found for one (authorizer, nonce).
public enum AuthorizationEvent: Sendable, Equatable {
    /// `AuthorizationUsed`: the transfer ran in this transaction.
    case used(transaction: String)
    /// `AuthorizationCanceled`: the payer canceled it in this transaction; no transfer.
    case canceled(transaction: String)
}

/// Reads an EVM chain over JSON-RPC, for reconciliation: `eth_chainId`, the head block,
/// `authorizationState(authorizer, nonce)` on an EIP-3009 token (`eth_call` at a given block) and the
/// token's `AuthorizationUsed` / `AuthorizationCanceled` events (`eth_getLogs`).
///
/// Calls go through an ``HTTP1Client`` (keep-alive, one deadline per call, TLS with the system trust
/// roots); reads are idempotent, so a call that met a dead reused connection is sent once more.
/// Answers are read with ``JSONReader`` and checked strictly: a result of the wrong shape (an
/// `eth_call` answering `0x` because no contract is there, a log for another nonce) is a failure,
/// never a "false".
///
/// The URL may carry an API key: it is kept here and never put into an error or a log; ``host`` is
/// what may be shown.
public final class EVMChainReader: Sendable {
    /// `authorizationState(address,bytes32)`: the first 4 bytes of its Keccak-256.
    public static let authorizationStateSelector: [UInt8] = Array(Keccak256.hash("authorizationState(address,bytes32)").prefix(4))
    /// Permit2's `nonceBitmap(address owner, uint256 wordPos)`: bit `nonce & 0xff` of word `nonce >> 8` says used.
    public static let permit2NonceBitmapSelector: [UInt8] = Array(Keccak256.hash("nonceBitmap(address,uint256)").prefix(4))
    /// topic0 of `AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce)`.
    public static let authorizationUsedTopic: [UInt8] = Keccak256.hash("AuthorizationUsed(address,bytes32)")
    /// topic0 of `AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce)`.
    public static let authorizationCanceledTopic: [UInt8] = Keccak256.hash("AuthorizationCanceled(address,bytes32)")

    /// `host[:port]` of the endpoint, for logs.
    public let host: String
    private let client: HTTP1Client
    private let origin: HTTPOrigin
    private let head: HTTPRequestHead
    private let nextID = Atomic<Int>(1)

    /// nil unless ``accepts(url:)``.
    public init?(url: String, timeout: Duration, connectTimeout: Duration = .seconds(5), eventLoopGroup: any EventLoopGroup) {
        guard Self.accepts(url: url), let parsed = HTTPURL(url) else { return nil }
        let tls = HTTP1Connector.tlsConfiguration()
        let configuration = HTTP1Client.Configuration(
            timeout: TimeAmount(timeout), connectTimeout: TimeAmount(min(connectTimeout, timeout)), tls: tls)
        var fields = HTTPHeaders()
        fields.add(name: "Host", value: parsed.origin.hostHeader)
        fields.add(name: "User-Agent", value: HTTPFacilitatorClient.userAgent)
        fields.add(name: "Content-Type", value: "application/json")
        fields.add(name: "Accept", value: "application/json")
        self.head = HTTPRequestHead(version: .http1_1, method: .POST, uri: parsed.target.isEmpty ? "/" : parsed.target, headers: fields)
        self.origin = parsed.origin
        self.host = parsed.origin.hostHeader
        self.client = HTTP1Client(home: parsed.origin, configuration: configuration, eventLoopGroup: eventLoopGroup)
    }

    /// Whether `url` is an endpoint this reader can call: `http(s)://host[:port][/path][?query]`,
    /// without user info or fragment.
    public static func accepts(url: String) -> Bool {
        HTTPURL(url) != nil && !url.contains("#")
    }

    /// Closes idle connections; later calls fail `.unreachable`.
    public func shutdown() async {
        await client.shutdown()
    }

    // MARK: Calls

    /// `eth_chainId`.
    public func chainID() async throws(ChainReadFailure) -> UInt64 {
        try Self.quantity(try await call("eth_chainId", params: "[]"), "eth_chainId result")
    }

    /// Fails `.wrongChain` unless the node serves `chainID`.
    public func checkChain(_ expected: UInt64) async throws(ChainReadFailure) {
        let actual = try await chainID()
        if actual != expected { throw .wrongChain(expected: expected, actual: actual) }
    }

    /// The latest block's number and timestamp (`eth_getBlockByNumber("latest", false)`).
    public func head() async throws(ChainReadFailure) -> ChainHead {
        try Self.decodeHead(try await call("eth_getBlockByNumber", params: #"["latest",false]"#))
    }

    /// `authorizationState(authorizer, nonce)` on `token`, read at block `block`.
    public func authorizationState(token: EVMAddress, authorizer: EVMAddress, nonce: [UInt8], at block: UInt64)
        async throws(ChainReadFailure) -> Bool
    {
        let params = try Self.authorizationStateParams(token: token, authorizer: authorizer, nonce: nonce, block: block)
        return try Self.decodeBool(try await call("eth_call", params: params))
    }

    /// Whether Permit2 (at its canonical address) has `owner`'s `nonce` (a uint256, 32 bytes big-endian)
    /// marked used at `block`: spent by a transfer, or invalidated by the owner (the bitmap does not
    /// say which).
    public func permit2NonceUsed(owner: EVMAddress, nonce: [UInt8], at block: UInt64) async throws(ChainReadFailure) -> Bool {
        let params = try Self.permit2NonceParams(owner: owner, nonce: nonce, block: block)
        return try Self.decodeNonceBit(try await call("eth_call", params: params), nonce: nonce)
    }

    /// The token's `AuthorizationUsed` and `AuthorizationCanceled` events for (authorizer, nonce)
    /// in blocks `from...to`, oldest first. Removed (reorganised) logs are left out.
    public func authorizationEvents(token: EVMAddress, authorizer: EVMAddress, nonce: [UInt8], from: UInt64, to: UInt64)
        async throws(ChainReadFailure) -> [AuthorizationEvent]
    {
        let params = try Self.authorizationEventsParams(token: token, authorizer: authorizer, nonce: nonce, from: from, to: to)
        return try Self.decodeEvents(try await call("eth_getLogs", params: params), token: token, authorizer: authorizer, nonce: nonce)
    }

    /// One JSON-RPC call; returns its `result`.
    private func call(_ method: String, params: String) async throws(ChainReadFailure) -> JSONNode {
        let id = nextID.add(1, ordering: .relaxed).oldValue
        let body = Self.requestBody(id: id, method: method, params: params)
        var head = self.head
        head.headers.add(name: "Content-Length", value: String(body.readableBytes))
        let response: HTTP1Response
        do {
            response = try await client.execute(head, body: body, origin: origin, retryable: true)
        } catch {
            switch error {
            case .unreachable(let why): throw .unreachable(why)
            case .timeout: throw .timeout
            case .httpStatus(let status): throw .httpStatus(status)
            case .malformedResponse: throw .malformedResponse("answer larger than 1 MiB")
            }
        }
        return try Self.result(Array(response.body.readableBytesView), id: id)
    }

    // MARK: Encoding (static, for tests)

    /// `{"jsonrpc":"2.0","id":N,"method":"…","params":…}`; `params` is JSON text.
    package static func requestBody(id: Int, method: String, params: String) -> ByteBuffer {
        ByteBuffer(string: #"{"jsonrpc":"2.0","id":\#(id),"method":"\#(method)","params":\#(params)}"#)
    }

    /// `0x` + the 32-byte word of an address (left-padded with zeros).
    package static func word(_ address: EVMAddress) -> String {
        "0x" + String(repeating: "0", count: 24) + Hex.encode(address.bytes)
    }

    package static func quantityHex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

    package static func checkNonce(_ nonce: [UInt8]) throws(ChainReadFailure) {
        guard nonce.count == 32 else { throw .malformedResponse("a nonce must be 32 bytes, not \(nonce.count)") }
    }

    /// The `eth_call` parameters: the calldata `selector ‖ address word ‖ nonce` to the token, at `block`.
    package static func authorizationStateParams(token: EVMAddress, authorizer: EVMAddress, nonce: [UInt8], block: UInt64)
        throws(ChainReadFailure) -> String
    {
        try checkNonce(nonce)
        let data = "0x" + Hex.encode(authorizationStateSelector) + String(word(authorizer).dropFirst(2)) + Hex.encode(nonce)
        return #"[{"to":"\#(token.lowercaseHex)","data":"\#(data)"},"\#(quantityHex(block))"]"#
    }

    /// The `eth_call` parameters of `nonceBitmap(owner, nonce >> 8)` to Permit2, at `block`.
    package static func permit2NonceParams(owner: EVMAddress, nonce: [UInt8], block: UInt64) throws(ChainReadFailure) -> String {
        try checkNonce(nonce)
        let wordPosition = [0] + nonce.dropLast()
        let data = "0x" + Hex.encode(permit2NonceBitmapSelector) + String(word(owner).dropFirst(2)) + Hex.encode(wordPosition)
        return #"[{"to":"\#(Permit2Contracts.permit2.lowercased())","data":"\#(data)"},"\#(quantityHex(block))"]"#
    }

    /// The nonce's bit in a `nonceBitmap` answer (one 32-byte word; `0x` means no Permit2 there).
    package static func decodeNonceBit(_ result: JSONNode, nonce: [UInt8]) throws(ChainReadFailure) -> Bool {
        guard case .string(let text) = result, let bytes = Hex.decode(text, prefixed: true) else {
            throw .malformedResponse("eth_call result is not hex data")
        }
        guard bytes.count == 32, nonce.count == 32 else {
            throw .malformedResponse("eth_call result is not a uint256 (\(bytes.count) bytes): is Permit2 deployed on this chain?")
        }
        let bit = Int(nonce[31])
        return bytes[31 - bit / 8] & (1 << (bit % 8)) != 0
    }

    /// The `eth_getLogs` filter: the token's address, topic0 either event, then the authorizer and the nonce.
    package static func authorizationEventsParams(token: EVMAddress, authorizer: EVMAddress, nonce: [UInt8], from: UInt64, to: UInt64)
        throws(ChainReadFailure) -> String
    {
        try checkNonce(nonce)
        let topics = #"[["0x\#(Hex.encode(authorizationUsedTopic))","0x\#(Hex.encode(authorizationCanceledTopic))"],"\#(word(authorizer))","0x\#(Hex.encode(nonce))"]"#
        return #"[{"address":"\#(token.lowercaseHex)","fromBlock":"\#(quantityHex(from))","toBlock":"\#(quantityHex(to))","topics":\#(topics)}]"#
    }

    // MARK: Decoding (static, for tests)

    /// The `result` of a JSON-RPC answer to request `id`; its `error` as `.rpcError`.
    package static func result(_ bytes: [UInt8], id: Int) throws(ChainReadFailure) -> JSONNode {
        let answer: JSONNode
        do {
            answer = try JSONReader.parse(bytes)
        } catch {
            throw .malformedResponse("not JSON (\(error))")
        }
        guard case .object = answer else { throw .malformedResponse("not a JSON-RPC answer object") }
        if let error = answer["error"], error != .null {
            var code = 0
            if case .number(let text)? = error["code"], let value = Int(text) { code = value }
            var message = ""
            if case .string(let text)? = error["message"] { message = printable(text) }
            throw .rpcError(code: code, message: message)
        }
        guard case .number(let text)? = answer["id"], text == String(id) else {
            throw .malformedResponse("the answer's id is not the request's")
        }
        guard let result = answer["result"] else { throw .malformedResponse("no result") }
        return result
    }

    /// Printable ASCII, at most 200 characters: a node's message is logged.
    package static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value < 0x7F }.prefix(200)))
    }

    /// A JSON-RPC quantity: `0x` and 1 to 16 hex digits.
    package static func quantity(_ node: JSONNode?, _ what: String) throws(ChainReadFailure) -> UInt64 {
        guard case .string(let text)? = node, text.hasPrefix("0x"), text.count > 2, text.count <= 18,
              let value = UInt64(text.dropFirst(2), radix: 16)
        else { throw .malformedResponse("\(what) is not a quantity") }
        return value
    }

    package static func decodeHead(_ result: JSONNode) throws(ChainReadFailure) -> ChainHead {
        guard case .object = result else { throw .malformedResponse("no latest block") }
        return ChainHead(number: try quantity(result["number"], "block number"), timestamp: try quantity(result["timestamp"], "block timestamp"))
    }

    /// An ABI `bool`: exactly one 32-byte word, 0 or 1. Anything else (`0x` from an address without
    /// code, a revert payload) is malformed.
    package static func decodeBool(_ result: JSONNode) throws(ChainReadFailure) -> Bool {
        guard case .string(let text) = result, let bytes = Hex.decode(text, prefixed: true) else {
            throw .malformedResponse("eth_call result is not hex data")
        }
        guard bytes.count == 32, bytes.dropLast().allSatisfy({ $0 == 0 }), bytes[31] <= 1 else {
            throw .malformedResponse("eth_call result is not an ABI bool (\(bytes.count) bytes): is the asset an EIP-3009 token on this chain?")
        }
        return bytes[31] == 1
    }

    /// The events among `eth_getLogs`' result that really are the token's, for this authorizer and
    /// nonce (a node that ignored part of the filter does not get to name a transaction).
    package static func decodeEvents(_ result: JSONNode, token: EVMAddress, authorizer: EVMAddress, nonce: [UInt8])
        throws(ChainReadFailure) -> [AuthorizationEvent]
    {
        guard case .array(let logs) = result else { throw .malformedResponse("eth_getLogs result is not a list") }
        let used = "0x" + Hex.encode(authorizationUsedTopic)
        let canceled = "0x" + Hex.encode(authorizationCanceledTopic)
        let wantedAuthorizer = word(authorizer)
        let wantedNonce = "0x" + Hex.encode(nonce)
        var events: [AuthorizationEvent] = []
        for log in logs {
            guard case .object = log else { throw .malformedResponse("a log is not an object") }
            if case .bool(true)? = log["removed"] { continue }
            guard case .string(let address)? = log["address"], address.lowercased() == token.lowercaseHex,
                  case .array(let topicNodes)? = log["topics"], topicNodes.count == 3
            else { continue }
            let topics = topicNodes.map { node -> String in
                if case .string(let text) = node { return text.lowercased() }
                return ""
            }
            guard topics[1] == wantedAuthorizer, topics[2] == wantedNonce else { continue }
            guard case .string(let hash)? = log["transactionHash"], let bytes = Hex.decode(hash, prefixed: true), bytes.count == 32 else {
                throw .malformedResponse("a log without a transaction hash")
            }
            let transaction = "0x" + Hex.encode(bytes)
            if topics[0] == used {
                events.append(.used(transaction: transaction))
            } else if topics[0] == canceled {
                events.append(.canceled(transaction: transaction))
            }
        }
        return events
    }
}
