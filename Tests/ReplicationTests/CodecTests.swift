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
        return ChangeSet(producer: SiteID(unchecked: "SH01"), schemaVersion: 1, after: 7, through: 99, changes: changes)
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
