/// The code of a site: `HQ` for headquarters or a branch code such as `SH01`.
///
/// Site codes appear in human record numbers, certificates and logs, so they are short,
/// upper-case ASCII letters, digits and `-`, 2 to 16 characters. Sites are ordered by their
/// code, which breaks ties between equal clock readings the same way on every replica.
public struct SiteID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let code: String

    /// Creates a site id after checking the code's shape.
    /// - Throws: ``ReplicationError`` with code `.invalidSiteCode` when the code is malformed.
    public init(_ code: String) throws(ReplicationError) {
        guard SiteID.isValid(code) else {
            throw ReplicationError(
                .invalidSiteCode,
                "site code '\(code.prefix(32))' is not valid: use 2 to 16 characters A-Z, 0-9 or '-', starting with a letter"
            )
        }
        self.code = code
    }

    /// Creates a site id from a code that is already known to be valid (read back from storage).
    package init(unchecked code: String) {
        self.code = code
    }

    public static func isValid(_ code: String) -> Bool {
        let bytes = Array(code.utf8)
        guard (2...16).contains(bytes.count), let first = bytes.first, (65...90).contains(first) else {
            return false
        }
        return bytes.allSatisfy { (65...90).contains($0) || (48...57).contains($0) || $0 == 45 }
    }

    /// The conventional code of headquarters.
    public static let headquarters = SiteID(unchecked: "HQ")

    public static func < (lhs: SiteID, rhs: SiteID) -> Bool {
        // Codes are ASCII, so byte order is the same on every platform and locale.
        lhs.code.utf8.lexicographicallyPrecedes(rhs.code.utf8)
    }

    public var description: String { code }
}
