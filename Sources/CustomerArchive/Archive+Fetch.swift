import Foundation
import GRDB
import Replication

/// A customer as a branch sees it in `customer search --remote`: headquarters' answer, never
/// stored at the branch; the name and phone are partly hidden.
public struct MaskedCustomer: Sendable, Hashable, Codable {
    public var number: String
    public var name: String
    public var phone: String
    public var homeBranch: String

    public init(number: String, name: String, phone: String, homeBranch: String) {
        self.number = number
        self.name = name
        self.phone = phone
        self.homeBranch = homeBranch
    }
}

/// Customers fetched on demand (issue 12 scope reason 3): a clerk at a branch asks
/// headquarters for a customer the branch does not hold; headquarters counts it in the
/// branch's scope for `scope_fetched_days` after the last fetch, and it moves in with the
/// branch's next pull like any customer entering its scope.
extension Archive {
    /// Counts a customer in `site`'s scope as fetched, now (headquarters only): by number, id
    /// or phone (exactly one customer must have it).
    /// - Returns: the customer's key and number.
    /// - Throws: `.notFound` or `.invalidInput` (several customers share the phone), in words
    ///   that never repeat the phone.
    public func fetch(_ reference: String, for site: SiteID) throws -> (customer: RecordKey, number: String?) {
        guard core.site == core.headquarters else {
            throw ArchiveError(.refused, "a branch fetches customers from headquarters (\(core.headquarters)); this site is \(core.site)")
        }
        guard site != core.headquarters else { throw ArchiveError(.invalidInput, "headquarters holds every customer already") }
        return try transaction { s in
            let customer = try fetchTarget(reference, s.db)
            try s.db.cachedStatement(
                sql: """
                    INSERT INTO scope_fetched(customer, site, fetched_at) VALUES (?, ?, ?)
                    ON CONFLICT(customer, site) DO UPDATE SET fetched_at = max(fetched_at, excluded.fetched_at)
                    """
            ).execute(arguments: [customer.id.data, site.code, Int64(clamping: s.wall)])
            try s.reconcileScope(of: customer.id)
            return (customer.id, customer["number"].textValue)
        }
    }

    /// The customer a fetch names.
    private func fetchTarget(_ reference: String, _ db: Database) throws -> Record {
        let trimmed = reference.trimmingCharacters(in: .whitespaces)
        if RecordKey(trimmed) != nil || trimmed.uppercased().contains("-C-") {
            do { return try resolve(Schema.customers, trimmed, db) } catch let e as ArchiveError where e.code == .notFound {
                throw ArchiveError(.notFound, "headquarters has no customer with that number or id")
            }
        }
        guard let phone = try? Phones.normalize(trimmed) else {
            throw ArchiveError(.invalidInput, "fetch a customer by its number (SITE-C-NNNNNN), id or phone")
        }
        let found = try fetchRecords(Schema.customers, db, where: "phone = ? AND cl % 2 = 1", arguments: [phone], suffix: "LIMIT 3")
        guard let first = found.first else { throw ArchiveError(.notFound, "headquarters has no customer with that phone") }
        guard found.count == 1 else {
            throw ArchiveError(
                .invalidInput, "several customers have that phone: fetch one by its number ('outpost customer search --remote' shows them)")
        }
        return first
    }

    /// Headquarters' search for a branch (`customer search --remote`): at most `limit`
    /// customers, their name and phone partly hidden.
    public func remoteSearch(_ text: String, limit: Int = 20) throws -> [MaskedCustomer] {
        guard core.site == core.headquarters else {
            throw ArchiveError(.refused, "a remote search runs at headquarters (\(core.headquarters)); this site is \(core.site)")
        }
        return try searchCustomers(text, limit: max(1, min(limit, 50))).filter { !$0.erased }.map { record in
            MaskedCustomer(
                number: record["number"].textValue ?? record.id.description, name: Self.masked(name: record["name"].textValue ?? ""),
                phone: Self.masked(phone: record["phone"].textValue ?? ""), homeBranch: record["home_branch"].textValue ?? "")
        }
    }

    /// A name with all but its first and last characters hidden (two characters: the first
    /// shown); at most 32 characters are kept.
    package static func masked(name: String) -> String {
        let characters = Array(name.prefix(32))
        switch characters.count {
        case 0: return ""
        case 1: return "*"
        case 2: return String(characters[0]) + "*"
        default: return String(characters[0]) + String(repeating: "*", count: characters.count - 2) + String(characters[characters.count - 1])
        }
    }

    /// A phone with only its first three and last two digits shown.
    package static func masked(phone: String) -> String {
        let digits = Array(Phones.digits(phone).prefix(20))
        guard digits.count > 5 else { return String(repeating: "*", count: digits.count) }
        return String(digits[0..<3]) + String(repeating: "*", count: digits.count - 5) + String(digits[(digits.count - 2)...])
    }
}
