import Replication

/// A change-log row's body: one change (its kind is the change's, `Change.Kind`), or several
/// field writes of one record from one origin, each with its own stamp, that headquarters'
/// compaction packed into one row (``packedFields``).
///
/// After compaction a record overwritten field by field keeps one surviving write per field,
/// each in its own row with its key, stamp and index entry: about five times the record's
/// size. Packed, the survivors from one origin share one row, so the log stays about the size
/// of the live data (README, "Scope at national scale"). A packed row is storage only: it is
/// read back as one change per stamp, so the wire never sees it.
enum LogBody {
    /// The `kind` of a packed row; outside `Change.Kind`'s range so no change is ever read as one.
    static let packedFields: Int64 = 16

    /// One stamped part of a row: the change's clock reading and body. The origin is the row's.
    struct Part: Equatable {
        var time: Timestamp
        var body: Change.Body

        /// The field writes it holds (none for other bodies).
        var writeCount: Int {
            if case .fields(let writes) = body { writes.count } else { 0 }
        }
    }

    /// The parts of a stored row; nil for a kind this version does not know.
    static func decode(
        kind: Int64, time: Timestamp, bytes: [UInt8], site: (UInt64) throws(ReplicationError) -> SiteID
    ) throws(ReplicationError) -> [Part]? {
        var r = ByteReader(bytes)
        if kind == packedFields {
            // Each part's time is written as its distance below the row's (the greatest).
            let n = try r.length(limit: 4_096, "packed part count")
            var parts: [Part] = []
            parts.reserveCapacity(n)
            for _ in 0..<n {
                let below = try r.varint()
                guard below <= time.rawValue else { throw r.fail("packed part before the clock's start") }
                let partTime = Timestamp(rawValue: time.rawValue - below)
                parts.append(Part(time: partTime, body: try ChangeBodyCodec.decode(.fields, time: partTime, from: &r, limits: CodecLimits(), site: site)))
            }
            return parts
        }
        guard let known = Change.Kind(rawValue: UInt8(clamping: kind)), Int64(known.rawValue) == kind else { return nil }
        return [Part(time: time, body: try ChangeBodyCodec.decode(known, time: time, from: &r, limits: CodecLimits(), site: site))]
    }

    /// A row holding `parts` (field writes of one record from one origin): its kind, clock
    /// reading (the greatest part's) and body. One part is stored as the plain change it is.
    static func encode(_ parts: [Part], siteIndex: (SiteID) -> UInt64) -> (kind: Int64, time: Timestamp, bytes: [UInt8]) {
        var w = ByteWriter()
        if parts.count == 1 {
            ChangeBodyCodec.encode(parts[0].body, time: parts[0].time, into: &w, siteIndex: siteIndex)
            return (Int64(parts[0].body.kind.rawValue), parts[0].time, w.bytes)
        }
        let sorted = parts.sorted { $0.time < $1.time }
        let time = sorted.last?.time ?? .zero
        w.varint(UInt64(sorted.count))
        for part in sorted {
            w.varint(time.rawValue - part.time.rawValue)
            ChangeBodyCodec.encode(part.body, time: part.time, into: &w, siteIndex: siteIndex)
        }
        return (packedFields, time, w.bytes)
    }
}
