/// Limits a decoder enforces before it allocates, so hostile input cannot exhaust memory.
public struct CodecLimits: Hashable, Sendable {
    /// The largest encoded change set accepted, in bytes.
    public var maximumEncodedBytes: Int
    /// The largest inflated body accepted, in bytes.
    public var maximumBodyBytes: Int
    /// The most changes one set may carry.
    public var maximumChanges: Int
    /// The largest single text or blob value, in bytes.
    public var maximumValueBytes: Int
    /// The most columns one change may write.
    public var maximumColumns: Int

    public init(
        maximumEncodedBytes: Int = 256 << 20,
        maximumBodyBytes: Int = 1 << 30,
        maximumChanges: Int = 20_000_000,
        maximumValueBytes: Int = 1 << 20,
        maximumColumns: Int = 64
    ) {
        self.maximumEncodedBytes = maximumEncodedBytes
        self.maximumBodyBytes = maximumBodyBytes
        self.maximumChanges = maximumChanges
        self.maximumValueBytes = maximumValueBytes
        self.maximumColumns = maximumColumns
    }
}

/// The versioned binary form of a ``ChangeSet``.
///
/// ```
/// "OPCS" | format u8 | flags u8 | schema varint | producer str | after varint | through varint
///        | raw length varint | stored length varint | CRC-32 of raw body u32 | body
/// body:  site count, site codes | change count | changes
/// change: kind u8 | table u8 | key 16 B | clock delta (zig-zag) | site index | payload
/// ```
/// Clocks are delta-coded against the previous change and sites are indexes into the set's
/// site table, so a sorted batch of new records costs a few bytes of overhead per change
/// before compression. Flag bit 0: body compressed with zlib. Flag bit 1: the body ends with
/// a scope section (a set headquarters exported for one branch as a file).
public enum ChangeSetCodec {
    public static let magic: [UInt8] = [0x4F, 0x50, 0x43, 0x53]  // "OPCS"
    public static let formatVersion: UInt8 = 1
    /// Flag bit 0: the body is zlib-compressed.
    static let flagCompressed: UInt8 = 1
    /// Flag bit 1: the body ends with a scope section (``ChangeSet/Scope``).
    static let flagScoped: UInt8 = 2
    /// Refusal texts are cut to these lengths on encoding and refused past them on decoding.
    static let maximumReasonBytes = 64
    static let maximumMessageBytes = 1_000

    /// Encodes a change set.
    /// - Parameters:
    ///   - compress: deflate the body (default); off only for measurements.
    ///   - level: zlib's level, 1 (fastest) to 9 (smallest). Files use 6; the network uses 1,
    ///     where compressing must keep pace with a catch-up (about a quarter larger sets).
    public static func encode(_ set: ChangeSet, compress: Bool = true, level: Int32 = 6) throws(ReplicationError) -> [UInt8] {
        var sites: [SiteID] = []
        var siteIndex: [SiteID: UInt64] = [:]
        func index(_ s: SiteID) -> UInt64 {
            if let i = siteIndex[s] { return i }
            let i = UInt64(sites.count)
            sites.append(s)
            siteIndex[s] = i
            return i
        }
        var changes = ByteWriter(capacity: set.changes.count * 64)
        var previous: UInt64 = 0
        for change in set.changes {
            changes.byte(change.body.kind.rawValue)
            changes.byte(change.table)
            changes.key(change.key)
            let time = change.stamp.time.rawValue
            changes.signed(Int64(bitPattern: time &- previous))
            previous = time
            changes.varint(index(change.stamp.site))
            ChangeBodyCodec.encode(change.body, time: change.stamp.time, into: &changes, siteIndex: index)
        }
        var body = ByteWriter(capacity: changes.bytes.count + 64)
        body.varint(UInt64(sites.count))
        for s in sites { body.string(s.code) }
        body.varint(UInt64(set.changes.count))
        body.raw(changes.bytes)
        if let scope = set.scope { encode(scope, into: &body) }

        let raw = body.bytes
        let stored = compress ? try Zlib.compress(raw, level: min(max(level, 1), 9)) : raw
        var out = ByteWriter(capacity: stored.count + 64)
        out.raw(magic)
        out.byte(formatVersion)
        out.byte((compress ? flagCompressed : 0) | (set.scope == nil ? 0 : flagScoped))
        out.varint(UInt64(set.schemaVersion))
        out.string(set.producer.code)
        out.varint(set.after)
        out.varint(set.through)
        out.varint(UInt64(raw.count))
        out.varint(UInt64(stored.count))
        out.uint32(Zlib.crc32(raw))
        out.raw(stored)
        return out.bytes
    }

    /// The header fields, readable without inflating the body.
    public struct Header: Hashable, Sendable {
        public var formatVersion: UInt8
        public var compressed: Bool
        /// The body ends with a scope section: headquarters exported the set for one branch.
        public var scoped: Bool
        public var schemaVersion: Int
        public var producer: SiteID
        public var after: UInt64
        public var through: UInt64
        public var rawLength: Int
        public var storedLength: Int
        public var checksum: UInt32
        /// Where the body starts in the encoded bytes.
        public var bodyOffset: Int
    }

    /// Reads and checks the header.
    /// - Throws: `.malformedChangeSet` for input that is not a change set, `.unsupportedFormat`
    ///   for a newer format, `.changeSetTooLarge` past the limits.
    public static func header(of bytes: [UInt8], limits: CodecLimits = CodecLimits()) throws(ReplicationError) -> Header {
        guard bytes.count >= magic.count, Array(bytes.prefix(magic.count)) == magic else {
            throw ReplicationError(.malformedChangeSet, "not an Outpost change set (missing the OPCS signature)")
        }
        guard bytes.count <= limits.maximumEncodedBytes else {
            throw ReplicationError(.changeSetTooLarge, "change set of \(bytes.count) bytes exceeds the limit of \(limits.maximumEncodedBytes) bytes")
        }
        var r = ByteReader(bytes, from: magic.count)
        let format = try r.byte()
        guard format == formatVersion else {
            throw ReplicationError(
                .unsupportedFormat, "change-set format \(format) is not supported by this version (it reads format \(formatVersion)); upgrade Outpost")
        }
        let flags = try r.byte()
        guard flags & ~(flagCompressed | flagScoped) == 0 else { throw r.fail("unknown flags \(flags)") }
        let schema = try r.varint()
        guard schema <= UInt64(Int32.max) else { throw r.fail("schema version out of range") }
        let producerCode = try r.string(limit: 64)
        guard let producer = try? SiteID(producerCode) else { throw r.fail("producer site code is not valid") }
        let after = try r.varint()
        let through = try r.varint()
        guard after <= through else { throw r.fail("sequence range is reversed") }
        guard through <= UInt64(Int64.max) else { throw r.fail("sequence range is out of bounds") }
        let rawLength = try r.varint()
        guard rawLength <= UInt64(limits.maximumBodyBytes) else {
            throw ReplicationError(.changeSetTooLarge, "change-set body of \(rawLength) bytes exceeds the limit of \(limits.maximumBodyBytes) bytes")
        }
        let storedLength = try r.varint()
        guard storedLength <= UInt64(r.remaining) else { throw r.fail("body is truncated: declares \(storedLength) bytes, \(r.remaining) present") }
        let checksum = try r.uint32()
        guard UInt64(r.remaining) == storedLength else {
            throw r.fail("body length mismatch: declares \(storedLength) bytes, \(r.remaining) present")
        }
        if flags & flagCompressed == 0 && rawLength != storedLength { throw r.fail("uncompressed body length mismatch") }
        // Deflate cannot expand data more than about 1032 to 1: a larger claim is a lie that
        // would only make the decoder allocate for nothing.
        if flags & flagCompressed != 0 && rawLength > storedLength * 1032 + 64 {
            throw r.fail("body declares \(rawLength) bytes inflated from \(storedLength): more than deflate can produce")
        }
        return Header(
            formatVersion: format, compressed: flags & flagCompressed != 0, scoped: flags & flagScoped != 0, schemaVersion: Int(schema), producer: producer,
            after: after, through: through, rawLength: Int(rawLength), storedLength: Int(storedLength),
            checksum: checksum, bodyOffset: r.offset)
    }

    /// Decodes a change set, checking every length, index and the body checksum.
    public static func decode(_ bytes: [UInt8], limits: CodecLimits = CodecLimits()) throws(ReplicationError) -> ChangeSet {
        let h = try header(of: bytes, limits: limits)
        let stored = bytes[h.bodyOffset...]
        let raw = h.compressed ? try Zlib.decompress(stored, expectedLength: h.rawLength) : Array(stored)
        guard Zlib.crc32(raw) == h.checksum else {
            throw ReplicationError(.malformedChangeSet, "malformed change set: body checksum does not match (the file is damaged)")
        }
        var r = ByteReader(raw)
        let siteCount = try r.length(limit: min(r.remaining, 1 << 20), "site count")
        var sites: [SiteID] = []
        sites.reserveCapacity(siteCount)
        for _ in 0..<siteCount {
            let code = try r.string(limit: 64)
            guard let s = try? SiteID(code) else { throw r.fail("site code is not valid") }
            sites.append(s)
        }
        // Each change takes at least 20 bytes, which bounds the count before allocating.
        let count = try r.length(limit: min(limits.maximumChanges, r.remaining / 20), "change count")
        var changes: [Change] = []
        changes.reserveCapacity(count)
        var previous: UInt64 = 0
        let site: (UInt64) throws(ReplicationError) -> SiteID = { i throws(ReplicationError) in
            guard i < UInt64(sites.count) else { throw ReplicationError(.malformedChangeSet, "malformed change set: site index \(i) out of range") }
            return sites[Int(i)]
        }
        for _ in 0..<count {
            let kindByte = try r.byte()
            guard let kind = Change.Kind(rawValue: kindByte) else { throw r.fail("unknown change kind \(kindByte)") }
            let table = try r.byte()
            let key = try r.key()
            let delta = try r.signed()
            let time = previous &+ UInt64(bitPattern: delta)
            previous = time
            let origin = try site(try r.varint())
            let body = try ChangeBodyCodec.decode(kind, time: Timestamp(rawValue: time), from: &r, limits: limits, site: site)
            changes.append(Change(table: table, key: key, stamp: Stamp(time: Timestamp(rawValue: time), site: origin), body: body))
        }
        let scope = h.scoped ? try decodeScope(from: &r) : nil
        guard r.isAtEnd else { throw r.fail("\(r.remaining) bytes of trailing data") }
        return ChangeSet(producer: h.producer, schemaVersion: h.schemaVersion, after: h.after, through: h.through, changes: changes, scope: scope)
    }

    /// The scope section (CHANGESET.md §5.3), after the changes:
    /// `recipient str | received_through varint | moved_in count, keys | evicted count, keys
    /// | refused count, refusals`; a refusal is `table u8 | record key | time u64 varint
    /// | customer key | reason str | message str`.
    static func encode(_ scope: ChangeSet.Scope, into w: inout ByteWriter) {
        w.string(scope.recipient.code)
        w.varint(scope.receivedThrough)
        for keys in [scope.movedIn, scope.evicted] {
            w.varint(UInt64(keys.count))
            for key in keys { w.key(key) }
        }
        w.varint(UInt64(scope.refused.count))
        for refusal in scope.refused {
            w.byte(refusal.table)
            w.key(refusal.record)
            w.varint(refusal.time.rawValue)
            w.key(refusal.customer)
            w.string(Self.prefix(refusal.reason, bytes: maximumReasonBytes))
            w.string(Self.prefix(refusal.message, bytes: maximumMessageBytes))
        }
    }

    static func decodeScope(from r: inout ByteReader) throws(ReplicationError) -> ChangeSet.Scope {
        let code = try r.string(limit: 64)
        guard let recipient = try? SiteID(code) else { throw r.fail("the scope's recipient site code is not valid") }
        let receivedThrough = try r.varint()
        guard receivedThrough <= UInt64(Int64.max) else { throw r.fail("the scope's received cursor is out of bounds") }
        var lists: [[RecordKey]] = []
        for what in ["moved-in count", "evicted count"] {
            // Each key takes 16 bytes, which bounds the count before allocating.
            let count = try r.length(limit: r.remaining / 16, what)
            var keys: [RecordKey] = []
            keys.reserveCapacity(count)
            for _ in 0..<count { keys.append(try r.key()) }
            lists.append(keys)
        }
        // A refusal takes at least 36 bytes.
        let count = try r.length(limit: r.remaining / 36, "refusal count")
        var refused: [ChangeSet.Scope.Refusal] = []
        refused.reserveCapacity(count)
        for _ in 0..<count {
            let table = try r.byte()
            let record = try r.key()
            let time = Timestamp(rawValue: try r.varint())
            let customer = try r.key()
            let reason = try r.string(limit: maximumReasonBytes)
            let message = try r.string(limit: maximumMessageBytes)
            refused.append(.init(table: table, record: record, time: time, customer: customer, reason: reason, message: message))
        }
        return ChangeSet.Scope(recipient: recipient, receivedThrough: receivedThrough, movedIn: lists[0], evicted: lists[1], refused: refused)
    }

    /// The longest prefix of `text` of at most `bytes` UTF-8 bytes that ends on a character.
    static func prefix(_ text: String, bytes: Int) -> String {
        guard text.utf8.count > bytes else { return text }
        var out = ""
        var used = 0
        for character in text {
            let size = character.utf8.count
            if used + size > bytes { break }
            out.append(character)
            used += size
        }
        return out
    }
}

/// The encoding of a change's payload, shared by change sets and the archive's change log.
/// Sites are written as indexes into a table the caller owns.
package enum ChangeBodyCodec {
    package static func encode(_ body: Change.Body, time: Timestamp, into w: inout ByteWriter, siteIndex: (SiteID) -> UInt64) {
        switch body {
        case .fields(let writes):
            w.varint(UInt64(writes.count))
            for f in writes {
                w.varint(UInt64(f.column) << 1 | (f.base == nil ? 0 : 1))
                encode(f.value, into: &w)
                if let base = f.base {
                    w.signed(Int64(bitPattern: time.rawValue &- base.time.rawValue))
                    w.varint(siteIndex(base.site))
                }
            }
        case .existence(let length):
            w.varint(length)
        case .erase:
            break
        case .append(let values):
            w.varint(UInt64(values.count))
            for v in values {
                w.varint(UInt64(v.column))
                encode(v.value, into: &w)
            }
        }
    }

    package static func decode(
        _ kind: Change.Kind, time: Timestamp, from r: inout ByteReader, limits: CodecLimits,
        site: (UInt64) throws(ReplicationError) -> SiteID
    ) throws(ReplicationError) -> Change.Body {
        switch kind {
        case .fields:
            let n = try r.length(limit: limits.maximumColumns, "column count")
            var writes: [FieldWrite] = []
            writes.reserveCapacity(n)
            for _ in 0..<n {
                let header = try r.varint()
                let column = header >> 1
                guard column < UInt64(limits.maximumColumns) else { throw r.fail("column \(column) out of range") }
                let value = try decodeValue(from: &r, limits: limits)
                var base: Stamp?
                if header & 1 == 1 {
                    let delta = try r.signed()
                    let baseTime = time.rawValue &- UInt64(bitPattern: delta)
                    base = Stamp(time: Timestamp(rawValue: baseTime), site: try site(try r.varint()))
                }
                writes.append(FieldWrite(column: Int(column), value: value, base: base))
            }
            return .fields(writes)
        case .existence:
            return .existence(causalLength: try r.varint())
        case .erase:
            return .erase
        case .append:
            let n = try r.length(limit: limits.maximumColumns, "column count")
            var values: [ColumnValue] = []
            values.reserveCapacity(n)
            for _ in 0..<n {
                let column = try r.varint()
                guard column < UInt64(limits.maximumColumns) else { throw r.fail("column \(column) out of range") }
                values.append(ColumnValue(column: Int(column), value: try decodeValue(from: &r, limits: limits)))
            }
            return .append(values)
        }
    }

    package static func encode(_ v: Value, into w: inout ByteWriter) {
        switch v {
        case .null: w.byte(0)
        case .integer(let i): w.byte(1); w.signed(i)
        case .text(let s): w.byte(2); w.string(s)
        case .blob(let b): w.byte(3); w.varint(UInt64(b.count)); w.raw(b)
        }
    }

    package static func decodeValue(from r: inout ByteReader, limits: CodecLimits) throws(ReplicationError) -> Value {
        let tag = try r.byte()
        switch tag {
        case 0: return .null
        case 1: return .integer(try r.signed())
        case 2: return .text(try r.string(limit: limits.maximumValueBytes))
        case 3:
            let n = try r.length(limit: limits.maximumValueBytes, "blob length")
            return .blob(Array(try r.raw(n)))
        default: throw r.fail("unknown value tag \(tag)")
        }
    }
}
