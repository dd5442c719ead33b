import Foundation
import X509

/// Timing and size limits of the exchange (the `[sync]` table of the configuration).
public struct SyncLimits: Sendable, Equatable {
    /// How often a daemon looks for new changes in its archive (other processes, such as
    /// the CLI, write to it too).
    public var pollIntervalMilliseconds = 200
    /// The first wait after a failed connection; doubled on each failure up to the maximum,
    /// with up to 50% random jitter so branches that lost HQ together do not return together.
    public var retryInitialMilliseconds = 500
    public var retryMaximumMilliseconds = 30_000
    /// A change set is cut when its encoded changes reach this many bytes (before
    /// compression) or this many changes; one write is never split.
    public var batchMaximumBytes = 1 << 20
    public var batchMaximumChanges = 20_000
    /// HQ quarantines a change whose clock is further ahead of its own wall clock.
    public var maximumClockDriftMilliseconds: UInt64 = 300_000
    /// A branch keeps its own changes this long after headquarters acknowledged them, so a
    /// headquarters restored from a backup inside the window can ask for them again.
    public var logRetentionDays = 30

    // Connection limits at headquarters: they bound what a peer that is not (yet) a known
    // branch can hold, so such peers can never use up HQ's file descriptors.

    /// HQ closes a connection whose TLS handshake has not completed this long after accept.
    public var handshakeTimeoutMilliseconds = 10_000
    /// HQ closes a connection that completed TLS but opened no call (HTTP/2 stream) this long
    /// after the handshake.
    public var firstCallTimeoutMilliseconds = 10_000
    /// HQ asks a connection without open calls for this long to go away (HTTP/2 GOAWAY).
    public var idleTimeoutMilliseconds = 300_000
    /// Connections HQ holds at once, from accept to close; never more than the process's
    /// descriptor limit allows (``ConnectionLimiter/effectiveMaximum(configured:descriptorLimit:)``).
    public var maximumConnections = 4_096
    /// Connections one site's certificate may hold at once (a branch needs one).
    public var maximumConnectionsPerSite = 8
    /// Calls open at once on one connection (a branch opens at most three).
    public var maximumStreamsPerConnection = 16
    /// `Fetch` and `Search` calls one site may make in any hour: a clerk's pace, far below
    /// what copying the national base one customer at a time with a stolen certificate needs.
    public var maximumFetchesPerHour = 200

    public init() {}

    /// The largest message either side accepts: a full batch that compressed not at all,
    /// plus framing. HQ refuses a larger change set with `REASON_TOO_LARGE`.
    public var maximumMessageBytes: Int { batchMaximumBytes + batchMaximumBytes / 4 + 64 * 1024 }
}

/// The TLS files one side uses.
public struct TLSFiles: Sendable, Equatable {
    public var ca: String
    public var certificate: String
    public var key: String
    /// HQ only: serials it refuses (`outpost pki revoke`).
    public var revoked: String?

    public init(ca: String, certificate: String, key: String, revoked: String? = nil) {
        self.ca = ca
        self.certificate = certificate
        self.key = key
        self.revoked = revoked
    }

    /// Reads the three PEM files, with an error naming the one that is missing and how to
    /// make it.
    public func load() throws -> (ca: [UInt8], certificate: [UInt8], key: [UInt8]) {
        func read(_ path: String, _ what: String) throws -> [UInt8] {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw SyncError(
                    .configuration,
                    "cannot read the \(what) \(path); at headquarters run 'outpost pki init', at a branch install the bundle from 'outpost pki issue'")
            }
            return [UInt8](data)
        }
        return (try read(ca, "CA certificate"), try read(certificate, "certificate"), try read(key, "private key"))
    }
}

/// `host:port`, with IPv6 addresses in brackets (`[::1]:7443`).
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// - Parameter listening: port 0 (any free port) is allowed, for an address to listen on.
    public init(parsing text: String, defaultPort: Int? = nil, listening: Bool = false) throws {
        var host = Substring(text)
        var portText: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw SyncError(.configuration, "'\(text)': missing ']' after the IPv6 address") }
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if rest.hasPrefix(":") { portText = rest.dropFirst() } else if !rest.isEmpty { throw SyncError(.configuration, "'\(text)' is not host:port") }
        } else if let colon = host.lastIndex(of: ":") {
            portText = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        guard !host.isEmpty else { throw SyncError(.configuration, "'\(text)': the host is missing (host:port)") }
        let port: Int
        if let portText {
            guard let p = Int(portText), ((listening ? 0 : 1)...65535).contains(p) else {
                throw SyncError(.configuration, "'\(text)': the port must be \(listening ? 0 : 1)-65535")
            }
            port = p
        } else if let defaultPort {
            port = defaultPort
        } else {
            throw SyncError(.configuration, "'\(text)': the port is missing (host:port)")
        }
        self.host = String(host)
        self.port = port
    }

    public var isIPv6: Bool { host.contains(":") }
    public var isIPAddress: Bool { IPAddressBytes(host) != nil }
    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// An error of the sync layer, with a kind the CLI and logs can act on.
public struct SyncError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        case configuration
        case unreachable
        case refused
        case protocolViolation
        case version
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// Checks of a site's TLS files beyond "they exist", for `config check` and `doctor`.
public enum TLSCheck {
    /// The certificate's end of validity, after checking that the three files parse, that the
    /// key belongs to the certificate and that the CA signed it.
    public static func certificateExpiry(_ files: TLSFiles) throws -> Date {
        let (caPEM, certificatePEM, keyPEM) = try files.load()
        func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
        let certificate: Certificate
        let ca: Certificate
        do { certificate = try Certificate(pemEncoded: text(certificatePEM)) } catch {
            throw SyncError(.configuration, "\(files.certificate) is not a PEM certificate")
        }
        do { ca = try Certificate(pemEncoded: text(caPEM)) } catch {
            throw SyncError(.configuration, "\(files.ca) is not a PEM certificate")
        }
        let key: Certificate.PrivateKey
        do { key = try Certificate.PrivateKey(pemEncoded: text(keyPEM)) } catch {
            throw SyncError(.configuration, "\(files.key) is not a PEM private key")
        }
        guard key.publicKey == certificate.publicKey else {
            throw SyncError(.configuration, "the key \(files.key) does not belong to the certificate \(files.certificate)")
        }
        guard ca.publicKey.isValidSignature(certificate.signature, for: certificate) else {
            throw SyncError(.configuration, "the certificate \(files.certificate) was not issued by the CA in \(files.ca)")
        }
        return certificate.notValidAfter
    }
}
