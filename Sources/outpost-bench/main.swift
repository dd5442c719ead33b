// Measures the archive against plain SQLite doing the same work in the same process, and prints
// ratios (absolute times on a shared machine mean little). Not part of the test run.
//
//   swift run -c release outpost-bench [--customers N] [--local N]
//   swift run -c release outpost-bench --search 1000000      (import and search at scale)
//   swift run -c release outpost-bench --log-growth 100000   (HQ's log after overwrites, compacted)
import CustomerArchive
import Foundation
import GRDB
import OutpostTesting
import Replication

struct Options {
    var customers = 83_334  // × 12 fields ≈ 1,000,000 field changes
    var local = 3_000
    var search: Int?
    var logGrowth: Int?
    init() {
        var args = CommandLine.arguments.dropFirst().makeIterator()
        while let a = args.next() {
            switch a {
            case "--customers": customers = Int(args.next() ?? "") ?? customers
            case "--local": local = Int(args.next() ?? "") ?? local
            case "--search": search = Int(args.next() ?? "")
            case "--log-growth": logGrowth = Int(args.next() ?? "")
            default:
                print("usage: outpost-bench [--customers N] [--local N] | --search N | --log-growth N")
                exit(2)
            }
        }
    }
}

var options = Options()
if let n = options.search {
    try searchBenchmark(customers: n)
    exit(0)
}
if let n = options.logGrowth {
    try logGrowthBenchmark(customers: n)
    exit(0)
}
// Local writes reuse the generated rows.
options.local = min(options.local, options.customers)
let fields = SampleCustomers.fields
let columns = fields.map { Schema.customers.column($0) }
let realisticValue = SampleCustomers.value

func time(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func fmt(_ x: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", x) }

/// Plain SQLite with the archive's pragmas (WAL, synchronous=FULL, secure_delete) and the
/// same columns, written through the same library with prepared statements.
func plainDatabase(_ path: String) throws -> DatabasePool {
    var config = Configuration()
    config.prepareDatabase { db in try db.execute(sql: "PRAGMA secure_delete = ON") }
    let pool = try DatabasePool(path: path, configuration: config)
    try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
    try pool.write { db in
        try db.execute(sql: "CREATE TABLE customers (id BLOB PRIMARY KEY NOT NULL, \(fields.map { "\"\($0)\"" }.joined(separator: ", "))) WITHOUT ROWID")
    }
    return pool
}

let dir = try TemporaryDirectory(prefix: "outpost-bench")
var rng = SplitMix64(seed: 42)
let producer = try SiteID("SH01")
let t0: UInt64 = 1_767_225_600_000

// MARK: 1. Applying new records
var keys: [RecordKey] = []
var created: [Change] = []
var rows: [[Value]] = []
for i in 0..<options.customers {
    var g = rng
    let key = RecordKey.version7(milliseconds: t0 + UInt64(i), using: &g)
    rng = g
    keys.append(key)
    let values = fields.map { realisticValue($0, i, &rng) }
    rows.append(values)
    let stamp = Stamp(time: Timestamp(milliseconds: t0 + UInt64(i), counter: 0), site: producer)
    created.append(Change(table: Schema.customers.id, key: key, stamp: stamp, body: .fields(zip(columns, values).map { FieldWrite(column: $0, value: $1) })))
}
let fieldChanges = options.customers * fields.count
let createSet = ChangeSet(producer: producer, schemaVersion: 1, after: 0, through: UInt64(created.count), changes: created)

let raw = try ChangeSetCodec.encode(createSet, compress: false)
let compressed = try ChangeSetCodec.encode(createSet)
print("change-set size for \(fieldChanges) field changes (\(options.customers) new customers × \(fields.count) fields):")
print(
    "  raw \(raw.count) B = \(fmt(Double(raw.count) / Double(fieldChanges))) B/field change; zlib \(compressed.count) B = \(fmt(Double(compressed.count) / Double(fieldChanges))) B/field change"
)

let env = ManualEnvironment(now: t0 + 10_000_000)
let hq = try Archive.create(at: dir.file("hq.sqlite"), site: .headquarters, role: .hq, environment: env.environment)
let plain = try plainDatabase(dir.file("plain.sqlite"))
let batch = 5_000
let insertSQL = "INSERT INTO customers(id, \(fields.map { "\"\($0)\"" }.joined(separator: ", "))) VALUES (?\(String(repeating: ", ?", count: fields.count)))"
let plainInsert = try time {
    var start = 0
    while start < rows.count {
        let end = min(rows.count, start + batch)
        try plain.write { db in
            let stmt = try db.cachedStatement(sql: insertSQL)
            for i in start..<end {
                try stmt.execute(arguments: StatementArguments([keys[i].bytes.withUnsafeBytes { Data($0) }.databaseValue] + rows[i].map { $0.sqlValue }))
            }
        }
        start = end
    }
}
let decoded = try ChangeSetCodec.decode(compressed)
let archiveInsert = try time { try hq.apply(decoded, options: ApplyOptions(checkDrift: false, batchSize: batch * 2)) }
print(
    "apply new records: plain SQLite \(fmt(plainInsert)) s (\(Int(Double(fieldChanges) / plainInsert)) fields/s), archive \(fmt(archiveInsert)) s (\(Int(Double(fieldChanges) / archiveInsert)) fields/s) → ratio \(fmt(plainInsert / archiveInsert))× (goal ≥ 0.5×)"
)
let indexInsert = try time { try hq.catchUpSearchIndex() }
print(
    "  then the search index catches up (behind the writes, in the daemon): \(fmt(indexInsert)) s; apply + index → ratio \(fmt(plainInsert / (archiveInsert + indexInsert)))×"
)

// MARK: 2. Overwrites, half winning
var overwrites: [Change] = []
var newRows = rows
for i in 0..<options.customers {
    let wins = i % 2 == 0
    let ms = wins ? t0 + 20_000_000 + UInt64(i) : t0 - 1_000 + UInt64(i % 500)
    let values = fields.map { realisticValue($0, i, &rng) }
    if wins { newRows[i] = values }
    let stamp = Stamp(time: Timestamp(milliseconds: ms, counter: 0), site: try SiteID("BJ01"))
    // The winning half are edits made knowing the current value (their base is its stamp), as at
    // a branch that had synced; the losing half are stale concurrent edits, journaled.
    let base: Stamp? = wins ? Stamp(time: Timestamp(milliseconds: t0 + UInt64(i), counter: 0), site: producer) : nil
    overwrites.append(
        Change(
            table: Schema.customers.id, key: keys[i], stamp: stamp,
            body: .fields(zip(columns, values).map { FieldWrite(column: $0, value: $1, base: base) })))
}
overwrites.shuffle(using: &rng)  // arrival order is not key order
let overwriteSet = ChangeSet(producer: try SiteID("BJ01"), schemaVersion: 1, after: 0, through: UInt64(overwrites.count), changes: overwrites)
let updateSQL = "UPDATE customers SET \(fields.map { "\"\($0)\" = ?" }.joined(separator: ", ")) WHERE id = ?"
var order = Array(0..<options.customers)
order.shuffle(using: &rng)
let plainUpdate = try time {
    var start = 0
    while start < order.count {
        let end = min(order.count, start + batch)
        try plain.write { db in
            let stmt = try db.cachedStatement(sql: updateSQL)
            for i in order[start..<end] {
                try stmt.execute(arguments: StatementArguments(rows[i].map { $0.sqlValue } + [Data(keys[i].bytes).databaseValue]))
            }
        }
        start = end
    }
}
var overwriteReport = ApplyReport()
let archiveUpdate = try time { overwriteReport = try hq.apply(overwriteSet, options: ApplyOptions(checkDrift: false, batchSize: batch * 2)) }
print(
    "apply overwrites (half win, \(overwriteReport.conflicts) conflicts journaled): plain UPDATE \(fmt(plainUpdate)) s, archive \(fmt(archiveUpdate)) s → ratio \(fmt(plainUpdate / archiveUpdate))× (goal ≥ 0.5×)"
)
let indexUpdate = try time { try hq.catchUpSearchIndex() }
print("  then the search index catches up: \(fmt(indexUpdate)) s; apply + index → ratio \(fmt(plainUpdate / (archiveUpdate + indexUpdate)))×")

// MARK: 3. Local writes with capture, one per transaction as at the counter
let localEnv = ManualEnvironment(now: t0)
let branch = try Archive.create(at: dir.file("branch.sqlite"), site: producer, role: .branch, environment: localEnv.environment)
let plainLocal = try plainDatabase(dir.file("plain-local.sqlite"))
let n = options.local
let plainLocalTime = try time {
    for i in 0..<n {
        try plainLocal.write { db in
            try db.execute(sql: insertSQL, arguments: StatementArguments([Data(keys[i].bytes).databaseValue] + rows[i].map { $0.sqlValue }))
        }
    }
}
let localFields = Dictionary(uniqueKeysWithValues: fields.map { ($0, Value.null) })
let archiveLocalTime = try time {
    for i in 0..<n {
        localEnv.advance(milliseconds: 1)
        var f = localFields
        for (j, name) in fields.enumerated() { f[name] = rows[i][j] }
        f["phone"] = nil  // normalisation is checked separately; keep the write comparable
        _ = try branch.addCustomer(f)
    }
}
print(
    "local writes, one per transaction (\(n)): plain \(fmt(plainLocalTime)) s, archive with capture \(fmt(archiveLocalTime)) s → overhead \(fmt(archiveLocalTime / plainLocalTime))× (goal ≤ 1.3×)"
)

// MARK: 4. The door's cost: judging every value against its domain at HQ
// The same set of new customers into two fresh HQ archives, with and without the domain
// judgement HQ's door adds (Archive.admit); the rest of the apply is identical.
var doorTimes: (plain: Double, judged: Double) = (.infinity, .infinity)
for round in 0..<3 {
    for judged in [false, true] {
        let target = try Archive.create(
            at: dir.file("door-\(round)-\(judged).sqlite"), site: .headquarters, role: .hq, environment: env.environment)
        let t = try time { _ = try target.apply(createSet, options: ApplyOptions(checkDrift: false, batchSize: batch * 2, judgeDomains: judged)) }
        if judged { doorTimes.judged = min(doorTimes.judged, t) } else { doorTimes.plain = min(doorTimes.plain, t) }
    }
}
print(
    "door (\(options.customers) new customers, best of 3): apply \(fmt(doorTimes.plain)) s, apply judging every value's domain \(fmt(doorTimes.judged)) s → ratio \(fmt(doorTimes.plain / doorTimes.judged))×"
)

extension Value {
    var sqlValue: DatabaseValue {
        switch self {
        case .null: .null
        case .integer(let i): i.databaseValue
        case .text(let s): s.databaseValue
        case .blob(let b): Data(b).databaseValue
        }
    }
}
