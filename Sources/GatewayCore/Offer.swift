import BigInt
import X402

/// How the token moves: `transferWithAuthorization` on the token, or Permit2's
/// `permitWitnessTransferFrom` through the scheme's x402 proxy (`extra.assetTransferMethod`).
public enum AssetTransferMethod: String, Sendable, Hashable, CaseIterable {
    case eip3009
    case permit2
}

/// One way to pay for a route: the data behind one `accepts[]` entry.
public struct Offer: Sendable, Hashable {
    /// `exact`, or `upto` (then ``amount`` is the maximum).
    public var scheme: String
    public var network: NetworkInfo
    public var amount: BigUInt
    /// Checksummed token address.
    public var asset: String
    /// Checksummed payee address.
    public var payTo: String
    public var maxTimeoutSeconds: Int
    public var extra: [String: JSONValue]
    /// Token decimals and symbol when known (default assets), for human display.
    public var decimals: Int?
    public var symbol: String?
    /// EIP-3009 or Permit2 (`upto` is always Permit2); mirrored in `extra.assetTransferMethod`.
    public var transferMethod: AssetTransferMethod

    public init(scheme: String = "exact", network: NetworkInfo, amount: BigUInt, asset: String, payTo: String,
                maxTimeoutSeconds: Int, extra: [String: JSONValue], decimals: Int?, symbol: String?,
                transferMethod: AssetTransferMethod = .eip3009) {
        self.scheme = scheme
        self.transferMethod = transferMethod
        self.network = network
        self.amount = amount
        self.asset = asset
        self.payTo = payTo
        self.maxTimeoutSeconds = maxTimeoutSeconds
        self.extra = extra
        self.decimals = decimals
        self.symbol = symbol
    }

    /// The v2 requirements entry.
    public var requirements: PaymentRequirements {
        PaymentRequirements(
            scheme: scheme, network: network.caip2, amount: String(amount), asset: asset, payTo: payTo,
            maxTimeoutSeconds: maxTimeoutSeconds, extra: extra)
    }

    /// The v1 requirements entry, or nil when the network has no v1 name (v1 clients cannot pay there).
    /// Its `outputSchema` is v1's discovery data: `{input: {type, method, discoverable}, output}`.
    /// Version 1 knows `exact` through EIP-3009 only.
    public func requirementsV1(resourceURL: String, description: String, mimeType: String, method: String?,
                               discoverable: Bool = true) -> PaymentRequirementsV1? {
        guard let v1Name = network.v1Name, scheme == "exact", transferMethod == .eip3009 else { return nil }
        var input: [String: JSONValue] = ["type": .string("http"), "discoverable": .bool(discoverable)]
        if let method { input["method"] = .string(method) }
        return PaymentRequirementsV1(
            scheme: scheme, network: v1Name, maxAmountRequired: String(amount), resource: resourceURL,
            description: description, mimeType: mimeType, payTo: payTo, maxTimeoutSeconds: maxTimeoutSeconds,
            asset: asset, extra: extra, outputSchema: .object(["input": .object(input), "output": .null]))
    }

    /// The facilitator an `upto` offer binds payments to (`extra.facilitatorAddress`, from the
    /// facilitator's `/supported`); nil until it is known.
    public var facilitatorAddress: String? { extra["facilitatorAddress"]?.stringValue }
}
