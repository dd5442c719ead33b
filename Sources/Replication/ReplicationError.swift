/// The one error type of the replication core: a code to branch on, a message for the operator,
/// and an optional underlying cause.
///
/// Messages name sites, record ids, offsets and limits; they never carry field values, so they are
/// safe to log (values can be customer data).
public struct ReplicationError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        case invalidSiteCode
        case invalidRecordKey
        case clockDrift
        case malformedChangeSet
        case unsupportedFormat
        case changeSetTooLarge
        case compressionFailed
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
