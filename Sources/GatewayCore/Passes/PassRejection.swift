/// Why a pass was not accepted: a bounded reason for logs and the `x402_passes_refused_total`
/// metric. Every refusal is answered as if no pass had been sent (the route's 402).
public enum PassRejection: String, Sendable, Hashable, CaseIterable, Error {
    /// Not a pass of this gateway's format (wrong prefix, part count, encoding, size).
    case malformed
    /// Signed with a key id this gateway does not hold (another gateway's, or a retired key).
    case unknownKey = "unknown_key"
    /// The signature does not match (forged, altered, or signed with another key under this id).
    case badSignature = "bad_signature"
    /// Its expiry has passed.
    case expired
    /// Issued further in the future than clock skew explains.
    case notYetValid = "not_yet_valid"
    /// Issued for another route or group.
    case otherRoute = "other_route"
    /// Issued for another path of the route (scope `path`), or wider than the route's scope now is.
    case otherPath = "other_path"
    /// Sent to a priced route that issues no passes.
    case routeHasNoPass = "route_has_no_pass"
}
