import Crypto
import Replication

extension RecordKey {
    /// A key fixed by what the record stands for (an SLA rule's category and severity, a
    /// customer's figures for one month), so that sites writing "the same" record offline
    /// write one record, not two: SHA-256 of the parts, cut to 128 bits, marked as a UUID of
    /// version 8 (custom).
    package static func derived(_ parts: String...) -> RecordKey {
        var hasher = SHA256()
        for part in parts {
            let bytes = Array(part.utf8)
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            hasher.update(data: Swift.withUnsafeBytes(of: UInt32(bytes.count).bigEndian, Array.init))
            hasher.update(data: bytes)
        }
        var d = Array(hasher.finalize().prefix(16))
        d[6] = (d[6] & 0x0F) | 0x80
        d[8] = (d[8] & 0x3F) | 0x80
        return try! RecordKey(bytes: d)
    }
}
