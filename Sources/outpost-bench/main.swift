// Measures the archive against plain SQLite doing the same work in the same process, and prints
// ratios (absolute times on a shared machine mean little). Not part of the test run.
//
//   swift run -c release outpost-bench [--customers N] [--local N]
import CustomerArchive
import Foundation
import GRDB
import OutpostTesting
import Replication

struct Options {
    var customers = 83_334  // × 12 fields ≈ 1,000,000 field changes
    var local = 3_000
    init() {
        var args = CommandLine.arguments.dropFirst().makeIterator()
        while let a = args.next() {
            switch a {
            case "--customers": customers = Int(args.next() ?? "") ?? customers
            case "--local": local = Int(args.next() ?? "") ?? local
            default:
                print("usage: outpost-bench [--customers N] [--local N]")
                exit(2)
            }
        }
    }
}

var options = Options()
// Local writes reuse the generated rows.
options.local = min(options.local, options.customers)
let fields = [
    "name", "contact_person", "phone", "email", "address", "region", "industry", "home_branch", "account_manager", "shipments", "revenue_fen", "credit_rating",
]
let columns = fields.map { Schema.customers.column($0) }

func realisticValue(_ field: String, _ i: Int, _ rng: inout SplitMix64) -> Value {
    let cities = ["上海", "北京", "广州", "深圳", "成都", "杭州", "武汉", "南京"]
    let trades = ["物流", "快运", "货代", "仓储", "电子", "服装", "食品", "机械"]
    let surnames = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄"]
    let city = cities[Int(rng.next() % 8)]
    switch field {
    case "name": return .text("\(city)\(trades[Int(rng.next() % 8)])\(["有限公司", "股份有限公司", "贸易公司"][Int(rng.next() % 3)])\(i % 1000)")
    case "contact_person": return .text(surnames[Int(rng.next() % 8)] + ["伟", "芳", "娜", "强", "磊", "静"][Int(rng.next() % 6)])
    case "phone": return .text("1\(30 + rng.next() % 60)\(10_000_000 + rng.next() % 89_999_999)")
    case "email": return .text("c\(i)@\(["163.com", "qq.com", "example.cn"][Int(rng.next() % 3)])")
    case "address": return .text("\(city)市\(["浦东新区", "朝阳区", "天河区", "南山区"][Int(rng.next() % 4)])\(rng.next() % 999)号")
    case "region": return .text(city)
    case "industry": return .text(trades[Int(rng.next() % 8)])
    case "home_branch": return .text(["SH01", "BJ01", "GZ01", "CD01"][Int(rng.next() % 4)])
    case "account_manager": return .text("AM\(rng.next() % 300)")
    case "shipments": return .integer(Int64(rng.next() % 5_000))
    case "revenue_fen": return .integer(Int64(rng.next() % 100_000_000))
    default: return .text(["AAA", "AA", "A", "B", "C"][Int(rng.next() % 5)])
    }
}

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
