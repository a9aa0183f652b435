/// The shape of a request path read so far, as far as canonical form (``CanonicalPath``) and the
/// matcher constrain it: it starts with `/`; segments are not empty and not `.` or `..`; there is
/// no trailing slash (the matcher drops one) unless the path is `/`; `%` is followed by two hex
/// digits (upper-case, or lower-case once a case-insensitive matcher has folded the path). Which
/// bytes an escape may encode is not modelled.
enum PathShape: Hashable {
    case start
    /// `/` alone: complete.
    case root
    /// After a `/` that is not the first byte: a segment must follow.
    case slash
    /// In a segment that is `.` or `..` so far.
    case dot, dotDot
    /// In an ordinary segment.
    case segment
    /// After `%`, and after its first hex digit.
    case escape, escapeHex

    /// Whether a path may end here.
    var isComplete: Bool { self == .root || self == .segment }

    /// The shape after one more byte; nil when no request path continues this way.
    func after(_ byte: UInt8, lowerCaseHex: Bool) -> PathShape? {
        let slash = byte == UInt8(ascii: "/"), dot = byte == UInt8(ascii: "."), percent = byte == UInt8(ascii: "%")
        switch self {
        case .start: return slash ? .root : nil
        case .root, .slash: return slash ? nil : dot ? .dot : percent ? .escape : .segment
        case .dot: return slash ? nil : dot ? .dotDot : percent ? .escape : .segment
        case .dotDot: return slash ? nil : percent ? .escape : .segment
        case .segment: return slash ? .slash : percent ? .escape : .segment
        case .escape: return Self.isHex(byte, lowerCase: lowerCaseHex) ? .escapeHex : nil
        case .escapeHex: return Self.isHex(byte, lowerCase: lowerCaseHex) ? .segment : nil
        }
    }

    static func isHex(_ byte: UInt8, lowerCase: Bool) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return true
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return lowerCase
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return !lowerCase
        default: return false
        }
    }
}
