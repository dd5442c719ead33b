import Foundation
import GRDB
import Replication

/// A concurrent write that lost, as the conflict journal keeps it.
public struct ConflictEntry: Sendable, Hashable {
    public var id: Int64
    public var table: String
    public var record: RecordKey
    public var field: String
    public var winner: Value
    public var winnerStamp: Stamp
    public var loser: Value
    public var loserStamp: Stamp
    public var restored: Bool

    /// The entry with both values, for the operator reviewing it (`conflicts list --json`).
    public var json: JSON {
        .object([
            "id": .int(id), "table": .string(table), "record": .string(record.description), "field": .string(field),
            "winner": JSON(winner), "winner_site": .string(winnerStamp.site.code), "winner_time": .int(Int64(winnerStamp.time.milliseconds)),
            "loser": JSON(loser), "loser_site": .string(loserStamp.site.code), "loser_time": .int(Int64(loserStamp.time.milliseconds)),
            "restored": .bool(restored),
        ])
    }
}

extension Archive {
    /// The conflict journal, oldest first, one entry per lost field. Fields lost by one write
    /// share the entry id: restoring it restores them together.
    public func conflicts(includeRestored: Bool = true) throws -> [ConflictEntry] {
        try read { db in
            var out: [ConflictEntry] = []
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT id, tbl, key, winner_hlc, winner_site, loser_hlc, loser_site, fields, restored_at
                    FROM conflicts \(includeRestored ? "" : "WHERE restored_at IS NULL") ORDER BY id
                    """)
            for row in rows {
                guard let table = Schema.table(UInt8(row[1] as Int64)) else { continue }
                let winnerStamp = Stamp(time: Timestamp(rawValue: UInt64(bitPattern: row[3] as Int64)), site: SiteID(unchecked: row[4]))
                let loserStamp = Stamp(time: Timestamp(rawValue: UInt64(bitPattern: row[5] as Int64)), site: SiteID(unchecked: row[6]))
                for f in try JournalField.decode([UInt8](row[7] as Data)) {
                    out.append(
                        ConflictEntry(
                            id: row[0], table: table.name, record: RecordKey(data: row[2]),
                            field: f.column < table.columns.count ? table.columns[f.column].name : "#\(f.column)",
                            winner: f.winner, winnerStamp: winnerStamp, loser: f.loser, loserStamp: loserStamp,
                            restored: (row[8] as Int64?) != nil))
                }
            }
            return out
        }
    }

    /// Restores a lost write: writes its values again as a new local change that wins over the
    /// current ones (and is itself replicated), and marks the entry restored.
    public func restoreConflict(id: Int64) throws {
        try transaction { s in
            guard let row = try Row.fetchOne(s.db, sql: "SELECT tbl, key, fields, restored_at FROM conflicts WHERE id = ?", arguments: [id]) else {
                throw ArchiveError(.notFound, "no conflict with id \(id); 'outpost conflicts list' shows them")
            }
            guard (row[3] as Int64?) == nil else { throw ArchiveError(.invalidState, "conflict \(id) was already restored") }
            guard let table = Schema.table(UInt8(row[0] as Int64)), table.kind == .registers else {
                throw ArchiveError(.storage, "conflict \(id) names an unknown table")
            }
            var values: [String: Value] = [:]
            for f in try JournalField.decode([UInt8](row[2] as Data)) where f.column < table.columns.count {
                values[table.columns[f.column].name] = f.loser
            }
            let key = RecordKey(data: row[1])
            if table.id == Schema.customers.id,
                values.keys.contains(where: { Schema.homeOnlyCustomerColumns.contains(table.column($0)) })
            {
                try requireHome(try resolve(table, key.description, s.db), "restore a lost value of its identifying fields or home branch")
            }
            try s.update(table, key, values)
            try s.db.execute(sql: "UPDATE conflicts SET restored_at = ? WHERE id = ?", arguments: [Int64(s.wall), id])
        }
    }

    // MARK: Canonical dump

    /// The replicated state as deterministic JSON: every table sorted by record id, fields by
    /// name, no site-local metadata (clocks, sequences, cursors, journals). Two sites that hold
    /// the same records print byte-identical dumps.
    public func canonicalDump(pretty: Bool = true) throws -> String {
        try canonicalJSON().rendered(pretty: pretty) + (pretty ? "\n" : "")
    }

    public func canonicalJSON() throws -> JSON {
        try canonicalJSON { _ in nil }
    }

    /// The canonical JSON of the rows each table's filter keeps (an SQL condition and its
    /// arguments; nil keeps every row).
    func canonicalJSON(filter: (TableSchema) -> (String, StatementArguments)?) throws -> JSON {
        try read { db in
            var tables: [String: JSON] = [:]
            for table in Schema.tables {
                let (clause, arguments) = filter(table) ?? ("1", [])
                let records = try fetchRecords(table, db, where: clause, arguments: arguments, suffix: "ORDER BY id")
                var rows: [JSON] = []
                if table.kind == .appendOnly {
                    let origins = try Row.fetchAll(db, sql: "SELECT id, origin FROM \(table.name) WHERE \(clause) ORDER BY id", arguments: arguments)
                    for (record, o) in zip(records, origins) {
                        guard case .object(var obj) = record.json else { continue }
                        obj["origin"] = .string(o[1])
                        rows.append(.object(obj))
                    }
                } else {
                    rows = records.map { r in
                        guard case .object(var obj) = r.json else { return r.json }
                        obj["deleted"] = .bool(!r.alive)
                        obj["erased"] = .bool(r.erased)
                        return .object(obj)
                    }
                }
                tables[table.name] = .array(rows)
            }
            return .object(["schema": .int(Int64(Schema.version)), "tables": .object(tables)])
        }
    }

    /// Counts for `status`: pending local changes are those after the cursor of `peer`.
    public func counts() throws -> [String: Int] {
        try read { db in
            var out: [String: Int] = [:]
            for t in Schema.tables { out[t.name] = try Int.fetchOne(db, sql: "SELECT count(*) FROM \(t.name)") ?? 0 }
            out["changelog"] = try Int.fetchOne(db, sql: "SELECT count(*) FROM changelog") ?? 0
            out["conflicts"] = try Int.fetchOne(db, sql: "SELECT count(*) FROM conflicts WHERE restored_at IS NULL") ?? 0
            out["quarantine"] = try Int.fetchOne(db, sql: "SELECT count(*) FROM quarantine") ?? 0
            return out
        }
    }
}

extension Archive {
    /// Cheap counts for the daemon's metrics (no scan of the change log or the records):
    /// conflict journal entries not restored yet and changes held in quarantine.
    public func reviewCounts() throws -> (conflicts: Int, quarantined: Int) {
        try read { db in
            (
                try Int.fetchOne(db, sql: "SELECT count(*) FROM conflicts WHERE restored_at IS NULL") ?? 0,
                try Int.fetchOne(db, sql: "SELECT count(*) FROM quarantine") ?? 0
            )
        }
    }
}
