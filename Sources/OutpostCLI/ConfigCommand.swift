import ArgumentParser
import CustomerArchive
import Foundation
import OutpostDaemon
import SyncService

/// `outpost config`: the daemon's configuration.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check the daemon's configuration before (re)starting it.",
        discussion: """
            Example:
              outpost config check --config /etc/outpost/outpost.toml
            """,
        subcommands: [ConfigCheck.self])
}

struct ConfigCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check the configuration file, the environment and the files they name; print what is in force.",
        discussion: """
            Reads the configuration as 'outpost serve' would: the file (--config, else \
            $OUTPOST_CONFIG, else /etc/outpost/outpost.toml when it exists), then the \
            environment's overrides (OUTPOST_ and the key in capitals, '.' as '_': \
            OUTPOST_SYNC_HQ_ADDRESS), then the flags. Every problem is listed, each with the \
            file, the line and the key, not only the first. Then it checks what the keys point \
            to: the archive in the data directory, this site's certificate, key and CA, and \
            (at a branch) that headquarters' address is set. Exit status 1 when anything is \
            wrong, so it can guard a restart:

            Examples:
              outpost config check
              outpost config check --config /etc/outpost/outpost.toml && systemctl reload outpost-branch
            """)

    @OptionGroup var options: DaemonOptions

    func run() throws {
        let (explicit, path) = options.configurationFile
        let (configuration, fileProblems) = DaemonConfiguration.check(path: path, required: explicit)
        var problems = fileProblems.map(\.description)
        var effective = configuration
        do {
            effective = try options.applyFlags(to: configuration)
        } catch {
            problems.append(OutpostCommand.message(of: error))
        }
        let directory = options.dataDirectory(configuration: effective)
        var facts: [(String, String)] = [("file", FileManager.default.fileExists(atPath: path) ? path : "\(path) (absent: defaults)")]
        let archivePath = (directory as NSString).appendingPathComponent(Archive.fileName)
        var shown: [String: String] = ["data_dir": directory]
        if options.storage.dataDir != nil { effective.note(source: "--data-dir", for: "data_dir") }
        if let archive = try? Archive.open(at: archivePath) {
            facts.append(("site", "\(archive.site) (\(archive.role.rawValue))"))
            if archive.role == .branch, effective.hqAddress == nil {
                problems.append("sync.hq_address: a branch needs headquarters' address (host:port); set it in the file or $OUTPOST_SYNC_HQ_ADDRESS")
            }
            let files = effective.resolvedTLS(role: archive.role, site: archive.site, dataDirectory: directory)
            shown["tls.ca_file"] = files.ca
            shown["tls.certificate_file"] = files.certificate
            shown["tls.key_file"] = files.key
            shown["tls.revoked_file"] = files.revoked ?? "(none)"
            for (key, file) in [("tls.ca_file", files.ca), ("tls.certificate_file", files.certificate), ("tls.key_file", files.key)] {
                if !FileManager.default.isReadableFile(atPath: file) {
                    problems.append("\(key): \(file) cannot be read (missing, or not readable by this user)")
                }
            }
            if problems.isEmpty {
                do {
                    let expiry = try TLSCheck.certificateExpiry(files)
                    let days = Int(expiry.timeIntervalSinceNow / 86_400)
                    if days < 0 { problems.append("tls.certificate_file: \(files.certificate) expired \(-days) day(s) ago") }
                    facts.append(("certificate", "valid for \(days) more day(s)"))
                } catch {
                    problems.append("tls: \(OutpostCommand.message(of: error))")
                }
            }
        } else if FileManager.default.fileExists(atPath: archivePath) {
            problems.append("data_dir: \(archivePath) cannot be opened (permissions, or not an archive); see 'outpost doctor'")
        } else {
            problems.append("data_dir: no archive in \(directory); run 'outpost init' there, or set data_dir / --data-dir")
        }
        for key in DaemonConfiguration.keys {
            facts.append((key, "\(shown[key] ?? effective.value(of: key))  [\(effective.sources[key] ?? "default")]"))
        }
        if problems.isEmpty {
            Output.fields(facts)
            Output.write("configuration OK\n")
        } else {
            for p in problems { Output.error("error: " + Output.oneLine(p)) }
            throw ExitCode.failure
        }
    }
}
