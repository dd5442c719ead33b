/// Arithmetic that holds at the bounds instead of trapping.
///
/// Every stored value may have been written by a hostile peer or by an older version without
/// domains, and a reader must never trap on one: sums, differences and scalings of stored
/// integers in reports and deadlines use these. Values inside their domains never come near
/// the bounds, so for them the results are exact.
extension Int64 {
    public func adding(saturating other: Int64) -> Int64 {
        let (result, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : result
    }

    public func subtracting(saturating other: Int64) -> Int64 {
        let (result, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other < 0 ? .max : .min) : result
    }

    public func multiplied(saturating other: Int64) -> Int64 {
        let (result, overflow) = multipliedReportingOverflow(by: other)
        return overflow ? ((self < 0) == (other < 0) ? .max : .min) : result
    }

    /// The nearest Int64 to a floating-point value (SQLite's `total()`), 0 for NaN.
    public init(saturating value: Double) {
        if value.isNaN {
            self = 0
        } else if value >= 9_223_372_036_854_775_807.0 {
            self = .max
        } else if value <= -9_223_372_036_854_775_808.0 {
            self = .min
        } else {
            self = Int64(value.rounded())
        }
    }
}
