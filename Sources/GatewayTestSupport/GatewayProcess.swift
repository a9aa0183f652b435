import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The real `x402-gateway` executable, started the way it is deployed: as an ordinary user. When
/// the tests run as root (CI, containers), the process is started through `setpriv` as
/// `$X402_TEST_USER` (default `nobody`), with no supplementary groups and no capabilities, so a
/// privilege the gateway silently relies on fails a test instead of a deployment.
///
/// Started with `posix_spawn` and reaped by a thread of its own blocked in `waitpid`, its standard
/// error read by another: Foundation's `Process` reports an exit through a SIGCHLD handler and a
/// run loop, and now and then never did, which left a test waiting forever (issue 12's hang).
/// Every wait here has a deadline, so a process that misbehaves fails its test instead.
public final class GatewayProcess: Sendable {
    public let pid: pid_t
    private let state = Shared()

    /// What the reaping and reading threads fill in.
    private final class Shared: Sendable {
        private let mutex = Mutex(State())
        func withLock<Result>(_ body: (inout State) -> Result) -> Result { mutex.withLock { body(&$0) } }
    }

    private struct State {
        var lines: [String] = []
        var partial: [UInt8] = []
        /// Standard error reached its end.
        var outputEnded = false
        /// How the process ended (`waitpid`'s status), once it has.
        var exit: Int32?
    }

    /// The account the gateway runs as when the tests run as root.
    public static var unprivilegedUser: String { ProcessInfo.processInfo.environment["X402_TEST_USER"] ?? "nobody" }

    /// Starts `executable` with `arguments`. Its standard error is read (and kept) as it comes.
    public init(executable: String, arguments: [String]) throws {
        var argv: [String]
        if getuid() == 0 {
            let executable = try Self.reachableCopy(of: executable)
            let user = Self.unprivilegedUser
            guard let account = getpwnam(user) else { throw GatewayProcessError(message: "no user account \(user) to run the gateway as") }
            let (uid, gid) = (account.pointee.pw_uid, account.pointee.pw_gid)
            argv = ["/usr/bin/setpriv", "--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "--inh-caps=-all", "--", executable] + arguments
        } else {
            argv = [executable] + arguments
        }
        let (pid, output) = try Self.spawn(argv)
        self.pid = pid
        Thread.detachNewThread { [state] in Self.waitForExit(pid, state) }
        Thread.detachNewThread { [state] in Self.read(output, into: state) }
    }

    /// `posix_spawn`s `argv` with standard input and output on /dev/null, standard error on a pipe
    /// (read by a thread of its own), no other descriptor of this process, and a clean signal mask.
    private static func spawn(_ argv: [String]) throws -> (pid: pid_t, output: Int32) {
        var pipe: [Int32] = [-1, -1]
        // (pipe2 is not in Swift's Glibc module; the children close every descriptor above 2 anyway.)
        guard Glibc.pipe(&pipe) == 0 else { throw GatewayProcessError(message: "pipe: errno \(errno)") }
        for fd in pipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 2)
        if let closeFrom = closeFrom { _ = closeFrom(&actions, 3) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The test process's threads block signals (Dispatch's signal thread does): the child starts
        // with none blocked and the gateway's own signals at their defaults.
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var pid: pid_t = 0
        var cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for argument in cArguments { free(argument) } }
        let spawned = posix_spawn(&pid, argv[0], &actions, &attributes, &cArguments, environ)
        close(pipe[1])
        guard spawned == 0 else {
            close(pipe[0])
            throw GatewayProcessError(message: "cannot start \(argv[0]): errno \(spawned)")
        }
        return (pid, pipe[0])
    }

    /// Reads standard error into lines until its end (this thread's only job).
    private static func read(_ fd: Int32, into state: Shared) {
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let count = Glibc.read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            state.withLock { state in
                state.partial.append(contentsOf: buffer[..<count])
                while let newline = state.partial.firstIndex(of: 0x0A) {
                    state.lines.append(String(decoding: state.partial[..<newline], as: UTF8.self))
                    state.partial.removeSubrange(...newline)
                }
            }
        }
        close(fd)
        state.withLock { $0.outputEnded = true }
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+), which Swift's Glibc module does not show.
    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let closeFrom: CloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: CloseFrom.self)
    }()

    deinit {
        stop()
    }

    /// Ends the process (SIGTERM, then SIGKILL after 5 s) and waits for it (at most 5 s more).
    public func stop() {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        if !waitSynchronously(seconds: 5) {
            kill(pid, SIGKILL)
            _ = waitSynchronously(seconds: 5)
        }
    }

    private func waitSynchronously(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning && Date() < deadline { usleep(10_000) }
        return !isRunning
    }

    public var isRunning: Bool { state.withLock { $0.exit == nil } }

    /// Reaps the process (this thread's only job) and records how it ended.
    private static func waitForExit(_ pid: pid_t, _ state: Shared) {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        state.withLock { $0.exit = status }
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
            try placeFile(executable, at: staging)
            chmod(staging, 0o755)
            guard rename(staging, copy) == 0 else { throw GatewayProcessError(message: "cannot place \(copy): errno \(errno)") }
            copies[executable] = copy
            return copy
        }
    }

    /// `source` at `target`: a hard link when both are on one file system, else a copy made by the
    /// kernel (`sendfile`). The debug executable is 160 MB: Foundation's copy took seconds, held
    /// `copies`' lock meanwhile, and every test starting a process waited on it, blocking the
    /// threads all tests share (seen as 7–9 s stalls at the start of a loaded test run).
    private static func placeFile(_ source: String, at target: String) throws {
        if link(source, target) == 0 { return }
        let input = open(source, O_RDONLY)
        guard input >= 0 else { throw GatewayProcessError(message: "cannot open \(source): errno \(errno)") }
        defer { close(input) }
        let output = open(target, O_WRONLY | O_CREAT | O_TRUNC, 0o755)
        guard output >= 0 else { throw GatewayProcessError(message: "cannot create \(target): errno \(errno)") }
        defer { close(output) }
        while true {
            let sent = sendfile(output, input, nil, 1 << 30)
            if sent == 0 { return }  // the end of the source
            if sent < 0 && errno == EINTR { continue }
            guard sent > 0 else { throw GatewayProcessError(message: "cannot copy \(source) to \(target): errno \(errno)") }
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

    /// The real user id the process runs as, from /proc.
    public func uid() throws -> UInt32? {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }
        return line.flatMap { $0.split(whereSeparator: \.isWhitespace).dropFirst().first }.flatMap { UInt32($0) }
    }

    /// Every standard-error line read so far.
    public var log: [String] { state.withLock { $0.lines } }

    /// Waits for the JSON log line `message` and returns its `port` (nil if standard error ends
    /// first: the process exited). Fails after `timeout`.
    public func listeningPort(message: String = "gateway listening", timeout: Duration = .seconds(60)) async throws -> Int? {
        let deadline = ContinuousClock.now + timeout
        var seen = 0
        while true {
            let (lines, ended) = state.withLock { state in (Array(state.lines[seen...]), state.outputEnded) }
            seen += lines.count
            for line in lines where line.contains("\"msg\":\"\(message)\"") {
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
                return object?["port"].flatMap(Int.init)
            }
            if ended { return nil }
            guard ContinuousClock.now < deadline else {
                throw GatewayProcessError(message: "no \"\(message)\" from the gateway within \(timeout); its log: \(log.suffix(5))")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    public func signal(_ number: Int32) {
        kill(pid, number)
    }

    /// The exit status, once the process has ended (a signal's number + 128 when one ended it);
    /// nil when it has not ended within `timeout`.
    public func exitStatus(timeout: Duration = .seconds(60)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = state.withLock({ $0.exit }) {
                let signal = status & 0x7f
                return signal == 0 ? (status >> 8) & 0xff : 128 + signal
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }
}

public struct GatewayProcessError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
