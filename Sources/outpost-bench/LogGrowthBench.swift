import CustomerArchive
import Foundation
import GRDB
import OutpostTesting
import Replication

/// HQ's log after every field of every customer was overwritten ten times, against after one
/// write, before and after compaction (`outpost-bench --log-growth N`). Sizes are the pages of
/// the `changelog` table and its index (SQLite's `dbstat`), so they are what the disk holds.
func logGrowthBenchmark(customers: Int) throws {
    let dir = try TemporaryDirectory(prefix: "outpost-log-growth")
    let fields = SampleCustomers.fields
    let columns = fields.map { Schema.customers.column($0) }
    let t0: UInt64 = 1_767_225_600_000
    let sh01 = try SiteID("SH01")
    var rng = SplitMix64(seed: 7)
    let keys = (0..<customers).map { i in RecordKey.version7(milliseconds: t0 + UInt64(i), using: &rng) }

    func logBytes(_ path: String) throws -> (pages: Int, payload: Int) {
        let queue = try DatabaseQueue(path: path)
        return try queue.read { db in
            let row = try Row.fetchOne(
                db, sql: "SELECT sum(pgsize), sum(payload) FROM dbstat WHERE name IN ('changelog', 'changelog_key')")!
            return (row[0] ?? 0, row[1] ?? 0)
        }
    }
    func mib(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
    /// Pages and payload of the log's table and of its index, each.
    func breakdown(_ path: String) throws -> String {
        let queue = try DatabaseQueue(path: path)
        return try queue.read { db in
            try Row.fetchAll(
                db, sql: "SELECT name, sum(pgsize), sum(payload) FROM dbstat WHERE name IN ('changelog', 'changelog_key') GROUP BY name ORDER BY name"
            ).map { row in
                let pages: Int = row[1]
                let payload: Int = row[2]
                return "\(row[0] as String) \(mib(pages)) (\(mib(payload)) payload, pages \(Int(Double(payload) / Double(max(pages, 1)) * 100))% full)"
            }.joined(separator: ", ")
        }
    }

    for scenario in ["whole records (one change per customer per round, all 12 fields)", "field by field (one change per field per round)"] {
        let byField = scenario.hasPrefix("field")
        let path = dir.file(byField ? "hq-fields.sqlite" : "hq-records.sqlite")
        let env = ManualEnvironment(now: t0 + 100_000_000)
        let hq = try Archive.create(at: path, site: .headquarters, role: .hq, environment: env.environment)
        let options = ApplyOptions(checkDrift: false, batchSize: 10_000)
        var stamps = [Stamp](repeating: Stamp(time: .zero, site: sh01), count: customers)
        var created: [Change] = []
        for (i, key) in keys.enumerated() {
            stamps[i] = Stamp(time: Timestamp(milliseconds: t0 + UInt64(i), counter: 0), site: sh01)
            created.append(
                Change(
                    table: Schema.customers.id, key: key, stamp: stamps[i],
                    body: .fields(zip(columns, fields).map { FieldWrite(column: $0, value: SampleCustomers.value($1, i, &rng)) })))
        }
        try hq.apply(ChangeSet(producer: sh01, schemaVersion: 1, after: 0, through: UInt64(customers), changes: created), options: options)
        let once = try logBytes(path)
        var through = UInt64(customers)
        var overwrites = 0
        for round in 1...10 {
            var changes: [Change] = []
            for (i, key) in keys.enumerated() {
                let ms = t0 + UInt64(round) * 10_000_000 + UInt64(i) * 2
                if byField {
                    for (n, (column, field)) in zip(columns, fields).enumerated() {
                        let stamp = Stamp(time: Timestamp(milliseconds: ms, counter: UInt16(n)), site: sh01)
                        changes.append(
                            Change(
                                table: Schema.customers.id, key: key, stamp: stamp,
                                body: .fields([FieldWrite(column: column, value: SampleCustomers.value(field, i, &rng), base: stamps[i])])))
                        stamps[i] = stamp
                    }
                } else {
                    let stamp = Stamp(time: Timestamp(milliseconds: ms, counter: 0), site: sh01)
                    changes.append(
                        Change(
                            table: Schema.customers.id, key: key, stamp: stamp,
                            body: .fields(zip(columns, fields).map { FieldWrite(column: $0, value: SampleCustomers.value($1, i, &rng), base: stamps[i]) })))
                    stamps[i] = stamp
                }
            }
            overwrites += changes.count
            try hq.apply(
                ChangeSet(producer: sh01, schemaVersion: 1, after: through, through: through + UInt64(changes.count), changes: changes), options: options)
            through += UInt64(changes.count)
        }
        let grown = try logBytes(path)
        var compaction = LogCompaction()
        let seconds = try time { compaction = try hq.compactHeadquartersLog() }
        let compacted = try logBytes(path)
        let stats = try hq.logStatistics()
        print("HQ's log, \(customers) customers × 12 fields, then 10 overwrites of every field — \(scenario):")
        print("  after one write: \(mib(once.pages)) (\(mib(once.payload)) payload)")
        print(
            "  after 10 overwrites: \(mib(grown.pages)) → ratio \(fmt(Double(grown.pages) / Double(once.pages)))× uncompacted"
        )
        print(
            "  compacted (\(compaction.writesDropped) writes, \(compaction.changesDropped) changes dropped in \(fmt(seconds)) s, \(Int(Double(overwrites) / max(seconds, 1e-9))) changes/s): \(mib(compacted.pages)) → ratio \(fmt(Double(compacted.pages) / Double(once.pages)))× (goal ≤ 1.5×); \(stats)"
        )
        print(
            "  compaction packed \(compaction.rowsPacked) rows and refilled \(compaction.windowsRepacked) stretches of the log; table and index: \(try breakdown(path))"
        )
    }
}
