import ArgumentParser
import CustomerArchive
import Foundation
import Logging
import OutpostDaemon
import SyncService

/// `outpost doctor`: checks a site from the configuration to headquarters, one line each.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check this site's health: configuration, archive, disk, daemon, certificates, headquarters, clock.",
        discussion: """
            Each check prints one line, OK, WARN or FAIL, and what to do when it is not OK:

              config        the configuration file and environment ('outpost config check')
              archive       SQLite integrity_check of the archive (--quick: quick_check)
              disk          free space where the archive lives
              daemon        whether 'outpost serve' runs, and anything that stopped its syncing
              certificate   this site's certificate: matches its key, signed by the CA, not
                            expiring within 30 days
              headquarters  a branch connects and says hello (mutual TLS)
              clock         the offset to headquarters' clock, against sync.max_clock_drift_ms

            Exit status 1 when any check FAILs, so it can gate a deployment or feed monitoring.

            Examples:
              outpost doctor
              outpost doctor --quick --json
            """)

    @OptionGroup var options: DaemonOptions

    @Flag(help: "quick_check instead of the thorough integrity_check (seconds instead of minutes on a large archive).")
    var quick = false

    @OptionGroup var output: JSONOption

    enum Verdict: String { case ok = "OK", warn = "WARN", fail = "FAIL" }

    struct Line {
        var check: String
        var verdict: Verdict
        var text: String
    }

    func run() async throws {
        LogLevel.set(.critical)
        var lines: [Line] = []
        func add(_ check: String, _ verdict: Verdict, _ text: String) { lines.append(Line(check: check, verdict: verdict, text: text)) }

        // Configuration.
        let (explicit, path) = options.configurationFile
        let (loaded, problems) = DaemonConfiguration.check(path: path, required: explicit)
        var configuration = loaded
        do { configuration = try options.applyFlags(to: loaded) } catch { add("config", .fail, OutpostCommand.message(of: error)) }
        if problems.isEmpty {
            add("config", .ok, FileManager.default.fileExists(atPath: path) ? path : "no file at \(path): defaults")
        } else {
            for p in problems { add("config", .fail, p.description + " (see 'outpost config check')") }
        }
        let directory = options.dataDirectory(configuration: configuration)
        let archivePath = (directory as NSString).appendingPathComponent(Archive.fileName)
        let archiveBytes = ((try? FileManager.default.attributesOfItem(atPath: archivePath)[.size]) as? NSNumber)?.int64Value ?? 0

        // Archive.
        var archive: Archive?
        do {
            let opened = try Archive.open(at: archivePath, maximumDrift: configuration.limits.maximumClockDriftMilliseconds)
            archive = opened
            let found = try opened.checkIntegrity(thorough: !quick)
            if found.isEmpty {
                add("archive", .ok, "\(quick ? "quick_check" : "integrity_check"): ok (\(opened.site), \(Self.bytes(archiveBytes)))")
            } else {
                add(
                    "archive", .fail,
                    "\(found.count) problem(s), first: \(found[0].prefix(120)); stop the daemon and restore the latest backup: outpost restore FILE")
            }
            if let since = try opened.recoveringSince() {
                add(
                    "archive", .warn,
                    "restored \(Output.time(milliseconds: Int64(since))); still fetching back from headquarters what this site wrote after the backup (start the daemon)"
                )
            }
        } catch {
            add("archive", .fail, "\(OutpostCommand.message(of: error)); if it is damaged, restore the latest backup: outpost restore FILE")
        }

        // Disk.
        if let free = StorageHealth.freeBytes(directory: FileManager.default.fileExists(atPath: directory) ? directory : "/") {
            if free < 64 << 20 {
                add("disk", .fail, "\(Self.bytes(Int64(free))) free in \(directory): syncing stops below 16 MiB; free space now")
            } else if free < max(1 << 30, UInt64(archiveBytes)) {
                add("disk", .warn, "\(Self.bytes(Int64(free))) free in \(directory): less than 1 GiB or the archive's size; free space soon")
            } else {
                add("disk", .ok, "\(Self.bytes(Int64(free))) free in \(directory)")
            }
        }

        // Daemon.
        if let state = SyncState.load(fromDataDirectory: directory) {
            let running = state.isDaemonRunning
            if let fault = state.storageFault, running {
                add("daemon", .fail, "syncing stopped since \(Output.time(milliseconds: Int64(fault.sinceMilliseconds))): \(fault.detail)")
            } else if running {
                var text = "running (pid \(state.pid))"
                if state.role == "branch" {
                    text += state.connected ? ", connected to headquarters" : ", not connected"
                    if let last = state.lastSuccessMilliseconds { text += ", last caught up \(Output.time(milliseconds: Int64(last)))" }
                }
                // Never caught up counts from the daemon's start: one just started is not stale.
                let since = state.lastSuccessMilliseconds ?? state.startedMilliseconds
                let stale = state.role == "branch" && (since.map { Self.now() > $0 && Self.now() - $0 > 3_600_000 } ?? true)
                if stale, let error = state.lastError {
                    add("daemon", .warn, text + "; not caught up for over an hour: \(error.prefix(160))")
                } else {
                    add("daemon", stale ? .warn : .ok, text + (stale ? "; not caught up for over an hour" : ""))
                }
            } else {
                add("daemon", .warn, "not running; start it: systemctl start outpost-\(state.role == "hq" ? "hq" : "branch")")
            }
        } else {
            add("daemon", .warn, "has never run here; start it: systemctl enable --now outpost-\(archive?.role == .hq ? "hq" : "branch")")
        }

        guard let archive else { return finish(lines) }

        // Certificate.
        let files = configuration.resolvedTLS(role: archive.role, site: archive.site, dataDirectory: directory)
        do {
            let expiry = try TLSCheck.certificateExpiry(files)
            let days = Int(floor(expiry.timeIntervalSinceNow / 86_400))
            let renew =
                archive.role == .hq
                ? "renew headquarters' certificate"
                : "at headquarters: outpost pki issue --site \(archive.site) --install-to DIR; copy DIR/* to \((files.certificate as NSString).deletingLastPathComponent); systemctl reload outpost-branch"
            if expiry < Date() {
                add("certificate", .fail, "\(files.certificate) expired \(-days) day(s) ago; \(renew)")
            } else if days < 30 {
                add("certificate", .warn, "\(files.certificate) expires in \(days) day(s); \(renew)")
            } else {
                add("certificate", .ok, "\(files.certificate) valid for \(days) more day(s)")
            }
        } catch {
            add("certificate", .fail, OutpostCommand.message(of: error))
        }

        // Headquarters and the clock (a branch).
        if archive.role == .branch {
            if let address = configuration.hqAddress, let hq = try? HostPort(parsing: address, defaultPort: DaemonConfiguration.defaultPort) {
                let watch = try LogWatch(archive: archive, pollInterval: .seconds(1))
                let client = BranchClient(
                    archive: archive, hq: hq, tls: files, limits: configuration.limits, watch: watch, logger: Logger(label: "outpost"),
                    dataDirectory: nil)
                do {
                    let probe = try await client.probe()
                    let pending = try archive.countOwnChanges(after: probe.hqReceivedThrough)
                    let behind = pending > 0 ? "; \(pending) change(s) made here are not at headquarters yet" : ""
                    add("headquarters", .ok, "\(hq) answered in \(probe.roundTripMilliseconds) ms\(behind)")
                    let offset = probe.clockOffsetMilliseconds
                    let limit = Int64(configuration.limits.maximumClockDriftMilliseconds)
                    let text = "this machine's clock is \(Double(abs(offset)) / 1000) s \(offset > 0 ? "behind" : "ahead of") headquarters'"
                    if abs(offset) > limit {
                        add("clock", .fail, text + "; changes made here are quarantined at headquarters: fix the clock (timedatectl, chrony)")
                    } else if abs(offset) > 2_000 {
                        add("clock", .warn, text + "; keep it synchronised (timedatectl status, chrony)")
                    } else {
                        add("clock", .ok, text)
                    }
                } catch {
                    add(
                        "headquarters", .fail,
                        "\(hq): \(BranchClient.describe(error)); check the network and firewall, sync.hq_address, and the certificates")
                }
            } else {
                add("headquarters", .fail, "sync.hq_address is not set (or not host:port): set it in the configuration")
            }
        }
        finish(lines)
    }

    private func finish(_ lines: [Line]) {
        if output.json {
            Output.json(
                .array(lines.map { .object(["check": .string($0.check), "verdict": .string($0.verdict.rawValue), "text": .string($0.text)]) }))
        } else {
            for line in lines {
                Output.write(
                    line.verdict.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0) + line.check.padding(toLength: 14, withPad: " ", startingAt: 0)
                        + Output.oneLine(line.text) + "\n")
            }
        }
        if lines.contains(where: { $0.verdict == .fail }) { Foundation.exit(1) }
    }

    static func now() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
    }
}
