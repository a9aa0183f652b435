import Foundation
import Gateway
import GatewayCore
import GatewayStorage
import GatewayTestSupport
import Logging
import Synchronization
import Testing
import X402
import X402Crypto
import X402Facilitator

/// Rounds of the reconciler over an in-memory ledger and a fake JSON-RPC node; time is moved by hand.
@Suite("Reconciler rounds", .timeLimit(.minutes(1)))
struct ReconcilerTests {
    static let token = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
    static let payer = "0x857b06519e91e3a54538791bdbb0e22373e36b66"
    static let tx = "0x" + String(repeating: "cd", count: 32)
    static let start: Int64 = 1_800_000_000_000

    /// Everything one test needs: a clock, a store on it, a node, logs and metrics.
    /// A value behind a lock, shareable with the reconciler's closures.
    final class Shared<Value: Sendable>: Sendable {
        private let value: Mutex<Value>
        init(_ value: Value) { self.value = Mutex(value) }
        func get() -> Value { value.withLock { $0 } }
        func update(_ change: (inout Value) -> Void) { value.withLock { change(&$0) } }
    }

    final class Rig: Sendable {
        let clock = Shared<Int64>(ReconcilerTests.start)
        let store: InMemoryPaymentStore
        let node: FakeChainNode
        let metrics = GatewayMetrics()
        let logged = Shared<[[String: String]]>([])
        let config: Shared<GatewayConfig>
        let reconciler: Reconciler

        init(node: FakeChainNode, networks: [String]? = nil, reconcile: ReconcileConfig = ReconcileConfig(grace: .seconds(120))) {
            self.node = node
            let clock = self.clock
            self.store = InMemoryPaymentStore(settings: StoreSettings(instanceID: "t", leaseMilliseconds: 60_000, clock: { clock.get() }))
            let chains = (networks ?? ["eip155:84532"]).map {
                ChainRPCConfig(network: $0, chainId: Networks.evmChainId($0)!, rpc: node.url, timeout: .seconds(2), logBlocks: 50)
            }
            let config = Shared(GatewayConfig(
                listen: ListenAddress(host: "127.0.0.1", port: 0), upstreams: [:], routes: [], unmatched: .deny,
                networks: Dictionary(uniqueKeysWithValues: chains.map { ($0.network, $0) }), reconcile: reconcile))
            self.config = config
            let logged = self.logged
            var logger = Logger(label: "reconcile") { label in
                JSONLogHandler(label: label, level: .info, write: { line in
                    if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String] {
                        logged.update { $0.append(object) }
                    }
                })
            }
            logger.logLevel = .info
            reconciler = Reconciler(store: store, config: { config.get() }, metrics: metrics, logger: logger, clock: { clock.get() })
        }

        var lines: [[String: String]] { logged.get() }

        func advance(seconds: Int64) { clock.update { $0 += seconds * 1000 } }

        /// A payment whose settlement outcome is unknown (or left `settling`), valid until `validBefore` (unix s).
        @discardableResult
        func row(nonce: UInt8, validBefore: UInt64 = 1_800_003_600, network: String = "eip155:84532", leaveSettling: Bool = false)
            async throws -> PaymentKey
        {
            let key = PaymentKey(network: network, asset: ReconcilerTests.token, payer: ReconcilerTests.payer,
                                 nonce: "0x" + String(repeating: String(format: "%02x", nonce), count: 32))
            let request = ClaimRequest(
                key: key, offer: PaymentOffer(scheme: "exact", network: network, asset: ReconcilerTests.token, amount: "1000", payTo: ReconcilerTests.token),
                routeID: "GET /paid", method: "GET", path: "/paid", requestID: "r-\(nonce)", validBefore: validBefore)
            guard case .claimed(let ticket) = try await store.claim(request) else { throw StorageError(.unavailable, "not claimed") }
            try await store.record(ticket, .verified(payer: ReconcilerTests.payer))
            try await store.record(ticket, .settling)
            if !leaveSettling { try await store.record(ticket, .unknown(reason: "failed_closed")) }
            return key
        }

        /// An upto payment through Permit2 (decimal nonce) whose settlement of `charged` has an unknown outcome.
        @discardableResult
        func permit2Row(nonce: String, charged: String, validBefore: UInt64 = 1_800_003_600) async throws -> PaymentKey {
            let key = PaymentKey(network: "eip155:84532", asset: ReconcilerTests.token, payer: ReconcilerTests.payer, nonce: nonce)
            let request = ClaimRequest(
                key: key, offer: PaymentOffer(scheme: "upto", network: key.network, asset: ReconcilerTests.token, amount: "10000",
                                              payTo: ReconcilerTests.token, transferMethod: "permit2"),
                routeID: "GET /metered", method: "GET", path: "/metered", requestID: "p-\(nonce)", validBefore: validBefore)
            guard case .claimed(let ticket) = try await store.claim(request) else { throw StorageError(.unavailable, "not claimed") }
            try await store.record(ticket, [PaymentStep(.verified(payer: ReconcilerTests.payer), at: store.now()),
                                            PaymentStep(.settling, at: store.now(), charge: PaymentCharge(amount: charged, basis: "report"))])
            try await store.record(ticket, .unknown(reason: "failed_closed"))
            return key
        }

        /// Marks a Permit2 nonce (decimal) used on the node from `block` on.
        func usePermit2(_ key: PaymentKey, block: UInt64 = 95) {
            let word = ABIWord.uint256(decimal: key.nonce)!
            node.update { $0.permit2Used[FakeChainNode.key(key.payer, "0x" + Hex.encode(word))] = block }
        }

        func state(_ key: PaymentKey) async throws -> PaymentRecord {
            try #require(try await store.payments(PaymentQuery(limit: 1000)).first { $0.key == key })
        }

        func use(_ key: PaymentKey, block: UInt64 = 95, canceled: Bool = false) {
            node.update { state in
                if canceled {
                    state.canceled[FakeChainNode.key(key.payer, key.nonce)] = (ReconcilerTests.tx, block)
                } else {
                    state.used[FakeChainNode.key(key.payer, key.nonce)] = (ReconcilerTests.tx, block)
                }
            }
        }

        func metric(_ name: String, _ label: String) -> String? {
            String(decoding: metrics.exposition(), as: UTF8.self).split(separator: "\n")
                .first { $0.hasPrefix(name + "{") && $0.contains(label) }?.split(separator: " ").last.map(String.init)
        }

        var decisions: [[String: String]] { lines.filter { $0["msg"] == "reconciliation decision" } }
    }

    static func withRig<T>(_ state: FakeChainNode.State = FakeChainNode.State(), networks: [String]? = nil,
                           reconcile: ReconcileConfig = ReconcileConfig(grace: .seconds(120)),
                           _ body: (Rig) async throws -> T) async throws -> T {
        var state = state
        state.head.timestamp = UInt64(start / 1000)
        let node = try await FakeChainNode.start(state)
        let rig = Rig(node: node, networks: networks, reconcile: reconcile)
        do {
            let result = try await body(rig)
            await rig.reconciler.shutdown()
            await node.stop()
            return result
        } catch {
            await rig.reconciler.shutdown()
            await node.stop()
            throw error
        }
    }

    @Test("used on chain: reconciled_settled with the transaction from the logs; logged, counted, amount added")
    func settled() async throws {
        try await Self.withRig { rig in
            let key = try await rig.row(nonce: 1)
            rig.use(key)
            let outcomes = await rig.reconciler.round()
            #expect(outcomes == [.init(key: key, decision: .settled(transaction: Self.tx), applied: true)])
            let row = try await rig.state(key)
            #expect(row.state == .reconciledSettled)
            #expect(row.transaction == Self.tx)
            #expect(row.reconciledAt == Self.start)
            #expect(rig.metric("x402_reconciliations_total", "outcome=\"settled\"") == "1")
            #expect(rig.metric("x402_reconciliations_total", "outcome=\"pending\"") == "0")
            #expect(rig.metric("x402_payments_unknown", "network=\"eip155:84532\"") == "0.0")
            #expect(rig.metric("x402_settled_amount_total", "network=\"eip155:84532\"") == "1000")
            let line = try #require(rig.decisions.first)
            #expect(line["level"] == "notice")
            #expect(line["x402.decision"] == "settled")
            #expect(line["x402.transaction"] == Self.tx)
            #expect(line["x402.route"] == "GET /paid")
            #expect(line["x402.payer"] == Self.payer)
            #expect(line["x402.nonce"] == "0x01010101…")
            #expect(line["x402.rpc"] == "127.0.0.1:\(rig.node.port)")
            // The URL's path and query (an API key) appear in no log line.
            #expect(rig.lines.allSatisfy { !$0.values.contains { $0.contains("secret") } })
            // A second round finds nothing left to do.
            #expect(await rig.reconciler.round() == [])
        }
    }

    @Test("used, but the event is out of the searched blocks or the logs fail: settled without a transaction")
    func settledWithoutTransaction() async throws {
        try await Self.withRig { rig in
            let old = try await rig.row(nonce: 1)
            rig.use(old, block: 10)  // logBlocks 50 from head 100: blocks 51…100 are searched
            let failing = try await rig.row(nonce: 2)
            rig.use(failing)
            rig.node.update { $0.logsError = true }
            let outcomes = await rig.reconciler.round()
            #expect(Set(outcomes.map(\.decision)) == [.settled(transaction: nil)])
            #expect(try await rig.state(old).state == .reconciledSettled)
            #expect(try await rig.state(old).transaction == nil)
            #expect(try await rig.state(failing).state == .reconciledSettled)
            #expect(rig.decisions.allSatisfy { $0["x402.transaction"] == "not found" })
        }
    }

    @Test("Permit2 payments are read from Permit2's nonce bitmap: used is settled (the charge counted), unused past the deadline unsettled")
    func permit2() async throws {
        try await Self.withRig { rig in
            // Nonces in different bitmap words and bits, one above 2^64.
            let used = try await rig.permit2Row(nonce: "1234567890123456789012345", charged: "2500")
            let other = try await rig.permit2Row(nonce: "255", charged: "10")
            let expired = try await rig.permit2Row(nonce: "256", charged: "7", validBefore: UInt64(Self.start / 1000) - 1)
            rig.usePermit2(used)
            rig.usePermit2(PaymentKey(network: "eip155:84532", asset: Self.token, payer: Self.payer, nonce: "254"))  // a neighbour bit
            let outcomes = await rig.reconciler.round()
            #expect(Set(outcomes.map(\.key)) == [used, other, expired])
            #expect(outcomes.first { $0.key == used }?.decision == .settled(transaction: nil))
            #expect(outcomes.first { $0.key == other }?.decision == .pending)
            #expect(outcomes.first { $0.key == expired }?.decision == .unsettled(.expired))
            #expect(try await rig.state(used).state == .reconciledSettled)
            #expect(rig.metric("x402_settled_amount_total", "network=\"eip155:84532\"") == "2500")
            #expect(rig.node.methods.filter { $0 == "eth_getLogs" }.isEmpty)
        }
    }

    @Test("canceled by the payer: reconciled_unsettled")
    func canceled() async throws {
        try await Self.withRig { rig in
            let key = try await rig.row(nonce: 1)
            rig.use(key, canceled: true)
            #expect(await rig.reconciler.round() == [.init(key: key, decision: .unsettled(.canceled), applied: true)])
            #expect(try await rig.state(key).state == .reconciledUnsettled)
        }
    }

    @Test("unused after validBefore on chain: reconciled_unsettled at once, and the same payment is claimable fresh again")
    func expired() async throws {
        try await Self.withRig { rig in
            let key = try await rig.row(nonce: 1, validBefore: UInt64(Self.start / 1000) - 1)
            #expect(await rig.reconciler.round() == [.init(key: key, decision: .unsettled(.expired), applied: true)])
            let row = try await rig.state(key)
            #expect(row.state == .reconciledUnsettled)
            #expect(rig.decisions.first?["x402.reason"] == "expired")
            #expect(rig.metric("x402_reconciliations_total", "outcome=\"unsettled\"") == "1")
            // Released: a new claim of the same key is fresh, not a retry after an unknown outcome.
            let again = try await rig.store.claim(ClaimRequest(
                key: key, offer: row.offer, routeID: row.routeID, method: "GET", path: "/paid", requestID: "again", validBefore: row.validBefore))
            guard case .claimed = again else { Issue.record("expected a fresh claim, got \(again)"); return }
        }
    }

    @Test("unused and valid: pending while inside the grace, reconciled_unsettled once it has passed")
    func grace() async throws {
        try await Self.withRig { rig in
            let key = try await rig.row(nonce: 1)
            #expect(await rig.reconciler.round() == [.init(key: key, decision: .pending, applied: false)])
            #expect(try await rig.state(key).state == .unknown)
            #expect(rig.metric("x402_payments_unknown", "network=\"eip155:84532\"") == "1.0")
            #expect(rig.decisions.first?["x402.reason"] == "unused_within_grace")
            rig.advance(seconds: 119)
            #expect(await rig.reconciler.round().map(\.decision) == [.pending])
            rig.advance(seconds: 1)
            #expect(await rig.reconciler.round() == [.init(key: key, decision: .unsettled(.graceElapsed), applied: true)])
            #expect(try await rig.state(key).state == .reconciledUnsettled)
            #expect(rig.metric("x402_reconciliations_total", "outcome=\"pending\"") == "2")
            #expect(rig.metric("x402_payments_unknown", "network=\"eip155:84532\"") == "0.0")
        }
    }

    @Test("the chain read at the round's head block: a transfer mined after it is not seen, the next round sees it")
    func readAtHead() async throws {
        try await Self.withRig { rig in
            let key = try await rig.row(nonce: 1)
            rig.use(key, block: 101)
            #expect(await rig.reconciler.round().map(\.decision) == [.pending])
            rig.node.update { $0.head.number = 101 }
            #expect(await rig.reconciler.round().map(\.decision) == [.settled(transaction: Self.tx)])
        }
    }

    @Test("a node that does not answer, or serves another chain, changes nothing and counts errors")
    func errors() async throws {
        try await Self.withRig { rig in
            let a = try await rig.row(nonce: 1)
            let b = try await rig.row(nonce: 2)
            rig.use(a)
            rig.node.update { $0.chainID = 8453 }
            #expect(await rig.reconciler.round().map(\.decision) == [.error, .error])
            rig.node.update { $0.chainID = 84532; $0.fault = .json("{}", status: 502) }
            #expect(await rig.reconciler.round().map(\.decision) == [.error, .error])
            #expect(try await rig.state(a).state == .unknown)
            #expect(try await rig.state(b).state == .unknown)
            #expect(rig.metric("x402_reconciliations_total", "outcome=\"error\"") == "4")
            let warnings = rig.lines.filter { $0["msg"]?.hasPrefix("reconciliation cannot read the chain") == true }
            #expect(warnings.count == 2)
            #expect(warnings.first?["error"] == "rpc serves chain 8453, configured for chain 84532")
            // Back: the next round settles.
            rig.node.update { $0.fault = nil }
            rig.advance(seconds: 600)
            #expect(Set(await rig.reconciler.round().map(\.decision)) == [.settled(transaction: Self.tx), .unsettled(.graceElapsed)])
        }
    }

    @Test("a round reads at most `batch` rows per network, the longest unknown first")
    func batch() async throws {
        try await Self.withRig(reconcile: ReconcileConfig(grace: .seconds(120), batch: 2)) { rig in
            var keys: [PaymentKey] = []
            for nonce in UInt8(1)...5 {
                keys.append(try await rig.row(nonce: nonce))
                rig.advance(seconds: 1)
            }
            for key in keys { rig.use(key) }
            #expect(await rig.reconciler.round().map(\.key) == Array(keys[0..<2]))
            #expect(rig.metric("x402_payments_unknown", "network=\"eip155:84532\"") == "3.0")
            #expect(await rig.reconciler.round().map(\.key) == Array(keys[2..<4]))
            #expect(await rig.reconciler.round().map(\.key) == [keys[4]])
            #expect(rig.node.methods.filter { $0 == "eth_call" }.count == 5)
        }
    }

    @Test("settling rows are candidates only once their lease has ended")
    func settlingLease() async throws {
        try await Self.withRig { rig in
            let key = try await rig.row(nonce: 1, leaveSettling: true)
            rig.use(key)
            #expect(await rig.reconciler.round() == [])
            rig.advance(seconds: 60)  // the lease (60 s) ends
            #expect(await rig.reconciler.round() == [.init(key: key, decision: .settled(transaction: Self.tx), applied: true)])
        }
    }

    @Test("networks without an rpc URL are left alone, counted in the gauge and reported for attention")
    func unconfiguredNetwork() async throws {
        try await Self.withRig(networks: []) { rig in
            let key = try await rig.row(nonce: 1)
            try await rig.row(nonce: 2, network: "eip155:8453")
            rig.use(key)
            #expect(await rig.reconciler.round() == [])
            #expect(try await rig.state(key).state == .unknown)
            #expect(rig.node.server.requests.isEmpty)
            #expect(rig.metric("x402_payments_unknown", "network=\"eip155:84532\"") == "1.0")
            #expect(rig.metric("x402_payments_unknown", "network=\"eip155:8453\"") == "1.0")
            let attention = try await rig.reconciler.attention()
            #expect(attention.map(\.network) == ["eip155:8453", "eip155:84532"])
            #expect(attention.allSatisfy { $0.count == 1 && $0.rpcHost == nil })
            let warned = rig.lines.filter { $0["msg"]?.contains("networks without an rpc URL") == true }
            #expect(warned.count == 1)
            // Configured by a reload: reconciled at the next round.
            rig.config.update {
                $0.networks["eip155:84532"] = ChainRPCConfig(network: "eip155:84532", chainId: 84532, rpc: rig.node.url, timeout: .seconds(2))
            }
            #expect(await rig.reconciler.round().map(\.decision) == [.settled(transaction: Self.tx)])
            #expect(try await rig.reconciler.attention().map { "\($0.network) \($0.rpcHost ?? "-")" } == ["eip155:8453 -"])
        }
    }

    @Test("a row a client is retrying is no candidate, and the store refuses a late decision for it")
    func raced() async throws {
        try await Self.withRig { rig in
            let key = try await rig.row(nonce: 1)
            rig.use(key)
            let row = try await rig.state(key)
            // A client presents the same payment again (a retry after the unknown outcome) before the round.
            let retry = try await rig.store.claim(ClaimRequest(
                key: key, offer: row.offer, routeID: row.routeID, method: "GET", path: "/paid", requestID: "retry", validBefore: row.validBefore))
            guard case .claimedAfterUnknownOutcome = retry else { Issue.record("expected a retry claim, got \(retry)"); return }
            #expect(await rig.reconciler.round() == [])  // claimed is not a candidate
            #expect(try await rig.store.reconcile(key, attempt: 1, .settled(transaction: nil)) == false)
            #expect(try await rig.state(key).state == .claimed)
        }
    }
}
