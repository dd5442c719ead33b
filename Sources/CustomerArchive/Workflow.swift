/// Stages of a complaint, in workflow order. Reopening starts a new epoch at `received`.
public enum ComplaintStage: Int, CaseIterable, Sendable, Codable {
    case received = 0
    case acknowledged = 1
    case investigating = 2
    case resolved = 3
    case closed = 4

    public var name: String { "\(self)" }

    public init?(name: String) {
        guard let s = Self.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = s
    }
}

/// Stages of a claim. Rank decides concurrent transitions: a rejection outranks an approval,
/// a payment outranks both (money paid in the world is never hidden).
public enum ClaimStage: Int, CaseIterable, Sendable, Codable {
    case filed = 0
    case assessing = 1
    case approved = 2
    case rejected = 3
    case paid = 4
    case closed = 5

    public var name: String { "\(self)" }
}

/// Complaint categories.
public enum ComplaintCategory: String, CaseIterable, Sendable, Codable {
    case late, lost, damaged, attitude, price, other
}

/// Contact kinds (客户接触).
public enum ContactKind: String, CaseIterable, Sendable, Codable {
    case call, visit
    case returnVisit = "return_visit"
    case praise, suggestion
}

/// Company-wide settings replicated from headquarters.
public enum Settings {
    /// Claims above this amount need headquarters' approval: 5,000.00 yuan by default.
    public static let defaultApprovalThresholdFen: Int64 = 500_000
}
