import ArgumentParser
import Foundation
import Replication
import SyncService

/// `outpost pki`: headquarters' certificate authority.
struct PKICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pki",
        abstract: "Run headquarters' certificate authority: init, issue, revoke, list.",
        discussion: """
            Branches and headquarters authenticate each other with mutual TLS. Headquarters \
            keeps a small certificate authority in its PKI directory (--pki-dir, default \
            DATA/pki): it issues each branch a key and a certificate naming the branch's site \
            code, and headquarters takes a branch's identity from that certificate only. Keys \
            are written with mode 0600, directories 0700.

            Provisioning a branch:
              outpost pki init --hq-name hq.example.net        (once, at headquarters)
              outpost pki issue --site SH01                    (writes DATA/pki/sites/SH01/)
              copy DATA/pki/sites/SH01/* to the branch's DATA/tls/
              outpost pki revoke --site SH01                   (the branch can no longer connect)
            """,
        subcommands: [PKIInit.self, PKIIssue.self, PKIRevoke.self, PKIList.self])
}

struct PKIDirectoryOptions: ParsableArguments {
    @OptionGroup var storage: DataDirOptions

    @Option(name: .customLong("pki-dir"), help: ArgumentHelp("The authority's directory. (default: DATA/pki)", valueName: "dir"))
    var pkiDir: String?

    var directory: String { pkiDir ?? (storage.directory as NSString).appendingPathComponent("pki") }
}

struct PKIInit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create the certificate authority and headquarters' server certificate.",
        discussion: """
            Run once at headquarters. The server certificate names localhost, 127.0.0.1 and ::1 \
            plus every --hq-name, which must include the name or address branches use in \
            sync.hq_address. The authority is never replaced: a second init is refused.

            Example:
              outpost pki init --hq-name hq.example.net --hq-name 10.0.0.5
            """)

    @OptionGroup var pki: PKIDirectoryOptions

    @Option(name: .customLong("hq-name"), help: ArgumentHelp("A DNS name or IP address of headquarters (repeatable).", valueName: "name"))
    var hqNames: [String] = []

    @Option(name: .customLong("hq-site"), help: ArgumentHelp("Headquarters' site code. (default: the archive's, else HQ)", valueName: "code"))
    var hqSite: String?

    @Option(help: ArgumentHelp("Validity of the authority in days.", valueName: "days"))
    var days = 3650

    func run() throws {
        let site: SiteID
        if let hqSite {
            site = try Parse.site(hqSite, option: "--hq-site")
        } else if let archive = try? pki.storage.openArchive() {
            site = archive.headquarters
        } else {
            site = .headquarters
        }
        guard days > 0 else { throw CLIError("--days must be positive") }
        let paths = try CertificateAuthority.initialize(directory: pki.directory, headquarters: site, serverNames: hqNames, validityDays: days)
        Output.fields([
            ("authority", paths.caCertificate),
            ("server certificate", paths.serverCertificate),
            ("server key", paths.serverKey),
            ("revocation list", paths.revoked),
        ])
    }
}

struct PKIIssue: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "issue",
        abstract: "Issue a branch's key and certificate.",
        discussion: """
            Writes PKI/sites/CODE/ca.pem, CODE.pem and CODE-key.pem: install the three files \
            in the branch's DATA/tls/ (or point tls.* in its configuration at them). Issuing \
            again for the same site makes a new key; the old certificate stays valid until it \
            expires or is revoked.

            Example:
              outpost pki issue --site SH01 --install-to /var/lib/outpost-sh01/tls
            """)

    @OptionGroup var pki: PKIDirectoryOptions

    @Option(help: ArgumentHelp("The branch's site code.", valueName: "code"))
    var site: String

    @Option(help: ArgumentHelp("Validity in days.", valueName: "days"))
    var days = 825

    @Option(name: .customLong("install-to"), help: ArgumentHelp("Also copy the bundle into this directory (made 0700).", valueName: "dir"))
    var installTo: String?

    func run() throws {
        let site = try Parse.site(site, option: "--site")
        guard days > 0 else { throw CLIError("--days must be positive") }
        let authority = try CertificateAuthority.load(directory: pki.directory)
        let bundle = try authority.issue(site: site, validityDays: days)
        var fields: [(String, String?)] = [
            ("site", site.code),
            ("serial", bundle.serial),
            ("valid until", CertificateAuthority.iso(bundle.notValidAfter)),
            ("bundle", bundle.directory),
        ]
        if let installTo {
            try install(bundle, site: site, into: installTo)
            fields.append(("installed in", installTo))
        }
        Output.fields(fields)
    }

    private func install(_ bundle: CertificateAuthority.Bundle, site: SiteID, into directory: String) throws {
        try CertificateAuthority.makePrivateDirectory(directory)
        for (source, name, mode) in [
            (bundle.caCertificate, "ca.pem", mode_t(0o600)), (bundle.certificate, "\(site.code).pem", 0o600), (bundle.key, "\(site.code)-key.pem", 0o600),
        ] {
            guard let text = try? String(contentsOfFile: source, encoding: .utf8) else { throw CLIError("cannot read \(source)") }
            try CertificateAuthority.replace(text, at: (directory as NSString).appendingPathComponent(name), mode: mode)
        }
    }
}

struct PKIRevoke: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke every certificate issued to a branch.",
        discussion: """
            Adds the branch's certificates to the revocation list headquarters reads on every \
            call (no restart needed): the branch's next call is refused, and headquarters logs \
            the refusal. Issue a new certificate to let the site back in.

            Example:
              outpost pki revoke --site SH01
            """)

    @OptionGroup var pki: PKIDirectoryOptions

    @Option(help: ArgumentHelp("The branch's site code.", valueName: "code"))
    var site: String

    func run() throws {
        let site = try Parse.site(site, option: "--site")
        let authority = try CertificateAuthority.load(directory: pki.directory)
        let serials = try authority.revoke(site: site)
        Output.fields([("site", site.code), ("revoked", serials.joined(separator: ", "))])
    }
}

struct PKIList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the certificates the authority issued, with their state.")

    @OptionGroup var pki: PKIDirectoryOptions
    @OptionGroup var output: JSONOption

    func run() throws {
        let authority = try CertificateAuthority.load(directory: pki.directory)
        let revoked = try RevocationList.load(path: (pki.directory as NSString).appendingPathComponent(CertificateAuthority.revokedFile)).serials
        let issued = try authority.issuedCertificates()
        if output.json {
            Output.json(
                .array(
                    issued.map {
                        .object([
                            "site": .string($0.site), "serial": .string($0.serial), "not_valid_after": .string($0.notValidAfter),
                            "revoked": .bool(revoked.contains($0.serial)),
                        ])
                    }))
            return
        }
        Output.table(
            ["SITE", "SERIAL", "VALID UNTIL", "STATE"],
            issued.map { [$0.site, String($0.serial.prefix(16)), $0.notValidAfter, revoked.contains($0.serial) ? "revoked" : "valid"] })
    }
}
