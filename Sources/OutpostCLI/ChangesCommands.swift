import ArgumentParser
import CustomerArchive
import Foundation
import OutpostDaemon
import Replication
import SyncService

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `outpost changes …`: exchanging change sets with other sites.
struct ChangesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "changes",
        abstract: "Export and apply change sets, the files that carry changes between sites.",
        discussion: """
            A site exports the changes in its change log after a cursor to a file; another site \
            applies the file. Files follow the same star as the line: headquarters applies \
            branches' files, a branch applies headquarters' files exported for it only. Applying \
            is idempotent: a file applied twice leaves the same archive. Headquarters takes a \
            branch's files in any order that leaves no gap in the branch's log; a branch takes \
            headquarters' files where they continue or overlap what it holds (one command sorts \
            its files), skips an older one and refuses one past a missing file.

            A site with a certificate ('outpost pki') signs the files it exports; a site with a \
            certificate or a CA certificate applies only signed files, whose certificate was \
            issued by its authority and names the file's producer. Headquarters judges a \
            branch's file exactly as a set pushed on the line: every change must originate at \
            the signer, writes only headquarters may make and values outside their domain are \
            refused, clocks too far ahead are quarantined.

            Example, a branch and headquarters exchanging by USB stick:
              (at SH01)  outpost changes export --for HQ --since 120 --out /media/usb/SH01.opcs
              (at HQ)    outpost changes apply /media/usb/SH01.opcs
              (at HQ)    outpost changes export --for SH01 --out /media/usb/HQ.opcs
              (at SH01)  outpost changes apply /media/usb/HQ.opcs
            """,
        subcommands: [Export.self, Apply.self, Compact.self, Quarantine.self, Release.self, Refused.self])

    // MARK: export

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write this site's changes after a cursor to a change-set file.",
            discussion: """
                Writes the changes of this site's change log with a sequence above --since \
                (default 0: everything) to FILE, atomically (FILE.tmp, then renamed), readable by \
                the owner only: it carries customer data. Files follow the star of the line: a \
                branch exports its own changes, for headquarters (the range still covers the rest \
                of its log); headquarters exports for one branch, named by --for SITE, what that \
                branch's pull would carry: the customers of its scope with what hangs off them, \
                the customers that left its scope (the branch evicts them), the branch's writes \
                headquarters refused (the branch journals them and returns to headquarters' \
                state) and how much of the branch's log headquarters holds (the branch may then \
                evict what waited for that). Only that branch applies the file. The command \
                prints the range covered and the --since to give next time; a branch applies \
                headquarters' file when it continues or overlaps what the branch holds, so a \
                --since at or below the branch's last file's is always safe.

                Examples:
                  (at SH01)  outpost changes export --out /media/usb/SH01-all.opcs
                  (at SH01)  outpost changes export --for HQ --since 120 --out /media/usb/SH01.opcs
                  (at HQ)    outpost changes export --for SH01 --since 5400 --out /media/usb/HQ-SH01.opcs
                """)

        @Option(help: ArgumentHelp("The file to write.", valueName: "file"))
        var out: String

        @Option(help: ArgumentHelp("Export changes after this change-log sequence (default: 0, everything).", valueName: "cursor"))
        var since: UInt64 = 0

        @Option(
            name: .customLong("for"),
            help: ArgumentHelp(
                "The site that will apply the file: headquarters (at a branch), or the branch whose scope it carries (at headquarters, required).",
                valueName: "site"))
        var forSite: String?

        @OptionGroup var storage: DataDirOptions

        func run() throws {
            let peer = try forSite.map { try Parse.site($0, option: "--for") }
            let archive = try storage.openArchive()
            if let peer, peer == archive.site {
                throw CLIError("--for names the site that will apply the set; \(peer) is this site")
            }
            let set: ChangeSet
            if archive.site == archive.headquarters {
                // For one branch: its scope with its moves (CHANGESET.md §5.3), as its pull carries.
                guard let peer else {
                    throw CLIError(
                        "name the branch the file is for with --for SITE: a branch holds its scope only, and applies headquarters' files exported for it")
                }
                set = try archive.exportFile(for: peer, after: since)
            } else {
                // Headquarters takes a branch's own changes only (its door refuses a set holding
                // another site's): what this branch received, headquarters already has.
                if let peer, peer != archive.headquarters {
                    throw CLIError("a branch's change sets go to headquarters (\(archive.headquarters)) only; \(peer) takes them from there")
                }
                set = try archive.exportChanges(after: since, origin: archive.site)
            }
            var bytes = try ChangeSetCodec.encode(set)
            let credentials = try SiteCredentials(archive: archive, dataDirectory: storage.directory)
            let signedBy: String
            if let pem = credentials.signing {
                bytes = try SignedChangeSet.sign(bytes, certificatePEM: pem.certificate, keyPEM: pem.key)
                signedBy = "\(archive.site) (\(credentials.files.certificate))"
            } else {
                signedBy = "no: no certificate at \(credentials.files.certificate)"
            }
            try Files.writeAtomically(bytes, to: out)
            var fields: [(String, String)] = [("wrote", out), ("changes", String(set.changes.count))]
            if let section = set.scope {
                fields += [
                    ("for", section.recipient.code), ("moved in", String(section.movedIn.count)), ("evicted", String(section.evicted.count)),
                    ("refused", String(section.refused.count)),
                ]
                if !(try archive.knowsBranch(section.recipient)) {
                    fields.append(
                        (
                            "note",
                            "headquarters knows nothing of \(section.recipient) (no customer homed, assigned or served there, never synced): the file holds the settings only; check the site code"
                        ))
                }
            }
            Output.fields(
                fields + [
                    ("producer", set.producer.code),
                    ("range", ChangesOutput.range(set)),
                    ("bytes", String(bytes.count)),
                    ("signed by", signedBy),
                    ("next time", "--since \(set.through)"),
                ])
        }
    }

    // MARK: apply

    struct Apply: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply change-set files from other sites.",
            discussion: """
                Every file is read and checked first; if any is not a valid change set (damaged, \
                truncated, from a newer Outpost, unsigned at a site with a certificate, from a \
                site this one does not take sets from), nothing is applied. A file this site \
                exported itself is skipped with a note. Applying a file again changes \
                nothing. Concurrent edits that lost go to the conflict journal ('outpost conflicts \
                list'); changes whose clock is too far ahead wait in quarantine ('outpost changes \
                quarantine'). Progress is shown on stderr when it is a terminal.

                Examples:
                  (at HQ)    outpost changes apply /media/usb/SH01.opcs /media/usb/SH02.opcs
                  (at SH01)  outpost changes apply /media/usb/HQ.opcs
                """)

        @Argument(help: ArgumentHelp("The change-set files to apply.", valueName: "file"))
        var files: [String] = []

        @OptionGroup var storage: DataDirOptions

        func run() throws {
            guard !files.isEmpty else { throw CLIError("give at least one change-set file to apply") }
            let archive = try storage.openArchive()
            let credentials = try SiteCredentials(archive: archive, dataDirectory: storage.directory)
            var sets: [(String, ChangeSet, SiteID)] = []
            var own: [String] = []
            for file in files {
                let set: ChangeSet
                let sender: SiteID
                do {
                    var bytes = try Files.read(file)
                    // This site's own export holds nothing to apply here: skipped, so one own
                    // file among several (a USB stick carries both ways) stops nothing.
                    let payload = SignedChangeSet.isSigned(bytes) ? try SignedChangeSet.unverifiedPayload(bytes) : bytes
                    if try ChangeSetCodec.header(of: payload).producer == archive.site {
                        own.append(file)
                        continue
                    }
                    if SignedChangeSet.isSigned(bytes) {
                        guard let ca = credentials.authority else {
                            throw CLIError(
                                "the file is signed, but this site has no CA certificate to check it with (\(credentials.files.ca)); install the site's certificate bundle"
                            )
                        }
                        let opened = try SignedChangeSet.open(bytes, trusting: ca, revoked: credentials.revoked)
                        sender = try Self.signer(opened, at: archive)
                        bytes = opened.payload
                    } else if credentials.authority != nil || credentials.signing != nil {
                        // A site with a PKI takes signed files only: an unsigned file could claim
                        // any producer.
                        throw CLIError(
                            "the file is not signed, and this site has a certificate: it applies files signed by \(archive.site == archive.headquarters ? "a branch" : "headquarters") only; export it again at a site that has its certificate"
                        )
                    } else {
                        sender = try ChangeSetCodec.header(of: bytes).producer
                    }
                    set = try ChangeSetCodec.decode(bytes)
                    try archive.judgeFile(set, from: sender)
                } catch {
                    throw CLIError("\(file): \(OutpostCommand.message(of: error))")
                }
                sets.append((file, set, sender))
            }
            guard !sets.isEmpty else {
                throw CLIError(
                    "\(own.count == 1 ? "the file was" : "every file was") exported by this site (\(archive.site)); nothing to apply here, apply it at another site"
                )
            }
            for file in own { Output.error("note: \(file): exported by this site (\(archive.site)); skipped, apply it at another site") }
            if archive.site != archive.headquarters {
                // Headquarters' files for this branch apply in the order of their ranges, each
                // where it continues or overlaps what the branch holds: a missing file stops
                // the command before anything is applied.
                sets.sort { $0.1.after < $1.1.after }
                var holds = try archive.cursor(for: archive.headquarters).receivedThrough
                for (file, set, _) in sets {
                    if case .ahead(let cursor) = Archive.place(after: set.after, through: set.through, cursor: holds) {
                        throw CLIError(
                            "\(file): the file continues headquarters' log after \(set.after), but this branch holds it only through \(cursor): apply the file that comes before it too, or at headquarters export one with 'outpost changes export --for \(archive.site) --since \(cursor)'; nothing was applied"
                        )
                    }
                    holds = max(holds, set.through)
                }
            }
            let tty = Output.stderrIsTerminal
            for (i, (file, set, sender)) in sets.enumerated() {
                let name = (file as NSString).lastPathComponent
                let report = try archive.admitFile(set, from: sender) { done, total in
                    if tty && total > 0 {
                        FileHandle.standardError.write(Data("\rapplying \(name): \(done)/\(total) changes".utf8))
                    }
                }
                if tty && !set.changes.isEmpty { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
                if i > 0 { Output.write("\n") }
                ChangesOutput.report(report, file: file, set: set)
            }
        }

        /// The site a signed file comes from: a branch at headquarters, headquarters at a
        /// branch, as its certificate says (the same rule as the line's client certificates).
        static func signer(_ opened: SignedChangeSet.Opened, at archive: Archive) throws -> SiteID {
            guard let site = try? SiteID(opened.signer) else { throw CLIError("the file's signer names no site") }
            let expected = archive.site == archive.headquarters ? "branch" : "headquarters"
            guard opened.unit == expected else {
                throw CLIError(
                    "the file is signed by \(site) with a certificate for \(opened.unit ?? "no role"); this site applies files signed by \(expected == "branch" ? "a branch" : "headquarters") only"
                )
            }
            return site
        }
    }

    // MARK: quarantine

    struct Quarantine: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List changes held back because their clock was too far ahead.",
            discussion: """
                A change whose clock runs far ahead of this site's (a sender with a wrong system \
                clock) is kept aside instead of applied. Fix the sender's clock, then release \
                each change that should count with 'outpost changes release ID'.

                Examples:
                  outpost changes quarantine
                  outpost changes quarantine --json
                """)

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            let held = try archive.quarantined()
            if output.json {
                return Output.json(
                    .array(
                        held.map {
                            .object([
                                "id": .int($0.id), "producer": .string($0.producer), "record": .string($0.record),
                                "reason": .string($0.reason), "received_at": .int(Int64($0.receivedAt)),
                            ])
                        }))
            }
            if held.isEmpty { return Output.write("no quarantined changes\n") }
            Output.table(
                ["ID", "RECEIVED", "PRODUCER", "RECORD", "REASON"],
                held.map { [String($0.id), Output.time(milliseconds: Int64($0.receivedAt)), $0.producer, $0.record, $0.reason] })
        }
    }

    // MARK: refused

    struct Compact: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drop from this site's change log what no peer can ask for again.",
            discussion: """
                The daemon does this hourly; the command does it now and says what went.

                At headquarters: every field write a later write of the same field supersedes, \
                every existence change a greater one supersedes, and every scope move a later \
                move of the same customer at the same branch supersedes. A branch resuming from \
                any cursor, however long it was offline, still ends where the full log would \
                have brought it (protocols/README.md §4.1), so there is no retention horizon: the \
                log stays about the size of the live data (the writes that survive from one \
                site are packed into one entry per record). Erasures and append-only rows stay.

                At a branch: its own changes headquarters acknowledged and older than \
                --retention-days (a headquarters restored from a backup may ask for those again). \
                What headquarters has not acknowledged is never dropped.

                Examples:
                  outpost changes compact
                  outpost changes compact --retention-days 0
                """)

        @Option(help: ArgumentHelp("At a branch: keep acknowledged changes this many days (default 30, as sync.log_retention_days).", valueName: "days"))
        var retentionDays: Int = 30

        @OptionGroup var storage: DataDirOptions

        func run() throws {
            guard (0...3_650).contains(retentionDays) else { throw CLIError("--retention-days is 0 to 3650") }
            let archive = try storage.openArchive()
            let before = try archive.counts()["changelog"] ?? 0
            var fields: [(String, String)] = []
            if archive.site == archive.headquarters {
                let done = try archive.compactHeadquartersLog()
                fields = [
                    ("writes dropped", String(done.writesDropped)), ("changes dropped", String(done.changesDropped)),
                    ("moves dropped", String(done.movesDropped)), ("rows packed", String(done.rowsPacked)),
                ]
            } else {
                let dropped = try archive.compactLog(retentionMilliseconds: UInt64(retentionDays) * 86_400_000)
                fields = [("changes dropped", String(dropped))]
            }
            let after = try archive.counts()["changelog"] ?? 0
            Output.fields(fields + [("log entries", "\(before) → \(after)")])
        }
    }

    struct Refused: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List this site's changes that headquarters refused.",
            discussion: """
                Headquarters judges every change a branch sends. A single change it refuses \
                (a write only headquarters may make, a value outside its field's domain) is \
                reported back and listed here; the rest of its set was taken. A set it refuses \
                as a whole (malformed, too large) is sent again in smaller sets, and a single \
                write it still refuses is set aside: listed here with SET ASIDE = yes and never \
                sent again, so the changes after it still reach headquarters. The record keeps \
                this site's value until the write is made again correctly.

                Reasons: HQ_ONLY, INVALID_VALUE, MALFORMED, TOO_LARGE (protocols/README.md §6).

                Examples:
                  outpost changes refused
                  outpost changes refused --json
                """)

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            let refused = try archive.refusedChanges()
            if output.json {
                return Output.json(
                    .array(
                        refused.map {
                            .object([
                                "id": .int($0.id), "refused_at": .int(Int64(clamping: $0.refusedAt)), "table": $0.table.map(JSON.string) ?? .null,
                                "record": .string($0.record), "reason": .string($0.reason), "message": .string($0.message),
                                "set_aside": .bool($0.setAside),
                            ])
                        }))
            }
            if refused.isEmpty { return Output.write("no refused changes\n") }
            Output.table(
                ["ID", "REFUSED", "TABLE", "RECORD", "REASON", "SET ASIDE", "MESSAGE"],
                refused.map {
                    [
                        String($0.id), Output.time(milliseconds: Int64(clamping: $0.refusedAt)), $0.table ?? "-", $0.record, $0.reason,
                        $0.setAside ? "yes" : "no", $0.message,
                    ]
                })
        }
    }

    struct Release: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply a quarantined change as it is.",
            discussion: """
                For a change an operator has checked and accepts despite its clock.

                Example:
                  outpost changes release 3
                """)

        @Argument(help: ArgumentHelp("The id from 'outpost changes quarantine'.", valueName: "id"))
        var id: String

        @OptionGroup var storage: DataDirOptions

        func run() throws {
            let id = try Parse.id(id, what: "quarantined change")
            let archive = try storage.openArchive()
            let report = try archive.releaseQuarantined(id: id)
            Output.write("released quarantined change \(id)\n")
            ChangesOutput.counts(report)
        }
    }
}

/// How apply reports print.
enum ChangesOutput {
    static func report(_ report: ApplyReport, file: String, set: ChangeSet) {
        if report.outOfOrder {
            // Only headquarters' scoped files are skipped so, wholly behind the branch's cursor.
            return Output.fields([
                ("file", file),
                ("producer", set.producer.code),
                ("range", range(set)),
                ("skipped", "this branch already holds headquarters' log through the end of the file's range; nothing was applied"),
            ])
        }
        var scope: [(String, String)] = []
        if let section = set.scope {
            scope = [
                ("moved in", String(section.movedIn.count)),
                (
                    "evicted",
                    String(section.evicted.count) + (section.evicted.isEmpty ? "" : " (those with changes headquarters does not hold yet wait for them)")
                ),
                ("refused", String(section.refused.count) + (section.refused.isEmpty ? "" : " of this branch's writes ('outpost changes refused' lists them)")),
            ]
        }
        Output.fields(
            [
                ("file", file),
                ("producer", set.producer.code),
                ("range", range(set)),
                ("changes", String(set.changes.count)),
                ("applied", String(report.applied)),
                ("unchanged", String(report.unchanged)),
                ("conflicts", String(report.conflicts) + (report.conflicts > 0 ? " ('outpost conflicts list' shows them)" : "")),
                ("refused", String(report.refused) + (report.refused > 0 ? " (they break a rule, e.g. an approval above the threshold)" : "")),
                ("quarantined", String(report.quarantined) + (report.quarantined > 0 ? " ('outpost changes quarantine' lists them)" : "")),
                ("cursor", report.cursorAdvanced ? "advanced to \(set.through) for \(set.producer)" : "unchanged"),
            ] + scope)
    }

    /// The producer's change-log sequences a set covers.
    static func range(_ set: ChangeSet) -> String {
        set.through > set.after ? "sequences \(set.after + 1)...\(set.through)" : "nothing after sequence \(set.after)"
    }

    static func counts(_ report: ApplyReport) {
        Output.fields([
            ("applied", String(report.applied)),
            ("unchanged", String(report.unchanged)),
            ("conflicts", String(report.conflicts)),
        ])
    }
}

/// Reading and writing change-set files.
enum Files {
    /// Reads a whole file, refusing one larger than a change set may be before reading it.
    static func read(_ path: String) throws -> [UInt8] {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw CLIError("cannot read: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw CLIError("not a regular file") }
        let limit = CodecLimits().maximumEncodedBytes
        guard Int(st.st_size) <= limit else {
            throw CLIError("the file has \(st.st_size) bytes, more than a change set may have (\(limit))")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CLIError("cannot read the file: check its permissions")
        }
        return [UInt8](data)
    }

    /// Writes `bytes` to `path.tmp` (mode 0600), syncs it, and renames it over `path`, so a
    /// reader never sees half a file.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw CLIError("cannot write \(tmp): \(String(cString: strerror(errno)))") }
        var failure: String?
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = String(cString: strerror(errno))
                    return
                }
                offset += n
            }
        }
        if failure == nil && fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        if close(fd) != 0 && failure == nil { failure = String(cString: strerror(errno)) }
        if failure == nil && rename(tmp, path) != 0 { failure = String(cString: strerror(errno)) }
        if let failure {
            unlink(tmp)
            throw CLIError("cannot write \(path): \(failure)")
        }
        let directory = (path as NSString).deletingLastPathComponent
        let dfd = open(directory.isEmpty ? "." : directory, O_RDONLY)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }
}

/// A site's certificate, key and authority as `outpost pki` installed them (or as the
/// configuration's tls.* keys say), for signing and checking change-set files.
struct SiteCredentials {
    var files: TLSFiles
    var signing: (certificate: String, key: String)?
    var authority: String?
    var revoked: Set<String>

    init(archive: Archive, dataDirectory: String) throws {
        let named = ProcessInfo.processInfo.environment["OUTPOST_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
        let config = try DaemonConfiguration.load(path: named ?? DaemonConfiguration.defaultPath, required: named != nil)
        files = config.resolvedTLS(role: archive.role, site: archive.site, dataDirectory: dataDirectory)
        func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }
        if let certificate = read(files.certificate), let key = read(files.key) { signing = (certificate, key) }
        authority = read(files.ca)
        revoked = try files.revoked.map { try RevocationList.load(path: $0).serials } ?? []
    }
}
