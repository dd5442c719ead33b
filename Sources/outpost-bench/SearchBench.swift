import CustomerArchive
import Foundation
import GRDB
import OutpostTesting
import Replication

/// `outpost-bench --search N`: a CSV import of N customers through the archive (checks, numbers,
/// change capture, search index) against plain SQLite inserting the same rows; then searches
/// through the bigram index against the LIKE scan they replace, on the same file.
func searchBenchmark(customers: Int) throws {
    let dir = try TemporaryDirectory(prefix: "outpost-searchbench")
    var rng = SplitMix64(seed: 7)
    let columns = ["name", "contact_person", "phone", "city", "region", "industry", "home_branch", "revenue"]
    var csv = columns.joined(separator: ",") + "\r\n"
    var phones: [String] = []
    for i in 0..<customers {
        var cells: [String] = []
        for c in columns {
            switch c {
            case "city": cells.append(["上海", "北京", "广州", "深圳"][i % 4])
            case "revenue": cells.append(String(rng.next() % 1_000_000) + ".00")
            default:
                let v = SampleCustomers.value(c == "revenue" ? "revenue_fen" : c, i, &rng)
                if case .text(let s) = v { cells.append(s) } else { cells.append("") }
            }
        }
        phones.append(cells[2])
        csv += cells.joined(separator: ",") + "\r\n"
    }
    let bytes = Array(csv.utf8)
    print("search: \(customers) customers, CSV \(bytes.count / 1_000_000) MB")

    // Parse and check, as 'outpost import customers' does before writing anything.
    var parsed: [[String: Value]] = []
    parsed.reserveCapacity(customers)
    let parseTime = try time {
        var reader = CSVReader(utf8: bytes)
        let mapping = try CustomerImport.mapping(header: try reader.next()!.fields)
        while let row = try reader.next() {
            do {
                parsed.append(try CustomerImport.fields(row, mapping, sites: { try? SiteID($0).code }))
            } catch let e as CustomerImport.BadRowError {
                fatalError("generated row \(e.row.line) is bad: \(e.row.message)")
            }
        }
    }

    let env = ManualEnvironment(now: 1_767_225_600_000)
    let archive = try Archive.create(at: dir.file("hq.sqlite"), site: .headquarters, role: .hq, environment: env.environment)
    let importTime = try time { try archive.importCustomers(parsed, batchSize: Int(ProcessInfo.processInfo.environment["IMPORT_BATCH"] ?? "10000")!) }
    let indexTime = try time { try archive.catchUpSearchIndex() }

    let names = ["name", "contact_person", "phone", "city", "region", "industry", "home_branch", "revenue_fen"]
    let plain = try DatabasePool(path: dir.file("plain.sqlite"))
    try plain.write { db in
        try db.execute(sql: "CREATE TABLE customers (id BLOB PRIMARY KEY NOT NULL, number TEXT, \(names.joined(separator: ", "))) WITHOUT ROWID")
    }
    let insert = "INSERT INTO customers VALUES (?, ?\(String(repeating: ", ?", count: names.count)))"
    let plainTime = try time {
        var start = 0
        var g = SplitMix64(seed: 9)
        while start < parsed.count {
            let end = min(parsed.count, start + 2_000)
            try plain.write { db in
                let stmt = try db.cachedStatement(sql: insert)
                for i in start..<end {
                    let key = RecordKey.version7(milliseconds: 1_767_225_600_000 + UInt64(i), using: &g)
                    try stmt.execute(
                        arguments: StatementArguments(
                            [Data(key.bytes).databaseValue, "HQ-C-\(i)".databaseValue] + names.map { parsed[i][$0]?.sqlValue ?? .null }))
                }
            }
            start = end
        }
    }
    print(
        "import: parse + check \(fmt(parseTime)) s; archive write \(fmt(importTime)) s + search index \(fmt(indexTime)) s (\(Int(Double(customers) / (importTime + indexTime))) customers/s); plain INSERT \(fmt(plainTime)) s → ratio \(fmt(plainTime / (importTime + indexTime)))×"
    )

    // Searches: the index (median of 15) against the LIKE scan it replaced (median of 3).
    let reader = try DatabaseQueue(
        path: archive.path,
        configuration: {
            var c = Configuration(); c.readonly = true; return c
        }())
    func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
    let phone = phones[customers / 2]
    let queries: [(String, String)] = [
        ("2 chars, common (物流)", "物流"),
        ("2 chars, a person (王芳)", "王芳"),
        ("4 chars (深圳电子)", "深圳电子"),
        ("rare (贸易公司999)", "贸易公司999"),
        ("1 char (芳)", "芳"),
        ("phone fragment (7 digits)", String(phone.dropFirst(3).prefix(7))),
        ("no match (不存在的公司)", "不存在的公司"),
    ]
    print("query                          matches≤50   index ms   LIKE ms   speed-up")
    for (label, q) in queries {
        var hits = 0
        let indexed = median(
            try (0..<15).map { _ in
                try time { hits = try archive.searchCustomers(q, limit: 50).count }
            })
        let pattern = "%\(q)%"
        let scanned = median(
            try (0..<3).map { _ in
                try time {
                    _ = try reader.read { db in
                        try Data.fetchAll(
                            db,
                            sql:
                                "SELECT id FROM customers WHERE name LIKE ?1 OR contact_person LIKE ?1 OR number LIKE ?1 OR phone LIKE ?1 ORDER BY id DESC LIMIT 50",
                            arguments: [pattern])
                    }
                }
            })
        print(
            "\(label.padding(toLength: 30, withPad: " ", startingAt: 0)) \(String(hits).padding(toLength: 12, withPad: " ", startingAt: 0)) \(fmt(indexed * 1000, 1).padding(toLength: 10, withPad: " ", startingAt: 0)) \(fmt(scanned * 1000, 1).padding(toLength: 9, withPad: " ", startingAt: 0)) \(fmt(scanned / indexed, 1))×"
        )
    }
    let sizes = try reader.read { db in
        try Row.fetchAll(db, sql: "SELECT name, sum(pgsize) FROM dbstat WHERE name LIKE 'search%' OR name = 'customers' GROUP BY name")
    }
    print("sizes: " + sizes.map { "\($0[0] as String) \(fmt(Double($0[1] as Int64) / 1e6, 1)) MB" }.joined(separator: ", "))
}
