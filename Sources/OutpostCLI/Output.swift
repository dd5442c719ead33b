import CustomerArchive
import Foundation
import Replication

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An error of the command line itself (bad input noticed before the archive is touched).
/// Its message is printed as one `error:` line; like the archive's errors it never carries
/// customer field values.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// Printing: `key: value` blocks, tables, JSON, and stderr lines.
enum Output {
    /// Writes a string to stdout as it is (no newline added).
    static func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    /// Writes one line to stderr.
    static func error(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// Whether stderr is a terminal (progress is shown only then).
    static var stderrIsTerminal: Bool { isatty(2) == 1 }

    /// Prints JSON the way `--json` promises: pretty, deterministic, one trailing newline.
    static func json(_ value: JSON) {
        write(value.rendered(pretty: true) + "\n")
    }

    /// Prints aligned `key: value` lines, skipping pairs whose value is nil.
    static func fields(_ pairs: [(String, String?)], indent: Int = 0) {
        let present = pairs.compactMap { k, v in v.map { (k, $0) } }
        let width = present.map { displayWidth($0.0) }.max() ?? 0
        var out = ""
        for (k, v) in present {
            out += String(repeating: " ", count: indent) + k + ":" + String(repeating: " ", count: width - displayWidth(k) + 1)
            out += oneLine(v) + "\n"
        }
        write(out)
    }

    /// Prints a table with a header row; columns padded by display width (CJK counts 2).
    static func table(_ headers: [String], _ rows: [[String]]) {
        var widths = headers.map(displayWidth)
        let rows = rows.map { $0.map(oneLine) }
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], displayWidth(cell)) }
        }
        func line(_ cells: [String]) -> String {
            var s = ""
            for (i, cell) in cells.enumerated() {
                if i == cells.count - 1 {
                    s += cell
                } else {
                    s += cell + String(repeating: " ", count: widths[i] - displayWidth(cell) + 2)
                }
            }
            while s.hasSuffix(" ") { s.removeLast() }
            return s + "\n"
        }
        var out = line(headers)
        for row in rows { out += line(row) }
        write(out)
    }

    /// A value on one line, safe for a terminal: newlines and tabs shown as spaces so a table
    /// or block stays intact; every other control character (C0, DEL, C1, which can drive a
    /// terminal: escape sequences, title changes) and the bidirectional overrides (which can
    /// make text read backwards) shown escaped as `\u{1B}`. JSON and CSV output stay exact.
    static func oneLine(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: needsEscaping) else { return s }
        var out = String.UnicodeScalarView()
        for u in s.unicodeScalars {
            if u == "\n" || u == "\r" || u == "\t" || u == "\u{85}" || u == "\u{2028}" || u == "\u{2029}" {
                out.append(" ")
            } else if needsEscaping(u) {
                out.append(contentsOf: "\\u{\(String(u.value, radix: 16, uppercase: true))}".unicodeScalars)
            } else {
                out.append(u)
            }
        }
        return String(out)
    }

    private static func needsEscaping(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069, 0x2028, 0x2029: true
        default: false
        }
    }

    /// Cuts a string to at most `width` columns, marking the cut with `…`.
    static func truncated(_ s: String, _ width: Int) -> String {
        let s = oneLine(s)
        guard displayWidth(s) > width else { return s }
        var out = ""
        var used = 0
        for c in s {
            let w = displayWidth(String(c))
            if used + w > width - 1 { break }
            out.append(c)
            used += w
        }
        return out + "…"
    }

    /// Terminal columns a string takes: East Asian wide and full-width characters count 2,
    /// combining marks 0.
    static func displayWidth(_ s: String) -> Int {
        var w = 0
        for u in s.unicodeScalars {
            let v = u.value
            switch v {
            case 0x0300...0x036F, 0x200B...0x200F, 0xFE00...0xFE0F: continue
            case 0x1100...0x115F, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF,
                0xA000...0xA4CF, 0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F, 0xFF00...0xFF60,
                0xFFE0...0xFFE6, 0x1F300...0x1F64F, 0x1F900...0x1F9FF, 0x20000...0x3FFFD:
                w += 2
            default: w += 1
            }
        }
        return w
    }

    // MARK: Values

    /// A field value as text: nil for null, keys as UUIDs.
    static func text(_ value: Value) -> String? {
        switch value {
        case .null: nil
        case .integer(let i): String(i)
        case .text(let s): s
        case .blob(let b): (try? RecordKey(bytes: b))?.description ?? b.map { String(format: "%02x", $0) }.joined()
        }
    }

    static func money(_ value: Value) -> String? {
        value.integerValue.map(Money.format)
    }

    static func yesNo(_ value: Value) -> String? {
        value.integerValue.map { $0 != 0 ? "yes" : "no" }
    }

    /// Milliseconds since the epoch as company time (UTC+8), e.g. `2026-03-01 14:05 +08`.
    static func time(_ value: Value) -> String? {
        value.integerValue.map { time(milliseconds: $0) }
    }

    static func time(milliseconds ms: Int64) -> String {
        let date = CompanyTime.date(ofMilliseconds: ms)
        let minutes = ms.subtracting(saturating: CompanyTime.start(of: date)) / 60_000
        return String(format: "%@ %02lld:%02lld +08", date.description, minutes / 60, minutes % 60)
    }

    /// A record's state words, e.g. `deleted`, `erased`, `archived`.
    static func state(_ record: Record) -> String {
        var words: [String] = []
        if record.erased { words.append("erased") }
        if !record.alive { words.append("deleted") }
        if record["archived"].integerValue == 1 { words.append("archived") }
        if !record["merged_into"].isNull { words.append("merged") }
        return words.isEmpty ? "active" : words.joined(separator: ", ")
    }

    static func pluralize(_ n: Int, _ noun: String) -> String {
        "\(n) \(noun)\(n == 1 ? "" : "s")"
    }
}
