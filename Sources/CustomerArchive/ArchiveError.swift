import Replication

/// The one error type of the archive: a code, a message for the operator (what failed, which
/// site, file or record id, what to do), and an optional underlying cause.
///
/// Messages carry record ids and numbers, never field values: those can be customer data.
public struct ArchiveError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable, Hashable {
        case notInitialized
        case alreadyInitialized
        case notFound
        case invalidInput
        case invalidState
        case refused
        case schemaTooNew
        case malformedChangeSet
        /// A change set from a site that may not send it: its producer or a change's origin is
        /// not the sender, or a branch's set reached another branch.
        case forgedOrigin
        /// A change set over a size limit.
        case tooLarge
        /// A branch's change set that starts past what headquarters holds of the branch's log:
        /// an earlier set is missing (a file applied before the one it follows).
        case outOfOrder
        case storage
    }

    public var code: Code
    public var message: String
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        guard let cause else { return message }
        return "\(message) (\(cause))"
    }
}
