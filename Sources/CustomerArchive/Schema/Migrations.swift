import GRDB

/// The archive's SQL schema and its migrations.
///
/// Every replicated table carries guard triggers that call `outpost_direct_write_refused()`, a
/// function only an Outpost process registers: a write from any other program (the `sqlite3`
/// shell, a script) fails with "no such function: outpost_direct_write_refused" instead of
/// changing data that would never be captured and synced.
enum Migrations {
    static let guardFunction = "outpost_direct_write_refused"

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value) WITHOUT ROWID;
                    CREATE TABLE state (
                        id INTEGER PRIMARY KEY CHECK (id = 1),
                        clock INTEGER NOT NULL, sequence INTEGER NOT NULL);
                    INSERT INTO state(id, clock, sequence) VALUES (1, 0, 0);
                    CREATE TABLE sites (idx INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE);
                    CREATE TABLE counters (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
                    CREATE TABLE changelog (
                        seq INTEGER PRIMARY KEY,
                        tbl INTEGER NOT NULL, key BLOB NOT NULL, kind INTEGER NOT NULL,
                        hlc INTEGER NOT NULL, site INTEGER NOT NULL, body BLOB NOT NULL);
                    CREATE INDEX changelog_key ON changelog(key);
                    CREATE TABLE conflicts (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        tbl INTEGER NOT NULL, key BLOB NOT NULL,
                        winner_hlc INTEGER NOT NULL, winner_site TEXT NOT NULL,
                        loser_hlc INTEGER NOT NULL, loser_site TEXT NOT NULL,
                        fields BLOB NOT NULL,
                        seen_at INTEGER NOT NULL, restored_at INTEGER);
                    CREATE INDEX conflicts_key ON conflicts(key);
                    CREATE TABLE cursors (
                        peer TEXT PRIMARY KEY NOT NULL,
                        received_through INTEGER NOT NULL DEFAULT 0,
                        sent_through INTEGER NOT NULL DEFAULT 0,
                        last_seen INTEGER) WITHOUT ROWID;
                    CREATE TABLE quarantine (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        received_at INTEGER NOT NULL, producer TEXT NOT NULL, tbl INTEGER NOT NULL, key BLOB NOT NULL,
                        reason TEXT NOT NULL, change BLOB NOT NULL);
                    """)
            for table in Schema.tables where table.id <= 9 {
                // Schema 1's columns only: later migrations add theirs.
                let count = version1ColumnCount[table.id] ?? table.columns.count
                try createTable(TableSchema(id: table.id, name: table.name, kind: table.kind, columns: Array(table.columns.prefix(count))), db)
            }
            try db.execute(
                sql: """
                    CREATE INDEX customers_number ON customers(number);
                    CREATE INDEX contacts_customer ON contacts(customer_id);
                    CREATE INDEX complaints_customer ON complaints(customer_id);
                    CREATE INDEX complaints_number ON complaints(number);
                    CREATE INDEX complaint_notes_complaint ON complaint_notes(complaint_id);
                    CREATE INDEX complaint_transitions_complaint ON complaint_transitions(complaint_id);
                    CREATE INDEX claims_customer ON claims(customer_id);
                    CREATE INDEX claims_number ON claims(number);
                    CREATE INDEX claim_transitions_claim ON claim_transitions(claim_id);
                    CREATE INDEX claim_payments_claim ON claim_payments(claim_id);
                    """)
            let guarded = Schema.tables.filter { $0.id <= 9 }.map(\.name) + ["changelog", "conflicts", "quarantine", "state"]
            for name in guarded { try guardTable(name, db) }
        }
        m.registerMigration("v2") { db in
            try migrateToVersion2(db)
        }
        // Local, not replicated: the replicated schema stays 2.
        m.registerMigration("refused-changes") { db in
            try db.execute(
                sql: """
                    CREATE TABLE refused_changes (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        refused_at INTEGER NOT NULL, tbl INTEGER, key BLOB NOT NULL, hlc INTEGER,
                        reason TEXT NOT NULL, message TEXT NOT NULL);
                    CREATE INDEX refused_changes_write ON refused_changes(key, hlc) WHERE hlc IS NOT NULL;
                    """)
            try guardTable("refused_changes", db)
        }
        return m
    }

    /// Schema 2: columns appended to customers, contacts and settings; SLA rules and monthly
    /// figures; the search index; indexes the reports and duplicate finder need.
    static func migrateToVersion2(_ db: Database) throws {
        let added: [(TableSchema, [String])] = [
            (Schema.customers, ["city", "merged_into"]),
            (Schema.contacts, ["complaint_id"]),
            (Schema.complaints, ["acknowledge_minutes", "resolve_minutes"]),
            (Schema.settings, Array(Schema.settings.columns.dropFirst().map(\.name))),
        ]
        for (table, names) in added {
            for name in names {
                let type = table.columns[table.column(name)].type
                try db.execute(sql: "ALTER TABLE \(table.name) ADD COLUMN \"\(name)\" \(sqlType(type))")
            }
        }
        for table in [Schema.slaRules, Schema.figures] {
            try createTable(table, db)
            try guardTable(table.name, db)
        }
        try db.execute(
            sql: """
                CREATE INDEX customers_merged_into ON customers(merged_into) WHERE merged_into IS NOT NULL;
                CREATE INDEX complaints_waybill ON complaints(waybill);
                CREATE INDEX claims_waybill ON claims(waybill);
                CREATE INDEX contacts_complaint ON contacts(complaint_id) WHERE complaint_id IS NOT NULL;
                CREATE INDEX figures_customer ON figures(customer_id, month);
                UPDATE meta SET value = 2 WHERE key = 'schema';
                """)
        try SearchIndex.create(db)
    }

    /// Tables that gained columns after schema 1, with their schema 1 column count.
    static let version1ColumnCount: [UInt8: Int] = [
        Schema.customers.id: 23, Schema.contacts.id: 6, Schema.complaints.id: 9, Schema.settings.id: 1,
    ]

    static func sqlType(_ type: ColumnType) -> String {
        switch type {
        case .text: "TEXT"
        case .integer: "INTEGER"
        case .key: "BLOB"
        }
    }

    static func createTable(_ table: TableSchema, _ db: Database) throws {
        let columns = table.columns.map { "\"\($0.name)\" \(sqlType($0.type))" }.joined(separator: ", ")
        switch table.kind {
        case .registers:
            try db.execute(
                sql: """
                    CREATE TABLE \(table.name) (
                        id BLOB PRIMARY KEY NOT NULL, cl INTEGER NOT NULL, erased INTEGER NOT NULL,
                        clocks BLOB NOT NULL, \(columns)) WITHOUT ROWID
                    """)
        case .appendOnly:
            try db.execute(
                sql: """
                    CREATE TABLE \(table.name) (
                        id BLOB PRIMARY KEY NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL,
                        \(columns)) WITHOUT ROWID
                    """)
        }
    }

    static func guardTable(_ name: String, _ db: Database) throws {
        for event in ["INSERT", "UPDATE", "DELETE"] {
            try db.execute(
                sql: """
                    CREATE TRIGGER \(name)_guard_\(event.lowercased()) BEFORE \(event) ON \(name)
                    BEGIN SELECT \(guardFunction)(); END
                    """)
        }
    }
}
