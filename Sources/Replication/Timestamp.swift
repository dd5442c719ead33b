/// A hybrid logical clock reading: milliseconds since the Unix epoch in the high 48 bits and a
/// logical counter in the low 16 bits.
///
/// Packing both into one integer makes readings compare with a single integer comparison and
/// store in one SQLite INTEGER column. 48 bits of milliseconds last until the year 10889.
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public init(milliseconds: UInt64, counter: UInt16) {
        self.rawValue = (milliseconds << 16) | UInt64(counter)
    }

    public static let zero = Timestamp(rawValue: 0)

    public var milliseconds: UInt64 { rawValue >> 16 }
    public var counter: UInt16 { UInt16(truncatingIfNeeded: rawValue) }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { "\(milliseconds).\(counter)" }
}

/// Who wrote a value and when: the total order every last-writer-wins decision uses.
///
/// Ordered by clock reading, then by site code, so two replicas that hold the same stamps
/// always pick the same winner.
public struct Stamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var time: Timestamp
    public var site: SiteID

    public init(time: Timestamp, site: SiteID) {
        self.time = time
        self.site = site
    }

    public static func < (lhs: Stamp, rhs: Stamp) -> Bool {
        if lhs.time != rhs.time { return lhs.time < rhs.time }
        return lhs.site < rhs.site
    }

    public var description: String { "\(time)@\(site)" }
}
