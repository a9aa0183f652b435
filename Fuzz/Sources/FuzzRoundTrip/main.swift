// Round trips of what the gateway builds: the 402 challenge (`PAYMENT-REQUIRED` and the v1 body,
// rendered from templates) and the receipt (`PAYMENT-RESPONSE`, written without the encoder).
//
// Input: the strings and numbers that go into them (descriptions, MIME types, resource URLs and
// error texts reach the templates as any Unicode text; amounts up to 2^256; every network).
// Properties:
// - the rendered challenge is byte for byte what `JSONEncoder` writes for the same value (v2 and
//   v1), and decodes back to that value, also through the strict JSON reader;
// - the receipt's `compactJSON` is byte for byte the encoder's; the header decodes back to the
//   settlement (with `JSONDecoder`, and with the reader the gateway uses on facilitator answers).
import BigInt
import Foundation
@testable import GatewayCore
import X402
import FuzzSupport

func show(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self).debugDescription }

func checkChallenge(_ input: inout FuzzInput) {
    var offers: [Offer] = []
    for _ in 0..<(1 + Int(input.byte() % 3)) {
        let network = input.pick(Networks.all)
        let amount = BigUInt(Data(input.chunk(maxCount: 32)))
        var extra: [String: JSONValue] = [:]
        if input.bool() { extra["name"] = .string(input.string()) }
        if input.bool() { extra["version"] = .string(input.string()) }
        offers.append(Offer(network: network, amount: amount, asset: input.string(), payTo: input.string(),
                            maxTimeoutSeconds: Int(input.byte()) << 8 | Int(input.byte()), extra: extra, decimals: 6, symbol: "USDC"))
    }
    let method = input.pick([nil, "GET", "POST"] as [String?])
    let pattern = try! RoutePattern((method.map { $0 + " " } ?? "") + "/paid/*")
    let mode = input.pick([nil, .optional, .required] as [PaymentIdentifierMode?])
    // Discoverable routes carry the bazaar declaration (filled into the template per route).
    let discovery = RouteDiscovery(discoverable: input.bool(), output: input.bool() ? .init(example: .string(input.string())) : nil)
    let route = RouteConfig(id: "fuzz", pattern: pattern, upstream: "api", access: .free, description: input.string(),
                            mimeType: input.string(), paymentIdentifier: mode, discovery: discovery)
    let url = input.string(), error = input.string()
    let challenge = Challenge(route: route, offers: offers)

    let bazaarMethod = discovery.discoverable ? Bazaar.method(pattern: pattern, input: nil) : nil
    var extensions: [String: JSONValue] = [:]
    if let mode { extensions[PaymentIdentifier.extensionKey] = PaymentIdentifier.declaration(required: mode == .required) }
    if let bazaarMethod {
        extensions[Bazaar.extensionKey] = Bazaar.declaration(method: bazaarMethod, discovery: discovery, mimeType: route.mimeType,
                                                             routeTemplate: Bazaar.routeTemplate(pattern))
    }
    let expected = PaymentRequired(
        error: error, resource: ResourceInfo(url: url, description: route.description, mimeType: route.mimeType),
        accepts: offers.map(\.requirements), extensions: extensions.isEmpty ? nil : extensions)
    let rendered = challenge.paymentRequired(resourceURL: url, error: error)
    let encoded = try! HeaderCodec.compactJSON(expected)
    require(rendered == encoded, "challenge template \(show(rendered)) differs from the encoder's \(show(encoded))")
    let header = challenge.header(resourceURL: url, error: error)
    require(Base64.decode(header) == rendered, "PAYMENT-REQUIRED is not the base64 of the challenge")
    do {
        let decoded = try HeaderCodec.decode(PaymentRequired.self, from: header)
        require(decoded == expected, "PAYMENT-REQUIRED decodes to another value: \(decoded)")
    } catch {
        require(false, "PAYMENT-REQUIRED does not decode: \(error) \(show(rendered))")
    }
    do {
        let node = try JSONReader.parse(rendered)
        require(node["error"] == .string(error) && node["resource"]?["url"] == .string(url)
                    && node["resource"]?["description"] == .string(route.description), "the strict reader reads other texts")
    } catch {
        require(false, "the strict reader refuses the challenge: \(error) \(show(rendered))")
    }

    let expectedV1 = PaymentRequiredV1(error: error, accepts: offers.compactMap {
        $0.requirementsV1(resourceURL: url, description: route.description, mimeType: route.mimeType, method: bazaarMethod ?? method,
                          discoverable: bazaarMethod != nil)
    })
    let v1 = challenge.v1Body(resourceURL: url, error: error)
    let encodedV1 = try! HeaderCodec.compactJSON(expectedV1)
    require(v1 == encodedV1, "v1 template \(show(v1)) differs from the encoder's \(show(encodedV1))")
    do {
        let decoded = try HeaderCodec.decode(PaymentRequiredV1.self, from: Base64.encode(v1))
        require(decoded == expectedV1, "v1 body decodes to another value: \(decoded)")
    } catch {
        require(false, "v1 body does not decode: \(error)")
    }
}

func checkReceipt(_ input: inout FuzzInput) {
    func optional() -> String? { input.bool() ? input.string() : nil }
    let settlement = SettleResponse(success: input.bool(), errorReason: optional(), errorMessage: optional(), payer: optional(),
                                    transaction: input.string(), network: input.string(), amount: optional())
    let compact = Array(settlement.compactJSON.utf8)
    let encoded = try! HeaderCodec.compactJSON(settlement)
    require(compact == encoded, "receipt \(show(compact)) differs from the encoder's \(show(encoded))")
    let header = Base64.encode(compact)
    do {
        let decoded = try HeaderCodec.decode(SettleResponse.self, from: header)
        require(decoded == settlement, "PAYMENT-RESPONSE decodes to another value: \(decoded)")
        let read = try SettleResponse(json: JSONReader.parse(Base64.decode(header)!))
        require(read == settlement, "PAYMENT-RESPONSE reads back as another value: \(read)")
    } catch {
        require(false, "PAYMENT-RESPONSE \(show(compact)) does not decode: \(error)")
    }
}

Fuzzer.run { bytes in
    var input = FuzzInput(bytes)
    if input.bool() {
        checkChallenge(&input)
    } else {
        checkReceipt(&input)
    }
}
