import Foundation
import Logging
import Synchronization

/// Log lines on stderr, one per event, readable by people and by journald:
///
///     2026-11-23T06:20:00.123Z info  site=SH01 [SyncService] connected to headquarters hq=hq.example.net:7443
///
/// Under systemd (`$JOURNAL_STREAM` set) the time is left to the journal and each line starts
/// with its syslog priority (`<6>` for info), which journald turns into the entry's priority,
/// so `journalctl -p warning -u outpost-branch` works. The level is read on every event, so a
/// reload or `--log-level` takes effect for loggers made earlier too. Metadata carries ids and
/// counts only: the code never logs customer fields.
struct OutpostLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?
    let label: String

    var logLevel: Logger.Level {
        get { LogLevel.value }
        set {}
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    static let journal = ProcessInfo.processInfo.environment["JOURNAL_STREAM"].map { !$0.isEmpty } ?? false

    func log(event: LogEvent) {
        var line = ""
        if Self.journal {
            line += "<\(Self.priority(event.level))>"
        } else {
            line += Self.timestamp() + " "
        }
        line += event.level.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
        if let site = LogContext.site { line += "site=\(site) " }
        line += "[\(event.source)] \(Self.escaped("\(event.message)"))"
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let extra = event.metadata { all.merge(extra) { $1 } }
        for (key, value) in all.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(Self.quoted("\(value)"))"
        }
        line += "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// syslog priorities (sd-daemon(3)): journald reads them from the line's start.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// A value with spaces or quotes is quoted so each line stays one `key=value` list; a
    /// newline never splits an entry, and no control character reaches the journal or a
    /// terminal (a peer chooses some values: the name in an unverified certificate, its
    /// software string).
    static func quoted(_ value: String) -> String {
        let flat = escaped(value)
        guard flat.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) || flat.isEmpty else { return flat }
        return "\"" + flat.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    /// Text on one line with control characters escaped, as the CLI prints values
    /// (``Output/oneLine(_:)``).
    static func escaped(_ text: String) -> String { Output.oneLine(text) }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(now.tv_nsec / 1_000_000))
    }
}

/// The site every log line names, once the archive is open.
enum LogContext {
    private static let current = Mutex<String?>(nil)
    static var site: String? { current.withLock { $0 } }
    static func set(site: String) { current.withLock { $0 = site } }
}
