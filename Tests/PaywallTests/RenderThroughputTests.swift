import Foundation
import GatewayCore
import Paywall
import Testing

/// A render-cost probe, off by default and never asserting on time. Run it in a release build:
///   X402_PAYWALL_BENCH=1 swift test -c release --filter RenderThroughputTests
@Suite("Paywall render probe", .enabled(if: ProcessInfo.processInfo.environment["X402_PAYWALL_BENCH"] != nil))
struct RenderThroughputTests {
    @Test("Prints pages filled per second on one core (nonce, URL, 402 JSON)")
    func renders() {
        let f = PageFixture()
        let iterations = 50_000
        let url = "https://api.example.com/weather?city=Paris"
        var bytes = 0
        let elapsed = ContinuousClock().measure {
            for _ in 0..<iterations {
                let json = f.challenge.paymentRequired(resourceURL: url)
                bytes &+= f.page.render(paymentRequiredJSON: json, resourceURL: url, method: "GET").body.count
            }
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("paywall render: \(Int(Double(iterations) / seconds)) pages/s (\(String(format: "%.2f", seconds * 1e6 / Double(iterations))) µs each, \(bytes / iterations) bytes)")
        #expect(bytes > 0)
    }
}
