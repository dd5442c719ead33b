import Replication

/// The packed per-row clock blob: the distinct stamps of a row's registers, then one byte per
/// column naming which stamp wrote it (0: never written).
///
/// Fields written together share a stamp, so a freshly created row costs about ten bytes of
/// clocks plus one byte per column, instead of a clock column (or a clock row) per field.
enum PackedClocks {
    static func encode(_ registers: [Register?], siteIndex: (SiteID) throws -> Int64) rethrows -> [UInt8] {
        var stamps: [Stamp] = []
        var refs = [UInt8](repeating: 0, count: registers.count)
        for (i, r) in registers.enumerated() {
            guard let r else { continue }
            if let j = stamps.firstIndex(of: r.stamp) {
                refs[i] = UInt8(j + 1)
            } else {
                stamps.append(r.stamp)
                refs[i] = UInt8(stamps.count)
            }
        }
        var w = ByteWriter(capacity: 12 * stamps.count + registers.count + 2)
        w.varint(UInt64(stamps.count))
        for s in stamps {
            w.varint(s.time.rawValue)
            w.varint(UInt64(try siteIndex(s.site)))
        }
        w.raw(refs)
        return w.bytes
    }

    /// Decodes stamps; `values` supplies each column's stored value.
    static func decode(
        _ bytes: [UInt8], columnCount: Int, value: (Int) -> Value, site: (Int64) throws -> SiteID
    ) throws -> [Register?] {
        var r = ByteReader(bytes)
        let n = try r.length(limit: 255, "stamp count")
        var stamps: [Stamp] = []
        stamps.reserveCapacity(n)
        for _ in 0..<n {
            let t = try r.varint()
            let s = try site(Int64(bitPattern: try r.varint()))
            stamps.append(Stamp(time: Timestamp(rawValue: t), site: s))
        }
        var out = [Register?](repeating: nil, count: columnCount)
        // Rows written by an older schema have fewer columns; newer columns stay unwritten.
        let stored = min(columnCount, r.remaining)
        let refs = try r.raw(stored)
        for (i, ref) in refs.enumerated() where ref != 0 {
            guard Int(ref) <= stamps.count else {
                throw ArchiveError(.storage, "a row's clock data is damaged (stamp \(ref) of \(stamps.count)); run 'outpost doctor'")
            }
            out[i] = Register(value: value(i), stamp: stamps[Int(ref) - 1])
        }
        return out
    }
}
