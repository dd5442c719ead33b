import GRDB

/// The customer search index: every pair of adjacent characters (a *bigram*) of a customer's
/// name, contact person and number, and of their phone digits, in a contentless FTS5 table.
///
/// FTS5's `trigram` tokenizer cannot match patterns shorter than three characters, and most
/// Chinese words are two (物流, 上海). Indexing bigrams as tokens and searching for a text as
/// the *phrase* of its bigrams matches every substring of two characters or more with one
/// index: `有限公司` is the phrase `有限 限公 公司`, which occurs exactly where the text does.
/// The last character of each value is indexed alone too, so a one-character search is a
/// prefix query that misses nothing.
///
/// Triggers keep the index in step with the `customers` table inside the same transaction, so
/// every write path (local, merged, erased) updates it. The table is contentless: it holds
/// tokens, never a copy of the values, and erasure removes a person's tokens
/// (``Session/cascadeErasure(ofCustomer:)`` then merges the index so no segment keeps them).
enum SearchIndex {
    /// The SQL function the triggers call: `outpost_search_grams(text, …)`.
    static let function = "outpost_search_grams"

    static func register(_ db: Database) {
        db.add(
            function: DatabaseFunction(function, argumentCount: nil, pure: true) { values in
                values.compactMap { String.fromDatabaseValue($0) }.map(grams).filter { !$0.isEmpty }.joined(separator: " ")
            })
    }

    static func create(_ db: Database) throws {
        let names = "\(function)(%.name, %.contact_person, %.number)"
        let phone = "\(function)(%.phone)"
        func of(_ row: String, _ expr: String) -> String { expr.replacingOccurrences(of: "%", with: row) }
        try db.execute(
            sql: """
                CREATE TABLE search_rows (n INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE);
                CREATE VIRTUAL TABLE search_text USING fts5(names, phone, content = '', tokenize = 'unicode61 remove_diacritics 0');
                CREATE TRIGGER customers_search_insert AFTER INSERT ON customers BEGIN
                    INSERT INTO search_rows(id) VALUES (new.id);
                    INSERT INTO search_text(rowid, names, phone)
                        SELECT n, \(of("new", names)), \(of("new", phone)) FROM search_rows WHERE id = new.id;
                END;
                CREATE TRIGGER customers_search_update AFTER UPDATE ON customers
                WHEN old.name IS NOT new.name OR old.contact_person IS NOT new.contact_person
                    OR old.number IS NOT new.number OR old.phone IS NOT new.phone
                BEGIN
                    INSERT INTO search_text(search_text, rowid, names, phone)
                        SELECT 'delete', n, \(of("old", names)), \(of("old", phone)) FROM search_rows WHERE id = old.id;
                    INSERT INTO search_text(rowid, names, phone)
                        SELECT n, \(of("new", names)), \(of("new", phone)) FROM search_rows WHERE id = new.id;
                END;
                INSERT INTO search_rows(id) SELECT id FROM customers ORDER BY id;
                INSERT INTO search_text(rowid, names, phone)
                    SELECT r.n, \(of("c", names)), \(of("c", phone)) FROM search_rows r JOIN customers c ON c.id = r.id;
                """)
        try Migrations.guardTable("search_rows", db)
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
        for scalar in text.unicodeScalars {
            let folded = (0xFF01...0xFF5E).contains(scalar.value) ? Unicode.Scalar(scalar.value - 0xFEE0)! : scalar
            for s in folded.properties.lowercaseMapping.unicodeScalars where isTokenCharacter(s) { out.append(s) }
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
