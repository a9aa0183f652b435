import Foundation
import Synchronization

/// The real `x402-gateway` executable, started the way it is deployed: as an ordinary user. When
/// the tests run as root (CI, containers), the process is started through `setpriv` as
/// `$X402_TEST_USER` (default `nobody`), with no supplementary groups and no capabilities, so a
/// privilege the gateway silently relies on fails a test instead of a deployment.
public final class GatewayProcess: Sendable {
    public let process: Process
    private let stderr: Pipe
    private let exitStream: AsyncStream<Int32>
    private let output = Output()

    /// What the process wrote to standard error: lines, and the start of the next one.
    private final class Output: Sendable {
        let lines = Mutex<[String]>([])
        let partial = Mutex(Data())
    }

    /// The account the gateway runs as when the tests run as root.
    public static var unprivilegedUser: String { ProcessInfo.processInfo.environment["X402_TEST_USER"] ?? "nobody" }

    /// Starts `executable` with `arguments`. Its standard error is read (and kept) as it comes.
    public init(executable: String, arguments: [String]) throws {
        let process = Process()
        if getuid() == 0 {
            let executable = try Self.reachableCopy(of: executable)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            let user = Self.unprivilegedUser
            guard let account = getpwnam(user) else { throw GatewayProcessError(message: "no user account \(user) to run the gateway as") }
            let (uid, gid) = (account.pointee.pw_uid, account.pointee.pw_gid)
            process.arguments = ["--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "--inh-caps=-all", "--", executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        let stderr = Pipe()
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        process.terminationHandler = { continuation.yield($0.terminationStatus); continuation.finish() }
        self.process = process
        self.stderr = stderr
        self.exitStream = stream
        try process.run()
    }

    deinit {
        stop()
    }

    /// Ends the process (SIGTERM, then SIGKILL after 5 s) and waits for it.
    public func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }

    /// The build folder may sit where the unprivileged user cannot reach it (a checkout under
    /// /root): the executable is copied once per test process into a folder anyone may read.
    private static let copies = Mutex<[String: String]>([:])

    static func reachableCopy(of executable: String) throws -> String {
        try copies.withLock { copies in
            if let copy = copies[executable] { return copy }
            // One file per build folder, replaced by each test run (a rename: a copy still running keeps its file).
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("x402-gateway-test-bin").path
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            chmod(folder, 0o755)
            let name = "x402-gateway-" + String(executable.utf8.reduce(UInt64(14_695_981_039_346_656_037)) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 }, radix: 16)
            let copy = folder + "/" + name
            let staging = copy + ".\(getpid()).tmp"
            try? FileManager.default.removeItem(atPath: staging)
            try FileManager.default.copyItem(atPath: executable, toPath: staging)
            chmod(staging, 0o755)
            guard rename(staging, copy) == 0 else { throw GatewayProcessError(message: "cannot place \(copy): errno \(errno)") }
            copies[executable] = copy
            return copy
        }
    }

    /// A folder inside `parent` that the gateway's user may write (its SQLite ledger goes there).
    public static func stateDirectory(in parent: String) throws -> String {
        let path = parent + "/state"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        if getuid() == 0 {
            guard let account = getpwnam(unprivilegedUser) else { throw GatewayProcessError(message: "no user account \(unprivilegedUser)") }
            guard chown(path, account.pointee.pw_uid, account.pointee.pw_gid) == 0 else {
                throw GatewayProcessError(message: "cannot chown \(path): errno \(errno)")
            }
        }
        return path
    }

    public var pid: Int32 { process.processIdentifier }

    /// The real user id the process runs as, from /proc.
    public func uid() throws -> UInt32? {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }
        return line.flatMap { $0.split(whereSeparator: \.isWhitespace).dropFirst().first }.flatMap { UInt32($0) }
    }

    /// Every standard-error line read so far.
    public var log: [String] { output.lines.withLock { $0 } }

    /// Reads JSON log lines until the main listener reports its port (nil if the process exits first).
    /// Keeps draining the pipe afterwards, so the process never blocks on a full pipe.
    public func listeningPort(message: String = "gateway listening") async throws -> Int? {
        let (stream, sink) = AsyncStream<String>.makeStream()
        // The handler holds what it fills, never `self`: the process is ended when this object goes.
        let output = self.output
        stderr.fileHandleForReading.readabilityHandler = { h in
            let data = h.availableData
            if data.isEmpty {
                h.readabilityHandler = nil
                sink.finish()
                return
            }
            output.partial.withLock { buffer in
                buffer.append(data)
                while let newline = buffer.firstIndex(of: 0x0A) {
                    let line = String(decoding: buffer[..<newline], as: UTF8.self)
                    output.lines.withLock { $0.append(line) }
                    sink.yield(line)
                    buffer.removeSubrange(...newline)
                }
            }
        }
        for await line in stream {
            guard line.contains("\"msg\":\"\(message)\"") else { continue }
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
            return object?["port"].flatMap(Int.init)
        }
        return nil
    }

    public func signal(_ number: Int32) {
        kill(pid, number)
    }

    /// The exit status, once the process has ended.
    public func exitStatus() async -> Int32? {
        var iterator = exitStream.makeAsyncIterator()
        return await iterator.next()
    }
}

public struct GatewayProcessError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
