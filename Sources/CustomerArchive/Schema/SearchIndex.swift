import Foundation
import GRDB
import Replication

/// The customer search index: every pair of adjacent characters (a *bigram*) of a customer's
/// name and contact person, and of their phone digits, in a contentless FTS5 table. (Customer
/// numbers are found through their own B-tree index, by prefix: a number is typed from its
/// start, and bigrams of it would be a quarter of the tokens.)
///
/// FTS5's `trigram` tokenizer cannot match patterns shorter than three characters, and most
/// Chinese words are two (物流, 上海). Indexing bigrams as tokens and searching for a text as
/// the *phrase* of its bigrams matches every substring of two characters or more with one
/// index: `有限公司` is the phrase `有限 限公 公司`, which occurs exactly where the text does.
/// The last character of each value is indexed alone too, so a one-character search is a
/// prefix query that misses nothing.
///
/// The index is kept *behind* the writes, in batches. Every write of a customer row that
/// changes a searchable value notes the customer in `search_pending`, in the same transaction
/// (``Session/store(_:_:_:exists:before:)``); ``drain(_:limit:)`` indexes the pending customers
/// in one pass — before every search, continuously in the daemon, at the end of an import, and
/// at once for an erasure. So a sync or an import does not pay for the index inside its own
/// transactions, a burst of single writes at the counter becomes one index segment instead of
/// one per commit, and a search still sees every committed write.
///
/// The FTS5 table is contentless; `search_rows` maps each customer to its FTS row id and keeps
/// the values indexed for it, whose tokens a later update must name to take them out. An erasure
/// re-indexes the person at once (with nothing left to index) and merges the index, so no
/// segment keeps their tokens.
enum SearchIndex {
    /// The customer columns the index holds.
    static let columns = ["name", "contact_person", "phone"]
    static let columnIndexes = columns.map { Schema.customers.column($0) }

    static func create(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE search_rows (n INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, name TEXT, contact_person TEXT, phone TEXT);
                CREATE TABLE search_pending (id BLOB PRIMARY KEY NOT NULL) WITHOUT ROWID;
                CREATE VIRTUAL TABLE search_text USING fts5(
                    names, phone, content = '', columnsize = 0, tokenize = 'unicode61 remove_diacritics 0');
                INSERT INTO search_text(search_text, rank) VALUES ('automerge', 8);
                INSERT INTO search_pending(id) SELECT id FROM customers;
                """)
        // No guard triggers here: these tables are derived (a foreign write can only spoil
        // search, never what syncs), and a trigger would make FTS5 write out early (below).
    }

    /// The indexed text of one customer's searchable values (``columns`` order).
    static func documents(_ values: [String?]) -> (names: String, phone: String) {
        let names = values[0..<2].compactMap { $0 }.map(grams).filter { !$0.isEmpty }.joined(separator: " ")
        return (names, values[2].map(grams) ?? "")
    }

    /// Indexes pending customers, oldest key first: up to `limit`, or all. Returns how many
    /// it took off the queue. Call inside a write transaction.
    ///
    /// The order of statements matters: FTS5 writes out its pending tokens at every statement
    /// savepoint (any statement with a trigger, or writing several rows, opens one) and
    /// whenever a row id does not increase. So the row table is written first, then every
    /// deletion in row-id order, then every insertion in row-id order, all single-row
    /// statements. (Maintaining the index from triggers wrote out a one-row segment per
    /// customer: about 25 page writes each, and a sixth of the apply speed.)
    @discardableResult
    static func drain(_ db: Database, limit: Int? = nil) throws -> Int {
        let ids = try Data.fetchAll(db, sql: "SELECT id FROM search_pending ORDER BY id" + (limit.map { " LIMIT \($0)" } ?? ""))
        guard let last = ids.last else { return 0 }
        let read = try db.cachedStatement(sql: "SELECT name, contact_person, phone FROM customers WHERE id = ?")
        let indexed = try db.cachedStatement(sql: "SELECT n, name, contact_person, phone FROM search_rows WHERE id = ?")
        let add = try db.cachedStatement(sql: "INSERT INTO search_rows(id, name, contact_person, phone) VALUES (?, ?, ?, ?)")
        let change = try db.cachedStatement(sql: "UPDATE search_rows SET name = ?, contact_person = ?, phone = ? WHERE n = ?")
        typealias Document = (names: String, phone: String)
        var deletions: [(n: Int64, document: Document)] = []
        var insertions: [(n: Int64, document: Document)] = []
        for id in ids {
            guard let row = try Row.fetchOne(read, arguments: [id]) else { continue }
            let values: [String?] = (0..<3).map { row[$0] }
            if let old = try Row.fetchOne(indexed, arguments: [id]) {
                let n: Int64 = old[0]
                let previous: [String?] = (1...3).map { old[$0] }
                if previous == values { continue }
                try change.execute(arguments: [values[0], values[1], values[2], n])
                deletions.append((n, documents(previous)))
                insertions.append((n, documents(values)))
            } else {
                try add.execute(arguments: [id, values[0], values[1], values[2]])
                insertions.append((db.lastInsertedRowID, documents(values)))
            }
        }
        let delete = try db.cachedStatement(sql: "INSERT INTO search_text(search_text, rowid, names, phone) VALUES ('delete', ?, ?, ?)")
        for d in deletions.sorted(by: { $0.n < $1.n }) where !(d.document.names.isEmpty && d.document.phone.isEmpty) {
            try delete.execute(arguments: [d.n, d.document.names, d.document.phone])
        }
        let insert = try db.cachedStatement(sql: "INSERT INTO search_text(rowid, names, phone) VALUES (?, ?, ?)")
        for i in insertions.sorted(by: { $0.n < $1.n }) where !(i.document.names.isEmpty && i.document.phone.isEmpty) {
            try insert.execute(arguments: [i.n, i.document.names, i.document.phone])
        }
        // Every pending key up to the last taken was taken (they were read in key order).
        try db.execute(sql: "DELETE FROM search_pending WHERE id <= ?", arguments: [last])
        return ids.count
    }

    /// Takes a customer out of the index (evicted from this replica): its document is deleted
    /// from the full-text table and its row from `search_rows`. The caller merges the segments
    /// (``purgeDeleted(_:)``) before commit, so no token of it remains.
    static func remove(_ id: Data, _ db: Database) throws {
        try db.execute(sql: "DELETE FROM search_pending WHERE id = ?", arguments: [id])
        guard let row = try Row.fetchOne(db, sql: "SELECT n, name, contact_person, phone FROM search_rows WHERE id = ?", arguments: [id]) else {
            return
        }
        let n: Int64 = row[0]
        let document = documents((1...3).map { row[$0] })
        if !(document.names.isEmpty && document.phone.isEmpty) {
            try db.execute(
                sql: "INSERT INTO search_text(search_text, rowid, names, phone) VALUES ('delete', ?, ?, ?)",
                arguments: [n, document.names, document.phone])
        }
        try db.execute(sql: "DELETE FROM search_rows WHERE n = ?", arguments: [n])
    }

    /// Merges the index's segments into one, dropping deleted entries: after an erasure, no
    /// segment may keep the erased person's tokens.
    static func purgeDeleted(_ db: Database) throws {
        try db.execute(sql: "INSERT INTO search_text(search_text) VALUES ('optimize')")
    }

    /// The characters of a text that count for search: letters and digits, lower-cased, with
    /// full-width forms (ＡＢＣ１２３) folded to ASCII. Spaces and punctuation are dropped, so
    /// `上海 物流` and `上海物流` search alike.
    static func searchable(_ text: String) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.utf8.count / 2)
        for scalar in text.unicodeScalars {
            let folded = (0xFF01...0xFF5E).contains(scalar.value) ? Unicode.Scalar(scalar.value - 0xFEE0)! : scalar
            switch folded.value {
            case 0x30...0x39, 0x61...0x7A: out.append(folded)
            case 0x41...0x5A: out.append(Unicode.Scalar(folded.value + 32)!)
            case 0..<0x80: continue
            // CJK ideographs: letters without case (the common case here, kept cheap).
            case 0x4E00...0x9FFF, 0x3400...0x4DBF: out.append(folded)
            default:
                guard folded.properties.changesWhenLowercased else {
                    if isTokenCharacter(folded) { out.append(folded) }
                    continue
                }
                for s in folded.properties.lowercaseMapping.unicodeScalars where isTokenCharacter(s) { out.append(s) }
            }
        }
        return out
    }

    /// FTS5's `unicode61` token characters (categories L*, N* and Co); everything else
    /// separates tokens, so a bigram must never hold one.
    static func isTokenCharacter(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
            .decimalNumber, .letterNumber, .otherNumber, .privateUse:
            true
        default: false
        }
    }

    /// The tokens indexed for one value: its bigrams, then its last character alone.
    static func grams(_ text: String) -> String {
        let chars = searchable(text)
        guard let last = chars.last else { return "" }
        var out = String.UnicodeScalarView()
        for i in 0..<(chars.count - 1) {
            out.append(chars[i])
            out.append(chars[i + 1])
            out.append(" ")
        }
        out.append(last)
        return String(out)
    }

    /// The FTS5 query for a search text in one column, or `nil` when it has no letters or
    /// digits: the phrase of its bigrams, or a prefix query for a single character.
    static func query(_ text: String, column: String) -> String? {
        let chars = searchable(text)
        switch chars.count {
        case 0: return nil
        case 1: return "\(column) : \"\(Character(chars[0]))\" *"
        default:
            let phrase = (0..<(chars.count - 1)).map { String(String.UnicodeScalarView([chars[$0], chars[$0 + 1]])) }.joined(separator: " ")
            return "\(column) : \"\(phrase)\""
        }
    }
}
