import Synchronization
import X402

/// Several facilitators behind one ``Facilitator`` (`facilitators:` in the configuration), in the
/// order configured.
///
/// - `/verify` goes to the first member that serves the payment's (version, scheme, network) and
///   is not resting after a failure; any failure (no answer, a timeout, a non-2xx status, an
///   answer that is not the expected JSON) rests that member and the next one is asked. Verifying
///   moves no money, so asking again elsewhere is safe. A member that answers — `isValid` true or
///   false — ends the search. An `upto` payment is bound to one facilitator address
///   (`extra.facilitatorAddress`): only members announcing that address for its network are asked.
/// - `/settle` goes to exactly one member, never to a second: the member that verified this
///   payment (remembered per payload), else the first member serving its kind that is not resting,
///   else the first serving it. A settlement that fails there is the caller's unknown outcome; it is
///   never sent to another facilitator, which could settle it a second time.
/// - `/supported` is the union of the members' answers (each member's kinds are kept for routing;
///   members that cannot be reached are left out, unless none can be).
///
/// Which kinds a member serves is learnt from its `/supported`: from the group's own `/supported`
/// (the gateway asks it at start), and again in the background once the answer is `kindsTTL` old or
/// the member failed (the last known kinds keep routing meanwhile); until first known, a member is
/// taken to serve everything. A failing
/// member rests `baseRest`, doubled on each consecutive failure up to `maxRest`; when every member
/// serving a kind rests, they are tried anyway, in order.
public final class FacilitatorGroup: Facilitator {
    public struct Member: Sendable {
        /// How the member is named in `/readyz` and logs (its URL's origin; never a secret).
        public let name: String
        public let facilitator: any Facilitator

        public init(name: String, facilitator: any Facilitator) {
            self.name = name
            self.facilitator = facilitator
        }
    }

    /// A member as `/readyz` reports it.
    public struct MemberStatus: Sendable, Equatable {
        public let name: String
        /// nil: serving; else why it rests.
        public let resting: String?
        /// The kinds from its last `/supported` (`v2 exact eip155:8453`), nil when not known yet.
        public let kinds: [String]?
    }

    struct Kind: Hashable {
        let version: Int
        let scheme: String
        let network: String

        var text: String { "v\(version) \(scheme) \(network)" }

        func isServed(by kinds: Set<Kind>) -> Bool {
            kinds.contains(self) || kinds.contains(Kind(version: version, scheme: scheme, network: "eip155:*"))
        }
    }

    /// What a payment needs of a member: its kind, and for `upto` the facilitator address the buyer
    /// bound its authorization to (only the facilitator at that address can settle it).
    struct Target {
        let kind: Kind
        let uptoFacilitator: String?
    }

    private struct MemberState {
        var kinds: Set<Kind>?
        /// The `upto` facilitator address per network (`eip155:*` as announced), lower-cased.
        var uptoAddresses: [String: String] = [:]
        var kindsFetchedAt: ContinuousClock.Instant?
        var refreshing = false
        var restingUntil: ContinuousClock.Instant?
        var lastFailure: String?
        var consecutiveFailures = 0
    }

    private struct State {
        var members: [MemberState]
        /// Payload bytes → the member that verified it and when it was remembered (a sequence
        /// number); `recent` holds the last ``FacilitatorGroup/rememberedPayments`` entries in a
        /// ring, and an entry is forgotten when its slot is reused (unless settled before).
        var verifiedBy: [[UInt8]: (member: Int, sequence: Int)] = [:]
        var recent: [(payload: [UInt8], sequence: Int)?] = Array(repeating: nil, count: FacilitatorGroup.rememberedPayments)
        var sequence = 0
    }

    public let members: [Member]
    private let state: Mutex<State>
    private let now: @Sendable () -> ContinuousClock.Instant
    let baseRest: Duration
    let maxRest: Duration
    let kindsTTL: Duration
    static let rememberedPayments = 4096

    public init(
        members: [Member], baseRest: Duration = .seconds(5), maxRest: Duration = .seconds(60), kindsTTL: Duration = .seconds(300),
        now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }
    ) {
        precondition(!members.isEmpty, "a facilitator group needs a member")
        self.members = members
        self.state = Mutex(State(members: Array(repeating: MemberState(), count: members.count)))
        self.baseRest = baseRest
        self.maxRest = maxRest
        self.kindsTTL = kindsTTL
        self.now = now
    }

    // MARK: Facilitator

    public func verify(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> VerifyResponse {
        let target = Self.target(version: version, requirements: requirements)
        refreshKindsInBackground()
        var last = FacilitatorFailure.unreachable("no facilitator serves this payment's kind")
        for index in order(for: target) {
            do throws(FacilitatorFailure) {
                let answer = try await members[index].facilitator.verify(version: version, paymentPayload: paymentPayload, requirements: requirements)
                succeeded(index)
                remember(paymentPayload, verifiedBy: index)
                return answer
            } catch {
                failed(index, error)
                last = error
            }
        }
        throw last
    }

    public func settle(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> SettleResponse {
        let index = state.withLock { $0.verifiedBy.removeValue(forKey: paymentPayload)?.member }
            ?? order(for: Self.target(version: version, requirements: requirements)).first
        guard let index else { throw .unreachable("no facilitator serves this payment's kind") }
        do throws(FacilitatorFailure) {
            let answer = try await members[index].facilitator.settle(version: version, paymentPayload: paymentPayload, requirements: requirements)
            succeeded(index)
            return answer
        } catch {
            failed(index, error)
            throw error  // never sent to another member: the outcome is the caller's to resolve
        }
    }

    public func supported() async throws(FacilitatorFailure) -> SupportedResponse {
        var kinds: [SupportedResponse.Kind] = []
        var seen: Set<SupportedResponse.Kind> = []
        var reached = false
        var last = FacilitatorFailure.unreachable("no facilitator")
        for (index, member) in members.enumerated() {
            do throws(FacilitatorFailure) {
                let answer = try await member.facilitator.supported()
                learnt(index, answer)
                reached = true
                for kind in answer.kinds where seen.insert(kind).inserted { kinds.append(kind) }
            } catch {
                failed(index, error)
                last = error
            }
        }
        guard reached else { throw last }
        return SupportedResponse(kinds: kinds)
    }

    // MARK: Status

    /// Each member, in order: serving or resting (and why), with its known kinds.
    public func status() -> [MemberStatus] {
        let at = now()
        return state.withLock { state in
            members.indices.map { index in
                let member = state.members[index]
                let resting = member.restingUntil.map { $0 > at } ?? false
                return MemberStatus(name: members[index].name, resting: resting ? (member.lastFailure ?? "failed") : nil,
                                    kinds: member.kinds.map { $0.map(\.text).sorted() })
            }
        }
    }

    // MARK: Routing

    /// The payment's kind (and `upto` facilitator address), read from the requirements JSON the
    /// caller sends (nil when it cannot be read: then every member is a candidate).
    static func target(version: Int, requirements: [UInt8]) -> Target? {
        guard let node = try? JSONReader.parse(requirements),
              case .string(let scheme)? = node["scheme"], case .string(let network)? = node["network"] else { return nil }
        var facilitator: String?
        if scheme == "upto", case .string(let address)? = node["extra"]?["facilitatorAddress"] { facilitator = address.lowercased() }
        return Target(kind: Kind(version: version, scheme: scheme, network: network), uptoFacilitator: facilitator)
    }

    /// Members that serve `target`, those not resting first, each group in configured order. An
    /// `upto` payment goes only to members announcing the address it is bound to (or not known yet).
    func order(for target: Target?) -> [Int] {
        let at = now()
        return state.withLock { state in
            let serving = members.indices.filter { index in
                let member = state.members[index]
                guard let target, let kinds = member.kinds else { return true }
                guard target.kind.isServed(by: kinds) else { return false }
                guard let bound = target.uptoFacilitator else { return true }
                return (member.uptoAddresses[target.kind.network] ?? member.uptoAddresses["eip155:*"]) == bound
            }
            let awake = serving.filter { state.members[$0].restingUntil.map { $0 <= at } ?? true }
            return awake + serving.filter { !awake.contains($0) }
        }
    }

    /// Asks `/supported` again, in the background, of members whose kinds are unknown, old, or
    /// from before a failure (and that are not resting): a request never waits for it.
    private func refreshKindsInBackground() {
        let at = now()
        let stale = state.withLock { state in
            members.indices.filter { index in
                let member = state.members[index]
                guard !member.refreshing, member.restingUntil.map({ $0 <= at }) ?? true,
                      member.kindsFetchedAt.map({ at - $0 >= kindsTTL }) ?? true else { return false }
                state.members[index].refreshing = true
                return true
            }
        }
        for index in stale {
            Task {
                do throws(FacilitatorFailure) {
                    learnt(index, try await members[index].facilitator.supported())
                } catch {
                    failed(index, error)
                }
                state.withLock { $0.members[index].refreshing = false }
            }
        }
    }

    private func learnt(_ index: Int, _ answer: SupportedResponse) {
        let at = now()
        state.withLock { state in
            state.members[index].kinds = Set(answer.kinds.map { Kind(version: $0.x402Version, scheme: $0.scheme, network: $0.network) })
            state.members[index].uptoAddresses = [:]
            for kind in answer.kinds where kind.scheme == "upto" {
                if let address = kind.extra?["facilitatorAddress"]?.stringValue { state.members[index].uptoAddresses[kind.network] = address.lowercased() }
            }
            state.members[index].kindsFetchedAt = at
        }
    }

    private func succeeded(_ index: Int) {
        state.withLock { state in
            state.members[index].consecutiveFailures = 0
            state.members[index].restingUntil = nil
            state.members[index].lastFailure = nil
        }
    }

    private func failed(_ index: Int, _ failure: FacilitatorFailure) {
        let at = now()
        state.withLock { state in
            var member = state.members[index]
            member.consecutiveFailures += 1
            let doublings = min(member.consecutiveFailures - 1, 16)
            let rest = min(baseRest * (1 << doublings), maxRest)
            member.restingUntil = at + rest
            member.lastFailure = failure.description
            // A member that failed is asked for its kinds again once it is back.
            member.kindsFetchedAt = nil
            state.members[index] = member
        }
    }

    private func remember(_ payload: [UInt8], verifiedBy index: Int) {
        state.withLock { state in
            state.sequence += 1
            let slot = state.sequence % Self.rememberedPayments
            if let old = state.recent[slot], state.verifiedBy[old.payload]?.sequence == old.sequence {
                state.verifiedBy[old.payload] = nil
            }
            state.recent[slot] = (payload, state.sequence)
            state.verifiedBy[payload] = (index, state.sequence)
        }
    }
}
