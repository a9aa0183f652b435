import X402
import X402Facilitator

/// Times every facilitator call into `x402_facilitator_request_duration_seconds{operation}`.
struct MeteredFacilitator: Facilitator {
    let inner: any Facilitator
    let metrics: GatewayMetrics

    private func timed<T>(_ operation: String, _ call: () async throws(FacilitatorFailure) -> T) async throws(FacilitatorFailure) -> T {
        let started = ContinuousClock.now
        defer { metrics.facilitatorCall(operation, duration: ContinuousClock.now - started) }
        return try await call()
    }

    func verify(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> VerifyResponse {
        try await timed("verify") { () async throws(FacilitatorFailure) in
            try await inner.verify(version: version, paymentPayload: paymentPayload, requirements: requirements)
        }
    }

    func settle(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> SettleResponse {
        try await timed("settle") { () async throws(FacilitatorFailure) in
            try await inner.settle(version: version, paymentPayload: paymentPayload, requirements: requirements)
        }
    }

    func supported() async throws(FacilitatorFailure) -> SupportedResponse {
        try await timed("supported") { () async throws(FacilitatorFailure) in try await inner.supported() }
    }
}
