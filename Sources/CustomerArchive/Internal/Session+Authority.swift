import Foundation
import GRDB
import Replication

/// Write authority and durable refusals (DESIGN, "HQ is the door", "Authority is judged at the
/// change's stamp", "Refusals are durable"; protocols/README.md §5.6).
///
/// A customer's identifying fields (``Schema/homeOnlyCustomerColumns``), its home branch, its
/// existence and its erasure are written by its home branch or headquarters. Headquarters
/// judges every branch's change to them at its door, by the home at the change's own stamp
/// (an edit the home branch made before headquarters re-homed the customer, by clock, stands)
/// or the home now. A refused change is dropped at headquarters and answered in the branch's
/// stream (`scope_refusals`, a log sequence like a move), where the branch journals it and
/// resets its copy of the customer to headquarters' state.
extension Session {
    /// Why headquarters refuses `change` to customer `key`, whose state at headquarters is
    /// `state`: its origin may not write what it writes; nil when it may.
    func homeProblem(_ change: Change, state: RecordState?) throws -> String? {
        guard change.table == Schema.customers.id, change.origin != core.headquarters, let state else { return nil }
        switch change.body {
        case .fields(let writes):
            guard writes.contains(where: { Schema.homeOnlyCustomerColumns.contains($0.column) }) else { return nil }
        case .existence, .erase:
            break
        case .append:
            return nil
        }
        let column = Schema.customers.column("home_branch")
        let current = state.registers[column]
        if current?.value.textValue == change.origin.code { return nil }
        if let current, change.stamp < current.stamp {
            // Written before the customer's latest re-home (by clock): judged by the home then.
            let then = try String.fetchOne(
                try db.cachedStatement(sql: "SELECT home FROM scope_homes WHERE customer = ? AND hlc <= ? ORDER BY hlc DESC LIMIT 1"),
                arguments: [change.key.data, Int64(bitPattern: change.stamp.time.rawValue)])
            if then == change.origin.code { return nil }
        }
        let number = state.registers[Schema.customers.column("number")]?.value.textValue.map { String($0.prefix(64)) }
        let home = current?.value.textValue.flatMap { try? SiteID($0) }?.code ?? "headquarters"
        return "customer \(number ?? change.key.description) is homed at \(home): only its home branch or headquarters may change its "
            + "number, kind, name, contact person, phone, e-mail, address or home branch, delete or erase it, and \(change.origin) "
            + "was not its home when it wrote this"
    }

    /// Keeps, at headquarters, the home each write of a customer's `home_branch` set, by its
    /// stamp, so a later change is judged by the home at its own stamp.
    mutating func recordHomes(of key: RecordKey, _ changes: some Collection<Change>, existing: RecordState?) throws {
        let column = Schema.customers.column("home_branch")
        var writes: [(Timestamp, String?)] = []
        for change in changes {
            guard case .fields(let fields) = change.body, let write = fields.first(where: { $0.column == column }) else { continue }
            writes.append((change.stamp.time, write.value.textValue))
        }
        // A customer's first home needs no row: its register holds it until it is re-homed.
        guard writes.count > 1 || (writes.count == 1 && existing?.registers[column] != nil) else { return }
        let insert = try db.cachedStatement(sql: "INSERT OR IGNORE INTO scope_homes(customer, hlc, home) VALUES (?, ?, ?)")
        if let previous = existing?.registers[column],
            try Bool.fetchOne(try db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM scope_homes WHERE customer = ?)"), arguments: [key.data])
                == false
        {
            // The home before the first re-home headquarters saw after this table existed.
            try insert.execute(arguments: [key.data, Int64(bitPattern: previous.stamp.time.rawValue), previous.value.textValue])
        }
        for (time, home) in writes { try insert.execute(arguments: [key.data, Int64(bitPattern: time.rawValue), home]) }
    }

    /// The customer a change belongs to: by the links headquarters holds, or, for a record it
    /// does not hold yet (a refused new one), by the link in the change itself.
    func owner(of change: Change) throws -> RecordKey? {
        switch try Self.owner(table: change.table, key: change.key, db) {
        case .customer(let customer): return customer
        case .everyone: return nil
        case .unknown: break
        }
        guard let table = Schema.table(change.table) else { return nil }
        let values: [(Int, Value)]
        switch change.body {
        case .fields(let writes): values = writes.map { ($0.column, $0.value) }
        case .append(let given): values = given.map { ($0.column, $0.value) }
        case .existence, .erase: return nil
        }
        func link(_ name: String) -> RecordKey? {
            guard let column = table.columnIndex[name], let value = values.first(where: { $0.0 == column })?.1.keyValue else { return nil }
            return value
        }
        if let customer = link("customer_id") { return customer }
        if let complaint = link("complaint_id"), case .customer(let c) = try Self.owner(table: Schema.complaints.id, key: complaint, db) {
            return c
        }
        if let claim = link("claim_id"), case .customer(let c) = try Self.owner(table: Schema.claims.id, key: claim, db) { return c }
        return nil
    }

    /// Answers a branch's change headquarters refused in that branch's stream: the refusal
    /// takes the next log sequence, and the branch's pull carries it with headquarters' state
    /// of the customer (``Archive/exportChanges(for:after:includeOwn:refusals:limit:maxBytes:)``).
    /// Changes that belong to no customer (settings, SLA rules) need no answer: every site
    /// refuses them alike.
    mutating func recordRefusal(_ change: Change, _ kind: ChangeRefusal.Kind, _ message: String) throws {
        guard core.role == .hq, change.origin != core.headquarters, let customer = try owner(of: change) else { return }
        sequence += 1
        try db.cachedStatement(
            sql: "INSERT INTO scope_refusals(seq, site, customer, tbl, key, hlc, reason, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ).execute(arguments: [
            sequence, change.origin.code, customer.data, Int64(change.table), change.key.data,
            Int64(bitPattern: change.stamp.time.rawValue), kind.rawValue, String(message.prefix(1_000)),
        ])
    }
}

extension Session {
    // MARK: At a branch

    /// Takes headquarters' answer to this site's refused changes, before the set carrying the
    /// customers' state merges: each refusal is journaled (`outpost changes refused`; a
    /// journaled write is never pushed again, even by a restored backup), and each customer's
    /// rows here are removed, so headquarters' state replaces them whatever their stamps.
    /// - Returns: the keys removed, for ``replayUnacknowledged(_:)`` once the set merged.
    /// A customer in `leaving` (headquarters no longer counts it in this branch's scope) goes
    /// as an eviction goes: what headquarters acknowledged of it leaves the log and journals too.
    mutating func resetRefused(_ refused: [RefusedWrite], leaving: Set<RecordKey>) throws -> [Data] {
        try journalRefused(refused)
        var customers: [RecordKey] = []
        var seen: Set<RecordKey> = []
        for r in refused where seen.insert(r.customer).inserted { customers.append(r.customer) }
        let acknowledged =
            try Int64.fetchOne(
                try db.cachedStatement(sql: "SELECT sent_through FROM cursors WHERE peer = ?"), arguments: [core.headquarters.code]) ?? 0
        var removed: [Data] = []
        for customer in customers {
            let evicted = leaving.contains(customer)
            for (table, keys) in try holding(of: customer) where !keys.isEmpty {
                let delete = try db.cachedStatement(sql: "DELETE FROM \(table.name) WHERE id = ?")
                for key in keys {
                    try delete.execute(arguments: [key])
                    removed.append(key)
                    guard evicted else { continue }
                    try db.cachedStatement(sql: "DELETE FROM changelog WHERE key = ? AND seq <= ?").execute(arguments: [key, acknowledged])
                    try db.cachedStatement(sql: "DELETE FROM conflicts WHERE key = ?").execute(arguments: [key])
                    try db.cachedStatement(sql: "DELETE FROM quarantine WHERE key = ?").execute(arguments: [key])
                    needsCheckpoint = true
                }
            }
            // A refused value may be personal data (a mistyped phone): no segment keeps it.
            try SearchIndex.remove(customer.data, db)
            searchPurge = true
        }
        return removed
    }

    /// Journals refusals headquarters answered in its stream, each once (by record and clock).
    func journalRefused(_ refused: [RefusedWrite]) throws {
        guard !refused.isEmpty else { return }
        let journal = try db.cachedStatement(
            sql: """
                INSERT INTO refused_changes(refused_at, tbl, key, hlc, reason, message) SELECT ?, ?, ?, ?, ?, ?
                WHERE NOT EXISTS (SELECT 1 FROM refused_changes WHERE key = ? AND hlc = ?)
                """)
        for r in refused {
            let hlc = Int64(bitPattern: r.time.rawValue)
            try journal.execute(arguments: [
                Int64(clamping: wall), Int64(r.table), r.record.data, hlc, String(r.reason.prefix(64)), String(r.message.prefix(1_000)),
                r.record.data, hlc,
            ])
        }
    }

    /// Merges again, without logging, this site's changes to `keys` that headquarters has not
    /// acknowledged (they wait to be pushed, and will be judged then) over headquarters' state,
    /// leaving out every refused write.
    ///
    /// `acknowledged` bounds what counts as acknowledged: what headquarters had acknowledged
    /// before it read the state being merged. A push acknowledged after that read is not in
    /// the state, and a branch's own changes never come back in its pull, so they must be
    /// merged again here (merging what the state already holds changes nothing).
    mutating func replayUnacknowledged(_ keys: [Data], acknowledged limit: UInt64 = .max) throws {
        guard !keys.isEmpty else { return }
        let sent =
            try Int64.fetchOne(
                try db.cachedStatement(sql: "SELECT sent_through FROM cursors WHERE peer = ?"), arguments: [core.headquarters.code]) ?? 0
        let acknowledged = min(sent, Int64(clamping: limit))
        let read = try db.cachedStatement(
            sql: """
                SELECT seq, tbl, key, kind, hlc, site, body FROM changelog WHERE key = ? AND seq > ?
                AND NOT EXISTS (SELECT 1 FROM refused_changes r WHERE r.key = changelog.key AND r.hlc = changelog.hlc) ORDER BY seq
                """)
        var decoder = Archive.LogDecoder(core: core, db: db)
        for key in keys {
            for row in try Row.fetchAll(read, arguments: [key, acknowledged]) {
                for change in try decoder.changes(row) { try merge(change, log: false) }
            }
        }
    }
}
