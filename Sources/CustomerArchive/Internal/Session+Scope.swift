import Foundation
import GRDB
import Replication

/// A record a transaction at headquarters changed, and the site whose change it was.
struct ScopeTouch: Hashable {
    var table: UInt8
    var key: RecordKey
    var origin: SiteID
}

/// Whom a record belongs to for scope: every branch (settings, SLA rules), one customer (the
/// customer itself and everything hanging off it, by headquarters' current links), or nobody
/// known yet (a dependant whose parent has not arrived).
enum ScopeOwner: Hashable {
    case everyone
    case customer(RecordKey)
    case unknown
}

extension Session {
    /// How long a branch keeps a customer it served (a contact, complaint, claim or edit it
    /// recorded) after its last such change reached headquarters, unless the archive's
    /// `scope_served_days` says otherwise.
    static let defaultServedDays: Int64 = 90

    /// The served window in days: the archive's `scope_served_days`, or the default.
    static func servedDays(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'scope_served_days'") ?? defaultServedDays
    }

    /// How long a branch keeps a customer its clerk fetched (`outpost customer fetch`) after
    /// the last fetch, unless the archive's `scope_fetched_days` says otherwise.
    static let defaultFetchedDays: Int64 = 7

    static func fetchedDays(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'scope_fetched_days'") ?? defaultFetchedDays
    }

    /// The SQL that finds a record's customer, by table; tables absent here belong to everyone.
    static let ownerSQL: [UInt8: String] = [
        Schema.contacts.id: "SELECT customer_id FROM contacts WHERE id = ?",
        Schema.complaints.id: "SELECT customer_id FROM complaints WHERE id = ?",
        Schema.complaintNotes.id:
            "SELECT c.customer_id FROM complaint_notes n JOIN complaints c ON c.id = n.complaint_id WHERE n.id = ?",
        Schema.complaintTransitions.id:
            "SELECT c.customer_id FROM complaint_transitions n JOIN complaints c ON c.id = n.complaint_id WHERE n.id = ?",
        Schema.claims.id: "SELECT customer_id FROM claims WHERE id = ?",
        Schema.claimTransitions.id: "SELECT c.customer_id FROM claim_transitions n JOIN claims c ON c.id = n.claim_id WHERE n.id = ?",
        Schema.claimPayments.id: "SELECT c.customer_id FROM claim_payments n JOIN claims c ON c.id = n.claim_id WHERE n.id = ?",
        Schema.figures.id: "SELECT customer_id FROM figures WHERE id = ?",
    ]

    /// The customer a record hangs off, by the links this archive holds now.
    static func owner(table: UInt8, key: RecordKey, _ db: Database) throws -> ScopeOwner {
        if table == Schema.customers.id { return .customer(key) }
        guard let sql = ownerSQL[table] else { return .everyone }
        guard let data = try Data.fetchOne(try db.cachedStatement(sql: sql), arguments: [key.data]), data.count == 16 else { return .unknown }
        return .customer(RecordKey(data: data))
    }

    /// Brings every branch's scope up to date with what this transaction changed: a branch that
    /// wrote for a customer has served it, and every customer touched is reconciled.
    mutating func updateScope() throws {
        let touched = scopeTouched
        scopeTouched = []
        // When the branch last served the customer, on headquarters' clock: the served window
        // runs from here (``Archive/expireScope()``), whatever the window is when it is judged.
        let now = Int64(clamping: wall)
        let serve = try db.cachedStatement(
            sql: """
                INSERT INTO scope_served(customer, site, served_at) VALUES (?, ?, ?)
                ON CONFLICT(customer, site) DO UPDATE SET served_at = max(served_at, excluded.served_at)
                """)
        var customers: [RecordKey] = []
        var seen: Set<RecordKey> = []
        for touch in touched {
            if touch.table == Schema.assignments.id {
                // An assignment given or withdrawn: every customer it names, by its fields.
                for d in try assignedCustomers(touch.key) where seen.insert(RecordKey(data: d)).inserted { customers.append(RecordKey(data: d)) }
                continue
            }
            guard case .customer(let customer) = try Self.owner(table: touch.table, key: touch.key, db) else { continue }
            if touch.origin != core.headquarters { try serve.execute(arguments: [customer.data, touch.origin.code, now]) }
            if seen.insert(customer).inserted { customers.append(customer) }
        }
        // Customers merged into a touched one, and those it was merged into, share reasons with
        // it (the view's `merged`): reconcile them too.
        let merged = try db.cachedStatement(sql: "SELECT id FROM customers WHERE merged_into = ?")
        let into = try db.cachedStatement(sql: "SELECT merged_into FROM customers WHERE id = ? AND merged_into IS NOT NULL")
        var i = 0
        while i < customers.count && i < 100_000 {
            let related = try Data.fetchAll(merged, arguments: [customers[i].data]) + Data.fetchAll(into, arguments: [customers[i].data])
            for d in related where d.count == 16 && seen.insert(RecordKey(data: d)).inserted {
                customers.append(RecordKey(data: d))
            }
            i += 1
        }
        for customer in customers { try reconcileScope(of: customer) }
    }

    /// The customers an assignment record names (whether it is in force or withdrawn).
    func assignedCustomers(_ assignment: RecordKey) throws -> [Data] {
        guard
            let row = try Row.fetchOne(
                try db.cachedStatement(sql: "SELECT customer_id, home_branch, region FROM assignments WHERE id = ?"), arguments: [assignment.data])
        else { return [] }
        if let customer = row[0] as Data?, customer.count == 16 { return [customer] }
        if let home = row[1] as String? {
            return try Data.fetchAll(try db.cachedStatement(sql: "SELECT id FROM customers WHERE home_branch = ?"), arguments: [home])
        }
        if let region = row[2] as String? {
            return try Data.fetchAll(try db.cachedStatement(sql: "SELECT id FROM customers WHERE region = ?"), arguments: [region])
        }
        return []
    }

    /// Records a move for every branch whose holding of `customer` differs from its reasons:
    /// in when it has a reason and was not told it holds the customer, out the other way.
    /// Each move takes the next sequence of the log, so a branch's cursor covers it.
    mutating func reconcileScope(of customer: RecordKey) throws {
        var wanted: Set<String> = []
        for code in try String.fetchAll(
            try db.cachedStatement(sql: "SELECT DISTINCT site FROM scope_reasons WHERE customer = ?"), arguments: [customer.data])
        where code != core.headquarters.code && (try? SiteID(code)) != nil {
            wanted.insert(code)
        }
        var held: Set<String> = []
        for row in try Row.fetchAll(
            try db.cachedStatement(
                sql: """
                    SELECT site, held FROM scope_moves m WHERE customer = ?
                    AND seq = (SELECT max(seq) FROM scope_moves WHERE customer = m.customer AND site = m.site)
                    """), arguments: [customer.data])
        where (row[1] as Int64) != 0 {
            held.insert(row[0])
        }
        guard wanted != held else { return }
        let move = try db.cachedStatement(sql: "INSERT INTO scope_moves(seq, site, customer, held) VALUES (?, ?, ?, ?)")
        for site in wanted.subtracting(held).sorted() {
            sequence += 1
            // A customer a branch created in this transaction is whole there already: the move
            // needs no state (held 2), so a branch's new customers are not sent back to it.
            let known = scopeBorn[customer]?.code == site
            try move.execute(arguments: [sequence, site, customer.data, known ? 2 : 1])
        }
        for site in held.subtracting(wanted).sorted() {
            sequence += 1
            try move.execute(arguments: [sequence, site, customer.data, 0])
        }
    }

    // MARK: Eviction (at a branch)

    /// The keys of a customer's record and of everything hanging off it here, by table.
    func holding(of customer: RecordKey) throws -> [(TableSchema, [Data])] {
        let c = customer.data
        // Cached: a move in of many customers runs these for each one.
        func keys(_ sql: String) throws -> [Data] { try Data.fetchAll(try db.cachedStatement(sql: sql), arguments: [c]) }
        let complaints = "SELECT id FROM complaints WHERE customer_id = ?"
        let claims = "SELECT id FROM claims WHERE customer_id = ?"
        return [
            (Schema.customers, try keys("SELECT id FROM customers WHERE id = ?")),
            (Schema.contacts, try keys("SELECT id FROM contacts WHERE customer_id = ?")),
            (Schema.figures, try keys("SELECT id FROM figures WHERE customer_id = ?")),
            (Schema.complaints, try keys(complaints)),
            (Schema.complaintNotes, try keys("SELECT id FROM complaint_notes WHERE complaint_id IN (\(complaints))")),
            (Schema.complaintTransitions, try keys("SELECT id FROM complaint_transitions WHERE complaint_id IN (\(complaints))")),
            (Schema.claims, try keys(claims)),
            (Schema.claimTransitions, try keys("SELECT id FROM claim_transitions WHERE claim_id IN (\(claims))")),
            (Schema.claimPayments, try keys("SELECT id FROM claim_payments WHERE claim_id IN (\(claims))")),
        ]
    }

    /// ``holding(of:)`` for many customers at once, a statement per table and chunk of
    /// customers instead of per customer (a snapshot part names thousands).
    func holding(ofCustomers customers: [RecordKey]) throws -> [RecordKey: [(TableSchema, [Data])]] {
        let complaints = "SELECT id, customer_id FROM complaints"
        let claims = "SELECT id, customer_id FROM claims"
        // Each table's keys and the customer each belongs to, for the customers in `?…`.
        let queries: [(TableSchema, (String) -> String)] = [
            (Schema.customers, { "SELECT id, id FROM customers WHERE id IN (\($0))" }),
            (Schema.contacts, { "SELECT id, customer_id FROM contacts WHERE customer_id IN (\($0))" }),
            (Schema.figures, { "SELECT id, customer_id FROM figures WHERE customer_id IN (\($0))" }),
            (Schema.complaints, { "SELECT id, customer_id FROM complaints WHERE customer_id IN (\($0))" }),
            (
                Schema.complaintNotes,
                { "SELECT n.id, c.customer_id FROM complaint_notes n JOIN (\(complaints)) c ON c.id = n.complaint_id WHERE c.customer_id IN (\($0))" }
            ),
            (
                Schema.complaintTransitions,
                {
                    "SELECT n.id, c.customer_id FROM complaint_transitions n JOIN (\(complaints)) c ON c.id = n.complaint_id WHERE c.customer_id IN (\($0))"
                }
            ),
            (Schema.claims, { "SELECT id, customer_id FROM claims WHERE customer_id IN (\($0))" }),
            (
                Schema.claimTransitions,
                { "SELECT n.id, c.customer_id FROM claim_transitions n JOIN (\(claims)) c ON c.id = n.claim_id WHERE c.customer_id IN (\($0))" }
            ),
            (
                Schema.claimPayments,
                { "SELECT n.id, c.customer_id FROM claim_payments n JOIN (\(claims)) c ON c.id = n.claim_id WHERE c.customer_id IN (\($0))" }
            ),
        ]
        var found: [RecordKey: [[Data]]] = [:]
        for customer in customers { found[customer] = Array(repeating: [], count: queries.count) }
        var start = 0
        while start < customers.count {
            let chunk = customers[start..<min(customers.count, start + 500)]
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ", ")
            for (t, entry) in queries.enumerated() {
                let sql = entry.1(marks)
                var statement = RawStatement(chunk.count == 500 ? try db.cachedStatement(sql: sql) : try db.makeStatement(sql: sql))
                for customer in chunk { statement.bind(customer) }
                defer { statement.done() }
                while try statement.step(db) {
                    guard let owner = statement.key(1), let id = statement.key(0) else { continue }
                    found[owner]?[t].append(id.data)
                }
            }
            start += 500
        }
        return found.mapValues { lists in zip(queries, lists).map { ($0.0, $1) } }
    }

    /// Evicts a customer headquarters no longer counts in this branch's scope: a local purge of
    /// the replica (no change is logged or travels), scrubbed like an erasure. When this site
    /// has changes to it that headquarters has not acknowledged, nothing is purged: the
    /// eviction waits in `scope_evictions` until they are (``Archive/acknowledgeSent(to:through:)``).
    /// - Returns: whether the customer was purged now.
    /// - Parameter waiting: when the site has changes to the customer headquarters has not
    ///   acknowledged, queue the eviction (true) or leave the customer alone (false: a snapshot,
    ///   where those changes, once at headquarters, decide whether the branch holds it).
    /// - Parameter acknowledged: at most this much of this site's log counts as acknowledged
    ///   (a snapshot part: what headquarters had acknowledged before it read the part; a later
    ///   acknowledgement may cover writes that entered the scope after the part's cut).
    @discardableResult
    mutating func evict(_ customer: RecordKey, waiting: Bool = true, acknowledged: UInt64 = .max) throws -> Bool {
        let holding = try holding(of: customer)
        if try hasUnacknowledgedChanges(holding, acknowledged: acknowledged) {
            if waiting {
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO scope_evictions(customer, since) VALUES (?, ?)").execute(
                    arguments: [customer.data, Int64(clamping: wall)])
            }
            return false
        }
        for (table, keys) in holding where !keys.isEmpty {
            let delete = try db.cachedStatement(sql: "DELETE FROM \(table.name) WHERE id = ?")
            for key in keys {
                try delete.execute(arguments: [key])
                // What this site wrote about the customer (acknowledged, or it would not be
                // purged), what lost to it and what waits in quarantine go with it.
                try db.cachedStatement(sql: "DELETE FROM changelog WHERE key = ?").execute(arguments: [key])
                try db.cachedStatement(sql: "DELETE FROM conflicts WHERE key = ?").execute(arguments: [key])
                try db.cachedStatement(sql: "DELETE FROM quarantine WHERE key = ?").execute(arguments: [key])
            }
        }
        try SearchIndex.remove(customer.data, db)
        try db.cachedStatement(sql: "DELETE FROM scope_evictions WHERE customer = ?").execute(arguments: [customer.data])
        searchPurge = true
        needsCheckpoint = true
        return true
    }

    /// Whether this site logged a change to any of the records that headquarters has not
    /// acknowledged.
    func hasUnacknowledgedChanges(_ holding: [(TableSchema, [Data])], acknowledged limit: UInt64 = .max) throws -> Bool {
        let sent =
            try Int64.fetchOne(
                try db.cachedStatement(sql: "SELECT sent_through FROM cursors WHERE peer = ?"), arguments: [core.headquarters.code]) ?? 0
        let acknowledged = min(sent, Int64(clamping: limit))
        let unacknowledged = try db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM changelog WHERE key = ? AND seq > ?)")
        for (_, keys) in holding {
            for key in keys where try Bool.fetchOne(unacknowledged, arguments: [key, acknowledged]) == true { return true }
        }
        return false
    }
}
