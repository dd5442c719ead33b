import Crypto
import Foundation
import Replication
import SwiftASN1
import X509

/// Change-set files signed by the site that exported them.
///
/// A file travels outside any TLS session (a USB stick, a mail attachment), so it carries its
/// own proof of origin: the exporting site's certificate and an ECDSA P-256 signature over the
/// change-set bytes.
///
/// ```
/// "OPSG" | version u8 (1) | certificate length u32 BE | certificate DER
///        | signature length u16 BE | signature (ECDSA P-256 / SHA-256, DER) | change set (OPCS)
/// ```
///
/// Opening checks that the certificate was issued by the trusted authority, was valid when
/// checked, is not revoked, and names the change set's producer; then the signature.
public enum SignedChangeSet {
    public static let magic: [UInt8] = Array("OPSG".utf8)
    public static let version: UInt8 = 1

    public static func isSigned(_ bytes: [UInt8]) -> Bool { bytes.starts(with: magic) }

    /// Wraps encoded change-set bytes with the signer's certificate and signature.
    public static func sign(_ payload: [UInt8], certificatePEM: String, keyPEM: String) throws -> [UInt8] {
        let certificate: Certificate
        let key: P256.Signing.PrivateKey
        do {
            certificate = try Certificate(pemEncoded: certificatePEM)
            key = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
        } catch {
            throw SignatureError("the site's certificate or key cannot be read: \(error)")
        }
        guard P256.Signing.PublicKey(certificate.publicKey)?.rawRepresentation == key.publicKey.rawRepresentation else {
            throw SignatureError("the site's key does not belong to its certificate")
        }
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        let der = serializer.serializedBytes
        let signature = try key.signature(for: payload).derRepresentation
        var out = magic
        out.append(version)
        out += withUnsafeBytes(of: UInt32(der.count).bigEndian) { Array($0) }
        out += der
        out += withUnsafeBytes(of: UInt16(signature.count).bigEndian) { Array($0) }
        out += signature
        out += payload
        return out
    }

    /// Who signed a file and the change-set bytes inside.
    public struct Opened: Sendable {
        public var payload: [UInt8]
        public var signer: String
        public var serial: String
        /// The certificate's organizational unit: `branch` or `headquarters`.
        public var unit: String?
    }

    /// The change-set bytes of a signed file, not checked: only to recognise a site's own
    /// export, which is skipped, never applied.
    public static func unverifiedPayload(_ bytes: [UInt8]) throws -> [UInt8] {
        try envelope(bytes).payload
    }

    /// The parts of a signed file, unchecked.
    private static func envelope(_ bytes: [UInt8]) throws -> (der: ArraySlice<UInt8>, signature: ArraySlice<UInt8>, payload: [UInt8]) {
        var offset = magic.count
        func take(_ n: Int, _ what: String) throws -> ArraySlice<UInt8> {
            guard n >= 0, bytes.count - offset >= n else { throw SignatureError("the signed file is truncated in its \(what)") }
            defer { offset += n }
            return bytes[offset..<(offset + n)]
        }
        guard isSigned(bytes) else { throw SignatureError("the file is not signed") }
        guard try take(1, "version").first == version else { throw SignatureError("the signature format is newer than this Outpost") }
        let certLength = try take(4, "header").reduce(0) { $0 << 8 | Int($1) }
        guard certLength <= 16 * 1024 else { throw SignatureError("the signer's certificate is implausibly large") }
        let der = try take(certLength, "certificate")
        let signatureLength = try take(2, "header").reduce(0) { $0 << 8 | Int($1) }
        let signature = try take(signatureLength, "signature")
        return (der, signature, Array(bytes[offset...]))
    }

    /// Checks a signed file against the authority `caPEM` and returns the change-set bytes.
    /// - Parameter revoked: serials the authority revoked (headquarters' list), if known.
    public static func open(_ bytes: [UInt8], trusting caPEM: String, revoked: Set<String> = [], now: Date = Date()) throws -> Opened {
        let (der, signatureBytes, payload) = try envelope(bytes)

        let certificate: Certificate
        let authority: Certificate
        do {
            certificate = try Certificate(derEncoded: Array(der))
        } catch {
            throw SignatureError("the signer's certificate is malformed")
        }
        do {
            authority = try Certificate(pemEncoded: caPEM)
        } catch {
            throw SignatureError("this site's CA certificate cannot be read")
        }
        let identity = CertificateIdentity(certificate)
        let site = identity.commonName
        guard certificate.issuer == authority.subject, authority.publicKey.isValidSignature(certificate.signature, for: certificate) else {
            throw SignatureError("the file is signed by a certificate for \(site) that this site's authority did not issue")
        }
        guard certificate.notValidBefore <= now, now <= certificate.notValidAfter else {
            throw SignatureError("the certificate of \(site) that signed the file is not valid now (expired or not yet valid)")
        }
        guard !revoked.contains(identity.serial) else {
            throw SignatureError("the certificate of \(site) that signed the file is revoked")
        }
        guard let key = P256.Signing.PublicKey(certificate.publicKey),
            let signature = try? P256.Signing.ECDSASignature(derRepresentation: signatureBytes),
            key.isValidSignature(signature, for: payload)
        else {
            throw SignatureError("the signature of \(site) does not match the file's contents: it was changed after signing")
        }
        let header: ChangeSetCodec.Header
        do { header = try ChangeSetCodec.header(of: payload) } catch {
            throw SignatureError("the signed change set is malformed: \(error)")
        }
        guard header.producer.code == site else {
            throw SignatureError("the file is signed by \(site) but claims to come from \(header.producer)")
        }
        return Opened(payload: payload, signer: site, serial: identity.serial, unit: identity.unit)
    }
}

public struct SignatureError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
