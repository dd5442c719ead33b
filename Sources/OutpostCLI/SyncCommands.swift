import ArgumentParser
import CustomerArchive
import Foundation
import Logging
import OutpostDaemon
import Replication
import SyncService
import Synchronization

/// Options shared by `serve` and `sync`: the configuration file and flags that override it.
/// `--config`: the configuration file, for every command that reads it.
struct ConfigFileOption: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help: ArgumentHelp(
            "The configuration file. (default: $OUTPOST_CONFIG, else \(DaemonConfiguration.defaultPath) when it exists)", valueName: "file"))
    var config: String?

    /// The configuration file: `--config`, else `$OUTPOST_CONFIG` (both must exist), else
    /// the default path (used when it exists).
    var file: (explicit: Bool, path: String) {
        let explicit = config ?? ProcessInfo.processInfo.environment["OUTPOST_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
        return (explicit != nil, explicit ?? DaemonConfiguration.defaultPath)
    }

    /// --data-dir and $OUTPOST_DATA_DIR win over the file's data_dir.
    static func dataDirectory(_ storage: DataDirOptions, configuration: DaemonConfiguration) -> String {
        if storage.dataDir != nil || ProcessInfo.processInfo.environment["OUTPOST_DATA_DIR"].map({ !$0.isEmpty }) == true {
            return storage.directory
        }
        return configuration.dataDirectory ?? storage.directory
    }
}

struct DaemonOptions: ParsableArguments {
    @OptionGroup var storage: DataDirOptions
    @OptionGroup var configFile: ConfigFileOption

    @Option(name: .customLong("hq"), help: ArgumentHelp("Branch: headquarters' address, overrides sync.hq_address.", valueName: "host:port"))
    var hq: String?

    @Option(help: ArgumentHelp("Headquarters: the address to listen on, overrides sync.listen_address.", valueName: "host:port"))
    var listen: String?

    @Option(help: ArgumentHelp("The CA certificate, overrides tls.ca_file.", valueName: "file"))
    var ca: String?

    @Option(help: ArgumentHelp("This site's certificate, overrides tls.certificate_file.", valueName: "file"))
    var cert: String?

    @Option(help: ArgumentHelp("This site's private key, overrides tls.key_file.", valueName: "file"))
    var key: String?

    @Option(
        name: .customLong("log-level"),
        help: ArgumentHelp("trace, debug, info, notice, warning, error or critical; overrides log.level.", valueName: "level"))
    var logLevel: String?

    var configurationFile: (explicit: Bool, path: String) { configFile.file }

    /// The configuration in force: defaults, the file, the environment, then these flags.
    func resolve() throws -> (DaemonConfiguration, dataDirectory: String) {
        let (explicit, path) = configurationFile
        let configuration = try applyFlags(to: try DaemonConfiguration.load(path: path, required: explicit))
        return (configuration, dataDirectory(configuration: configuration))
    }

    func applyFlags(to loaded: DaemonConfiguration) throws -> DaemonConfiguration {
        var configuration = loaded
        if hq != nil { configuration.note(source: "--hq", for: "sync.hq_address") }
        if let hq { configuration.hqAddress = hq }
        if listen != nil { configuration.note(source: "--listen", for: "sync.listen_address") }
        if let listen { configuration.listenAddress = listen }
        if ca != nil { configuration.note(source: "--ca", for: "tls.ca_file") }
        if let ca { configuration.caFile = ca }
        if cert != nil { configuration.note(source: "--cert", for: "tls.certificate_file") }
        if let cert { configuration.certificateFile = cert }
        if key != nil { configuration.note(source: "--key", for: "tls.key_file") }
        if let key { configuration.keyFile = key }
        if let logLevel {
            guard let level = Logger.Level(rawValue: logLevel.lowercased()) else {
                throw CLIError("--log-level: '\(logLevel.prefix(16))' is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            configuration.logLevel = level
            configuration.note(source: "--log-level", for: "log.level")
        }
        return configuration
    }

    /// --data-dir and $OUTPOST_DATA_DIR win over the file's data_dir.
    func dataDirectory(configuration: DaemonConfiguration) -> String {
        ConfigFileOption.dataDirectory(storage, configuration: configuration)
    }
}

/// `outpost serve`: the daemon.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run this site's sync daemon (headquarters or branch, as made by init).",
        discussion: """
            Headquarters listens for branches (sync.listen_address, default 0.0.0.0:7443) and \
            relays every branch's changes to the others. A branch connects to headquarters \
            (sync.hq_address), pushes the changes made here and pulls everyone else's, \
            continuously; while headquarters is unreachable it keeps serving local writes and \
            retries with exponential backoff. Both sides use mutual TLS with certificates from \
            'outpost pki'. SIGTERM or SIGINT finishes the batch in flight and exits.

            Settings come from the configuration file (see deploy/outpost.toml for every key), \
            overridden by the flags below. Logs go to stderr.

            Examples:
              outpost serve                                   (uses /etc/outpost/outpost.toml)
              outpost serve --data-dir /srv/hq --listen 127.0.0.1:7443
              outpost serve --data-dir /srv/sh01 --hq hq.example.net:7443
            """)

    @OptionGroup var options: DaemonOptions

    func run() async throws {
        let (configuration, directory) = try options.resolve()
        LogLevel.set(configuration.logLevel)
        let logger = Logger(label: "outpost")
        let archive = try Archive.open(
            at: (directory as NSString).appendingPathComponent(Archive.fileName), maximumDrift: configuration.limits.maximumClockDriftMilliseconds)
        LogContext.set(site: archive.site.code)
        let daemon = Daemon(archive: archive, configuration: configuration, dataDirectory: directory, logger: logger)
        let options = self.options
        // SIGHUP: the file, the environment and these flags again; the data directory and
        // the archive stay (a different directory needs a restart).
        try await daemon.run(reload: {
            let (next, _) = try options.resolve()
            LogLevel.set(next.logLevel)
            return next
        }) { address in
            logger.notice("ready", metadata: ["role": "\(archive.role.rawValue)", "address": "\(address)"])
        }
    }
}

/// `outpost sync --once`: one full exchange with headquarters.
struct SyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Exchange changes with headquarters once, then exit.",
        discussion: """
            Connects to headquarters, pushes every change made here that headquarters lacks and \
            pulls every change headquarters holds that this branch lacks. Exits 0 only when both \
            directions are caught up; otherwise prints why and exits 1. Progress (changes each \
            way, rate, how far behind) is a bar on a terminal and plain lines otherwise. It can \
            run while 'outpost serve' runs; both commit each batch with its cursor.

            Example:
              outpost sync --once --hq hq.example.net:7443
            """)

    @Flag(help: "One exchange, then exit (the only mode; 'serve' syncs continuously).")
    var once = false

    @OptionGroup var options: DaemonOptions

    func run() async throws {
        guard once else { throw CLIError("'outpost sync' needs --once; to sync continuously run 'outpost serve'") }
        let (configuration, directory) = try options.resolve()
        // A one-shot command speaks through its progress and result; logs only for trouble.
        LogLevel.set(options.logLevel == nil ? .warning : configuration.logLevel)
        let logger = Logger(label: "outpost")
        let archive = try Archive.open(
            at: (directory as NSString).appendingPathComponent(Archive.fileName), maximumDrift: configuration.limits.maximumClockDriftMilliseconds)
        guard archive.role == .branch else { throw CLIError("this site is headquarters; 'sync --once' runs at a branch") }
        guard let address = configuration.hqAddress else {
            throw CLIError("headquarters' address is not set: pass --hq host:port or set sync.hq_address in the configuration")
        }
        let hq = try HostPort(parsing: address, defaultPort: DaemonConfiguration.defaultPort)
        let files = configuration.resolvedTLS(role: .branch, site: archive.site, dataDirectory: directory)
        let watch = try LogWatch(archive: archive, pollInterval: .milliseconds(configuration.limits.pollIntervalMilliseconds))
        let client = BranchClient(
            archive: archive, hq: hq, tls: files, limits: configuration.limits, watch: watch, logger: logger, dataDirectory: directory)
        let meter = ProgressMeter(label: "sync")
        let result: SyncProgress
        do {
            result = try await client.exchange(follow: false) { meter.show($0) }
        } catch {
            meter.finish()
            throw CLIError("sync with \(hq) failed: \(BranchClient.describe(error))")
        }
        meter.finish()
        guard result.pushCaughtUp && result.pullCaughtUp else {
            throw CLIError("sync ended before both directions were caught up (pushed \(result.pushedChanges), pulled \(result.pulledChanges))")
        }
        Output.fields([
            ("pushed", "\(result.pushedChanges) changes"),
            ("pulled", "\(result.pulledChanges) changes"),
            ("state", "caught up both ways with \(archive.headquarters)"),
        ])
    }
}

/// Progress of long work (`sync --once`, `import`) on stderr: a redrawn bar on a terminal, a
/// line every few seconds otherwise.
final class ProgressMeter: @unchecked Sendable {
    /// What to draw: how far (0…1), and the counts to print beside the bar.
    struct Reading {
        var fraction: Double
        var counts: String
    }

    // NSLock guards every stored var below; `show` may be called from any thread.
    private let lock = NSLock()
    private let label: String
    private let started = Date()
    private var lastDraw: Date
    private var last: Reading?
    private var drew = false
    private let terminal = Output.stderrIsTerminal

    init(label: String) {
        self.label = label
        // Plain lines only for work that takes a while: the first after 2 s.
        lastDraw = terminal ? .distantPast : Date()
    }

    /// Seconds since the meter started (for rates).
    var elapsed: Double { max(Date().timeIntervalSince(started), 0.001) }

    func show(_ reading: Reading) {
        lock.lock()
        defer { lock.unlock() }
        last = reading
        let now = Date()
        guard now.timeIntervalSince(lastDraw) >= (terminal ? 0.1 : 2) else { return }
        lastDraw = now
        draw(reading)
    }

    /// Sync progress: pulled of (pulled + behind), both directions' counts and the rate.
    func show(_ p: SyncProgress) {
        if let customers = p.snapshotTotal, p.snapshotSent < customers {
            // A first bootstrap: its own measure is the scope's customers.
            return show(
                Reading(
                    fraction: customers == 0 ? 1 : Double(p.snapshotSent) / Double(customers),
                    counts: "bootstrap \(p.snapshotSent) of \(customers) customers  pushed \(p.pushedChanges)"))
        }
        let total = p.pulledChanges + Int(p.behind)
        let rate = Int(Double(p.pushedChanges + p.pulledChanges) / elapsed)
        show(
            Reading(
                fraction: total == 0 ? 1 : Double(p.pulledChanges) / Double(total),
                counts: "pushed \(p.pushedChanges)  pulled \(p.pulledChanges)  behind \(p.behind)  \(rate) changes/s"))
    }

    private func draw(_ r: Reading) {
        if terminal {
            let width = 24
            let filled = Int(min(1, max(0, r.fraction)) * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            FileHandle.standardError.write(Data("\r[\(bar)] \(Int(r.fraction * 100))%  \(r.counts)\u{1B}[K".utf8))
        } else {
            FileHandle.standardError.write(Data("\(label): \(r.counts)\n".utf8))
        }
        drew = true
    }

    /// Draws the final state on a terminal and ends the bar's line.
    func finish() {
        lock.lock()
        defer { lock.unlock() }
        guard terminal else { return }
        if let last { draw(last) }
        if drew { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

/// The log level of loggers made from now on (the logging system is bootstrapped once, before
/// the command's options are known).
enum LogLevel {
    private static let current = Mutex<Logger.Level>(.warning)

    static var value: Logger.Level { current.withLock { $0 } }

    static func set(_ level: Logger.Level) { current.withLock { $0 = level } }
}
