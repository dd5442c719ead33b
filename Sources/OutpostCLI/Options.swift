import ArgumentParser
import CustomerArchive
import Foundation
import Replication

/// `--data-dir`, taken by every command.
struct DataDirOptions: ParsableArguments {
    static let defaultDirectory = "/var/lib/outpost"

    @Option(
        name: .customLong("data-dir"),
        help: ArgumentHelp(
            "The site's data directory, holding \(Archive.fileName). (default: $OUTPOST_DATA_DIR, else \(defaultDirectory))",
            valueName: "dir"))
    var dataDir: String?

    /// The directory in force: the option, else `$OUTPOST_DATA_DIR`, else the default.
    var directory: String {
        if let dataDir, !dataDir.isEmpty { return dataDir }
        if let env = ProcessInfo.processInfo.environment["OUTPOST_DATA_DIR"], !env.isEmpty { return env }
        return Self.defaultDirectory
    }

    var archivePath: String {
        (directory as NSString).appendingPathComponent(Archive.fileName)
    }

    func openArchive() throws -> Archive {
        try Archive.open(at: archivePath)
    }
}

/// `--json` for commands that print records.
struct JSONOption: ParsableArguments {
    @Flag(help: "Print JSON (pretty, keys sorted) instead of aligned text.")
    var json = false
}

/// Parsing of words and amounts in `run()`, so that a bad value is one `error:` line.
enum Parse {
    /// A yuan amount such as `123.45` in fen.
    static func amount(_ text: String, option: String, allowNegative: Bool = false) throws -> Int64 {
        do {
            return try Money.parse(text, allowNegative: allowNegative)
        } catch let e as ArchiveError {
            throw CLIError("\(option): \(e.message)")
        }
    }

    /// One of a fixed set of words (case-insensitive).
    static func choice<T>(_ text: String, option: String, _ cases: [(String, T)]) throws -> T {
        let word = text.trimmingCharacters(in: .whitespaces).lowercased()
        if let hit = cases.first(where: { $0.0 == word }) { return hit.1 }
        throw CLIError("\(option): '\(text.prefix(24))' is not one of \(cases.map(\.0).joined(separator: ", "))")
    }

    static func category(_ text: String) throws -> ComplaintCategory {
        try choice(text, option: "--category", ComplaintCategory.allCases.map { ($0.rawValue, $0) })
    }

    static func contactKind(_ text: String) throws -> ContactKind {
        try choice(text, option: "--kind", ContactKind.allCases.map { ($0.rawValue, $0) })
    }

    static func stage(_ text: String, option: String) throws -> ComplaintStage {
        try choice(text, option: option, ComplaintStage.allCases.map { ($0.name, $0) })
    }

    static func role(_ text: String) throws -> Role {
        try choice(text, option: "--role", Role.allCases.map { ($0.rawValue, $0) })
    }

    static func severity(_ text: String) throws -> String {
        try choice(text, option: "--severity", ["low", "normal", "high", "critical"].map { ($0, $0) })
    }

    /// A site code; lower case is taken as upper case (`sh01` is `SH01`).
    static func site(_ text: String, option: String) throws -> SiteID {
        do {
            return try SiteID(String(text.trimmingCharacters(in: .whitespaces).map { $0.isASCII ? Character($0.uppercased()) : $0 }))
        } catch {
            throw CLIError("\(option): \(error.message)")
        }
    }

    /// A positive identifier such as a conflict or quarantine id.
    static func id(_ text: String, what: String) throws -> Int64 {
        guard let n = Int64(text.trimmingCharacters(in: .whitespaces)), n > 0 else {
            throw CLIError("'\(text.prefix(24))' is not a \(what) id: give the number from the list")
        }
        return n
    }
}
