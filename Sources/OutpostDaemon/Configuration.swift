import CustomerArchive
import Foundation
import Logging
import Replication
import SyncService

/// The daemon's configuration: defaults, then the TOML file, then command-line flags.
///
/// Every key is documented in `deploy/outpost.toml`; a key this type does not know is an
/// error naming its line, so a misspelt key never falls back to a default silently.
public struct DaemonConfiguration: Sendable {
    public static let defaultPath = "/etc/outpost/outpost.toml"
    public static let defaultPort = 7443

    /// Where the archive lives (`data_dir`).
    public var dataDirectory: String?
    /// Branch: where headquarters listens, `host:port` (`sync.hq_address`).
    public var hqAddress: String?
    /// HQ: the address to listen on (`sync.listen_address`).
    public var listenAddress: String = "0.0.0.0:\(defaultPort)"
    /// TLS files (`tls.ca_file`, `tls.certificate_file`, `tls.key_file`, `tls.revoked_file`);
    /// defaults depend on the role and the data directory (see ``resolvedTLS(role:site:dataDirectory:)``).
    public var caFile: String?
    public var certificateFile: String?
    public var keyFile: String?
    public var revokedFile: String?
    public var limits = SyncLimits()
    /// `log.level`: trace, debug, info, notice, warning, error, critical.
    public var logLevel: Logger.Level = .info

    public init() {}

    /// Reads `path`. A missing file is an error only when `required` (given explicitly).
    public static func load(path: String, required: Bool) throws -> DaemonConfiguration {
        var config = DaemonConfiguration()
        guard FileManager.default.fileExists(atPath: path) else {
            if required { throw ConfigurationError(file: path, line: nil, key: nil, "the file does not exist") }
            return config
        }
        guard let handle = FileHandle(forReadingAtPath: path), let data = try? handle.readToEnd() ?? Data(),
            let text = String(data: data, encoding: .utf8)
        else {
            throw ConfigurationError(file: path, line: nil, key: nil, "the file cannot be read as UTF-8 text")
        }
        let document: TOMLDocument
        do {
            document = try TOMLDocument(parsing: text)
        } catch {
            throw ConfigurationError(file: path, line: error.line, key: nil, error.message)
        }
        for (table, line) in document.tables where !Self.tables.contains(table) {
            throw ConfigurationError(file: path, line: line, key: table, "unknown table [\(table)]; known: \(Self.tables.sorted().joined(separator: ", "))")
        }
        for (key, entry) in document.entries.sorted(by: { $0.value.line < $1.value.line }) {
            try config.set(key, entry.value, file: path, line: entry.line)
        }
        return config
    }

    static let tables: Set<String> = ["sync", "tls", "log"]

    private mutating func set(_ key: String, _ value: TOMLDocument.Value, file: String, line: Int) throws {
        func fail(_ message: String) -> ConfigurationError { ConfigurationError(file: file, line: line, key: key, message) }
        func string() throws -> String {
            guard case .string(let s) = value else { throw fail("must be a string in quotes, found \(value.typeName)") }
            guard !s.isEmpty else { throw fail("must not be empty") }
            return s
        }
        func integer(_ range: ClosedRange<Int64>) throws -> Int64 {
            guard case .integer(let n) = value else { throw fail("must be a whole number, found \(value.typeName)") }
            guard range.contains(n) else { throw fail("must be between \(range.lowerBound) and \(range.upperBound), found \(n)") }
            return n
        }
        func address() throws -> String {
            let s = try string()
            do { _ = try HostPort(parsing: s) } catch { throw fail("\(error)") }
            return s
        }
        switch key {
        case "data_dir": dataDirectory = try string()
        case "sync.hq_address": hqAddress = try address()
        case "sync.listen_address": listenAddress = try address()
        case "sync.poll_interval_ms": limits.pollIntervalMilliseconds = Int(try integer(10...60_000))
        case "sync.retry_initial_ms": limits.retryInitialMilliseconds = Int(try integer(10...600_000))
        case "sync.retry_max_ms": limits.retryMaximumMilliseconds = Int(try integer(100...3_600_000))
        case "sync.batch_max_bytes": limits.batchMaximumBytes = Int(try integer(4_096...64 << 20))
        case "sync.batch_max_changes": limits.batchMaximumChanges = Int(try integer(1...1_000_000))
        case "sync.max_clock_drift_ms": limits.maximumClockDriftMilliseconds = UInt64(try integer(1_000...86_400_000))
        case "tls.ca_file": caFile = try string()
        case "tls.certificate_file": certificateFile = try string()
        case "tls.key_file": keyFile = try string()
        case "tls.revoked_file": revokedFile = try string()
        case "log.level":
            let word = try string()
            guard let level = Logger.Level(rawValue: word) else {
                throw fail("must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            logLevel = level
        default:
            throw fail("unknown key; see deploy/outpost.toml for every key")
        }
        if key == "sync.retry_max_ms" || key == "sync.retry_initial_ms", limits.retryMaximumMilliseconds < limits.retryInitialMilliseconds {
            throw fail("retry_max_ms must not be below retry_initial_ms")
        }
    }

    /// TLS file paths in force for a site.
    ///
    /// Defaults: at headquarters the PKI directory `DATA/pki` (`ca.pem`, `hq.pem`,
    /// `hq-key.pem`, `revoked.tsv`); at a branch `DATA/tls` (`ca.pem`, `CODE.pem`, `CODE-key.pem`).
    public func resolvedTLS(role: Role, site: SiteID, dataDirectory: String) -> TLSFiles {
        switch role {
        case .hq:
            let pki = (dataDirectory as NSString).appendingPathComponent("pki")
            return TLSFiles(
                ca: caFile ?? (pki as NSString).appendingPathComponent(CertificateAuthority.caFile),
                certificate: certificateFile ?? (pki as NSString).appendingPathComponent(CertificateAuthority.serverFile),
                key: keyFile ?? (pki as NSString).appendingPathComponent(CertificateAuthority.serverKeyFile),
                revoked: revokedFile ?? (pki as NSString).appendingPathComponent(CertificateAuthority.revokedFile))
        case .branch:
            let tls = (dataDirectory as NSString).appendingPathComponent("tls")
            return TLSFiles(
                ca: caFile ?? (tls as NSString).appendingPathComponent("ca.pem"),
                certificate: certificateFile ?? (tls as NSString).appendingPathComponent("\(site.code).pem"),
                key: keyFile ?? (tls as NSString).appendingPathComponent("\(site.code)-key.pem"),
                revoked: revokedFile)
        }
    }
}

/// A configuration error with the file, line and key it concerns.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var line: Int?
    public var key: String?
    public var message: String

    public init(file: String, line: Int?, key: String?, _ message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        var place = file
        if let line { place += ":\(line)" }
        if let key { return "\(place): \(key): \(message)" }
        return "\(place): \(message)"
    }
}
