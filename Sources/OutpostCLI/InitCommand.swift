import ArgumentParser
import CustomerArchive
import Foundation
import Replication

/// `outpost init`: creates a site's data directory and archive.
struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create the archive of this site.",
        discussion: """
            Creates the data directory (mode 0700) and an empty archive for one site. The site \
            code (2-16 characters A-Z, 0-9, '-', starting with a letter) appears in every record \
            number made here and cannot be changed later. A site's archive is made once: running \
            init again is refused.

            Headquarters is HQ unless --hq-site says otherwise; a site with --role hq is its own \
            headquarters.

            Examples:
              outpost init --site SH01 --role branch
              outpost init --site HQ --role hq --data-dir /srv/outpost
            """)

    @Option(help: ArgumentHelp("This site's code, e.g. SH01.", valueName: "code"))
    var site: String

    @Option(help: ArgumentHelp("The part this site plays: branch or hq.", valueName: "branch|hq"))
    var role: String

    @Option(name: .customLong("hq-site"), help: ArgumentHelp("The code of headquarters (default: HQ).", valueName: "code"))
    var hqSite: String?

    @OptionGroup var storage: DataDirOptions

    func run() throws {
        let site = try Parse.site(site, option: "--site")
        let role = try Parse.role(role)
        let headquarters: SiteID
        if let hqSite {
            headquarters = try Parse.site(hqSite, option: "--hq-site")
        } else {
            headquarters = role == .hq ? site : .headquarters
        }
        if role == .hq && headquarters != site {
            throw CLIError("a headquarters site is its own headquarters: --hq-site must be \(site) or left out")
        }
        if role == .branch && headquarters == site {
            throw CLIError("branch \(site) cannot be its own headquarters: give the headquarters' code with --hq-site")
        }
        let directory = storage.directory
        let path = storage.archivePath
        if FileManager.default.fileExists(atPath: path) {
            throw ArchiveError(.alreadyInitialized, "an archive already exists at \(path); it belongs to the site it was made for")
        }
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw CLIError("cannot create the data directory \(directory): check the path and permissions")
        }
        let archive = try Archive.create(at: path, site: site, role: role, headquarters: headquarters)
        Output.fields([
            ("site", archive.site.code),
            ("role", archive.role.rawValue),
            ("headquarters", archive.headquarters.code),
            ("archive", archive.path),
        ])
    }
}
