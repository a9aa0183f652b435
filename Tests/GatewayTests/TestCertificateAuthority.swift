import Crypto
import Foundation
import SwiftASN1
import X509

/// A certificate authority made by the test itself (swift-certificates, P-256), and the leaves and
/// intermediates it signs, written as PEM files for the gateway's `tls:` and trusted by the test
/// clients (never by the system).
struct TestCertificateAuthority {
    let key: P256.Signing.PrivateKey
    let certificate: Certificate
    let name: DistinguishedName

    init(commonName: String = "x402-gateway test CA", issuer: TestCertificateAuthority? = nil) throws {
        key = P256.Signing.PrivateKey()
        name = try DistinguishedName { CommonName(commonName) }
        let now = Date()
        certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 30 * 86_400,
            issuer: issuer?.name ?? name, subject: name,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(issuer?.key ?? key))
    }

    /// An intermediate CA signed by this one.
    func intermediate(commonName: String = "x402-gateway test intermediate") throws -> TestCertificateAuthority {
        try TestCertificateAuthority(commonName: commonName, issuer: self)
    }

    var pem: String { (try? certificate.serializeAsPEM().pemString) ?? "" }

    /// The NIOSSL form of this CA, for clients that trust it.
    var trustRootPEM: [UInt8] { Array(pem.utf8) }

    struct Leaf {
        let certificate: Certificate
        let key: P256.Signing.PrivateKey

        var certificatePEM: String { (try? certificate.serializeAsPEM().pemString) ?? "" }
        var keyPEM: String { key.pemRepresentation }
        /// Hex, as the gateway reports it.
        var serial: String { certificate.serialNumber.bytes.map { String(format: "%02X", $0) }.joined() }
    }

    /// A server certificate for `dnsNames` and `ipAddresses` (IPv4), valid from `notBefore` to `notAfter`.
    func leaf(
        commonName: String = "localhost", dnsNames: [String] = ["localhost"], ipAddresses: [[UInt8]] = [[127, 0, 0, 1]],
        notBefore: Date = Date() - 3600, notAfter: Date = Date() + 7 * 86_400
    ) throws -> Leaf {
        let key = P256.Signing.PrivateKey()
        let names = dnsNames.map { GeneralName.dnsName($0) } + ipAddresses.map { GeneralName.ipAddress(ASN1OctetString(contentBytes: $0[...])) }
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: notBefore, notValidAfter: notAfter,
            issuer: name, subject: try DistinguishedName { CommonName(commonName) },
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(names)
            },
            issuerPrivateKey: .init(self.key))
        return Leaf(certificate: certificate, key: key)
    }
}

/// A folder with `cert.pem` and `key.pem` that tests overwrite to rotate the certificate.
struct CertificateFiles {
    let directory: String
    var certificatePath: String { directory + "/cert.pem" }
    var keyPath: String { directory + "/key.pem" }

    init() throws {
        directory = NSTemporaryDirectory() + "x402-tls-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// Writes the leaf (followed by `chain`, e.g. an intermediate) and its key, each file replaced
    /// at once (write to a temporary name, then rename), as certificate tools do.
    func write(_ leaf: TestCertificateAuthority.Leaf, chain: [TestCertificateAuthority] = [], key: String? = nil) throws {
        let certificate = ([leaf.certificatePEM] + chain.map(\.pem)).joined(separator: "\n")
        try replace(certificatePath, with: certificate)
        try replace(keyPath, with: key ?? leaf.keyPEM)
    }

    func replace(_ path: String, with text: String) throws {
        let temporary = path + ".new"
        try text.write(toFile: temporary, atomically: false, encoding: .utf8)
        guard rename(temporary, path) == 0 else { throw CocoaError(.fileWriteUnknown) }
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}
