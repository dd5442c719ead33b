import CustomerArchive
import Foundation
import OutpostTesting
import Replication
import Testing

@testable import OutpostCLI

/// Every read command on an archive that holds whatever a hostile peer could have had stored:
/// no value may crash a reader, and text output never passes a control character through.
@Suite("Hostile values")
struct HostileValueTests {
    /// Seeds to run: `$OUTPOST_HOSTILE_SEEDS` of them from `$OUTPOST_HOSTILE_SEED` (both printed,
    /// so a failure replays), else seeds 1 to 3, as the simulation runs fixed seeds: set a
    /// start to explore new ones.
    static let seeds: [UInt64] = {
        let env = ProcessInfo.processInfo.environment
        let count = env["OUTPOST_HOSTILE_SEEDS"].flatMap { Int($0) } ?? 3
        let start = env["OUTPOST_HOSTILE_SEED"].flatMap { UInt64($0) } ?? 1
        return (0..<UInt64(max(count, 1))).map { start + $0 }
    }()

    /// The commands that only read, for a site holding the records `keys`.
    static func readCommands(role: String, keys: [UInt8: [RecordKey]]) -> [[String]] {
        var commands: [[String]] = [
            ["customer", "list", "--all"], ["customer", "list", "--all", "--json"], ["customer", "search", "物流"], ["customer", "search", "13"],
            ["complaint", "list"], ["complaint", "list", "--overdue"], ["complaint", "list", "--json"], ["claim", "list"], ["claim", "list", "--json"],
            ["report", "abc"], ["report", "abc", "--json"], ["report", "abc", "--csv"], ["report", "quadrants"], ["report", "quadrants", "--csv"],
            ["report", "value"], ["report", "value", "--json"], ["report", "complaints"], ["report", "complaints", "--json"], ["report", "claims"],
            ["report", "claims", "--csv"], ["export", "customers", "--csv"], ["export", "customers", "--jsonl"], ["dump", "--canonical"], ["status"],
            ["status", "--json"], ["conflicts", "list"], ["changes", "quarantine"], ["settings", "value"], ["settings", "sla"],
            ["scope", "list"], ["scope", "list", "--json"], ["scope", "assignments"], ["scope", "assignments", "--json"], ["changes", "refused"],
        ]
        if role == "hq" { commands += [["duplicates"], ["duplicates", "--json"], ["report", "abc", "--branch", "SH01"]] }
        for key in keys[Schema.customers.id] ?? [] {
            commands += [
                ["customer", "show", "\(key)"], ["customer", "show", "\(key)", "--json"], ["customer", "figures", "\(key)"],
                ["contact", "list", "--customer", "\(key)"],
            ]
        }
        for key in keys[Schema.complaints.id] ?? [] { commands += [["complaint", "show", "\(key)"], ["complaint", "show", "\(key)", "--json"]] }
        for key in keys[Schema.claims.id] ?? [] { commands += [["claim", "show", "\(key)"], ["claim", "show", "\(key)", "--json"]] }
        return commands
    }

    @Test("every read command survives any stored value", arguments: seeds)
    func everyReadCommandSurvivesAnyStoredValue(seed: UInt64) throws {
        print("hostile values: seed \(seed) (replay with OUTPOST_HOSTILE_SEED=\(seed) OUTPOST_HOSTILE_SEEDS=1)")
        let sandbox = try Sandbox()
        for (code, role) in [("SH01", "branch"), ("HQ", "hq")] {
            let site = try sandbox.initializedSite(code, role: role)
            // What a branch receives from headquarters is stored as it is (HQ's judgement
            // stands); headquarters may hold such values from before domains existed. Either way
            // the values reach the archive without the door's domain check.
            let producer = try SiteID(role == "hq" ? "SH01" : "HQ")
            let set = HostileChanges.changeSet(seed: seed, producer: producer, origins: [producer])
            do {
                let archive = try Archive.open(at: (site.dataDir as NSString).appendingPathComponent(Archive.fileName))
                try archive.apply(set, options: ApplyOptions(checkDrift: false))
            }
            var keys: [UInt8: [RecordKey]] = [:]
            for change in set.changes where !(keys[change.table] ?? []).contains(change.key) { keys[change.table, default: []].append(change.key) }
            for command in Self.readCommands(role: role, keys: keys) {
                let result = try site.run(command)
                let line = "seed \(seed), \(code): outpost \(command.joined(separator: " "))"
                #expect(!result.crashed, "\(line) crashed: \(result)")
                #expect(result.status == 0 || result.stderr.hasPrefix("error: "), "\(line): \(result)")
                if !command.contains("--json") && !command.contains("--csv") && !command.contains("--jsonl") && !command.contains("--canonical") {
                    // Human output: newlines end lines; no other control character reaches the terminal.
                    let raw = result.stdout.unicodeScalars.first { $0 != "\n" && ($0.value < 0x20 || (0x7F...0x9F).contains($0.value)) }
                    #expect(raw == nil, "\(line) printed control character U+\(String(raw?.value ?? 0, radix: 16))")
                }
            }
        }
    }

    /// A peer chooses some logged values (the name in a certificate HQ has not verified yet, the
    /// software string of Hello): none may forge a log line or drive the operator's terminal.
    @Test("log lines carry no control character, whatever a peer sent")
    func logLinesCarryNoControlCharacter() {
        for hostile in ["SH01\u{1B}[2J", "x\r\n2026-12-01T00:00:00.000Z error   forged line", "\u{202E}10HS", "\u{7}\u{9B}31m"] {
            for text in [OutpostLogHandler.quoted(hostile), OutpostLogHandler.escaped(hostile)] {
                #expect(!text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0 == "\u{202E}" }, "\(text)")
            }
        }
    }
}
