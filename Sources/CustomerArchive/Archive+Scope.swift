import Foundation
import GRDB
import Replication

/// What headquarters tells a branch about its scope along with a change set: customers that
/// entered it (their current state is in the set) and customers that left it (to evict).
public struct ScopeMoves: Sendable, Hashable {
    public var movedIn: [RecordKey]
    public var evicted: [RecordKey]
    /// The branch's own changes headquarters refused at its door, answered in its stream: the
    /// branch journals each and resets its copy of the customer to headquarters' state, which
    /// the set carries when the branch holds the customer.
    public var refused: [RefusedWrite]

    public init(movedIn: [RecordKey] = [], evicted: [RecordKey] = [], refused: [RefusedWrite] = []) {
        self.movedIn = movedIn
        self.evicted = evicted
        self.refused = refused
    }

    public var isEmpty: Bool { movedIn.isEmpty && evicted.isEmpty && refused.isEmpty }
}

/// A branch's change headquarters refused, as its stream (or its file's scope section) answers
/// it: the refused change's table, record and clock reading, the customer the branch resets,
/// and the refusal's name and headquarters' words.
public typealias RefusedWrite = ChangeSet.Scope.Refusal

/// Why headquarters counts a customer in a branch's scope.
public struct ScopeEntry: Sendable, Hashable, Codable {
    public var site: String
    public var customer: String
    public var number: String?
    /// `homed`, `served`, `open complaint`, `open claim`.
    public var reasons: [String]
}

/// Scope (DESIGN, "Who holds what", "Scope belongs to HQ", "Eviction is local").
///
/// Headquarters holds everything. A branch holds the customers headquarters counts in its scope
/// (homed at it; served by it: any change it recorded for them, for `scope_served_days` after
/// the last one reached headquarters, and while a complaint or claim filed there is open),
/// everything hanging off them by headquarters' links, and every settings and SLA record.
///
/// Headquarters decides scope from its own records and the sites of the changes it merged,
/// never from a payload. Every transaction that changes a customer reconciles it: each branch
/// whose reasons and holding differ gets a *move* (in or out) that takes the next sequence of
/// headquarters' log, so a branch's cursor covers its moves as it covers changes. A branch's
/// pull (``exportChanges(for:after:includeOwn:limit:maxBytes:)``) carries the log's changes to
/// customers it held at their sequence, and for each move in the customer's current state
/// (not its history) or an eviction. A branch evicts locally, never with a change that travels,
/// and only once headquarters holds what the branch wrote about the customer.
extension Archive {
    // MARK: Headquarters

    /// A change set of headquarters' log after `after` restricted to `site`'s scope, and the
    /// moves of that scope in the same range.
    ///
    /// A change to a customer (or to anything hanging off it) is included when the site held
    /// the customer at the change's sequence; a move in adds the customer's current state
    /// with its dependants; a move out names the customer to evict. When a customer moves
    /// more than once in the range, its last move counts. The site's own changes are left out
    /// unless `includeOwn` (a branch recovering from a restore). The set's range always covers
    /// the whole log up to `through`, changes and moves alike.
    ///
    /// With `refusals` (protocol 3), the site's changes headquarters refused in the range come
    /// too, each with the customer's current state when the site holds it, so the branch can
    /// reset its copy (``RefusedWrite``).
    public func exportChanges(
        for site: SiteID, after: UInt64, includeOwn: Bool = false, refusals: Bool = true, limit: Int = .max, maxBytes: Int = .max
    ) throws -> (set: ChangeSet, moves: ScopeMoves) {
        try writer.read { db in
            let session = try Session(db: db, core: core)
            // Moves take sequences of the log too, so its end covers them.
            let end = max(after, try Self.logEnd(db))
            var logFilter = ""
            var logArguments: StatementArguments = [Int64(bitPattern: after)]
            if !includeOwn, let index = try core.sites.existingIndex(of: site, in: db) {
                logFilter = " AND site != ?"
                _ = logArguments.append(contentsOf: [index])
            }
            let log = try Row.fetchCursor(
                db, sql: "SELECT seq, tbl, key, kind, hlc, site, body FROM changelog WHERE seq > ?\(logFilter) ORDER BY seq",
                arguments: logArguments)
            let moves = try Row.fetchCursor(
                db, sql: "SELECT seq, customer, held FROM scope_moves WHERE site = ? AND seq > ? ORDER BY seq",
                arguments: [site.code, Int64(bitPattern: after)])
            let refused = try Row.fetchCursor(
                db,
                sql: "SELECT seq, customer, tbl, key, hlc, reason, message FROM scope_refusals WHERE site = ? AND seq > ? AND ? ORDER BY seq",
                arguments: [site.code, Int64(bitPattern: after), refusals])
            let heldAt = try db.cachedStatement(
                sql: "SELECT held FROM scope_moves WHERE customer = ? AND site = ? AND seq < ? ORDER BY seq DESC LIMIT 1")
            var decoder = LogDecoder(core: core, db: db)
            var changes: [Change] = []
            /// The customer each change of `changes` belongs to (nil: everyone's).
            var owners: [RecordKey?] = []
            /// The last move of each customer in the range: its state (moved in) or nil (out).
            var moved: [RecordKey: [Change]?] = [:]
            var order: [RecordKey] = []
            var count = 0
            var bytes = 0
            var through = after
            var nextLog = try log.next()?.copy()
            var nextMove = try moves.next()?.copy()
            var nextRefusal = try refused.next()?.copy()
            /// Customers a refusal resets: the branch needs their state, whatever moved before.
            var resets: Set<RecordKey> = []
            var result = ScopeMoves()
            var last: (key: Data, time: Int64)?
            while nextLog != nil || nextMove != nil || nextRefusal != nil {
                let logSeq = nextLog.map { $0[0] as Int64 } ?? .max
                let moveSeq = nextMove.map { $0[0] as Int64 } ?? .max
                let refusalSeq = nextRefusal.map { $0[0] as Int64 } ?? .max
                if refusalSeq < logSeq && refusalSeq < moveSeq, let row = nextRefusal {
                    if count >= limit || bytes >= maxBytes { break }
                    nextRefusal = try refused.next()?.copy()
                    through = UInt64(refusalSeq)
                    last = nil
                    guard let write = Self.refusedWrite(row, from: 1) else { continue }
                    let customer = write.customer
                    if moved[customer] == nil { order.append(customer) }
                    resets.insert(customer)
                    // Held: the branch gets headquarters' state of the customer to reset to;
                    // not held: it keeps nothing of it but what headquarters has not seen yet.
                    if (try Int64.fetchOne(heldAt, arguments: [customer.data, site.code, refusalSeq]) ?? 0) != 0 {
                        let state = try currentState(ofCustomer: customer, session)
                        moved[customer] = .some(state)
                        count += state.count
                        bytes += state.reduce(0) { $0 + Self.approximateSize($1) }
                    } else {
                        moved[customer] = .some(nil)
                    }
                    result.refused.append(write)
                } else if logSeq < moveSeq, let row = nextLog {
                    let keyData: Data = row[2]
                    let rawTime: Int64 = row[4]
                    // Never cut between changes one write made together.
                    if count >= limit || bytes >= maxBytes, !(last?.key == keyData && last?.time == rawTime) { break }
                    nextLog = try log.next()?.copy()
                    through = UInt64(logSeq)
                    last = (keyData, rawTime)
                    let table = UInt8(clamping: row[1] as Int64)
                    let key = RecordKey(data: keyData)
                    var owner: RecordKey?
                    switch try Session.owner(table: table, key: key, db) {
                    case .everyone: break
                    case .unknown: continue
                    case .customer(let customer):
                        let held = try Int64.fetchOne(heldAt, arguments: [customer.data, site.code, logSeq]) ?? 0
                        guard held != 0 else { continue }
                        owner = customer
                    }
                    let decoded = try decoder.changes(row)
                    changes += decoded
                    owners += repeatElement(owner, count: decoded.count)
                    count += decoded.count
                    bytes += (row[6] as Data).count + 32
                } else if let row = nextMove {
                    if count >= limit || bytes >= maxBytes { break }
                    nextMove = try moves.next()?.copy()
                    through = UInt64(moveSeq)
                    last = nil
                    let customer = RecordKey(data: row[1])
                    if moved[customer] == nil { order.append(customer) }
                    if (row[2] as Int64) == 2 && !includeOwn && !resets.contains(customer) {
                        // In, and the branch already holds all of it (it created the customer);
                        // a branch restored from a backup may not, and gets its state.
                        moved[customer] = .some([])
                    } else if (row[2] as Int64) != 0 {
                        let state = try currentState(ofCustomer: customer, session)
                        moved[customer] = .some(state)
                        count += state.count
                        bytes += state.reduce(0) { $0 + Self.approximateSize($1) }
                    } else {
                        moved[customer] = .some(nil)
                    }
                }
            }
            if nextLog == nil && nextMove == nil && nextRefusal == nil { through = end }
            // A customer whose last move here is out is evicted when the set commits: its
            // changes from before would only leave a part of it (what hangs off a record the
            // branch never got) behind.
            if moved.values.contains(where: { $0 == nil }) {
                changes = zip(changes, owners).compactMap { change, owner in
                    guard let owner, let last = moved[owner], last == nil else { return change }
                    return nil
                }
            }
            for customer in order {
                if let state = moved[customer] ?? nil {
                    changes += state
                    if !state.isEmpty { result.movedIn.append(customer) }
                } else {
                    result.evicted.append(customer)
                }
            }
            return (ChangeSet(producer: core.site, schemaVersion: Schema.version, after: after, through: through, changes: changes), result)
        }
    }

    /// A `scope_refusals` row's refusal, from its columns `customer, tbl, key, hlc, reason,
    /// message` starting at `offset`; nil when a key is not 16 bytes.
    static func refusedWrite(_ row: Row, from offset: Int) -> RefusedWrite? {
        guard let customer = row[offset] as Data?, customer.count == 16, let key = row[offset + 2] as Data?, key.count == 16 else { return nil }
        return RefusedWrite(
            table: UInt8(clamping: row[offset + 1] as Int64), record: RecordKey(data: key),
            time: Timestamp(rawValue: UInt64(bitPattern: row[offset + 3] as Int64)), customer: RecordKey(data: customer),
            reason: String((row[offset + 4] as String).prefix(64)), message: String((row[offset + 5] as String).prefix(1_000)))
    }

    /// About how many bytes a change takes in a set (for batch bounds only).
    static func approximateSize(_ change: Change) -> Int {
        func size(_ v: Value) -> Int {
            switch v {
            case .text(let s): s.utf8.count + 2
            case .blob(let b): b.count + 2
            default: 9
            }
        }
        switch change.body {
        case .fields(let writes): return 32 + writes.reduce(0) { $0 + 2 + size($1.value) }
        case .append(let values): return 32 + values.reduce(0) { $0 + 2 + size($1.value) }
        case .existence, .erase: return 32
        }
    }

    /// A customer's current state with everything hanging off it, as changes that carry each
    /// value's own stamp: what a branch the customer moves into needs instead of its history.
    func currentState(ofCustomer customer: RecordKey, _ session: Session, holding: [(TableSchema, [Data])]? = nil) throws -> [Change] {
        var out: [Change] = []
        for (table, unordered) in try holding ?? session.holding(of: customer) where !unordered.isEmpty {
            // In key order: a snapshot's checksum needs the same changes at both ends.
            let keys = unordered.count == 1 ? unordered : unordered.sorted { $0.lexicographicallyPrecedes($1) }
            switch table.kind {
            case .registers:
                for key in keys {
                    guard let state = try session.load(table, RecordKey(data: key)) else { continue }
                    out += Self.changes(restoring: state, table: table, key: RecordKey(data: key))
                }
            case .appendOnly:
                let read = try session.db.cachedStatement(sql: table.sql.select)
                for key in keys {
                    guard let row = try Row.fetchOne(read, arguments: [key]),
                        let origin = try? SiteID(row[1] as String)
                    else { continue }
                    var values: [ColumnValue] = []
                    for i in table.columns.indices {
                        let v = Value(row[2 + i] as DatabaseValue)
                        if !v.isNull { values.append(ColumnValue(column: i, value: v)) }
                    }
                    let stamp = Stamp(time: Timestamp(rawValue: UInt64(bitPattern: row[0] as Int64)), site: origin)
                    out.append(Change(table: table.id, key: RecordKey(data: key), stamp: stamp, body: .append(values)))
                }
            }
        }
        return out
    }

    /// Changes that bring a site without the record to `state`: the fields grouped by their
    /// stamps, then its causal length and erasure when they say more than the fields do.
    static func changes(restoring state: RecordState, table: TableSchema, key: RecordKey) -> [Change] {
        // Columns by stamp, then by column: a record's registers are few, so a sort of
        // (stamp, column) pairs beats hashing stamps into a dictionary.
        var written: [(stamp: Stamp, column: Int)] = []
        written.reserveCapacity(state.registers.count)
        for (column, register) in state.registers.enumerated() {
            if let register { written.append((register.stamp, column)) }
        }
        written.sort { $0.stamp != $1.stamp ? $0.stamp < $1.stamp : $0.column < $1.column }
        var out: [Change] = []
        var start = 0
        while start < written.count {
            var end = start + 1
            while end < written.count && written[end].stamp == written[start].stamp { end += 1 }
            let writes = written[start..<end].map { FieldWrite(column: $0.column, value: state.registers[$0.column]!.value) }
            out.append(Change(table: table.id, key: key, stamp: written[start].stamp, body: .fields(writes)))
            start = end
        }
        let newest = written.last?.stamp ?? Stamp(time: Timestamp(rawValue: 1), site: .headquarters)
        if state.causalLength > 1 || (out.isEmpty && state.causalLength > 0) {
            out.append(Change(table: table.id, key: key, stamp: newest, body: .existence(causalLength: state.causalLength)))
        }
        // A complaint's or claim's erasure is derived from its customer's, which the receiver
        // merges first (sets apply in table order): only a customer carries one.
        if state.erased && table.id == Schema.customers.id { out.append(Change(table: table.id, key: key, stamp: newest, body: .erase)) }
        return out
    }

    /// Reconciles the customers whose served reasons lapsed (headquarters runs this hourly):
    /// their rows go, and a branch that has no other reason to hold them gets a move out.
    /// - Returns: how many lapsed reasons were removed.
    @discardableResult
    public func expireScope() throws -> Int {
        guard site == headquarters else { return 0 }
        return try transaction { session in
            var lapsed: Set<Data> = []
            var removed = 0
            // Each timed reason: its table, its time column, and its window in days.
            for (table, column, days) in [
                ("scope_served", "served_at", try Session.servedDays(session.db)),
                ("scope_fetched", "fetched_at", try Session.fetchedDays(session.db)),
            ] {
                let cutoff = Int64(clamping: session.wall).subtracting(saturating: max(0, days).multiplied(saturating: 86_400_000))
                lapsed.formUnion(try Data.fetchAll(session.db, sql: "SELECT DISTINCT customer FROM \(table) WHERE \(column) <= ?", arguments: [cutoff]))
                try session.db.execute(sql: "DELETE FROM \(table) WHERE \(column) <= ?", arguments: [cutoff])
                removed += session.db.changesCount
            }
            for customer in lapsed.sorted(by: { $0.lexicographicallyPrecedes($1) }) { try session.reconcileScope(of: RecordKey(data: customer)) }
            return removed
        }
    }

    /// Sets how many days a branch keeps a customer after its last change for it reached
    /// headquarters (`outpost scope window`); a shorter window applies at the next expiry.
    public func setServedDays(_ days: Int) throws { try setWindow("served", days) }

    /// Sets how many days a branch keeps a customer its clerk fetched after the last fetch
    /// (`outpost scope window --fetched-days`).
    public func setFetchedDays(_ days: Int) throws { try setWindow("fetched", days) }

    /// Stores a scope window (`scope_NAME_days`) at headquarters.
    private func setWindow(_ name: String, _ days: Int) throws {
        guard site == headquarters else {
            throw ArchiveError(.refused, "scope is decided at headquarters (\(headquarters)); this site is \(site)")
        }
        guard (0...3_650).contains(days) else { throw ArchiveError(.invalidInput, "the \(name) window is 0 to 3650 days") }
        try writer.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", arguments: ["scope_\(name)_days", days])
        }
    }

    public func fetchedDays() throws -> Int {
        try read { db in Int(try Session.fetchedDays(db)) }
    }

    public func servedDays() throws -> Int {
        try read { db in
            Int(try Session.servedDays(db))
        }
    }

    /// Why headquarters counts each customer in a branch's scope (or every branch's, with no
    /// site), sorted by site and customer number.
    public func scope(of site: SiteID? = nil, limit: Int = .max) throws -> [ScopeEntry] {
        try read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT r.site, r.customer, c.number, group_concat(DISTINCT r.reason) FROM scope_reasons r
                    LEFT JOIN customers c ON c.id = r.customer
                    WHERE r.site != ? \(site == nil ? "" : "AND r.site = ?")
                    GROUP BY r.site, r.customer ORDER BY r.site, c.number, r.customer LIMIT ?
                    """,
                arguments: StatementArguments([headquarters.code] + (site.map { [$0.code] } ?? []) + [min(limit, Int(Int32.max))]))
            return rows.compactMap { row in
                guard let key = (row[1] as Data?).flatMap({ $0.count == 16 ? RecordKey(data: $0) : nil }) else { return nil }
                let reasons = ((row[3] as String?) ?? "").split(separator: ",").map(String.init).sorted()
                return ScopeEntry(site: row[0], customer: key.description, number: row[2], reasons: reasons)
            }
        }
    }

    // MARK: Branch

    /// Customers headquarters moved out of this branch's scope whose eviction waits until
    /// headquarters has acknowledged what this site wrote about them.
    public func pendingEvictions() throws -> Int {
        try read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM scope_evictions") ?? 0 }
    }

    /// Applies headquarters' moves in a transaction that already merged the set holding them,
    /// then carries out the evictions that waited and whose changes headquarters has
    /// acknowledged since.
    ///
    /// Waiting evictions are retried here, after a pull, not when a push is acknowledged: the
    /// branch's change that made it wait makes headquarters count the customer as served again,
    /// and the move back in comes in the pull after the push. Retried at the acknowledgement,
    /// the customer would vanish from the counter and come back a moment later.
    func applyMoves(_ moves: ScopeMoves, _ session: inout Session) throws {
        let cancel = try session.db.cachedStatement(sql: "DELETE FROM scope_evictions WHERE customer = ?")
        for customer in moves.movedIn { try cancel.execute(arguments: [customer.data]) }
        var evicted = 0
        let waited = Set(try Data.fetchAll(session.db, sql: "SELECT customer FROM scope_evictions").map(RecordKey.init(data:)))
        for customer in moves.evicted where try session.evict(customer) { evicted += 1 }
        for customer in waited.subtracting(moves.evicted).sorted() where try session.evict(customer) { evicted += 1 }
        if evicted > 0 { logger.info("evicted customers that left this branch's scope", metadata: ["count": "\(evicted)"]) }
    }

}

extension Archive {
    /// The canonical dump restricted to what headquarters counts in `site`'s scope: its
    /// customers and everything hanging off them, and every settings and SLA record. A quiet
    /// branch's own `dump --canonical` equals it.
    public func canonicalDump(scope site: SiteID, pretty: Bool = true) throws -> String {
        try canonicalJSON(scope: site).rendered(pretty: pretty) + (pretty ? "\n" : "")
    }

    public func canonicalJSON(scope site: SiteID?) throws -> JSON {
        guard let site else { return try canonicalJSON() }
        let customers = "SELECT customer FROM scope_reasons WHERE site = ?"
        let complaints = "SELECT id FROM complaints WHERE customer_id IN (\(customers))"
        let claims = "SELECT id FROM claims WHERE customer_id IN (\(customers))"
        let filters: [UInt8: String] = [
            Schema.customers.id: "id IN (\(customers))",
            Schema.contacts.id: "customer_id IN (\(customers))",
            Schema.figures.id: "customer_id IN (\(customers))",
            Schema.complaints.id: "id IN (\(complaints))",
            Schema.complaintNotes.id: "complaint_id IN (\(complaints))",
            Schema.complaintTransitions.id: "complaint_id IN (\(complaints))",
            Schema.claims.id: "id IN (\(claims))",
            Schema.claimTransitions.id: "claim_id IN (\(claims))",
            Schema.claimPayments.id: "claim_id IN (\(claims))",
        ]
        return try canonicalJSON { table in filters[table.id].map { ($0, [site.code]) } }
    }
}

extension Archive {
    /// Where this site keeps a key of a record it does not hold (its change log, conflict
    /// journal, quarantine or search index), leaving out writes headquarters refused: after an
    /// eviction nothing of the customer may remain. Tests and the simulation check it.
    package func keysOutsideRecords() throws -> [String] {
        try read { db in
            let held = Schema.tables.map { "SELECT id FROM \($0.name)" }.joined(separator: " UNION ALL ")
            var found: [String] = []
            for (place, table, column) in [
                ("changelog", "changelog", "key"), ("conflicts", "conflicts", "key"), ("quarantine", "quarantine", "key"),
                ("search index", "search_rows", "id"),
            ] {
                let keys = try Data.fetchAll(
                    db,
                    sql: """
                        SELECT DISTINCT \(column) FROM \(table)
                        WHERE \(column) NOT IN (\(held)) AND \(column) NOT IN (SELECT key FROM refused_changes)
                        """)
                found += keys.map { "\(place): \(RecordKey(data: $0))" }
            }
            return found
        }
    }
}

/// What headquarters assigns to a branch beyond the customers homed there.
public enum AssignmentTarget: Sendable, Hashable {
    /// One customer, by number or id.
    case customer(String)
    /// Every customer homed at that branch (a branch covering for another).
    case branch(SiteID)
    /// Every customer whose region is this.
    case region(String)
}

/// An assignment in force (`outpost scope assignments`).
public struct Assignment: Sendable, Hashable, Codable {
    public var id: String
    /// The branch that holds what is assigned.
    public var site: String
    /// `customer`, `branch` or `region`.
    public var kind: String
    /// The customer's number (or id), the branch whose customers, or the region.
    public var target: String
    /// How many customers it names at this site now.
    public var customers: Int
}

extension Archive {
    /// Assigns a customer, another branch's customers or a region's to `site` (headquarters
    /// only): the branch holds them, and its reports count them, until the assignment is
    /// withdrawn. Assigning what is assigned already changes nothing.
    @discardableResult
    public func assign(_ target: AssignmentTarget, to site: SiteID) throws -> Assignment {
        let key = try transaction { s in
            let (key, fields) = try assignmentRecord(target, site: site, s.db)
            if let state = try s.load(Schema.assignments, key) {
                if !state.isAlive { try s.setAlive(Schema.assignments, key, true) }
            } else {
                try s.create(Schema.assignments, key: key, fields)
            }
            return key
        }
        guard let written = try assignments(of: site).first(where: { $0.id == key.description }) else {
            throw ArchiveError(.storage, "the assignment \(key) was written but cannot be read back")
        }
        return written
    }

    /// Withdraws an assignment (headquarters only): its customers leave the branch unless it
    /// holds them for another reason.
    public func unassign(_ target: AssignmentTarget, from site: SiteID) throws {
        try transaction { s in
            let (key, _) = try assignmentRecord(target, site: site, s.db)
            guard let state = try s.load(Schema.assignments, key), state.isAlive else {
                throw ArchiveError(.notFound, "\(site) has no such assignment; 'outpost scope assignments --site \(site)' lists them")
            }
            try s.setAlive(Schema.assignments, key, false)
        }
    }

    /// The assignments in force, by branch (every site holds them all).
    public func assignments(of site: SiteID? = nil) throws -> [Assignment] {
        try read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT a.id, a.site, a.customer_id, a.home_branch, a.region, c.number FROM assignments a
                    LEFT JOIN customers c ON c.id = a.customer_id
                    WHERE a.cl % 2 = 1 \(site == nil ? "" : "AND a.site = ?") ORDER BY a.site, a.home_branch, a.region, c.number
                    """,
                arguments: StatementArguments(site.map { [$0.code] } ?? []))
            return rows.compactMap { row -> Assignment? in
                guard let key = (row[0] as Data?).flatMap({ $0.count == 16 ? RecordKey(data: $0) : nil }) else { return nil }
                let site: String = row[1] ?? "-"
                var kind = "customer"
                var target = "-"
                var named = 0
                if let customer = (row[2] as Data?).flatMap({ $0.count == 16 ? RecordKey(data: $0) : nil }) {
                    target = (row[5] as String?) ?? customer.description
                    named = (try? Int.fetchOne(db, sql: "SELECT count(*) FROM customers WHERE id = ?", arguments: [customer.data])) ?? 0
                } else if let home = row[3] as String? {
                    kind = "branch"
                    target = home
                    named = (try? Int.fetchOne(db, sql: "SELECT count(*) FROM customers WHERE home_branch = ?", arguments: [home])) ?? 0
                } else if let region = row[4] as String? {
                    kind = "region"
                    target = region
                    named = (try? Int.fetchOne(db, sql: "SELECT count(*) FROM customers WHERE region = ?", arguments: [region])) ?? 0
                }
                return Assignment(id: key.description, site: site, kind: kind, target: target, customers: named)
            }
        }
    }

    /// The derived key and fields of the assignment of `target` to `site`, checked.
    private func assignmentRecord(_ target: AssignmentTarget, site: SiteID, _ db: Database) throws -> (RecordKey, [String: Value]) {
        guard core.site == core.headquarters else {
            throw ArchiveError(.refused, "assignments are made at headquarters (\(core.headquarters)) and replicated; this site is \(core.site)")
        }
        guard site != core.headquarters else { throw ArchiveError(.invalidInput, "headquarters holds every customer: assign to a branch") }
        switch target {
        case .customer(let reference):
            let customer = try resolve(Schema.customers, reference, db)
            return (
                RecordKey.derived("assignment", site.code, "customer", customer.id.description), ["site": .text(site.code), "customer_id": customer.id.value]
            )
        case .branch(let home):
            guard home != site else { throw ArchiveError(.invalidInput, "\(site)'s own customers are homed there already") }
            return (RecordKey.derived("assignment", site.code, "branch", home.code), ["site": .text(site.code), "home_branch": .text(home.code)])
        case .region(let region):
            let region = region.trimmingCharacters(in: .whitespaces)
            guard !region.isEmpty, region.utf8.count <= Domain.shortText else {
                throw ArchiveError(.invalidInput, "a region is 1 to \(Domain.shortText) bytes of text")
            }
            return (RecordKey.derived("assignment", site.code, "region", region), ["site": .text(site.code), "region": .text(region)])
        }
    }
}
