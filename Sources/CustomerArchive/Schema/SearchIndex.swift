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
/// Every write of a customer row goes through ``Session/store(_:_:_:exists:)``, which notes the
/// values the index holds; the transaction brings the index in step before it commits, so every
/// path (local, merged, erased) updates it. The table is contentless: it holds tokens, never a
/// copy of the values, and after an erasure the index is merged so no segment keeps them.
enum SearchIndex {
    /// The SQL function the triggers call: `outpost_search_grams(text, …)`.
    static let function = "outpost_search_grams"

    static func register(_ db: Database) {
        db.add(
            function: DatabaseFunction(function, argumentCount: nil, pure: true) { values in
                values.compactMap { String.fromDatabaseValue($0) }.map(grams).filter { !$0.isEmpty }.joined(separator: " ")
            })
    }

    /// The customer columns the index holds, in the order ``Session`` reads them.
    static let columns = ["name", "contact_person", "phone"]
    static let columnIndexes = columns.map { Schema.customers.column($0) }

    static func create(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE search_rows (n INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE);
                CREATE VIRTUAL TABLE search_text USING fts5(
                    names, phone, content = '', columnsize = 0, tokenize = 'unicode61 remove_diacritics 0');
                INSERT INTO search_text(search_text, rank) VALUES ('automerge', 8);
                INSERT INTO search_rows(id) SELECT id FROM customers ORDER BY id;
                INSERT INTO search_text(rowid, names, phone)
                    SELECT r.n, \(function)(c.name, c.contact_person), \(function)(c.phone)
                    FROM search_rows r JOIN customers c ON c.id = r.id;
                """)
        // No guard triggers on search_rows: it is derived (a foreign write there can only spoil
        // search, never what syncs), and a trigger would make FTS5 write out early (below).
    }

    /// The indexed text of one customer's searchable values (``columns`` order).
    static func documents(_ values: [String?]) -> (names: String, phone: String) {
        let names = values[0..<2].compactMap { $0 }.map(grams).filter { !$0.isEmpty }.joined(separator: " ")
        return (names, values[2].map(grams) ?? "")
    }

    /// Brings the index in step with customers written in this transaction. `before` holds each
    /// touched customer's searchable values as the index has them (`nil`: not indexed yet),
    /// `after` the values last stored.
    ///
    /// Done once at the end of the transaction, and in an order that keeps FTS5 from writing
    /// out its pending tokens early: it does so at every statement savepoint (any statement
    /// with a trigger opens one) and whenever a row id does not increase. So the row-id table is
    /// written first, then every deletion in row-id order, then every insertion in row-id order.
    /// (Maintaining the index from triggers wrote out a one-row segment per customer: about 25
    /// page writes each, and a sixth of the apply speed.)
    static func update(_ db: Database, before: [RecordKey: [String?]?], after: [RecordKey: [String?]]) throws {
        guard !before.isEmpty else { return }
        let row = try db.cachedStatement(sql: "SELECT n FROM search_rows WHERE id = ?")
        let add = try db.cachedStatement(sql: "INSERT INTO search_rows(id) VALUES (?)")
        var deletions: [(n: Int64, document: (names: String, phone: String))] = []
        var insertions: [(n: Int64, document: (names: String, phone: String))] = []
        for (key, old) in before.sorted(by: { $0.key < $1.key }) {
            guard let values = after[key] else { continue }
            if let old, old == values { continue }
            if let old, let n = try Int64.fetchOne(row, arguments: [key.data]) {
                deletions.append((n, documents(old)))
                insertions.append((n, documents(values)))
            } else {
                try add.execute(arguments: [key.data])
                insertions.append((db.lastInsertedRowID, documents(values)))
            }
        }
        let delete = try db.cachedStatement(sql: "INSERT INTO search_text(search_text, rowid, names, phone) VALUES ('delete', ?, ?, ?)")
        for d in deletions.sorted(by: { $0.n < $1.n }) {
            try delete.execute(arguments: [d.n, d.document.names, d.document.phone])
        }
        let insert = try db.cachedStatement(sql: "INSERT INTO search_text(rowid, names, phone) VALUES (?, ?, ?)")
        for i in insertions.sorted(by: { $0.n < $1.n }) {
            try insert.execute(arguments: [i.n, i.document.names, i.document.phone])
        }
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
