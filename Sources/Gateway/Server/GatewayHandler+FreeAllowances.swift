import Foundation
import GatewayCore
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import X402

// MARK: - Free allowances counted in the store

extension GatewayHandler {
    /// A request on a priced route whose free allowance is being counted in the store: its body
    /// parts wait here (reads are held meanwhile) until the count says forward or 402.
    final class AdmissionWait {
        let head: HTTPRequestHead
        let decision: Decision.Admission
        let snapshot: GatewaySnapshot
        let requestID: String
        let remoteAddress: String?
        let expectsContinue: Bool
        var body: [ByteBuffer] = []
        var ended = false
        var timer: Scheduled<Void>?

        init(head: HTTPRequestHead, decision: Decision.Admission, snapshot: GatewaySnapshot, requestID: String,
             remoteAddress: String?, expectsContinue: Bool) {
            self.head = head
            self.decision = decision
            self.snapshot = snapshot
            self.requestID = requestID
            self.remoteAddress = remoteAddress
            self.expectsContinue = expectsContinue
        }
    }

    /// A count slower than this is taken as not recorded: the 402 (fail closed).
    static let admissionTimeout = TimeAmount.seconds(2)
}
