/// A CSV reader (RFC 4180): comma-separated, fields optionally in double quotes, a doubled
/// quote inside quotes, line breaks inside quotes, CRLF or LF line ends.
public struct CSVReader: Sendable {
    /// One record and the line of the file it starts on (1-based), for error messages.
    public struct Row: Sendable, Hashable {
        public var line: Int
        public var fields: [String]
    }

    public enum Problem: Error, Hashable {
        /// A quote opened on this line is never closed.
        case unterminatedQuote(line: Int)
        /// Text right after a closing quote, on this line.
        case textAfterQuote(line: Int)
    }

    private let bytes: [UInt8]
    private var position = 0
    private var line = 1

    public init(utf8 bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// Bytes read so far, for progress.
    public var offset: Int { position }

    /// The next record, `nil` at the end. Blank lines are skipped.
    public mutating func next() throws(Problem) -> Row? {
        while position < bytes.count {
            let start = line
            var fields: [String] = []
            var field: [UInt8] = []
            var quoted = false
            var afterQuote = false
            var atStart = true
            var recordEnded = false
            while position < bytes.count {
                let b = bytes[position]
                if quoted {
                    if b == UInt8(ascii: "\"") {
                        if position + 1 < bytes.count && bytes[position + 1] == UInt8(ascii: "\"") {
                            field.append(b)
                            position += 2
                            continue
                        }
                        quoted = false
                        afterQuote = true
                    } else {
                        if b == UInt8(ascii: "\n") { line += 1 }
                        field.append(b)
                    }
                    position += 1
                    continue
                }
                switch b {
                case UInt8(ascii: ","):
                    fields.append(String(decoding: field, as: UTF8.self))
                    field.removeAll(keepingCapacity: true)
                    afterQuote = false
                    atStart = true
                    position += 1
                    continue
                case UInt8(ascii: "\r") where position + 1 < bytes.count && bytes[position + 1] == UInt8(ascii: "\n"):
                    position += 2
                    line += 1
                    recordEnded = true
                case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                    position += 1
                    line += 1
                    recordEnded = true
                case UInt8(ascii: "\"") where atStart && field.isEmpty:
                    quoted = true
                    atStart = false
                    position += 1
                    continue
                default:
                    if afterQuote { throw .textAfterQuote(line: line) }
                    field.append(b)
                    atStart = false
                    position += 1
                    continue
                }
                if recordEnded { break }
            }
            if quoted { throw .unterminatedQuote(line: start) }
            fields.append(String(decoding: field, as: UTF8.self))
            if fields.count == 1 && fields[0].allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
            return Row(line: start, fields: fields)
        }
        return nil
    }
}
