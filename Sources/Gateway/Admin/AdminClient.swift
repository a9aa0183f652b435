import Foundation
import GatewayCore
import GatewayStorage
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Paywall
import Synchronization
import X402
import X402Facilitator

/// Client side of the admin listener, for `x402-gateway reload`.
public enum AdminClient {
    /// POSTs `/reload`; returns whether it was applied and the JSON answer.
    public static func reload(_ address: ListenAddress, token: String? = nil) async throws -> (applied: Bool, body: String) {
        let host = address.host == "0.0.0.0" ? "127.0.0.1" : address.host == "::" ? "::1" : address.host
        let authority = host.contains(":") ? "[\(host)]:\(address.port)" : "\(host):\(address.port)"
        let client = JSONPostClient(url: "http://\(authority)/reload", headers: token.map { ["Authorization": "Bearer \($0)"] } ?? [:],
                                    timeout: .seconds(10), maxResponseBytes: 1 << 20)
        let answer: (status: Int, body: [UInt8])
        do {
            answer = try await client.exchange([])
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
        return (answer.status == 200, String(decoding: answer.body, as: UTF8.self))
    }
}
