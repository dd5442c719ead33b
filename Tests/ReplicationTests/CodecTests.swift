import OutpostTesting
import Replication
import Testing

@Suite("Change-set codec")
struct CodecTests {
    static func sampleSet(seed: UInt64, count: Int = 40) -> ChangeSet {
        var g = ChangeGenerator(seed: seed)
        var changes: [Change] = []
        for i in 0..<count {
            var c = g.change()
            c.key = RecordKey(high: UInt64(i) << 20, low: g.rng.next())
            c.table = UInt8(1 + g.rng.next() % 9)
            if g.rng.next() % 4 == 0 { c.body = .append([ColumnValue(column: 0, value: g.value()), ColumnValue(column: 3, value: .text("备注 \(i)"))]) }
            changes.append(c)
        }
        // Every other seed: a file headquarters exported for one branch, with its scope section.
        var scope: ChangeSet.Scope?
        if seed % 2 == 1 {
            func keys() -> [RecordKey] { (0..<(g.rng.next() % 4)).map { _ in RecordKey(high: g.rng.next(), low: g.rng.next()) } }
            scope = ChangeSet.Scope(
                recipient: SiteID(unchecked: "BJ01"), receivedThrough: g.rng.next() >> 1, movedIn: keys(), evicted: keys(),
                refused: (0..<(g.rng.next() % 3)).map { i in
                    .init(
                        table: UInt8(1 + i), record: RecordKey(high: g.rng.next(), low: 1), time: Timestamp(rawValue: g.rng.next()),
                        customer: RecordKey(high: g.rng.next(), low: 2), reason: "NOT_HOME", message: "客户 SH01-C-00000\(i) 由 SH01 管理")
                })
        }
        return ChangeSet(producer: SiteID(unchecked: "SH01"), schemaVersion: 1, after: 7, through: 99, changes: changes, scope: scope)
    }

    @Test("a scope section round-trips; its texts are cut on a character; a lying count is refused before allocating")
    func scopeSection() throws {
        let set = Self.sampleSet(seed: 7)
        let bytes = try ChangeSetCodec.encode(set)
        #expect(try ChangeSetCodec.header(of: bytes).scoped)
        #expect(!(try ChangeSetCodec.header(of: try ChangeSetCodec.encode(Self.sampleSet(seed: 8)))).scoped)
        #expect(try ChangeSetCodec.decode(bytes).scope == set.scope)

        var long = set
        long.scope?.refused = [
            .init(
                table: 1, record: RecordKey(high: 1, low: 1), time: Timestamp(rawValue: 5), customer: RecordKey(high: 2, low: 2),
                reason: String(repeating: "原因", count: 40), message: String(repeating: "说明", count: 400))
        ]
        let decoded = try #require(try ChangeSetCodec.decode(try ChangeSetCodec.encode(long)).scope?.refused.first)
        #expect(decoded.reason == String(repeating: "原因", count: 10) + "原")  // 63 of at most 64 bytes
        #expect(decoded.message.utf8.count <= 1_000 && decoded.message.utf8.count > 990)

        // A body whose scope section claims a billion evicted customers in a few bytes.
        var body = ByteWriter(capacity: 64)
        body.varint(0)  // no sites
        body.varint(0)  // no changes
        body.string("BJ01")
        body.varint(0)
        body.varint(0)  // moved in
        body.varint(1_000_000_000)  // evicted
        var lie = ByteWriter(capacity: 64)
        lie.raw(ChangeSetCodec.magic)
        lie.byte(ChangeSetCodec.formatVersion)
        lie.byte(2)
        lie.varint(1)
        lie.string("HQ")
        lie.varint(0)
        lie.varint(1)
        lie.varint(UInt64(body.bytes.count))
        lie.varint(UInt64(body.bytes.count))
        lie.uint32(crc32(body.bytes))
        lie.raw(body.bytes)
        #expect { try ChangeSetCodec.decode(lie.bytes) } throws: {
            ($0 as? ReplicationError)?.code == .malformedChangeSet && "\($0)".contains("evicted count")
        }
        // A flag no version knows is refused.
        var unknown = bytes
        unknown[5] |= 4
        #expect { try ChangeSetCodec.decode(unknown) } throws: { "\($0)".contains("unknown flags") }
    }

    /// zlib's CRC-32, written out so the test does not lean on the codec's own.
    func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    @Test("encoding round-trips, compressed or not", arguments: Array(UInt64(1)...100))
    func roundTrip(seed: UInt64) throws {
        let set = Self.sampleSet(seed: seed)
        #expect(try ChangeSetCodec.decode(try ChangeSetCodec.encode(set)) == set)
        #expect(try ChangeSetCodec.decode(try ChangeSetCodec.encode(set, compress: false)) == set)
    }

    @Test("random byte mutations are rejected with a typed error or decode to a valid set, never crash", arguments: Array(UInt64(1)...40))
    func mutations(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        for compress in [true, false] {
            let bytes = try ChangeSetCodec.encode(Self.sampleSet(seed: seed, count: 10), compress: compress)
            for _ in 0..<200 {
                var m = bytes
                for _ in 0..<(1 + rng.next() % 4) {
                    let i = Int(rng.next() % UInt64(m.count))
                    m[i] = UInt8(truncatingIfNeeded: rng.next())
                }
                do { _ = try ChangeSetCodec.decode(m) } catch {
                    #expect([.malformedChangeSet, .unsupportedFormat, .changeSetTooLarge].contains(error.code))
                }
            }
        }
    }

    @Test("every truncation is rejected", arguments: [true, false])
    func truncation(compress: Bool) throws {
        let bytes = try ChangeSetCodec.encode(Self.sampleSet(seed: 3, count: 5), compress: compress)
        for n in 0..<bytes.count {
            #expect(throws: ReplicationError.self) { try ChangeSetCodec.decode(Array(bytes.prefix(n))) }
        }
    }

    @Test("garbage, a newer format and oversized input get their own errors")
    func hostileInput() throws {
        #expect { try ChangeSetCodec.decode(Array("hello, world".utf8)) } throws: { ($0 as? ReplicationError)?.code == .malformedChangeSet }
        var newer = try ChangeSetCodec.encode(Self.sampleSet(seed: 1))
        newer[4] = 9
        #expect { try ChangeSetCodec.decode(newer) } throws: { ($0 as? ReplicationError)?.code == .unsupportedFormat }
        let big = try ChangeSetCodec.encode(Self.sampleSet(seed: 1, count: 200))
        #expect { try ChangeSetCodec.decode(big, limits: CodecLimits(maximumEncodedBytes: 100)) } throws: {
            ($0 as? ReplicationError)?.code == .changeSetTooLarge
        }
        #expect { try ChangeSetCodec.decode(big, limits: CodecLimits(maximumBodyBytes: 100)) } throws: { ($0 as? ReplicationError)?.code == .changeSetTooLarge }

        // A 30-byte file claiming a 512 MiB body: refused from the header, before allocating.
        var lie = ByteWriter(capacity: 64)
        lie.raw(ChangeSetCodec.magic)
        lie.byte(ChangeSetCodec.formatVersion)
        lie.byte(1)
        lie.varint(1)
        lie.string("SH01")
        lie.varint(0)
        lie.varint(1)
        lie.varint(512 << 20)
        lie.varint(8)
        lie.uint32(0)
        lie.raw([0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])
        #expect { try ChangeSetCodec.header(of: lie.bytes) } throws: {
            ($0 as? ReplicationError)?.code == .malformedChangeSet && "\($0)".contains("more than deflate can produce")
        }
    }
}
