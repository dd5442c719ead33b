/// Money as integer minor units (fen): parsing and printing yuan amounts without floating point.
public enum Money {
    /// Parses "123", "123.4" or "123.45" (yuan) into fen. Rejects more than two decimals,
    /// signs unless `allowNegative`, and amounts above 10^13 yuan.
    public static func parse(_ text: String, allowNegative: Bool = false) throws -> Int64 {
        var s = Substring(text.trimmingWhitespace())
        var negative = false
        if s.first == "-" {
            guard allowNegative else { throw invalid(text, "must not be negative") }
            negative = true
            s = s.dropFirst()
        }
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let whole = parts.first, !whole.isEmpty, whole.count <= 13,
            whole.allSatisfy({ $0.isASCII && $0.isNumber })
        else { throw invalid(text, "use yuan with up to two decimals, e.g. 123.45") }
        var fen = Int64(whole)! * 100
        if parts.count == 2 {
            let frac = parts[1]
            guard (1...2).contains(frac.count), frac.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw invalid(text, "use yuan with up to two decimals, e.g. 123.45")
            }
            fen += Int64(frac)! * (frac.count == 1 ? 10 : 1)
        }
        return negative ? -fen : fen
    }

    /// Formats fen as yuan with two decimals, e.g. 12345 → "123.45".
    public static func format(_ fen: Int64) -> String {
        let sign = fen < 0 ? "-" : ""
        let m = fen.magnitude
        let cents = m % 100
        return "\(sign)\(m / 100).\(cents < 10 ? "0" : "")\(cents)"
    }

    static func invalid(_ text: String, _ why: String) -> ArchiveError {
        ArchiveError(.invalidInput, "not a valid amount: \(why)")
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let start = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let end = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[start...end])
    }
}
