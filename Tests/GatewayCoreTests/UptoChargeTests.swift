import BigInt
import GatewayCore
import Testing
import X402

/// The charge of an `upto` request, decided from the upstream's answer: the value type alone.
@Suite("upto: the charge decided from the upstream's answer")
struct UptoChargeTests {
    static let network = Networks.named("eip155:84532")!
    static let usdc = network.defaultAsset!.address

    static func offer(maximum: BigUInt = 10_000, decimals: Int? = 6) -> Offer {
        Offer(scheme: "upto", network: network, amount: maximum, asset: usdc, payTo: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
              maxTimeoutSeconds: 300, extra: [:], decimals: decimals, symbol: "USDC", transferMethod: .permit2)
    }

    static func decide(_ report: String?, rule: UptoMetering.Rule? = nil, bytes: Int = 0, json: String? = nil,
                       offer: Offer = offer()) -> UptoCharge {
        UptoCharge.decide(offer: offer, metering: UptoMetering(rule: rule), report: report, bodyBytes: bytes, json: json.map { Array($0.utf8) })
    }

    @Test("Settlement-Overrides in the SDK's forms: atomic units, NN% of the maximum (two decimals, rounded down), $ cut to the decimals",
          arguments: [
              (#"{"amount":"4000"}"#, 4000),
              (#"{"amount":"0004000"}"#, 4000),
              (#"{"amount":4000}"#, 4000),
              (#"{"amount":"0"}"#, 0),
              (#"{"amount":"50%"}"#, 5000),
              (#"{"amount":"12.5%"}"#, 1250),
              (#"{"amount":"33.33%"}"#, 3333),
              (#"{"amount":"0.01%"}"#, 1),
              (#"{"amount":"50.%"}"#, 5000),
              (#"{"amount":"$0.002"}"#, 2000),
              (#"{"amount":"$0.0020009"}"#, 2000),
              (#"{"amount":"$0"}"#, 0),
              (#"{"amount":"10","asset":"0x036cbd53842c5426634e7929541ec2318f3dcf7e","network":"eip155:84532"}"#, 10),
              (#" { "amount" : "7" , "note": "unknown members are ignored" } "#, 7),
          ] as [(String, Int)])
    func reported(header: String, amount: Int) {
        #expect(Self.decide(header) == UptoCharge(amount: BigUInt(amount), basis: .report))
    }

    @Test("A report above the maximum is capped (the upstream's error), at any form", arguments: [
        #"{"amount":"10001"}"#, #"{"amount":"100.01%"}"#, #"{"amount":"$1"}"#,
        #"{"amount":"115792089237316195423570985008687907853269984665640564039457584007913129639936"}"#,
    ])
    func capped(header: String) {
        #expect(Self.decide(header) == UptoCharge(amount: 10_000, basis: .report, capped: true))
        #expect(Self.decide(header).ledgerBasis == "report_capped")
    }

    @Test("A report that is not a number, negative, or names another asset or network is not used: the maximum, with why",
          arguments: [
              (#"{"amount":"abc"}"#, "is not atomic units"),
              (#"{"amount":""}"#, "is not atomic units"),
              (#"{"amount":"-5"}"#, "is negative"),
              (#"{"amount":-5}"#, "is negative"),
              (#"{"amount":"1.5"}"#, "is not atomic units"),
              (#"{"amount":"1e3"}"#, "is not atomic units"),
              (#"{"amount":"0x10"}"#, "is not atomic units"),
              (#"{"amount":"12.345%"}"#, "is not atomic units"),
              (#"{"amount":"-1%"}"#, "is negative"),
              (#"{"amount":"$-1"}"#, "is not atomic units"),
              (#"{"amount":true}"#, "is not atomic units"),
              (#"{"amount":null}"#, "has no amount"),
              (#"{}"#, "has no amount"),
              (#"{"amount":"10","asset":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8"}"#, "names another asset"),
              (#"{"amount":"10","asset":"USDC"}"#, "names another asset"),
              (#"{"amount":"10","network":"eip155:8453"}"#, "names another network"),
              (#"4000"#, "not a JSON object"),
              (#"{"amount":"4000""#, "not a JSON object"),
              (#"amount=4000"#, "not a JSON object"),
          ])
    func unusable(header: String, why: String) {
        let charge = Self.decide(header)
        #expect(charge.amount == 10_000 && charge.basis == .maximum && !charge.capped)
        #expect(charge.problem?.contains(why) == true, "\(charge.problem ?? "no problem")")
    }

    @Test("Dollars need the asset's decimals; without them the report is not used")
    func dollarsWithoutDecimals() {
        let charge = Self.decide(#"{"amount":"$0.002"}"#, offer: Self.offer(decimals: nil))
        #expect(charge.basis == .maximum && charge.problem?.contains("decimals") == true)
        #expect(Self.decide(#"{"amount":"2000"}"#, offer: Self.offer(decimals: nil)).amount == 2000)
    }

    @Test("Without a report: the rule; without a rule: the maximum (as the SDK's servers charge)")
    func order() throws {
        let perKiB = UptoMetering.Rule.perKiB(try UnitPrice.parse("$0.001", decimals: 6).get())
        #expect(Self.decide(nil) == UptoCharge(amount: 10_000, basis: .maximum))
        #expect(Self.decide(nil, rule: perKiB, bytes: 3072) == UptoCharge(amount: 3000, basis: .perKiB))
        // A usable report wins over the rule; an unusable one falls through to it.
        #expect(Self.decide(#"{"amount":"5"}"#, rule: perKiB, bytes: 3072) == UptoCharge(amount: 5, basis: .report))
        let fallen = Self.decide(#"{"amount":"x"}"#, rule: perKiB, bytes: 3072)
        #expect(fallen.amount == 3000 && fallen.basis == .perKiB && fallen.problem != nil)
        #expect(Self.decide(nil, rule: perKiB, bytes: 1 << 20) == UptoCharge(amount: 10_000, basis: .perKiB, capped: true))
    }

    @Test("The per-unit rule reads a plain non-negative number at its path in the JSON answer", arguments: [
        (#"{"usage":{"total_tokens":321}}"#, "usage.total_tokens", 3210, UptoCharge.Basis.perUnit),
        (#"{"usage":{"total_tokens":0}}"#, "usage.total_tokens", 0, .perUnit),
        (#"{"choices":[{"n":2.5}]}"#, "choices.0.n", 25, .perUnit),
        (#"{"usage":{"total_tokens":"321"}}"#, "usage.total_tokens", 10_000, .maximum),
        (#"{"usage":{"total_tokens":-3}}"#, "usage.total_tokens", 10_000, .maximum),
        (#"{"usage":{}}"#, "usage.total_tokens", 10_000, .maximum),
        (#"not json"#, "usage.total_tokens", 10_000, .maximum),
        (#"{"usage":{"total_tokens":5000}}"#, "usage.total_tokens", 10_000, .perUnit),  // 50 000 units: capped
    ] as [(String, String, Int, UptoCharge.Basis)])
    func perUnit(json: String, field: String, amount: Int, basis: UptoCharge.Basis) throws {
        let rule = UptoMetering.Rule.perUnit(field: field.split(separator: ".").map(String.init),
                                             price: try UnitPrice.parse("$0.00001", decimals: 6).get())
        let charge = Self.decide(nil, rule: rule, json: json)
        #expect(charge.amount == BigUInt(amount) && charge.basis == basis)
        #expect((charge.problem != nil) == (basis == .maximum))
    }

    @Test("Unit prices are exact below one atomic unit and costs round down", arguments: [
        ("$0.000001", 6, 1, 0, "1"),
        ("$0.0000002", 6, 2, 1, "2e-1"),
        ("$1", 6, 1_000_000, 0, "1000000"),
        ("250", 6, 250, 0, "250"),
        ("2.5", 6, 25, 1, "25e-1"),
        ("$0.5", 0, 5, 1, "5e-1"),
    ] as [(String, Int, Int, Int, String)])
    func unitPrices(text: String, decimals: Int, numerator: Int, scale: Int, description: String) throws {
        let price = try UnitPrice.parse(text, decimals: decimals).get()
        #expect(price == UnitPrice(numerator: BigUInt(numerator), scale: scale) && price.description == description)
    }

    @Test("Unit prices that are not plain decimals are refused", arguments: ["", "$", "-1", "1e-3", "0x10", "1.", ".5", "$1.2.3", "€1"])
    func badUnitPrices(text: String) {
        #expect(throws: UnitPrice.Problem.notDecimal) { try UnitPrice.parse(text, decimals: 6).get() }
    }

    @Test("Costs: pro rata per KiB, exact fractions, floor")
    func costs() throws {
        let twoTenths = try UnitPrice.parse("$0.0000002", decimals: 6).get()  // 0.2 units per unit
        #expect(twoTenths.cost(count: 4) == 0 && twoTenths.cost(count: 5) == 1 && twoTenths.cost(count: 99) == 19)
        let perKiB = try UnitPrice.parse("1000", decimals: 6).get()
        #expect(perKiB.cost(count: 1023, per: 1024) == 999 && perKiB.cost(count: 1024, per: 1024) == 1000)
    }
}

@Suite("upto: the stream meter")
struct StreamMeterTests {
    @Test("counts every byte and keeps the last JSON event, whatever the chunking", arguments: [1, 2, 3, 7, 64, 10_000])
    func lastJSONEvent(chunk: Int) {
        let text = "event: tick\ndata: {\"i\":0}\n\n: comment\ndata: {\"usage\":\r\ndata: {\"total_tokens\":42}}\r\n\r\ndata: [DONE]\n\n"
        let bytes = Array(text.utf8)
        var meter = StreamMeter()
        var start = 0
        while start < bytes.count {
            meter.feed(bytes[start..<min(start + chunk, bytes.count)])
            start += chunk
        }
        #expect(meter.bytes == bytes.count)
        #expect(meter.lastJSONEvent.map { String(decoding: $0, as: UTF8.self) } == "{\"usage\":\n{\"total_tokens\":42}}")
    }

    @Test("an event not ended by a blank line, or not JSON, is not kept; a plain body is only counted")
    func incomplete() {
        var meter = StreamMeter()
        meter.feed(Array("data: {\"a\":1}\n".utf8))
        #expect(meter.lastJSONEvent == nil)
        meter.feed(Array("\n".utf8))
        #expect(meter.lastJSONEvent == Array("{\"a\":1}".utf8))
        var plain = StreamMeter()
        plain.feed(Array(repeating: UInt8(ascii: "x"), count: 100_000))
        #expect(plain.bytes == 100_000 && plain.lastJSONEvent == nil)
    }

    @Test("the per-unit rule reads the usage from the stream's last JSON event")
    func perUnitOnStream() throws {
        var meter = StreamMeter()
        meter.feed(Array("data: {\"usage\":{\"total_tokens\":7}}\n\ndata: [DONE]\n\n".utf8))
        let rule = UptoMetering.Rule.perUnit(field: ["usage", "total_tokens"], price: try UnitPrice.parse("100", decimals: 6).get())
        let charge = UptoCharge.decide(offer: UptoChargeTests.offer(), metering: UptoMetering(rule: rule), report: nil,
                                       bodyBytes: meter.bytes, json: meter.lastJSONEvent)
        #expect(charge == UptoCharge(amount: 700, basis: .perUnit))
    }
}
