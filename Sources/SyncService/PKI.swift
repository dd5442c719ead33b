import Crypto
import Foundation
import Replication
import SwiftASN1
import X509

/// The small certificate authority headquarters runs for its branches.
///
/// Layout of the PKI directory (mode 0700; every key file 0600):
///
/// ```
/// ca.pem  ca-key.pem          the authority (P-256, self-signed)
/// hq.pem  hq-key.pem          headquarters' server certificate (names HQ's site code)
/// issued.tsv                  serial, site, not-after, issued-at of every certificate issued
/// revoked.tsv                 serial, site, revoked-at of every revoked certificate
/// sites/CODE/                 the bundle a branch installs: ca.pem, CODE.pem, CODE-key.pem
/// ```
///
/// A branch certificate names the site in its subject common name; headquarters takes the
/// connected site's identity from there and nowhere else.
public struct CertificateAuthority: Sendable {
    public static let caFile = "ca.pem"
    public static let caKeyFile = "ca-key.pem"
    public static let serverFile = "hq.pem"
    public static let serverKeyFile = "hq-key.pem"
    public static let issuedFile = "issued.tsv"
    public static let revokedFile = "revoked.tsv"
    static let organization = "Outpost"

    public let directory: String
    public let certificate: Certificate
    let key: P256.Signing.PrivateKey

    /// Headquarters' site code, from headquarters' own certificate.
    public let headquarters: String

    /// The files `init` made.
    public struct Paths: Sendable {
        public var caCertificate: String
        public var serverCertificate: String
        public var serverKey: String
        public var revoked: String
    }

    /// Makes a new authority and headquarters' server certificate in `directory`.
    ///
    /// - Parameters:
    ///   - serverNames: DNS names and IP addresses branches use to reach headquarters;
    ///     `localhost`, `127.0.0.1` and `::1` are always included.
    /// - Throws: ``PKIError`` when an authority already exists there (it is never replaced).
    @discardableResult
    public static func initialize(
        directory: String, headquarters: SiteID, serverNames: [String] = [], validityDays: Int = 3650, now: Date = Date()
    ) throws -> Paths {
        let caPath = (directory as NSString).appendingPathComponent(caFile)
        if FileManager.default.fileExists(atPath: caPath) {
            throw PKIError("a certificate authority already exists in \(directory); it is never replaced (branches trust it)")
        }
        try makePrivateDirectory(directory)
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName {
            OrganizationName(organization)
            CommonName("\(headquarters.code) Outpost CA")
        }
        let ca = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(caKey.publicKey),
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(Double(validityDays) * 86_400),
            issuer: caName,
            subject: caName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(caKey))
        try writePrivate(caKey.pemRepresentation, to: (directory as NSString).appendingPathComponent(caKeyFile))
        try writePublic(try ca.serializeAsPEM().pemString, to: caPath)
        let authority = CertificateAuthority(directory: directory, certificate: ca, key: caKey, headquarters: headquarters.code)

        var names: [GeneralName] = [.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))]
        names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(Array(repeating: 0, count: 15) + [1]))))
        for name in serverNames where !name.isEmpty && name != "localhost" {
            if let ip = IPAddressBytes(name) {
                names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(ip))))
            } else {
                names.append(.dnsName(name))
            }
        }
        let serverKey = P256.Signing.PrivateKey()
        let server = try authority.sign(
            key: serverKey, commonName: headquarters.code, unit: "headquarters", usage: [.serverAuth, .clientAuth], names: names,
            notBefore: now.addingTimeInterval(-3600), notAfter: now.addingTimeInterval(Double(min(validityDays, 825)) * 86_400))
        let paths = Paths(
            caCertificate: caPath,
            serverCertificate: (directory as NSString).appendingPathComponent(serverFile),
            serverKey: (directory as NSString).appendingPathComponent(serverKeyFile),
            revoked: (directory as NSString).appendingPathComponent(revokedFile))
        try writePrivate(serverKey.pemRepresentation, to: paths.serverKey)
        try writePublic(try server.serializeAsPEM().pemString, to: paths.serverCertificate)
        try authority.record(server, site: headquarters.code)
        if !FileManager.default.fileExists(atPath: paths.revoked) {
            try writePublic("# serial\tsite\trevoked_at\n", to: paths.revoked)
        }
        return paths
    }

    /// Opens the authority in `directory`.
    public static func load(directory: String) throws -> CertificateAuthority {
        let caPath = (directory as NSString).appendingPathComponent(caFile)
        let keyPath = (directory as NSString).appendingPathComponent(caKeyFile)
        guard let pem = try? String(contentsOfFile: caPath, encoding: .utf8) else {
            throw PKIError("no certificate authority in \(directory): run 'outpost pki init' at headquarters first")
        }
        guard let keyPEM = try? String(contentsOfFile: keyPath, encoding: .utf8) else {
            throw PKIError("cannot read the authority's key \(keyPath): it must be readable by this user only")
        }
        let serverPath = (directory as NSString).appendingPathComponent(serverFile)
        do {
            let server = try Certificate(pemEncoded: try String(contentsOfFile: serverPath, encoding: .utf8))
            return CertificateAuthority(
                directory: directory, certificate: try Certificate(pemEncoded: pem), key: try P256.Signing.PrivateKey(pemRepresentation: keyPEM),
                headquarters: server.subject.commonName ?? SiteID.headquarters.code)
        } catch {
            throw PKIError("the certificate authority in \(directory) is damaged: \(error)")
        }
    }

    /// The bundle a branch installs.
    public struct Bundle: Sendable {
        public var directory: String
        public var caCertificate: String
        public var certificate: String
        public var key: String
        public var serial: String
        public var notValidAfter: Date
    }

    /// Issues a branch key and certificate naming `site`, written to `sites/CODE/`.
    public func issue(site: SiteID, validityDays: Int = 825, now: Date = Date(), notBefore: Date? = nil) throws -> Bundle {
        guard site.code != headquarters else {
            throw PKIError("\(site) is headquarters' code; a branch certificate must name a branch")
        }
        let out = ((directory as NSString).appendingPathComponent("sites") as NSString).appendingPathComponent(site.code)
        try Self.makePrivateDirectory((directory as NSString).appendingPathComponent("sites"))
        try Self.makePrivateDirectory(out)
        let key = P256.Signing.PrivateKey()
        let start = notBefore ?? now.addingTimeInterval(-3600)
        let end = now.addingTimeInterval(Double(validityDays) * 86_400)
        let cert = try sign(key: key, commonName: site.code, unit: "branch", usage: [.clientAuth], names: [], notBefore: start, notAfter: end)
        let bundle = Bundle(
            directory: out,
            caCertificate: (out as NSString).appendingPathComponent("ca.pem"),
            certificate: (out as NSString).appendingPathComponent("\(site.code).pem"),
            key: (out as NSString).appendingPathComponent("\(site.code)-key.pem"),
            serial: cert.serialNumber.hex,
            notValidAfter: end)
        for path in [bundle.key, bundle.certificate, bundle.caCertificate] { try? FileManager.default.removeItem(atPath: path) }
        try Self.writePrivate(key.pemRepresentation, to: bundle.key)
        try Self.writePublic(try cert.serializeAsPEM().pemString, to: bundle.certificate)
        try Self.writePublic(try certificate.serializeAsPEM().pemString, to: bundle.caCertificate)
        try record(cert, site: site.code)
        return bundle
    }

    /// Revokes every certificate issued to `site` so far; returns their serials.
    public func revoke(site: SiteID, now: Date = Date()) throws -> [String] {
        let issued = try issuedCertificates().filter { $0.site == site.code }
        guard !issued.isEmpty else { throw PKIError("no certificate was issued to \(site) by this authority") }
        let list = try RevocationList.load(path: (directory as NSString).appendingPathComponent(Self.revokedFile))
        let fresh = issued.filter { !list.serials.contains($0.serial) }
        guard !fresh.isEmpty else { throw PKIError("every certificate of \(site) is already revoked") }
        var text = (try? String(contentsOfFile: list.path, encoding: .utf8)) ?? "# serial\tsite\trevoked_at\n"
        if !text.hasSuffix("\n") { text += "\n" }
        for entry in fresh { text += "\(entry.serial)\t\(site.code)\t\(Self.iso(now))\n" }
        try Self.replace(text, at: list.path, mode: 0o600)
        return fresh.map(\.serial)
    }

    public struct IssuedEntry: Sendable, Equatable {
        public var serial: String
        public var site: String
        public var notValidAfter: String
    }

    public func issuedCertificates() throws -> [IssuedEntry] {
        let path = (directory as NSString).appendingPathComponent(Self.issuedFile)
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            if line.hasPrefix("#") { return nil }
            let f = line.split(separator: "\t").map(String.init)
            return f.count >= 3 ? IssuedEntry(serial: f[0], site: f[1], notValidAfter: f[2]) : nil
        }
    }

    // MARK: Internals

    private func sign(
        key: P256.Signing.PrivateKey, commonName: String, unit: String, usage: [ExtendedKeyUsage.Usage], names: [GeneralName],
        notBefore: Date, notAfter: Date
    ) throws -> Certificate {
        let subject = try DistinguishedName {
            OrganizationName(Self.organization)
            OrganizationalUnitName(unit)
            CommonName(commonName)
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage(usage)
            if !names.isEmpty { SubjectAlternativeNames(names) }
        }
        return try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey), notValidBefore: notBefore,
            notValidAfter: notAfter, issuer: certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions, issuerPrivateKey: .init(self.key))
    }

    private func record(_ cert: Certificate, site: String) throws {
        let path = (directory as NSString).appendingPathComponent(Self.issuedFile)
        var text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? "# serial\tsite\tnot_valid_after\tissued_at\n"
        if !text.hasSuffix("\n") { text += "\n" }
        text += "\(cert.serialNumber.hex)\t\(site)\t\(Self.iso(cert.notValidAfter))\t\(Self.iso(Date()))\n"
        try Self.replace(text, at: path, mode: 0o600)
    }

    public static func iso(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: date)
    }

    public static func makePrivateDirectory(_ path: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw PKIError("\(path) exists and is not a directory") }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw PKIError("cannot create \(path): check the path and permissions")
        }
    }

    static func writePrivate(_ text: String, to path: String) throws { try replace(text, at: path, mode: 0o600) }
    static func writePublic(_ text: String, to path: String) throws { try replace(text, at: path, mode: 0o600) }

    /// Writes a file whole: to a temporary name with its final mode, then renamed over, so
    /// a key is never readable by others even for a moment and a crash leaves the old file.
    public static func replace(_ text: String, at path: String, mode: mode_t) throws {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw PKIError("cannot write \(path): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n <= 0 {
                close(fd)
                unlink(temporary)
                throw PKIError("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            written += n
        }
        fchmod(fd, mode)
        fsync(fd)
        close(fd)
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw PKIError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}

/// Serials headquarters no longer accepts, from `revoked.tsv`.
public struct RevocationList: Sendable {
    public var path: String
    public var serials: Set<String>

    public static func load(path: String) throws -> RevocationList {
        guard FileManager.default.fileExists(atPath: path) else { return RevocationList(path: path, serials: []) }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw PKIError("cannot read the revocation list \(path)")
        }
        var serials: Set<String> = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            if let serial = line.split(separator: "\t").first { serials.insert(String(serial).lowercased()) }
        }
        return RevocationList(path: path, serials: serials)
    }
}

public struct PKIError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The identity a certificate carries: its subject common name and serial.
public struct CertificateIdentity: Sendable, Equatable {
    public var commonName: String
    public var serial: String
    public var unit: String?
    public var notValidAfter: Date

    public init(der: [UInt8]) throws {
        let cert = try Certificate(derEncoded: der)
        self.init(cert)
    }

    public init(pem: String) throws {
        self.init(try Certificate(pemEncoded: pem))
    }

    init(_ cert: Certificate) {
        commonName = cert.subject.commonName ?? ""
        unit = cert.subject.attribute(.RDNAttributeType.organizationalUnitName)
        serial = cert.serialNumber.hex
        notValidAfter = cert.notValidAfter
    }
}

extension DistinguishedName {
    var commonName: String? { attribute(.RDNAttributeType.commonName) }

    func attribute(_ type: ASN1ObjectIdentifier) -> String? {
        for rdn in self {
            for attribute in rdn where attribute.type == type {
                return String(attribute.value)
            }
        }
        return nil
    }
}

extension Certificate.SerialNumber {
    var hex: String { bytes.map { String(format: "%02x", $0) }.joined() }
}

/// The bytes of an IPv4 or IPv6 address in text, or nil when `text` is not one.
func IPAddressBytes(_ text: String) -> [UInt8]? {
    var v4 = in_addr()
    if inet_pton(AF_INET, text, &v4) == 1 {
        return withUnsafeBytes(of: &v4) { Array($0) }
    }
    var v6 = in6_addr()
    if inet_pton(AF_INET6, text, &v6) == 1 {
        return withUnsafeBytes(of: &v6) { Array($0) }
    }
    return nil
}
