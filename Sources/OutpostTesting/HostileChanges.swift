import CustomerArchive
import Replication

/// Structurally valid change sets whose values are anything a hostile or broken peer could
/// send: extremes, negatives, huge and empty texts, control characters and terminal escapes,
/// keys that point nowhere or at each other. The same seed gives the same set.
public enum HostileChanges {
    /// Integers a reader might trip on.
    static let integers: [Int64] = [
        .min, .min + 1, -1_000_000_000_000_000_000, -150_000_000_000_000, -60_001, -1, 0, 1, 2, 3, 4, 5, 6, 7, 59, 100, 101,
        60_000, 150_000_000_000_000, 253_402_300_800_000, 1_000_000_000_000_000_000, .max - 1, .max,
    ]

    /// Texts a reader or a terminal might trip on.
    static let texts: [String] = [
        "", " ", "\u{1B}[2J\u{1B}[31mred", "\u{1B}]0;title\u{07}", "line\nbreak\r\nand\ttab", "\u{0}nul", "\u{7F}\u{85}\u{9B}31m",
        "\u{202E}reversed", "上海物流有限公司", "2026-13-45", "9999-99", "-", "%s%n", "'; DROP TABLE customers; --", "A", "AAA", "CNY",
        "company", "person", "late", "critical", "return_visit", "profit", "HQ", "SH01", "sh01", "\u{FEFF}",
        String(repeating: "长", count: 6_000), String(repeating: "x", count: 70_000),
    ]

    /// A set of `count` records per replicated table, produced by `producer`, every change
    /// originating at one of `origins`.
    public static func changeSet(
        seed: UInt64, producer: SiteID, origins: [SiteID], count: Int = 8, startMilliseconds: UInt64 = 1_780_000_000_000
    ) -> ChangeSet {
        var rng = SplitMix64(seed: seed)
        func pick<T>(_ items: [T]) -> T { items[Int(rng.next() % UInt64(items.count))] }
        var keys: [UInt8: [RecordKey]] = [:]
        for table in Schema.tables {
            keys[table.id] = (0..<count).map { i in
                table.id == Schema.settings.id && i == 0
                    ? Schema.settingsKey : RecordKey.version7(milliseconds: startMilliseconds + UInt64(i), randomA: rng.next(), randomB: rng.next())
            }
        }
        let allKeys = keys.values.flatMap { $0 }
        func value(_ column: ColumnSchema) -> Value {
            if rng.next() % 8 == 0 { return .null }
            switch column.type {
            case .integer:
                return rng.next() % 3 == 0 ? .integer(Int64(bitPattern: rng.next())) : .integer(pick(integers))
            case .text:
                return .text(rng.next() % 4 == 0 ? String(decoding: (0..<(rng.next() % 12)).map { _ in UInt8(rng.next() % 128) }, as: UTF8.self) : pick(texts))
            case .key:
                return .blob(Array((rng.next() % 4 == 0 ? RecordKey(high: rng.next(), low: rng.next()) : pick(allKeys)).bytes))
            }
        }
        var changes: [Change] = []
        var time = startMilliseconds
        for table in Schema.tables {
            for key in keys[table.id] ?? [] {
                time += 1
                let stamp = Stamp(time: Timestamp(milliseconds: time, counter: 0), site: pick(origins))
                let columns = table.columns.indices.filter { _ in rng.next() % 4 != 0 }
                switch table.kind {
                case .registers:
                    changes.append(
                        Change(
                            table: table.id, key: key, stamp: stamp,
                            body: .fields(columns.map { FieldWrite(column: $0, value: value(table.columns[$0])) })))
                    if rng.next() % 6 == 0 {
                        let later = Stamp(time: Timestamp(milliseconds: time, counter: 1), site: stamp.site)
                        changes.append(Change(table: table.id, key: key, stamp: later, body: .existence(causalLength: 1 + rng.next() % 5)))
                    }
                    if table.id == Schema.customers.id && rng.next() % 10 == 0 {
                        changes.append(
                            Change(table: table.id, key: key, stamp: Stamp(time: Timestamp(milliseconds: time, counter: 2), site: stamp.site), body: .erase))
                    }
                case .appendOnly:
                    let values = columns.map { ColumnValue(column: $0, value: value(table.columns[$0])) }.filter { !$0.value.isNull }
                    changes.append(Change(table: table.id, key: key, stamp: stamp, body: .append(values)))
                }
            }
        }
        return ChangeSet(producer: producer, schemaVersion: Schema.version, after: 0, through: UInt64(changes.count), changes: changes)
    }
}
