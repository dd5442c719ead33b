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
              cmp sh01.json hq.json
            """)

    @Flag(help: "Canonical JSON (the default and, for now, the only mode).")
    var canonical = false

    @OptionGroup var storage: DataDirOptions

    func run() throws {
        let archive = try storage.openArchive()
        Output.write(try archive.canonicalDump())
    }
}
