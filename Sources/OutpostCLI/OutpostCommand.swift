import ArgumentParser
import CustomerArchive
import Foundation
import Logging
import OutpostDaemon
import Replication

/// The `outpost` command: a site's customer archive and its offline replication.
public struct OutpostCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "outpost",
        abstract: "Keep a site's customer archive in sync with headquarters and every other site, online or off.",
        discussion: """
            Each site (a branch or headquarters) keeps its own archive in its data directory \
            (--data-dir, default $OUTPOST_DATA_DIR, else /var/lib/outpost). Sites exchange \
            change sets over mutual TLS ('outpost serve' keeps a branch in sync with \
            headquarters) or as files; applying the same set twice, or sets in any order, gives \
            the same result.

            Example, a new branch:
              outpost init --site SH01 --role branch
              outpost customer add --name "上海物流有限公司" --phone "021 6000 1234"
              outpost serve --hq hq.example.net:7443    (certificates: 'outpost pki')
              outpost changes export --for HQ --out /media/usb/SH01.opcs   (no line at all)
            """,
        version: "outpost 0.1.0",
        subcommands: [
            InitCommand.self,
            StatusCommand.self,
            ServeCommand.self,
            SyncCommand.self,
            ConfigCommand.self,
            BackupCommand.self,
            RestoreCommand.self,
            DoctorCommand.self,
            PKICommand.self,
            CustomerCommand.self,
            ScopeCommand.self,
            ContactCommand.self,
            ComplaintCommand.self,
            ClaimCommand.self,
            ChangesCommand.self,
            ImportCommand.self,
            ExportCommand.self,
            ReportCommand.self,
            DuplicatesCommand.self,
            ConflictsCommand.self,
            SettingsCommand.self,
            DumpCommand.self,
        ])

    public init() {}

    /// Parses the arguments and runs the command. Usage errors are ArgumentParser's (exit 64);
    /// every error while running is one `error: …` line on stderr and exit code 1.
    public static func start() async {
        // Past a file-size limit (RLIMIT_FSIZE) a write should fail and be reported like a
        // full disk, not kill the process.
        signal(SIGXFSZ, SIG_IGN)
        // Everything this program creates (archives, backups, exports, certificates) holds
        // customer data or keys: readable by its owner only.
        umask(0o077)
        bootstrapLogging()
        var command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exit(withError: error)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            fail(error)
        }
    }

    /// Prints one line for an error raised while running and exits.
    static func fail(_ error: any Error) -> Never {
        switch error {
        case is ConfigurationError:
            // EX_CONFIG: the units do not restart on it (RestartPreventExitStatus=78), since
            // restarting cannot fix a configuration.
            Output.error("error: " + message(of: error))
            exit(withError: ExitCode(78))
        case is ArchiveError, is ReplicationError, is CLIError:
            Output.error("error: " + message(of: error))
            exit(withError: ExitCode.failure)
        case _ where String(reflecting: type(of: error)).hasPrefix("ArgumentParser."):
            // --help, --version, exit codes: ArgumentParser's own handling.
            exit(withError: error)
        default:
            Output.error("error: " + message(of: error))
            exit(withError: ExitCode.failure)
        }
    }

    /// The operator message of an error: never a customer field value (the archive's and the
    /// replication core's messages are written that way; causes are left out for that reason).
    static func message(of error: any Error) -> String {
        if let fault = StorageFault(error) {
            switch fault {
            case .diskFull: return "the disk is full: nothing was written; free space in the data directory's file system and retry"
            case .corrupt: return "the archive file is damaged: run 'outpost doctor', then restore a backup with 'outpost restore'"
            case .io: return "the disk reported an input/output error: nothing was written; check the disk (dmesg)"
            }
        }
        let text: String
        switch error {
        case let e as ArchiveError: text = e.message
        case let e as ReplicationError: text = e.message
        case let e as CLIError: text = e.message
        case let e as ValidationError: text = e.message
        case let e as CocoaError: text = e.localizedDescription
        default: text = String(describing: error)
        }
        return Output.oneLine(text)
    }

    /// Logs go to stderr so they never mix with the output (`OutpostLogHandler`);
    /// `OUTPOST_LOG_LEVEL` sets the level (default `warning`: refused and quarantined changes
    /// are reported; `serve` logs at `info` unless told otherwise).
    static func bootstrapLogging() {
        if let level = ProcessInfo.processInfo.environment["OUTPOST_LOG_LEVEL"].flatMap({ Logger.Level(rawValue: $0.lowercased()) }) {
            LogLevel.set(level)
        }
        LoggingSystem.bootstrap { label in OutpostLogHandler(label: label) }
    }
}
