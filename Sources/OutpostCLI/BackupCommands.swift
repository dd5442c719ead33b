import ArgumentParser
import CustomerArchive
import Foundation
import SyncService

/// `outpost backup FILE`: an online copy of the archive.
struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy the archive to a file while the site keeps working.",
        discussion: """
            Takes a consistent copy of the archive while 'outpost serve' and other commands go \
            on writing (SQLite's online backup inside one read transaction), checks the copy \
            with SQLite's quick_check, and renames it into place only when it is complete. The \
            file is written with mode 0600: it holds customer data. Certificates and keys are \
            not in it (headquarters can issue new ones with 'outpost pki issue').

            A backup taken before a personal-data erasure still holds the erased data: keep \
            backups only as long as the company's retention rules allow, and protect them like \
            the archive itself.

            Restore with 'outpost restore FILE' (never by copying the file back: see its help).

            Example (a nightly timer):
              outpost backup /var/backups/outpost/archive-$(date +%F).sqlite
            """)

    @OptionGroup var storage: DataDirOptions

    @Argument(help: ArgumentHelp("The file to write.", valueName: "file"))
    var file: String

    @Flag(help: "Replace the file if it exists.")
    var replace = false

    func run() throws {
        let archive = try storage.openArchive()
        let meter = ProgressMeter(label: "backup")
        let summary: Archive.BackupSummary
        do {
            summary = try archive.backup(to: file, replace: replace) { done, total in
                meter.show(ProgressMeter.Reading(fraction: total == 0 ? 1 : Double(done) / Double(total), counts: "\(done)/\(total) pages"))
            }
        } catch {
            meter.finish()
            throw error
        }
        meter.finish()
        Output.fields([
            ("backup", summary.path),
            ("site", "\(archive.site) (\(archive.role.rawValue))"),
            ("size", "\(summary.bytes) bytes"),
            ("change log", "through \(summary.lastSequence)"),
            ("checked", "quick_check ok"),
        ])
    }
}

/// `outpost restore FILE`: puts a backup in place with a new epoch of change numbers.
struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Put a backup in place of the archive, safely for replication.",
        discussion: """
            A backup is older than what headquarters already holds from this site. Copying it \
            back by hand would make the site hand out change numbers headquarters has already \
            seen (the daemon refuses to sync such an archive). 'outpost restore' instead:

              1. checks the backup (quick_check) and that it belongs to this site;
              2. moves the current archive aside (archive.sqlite.replaced-TIME: nothing is \
            deleted) and puts the backup in its place;
              3. starts a new epoch of change numbers, above any the site used before;
              4. at a branch, marks the archive recovering: on its next sync it fetches back \
            from headquarters everything this site wrote after the backup. Until then new \
            customers, complaints and claims wait for their numbers; other writes work.

            Stop the daemon first (systemctl stop outpost-branch), restore, start it again.
            What the site wrote after the backup and never sent to headquarters cannot come \
            back: back up often. At headquarters, branches send again what headquarters lost, \
            but changes made at headquarters itself after the backup are not fetched back from \
            branches.

            Example:
              systemctl stop outpost-branch
              outpost restore /var/backups/outpost/archive-2026-11-22.sqlite
              systemctl start outpost-branch
            """)

    @OptionGroup var storage: DataDirOptions

    @Argument(help: ArgumentHelp("The backup to restore (made by 'outpost backup').", valueName: "file"))
    var file: String

    func run() throws {
        let fm = FileManager.default
        let directory = storage.directory
        let target = storage.archivePath
        if let state = SyncState.load(fromDataDirectory: directory), state.pid != getpid(), state.isDaemonRunning,
            let command = try? String(contentsOfFile: "/proc/\(state.pid)/cmdline", encoding: .utf8), command.contains("serve")
        {
            throw CLIError("'outpost serve' is running for this data directory (pid \(state.pid)); stop it first (systemctl stop outpost-branch)")
        }
        let facts = try Archive.inspectBackup(at: file)
        if fm.fileExists(atPath: target), let current = try? Archive.inspectBackup(at: target), current.site != facts.site {
            throw CLIError(
                "the backup belongs to site \(facts.site), but this data directory holds site \(current.site); restore it into that site's directory")
        }
        guard fm.fileExists(atPath: directory) || (try? fm.createDirectory(atPath: directory, withIntermediateDirectories: true)) != nil else {
            throw CLIError("cannot create the data directory \(directory)")
        }
        // The current archive (maybe damaged) is kept beside, never deleted.
        var keptAs: String?
        if fm.fileExists(atPath: target) {
            let stamp = Self.stamp()
            let aside = target + ".replaced-" + stamp
            for suffix in ["", "-wal", "-shm"] where fm.fileExists(atPath: target + suffix) {
                try fm.moveItem(atPath: target + suffix, toPath: aside + suffix)
            }
            keptAs = aside
        }
        let partial = target + ".restoring"
        try? fm.removeItem(atPath: partial)
        try fm.copyItem(atPath: file, toPath: partial)
        chmod(partial, 0o600)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: partial))
        try handle.synchronize()
        try handle.close()
        try fm.moveItem(atPath: partial, toPath: target)
        let archive = try Archive.open(at: target)
        let epoch = try archive.beginEpochAfterRestore()
        Output.fields([
            ("restored", "\(facts.site) (\(facts.role.rawValue)) from \(file)"),
            ("backup taken", facts.takenAtMilliseconds.map { Output.time(milliseconds: Int64($0)) } ?? "unknown (not made by 'outpost backup')"),
            ("previous archive", keptAs.map { "kept as \($0)" } ?? "none"),
            ("change numbers", "epoch \(epoch), from \(UInt64(epoch) << Archive.epochShift)"),
            (
                "next",
                facts.role == .branch
                    ? "start the daemon: it fetches back from headquarters what this site wrote after the backup"
                    : "start the daemon: branches send again what headquarters lost; headquarters' own changes after the backup are not recovered"
            ),
        ])
    }

    static func stamp() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.string(from: Date())
    }
}
