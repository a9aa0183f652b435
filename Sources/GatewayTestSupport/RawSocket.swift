#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import NIOPosix

/// A blocking TCP client on 127.0.0.1 with a receive deadline: sends bytes exactly as given and
/// reads exactly what arrives, so a test can wait for an interim answer before sending a body.
/// Its async calls block NIO's thread pool, never the cooperative pool the upstream's async
/// handlers need; the `…Blocking` ones block the calling thread (one of the test's own).
public final class RawSocket: @unchecked Sendable {
    public let fd: Int32

    public init(port: Int, receiveTimeout seconds: Int = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw RawSocketError.connect(errno) }
        setReceiveTimeout(seconds: seconds)
    }

    /// How long one read waits for bytes before it ends as `.timeout`.
    public func setReceiveTimeout(seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Sends all of `bytes`; false once the peer has closed or reset the connection.
    @discardableResult
    public func send(_ bytes: [UInt8]) async throws -> Bool {
        try await NIOThreadPool.singleton.runIfActive { self.sendBlocking(bytes) }
    }

    public func send(_ text: String) async throws { try await send(Array(text.utf8)) }

    /// ``send(_:)`` on the calling thread.
    public func sendBlocking(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    public enum ReadEnd: Equatable, Sendable { case condition, closed, timeout }

    /// Reads until `done(bytes so far)` holds, the peer closes (or resets), or the receive deadline.
    public func read(until done: @escaping @Sendable ([UInt8]) -> Bool = { _ in false }) async throws -> (bytes: [UInt8], end: ReadEnd) {
        try await NIOThreadPool.singleton.runIfActive { self.readBlocking(until: done) }
    }

    /// ``read(until:)`` on the calling thread.
    public func readBlocking(until done: ([UInt8]) -> Bool = { _ in false }) -> (bytes: [UInt8], end: ReadEnd) {
        var all: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if done(all) { return (all, .condition) }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return (all, .closed) }
            if n < 0 { return (all, errno == EAGAIN || errno == EWOULDBLOCK ? .timeout : .closed) }
            all.append(contentsOf: chunk[0..<n])
        }
    }

    @Sendable public static func headEnd(_ bytes: [UInt8]) -> Bool { bytes.firstRange(of: Array("\r\n\r\n".utf8)) != nil }
}

public enum RawSocketError: Error {
    case connect(Int32)
    /// The peer closed or reset the connection before everything was sent.
    case sendFailed
    /// What came back has no complete response head.
    case noResponseHead
}
