import Foundation
import GatewayCore
import Logging
import NIOSSL
import Synchronization

/// The certificate the main listener serves, and its rotation. Every new connection takes the
/// context current when it is accepted; connections already open keep the one they shook hands
/// with, so a rotation drops nothing. A changed pair is served only when it loads and checks out
/// (``TLSCertificatePair``): half-written files, a key that does not match yet, or an expired
/// certificate leave the previous pair serving, and the change is retried once the files change again.
final class ServerTLS: Sendable {
    let config: TLSConfig
    private let logger: Logger
    private let state: Mutex<State>

    private struct State {
        var context: NIOSSLContext
        var info: TLSCertificateInfo
        /// The files as last read (served or refused): only a change of them is read again.
        var stamps: [FileStamp?]
        /// Why the files as they are now were not loaded (nil: they serve).
        var refused: String?
    }

    /// Identity of a file's contents as the file system tells it: device, inode, size and
    /// modification time. A symlink swapped to a new target (certbot's `live/`) changes it too.
    struct FileStamp: Equatable {
        var device: UInt64
        var inode: UInt64
        var size: UInt64
        var modified: Date

        static func of(_ path: String) -> FileStamp? {
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                  let modified = attributes[.modificationDate] as? Date
            else { return nil }
            func number(_ key: FileAttributeKey) -> UInt64 { (attributes[key] as? NSNumber)?.uint64Value ?? 0 }
            return FileStamp(device: number(.systemNumber), inode: number(.systemFileNumber), size: number(.size), modified: modified)
        }
    }

    /// Loads the pair; throws when it cannot be served.
    init(config: TLSConfig, logger: Logger, now: Date = Date()) throws {
        self.config = config
        self.logger = logger
        let stamps = [FileStamp.of(config.certificatePath), FileStamp.of(config.keyPath)]
        let pair = try TLSCertificatePair.load(certificatePath: config.certificatePath, keyPath: config.keyPath, now: now)
        state = Mutex(State(context: try pair.serverContext(), info: pair.info, stamps: stamps, refused: nil))
        logger.info("serving TLS certificate", metadata: Self.metadata(pair.info))
    }

    /// The context for a connection accepted now.
    var context: NIOSSLContext { state.withLock { $0.context } }

    /// What is served, and why the files as they are now are not (nil: they are).
    var status: (info: TLSCertificateInfo, refused: String?) { state.withLock { ($0.info, $0.refused) } }

    enum ReloadOutcome: Equatable {
        case unchanged
        case reloaded(TLSCertificateInfo)
        case refused(String)
    }

    /// Reads the files again when they changed since they were last read (always with `force`,
    /// as on SIGHUP) and serves the new pair if it checks out. Blocking: call it off the event loops.
    @discardableResult
    func reload(force: Bool, now: Date = Date()) -> ReloadOutcome {
        let stamps = [FileStamp.of(config.certificatePath), FileStamp.of(config.keyPath)]
        guard force || state.withLock({ $0.stamps != stamps }) else { return .unchanged }
        do {
            let pair = try TLSCertificatePair.load(certificatePath: config.certificatePath, keyPath: config.keyPath, now: now)
            let context = try pair.serverContext()
            let previous = state.withLock { state -> TLSCertificateInfo in
                defer { state = State(context: context, info: pair.info, stamps: stamps, refused: nil) }
                return state.info
            }
            if previous != pair.info {
                logger.notice("serving a new TLS certificate", metadata: Self.metadata(pair.info))
            }
            return .reloaded(pair.info)
        } catch {
            let why = "\(error)"
            let repeated = state.withLock { state -> Bool in
                defer {
                    state.stamps = stamps
                    state.refused = why
                }
                return state.refused == why
            }
            if !repeated {
                logger.error("TLS certificate files changed but cannot be served; the previous certificate keeps serving",
                             metadata: ["error": "\(why)", "tls.cert": "\(config.certificatePath)", "tls.key": "\(config.keyPath)"])
            }
            return .refused(why)
        }
    }

    static func metadata(_ info: TLSCertificateInfo) -> Logger.Metadata {
        ["tls.subject": "\(info.subject)", "tls.names": "\(info.names.joined(separator: ","))",
         "tls.notAfter": "\(TLSCertificateInfo.timestamp(info.notAfter))", "tls.serial": "\(info.serial)"]
    }
}
