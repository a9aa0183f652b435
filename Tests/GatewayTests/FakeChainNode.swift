import GatewayTestSupport
import Synchronization
import X402
import X402Crypto
import X402Facilitator

/// A JSON-RPC node on a scripted HTTP server, enough of one for reconciliation: `eth_chainId`,
/// `eth_getBlockByNumber("latest")`, `eth_call` of `authorizationState` and `eth_getLogs` of the
/// EIP-3009 events, answering from a table the test fills. It checks the calls' shapes as a node
/// would (an `eth_call` to another contract answers `0x`, as for an address without code).
struct FakeChainNode: Sendable {
    struct State: Sendable {
        var chainID: UInt64 = 84532
        var head = ChainHead(number: 100, timestamp: 1_800_000_000)
        /// The token's address (lowercase hex).
        var token = "0x036cbd53842c5426634e7929541ec2318f3dcf7e"
        /// (authorizer, nonce) in lowercase hex → the transaction that used it, and its block.
        var used: [String: (transaction: String, block: UInt64)] = [:]
        var canceled: [String: (transaction: String, block: UInt64)] = [:]
        /// Permit2 nonces used: (owner, nonce as a 32-byte hex word) → the block it was used in.
        var permit2Used: [String: UInt64] = [:]
        /// Answer every request with this instead (a fault).
        var fault: ScriptedHTTPServer.Reply?
        /// `eth_getLogs` answers this JSON-RPC error.
        var logsError = false
    }

    final class Table: Sendable {
        let state = Mutex(State())
    }

    let table: Table
    let server: ScriptedHTTPServer
    let port: Int

    /// Changes what the node answers from now on.
    func update(_ change: (inout State) -> Void) { table.state.withLock { change(&$0) } }

    static func key(_ authorizer: String, _ nonce: String) -> String { "\(authorizer.lowercased())/\(nonce.lowercased())" }

    /// Started on 127.0.0.1 port 0; `url` has a path and a query that stand for an API key.
    static func start(_ initial: State = State()) async throws -> FakeChainNode {
        let table = Table()
        table.state.withLock { $0 = initial }
        let server = try ScriptedHTTPServer { request in answer(request, table.state.withLock { $0 }) }
        return FakeChainNode(table: table, server: server, port: try await server.start())
    }

    var url: String { "http://127.0.0.1:\(port)/v2/secret-key?apikey=secret-key" }

    func stop() async { await server.stop() }

    /// The JSON-RPC methods called, in order.
    var methods: [String] {
        server.requests.compactMap { request in
            guard case .string(let method)? = (try? JSONReader.parse(request.body))?["method"] else { return nil }
            return method
        }
    }

    private static func answer(_ request: ScriptedHTTPServer.Request, _ state: State) -> ScriptedHTTPServer.Reply {
        if let fault = state.fault { return fault }
        guard request.method == "POST", let body = try? JSONReader.parse(request.body), case .number(let id)? = body["id"],
              case .string(let method)? = body["method"], case .array(let params)? = body["params"]
        else { return .json(#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#) }
        func result(_ json: String) -> ScriptedHTTPServer.Reply { .json(#"{"jsonrpc":"2.0","id":\#(id),"result":\#(json)}"#) }
        func error(_ code: Int, _ message: String) -> ScriptedHTTPServer.Reply {
            .json(#"{"jsonrpc":"2.0","id":\#(id),"error":{"code":\#(code),"message":"\#(message)"}}"#)
        }
        switch method {
        case "eth_chainId":
            return result("\"0x\(String(state.chainID, radix: 16))\"")
        case "eth_getBlockByNumber":
            return result(#"{"number":"0x\#(String(state.head.number, radix: 16))","timestamp":"0x\#(String(state.head.timestamp, radix: 16))","hash":"0x00"}"#)
        case "eth_call":
            guard case .string(let to)? = params.first?["to"], case .string(let data)? = params.first?["data"] else {
                return error(-32602, "invalid params")
            }
            var block = state.head.number
            if params.count > 1, case .string(let tag) = params[1], tag != "latest" { block = UInt64(tag.dropFirst(2), radix: 16) ?? 0 }
            let bitmapSelector = "0x" + Hex.encode(EVMChainReader.permit2NonceBitmapSelector)
            if to.lowercased() == Permit2Contracts.permit2.lowercased(), data.hasPrefix(bitmapSelector), data.count == 2 + 8 + 128 {
                let owner = "0x" + data.dropFirst(2 + 8 + 24).prefix(40)
                let wordPosition = String(data.suffix(64))
                var bitmap = [UInt8](repeating: 0, count: 32)
                for (key, usedAt) in state.permit2Used where usedAt <= block {
                    let parts = key.split(separator: "/")
                    guard parts.count == 2, parts[0] == owner.lowercased(), let nonce = Hex.decode(String(parts[1]), prefixed: true),
                          "00" + Hex.encode(nonce.dropLast()) == wordPosition
                    else { continue }
                    let bit = Int(nonce[31])
                    bitmap[31 - bit / 8] |= 1 << (bit % 8)
                }
                return result("\"0x\(Hex.encode(bitmap))\"")
            }
            let selector = "0x" + Hex.encode(EVMChainReader.authorizationStateSelector)
            guard to.lowercased() == state.token, data.hasPrefix(selector), data.count == 2 + 8 + 128 else { return result("\"0x\"") }
            let authorizer = "0x" + data.dropFirst(2 + 8 + 24).prefix(40)
            let nonce = "0x" + data.suffix(64)
            let key = Self.key(String(authorizer), String(nonce))
            let set = [state.used[key]?.block, state.canceled[key]?.block].compactMap { $0 }.contains { $0 <= block }
            return result("\"0x" + String(repeating: "0", count: 63) + (set ? "1" : "0") + "\"")
        case "eth_getLogs":
            if state.logsError { return error(-32005, "query returned more than 10000 results") }
            guard case .array(let topics)? = params.first?["topics"], topics.count == 3,
                  case .string(let authorizerWord) = topics[1], case .string(let nonce) = topics[2]
            else { return error(-32602, "invalid params") }
            let authorizer = "0x" + authorizerWord.suffix(40)
            let key = Self.key(authorizer, nonce)
            func block(_ name: String) -> UInt64? {
                guard case .string(let text)? = params.first?[name] else { return nil }
                return UInt64(text.dropFirst(2), radix: 16)
            }
            let range = (block("fromBlock") ?? 0)...(block("toBlock") ?? state.head.number)
            var logs: [String] = []
            func log(_ topic: [UInt8], _ entry: (transaction: String, block: UInt64)) -> String {
                #"{"address":"\#(state.token)","topics":["0x\#(Hex.encode(topic))","\#(authorizerWord)","\#(nonce)"],"data":"0x","blockNumber":"0x\#(String(entry.block, radix: 16))","transactionHash":"\#(entry.transaction)","logIndex":"0x0","removed":false}"#
            }
            if let entry = state.used[key], range.contains(entry.block) { logs.append(log(EVMChainReader.authorizationUsedTopic, entry)) }
            if let entry = state.canceled[key], range.contains(entry.block) {
                logs.append(log(EVMChainReader.authorizationCanceledTopic, entry))
            }
            return result("[" + logs.joined(separator: ",") + "]")
        default:
            return error(-32601, "the method \(method) does not exist/is not available")
        }
    }
}
