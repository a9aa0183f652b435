import NIOHTTP1

/// Rules read from a client's request head before it is routed (pure, unit-tested).
package enum RequestRules {
    /// What a request asks for with `Upgrade` (or `CONNECT`).
    package enum Upgrade: Equatable, Sendable {
        /// No upgrade asked for.
        case notAsked
        /// Only `h2c` is offered: ignored (RFC 9110 §7.8), the request is served over HTTP/1.1 and
        /// is the last on its connection (NIO's decoder parses nothing after it).
        case h2cOnly
        /// Any other upgrade (WebSocket, …) or `CONNECT`: not proxied; the connection ends with the
        /// answer.
        case refused
    }

    /// Any `Upgrade` field counts, whether or not `Connection` names it: NIO's decoder stops after
    /// an upgrade request, and erring on that side never leaves bytes piling up behind it.
    package static func upgrade(_ head: HTTPRequestHead) -> Upgrade {
        if head.method == .CONNECT { return .refused }
        var asked = false
        for (name, value) in head.headers where HTTPWire.nameEquals(name, "upgrade") {
            asked = true
            for token in value.split(separator: ",") where token.trimmingASCIISpaces().lowercased() != "h2c" { return .refused }
        }
        return asked ? .h2cOnly : .notAsked
    }

    /// Whether the client waits for `100 Continue` before sending a body: HTTP/1.1 or later,
    /// `Expect: 100-continue`, and a body announced (a length above 0, or chunked).
    package static func expectsContinue(_ head: HTTPRequestHead) -> Bool {
        guard head.version.major > 1 || head.version.minor >= 1 else { return false }
        guard head.headers.contains(where: { HTTPWire.nameEquals($0.name, "expect") && $0.value.lowercased() == "100-continue" })
        else { return false }
        if let length = head.headers.first(name: "content-length") { return (Int(length) ?? 0) > 0 }
        return head.headers.contains(name: "transfer-encoding")
    }
}
