import ArgumentParser
import CustomerArchive
import Foundation

/// `outpost dump --canonical`: the replicated state as deterministic JSON.
struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Print the replicated state as canonical JSON.",
        discussion: """
            Prints every replicated table sorted by record id, fields sorted by name, without \
            site-local data (clocks, sequences, cursors, journals). Two sites that hold the same \
            records print byte-identical dumps, so comparing dumps checks that sites agree. The \
            output contains customer data: handle it like the archive.

            Example, check that two sites agree after an exchange:
              outpost dump --canonical --data-dir /srv/sh01 > sh01.json
              outpost dump --canonical --data-dir /srv/hq > hq.json
              outpost dump --canonical --data-dir /srv/hq --scope SH01 > hq-for-sh01.json
              cmp sh01.json hq-for-sh01.json

            A branch holds its scope only ('outpost scope --help'), so at headquarters \
            --scope SITE prints what that branch must hold: its dump equals it once both are quiet.
            """)

    @Flag(help: "Canonical JSON (the default and, for now, the only mode).")
    var canonical = false

    @Option(help: ArgumentHelp("At headquarters: only what this branch's scope holds.", valueName: "code"))
    var scope: String?

    @OptionGroup var storage: DataDirOptions

    func run() throws {
        let archive = try storage.openArchive()
        if let scope {
            let site = try Parse.site(scope, option: "--scope")
            guard archive.role == .hq else {
                throw CLIError("--scope is for headquarters, which decides every branch's scope; a branch's own dump is its scope")
            }
            // Headquarters' own scope is everything.
            return Output.write(site == archive.headquarters ? try archive.canonicalDump() : try archive.canonicalDump(scope: site))
        }
        Output.write(try archive.canonicalDump())
    }
}
