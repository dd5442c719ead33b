/// Where a complaint stands against its deadlines, derived from its timeline.
///
/// Each reopening starts a new *round* with fresh deadlines counted from the round's first
/// transition. A deadline is met when the step happens at or before it: exactly on the
/// deadline is on time, one millisecond later is a breach.
public struct ComplaintSLA: Sendable, Hashable {
    /// One handling of the complaint: the first, or one after a reopening.
    public struct Round: Sendable, Hashable {
        public var epoch: Int
        public var start: Int64
        public var acknowledgeBy: Int64
        public var resolveBy: Int64
        public var acknowledgedAt: Int64?
        public var resolvedAt: Int64?
        public var acknowledgeBreached: Bool
        public var resolveBreached: Bool
    }

    public var rule: SLARule
    /// Rounds in epoch order; never empty.
    public var rounds: [Round]
    /// Who must look at it now: a missed acknowledgement goes to the branch manager, a missed
    /// resolution to headquarters.
    public var escalation: Escalation
    /// Whether the current round has a step still open past its deadline.
    public var overdue: Bool
    /// Whether any round missed a deadline.
    public var breached: Bool { rounds.contains { $0.acknowledgeBreached || $0.resolveBreached } }
    public var current: Round { rounds[rounds.count - 1] }

    public enum Escalation: String, Sendable, Codable {
        case none, branch, headquarters
    }

    /// One transition of the timeline.
    public struct Step: Sendable, Hashable {
        public var epoch: Int
        public var stage: ComplaintStage
        public var at: Int64

        public init(epoch: Int, stage: ComplaintStage, at: Int64) {
            self.epoch = epoch
            self.stage = stage
            self.at = at
        }
    }

    /// Evaluates a timeline against a rule at the instant `now` (all times in milliseconds).
    public static func evaluate(openedAt: Int64, timeline: [Step], rule: SLARule, now: Int64) -> ComplaintSLA {
        let epochs = Set(timeline.map(\.epoch)).union([0]).sorted()
        var rounds: [Round] = []
        for epoch in epochs {
            let steps = timeline.filter { $0.epoch == epoch }
            let start = epoch == 0 ? openedAt : (steps.map(\.at).min() ?? openedAt)
            // Stored deadlines and times may be anything a peer sent: saturate, never trap.
            let ackBy = start.adding(saturating: Int64(rule.acknowledgeMinutes).multiplied(saturating: 60_000))
            let resolveBy = start.adding(saturating: Int64(rule.resolveMinutes).multiplied(saturating: 60_000))
            // A step that skips ahead (straight to resolved) acknowledges too.
            let acknowledged = steps.filter { $0.stage.rawValue >= ComplaintStage.acknowledged.rawValue }.map(\.at).min()
            let resolved = steps.filter { $0.stage.rawValue >= ComplaintStage.resolved.rawValue }.map(\.at).min()
            rounds.append(
                Round(
                    epoch: epoch, start: start, acknowledgeBy: ackBy, resolveBy: resolveBy, acknowledgedAt: acknowledged, resolvedAt: resolved,
                    acknowledgeBreached: (acknowledged ?? now) > ackBy, resolveBreached: (resolved ?? now) > resolveBy))
        }
        let current = rounds[rounds.count - 1]
        let escalation: Escalation = current.resolveBreached ? .headquarters : current.acknowledgeBreached ? .branch : .none
        let overdue =
            (current.acknowledgedAt == nil && now > current.acknowledgeBy) || (current.resolvedAt == nil && now > current.resolveBy)
        return ComplaintSLA(rule: rule, rounds: rounds, escalation: escalation, overdue: overdue)
    }
}
