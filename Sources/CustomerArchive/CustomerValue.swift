import Replication

/// What the value computations know of one customer over a period: figures and counts, never
/// personal data. A customer merged into another counts as part of it.
public struct CustomerFacts: Sendable, Hashable {
    public var id: RecordKey
    public var number: String
    public var homeBranch: String
    public var keyAccount = false
    /// AAA, AA, A, B, C or D; `nil` when unknown.
    public var creditRating: String?
    public var overduePayments = 0
    /// The share of the customer's logistics spending that comes to the company; `nil` unknown.
    public var walletSharePct: Int?
    /// Years from `customer_since` to the end of the period (0 when unknown).
    public var relationshipYears = 0.0
    public var revenueFen: Int64 = 0
    public var profitFen: Int64 = 0
    /// Shipments in the first and the last half of the period (the middle month of an odd
    /// period counts in neither).
    public var earlierShipments: Int64 = 0
    public var laterShipments: Int64 = 0
    /// Months of the period with at least one shipment, and the period's length in months.
    public var activeMonths = 0
    public var periodMonths = 12
    /// Complaints opened and praises received in the period.
    public var complaints = 0
    public var praises = 0
    /// The mean satisfaction (1–5) of the return visits in the period; `nil` when none.
    public var satisfaction: Double?

    public init(id: RecordKey, number: String, homeBranch: String) {
        self.id = id
        self.number = number
        self.homeBranch = homeBranch
    }
}

/// ABC(D) classes: A, B and C by Pareto share of the basis; D for low credit, or low loyalty
/// with many complaints, whatever the share.
public enum ValueClass: String, CaseIterable, Sendable, Codable {
    case a = "A", b = "B", c = "C", d = "D"

    /// What to do with a customer of the class.
    public var action: String {
        switch self {
        case .a: "key account: give time and resources, senior contact, priority service"
        case .b: "build loyalty: worth some time and money, may become A"
        case .c: "keep in touch at low cost; grow those with potential into B"
        case .d: "serve minimally; cash or short credit terms; watch bad debt"
        }
    }
}

/// Lifetime-value quadrants: historical value × future potential.
public enum Quadrant: String, CaseIterable, Sendable, Codable {
    /// High history, high potential: the most valuable customers.
    case retain
    /// Low history, high potential: tomorrow's profit.
    case cultivate
    /// High history, low potential.
    case maintain
    /// Low history, low potential.
    case convert

    /// The recommended action (from the field notes on third-party logistics).
    public var action: String {
        switch self {
        case .retain: "retain: offer more value-added services and integrated logistics plans"
        case .cultivate: "cultivate: build the relationship and grow them into mature customers"
        case .maintain: "maintain: keep the existing terms; find what limits their growth, do not cut service blindly"
        case .convert: "convert or let go: differentiated pricing and less credit; end the relationship if that fails"
        }
    }
}

/// One customer valued: class, quadrant and index, with every number they came from.
public struct CustomerValuation: Sendable, Hashable {
    public var facts: CustomerFacts
    public var valueClass: ValueClass
    /// Why class D (`nil` unless D).
    public var dReason: String?
    /// The basis (profit or revenue over the period), its share of the total and the running
    /// share up to and including this customer, in percent.
    public var basisFen: Int64
    public var sharePct: Double
    public var cumulativePct: Double
    /// Each dimension's score, 0–100, and the weighted index, 0–100.
    public var dimensions: [ValueDimension: Double]
    public var index: Double
    /// The future-potential score, 0–100: the mean of growth and wallet headroom.
    public var potential: Double
    public var quadrant: Quadrant
}

/// The customer value model: a pure function of facts and rules, so every site computes the
/// same classes from the same data, and tests can work the answers out by hand.
///
/// Dimension scores (each 0–100, the mean of its indicators):
/// - **attractiveness**: key account (100 or 0); scale = revenue ÷ the largest revenue in scope.
/// - **profitability**: margin = profit ÷ revenue, full marks at 30%; contribution = profit ÷
///   the largest profit in scope.
/// - **relationship**: length = 20 per year since `customer_since`, full marks at 5 years;
///   feedback = 50 + 10 × (praises − complaints), within 0–100.
/// - **credit**: rating AAA 100, AA 90, A 75, B 50, C 25, D 0 (unknown 50); punctuality =
///   100 − 25 per overdue payment, at least 0.
/// - **loyalty**: share of wallet (unknown 50); continuity = months with shipments ÷ months;
///   satisfaction = (mean return-visit score − 1) × 25 (no visit: 50).
/// - **growth**: 50 + 50 × trend; trend = (later − earlier half-period shipments) ÷ earlier,
///   within −1…+1 (+1 when a customer starts from nothing).
///
/// Index = Σ weight × score ÷ Σ weight. Potential = mean(growth, 100 − share of wallet).
///
/// Quadrants: history is high at or above the cut-off (the median of the scope by default);
/// potential is high strictly above its cut-off (50 by default).
public enum ValueModel {
    public static func evaluate(_ all: [CustomerFacts], rules: ValueRules) -> [CustomerValuation] {
        guard !all.isEmpty else { return [] }
        let basis: (CustomerFacts) -> Int64 = rules.basis == .profit ? { $0.profitFen } : { $0.revenueFen }
        let maxRevenue = all.map(\.revenueFen).max() ?? 0
        let maxProfit = all.map(\.profitFen).max() ?? 0

        // Pareto over everyone in scope, largest first (ties by number, the same on every site).
        let order = all.indices.sorted { x, y in
            let bx = basis(all[x])
            let by = basis(all[y])
            return bx != by ? bx > by : all[x].number < all[y].number
        }
        let total = order.reduce(Int128(0)) { $0 + Int128(max(0, basis(all[$1]))) }
        var classes = [ValueClass](repeating: .c, count: all.count)
        var shares = [Double](repeating: 0, count: all.count)
        var cumulative = [Double](repeating: 0, count: all.count)
        var before = Int128(0)
        for i in order {
            let b = Int128(max(0, basis(all[i])))
            if total > 0 && b > 0 {
                if before * 100 < Int128(rules.aCumulativePct) * total {
                    classes[i] = .a
                } else if before * 100 < Int128(rules.bCumulativePct) * total {
                    classes[i] = .b
                }
                shares[i] = Double(b) * 100 / Double(total)
            }
            before += b
            cumulative[i] = total > 0 ? Double(before) * 100 / Double(total) : 0
        }

        var out: [CustomerValuation] = []
        out.reserveCapacity(all.count)
        var valuations: [(dims: [ValueDimension: Double], index: Double, potential: Double)] = []
        for f in all {
            let dims = dimensions(f, maxRevenue: maxRevenue, maxProfit: maxProfit)
            let weightSum = ValueDimension.allCases.reduce(0) { $0 + max(0, rules.weights[$1] ?? 0) }
            let index =
                weightSum > 0
                ? ValueDimension.allCases.reduce(0.0) { $0 + Double(max(0, rules.weights[$1] ?? 0)) * dims[$1]! } / Double(weightSum) : 0
            let headroom = f.walletSharePct.map { Double(100 - min(100, max(0, $0))) } ?? 50
            valuations.append((dims, index, (dims[.growth]! + headroom) / 2))
        }
        let historyCut = rules.quadrantHistoryFen ?? median(all.map(basis))
        for (i, f) in all.enumerated() {
            let (dims, index, potential) = valuations[i]
            var valueClass = classes[i]
            var reason: String?
            let rating = f.creditRating?.uppercased()
            if rating == "C" || rating == "D" {
                reason = "credit rating \(rating!)"
            } else if f.overduePayments >= rules.dOverduePayments {
                reason = "\(f.overduePayments) overdue payments"
            } else if f.complaints >= rules.dComplaints && dims[.loyalty]! < Double(rules.dLoyaltyBelow) {
                reason = "\(f.complaints) complaints with loyalty \(Int(dims[.loyalty]!.rounded()))"
            }
            if reason != nil { valueClass = .d }
            let highHistory = basis(f) >= historyCut
            let highPotential = potential > Double(rules.quadrantPotentialScore)
            let quadrant: Quadrant =
                switch (highHistory, highPotential) {
                case (true, true): .retain
                case (false, true): .cultivate
                case (true, false): .maintain
                case (false, false): .convert
                }
            out.append(
                CustomerValuation(
                    facts: f, valueClass: valueClass, dReason: reason, basisFen: basis(f), sharePct: shares[i], cumulativePct: cumulative[i],
                    dimensions: dims, index: index, potential: potential, quadrant: quadrant))
        }
        return out
    }

    /// The six dimension scores of one customer.
    public static func dimensions(_ f: CustomerFacts, maxRevenue: Int64, maxProfit: Int64) -> [ValueDimension: Double] {
        func clamp(_ x: Double) -> Double { min(100, max(0, x)) }
        func ratio(_ x: Int64, _ of: Int64) -> Double { of > 0 && x > 0 ? clamp(Double(x) * 100 / Double(of)) : 0 }
        let scale = ratio(f.revenueFen, maxRevenue)
        let attractiveness = ((f.keyAccount ? 100 : 0) + scale) / 2
        let margin = f.revenueFen > 0 ? clamp(Double(f.profitFen) / Double(f.revenueFen) / 0.30 * 100) : 0
        let profitability = (margin + ratio(f.profitFen, maxProfit)) / 2
        let length = clamp(20 * f.relationshipYears)
        let feedback = clamp(50 + 10 * Double(f.praises - f.complaints))
        let relationship = (length + feedback) / 2
        let rating: Double =
            switch f.creditRating?.uppercased() {
            case "AAA": 100
            case "AA": 90
            case "A": 75
            case "B": 50
            case "C": 25
            case "D": 0
            default: 50
            }
        let credit = (rating + clamp(100 - 25 * Double(f.overduePayments))) / 2
        let share = f.walletSharePct.map { clamp(Double($0)) } ?? 50
        let continuity = f.periodMonths > 0 ? clamp(Double(f.activeMonths) * 100 / Double(f.periodMonths)) : 0
        let satisfaction = f.satisfaction.map { clamp(($0 - 1) * 25) } ?? 50
        let loyalty = (share + continuity + satisfaction) / 3
        let growth = 50 + 50 * trend(earlier: f.earlierShipments, later: f.laterShipments)
        return [
            .attractiveness: attractiveness, .profitability: profitability, .relationship: relationship, .credit: credit,
            .loyalty: loyalty, .growth: growth,
        ]
    }

    /// The shipment trend, −1…+1.
    public static func trend(earlier: Int64, later: Int64) -> Double {
        if earlier <= 0 { return later > 0 ? 1 : 0 }
        return min(1, max(-1, Double(later - earlier) / Double(earlier)))
    }

    /// The median (the mean of the middle two for an even count), rounded down to a fen.
    public static func median(_ values: [Int64]) -> Int64 {
        guard !values.isEmpty else { return 0 }
        let s = values.sorted()
        let n = s.count
        if n % 2 == 1 { return s[n / 2] }
        let (a, b) = (s[n / 2 - 1], s[n / 2])
        return a / 2 + b / 2 + (a % 2 + b % 2) / 2
    }
}
