/// A strict reader for the part of TOML a configuration file needs: `[table]` headers,
/// `key = value` lines with basic and literal strings, integers, booleans and one-line
/// arrays, and `#` comments. Anything else is an error naming the line, so a typo never
/// passes silently.
public struct TOMLDocument: Sendable {
    public enum Value: Sendable, Equatable {
        case string(String)
        case integer(Int64)
        case boolean(Bool)
        case array([Value])

        var typeName: String {
            switch self {
            case .string: "a string"
            case .integer: "an integer"
            case .boolean: "a boolean"
            case .array: "an array"
            }
        }
    }

    public struct Entry: Sendable {
        public var value: Value
        public var line: Int
    }

    /// Entries by dotted key (`sync.hq_address`); keys before any table have no prefix.
    public private(set) var entries: [String: Entry] = [:]
    /// Tables in the order they appear, with their lines.
    public private(set) var tables: [String: Int] = [:]

    public init(parsing text: String) throws(TOMLError) {
        var table = ""
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            var line = Substring(rawLine)
            if line.hasSuffix("\r") { line = line.dropLast() }
            var scanner = Scanner(line, line: lineNumber)
            scanner.skipSpaces()
            if scanner.atEnd || scanner.peek == "#" { continue }
            if scanner.peek == "[" {
                scanner.advance()
                if scanner.peek == "[" { throw TOMLError(line: lineNumber, "arrays of tables ([[...]]) are not used in this file") }
                let name = try scanner.dottedKey()
                scanner.skipSpaces()
                guard scanner.peek == "]" else { throw TOMLError(line: lineNumber, "expected ']' after the table name") }
                scanner.advance()
                try scanner.expectLineEnd()
                if tables[name] != nil { throw TOMLError(line: lineNumber, "table [\(name)] appears twice") }
                tables[name] = lineNumber
                table = name
                continue
            }
            let key = try scanner.dottedKey()
            scanner.skipSpaces()
            guard scanner.peek == "=" else { throw TOMLError(line: lineNumber, "expected '=' after key '\(key)'") }
            scanner.advance()
            scanner.skipSpaces()
            let value = try scanner.value()
            try scanner.expectLineEnd()
            let full = table.isEmpty ? key : "\(table).\(key)"
            if let previous = entries[full] {
                throw TOMLError(line: lineNumber, "key '\(full)' is already set on line \(previous.line)")
            }
            entries[full] = Entry(value: value, line: lineNumber)
        }
    }

    private struct Scanner {
        let chars: [Character]
        var position = 0
        let line: Int

        init(_ text: Substring, line: Int) {
            chars = Array(text)
            self.line = line
        }

        var atEnd: Bool { position >= chars.count }
        var peek: Character? { atEnd ? nil : chars[position] }
        mutating func advance() { position += 1 }

        mutating func skipSpaces() {
            while let c = peek, c == " " || c == "\t" { advance() }
        }

        mutating func expectLineEnd() throws(TOMLError) {
            skipSpaces()
            if atEnd || peek == "#" { return }
            throw TOMLError(line: line, "unexpected text after the value: '\(String(chars[position...]).prefix(20))'")
        }

        mutating func bareKey() throws(TOMLError) -> String {
            var key = ""
            while let c = peek, c.isASCII && (c.isLetter || c.isNumber || c == "_" || c == "-") {
                key.append(c)
                advance()
            }
            guard !key.isEmpty else { throw TOMLError(line: line, "expected a key (letters, digits, '_' or '-')") }
            return key
        }

        mutating func dottedKey() throws(TOMLError) -> String {
            skipSpaces()
            var parts = [try bareKey()]
            skipSpaces()
            while peek == "." {
                advance()
                skipSpaces()
                parts.append(try bareKey())
                skipSpaces()
            }
            return parts.joined(separator: ".")
        }

        mutating func value() throws(TOMLError) -> Value {
            guard let c = peek else { throw TOMLError(line: line, "a value is missing after '='") }
            switch c {
            case "\"":
                return .string(try basicString())
            case "'":
                advance()
                var s = ""
                while let c = peek, c != "'" {
                    s.append(c)
                    advance()
                }
                guard peek == "'" else { throw TOMLError(line: line, "the string is not closed with '") }
                advance()
                return .string(s)
            case "[":
                advance()
                var items: [Value] = []
                skipSpaces()
                while peek != "]" {
                    guard !atEnd else { throw TOMLError(line: line, "the array is not closed with ']' on the same line") }
                    items.append(try value())
                    skipSpaces()
                    if peek == "," {
                        advance()
                        skipSpaces()
                    } else if peek != "]" {
                        throw TOMLError(line: line, "expected ',' or ']' in the array")
                    }
                }
                advance()
                return .array(items)
            default:
                var word = ""
                while let c = peek, !(c == " " || c == "\t" || c == "#" || c == "," || c == "]") {
                    word.append(c)
                    advance()
                }
                if word == "true" { return .boolean(true) }
                if word == "false" { return .boolean(false) }
                let digits = word.replacingOccurrences(of: "_", with: "")
                if let n = Int64(digits), !word.hasPrefix("_"), !word.hasSuffix("_") { return .integer(n) }
                throw TOMLError(line: line, "'\(word.prefix(20))' is not a value: strings need quotes, numbers are whole numbers")
            }
        }

        mutating func basicString() throws(TOMLError) -> String {
            advance()
            var s = ""
            while let c = peek, c != "\"" {
                advance()
                if c == "\\" {
                    guard let e = peek else { break }
                    advance()
                    switch e {
                    case "\"": s.append("\"")
                    case "\\": s.append("\\")
                    case "n": s.append("\n")
                    case "t": s.append("\t")
                    case "r": s.append("\r")
                    case "u", "U":
                        let count = e == "u" ? 4 : 8
                        var hex = ""
                        for _ in 0..<count {
                            guard let h = peek else { break }
                            hex.append(h)
                            advance()
                        }
                        guard hex.count == count, let scalar = UInt32(hex, radix: 16).flatMap(Unicode.Scalar.init) else {
                            throw TOMLError(line: line, "bad \\\(e) escape in a string")
                        }
                        s.unicodeScalars.append(scalar)
                    default:
                        throw TOMLError(line: line, "unknown escape '\\\(e)' in a string")
                    }
                } else {
                    s.append(c)
                }
            }
            guard peek == "\"" else { throw TOMLError(line: line, "the string is not closed with \"") }
            advance()
            return s
        }
    }
}

public struct TOMLError: Error, CustomStringConvertible, Sendable {
    public var line: Int
    public var message: String
    public init(line: Int, _ message: String) {
        self.line = line
        self.message = message
    }
    public var description: String { "line \(line): \(message)" }
}
