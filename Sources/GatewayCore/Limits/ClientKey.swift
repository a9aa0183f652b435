import Foundation

/// Who a rate limit or a free allowance counts against: the verified payer when there is one (a
/// payment whose signature recovered to it, or a pass the gateway signed for it), else the client's
/// address grouped by prefix (``ClientLimitsConfig``). The two never collide.
public enum ClientKey: Hashable, Sendable, CustomStringConvertible {
    case address(MaskedAddress)
    /// An EVM address, lower case.
    case payer(String)

    public static func payer(address: String) -> ClientKey { .payer(address.lowercased()) }

    /// The key as stored in the shared counters table: `203.0.113.7/32`, `2001:db8:1:2:0:0:0:0/64`,
    /// `0xabc…` (never holds anything but an address).
    public var description: String {
        switch self {
        case .address(let address): address.description
        case .payer(let payer): payer
        }
    }
}

/// An IPv4 or IPv6 address with the bits past its prefix cleared. IPv4-mapped IPv6 addresses
/// (`::ffff:192.0.2.7`, how a dual-stack listener sees IPv4 clients) are IPv4.
public struct MaskedAddress: Hashable, Sendable, CustomStringConvertible {
    /// The first 8 bytes (IPv4: the 4 bytes in the low half of `low`, `high` 0).
    public let high: UInt64
    public let low: UInt64
    public let isIPv6: Bool
    public let prefix: UInt8

    /// `bytes`: 4 or 16 (``IPRange/parseAddress(_:)``).
    public init?(bytes: [UInt8], ipv4Prefix: Int, ipv6Prefix: Int) {
        var bytes = bytes
        if bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            bytes = Array(bytes[12...])
        }
        func word(_ slice: ArraySlice<UInt8>) -> UInt64 { slice.reduce(0) { $0 << 8 | UInt64($1) } }
        func mask(_ bits: Int) -> UInt64 { bits <= 0 ? 0 : bits >= 64 ? .max : ~(UInt64.max >> UInt64(bits)) }
        switch bytes.count {
        case 4:
            let prefix = min(max(ipv4Prefix, 0), 32)
            self.high = 0
            self.low = word(bytes[0..<4]) & (mask(prefix) >> 32)
            self.isIPv6 = false
            self.prefix = UInt8(prefix)
        case 16:
            let prefix = min(max(ipv6Prefix, 0), 128)
            self.high = word(bytes[0..<8]) & mask(prefix)
            self.low = word(bytes[8..<16]) & mask(prefix - 64)
            self.isIPv6 = true
            self.prefix = UInt8(prefix)
        default:
            return nil
        }
    }

    public var description: String {
        if !isIPv6 {
            let octets: [String] = [24, 16, 8, 0].map { (shift: UInt64) -> String in String((low >> shift) & 0xFF) }
            return octets.joined(separator: ".") + "/" + String(prefix)
        }
        let shifts: [UInt64] = [48, 32, 16, 0]
        let groups: [String] = shifts.map { String((high >> $0) & 0xFFFF, radix: 16) } + shifts.map { String((low >> $0) & 0xFFFF, radix: 16) }
        return groups.joined(separator: ":") + "/" + String(prefix)
    }
}

/// The address a request comes from, trusted proxies honoured.
public enum ClientAddress {
    /// The TCP peer's address; when the peer is one of `trusted`, the `X-Forwarded-For` entries
    /// (all fields, in order) are read from the right: the first that is not a trusted proxy is the
    /// client (a client cannot move itself by adding entries on the left). When every entry is a
    /// trusted proxy, the leftmost is taken; an entry that is not an address ends the walk at the
    /// hop before it. Nil when the peer has no IP address (a unix socket).
    public static func resolve(peer: String?, forwardedFor: [String], trusted: [IPRange]) -> [UInt8]? {
        guard let peer, var client = IPRange.parseAddress(peer) else { return nil }
        guard !trusted.isEmpty, isTrusted(client, trusted), !forwardedFor.isEmpty else { return client }
        let entries = forwardedFor.flatMap { $0.split(separator: ",") }
        for entry in entries.reversed() {
            guard let address = IPRange.parseAddress(Self.stripPort(entry.trimmingCharacters(in: .whitespaces))) else { return client }
            client = address
            if !isTrusted(address, trusted) { return address }
        }
        return client
    }

    static func isTrusted(_ address: [UInt8], _ trusted: [IPRange]) -> Bool {
        trusted.contains { $0.contains(address) }
    }

    /// `192.0.2.7:443` → `192.0.2.7`, `[2001:db8::1]:443` → `2001:db8::1`; anything else unchanged.
    static func stripPort(_ text: String) -> String {
        if text.hasPrefix("["), let end = text.firstIndex(of: "]") {
            return String(text[text.index(after: text.startIndex)..<end])
        }
        let colons = text.filter { $0 == ":" }.count
        if colons == 1, let colon = text.firstIndex(of: ":") { return String(text[..<colon]) }
        return text
    }
}
