import FixtureEditing
import Foundation
import Gateway
import GatewayCore
import GatewayTestSupport
import Testing

/// `facilitators:` over real sockets (issue 16 item 3): a facilitator that is down from the start,
/// and one stopped in the middle of a run; payments keep being served through the other, and no
/// payment is settled twice (each facilitator counts its `/settle` calls).
@Suite("Several facilitators (live)", .timeLimit(.minutes(2)))
struct FacilitatorFailoverTests {
    static func yaml(first: String) -> String {
        paidYAML.replacingOccurrences(of: "facilitator: { url: \"{{FACILITATOR}}\", timeout: 3s }", with: """
            facilitators:
              - { url: "\(first)", timeout: 3s, connectTimeout: 1s }
              - { url: "{{FACILITATOR}}", timeout: 3s }
            admin: { listen: 127.0.0.1:0 }
            """)
    }

    @Test("the first facilitator stopped mid-run: later payments go to the second, each payment settled exactly once")
    func stoppedMidRun() async throws {
        let first = try ScriptedHTTPServer(reply: FacilitatorClientTests.accepting)
        let firstPort = try await first.start()
        try await TestHarness.withPaidGateway(yaml: Self.yaml(first: "http://127.0.0.1:\(firstPort)")) { gw, second in
            var served = 0
            for n in 0..<6 {
                if n == 3 { await first.stop() }
                let r = try await pay(gw, "/paid/\(n)", try await signedHeader(gw, "/paid/\(n)", TestPayer()))
                #expect(r.status == 200, "payment \(n): \(r.bodyText)")
                if r.status == 200 { served += 1 }
            }
            let firstSettles = first.requests.filter { $0.uri.hasSuffix("/settle") }.count
            #expect(firstSettles == 3, "the first three, while it was up")
            #expect(second.settleCalls == 3, "the last three, after it stopped")
            #expect(firstSettles + second.settleCalls == served, "no payment settled twice")
            let ready = try await RawHTTP.send(port: try #require(gw.adminPort), raw: "GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            #expect(ready.status == 200, "the second still serves: ready")
            #expect(ready.bodyText.contains("http://127.0.0.1:\(firstPort): resting after a failure"), "\(ready.bodyText)")
        }
    }

    @Test("a first facilitator that is down from the start: every payment is verified and settled by the second")
    func downFromTheStart() async throws {
        try await TestHarness.withPaidGateway(yaml: Self.yaml(first: "http://127.0.0.1:1")) { gw, second in
            for n in 0..<3 {
                let r = try await pay(gw, "/paid/\(n)", try await signedHeader(gw, "/paid/\(n)", TestPayer()))
                #expect(r.status == 200)
            }
            #expect(second.settleCalls == 3)
            #expect(second.settledCount == 3)
        }
    }

    @Test("the loader takes a list, refuses both forms together, a repeated url, and an empty list, with positions")
    func loader() throws {
        func parse(_ yaml: String) throws -> GatewayConfig {
            try ConfigLoader.parse(yaml: yaml.replacingOccurrences(of: "{{UPSTREAM}}", with: "http://127.0.0.1:1"), file: "t.yaml", environment: [:])
        }
        let list = try parse(Self.yaml(first: "https://a.example/x402").replacingOccurrences(of: "{{FACILITATOR}}", with: "https://b.example"))
        #expect(list.facilitators.map(\.url) == ["https://a.example/x402", "https://b.example"])
        for (yaml, message) in [
            (paidYAML + "\nfacilitators: [{ url: \"https://b.example\" }]\n", "t.yaml:4:1: use either facilitator (one) or facilitators (a list), not both"),
            (Self.yaml(first: "https://b.example").replacingOccurrences(of: "{{FACILITATOR}}", with: "https://b.example"),
             "facilitators[1] repeats the url https://b.example"),
            (paidYAML.replacingOccurrences(of: "facilitator: { url: \"{{FACILITATOR}}\", timeout: 3s }", with: "facilitators: []"),
             "t.yaml:4:15: facilitators must be a list of { url: ... } entries"),
        ] {
            do {
                _ = try parse(yaml)
                Issue.record("accepted: \(yaml)")
            } catch {
                #expect("\(error)".contains(message), "\(error)")
            }
        }
    }
}
