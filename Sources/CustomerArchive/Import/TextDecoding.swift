import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Text files as they come from spreadsheets saved in China: UTF-8 (with or without a byte
/// order mark) or GB18030, which includes GBK and GB2312.
public enum TextDecoding {
    public enum Encoding: String, Sendable {
        case utf8 = "UTF-8"
        case gb18030 = "GB18030"
    }

    /// The file's bytes as UTF-8, and which encoding they were in: UTF-8 when they are valid
    /// UTF-8, else GB18030.
    /// - Throws: `.invalidInput` naming the byte offset where neither encoding fits.
    public static func utf8(_ data: [UInt8], encoding: Encoding? = nil) throws -> (bytes: [UInt8], encoding: Encoding) {
        var body = data[...]
        if body.starts(with: [0xEF, 0xBB, 0xBF]) { body = body.dropFirst(3) }
        if encoding != .gb18030 {
            if let bad = firstInvalidUTF8(body) {
                if encoding == .utf8 {
                    throw ArchiveError(.invalidInput, "the file is not valid UTF-8 (byte \(bad)); for GB18030/GBK give --encoding gb18030")
                }
            } else {
                return (Array(body), .utf8)
            }
        }
        return (try convert(Array(body), from: "GB18030"), .gb18030)
    }

    /// The offset of the first byte that is not valid UTF-8, or `nil`.
    static func firstInvalidUTF8(_ bytes: ArraySlice<UInt8>) -> Int? {
        var it = bytes.makeIterator()
        var decoder = UTF8()
        var offset = 0
        var consumed = 0
        while true {
            switch decoder.decode(&it) {
            case .scalarValue(let s):
                offset += UTF8.width(s)
                consumed = offset
            case .emptyInput: return nil
            case .error: return consumed
            }
        }
    }

    /// Converts with the C library's iconv.
    static func convert(_ input: [UInt8], from encoding: String) throws -> [UInt8] {
        guard let cd = iconv_open("UTF-8", encoding), Int(bitPattern: cd) != -1 else {
            throw ArchiveError(.invalidInput, "this system cannot convert from \(encoding) (glibc's gconv modules are missing)")
        }
        defer { iconv_close(cd) }
        var source = input
        // GB18030 takes 1, 2 or 4 bytes per character; UTF-8 at most 4 and never more than
        // twice the GB18030 length.
        var out = [UInt8](repeating: 0, count: input.count * 2 + 16)
        let (failed, written, left): (Bool, Int, Int) = source.withUnsafeMutableBufferPointer { inBuf in
            out.withUnsafeMutableBufferPointer { outBuf in
                var inPtr = UnsafeMutableRawPointer(inBuf.baseAddress)?.assumingMemoryBound(to: CChar.self)
                var inLeft = inBuf.count
                var outPtr = UnsafeMutableRawPointer(outBuf.baseAddress)?.assumingMemoryBound(to: CChar.self)
                var outLeft = outBuf.count
                let r = iconv(cd, &inPtr, &inLeft, &outPtr, &outLeft)
                return (r == -1, outBuf.count - outLeft, inLeft)
            }
        }
        if failed {
            throw ArchiveError(
                .invalidInput, "the file is neither UTF-8 nor \(encoding): cannot decode at byte \(input.count - left); save it as UTF-8 and try again")
        }
        out.removeSubrange(written...)
        return out
    }
}
