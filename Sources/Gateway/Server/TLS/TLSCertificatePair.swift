import Foundation
import NIOSSL
import SwiftASN1
import X509

/// What a served certificate says about itself, for `check`, the log and `/readyz`.
public struct TLSCertificateInfo: Sendable, Equatable, CustomStringConvertible {
    public var subject: String
    /// DNS names and IP addresses of the subject alternative names (the names clients check).
    public var names: [String]
    public var notBefore: Date
    public var notAfter: Date
    /// Hex, as `openssl x509 -serial` prints it.
    public var serial: String
    /// Certificates after the leaf (intermediates) in the file.
    public var intermediates: Int

    public var description: String {
        "\(subject); names \(names.isEmpty ? "(none)" : names.joined(separator: ", ")); valid until \(Self.timestamp(notAfter)); serial \(serial)"
            + (intermediates > 0 ? "; \(intermediates) intermediate\(intermediates == 1 ? "" : "s")" : "")
    }

    static func timestamp(_ date: Date) -> String { ISO8601DateFormatter().string(from: date) }
}

/// Why a certificate and key cannot be served. `file` says which file the problem is in (for the
/// diagnostic's position).
public struct TLSPairError: Error, Sendable, CustomStringConvertible {
    public enum File: Sendable { case certificate, key }

    public let file: File
    public let description: String
}

/// A PEM certificate chain (leaf first) and its private key, read and checked: the key is the
/// leaf's, and the leaf is valid now. Made once per (re)load; ``ServerTLS`` serves it.
struct TLSCertificatePair: Sendable {
    let chain: [NIOSSLCertificate]
    let key: NIOSSLPrivateKey
    let info: TLSCertificateInfo

    static func load(certificatePath: String, keyPath: String, now: Date = Date()) throws(TLSPairError) -> TLSCertificatePair {
        func read(_ path: String, _ file: TLSPairError.File) throws(TLSPairError) -> String {
            do {
                return try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw TLSPairError(file: file, description: "cannot read \(path): \((error as NSError).localizedDescription)")
            }
        }
        let certificateText = try read(certificatePath, .certificate)
        let keyText = try read(keyPath, .key)

        let certificateBlocks = pemBlocks(certificateText).filter { $0.label == "CERTIFICATE" }
        guard !certificateBlocks.isEmpty else {
            throw TLSPairError(file: .certificate, description: "\(certificatePath) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
        var certificates: [Certificate] = []
        var chain: [NIOSSLCertificate] = []
        for (n, block) in certificateBlocks.enumerated() {
            do {
                certificates.append(try Certificate(pemEncoded: block.text))
                chain.append(try NIOSSLCertificate(bytes: Array(block.text.utf8), format: .pem))
            } catch {
                throw TLSPairError(file: .certificate, description: "certificate \(n + 1) in \(certificatePath) cannot be read: \(error)")
            }
        }

        let keyBlocks = pemBlocks(keyText).filter { $0.label.hasSuffix("PRIVATE KEY") }
        guard let keyBlock = keyBlocks.first else {
            throw TLSPairError(file: .key, description: "\(keyPath) holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
        }
        guard keyBlock.label != "ENCRYPTED PRIVATE KEY" else {
            throw TLSPairError(file: .key, description: "\(keyPath) is encrypted: the gateway needs the key without a passphrase (keep the file readable by its user only)")
        }
        let privateKey: Certificate.PrivateKey
        let key: NIOSSLPrivateKey
        do {
            privateKey = try Certificate.PrivateKey(pemEncoded: keyBlock.text)
            key = try NIOSSLPrivateKey(bytes: Array(keyBlock.text.utf8), format: .pem)
        } catch {
            throw TLSPairError(file: .key, description: "the private key in \(keyPath) cannot be read: \(error)")
        }

        let leaf = certificates[0]
        guard privateKey.publicKey == leaf.publicKey else {
            throw TLSPairError(file: .key, description: "the private key in \(keyPath) does not belong to the certificate in \(certificatePath) (\(leaf.subject)); the certificate must come first in its file")
        }
        let info = TLSCertificateInfo(
            subject: leaf.subject.description, names: names(of: leaf), notBefore: leaf.notValidBefore, notAfter: leaf.notValidAfter,
            serial: leaf.serialNumber.bytes.map { String(format: "%02X", $0) }.joined(), intermediates: certificates.count - 1)
        guard now <= leaf.notValidAfter else {
            throw TLSPairError(file: .certificate, description: "the certificate in \(certificatePath) (\(leaf.subject)) expired on \(TLSCertificateInfo.timestamp(leaf.notValidAfter))")
        }
        guard now >= leaf.notValidBefore else {
            throw TLSPairError(file: .certificate, description: "the certificate in \(certificatePath) (\(leaf.subject)) is not valid before \(TLSCertificateInfo.timestamp(leaf.notValidBefore))")
        }
        return TLSCertificatePair(chain: chain, key: key, info: info)
    }

    /// The server context for this pair: TLS 1.2 and 1.3, ALPN `http/1.1`.
    func serverContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["http/1.1"]
        return try NIOSSLContext(configuration: configuration)
    }

    /// DNS names and IP addresses among the leaf's subject alternative names.
    static func names(of certificate: Certificate) -> [String] {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return [] }
        return names.compactMap { name in
            switch name {
            case .dnsName(let dns): return dns
            case .ipAddress(let octets): return ipText(Array(octets.bytes))
            default: return nil
            }
        }
    }

    static func ipText(_ bytes: [UInt8]) -> String? {
        switch bytes.count {
        case 4: return bytes.map(String.init).joined(separator: ".")
        case 16:
            return stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }.joined(separator: ":")
        default: return nil
        }
    }

    /// The PEM blocks of a file, each with its label and its text from BEGIN to END.
    static func pemBlocks(_ text: String) -> [(label: String, text: String)] {
        var blocks: [(String, String)] = []
        var rest = Substring(text)
        while let begin = rest.range(of: "-----BEGIN ") {
            guard let labelEnd = rest[begin.upperBound...].range(of: "-----") else { break }
            let label = String(rest[begin.upperBound..<labelEnd.lowerBound])
            guard let end = rest[labelEnd.upperBound...].range(of: "-----END \(label)-----") else { break }
            blocks.append((label, String(rest[begin.lowerBound..<end.upperBound])))
            rest = rest[end.upperBound...]
        }
        return blocks
    }
}
