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
        // Local, not replicated: scope (Archive+Scope.swift). In `scope_reasons`, stage 4 is a
        // closed complaint, 3 and 5 a rejected and a closed claim (Workflow.swift); a duplicate
        // and the customer it was merged into go together: the duplicate where that customer is
        // homed (reports count it there), that customer where the duplicate is homed (the
        // duplicate's branch works with it under its old number): through up to three merges,
        // as index lookups (a recursive query would walk every merged customer for each
        // customer reconciled). Headquarters keeps why each branch
        // holds each customer and every move it told a branch about; a branch keeps the
        // evictions it must wait with until headquarters has its own changes.
        m.registerMigration("scope") { db in
            try db.execute(
                sql: """
                    CREATE TABLE scope_served (
                        customer BLOB NOT NULL, site TEXT NOT NULL, served_at INTEGER NOT NULL,
                        PRIMARY KEY (customer, site)) WITHOUT ROWID;
                    CREATE INDEX scope_served_at ON scope_served(served_at);
                    CREATE TABLE scope_moves (
                        seq INTEGER PRIMARY KEY, site TEXT NOT NULL, customer BLOB NOT NULL, held INTEGER NOT NULL);
                    CREATE INDEX scope_moves_customer ON scope_moves(customer, site, seq);
                    CREATE INDEX scope_moves_site ON scope_moves(site, seq);
                    CREATE TABLE scope_evictions (customer BLOB PRIMARY KEY NOT NULL, since INTEGER NOT NULL) WITHOUT ROWID;
                    CREATE INDEX complaints_branch ON complaints(customer_id, branch);
                    CREATE INDEX claims_branch ON claims(customer_id, branch);
                    CREATE INDEX customers_home_branch ON customers(home_branch);
                    CREATE INDEX scope_served_site ON scope_served(site);
                    """)
            try db.execute(sql: scopeReasonsView(version: 1))
            for name in ["scope_served", "scope_moves", "scope_evictions"] { try guardTable(name, db) }
        }
        // Local, not replicated: write authority at headquarters (Session+Authority.swift).
        // `scope_homes` is each customer's home by the stamps of the writes that set it, so a
        // change is judged by the home at its own stamp; `scope_refusals` answers, in a
        // branch's stream, each of its changes headquarters refused, taking a log sequence as
        // moves do.
        m.registerMigration("authority") { db in
            try db.execute(
                sql: """
                    CREATE TABLE scope_homes (
                        customer BLOB NOT NULL, hlc INTEGER NOT NULL, home TEXT,
                        PRIMARY KEY (customer, hlc)) WITHOUT ROWID;
                    CREATE TABLE scope_refusals (
                        seq INTEGER PRIMARY KEY, site TEXT NOT NULL, customer BLOB NOT NULL,
                        tbl INTEGER NOT NULL, key BLOB NOT NULL, hlc INTEGER NOT NULL,
                        reason TEXT NOT NULL, message TEXT NOT NULL);
                    CREATE INDEX scope_refusals_site ON scope_refusals(site, seq);
                    """)
            for name in ["scope_homes", "scope_refusals"] { try guardTable(name, db) }
        }
        // Schema 3: assignments, replicated (written at headquarters only), and their reason.
        m.registerMigration("v3") { db in
            try createTable(Schema.assignments, db)
            try guardTable(Schema.assignments.name, db)
            try db.execute(
                sql: """
                    CREATE INDEX assignments_site ON assignments(site);
                    CREATE INDEX assignments_customer ON assignments(customer_id) WHERE customer_id IS NOT NULL;
                    CREATE INDEX assignments_home_branch ON assignments(home_branch) WHERE home_branch IS NOT NULL;
                    CREATE INDEX assignments_region ON assignments(region) WHERE region IS NOT NULL;
                    CREATE INDEX customers_region ON customers(region);
                    DROP VIEW scope_reasons;
                    UPDATE meta SET value = 3 WHERE key = 'schema';
                    """)
            try db.execute(sql: scopeReasonsView(version: 2))
        }
        // Local, not replicated: customers a branch's clerk fetched from headquarters
        // (`outpost customer fetch`), kept for `scope_fetched_days` after the last fetch.
        m.registerMigration("fetched") { db in
            try db.execute(
                sql: """
                    CREATE TABLE scope_fetched (
                        customer BLOB NOT NULL, site TEXT NOT NULL, fetched_at INTEGER NOT NULL,
                        PRIMARY KEY (customer, site)) WITHOUT ROWID;
                    CREATE INDEX scope_fetched_at ON scope_fetched(fetched_at);
                    CREATE INDEX scope_fetched_site ON scope_fetched(site);
                    DROP VIEW scope_reasons;
                    """)
            try guardTable("scope_fetched", db)
            try db.execute(sql: scopeReasonsView(version: 3))
        }
        // Local: a branch's scope in customer order, read from one index (a snapshot's parts,
        // Archive+Snapshot.swift): each customer's last move is the last entry of its run.
        m.registerMigration("scope-by-site") { db in
            try db.execute(sql: "CREATE INDEX scope_moves_site_customer ON scope_moves(site, customer, seq, held)")
        }
        return m
    }

    /// Why headquarters counts each customer in each branch's scope, one row per reason
    /// (Archive+Scope.swift), as each migration that changed it left it: 1 the first, 2 adds
    /// `assigned` (schema 3), 3 adds `fetched`.
    static func scopeReasonsView(version: Int) -> String {
        let base = """
            SELECT home_branch, id, 'homed' FROM customers WHERE home_branch IS NOT NULL
            UNION ALL SELECT site, customer, 'served' FROM scope_served
            UNION ALL SELECT c.branch, c.customer_id, 'open complaint' FROM complaints c
                WHERE c.branch IS NOT NULL AND c.customer_id IS NOT NULL AND c.cl % 2 = 1
                AND coalesce((SELECT t.stage FROM complaint_transitions t WHERE t.complaint_id = c.id
                    ORDER BY t.epoch DESC, t.stage DESC LIMIT 1), 0) < 4
            UNION ALL SELECT c.branch, c.customer_id, 'open claim' FROM claims c
                WHERE c.branch IS NOT NULL AND c.customer_id IS NOT NULL AND c.cl % 2 = 1
                AND coalesce((SELECT max(t.stage) FROM claim_transitions t WHERE t.claim_id = c.id), 0) NOT IN (3, 5)
            UNION ALL SELECT k.home_branch, d.id, 'merged' FROM customers d
                JOIN customers k ON k.id = d.merged_into
                WHERE d.merged_into IS NOT NULL AND k.home_branch IS NOT NULL
            UNION ALL SELECT k.home_branch, d.id, 'merged' FROM customers d
                JOIN customers m ON m.id = d.merged_into JOIN customers k ON k.id = m.merged_into
                WHERE d.merged_into IS NOT NULL AND m.merged_into IS NOT NULL AND k.home_branch IS NOT NULL
            UNION ALL SELECT k.home_branch, d.id, 'merged' FROM customers d
                JOIN customers m ON m.id = d.merged_into JOIN customers n ON n.id = m.merged_into
                JOIN customers k ON k.id = n.merged_into
                WHERE d.merged_into IS NOT NULL AND m.merged_into IS NOT NULL AND n.merged_into IS NOT NULL
                AND k.home_branch IS NOT NULL
            UNION ALL SELECT d.home_branch, d.merged_into, 'merged' FROM customers d
                WHERE d.merged_into IS NOT NULL AND d.home_branch IS NOT NULL
            UNION ALL SELECT d.home_branch, m.merged_into, 'merged' FROM customers d
                JOIN customers m ON m.id = d.merged_into
                WHERE d.merged_into IS NOT NULL AND m.merged_into IS NOT NULL AND d.home_branch IS NOT NULL
            UNION ALL SELECT d.home_branch, n.merged_into, 'merged' FROM customers d
                JOIN customers m ON m.id = d.merged_into JOIN customers n ON n.id = m.merged_into
                WHERE d.merged_into IS NOT NULL AND m.merged_into IS NOT NULL AND n.merged_into IS NOT NULL
                AND d.home_branch IS NOT NULL
            """
        let assigned = """
            UNION ALL SELECT a.site, a.customer_id, 'assigned' FROM assignments a
                WHERE a.cl % 2 = 1 AND a.site IS NOT NULL AND a.customer_id IS NOT NULL
            UNION ALL SELECT a.site, c.id, 'assigned' FROM assignments a JOIN customers c ON c.home_branch = a.home_branch
                WHERE a.cl % 2 = 1 AND a.site IS NOT NULL AND a.home_branch IS NOT NULL
            UNION ALL SELECT a.site, c.id, 'assigned' FROM assignments a JOIN customers c ON c.region = a.region
                WHERE a.cl % 2 = 1 AND a.site IS NOT NULL AND a.region IS NOT NULL
            """
        let fetched = """
            UNION ALL SELECT site, customer, 'fetched' FROM scope_fetched
            """
        return "CREATE VIEW scope_reasons(site, customer, reason) AS\n" + base + (version >= 2 ? "\n" + assigned : "")
            + (version >= 3 ? "\n" + fetched : "")
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
