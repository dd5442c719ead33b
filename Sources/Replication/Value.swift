/// A replicated field value. Money is an integer of minor units (fen), times are integer
/// milliseconds, flags are 0/1: there is no floating point anywhere in replicated data.
public enum Value: Hashable, Sendable {
    case null
    case integer(Int64)
    case text(String)
    case blob([UInt8])

    public var integerValue: Int64? {
        if case .integer(let v) = self { return v }
        return nil
    }

    public var textValue: String? {
        if case .text(let v) = self { return v }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}
