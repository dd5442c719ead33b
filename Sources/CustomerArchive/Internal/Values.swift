import Foundation
import GRDB
import Replication

extension Value {
    init(_ db: DatabaseValue) {
        switch db.storage {
        case .null: self = .null
        case .int64(let i): self = .integer(i)
        case .double(let d): self = .integer(Int64(d))
        case .string(let s): self = .text(s)
        case .blob(let d): self = .blob([UInt8](d))
        }
    }

    var databaseValue: DatabaseValue {
        switch self {
        case .null: .null
        case .integer(let i): i.databaseValue
        case .text(let s): s.databaseValue
        case .blob(let b): Data(b).databaseValue
        }
    }
}

extension RecordKey {
    var data: Data { withUnsafeBytes { Data($0) } }

    init(data: Data) {
        // Keys come from our own BLOB(16) columns; anything else reads as the zero key.
        guard data.count == 16 else {
            self.init(high: 0, low: 0)
            return
        }
        self = data.withUnsafeBytes { RecordKey(loading: $0) }
    }

    var value: Value { .blob(bytes) }
}

extension Value {
    package var keyValue: RecordKey? {
        if case .blob(let b) = self, b.count == 16 { return try? RecordKey(bytes: b) }
        return nil
    }
}
