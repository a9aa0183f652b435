import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization
import X402
import X402Crypto

/// A facilitator on port 0 that really checks signatures (EIP-712 digest + secp256k1 recovery),
/// amounts, recipients and time windows, remembers used nonces, counts calls, and can be told to
/// misbehave. It takes EIP-3009 `exact`, Permit2 `exact` and `upto` (bound to ``address``; at
/// settlement the requirements' amount is what is charged, up to the signed maximum).
public final class FakeFacilitator: Sendable {
    public enum Fault: Sendable, Equatable {
        case none
        case verifyStatus(Int)
        case verifyGarbage
        case verifySlow(milliseconds: Int)
        case verifyRefuses(String)
        case settleStatus(Int)
        case settleRefuses(String)
        case settleSlow(milliseconds: Int)
    }

    private struct State {
        var fault: Fault = .none
        var verifyCalls = 0
        var settleCalls = 0
        var usedNonces: Set<String> = []
        /// `/settle` calls per payment (payer + nonce).
        var settlesByPayment: [String: Int] = [:]
        /// The amount of each successful settle, in order (`upto` settles what the gateway asks).
        var settledAmounts: [String] = []
    }

    /// The facilitator address `/supported` announces for `upto` (bound into upto witnesses).
    public static let address = "0x1Ab4973a48dc892Cd9971ECE8e01DcC7688f8F23"

    private let state = Mutex(State())
    private let clock: @Sendable () -> UInt64

    public init(clock: @escaping @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970) }) {
        self.clock = clock
    }

    public var verifyCalls: Int { state.withLock { $0.verifyCalls } }
    public var settleCalls: Int { state.withLock { $0.settleCalls } }
    /// Payments it actually settled (its "chain").
    public var settledCount: Int { state.withLock { $0.usedNonces.count } }
    /// The requirements' amount of every successful settle, in order.
    public var settledAmounts: [String] { state.withLock { $0.settledAmounts } }
    public func setFault(_ fault: Fault) { state.withLock { $0.fault = fault } }
    /// `/settle` calls per payment (lower-cased payer + nonce), whatever their answer.
    public var settlesByPayment: [String: Int] { state.withLock { $0.settlesByPayment } }

    private struct Call: Decodable {
        var x402Version: Int
        var paymentPayload: JSONValue
        var paymentRequirements: JSONValue
    }

    /// nil when valid, else the reason; `settling` relaxes `upto`'s amount to at most the maximum.
    private func check(_ call: Call, settling: Bool = false) -> (reason: String?, payer: String?) {
        let decoder = JSONDecoder()
        guard let payloadData = try? JSONEncoder().encode(call.paymentPayload),
              let reqData = try? JSONEncoder().encode(call.paymentRequirements)
        else { return ("invalid_payload", nil) }
        let payload: EVMPayload
        let scheme: String, network: String, asset: String, amount: String, payTo: String, name: String, version: String
        if call.x402Version == 1 {
            guard let p = try? decoder.decode(PaymentPayloadV1.self, from: payloadData),
                  let r = try? decoder.decode(PaymentRequirementsV1.self, from: reqData),
                  let caip = Networks.named(r.network)?.caip2
            else { return ("invalid_payload", nil) }
            payload = .eip3009(p.payload)
            (scheme, network, asset, amount, payTo) = (r.scheme, caip, r.asset, r.maxAmountRequired, r.payTo)
            (name, version) = (r.extra?["name"]?.stringValue ?? "", r.extra?["version"]?.stringValue ?? "")
        } else {
            guard let p = try? decoder.decode(PaymentPayload.self, from: payloadData),
                  let r = try? decoder.decode(PaymentRequirements.self, from: reqData)
            else { return ("invalid_payload", nil) }
            payload = p.payload
            (scheme, network, asset, amount, payTo) = (r.scheme, r.network, r.asset, r.amount, r.payTo)
            (name, version) = (r.extra?["name"]?.stringValue ?? "", r.extra?["version"]?.stringValue ?? "")
        }
        let from = payload.from
        if payload.recipient.lowercased() != payTo.lowercased() { return ("invalid_exact_evm_payload_recipient_mismatch", from) }
        if scheme == "upto" && settling {
            guard let asked = UInt64(amount), let maximum = UInt64(payload.value), asked <= maximum else {
                return ("invalid_upto_evm_payload_settlement_exceeds_amount", from)
            }
        } else if payload.value != amount {
            return ("invalid_exact_evm_payload_authorization_value_mismatch", from)
        }
        let now = clock()
        if (UInt64(payload.validBefore) ?? 0) < now + 6 { return ("invalid_exact_evm_payload_authorization_valid_before", from) }
        if (UInt64(payload.validAfter) ?? .max) > now { return ("invalid_exact_evm_payload_authorization_valid_after", from) }
        guard let chainId = Networks.evmChainId(network), let token = EVMAddress(hex: asset) else { return ("invalid_payload", from) }
        let digest: [UInt8]?
        switch payload {
        case .eip3009(let exact):
            digest = try? EIP3009.digest(exact.authorization, domainSeparator: EIP712.domainSeparator(
                name: name, version: version, chainId: chainId, verifyingContract: token))
        case .permit2(let permit):
            let auth = permit.permit2Authorization
            let upto = scheme == "upto"
            if EVMAddress(hex: auth.spender) != EVMAddress(hex: upto ? Permit2Contracts.uptoProxy : Permit2Contracts.exactProxy) {
                return ("invalid_permit2_spender", from)
            }
            if upto && auth.witness.facilitator.flatMap(EVMAddress.init(hex:)) != EVMAddress(hex: Self.address) {
                return ("upto_facilitator_mismatch", from)
            }
            digest = try? Permit2.digest(auth, witness: upto ? .upto : .exact, chainId: chainId)
        }
        guard let digest, let signature = Hex.decode(payload.signature, prefixed: true),
              let recovered = Secp256k1.shared.recoverAddress(digest: digest, signature: signature),
              recovered == EVMAddress(hex: from)
        else { return ("invalid_exact_evm_payload_signature", from) }
        if state.withLock({ $0.usedNonces.contains(from.lowercased() + payload.nonce.lowercased()) }) {
            return ("invalid_exact_evm_nonce_already_used", from)
        }
        return (nil, from)
    }

    func respond(_ request: Request) async throws -> Response {
        let path = request.head.path ?? ""
        if path.hasSuffix("/supported") {
            return json(#"{"kinds":[{"x402Version":2,"scheme":"exact","network":"eip155:84532"},{"x402Version":2,"scheme":"upto","network":"eip155:84532","extra":{"facilitatorAddress":"\#(Self.address)"}},{"x402Version":1,"scheme":"exact","network":"base-sepolia"}],"extensions":[],"signers":{}}"#)
        }
        var request = request
        let body = try await request.collectBody(upTo: 1 << 20)
        guard let call = try? JSONDecoder().decode(Call.self, from: Data(body.readableBytesView)) else {
            return json(#"{"error":"bad request"}"#, status: 400)
        }
        let fault = state.withLock { $0.fault }
        if path.hasSuffix("/verify") {
            state.withLock { $0.verifyCalls += 1 }
            switch fault {
            case .verifyStatus(let code): return json("{}", status: code)
            case .verifyGarbage: return json("this is not json")
            case .verifySlow(let ms): try await Task.sleep(for: .milliseconds(ms))
            case .verifyRefuses(let reason):
                return json(String(decoding: try JSONEncoder().encode(VerifyResponse(isValid: false, invalidReason: reason)), as: UTF8.self))
            default: break
            }
            let (reason, payer) = check(call)
            let response = VerifyResponse(isValid: reason == nil, invalidReason: reason, payer: payer)
            return json(String(decoding: try JSONEncoder().encode(response), as: UTF8.self))
        }
        if path.hasSuffix("/settle") {
            let payload = try? JSONDecoder().decode(EVMPayload.self, from: JSONEncoder().encode(call.paymentPayload["payload"]))
            if let payload {
                state.withLock { $0.settlesByPayment[payload.from.lowercased() + payload.nonce.lowercased(), default: 0] += 1 }
            }
            state.withLock { $0.settleCalls += 1 }
            switch fault {
            case .settleStatus(let code): return json("{}", status: code)
            case .settleSlow(let ms): try await Task.sleep(for: .milliseconds(ms))
            case .settleRefuses(let reason):
                return json(String(decoding: try JSONEncoder().encode(SettleResponse(
                    success: false, errorReason: reason, transaction: "", network: "eip155:84532")), as: UTF8.self))
            default: break
            }
            var (reason, payer) = check(call, settling: true)
            let amount = call.paymentRequirements["amount"]?.stringValue ?? call.paymentRequirements["maxAmountRequired"]?.stringValue ?? ""
            if reason == nil, let payload {
                let fresh = state.withLock { state in
                    let inserted = state.usedNonces.insert(payload.from.lowercased() + payload.nonce.lowercased()).inserted
                    if inserted { state.settledAmounts.append(amount) }
                    return inserted
                }
                if !fresh { reason = "invalid_exact_evm_nonce_already_used" }
            }
            let response = SettleResponse(
                success: reason == nil, errorReason: reason, payer: payer,
                transaction: reason == nil ? "0x" + String(repeating: "ab", count: 32) : "", network: "eip155:84532",
                amount: reason == nil ? amount : nil)
            return json(String(decoding: try JSONEncoder().encode(response), as: UTF8.self))
        }
        return json("{}", status: 404)
    }

    private func json(_ text: String, status: Int = 200) -> Response {
        Response(status: .init(code: status), headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    public func application(port: Int = 0, onPort: @escaping @Sendable (Int) async -> Void) -> some ApplicationProtocol {
        Application(
            responder: CallbackResponder { (request: Request, _: BasicRequestContext) in try await self.respond(request) },
            configuration: .init(address: .hostname("127.0.0.1", port: port)),
            onServerRunning: { await onPort($0.localAddress?.port ?? 0) })
    }
}
