/// A hybrid logical clock (Kulkarni et al.): readings follow the wall clock when it moves
/// forward and a counter when it does not, so every reading a site hands out is larger than
/// every reading it has seen.
///
/// The clock is a value: the archive keeps its state in the database and advances it inside
/// the write transaction, so the CLI and the daemon writing the same file share one clock.
public struct HybridLogicalClock: Hashable, Sendable {
    /// The largest reading issued or observed so far.
    public private(set) var last: Timestamp
    /// How far ahead of the local wall clock a peer's reading may be before it is refused.
    public var maximumDrift: UInt64

    /// The default drift limit: five minutes.
    public static let defaultMaximumDrift: UInt64 = 5 * 60 * 1000

    public init(last: Timestamp = .zero, maximumDrift: UInt64 = HybridLogicalClock.defaultMaximumDrift) {
        self.last = last
        self.maximumDrift = maximumDrift
    }

    /// Issues a reading for a local event.
    /// - Parameter wallMilliseconds: the wall clock now, milliseconds since the Unix epoch.
    public mutating func tick(wallMilliseconds: UInt64) -> Timestamp {
        if wallMilliseconds > last.milliseconds {
            last = Timestamp(milliseconds: wallMilliseconds, counter: 0)
        } else if last.counter == UInt16.max {
            // The counter is exhausted within one millisecond: borrow the next millisecond.
            last = Timestamp(milliseconds: last.milliseconds + 1, counter: 0)
        } else {
            last = Timestamp(rawValue: last.rawValue + 1)
        }
        return last
    }

    /// Checks a peer's reading against the drift limit without changing the clock.
    /// - Throws: ``ReplicationError`` `.clockDrift` naming the site and the skew.
    public func check(_ remote: Timestamp, from site: SiteID, wallMilliseconds: UInt64) throws(ReplicationError) {
        guard remote.milliseconds > wallMilliseconds else { return }
        let skew = remote.milliseconds - wallMilliseconds
        if skew > maximumDrift {
            throw ReplicationError(
                .clockDrift,
                "site \(site) sent a change stamped \(Self.describe(skew)) ahead of this site's clock (limit \(Self.describe(maximumDrift))); check the clock of \(site)"
            )
        }
    }

    /// Moves the clock past a reading that arrived in a merged change, so later local writes
    /// order after it. Call ``check(_:from:wallMilliseconds:)`` first for readings whose
    /// origin is the sending peer.
    public mutating func observe(_ remote: Timestamp) {
        if remote > last { last = remote }
    }

    static func describe(_ milliseconds: UInt64) -> String {
        let seconds = milliseconds / 1000
        if seconds >= 3600 { return "\(seconds / 3600)h \((seconds % 3600) / 60)m" }
        if seconds >= 60 { return "\(seconds / 60)m \(seconds % 60)s" }
        return "\(seconds).\(String(milliseconds % 1000 / 100))s"
    }
}
