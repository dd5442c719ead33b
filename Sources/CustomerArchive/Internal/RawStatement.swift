import Foundation
import GRDB
import GRDBSQLite
import Replication

/// The merge path's statements, bound and stepped through SQLite's C API.
///
/// The merge runs a handful of statements per record, a million times in a catch-up; GRDB's
/// general row and argument machinery (existential arguments, rows with lower-cased column
/// names) costs more than SQLite itself there. Statements still come from GRDB's cache, and each
/// is reset after use, so GRDB's own use of them is unaffected.
struct RawStatement {
    let statement: Statement
    var handle: OpaquePointer { statement.sqliteStatement }
    private var index: Int32 = 0

    init(_ statement: Statement) {
        self.statement = statement
        sqlite3_reset(statement.sqliteStatement)
        sqlite3_clear_bindings(statement.sqliteStatement)
    }

    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    mutating func bind(_ value: Value) {
        if case .blob(let b) = value { return bind(bytes: b) }
        index += 1
        switch value {
        case .null: sqlite3_bind_null(handle, index)
        case .integer(let i): sqlite3_bind_int64(handle, index, i)
        case .text(let s):
            var s = s
            let i = index
            let h = handle
            s.withUTF8 { buf in
                let base = UnsafeRawPointer(buf.baseAddress ?? UnsafePointer(bitPattern: 1)!).assumingMemoryBound(to: CChar.self)
                _ = sqlite3_bind_text(h, i, base, Int32(buf.count), Self.transient)
            }
        case .blob: break
        }
    }

    mutating func bind(_ i: Int64) {
        index += 1
        sqlite3_bind_int64(handle, index, i)
    }

    mutating func bind(_ key: RecordKey) {
        index += 1
        let i = index
        let h = handle
        key.withUnsafeBytes { buf in _ = sqlite3_bind_blob(h, i, buf.baseAddress, 16, Self.transient) }
    }

    mutating func bind(bytes: [UInt8]) {
        index += 1
        let i = index
        let h = handle
        bytes.withUnsafeBytes { buf in _ = sqlite3_bind_blob(h, i, buf.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(buf.count), Self.transient) }
    }

    mutating func bind(_ s: String) { bind(Value.text(s)) }

    /// Steps once: `true` when a row is ready to read.
    func step(_ db: Database) throws -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            let message = String(cString: sqlite3_errmsg(db.sqliteConnection))
            sqlite3_reset(handle)
            throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: message, sql: statement.sql)
        }
    }

    /// Runs a statement that returns no row, then resets it.
    func run(_ db: Database) throws {
        defer { sqlite3_reset(handle) }
        _ = try step(db)
    }

    func done() { sqlite3_reset(handle) }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

    func bytes(_ column: Int32) -> [UInt8] {
        let n = Int(sqlite3_column_bytes(handle, column))
        guard n > 0, let p = sqlite3_column_blob(handle, column) else { return [] }
        return [UInt8](UnsafeRawBufferPointer(start: p, count: n))
    }

    /// A 16-byte blob column as a record key; nil for anything else.
    func key(_ column: Int32) -> RecordKey? {
        guard sqlite3_column_type(handle, column) == SQLITE_BLOB, sqlite3_column_bytes(handle, column) == 16,
            let p = sqlite3_column_blob(handle, column)
        else { return nil }
        return RecordKey(loading: UnsafeRawBufferPointer(start: p, count: 16))
    }

    func value(_ column: Int32) -> Value {
        switch sqlite3_column_type(handle, column) {
        case SQLITE_NULL: return .null
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(handle, column))
        case SQLITE_FLOAT: return .integer(Int64(sqlite3_column_double(handle, column)))
        case SQLITE_TEXT:
            let n = Int(sqlite3_column_bytes(handle, column))
            guard let p = sqlite3_column_text(handle, column) else { return .text("") }
            return .text(String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self))
        default: return .blob(bytes(column))
        }
    }
}
