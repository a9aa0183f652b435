import ArgumentParser
import Foundation
import Gateway
import GatewayCore
import GatewayStorage
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

@main
struct X402GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "x402-gateway",
        abstract: "A reverse-proxy paywall for the x402 payment protocol.",
        subcommands: [Run.self, Check.self, Reload.self, Payments.self, Revenue.self],
        defaultSubcommand: Run.self)
}

/// Loads the file, printing `file:line:column: message` for every problem.
func loadConfig(_ path: String) throws -> GatewayConfig {
    do {
        return try ConfigLoader.load(path: path, environment: ProcessInfo.processInfo.environment)
    } catch {
        FileHandle.standardError.write(Data((error.description + "\n").utf8))
        throw ExitCode(1)
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate a configuration file and exit.")

    @Option(name: .shortAndLong, help: "Path to gateway.yaml.")
    var config: String = "gateway.yaml"

    func run() throws {
        let loaded = try loadConfig(config)
        let priced = loaded.routes.filter { $0.access != .free }.count
        let storage = switch loaded.storage.backend {
        case .memory: "storage in memory (neither durable nor shared)"
        case .sqlite(let path): "storage sqlite \(path)"
        case .postgres: "storage postgres"
        }
        // Hosts only: an RPC URL may carry an API key.
        let chains = loaded.networks.values.sorted { $0.network < $1.network }.map { "\($0.network) via \($0.host)" }
        let reconcile = chains.isEmpty ? "no reconciliation (no networks with an rpc)" : "reconciliation on \(chains.joined(separator: ", "))"
        // Key ids only, never a secret.
        let withPass = loaded.routes.filter { $0.pass != nil }.count
        let passes = loaded.passes.map { "; \(withPass) with passes, keys \($0.keys.map(\.id).joined(separator: ", ")) (\($0.keys[0].id) signs)" } ?? ""
        print("\(config): OK (\(loaded.routes.count) routes: \(priced) priced, \(loaded.routes.count - priced) free; \(loaded.upstreams.count) upstreams; \(storage); \(reconcile)\(passes))")
        // The certificate the listener would serve: subject, names, expiry (checked by the loader).
        if let tls = loaded.tls { print(TLSCheck.describe(tls)) }
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway.",
        discussion: "SIGHUP, a change of the file, `x402-gateway reload` or POST /reload on the admin listener reload the configuration. SIGTERM or SIGINT drain requests in flight, then exit 0.")

    @Option(name: .shortAndLong, help: "Path to gateway.yaml.")
    var config: String = "gateway.yaml"

    @Option(help: "Log level (trace, debug, info, notice, warning, error, critical).")
    var logLevel: Logger.Level = .info

    @Option(help: "Log format: json (one object per line), text, or auto (text on a terminal, else json).")
    var logFormat: LogFormat = .auto

    enum LogFormat: String, ExpressibleByArgument {
        case auto, json, text
    }

    func run() async throws {
        // Run Swift concurrency on NIO's event loops: the request path then stays on the thread its
        // socket lives on instead of hopping to the global executor (about a quarter less CPU per
        // paid request in scripts/bench.sh).
        let onEventLoops = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        let level = logLevel
        let json = logFormat == .json || (logFormat == .auto && isatty(STDERR_FILENO) == 0)
        LoggingSystem.bootstrap { label in
            if json { return JSONLogHandler(label: label, level: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let loaded = try loadConfig(config)
        let logger = Logger(label: "x402-gateway")
        if !onEventLoops { logger.notice("Swift concurrency stays on the default executor") }
        OpenFileLimit.raise(forConnections: loaded.limits.maxConnections, logger: logger)
        let opened: OpenPaymentStore
        do {
            opened = try await PaymentStoreOpener.open(loaded.storage, logger: logger)
        } catch {
            logger.critical("cannot open the payment store; not starting", metadata: ["error": "\(error)"])
            FileHandle.standardError.write(Data("\(config): storage: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let server = GatewayServer(
            config: loaded, logger: logger, store: opened.store, counters: opened.counters,
            source: ConfigSource(path: config, environment: ProcessInfo.processInfo.environment))
        var configuration = ServiceGroupConfiguration(
            services: [
                // First in, last out: the store's connections outlive the requests draining on shutdown.
                .init(service: StoreBackground(work: opened.background), successTerminationBehavior: .ignore),
                .init(service: server),
                // Trapped before the listener starts: SIGHUP's default action would end the process.
                .init(service: ReloadOnHangup(server: server, hangups: await UnixSignalsSequence(trapping: .sighup))),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        configuration.maximumGracefulShutdownDuration = .init(loaded.limits.shutdownGrace)
        try await ServiceGroup(configuration: configuration).run()
        logger.notice("stopped")
    }
}

/// Runs what the payment store needs beside it (PostgreSQL's pool) until the other services stopped.
struct StoreBackground: Service {
    let work: (@Sendable () async -> Void)?

    func run() async throws {
        guard let work else { return }
        await cancelWhenGracefulShutdown { await work() }
    }
}

/// Reloads the configuration on every SIGHUP.
struct ReloadOnHangup: Service {
    let server: GatewayServer
    let hangups: UnixSignalsSequence

    func run() async throws {
        await cancelWhenGracefulShutdown {
            for await _ in hangups { await server.reload(trigger: "SIGHUP") }
        }
    }
}

struct Reload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask a running gateway to reload its configuration (through its admin listener).",
        discussion: "Needs `admin.listen` in the configuration; without it, send SIGHUP to the gateway process instead.")

    @Option(name: .shortAndLong, help: "Path to gateway.yaml (read for admin.listen).")
    var config: String = "gateway.yaml"

    func run() async throws {
        let loaded = try loadConfig(config)
        guard let admin = loaded.admin else {
            FileHandle.standardError.write(Data("\(config): no admin.listen configured; send SIGHUP to the gateway instead\n".utf8))
            throw ExitCode(2)
        }
        do {
            let (ok, body) = try await AdminClient.reload(admin.listen, token: admin.token)
            print(body)
            if !ok { throw ExitCode(1) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            FileHandle.standardError.write(Data("cannot reach the admin listener at \(admin.listen): \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
