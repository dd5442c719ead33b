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
    public static let defaultMetricsPort = 7444

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
    /// `metrics.listen_address` (`/metrics`, `/healthz`, `/readyz`); nil when
    /// `metrics.enabled = false`.
    public var metricsAddress: String? { metricsEnabled ? metricsListen : nil }
    public var metricsEnabled = true
    public var metricsListen = "127.0.0.1:\(defaultMetricsPort)"
    /// Where each key's value came from (`file:line` or `$VARIABLE`), for `config check`.
    public private(set) var sources: [String: String] = [:]

    public init() {}

    /// Reads `path`, then the environment's overrides. A missing file is an error only when
    /// `required` (given explicitly). Throws the first problem; ``check(path:required:environment:)``
    /// lists them all.
    public static func load(
        path: String, required: Bool, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> DaemonConfiguration {
        let (config, problems) = check(path: path, required: required, environment: environment)
        if let first = problems.first { throw first }
        return config
    }

    /// Reads `path` and the environment, collecting every problem (each with its file, line
    /// and key) instead of stopping at the first.
    ///
    /// Environment overrides: each key as `OUTPOST_` + the key in capitals with `_` for `.`
    /// (`OUTPOST_SYNC_HQ_ADDRESS`, `OUTPOST_METRICS_ENABLED`); the value is written as in the
    /// file, quotes optional for strings. They win over the file; flags win over both.
    public static func check(
        path: String, required: Bool, environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> (DaemonConfiguration, [ConfigurationError]) {
        var config = DaemonConfiguration()
        var problems: [ConfigurationError] = []
        if !FileManager.default.fileExists(atPath: path) {
            if required { problems.append(ConfigurationError(file: path, line: nil, key: nil, "the file does not exist")) }
        } else if let handle = FileHandle(forReadingAtPath: path), let data = try? handle.readToEnd() ?? Data(),
            let text = String(data: data, encoding: .utf8)
        {
            do {
                let document = try TOMLDocument(parsing: text)
                for (table, line) in document.tables.sorted(by: { $0.value < $1.value }) where !Self.tables.contains(table) {
                    problems.append(
                        ConfigurationError(
                            file: path, line: line, key: table, "unknown table [\(table)]; known: \(Self.tables.sorted().joined(separator: ", "))"))
                }
                for (key, entry) in document.entries.sorted(by: { $0.value.line < $1.value.line }) {
                    do { try config.set(key, entry.value, source: "\(path):\(entry.line)", file: path, line: entry.line) } catch {
                        problems.append(error)
                    }
                }
            } catch {
                problems.append(ConfigurationError(file: path, line: error.line, key: nil, error.message))
            }
        } else {
            problems.append(ConfigurationError(file: path, line: nil, key: nil, "the file cannot be read as UTF-8 text (check its permissions)"))
        }
        for key in Self.keys {
            let variable = environmentName(of: key)
            guard let raw = environment[variable] else { continue }
            let value: TOMLDocument.Value
            if let parsed = try? TOMLDocument(parsing: "v = \(raw)").entries["v"]?.value {
                value = parsed
            } else {
                value = .string(raw)
            }
            do { try config.set(key, value, source: "$\(variable)", file: "$\(variable)", line: nil) } catch { problems.append(error) }
        }
        return (config, problems)
    }

    /// Every key the file may hold, in the order `deploy/outpost.toml` documents them.
    public static let keys = [
        "data_dir", "sync.hq_address", "sync.listen_address", "sync.poll_interval_ms", "sync.retry_initial_ms", "sync.retry_max_ms",
        "sync.batch_max_bytes", "sync.batch_max_changes", "sync.max_clock_drift_ms", "sync.log_retention_days", "sync.handshake_timeout_ms",
        "sync.first_call_timeout_ms",
        "sync.idle_timeout_ms", "sync.max_connections", "sync.max_connections_per_site", "sync.max_streams_per_connection", "sync.max_fetches_per_hour",
        "tls.ca_file",
        "tls.certificate_file", "tls.key_file", "tls.revoked_file", "metrics.enabled", "metrics.listen_address", "log.level",
    ]

    /// Records that a flag set `key` (for `config check`).
    public mutating func note(source: String, for key: String) { sources[key] = source }

    /// A key's value in force, as text (`config check`).
    public func value(of key: String) -> String {
        switch key {
        case "data_dir": dataDirectory ?? "(--data-dir / $OUTPOST_DATA_DIR / /var/lib/outpost)"
        case "sync.hq_address": hqAddress ?? "(not set)"
        case "sync.listen_address": listenAddress
        case "sync.poll_interval_ms": "\(limits.pollIntervalMilliseconds)"
        case "sync.retry_initial_ms": "\(limits.retryInitialMilliseconds)"
        case "sync.retry_max_ms": "\(limits.retryMaximumMilliseconds)"
        case "sync.batch_max_bytes": "\(limits.batchMaximumBytes)"
        case "sync.batch_max_changes": "\(limits.batchMaximumChanges)"
        case "sync.max_clock_drift_ms": "\(limits.maximumClockDriftMilliseconds)"
        case "sync.log_retention_days": "\(limits.logRetentionDays)"
        case "sync.handshake_timeout_ms": "\(limits.handshakeTimeoutMilliseconds)"
        case "sync.first_call_timeout_ms": "\(limits.firstCallTimeoutMilliseconds)"
        case "sync.idle_timeout_ms": "\(limits.idleTimeoutMilliseconds)"
        case "sync.max_connections": "\(limits.maximumConnections)"
        case "sync.max_connections_per_site": "\(limits.maximumConnectionsPerSite)"
        case "sync.max_streams_per_connection": "\(limits.maximumStreamsPerConnection)"
        case "sync.max_fetches_per_hour": "\(limits.maximumFetchesPerHour)"
        case "tls.ca_file": caFile ?? "(default for the role)"
        case "tls.certificate_file": certificateFile ?? "(default for the role)"
        case "tls.key_file": keyFile ?? "(default for the role)"
        case "tls.revoked_file": revokedFile ?? "(default for the role)"
        case "metrics.enabled": "\(metricsEnabled)"
        case "metrics.listen_address": metricsListen
        case "log.level": logLevel.rawValue
        default: "?"
        }
    }

    /// `sync.hq_address` → `OUTPOST_SYNC_HQ_ADDRESS`.
    public static func environmentName(of key: String) -> String {
        "OUTPOST_" + key.uppercased().replacingOccurrences(of: ".", with: "_")
    }

    static let tables: Set<String> = ["sync", "tls", "metrics", "log"]

    private mutating func set(_ key: String, _ value: TOMLDocument.Value, source: String, file: String, line: Int?) throws(ConfigurationError) {
        func fail(_ message: String) -> ConfigurationError { ConfigurationError(file: file, line: line, key: key, message) }
        func boolean() throws(ConfigurationError) -> Bool {
            guard case .boolean(let b) = value else { throw fail("must be true or false, found \(value.typeName)") }
            return b
        }
        func string() throws(ConfigurationError) -> String {
            guard case .string(let s) = value else { throw fail("must be a string in quotes, found \(value.typeName)") }
            guard !s.isEmpty else { throw fail("must not be empty") }
            return s
        }
        func integer(_ range: ClosedRange<Int64>) throws(ConfigurationError) -> Int64 {
            guard case .integer(let n) = value else { throw fail("must be a whole number, found \(value.typeName)") }
            guard range.contains(n) else { throw fail("must be between \(range.lowerBound) and \(range.upperBound), found \(n)") }
            return n
        }
        func address(listening: Bool = false) throws(ConfigurationError) -> String {
            let s = try string()
            do { _ = try HostPort(parsing: s, listening: listening) } catch { throw fail("\(error)") }
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
        case "sync.log_retention_days": limits.logRetentionDays = Int(try integer(0...3_650))
        case "sync.handshake_timeout_ms": limits.handshakeTimeoutMilliseconds = Int(try integer(100...600_000))
        case "sync.first_call_timeout_ms": limits.firstCallTimeoutMilliseconds = Int(try integer(100...600_000))
        case "sync.idle_timeout_ms": limits.idleTimeoutMilliseconds = Int(try integer(1_000...86_400_000))
        case "sync.max_connections": limits.maximumConnections = Int(try integer(1...1_000_000))
        case "sync.max_connections_per_site": limits.maximumConnectionsPerSite = Int(try integer(1...10_000))
        case "sync.max_streams_per_connection": limits.maximumStreamsPerConnection = Int(try integer(3...10_000))
        case "sync.max_fetches_per_hour": limits.maximumFetchesPerHour = Int(try integer(1...1_000_000))
        case "tls.ca_file": caFile = try string()
        case "tls.certificate_file": certificateFile = try string()
        case "tls.key_file": keyFile = try string()
        case "tls.revoked_file": revokedFile = try string()
        case "metrics.enabled":
            metricsEnabled = try boolean()
        case "metrics.listen_address":
            metricsListen = try address(listening: true)
        case "log.level":
            let word = try string()
            guard let level = Logger.Level(rawValue: word) else {
                throw fail("must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            logLevel = level
        default:
            throw fail("unknown key; see deploy/outpost.toml for every key")
        }
        sources[key] = source
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
