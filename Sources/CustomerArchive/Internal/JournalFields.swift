import Replication

/// The fields one losing write lost, as the conflict journal packs them: one journal row per
/// losing write (not per field), holding (column, winning value, losing value) for each field.
struct JournalField: Hashable {
    var column: Int
    var winner: Value
    var loser: Value

    static func encode(_ fields: [JournalField]) -> [UInt8] {
        var w = ByteWriter(capacity: 16 * fields.count)
        w.varint(UInt64(fields.count))
        for f in fields {
            w.varint(UInt64(f.column))
            ChangeBodyCodec.encode(f.winner, into: &w)
            ChangeBodyCodec.encode(f.loser, into: &w)
        }
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) throws -> [JournalField] {
        var r = ByteReader(bytes)
        let limits = CodecLimits()
        let n = try r.length(limit: limits.maximumColumns, "journal field count")
        var out: [JournalField] = []
        for _ in 0..<n {
            let column = Int(try r.varint())
            let winner = try ChangeBodyCodec.decodeValue(from: &r, limits: limits)
            let loser = try ChangeBodyCodec.decodeValue(from: &r, limits: limits)
            out.append(JournalField(column: column, winner: winner, loser: loser))
        }
        return out
    }
}
