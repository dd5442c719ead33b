/// Civil dates in the company's time zone (China Standard Time, UTC+8, no daylight saving).
///
/// Instants are stored as UTC milliseconds; report periods and calendar numbering are taken in
/// company time, so "October" means October in Shanghai wherever the machine's clock is set.
public enum CompanyTime {
    static let offsetMilliseconds: Int64 = 8 * 3600 * 1000

    /// The year of an instant in the company's time zone.
    static func year(ofMilliseconds ms: UInt64) -> Int {
        date(ofMilliseconds: Int64(ms)).year
    }

    /// The civil date of an instant in company time.
    public static func date(ofMilliseconds ms: Int64) -> CivilDate {
        // A stored instant may be anything a peer sent: held to ±275,000 years (JavaScript's
        // range), where the calendar arithmetic below cannot overflow.
        let local = min(max(ms, -8_640_000_000_000_000), 8_640_000_000_000_000) + offsetMilliseconds
        let days = local >= 0 ? local / 86_400_000 : (local - 86_399_999) / 86_400_000
        return CivilDate(daysSinceEpoch: days)
    }

    /// The instant company-time midnight starts a date.
    public static func start(of date: CivilDate) -> Int64 {
        Int64(date.daysSinceEpoch).multiplied(saturating: 86_400_000).subtracting(saturating: offsetMilliseconds)
    }
}

/// A calendar date (proleptic Gregorian).
public struct CivilDate: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var year: Int
    public var month: Int
    public var day: Int

    public init(year: Int, month: Int, day: Int) {
        self.year = year
        self.month = month
        self.day = day
    }

    /// Parses `YYYY-MM-DD`; `nil` for anything else or a date that does not exist.
    public init?(_ text: String) {
        let p = text.split(separator: "-", omittingEmptySubsequences: false)
        guard p.count == 3, p[0].count == 4, p[1].count == 2, p[2].count == 2,
            let y = Int(p[0]), let m = Int(p[1]), let d = Int(p[2]), (1900...2200).contains(y), (1...12).contains(m),
            (1...CivilDate.daysIn(year: y, month: m)).contains(d)
        else { return nil }
        self.init(year: y, month: m, day: d)
    }

    /// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    init(daysSinceEpoch days: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        self.init(year: Int(yoe + era * 400 + (m <= 2 ? 1 : 0)), month: Int(m), day: Int(d))
    }

    var daysSinceEpoch: Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = Int64(month > 2 ? month - 3 : month + 9)
        let doy = (153 * mp + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    public static func daysIn(year: Int, month: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    public func adding(days: Int) -> CivilDate { CivilDate(daysSinceEpoch: daysSinceEpoch + Int64(days)) }

    public static func < (a: CivilDate, b: CivilDate) -> Bool { (a.year, a.month, a.day) < (b.year, b.month, b.day) }

    public var description: String {
        "\(year)-\(month < 10 ? "0" : "")\(month)-\(day < 10 ? "0" : "")\(day)"
    }
}

/// A calendar month, the unit of business figures.
public struct Month: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var year: Int
    public var month: Int

    public init(year: Int, month: Int) {
        self.year = year
        self.month = month
    }

    /// Parses `YYYY-MM`.
    public init?(_ text: String) {
        let p = text.split(separator: "-", omittingEmptySubsequences: false)
        guard p.count == 2, p[0].count == 4, p[1].count == 2, let y = Int(p[0]), let m = Int(p[1]), (1900...2200).contains(y),
            (1...12).contains(m)
        else { return nil }
        self.init(year: y, month: m)
    }

    public init(_ date: CivilDate) { self.init(year: date.year, month: date.month) }

    public var first: CivilDate { CivilDate(year: year, month: month, day: 1) }
    public var last: CivilDate { CivilDate(year: year, month: month, day: CivilDate.daysIn(year: year, month: month)) }
    public var next: Month { month == 12 ? Month(year: year + 1, month: 1) : Month(year: year, month: month + 1) }
    public func adding(months n: Int) -> Month {
        let index = year * 12 + (month - 1) + n
        return Month(year: index / 12, month: index % 12 + 1)
    }
    /// Months from `self` to `other`, both included.
    public func count(through other: Month) -> Int { (other.year * 12 + other.month) - (year * 12 + month) + 1 }

    public static func < (a: Month, b: Month) -> Bool { (a.year, a.month) < (b.year, b.month) }

    public var description: String { "\(year)-\(month < 10 ? "0" : "")\(month)" }
}
