import Foundation
import GRDB
import Replication

/// Customers that are probably one and the same, and why.
public struct DuplicateGroup: Sendable, Hashable {
    public enum Reason: String, Sendable, Codable {
        /// The same phone number (national digits).
        case phone
        /// The same company name (letters and digits, case and spacing ignored) in the same city.
        case nameAndCity = "name_and_city"
    }

    public var reason: Reason
    /// Oldest first: the first is the one to keep.
    public var customers: [Record]
    /// Home branches of the customers, sorted.
    public var branches: [String]
}

extension Archive {
    // MARK: Duplicates

    /// Finds probable duplicate customers: the same phone, or the same company name in the
    /// same city. By default only groups registered at more than one branch (what one branch
    /// cannot see by itself); `sameBranch` includes the rest. Merged, deleted, erased and
    /// archived customers are left out.
    public func duplicates(sameBranch: Bool = false, limit: Int = 1000) throws -> [DuplicateGroup] {
        try read { db in
            let active = "cl % 2 = 1 AND erased = 0 AND coalesce(archived, 0) = 0 AND merged_into IS NULL"
            var groups: [DuplicateGroup] = []
            func add(_ reason: DuplicateGroup.Reason, _ members: [Record]) {
                let branches = Set(members.map { $0["home_branch"].textValue ?? "" }).sorted()
                guard members.count > 1, sameBranch || branches.count > 1 else { return }
                groups.append(DuplicateGroup(reason: reason, customers: members.sorted { $0.id < $1.id }, branches: branches))
            }
            let phones = try String.fetchAll(
                db, sql: "SELECT phone FROM customers WHERE \(active) AND phone IS NOT NULL AND phone != '' GROUP BY phone HAVING count(*) > 1")
            for phone in phones {
                add(.phone, try fetchRecords(Schema.customers, db, where: "\(active) AND phone = ?", arguments: [phone]))
            }
            var byName: [String: [Data]] = [:]
            let rows = try Row.fetchCursor(
                db, sql: "SELECT id, name, city FROM customers WHERE \(active) AND kind = 'company' AND city IS NOT NULL AND name IS NOT NULL")
            while let row = try rows.next() {
                let name = String(String.UnicodeScalarView(SearchIndex.searchable(row[1])))
                let city = String(String.UnicodeScalarView(SearchIndex.searchable(row[2])))
                guard !name.isEmpty, !city.isEmpty else { continue }
                byName["\(city)\u{1F}\(name)", default: []].append(row[0])
            }
            for ids in byName.values where ids.count > 1 {
                let marks = Array(repeating: "?", count: ids.count).joined(separator: ", ")
                add(.nameAndCity, try fetchRecords(Schema.customers, db, where: "id IN (\(marks))", arguments: StatementArguments(ids)))
            }
            return Array(groups.sorted { ($0.customers[0].id, $0.reason.rawValue) < ($1.customers[0].id, $1.reason.rawValue) }.prefix(limit))
        }
    }

    // MARK: Merge

    /// The customer a record's data counts under: itself, or the end of its merge chain.
    func rootCustomer(_ record: Record, _ db: Database) throws -> Record {
        var current = record
        var seen: Set<RecordKey> = [record.id]
        while let next = current["merged_into"].keyValue, !seen.contains(next),
            let target = try fetchRecords(Schema.customers, db, where: "id = ?", arguments: [next.data]).first
        {
            seen.insert(next)
            current = target
        }
        return current
    }

    /// Resolves a customer for a new record (contact, complaint, claim): a merged customer
    /// stands for the one it was merged into.
    func resolveCustomerForWrite(_ reference: String, _ db: Database) throws -> Record {
        let customer = try rootCustomer(try resolve(Schema.customers, reference, db), db)
        try Self.requireWritable(customer)
        return customer
    }

    /// The customers merged into this one (directly or through others).
    func mergedMembers(of root: RecordKey, _ db: Database) throws -> [RecordKey] {
        var members: [RecordKey] = []
        var frontier = [root]
        var seen: Set<RecordKey> = [root]
        while let next = frontier.popLast() {
            for id in try Data.fetchAll(db, sql: "SELECT id FROM customers WHERE merged_into = ?", arguments: [next.data]) {
                let key = RecordKey(data: id)
                guard seen.insert(key).inserted else { continue }
                members.append(key)
                frontier.append(key)
            }
        }
        return members
    }

    /// Merges customer `duplicate` into `keep` (headquarters only): `duplicate` points to
    /// `keep` from then on, on every site once synced.
    ///
    /// Nothing of the duplicate is rewritten: its contacts, complaints, claims and figures stay
    /// as they are, and every reader counts them under `keep` by following the pointer. So
    /// records a branch writes for the duplicate while offline land under `keep` too, and the
    /// merge converges whatever order changes arrive in. Fields `keep` lacks are filled from the
    /// duplicate; the duplicate's own fields stay, so nothing is lost.
    /// - Returns: the kept customer, after the merge.
    @discardableResult
    public func mergeCustomers(keep keepReference: String, duplicate duplicateReference: String) throws -> Record {
        let key = try transaction { s in
            guard core.site == core.headquarters else {
                throw ArchiveError(
                    .refused, "customers are merged at headquarters (\(core.headquarters)), so every site follows one decision; this site is \(core.site)")
            }
            let keep = try rootCustomer(try resolve(Schema.customers, keepReference, s.db), s.db)
            let duplicate = try resolve(Schema.customers, duplicateReference, s.db)
            try Self.requireWritable(keep)
            try Self.requireWritable(duplicate)
            let label = duplicate["number"].textValue ?? duplicate.id.description
            if let into = duplicate["merged_into"].keyValue {
                throw ArchiveError(.invalidState, "customer \(label) is already merged into \(into); merge that customer instead")
            }
            guard try rootCustomer(duplicate, s.db).id != keep.id, duplicate.id != keep.id else {
                throw ArchiveError(.invalidInput, "customer \(label) and \(keep["number"].textValue ?? "") are already one customer")
            }
            var gaps: [String: Value] = [:]
            for name in Self.customerFields where !["merged_into", "archived", "home_branch"].contains(name) {
                if keep[name].isNull, !duplicate[name].isNull { gaps[name] = duplicate[name] }
            }
            if !gaps.isEmpty { try s.update(Schema.customers, keep.id, gaps) }
            try s.update(Schema.customers, duplicate.id, ["merged_into": keep.id.value])
            return keep.id
        }
        return try customer(key.description)
    }
}
