import ArgumentParser
import Foundation
import Gateway
import GatewayCore
import Logging
import ServiceLifecycle
import UnixSignals

@main
struct X402GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "x402-gateway",
        abstract: "A reverse-proxy paywall for the x402 payment protocol.",
        subcommands: [Run.self, Check.self],
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
        print("\(config): OK (\(loaded.routes.count) routes: \(priced) priced, \(loaded.routes.count - priced) free; \(loaded.upstreams.count) upstreams)")
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the gateway.")

    @Option(name: .shortAndLong, help: "Path to gateway.yaml.")
    var config: String = "gateway.yaml"

    @Option(help: "Log level (trace, debug, info, notice, warning, error, critical).")
    var logLevel: Logger.Level = .info

    func run() async throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let loaded = try loadConfig(config)
        let logger = Logger(label: "x402-gateway")
        let server = GatewayServer(config: loaded, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: server)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
