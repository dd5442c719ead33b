/// The globally unique key of a replicated row: a 128-bit UUID made where the row is born.
///
/// New keys are UUIDv7 (time-ordered), so rows created together sit together in SQLite's
/// B-trees. Keys compare in byte order.
public struct RecordKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public init(bytes: some Collection<UInt8>) throws(ReplicationError) {
        guard bytes.count == 16 else {
            throw ReplicationError(.invalidRecordKey, "a record key has 16 bytes, got \(bytes.count)")
        }
        // Arrays, slices and Data hold their bytes in one piece: two loads, no iteration.
        if let key = bytes.withContiguousStorageIfAvailable({ RecordKey(loading: UnsafeRawBufferPointer($0)) }) {
            self = key
            return
        }
        var h: UInt64 = 0
        var l: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { h = h << 8 | UInt64(b) } else { l = l << 8 | UInt64(b) }
        }
        self.init(high: h, low: l)
    }

    /// The key in 16 bytes (big-endian halves); the caller has checked there are 16.
    public init(loading raw: UnsafeRawBufferPointer) {
        self.init(
            high: UInt64(bigEndian: raw.loadUnaligned(as: UInt64.self)), low: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }

    /// Calls `body` with the key's 16 bytes, without allocating.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: (high.bigEndian, low.bigEndian)) { try body($0) }
    }

    /// Parses the canonical text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (either case).
    public init?(_ text: String) {
        var nibbles: [UInt8] = []
        nibbles.reserveCapacity(32)
        for (i, c) in text.utf8.enumerated() {
            if [8, 13, 18, 23].contains(i) {
                guard c == 45 else { return nil }
                continue
            }
            switch c {
            case 48...57: nibbles.append(c - 48)
            case 97...102: nibbles.append(c - 87)
            case 65...70: nibbles.append(c - 55)
            default: return nil
            }
        }
        guard nibbles.count == 32, text.utf8.count == 36 else { return nil }
        var h: UInt64 = 0
        var l: UInt64 = 0
        for i in 0..<16 { h = h << 4 | UInt64(nibbles[i]) }
        for i in 16..<32 { l = l << 4 | UInt64(nibbles[i]) }
        self.init(high: h, low: l)
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 {
            out[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i)))
            out[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i)))
        }
        return out
    }

    public var description: String {
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(36)
        for (i, b) in bytes.enumerated() {
            if [4, 6, 8, 10].contains(i) { out.append(45) }
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func < (lhs: RecordKey, rhs: RecordKey) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }

    /// Makes a UUIDv7: 48 bits of Unix milliseconds, version 7, variant 10, 74 random bits.
    public static func version7(milliseconds: UInt64, using generator: inout some RandomNumberGenerator) -> RecordKey {
        let randA = UInt64.random(in: 0...0xFFF, using: &generator)
        return version7(milliseconds: milliseconds, randomA: randA, randomB: generator.next())
    }

    /// Makes a UUIDv7 from a clock reading and random bits (only the low 12 bits of `randomA`
    /// and the low 62 bits of `randomB` are used).
    public static func version7(milliseconds: UInt64, randomA: UInt64, randomB: UInt64) -> RecordKey {
        let high = (milliseconds & 0xFFFF_FFFF_FFFF) << 16 | 0x7000 | (randomA & 0xFFF)
        let low = (randomB & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
        return RecordKey(high: high, low: low)
    }

    /// The key of a row whose identity is fixed by definition (for example the single
    /// configuration record), the same on every site.
    public static func wellKnown(_ n: UInt64) -> RecordKey {
        RecordKey(high: 0, low: n)
    }
}
