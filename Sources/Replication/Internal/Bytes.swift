/// Appends the primitive encodings the codec is built from.
package struct ByteWriter: Sendable {
    package var bytes: [UInt8] = []

    package init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    package mutating func byte(_ b: UInt8) { bytes.append(b) }

    package mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    package mutating func signed(_ v: Int64) {
        varint(UInt64(bitPattern: (v << 1) ^ (v >> 63)))
    }

    package mutating func raw(_ b: some Sequence<UInt8>) { bytes.append(contentsOf: b) }

    package mutating func string(_ s: String) {
        varint(UInt64(s.utf8.count))
        bytes.append(contentsOf: s.utf8)
    }

    package mutating func uint32(_ v: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
    }

    package mutating func key(_ k: RecordKey) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: k.high >> UInt64(shift))) }
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: k.low >> UInt64(shift))) }
    }
}

/// Reads the codec's primitives with a bounds check on every step.
///
/// Every failure is a ``ReplicationError`` `.malformedChangeSet` that names the offset; no input
/// can make it trap or read out of bounds.
package struct ByteReader {
    package let bytes: [UInt8]
    package private(set) var offset: Int
    let end: Int

    package init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil) {
        self.bytes = bytes
        self.offset = start
        self.end = end ?? bytes.count
    }

    package var remaining: Int { end - offset }
    package var isAtEnd: Bool { offset >= end }

    package func fail(_ what: String) -> ReplicationError {
        ReplicationError(.malformedChangeSet, "malformed change set at byte \(offset): \(what)")
    }

    package mutating func byte() throws(ReplicationError) -> UInt8 {
        guard offset < end else { throw fail("unexpected end of data") }
        defer { offset += 1 }
        return bytes[offset]
    }

    package mutating func varint() throws(ReplicationError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try byte()
            if shift == 63 && b > 1 { throw fail("integer overflows 64 bits") }
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw fail("integer overflows 64 bits") }
        }
    }

    package mutating func signed() throws(ReplicationError) -> Int64 {
        let v = try varint()
        return Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1)
    }

    /// Reads a length and checks it against a limit and the bytes left.
    package mutating func length(limit: Int, _ what: String) throws(ReplicationError) -> Int {
        let v = try varint()
        guard v <= UInt64(limit) else { throw fail("\(what) of \(v) exceeds the limit of \(limit)") }
        return Int(v)
    }

    package mutating func raw(_ count: Int) throws(ReplicationError) -> ArraySlice<UInt8> {
        guard count >= 0, count <= remaining else { throw fail("needs \(count) bytes, \(remaining) left") }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    package mutating func string(limit: Int) throws(ReplicationError) -> String {
        let n = try length(limit: limit, "string length")
        let slice = try raw(n)
        guard let s = String(validating: slice, as: UTF8.self) else { throw fail("text is not valid UTF-8") }
        return s
    }

    package mutating func uint32() throws(ReplicationError) -> UInt32 {
        let s = try raw(4)
        return s.reduce(0) { $0 << 8 | UInt32($1) }
    }

    package mutating func key() throws(ReplicationError) -> RecordKey {
        let s = try raw(16)
        var h: UInt64 = 0
        var l: UInt64 = 0
        var i = 0
        for b in s {
            if i < 8 { h = h << 8 | UInt64(b) } else { l = l << 8 | UInt64(b) }
            i += 1
        }
        return RecordKey(high: h, low: l)
    }
}
