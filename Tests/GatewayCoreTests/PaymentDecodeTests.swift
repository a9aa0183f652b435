import FixtureEditing
import Foundation
import GatewayCore
import Testing
import X402
import TestScheduling

/// `PresentedPayment.decode` as it was before `JSONReader`: Foundation's `JSONDecoder` over the
/// `Codable` model types. Kept as the reference the new decoding must agree with.
enum FoundationReference {
    private struct VersionProbe: Decodable { var x402Version: Int? }

    struct Decoded: Equatable, CustomStringConvertible {
        var version: Int
        var scheme: String
        var network: String
        var accepted: PaymentRequirements?
        var payload: EVMPayload
        var rawJSON: [UInt8]

        init(version: Int, scheme: String, network: String, accepted: PaymentRequirements?, payload: EVMPayload, rawJSON: [UInt8]) {
            self.version = version
            self.scheme = scheme
            self.network = network
            self.accepted = accepted
            self.payload = payload
            self.rawJSON = rawJSON
        }

        init(_ p: PresentedPayment) {
            self.init(version: p.version, scheme: p.scheme, network: p.network, accepted: p.accepted, payload: p.payload, rawJSON: p.rawJSON)
        }

        var description: String { "v\(version) \(scheme) \(network) accepted=\(String(describing: accepted)) payload=\(payload)" }
    }

    static func decode(header: String, headerVersion: Int) -> Result<Decoded, RefusalReason> {
        guard let bytes = Base64.decode(header) else { return .failure(.malformed) }
        let data = Data(bytes)
        let decoder = JSONDecoder()
        if headerVersion == 2, let p = try? decoder.decode(PaymentPayload.self, from: data), p.x402Version == 2 {
            return .success(Decoded(version: 2, scheme: p.accepted.scheme, network: p.accepted.network, accepted: p.accepted,
                                    payload: p.payload, rawJSON: bytes))
        }
        guard let probe = try? decoder.decode(VersionProbe.self, from: data) else { return .failure(.malformed) }
        switch probe.x402Version ?? headerVersion {
        case 2:
            guard let p = try? decoder.decode(PaymentPayload.self, from: data) else { return .failure(.malformed) }
            return .success(Decoded(version: 2, scheme: p.accepted.scheme, network: p.accepted.network, accepted: p.accepted,
                                    payload: p.payload, rawJSON: bytes))
        case 1:
            guard let p = try? decoder.decode(PaymentPayloadV1.self, from: data) else { return .failure(.malformed) }
            guard let network = Networks.named(p.network)?.caip2 else { return .failure(.networkMismatch) }
            return .success(Decoded(version: 1, scheme: p.scheme, network: network, accepted: nil, payload: .eip3009(p.payload),
                                    rawJSON: bytes))
        default:
            return .failure(.unsupportedVersion)
        }
    }
}

func decodeNew(header: String, headerVersion: Int) -> Result<FoundationReference.Decoded, RefusalReason> {
    do {
        return .success(FoundationReference.Decoded(try PresentedPayment.decode(header: header, headerVersion: headerVersion)))
    } catch {
        return .failure(error)
    }
}

/// Payment JSON of the shapes clients send.
enum SamplePayments {
    static let authorization = EIP3009Authorization(
        from: "0x857b06519E91e3A54538791bDbb0E22373e36b66", to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", value: "1000",
        validAfter: "1740672089", validBefore: "1740672154",
        nonce: "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480")
    static let signature = "0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c"
    static let accepted = PaymentRequirements(
        scheme: "exact", network: "eip155:84532", amount: "1000", asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        payTo: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", maxTimeoutSeconds: 300,
        extra: ["name": .string("USDC"), "version": .string("2")])

    /// What a v2 client sends: resource, accepted requirements, signed authorization.
    static var v2: [UInt8] {
        try! HeaderCodec.compactJSON(PaymentPayload(
            resource: ResourceInfo(url: "https://api.example.com/weather?city=Paris", description: "Weather report", mimeType: "application/json"),
            accepted: accepted, payload: ExactEVMPayload(signature: signature, authorization: authorization)))
    }

    static var v1: [UInt8] {
        try! HeaderCodec.compactJSON(PaymentPayloadV1(
            scheme: "exact", network: "base-sepolia", payload: ExactEVMPayload(signature: signature, authorization: authorization)))
    }

    /// Hand-written, with whitespace, escapes, free-form `extra`/`extensions` and an unknown member.
    static let v2Rich = Array("""
    {
      "x402Version": 2,
      "resource": {"url": "https:\\/\\/api.example.com\\/caf\\u00e9", "description": "caf\u{00E9} \\ud83d\\ude00 \\"q\\"", "mimeType": ""},
      "accepted": {
        "scheme": "exact", "network": "eip155:84532", "amount": "1000",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "maxTimeoutSeconds": 3.0e2,
        "extra": {"name": "USDC", "version": "2", "n": [0, -0, 1.5, 2.0, 1e3, 12345678901234567890, null, true, false, {"k": "v"}]}
      },
      "payload": {
        "signature": "\(signature)",
        "authorization": {"from": "0x857b06519E91e3A54538791bDbb0E22373e36b66", "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
          "value": "1000", "validAfter": "1740672089", "validBefore": "1740672154",
          "nonce": "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}
      },
      "extensions": {"bazaar": {"info": {"input": {"type": "http", "method": "GET"}, "ratio": 0.25}}},
      "unknown": [1, "two", {"three": [3.0]}]
    }
    """.utf8)

    static let v1Rich = Array("""
    {"x402Version":1,"scheme":"exact","network":"base-sepolia","ignored":{"a":[1,2,3]},
     "payload":{"signature":"\(signature)","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66",
     "to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"1000","validAfter":"1740672089","validBefore":"1740672154",
     "nonce":"0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}}}
    """.utf8)
}

private struct FuzzGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Payment header decoding")
struct PaymentDecodeTests {
    static func header(_ json: String) -> String { Base64.encode(Array(json.utf8)) }

    static let v2Body = String(decoding: SamplePayments.v2, as: UTF8.self)
    static let v1Body = String(decoding: SamplePayments.v1, as: UTF8.self)

    /// (JSON, header version, expected outcome: nil = accepted, else the refusal).
    static let cases: [(String, Int, RefusalReason?)] = [
        (v2Body, 2, nil),
        (v2Body, 1, nil),  // the body's version wins over the header's
        (v1Body, 1, nil),
        (v1Body, 2, nil),
        (String(decoding: SamplePayments.v2Rich, as: UTF8.self), 2, nil),
        (String(decoding: SamplePayments.v1Rich, as: UTF8.self), 1, nil),
        (v1Body.replacingOccurrences(of: "base-sepolia", with: "eip155:84532"), 1, nil),
        (v1Body.replacingOccurrences(of: "base-sepolia", with: "base-goerli"), 1, .networkMismatch),
        (v1Body.replacingOccurrences(of: "base-sepolia", with: "Base-Sepolia"), 1, .networkMismatch),
        (v1Body.replacingOccurrences(of: "\"network\":\"base-sepolia\"", with: "\"network\":8453"), 1, .malformed),
        (v2Body.replacingOccurrences(of: "\"x402Version\":2", with: "\"x402Version\":3"), 2, .unsupportedVersion),
        (v2Body.replacingOccurrences(of: "\"x402Version\":2", with: "\"x402Version\":0"), 2, .unsupportedVersion),
        (v2Body.replacingOccurrences(of: "\"x402Version\":2", with: "\"x402Version\":-1"), 1, .unsupportedVersion),
        (v2Body.replacingOccurrences(of: "\"x402Version\":2", with: "\"x402Version\":2.0"), 2, nil),
        (v2Body.replacingOccurrences(of: "\"x402Version\":2", with: "\"x402Version\":0.2e1"), 1, nil),
        (v2Body.replacingOccurrences(of: "\"x402Version\":2", with: "\"x402Version\":2.5"), 2, .malformed),
        (v2Body.replacingOccurrences(of: "\"x402Version\":2", with: "\"x402Version\":\"2\""), 2, .malformed),
        (v2Body.replacingOccurrences(of: "\"x402Version\":2", with: "\"x402Version\":true"), 2, .malformed),
        (v2Body.replacingOccurrences(of: "\"x402Version\":2", with: "\"x402Version\":1e400"), 2, .malformed),
        (v2Body.replacingOccurrences(of: "\"x402Version\":2", with: "\"x402Version\":null"), 2, .malformed),
        (v2Body.replacingOccurrences(of: ",\"x402Version\":2", with: ""), 2, .malformed),
        (v2Body.replacingOccurrences(of: ",\"x402Version\":2", with: ""), 1, .malformed),
        (v2Body.replacingOccurrences(of: "\"x402Version\":2", with: "\"x402Version\":1"), 2, .malformed),  // v2 shape, v1 version
        (v1Body.replacingOccurrences(of: "\"x402Version\":1", with: "\"x402Version\":2"), 1, .malformed),
        (v2Body.replacingOccurrences(of: "\"amount\":\"1000\"", with: "\"amount\":1000"), 2, .malformed),
        (v2Body.replacingOccurrences(of: "\"maxTimeoutSeconds\":300", with: "\"maxTimeoutSeconds\":\"300\""), 2, .malformed),
        (v2Body.replacingOccurrences(of: "\"maxTimeoutSeconds\":300", with: "\"maxTimeoutSeconds\":300.5"), 2, .malformed),
        (v2Body.replacingOccurrences(of: "\"maxTimeoutSeconds\":300", with: "\"maxTimeoutSeconds\":3e2"), 2, nil),
        (v2Body.replacingOccurrences(of: "\"mimeType\":\"application/json\"", with: "\"mimeType\":null"), 2, .malformed),
        (v2Body.replacingOccurrences(of: "\"extra\":{\"name\":\"USDC\",\"version\":\"2\"}", with: "\"extra\":null"), 2, nil),
        (v2Body.replacingOccurrences(of: "\"extra\":{\"name\":\"USDC\",\"version\":\"2\"}", with: "\"extra\":[]"), 2, .malformed),
        (v2Body.replacingOccurrences(of: "\"version\":\"2\"", with: "\"version\":2"), 2, nil),
        (v2Body.replacingOccurrences(of: "\"signature\":", with: "\"signature\":null,\"sig\":"), 2, .malformed),
        (v2Body.replacingOccurrences(of: "\"nonce\":", with: "\"Nonce\":"), 2, .malformed),
        (v2Body.replacingOccurrences(of: "\"value\":\"1000\"", with: "\"value\":\"1000\",\"extraField\":[]"), 2, nil),
        ("[" + v2Body + "]", 2, .malformed),
        ("null", 2, .malformed),
        ("\"x402Version\"", 2, .malformed),
        ("{}", 2, .malformed),
        ("{}", 3, .unsupportedVersion),  // no version anywhere usable
        ("{\"x402Version\":9}", 2, .unsupportedVersion),
        ("{\"x402Version\":9", 2, .malformed),
        (v2Body + " ", 2, nil),
        (v2Body + "x", 2, .malformed),
    ]

    @Test("a leading byte-order mark is refused (JSONDecoder skips it, but the raw JSON goes to the facilitator)")
    func byteOrderMark() {
        #expect(decodeNew(header: Self.header("\u{FEFF}" + Self.v2Body), headerVersion: 2) == .failure(.malformed))
    }

    @Test("each crafted payment is accepted or refused with the same reason as with JSONDecoder")
    func craftedCases() {
        for (json, headerVersion, expected) in Self.cases {
            // Every refused case is an edit of a valid body; an edit that did not apply shows here.
            #expect(expected == nil || (json != Self.v2Body && json != Self.v1Body), "\(json)")
            let header = Self.header(json)
            let reference = FoundationReference.decode(header: header, headerVersion: headerVersion)
            let new = decodeNew(header: header, headerVersion: headerVersion)
            #expect(new == reference, "\(json) (header v\(headerVersion))")
            switch new {
            case .success(let decoded):
                #expect(expected == nil, "\(json)")
                #expect(decoded.rawJSON == Array(json.utf8))
            case .failure(let reason):
                #expect(reason == expected, "\(json)")
            }
        }
    }

    @Test("headers that are not base64 are malformed")
    func notBase64() {
        for header in ["", "not base64!", "eyJ4NDAyVmVyc2lvbiI6Mn0===", "e"] {
            #expect(decodeNew(header: header, headerVersion: 2) == .failure(.malformed))
        }
    }

    @Test("a decoded v2 payment carries the fields and the exact bytes")
    func fields() throws {
        let payment = try PresentedPayment.decode(header: Base64.encode(SamplePayments.v2Rich), headerVersion: 2)
        #expect(payment.version == 2)
        #expect(payment.scheme == "exact")
        #expect(payment.network == "eip155:84532")
        #expect(payment.accepted?.maxTimeoutSeconds == 300)
        #expect(payment.accepted?.extra?["name"] == .string("USDC"))
        #expect(payment.accepted?.extra?["n"] == .array([
            .number("0"), .number("0"), .number("1.5"), .number("2"), .number("1000"), .number("1.2345678901234567e+19"),
            .null, .bool(true), .bool(false), .object(["k": .string("v")]),
        ]))
        #expect(payment.payload == .eip3009(ExactEVMPayload(signature: SamplePayments.signature, authorization: SamplePayments.authorization)))
        #expect(payment.rawJSON == SamplePayments.v2Rich)
        #expect(payment.key.nonce == SamplePayments.authorization.nonce)
    }

    /// Mutates valid payments byte-wise and compares with the JSONDecoder reference. The new decoding
    /// may only be stricter where `JSONReader` refuses JSON that `JSONDecoder` lets through, each
    /// case confirmed independently of the reader: trailing commas; invalid UTF-8, an invalid number,
    /// a raw control character, an invalid escape or a lone surrogate escape inside a member nobody
    /// reads (JSONDecoder checks those only when it decodes them); duplicate keys. There the reason
    /// is `.malformed`, also where JSONDecoder, never reading that part, refused for another reason.
    @Test("thousands of mutated payments: same outcome as with JSONDecoder, apart from documented strictness", .cpuHeavy)
    func mutatedPayments() throws {
        // Longer runs: X402_JSON_FUZZ_ITERATIONS=200000 X402_JSON_FUZZ_SEED=7 swift test --filter mutatedPayments
        let environment = ProcessInfo.processInfo.environment
        let iterations = environment["X402_JSON_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 6000
        var rng = FuzzGenerator(state: environment["X402_JSON_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x402)
        let bases: [([UInt8], Int)] = [
            (SamplePayments.v2, 2), (SamplePayments.v2Rich, 2), (SamplePayments.v1, 1), (SamplePayments.v1Rich, 1),
            (SamplePayments.v2Rich, 1), (SamplePayments.v1, 2),
        ]
        let interesting = Array(#"{}[],:"\ 0123456789-+.eEtrufalsn"#.utf8) + [0x00, 0x09, 0x0A, 0x1F, 0x7F, 0x80, 0xBF, 0xC3, 0xE2, 0xED, 0xF0, 0xFF]
        var outcomes: [String: Int] = [:]
        for iteration in 0..<iterations {
            let (base, headerVersion) = bases[iteration % bases.count]
            var bytes = base
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                guard !bytes.isEmpty else { break }
                let at = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<6, using: &rng) {
                case 0: bytes[at] = interesting.randomElement(using: &rng)!
                case 1: bytes[at] = UInt8.random(in: 0...255, using: &rng)
                case 2: bytes.insert(interesting.randomElement(using: &rng)!, at: at)
                case 3: bytes.remove(at: at)
                case 4: bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...8, using: &rng)))
                default:
                    let span = Array(bytes[at..<min(bytes.count, at + Int.random(in: 1...12, using: &rng))])
                    bytes.insert(contentsOf: span, at: Int.random(in: 0...bytes.count, using: &rng))
                }
            }
            let header = Base64.encode(bytes)
            let reference = FoundationReference.decode(header: header, headerVersion: headerVersion)
            let new = decodeNew(header: header, headerVersion: headerVersion)
            let text = String(decoding: bytes, as: UTF8.self)
            switch (reference, new) {
            case (.success(let a), .success(let b)):
                #expect(a == b, "\(text)")
                outcomes["both accept", default: 0] += 1
            case (.failure(let a), .failure(let b)) where a == b:
                outcomes["both refuse (\(a.rawValue))", default: 0] += 1
            case (.failure(let a), .success):
                Issue.record("accepted what JSONDecoder refuses (\(a)): \(text)")
            case (.success, .failure(let b)), (.failure, .failure(let b)):
                // JSONDecoder accepted, or refused for a reason it found before tripping over what
                // it never reads; the reader refuses the JSON itself.
                if b == .malformed, let kind = Self.confirmedStrictness(bytes) {
                    outcomes["stricter (JSONDecoder: \(reference.reasonText)): \(kind)", default: 0] += 1
                } else {
                    Issue.record("\(b) where JSONDecoder gives \(reference.reasonText) (reader: \(Self.readerVerdict(bytes))): \(text)")
                }
            }
        }
        print("mutated payments (\(iterations)):", outcomes.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))
        #expect(outcomes["both accept", default: 0] > 100)
    }

    static func readerVerdict(_ json: [UInt8]) -> String {
        do {
            _ = try JSONReader.parse(json)
            return "accepted"
        } catch {
            return error.description
        }
    }

    /// What makes the reader refuse `json`, when that is confirmed without the reader: strict
    /// RFC 8259 points that JSONDecoder lets through.
    static func confirmedStrictness(_ json: [UInt8]) -> String? {
        let error: JSONReaderError
        do {
            _ = try JSONReader.parse(json)
            return nil
        } catch let e {
            error = e
        }
        let at = error.offset
        guard at < json.count else { return nil }
        let whitespace: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0D]
        switch error.kind {
        case .trailingComma:
            guard json[at] == UInt8(ascii: "}") || json[at] == UInt8(ascii: "]") else { return nil }
            return json[..<at].last { !whitespace.contains($0) } == UInt8(ascii: ",") ? "trailing comma" : nil
        case .invalidUTF8:
            var bytes = json[at...].makeIterator()
            var parser = Unicode.UTF8.ForwardParser()
            if case .error = parser.parseScalar(from: &bytes) { return "invalid UTF-8" }
            return nil
        case .invalidNumber, .unexpectedCharacter:
            // The run of number characters the offending byte belongs to (or ends).
            let numberBytes = Set(Array("0123456789+-.eE".utf8))
            var start = at
            while start > 0, numberBytes.contains(json[start - 1]) { start -= 1 }
            var end = at
            while end < json.count, numberBytes.contains(json[end]) { end += 1 }
            guard start < at || numberBytes.contains(json[at]), !insideString(json, at: start) else { return nil }
            let token = String(decoding: json[start..<end], as: UTF8.self)
            let grammar = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/
            return token.wholeMatch(of: grammar) == nil ? "invalid number" : nil
        case .controlCharacter:
            return json[at] < 0x20 && insideString(json, at: at) ? "raw control character in a string" : nil
        case .invalidEscape:
            // The backslash is at most five bytes back (`\u12` then a bad digit).
            for start in stride(from: at - 1, through: max(0, at - 5), by: -1)
            where json[start] == UInt8(ascii: "\\") && insideString(json, at: start) {
                let escape = json[(start + 1)...].prefix(5)
                guard let letter = escape.first else { return "invalid escape" }
                if Array(#""\/bfnrt"#.utf8).contains(letter) { return nil }
                if letter != UInt8(ascii: "u") { return "invalid escape" }
                return hexValue(escape.dropFirst()) == nil ? "invalid escape" : nil
            }
            return nil
        case .unpairedSurrogate:
            guard json[at] == UInt8(ascii: "\\"), insideString(json, at: at),
                  json[(at + 1)...].first == UInt8(ascii: "u"), let unit = hexValue(json[(at + 2)...].prefix(4)) else { return nil }
            if (0xDC00...0xDFFF).contains(unit) { return "lone surrogate escape" }
            guard (0xD800...0xDBFF).contains(unit) else { return nil }
            let next = json[(at + 6)...]
            if next.prefix(2).elementsEqual("\\u".utf8), let low = hexValue(next.dropFirst(2).prefix(4)), (0xDC00...0xDFFF).contains(low) {
                return nil
            }
            return "lone surrogate escape"
        case .duplicateKey:
            return "duplicate key"
        default:
            return nil
        }
    }
}

/// Four hex digits, independently of the reader.
private func hexValue(_ digits: ArraySlice<UInt8>) -> Int? {
    let hex = Set(Array("0123456789abcdefABCDEF".utf8))
    guard digits.count == 4, digits.allSatisfy(hex.contains) else { return nil }
    return Int(String(decoding: digits, as: UTF8.self), radix: 16)
}

/// Whether `offset` is inside a string literal, by a plain scan for quotes and backslashes.
private func insideString(_ json: [UInt8], at offset: Int) -> Bool {
    var inString = false
    var escaped = false
    for byte in json[..<offset] {
        if !inString {
            inString = byte == UInt8(ascii: "\"")
        } else if escaped {
            escaped = false
        } else if byte == UInt8(ascii: "\\") {
            escaped = true
        } else if byte == UInt8(ascii: "\"") {
            inString = false
        }
    }
    return inString
}

extension Result where Success == FoundationReference.Decoded, Failure == RefusalReason {
    var reasonText: String {
        switch self {
        case .success: return "accepted"
        case .failure(let reason): return reason.rawValue
        }
    }
}

/// A throughput probe, off by default and never asserting on time. Run it in a release build:
///   X402_JSON_BENCH=1 swift test -c release --filter PaymentDecodeThroughput
@Suite("Payment decode throughput probe", .enabled(if: ProcessInfo.processInfo.environment["X402_JSON_BENCH"] != nil))
struct PaymentDecodeThroughputTests {
    @Test("Prints v2 payment header decodes per second: JSONDecoder (before) and JSONReader (after)")
    func decodes() throws {
        let json = SamplePayments.v2
        let header = Base64.encode(json)
        let iterations = 20_000
        print("v2 payment header: \(json.count) bytes of JSON, \(header.utf8.count) of base64")

        func measure(_ label: String, _ body: () -> Bool) {
            var ok = 0
            let clock = ContinuousClock()
            let elapsed = clock.measure { for _ in 0..<iterations where body() { ok += 1 } }
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print("\(label): \(Int(Double(iterations) / seconds)) decodes/s (\(String(format: "%.2f", seconds * 1e6 / Double(iterations))) µs each)")
            #expect(ok == iterations)
        }

        measure("before: JSONDecoder (base64 + JSON + model)") {
            if case .success = FoundationReference.decode(header: header, headerVersion: 2) { return true }
            return false
        }
        measure("after:  JSONReader  (base64 + JSON + model)") {
            (try? PresentedPayment.decode(header: header, headerVersion: 2)) != nil
        }
        measure("        JSONReader.parse alone") { (try? JSONReader.parse(json)) != nil }
        measure("        base64 alone") { Base64.decode(header) != nil }
    }
}
