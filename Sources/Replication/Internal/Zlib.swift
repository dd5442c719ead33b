import CZlib

/// zlib deflate / inflate and CRC-32 for change-set bodies.
enum Zlib {
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { buf in
            UInt32(CZlib.crc32(0, buf.baseAddress, uInt(buf.count)))
        }
    }

    static func compress(_ input: [UInt8], level: Int32 = 6) throws(ReplicationError) -> [UInt8] {
        var destLength = compressBound(uLong(input.count))
        var out = [UInt8](repeating: 0, count: Int(destLength))
        let rc = out.withUnsafeMutableBufferPointer { dst in
            input.withUnsafeBufferPointer { src in
                compress2(dst.baseAddress, &destLength, src.baseAddress, uLong(src.count), level)
            }
        }
        guard rc == Z_OK else { throw ReplicationError(.compressionFailed, "zlib compression failed with code \(rc)") }
        out.removeLast(out.count - Int(destLength))
        return out
    }

    /// Inflates exactly `expectedLength` bytes; anything else is malformed input. The caller
    /// bounds `expectedLength`, so a small hostile input cannot make this allocate without limit.
    static func decompress(_ input: ArraySlice<UInt8>, expectedLength: Int) throws(ReplicationError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(expectedLength, 1))
        var destLength = uLong(expectedLength)
        let rc = out.withUnsafeMutableBufferPointer { dst in
            input.withUnsafeBufferPointer { src in
                uncompress(dst.baseAddress, &destLength, src.baseAddress, uLong(src.count))
            }
        }
        guard rc == Z_OK, Int(destLength) == expectedLength else {
            throw ReplicationError(
                .malformedChangeSet, "malformed change set: compressed body does not inflate to its declared \(expectedLength) bytes (zlib code \(rc))")
        }
        if expectedLength == 0 { return [] }
        return out
    }
}
