import CustomerArchive
import Foundation
import OutpostTesting
import Replication
import Testing

/// The value model against answers worked out by hand in each test.
@Suite("Customer value")
struct CustomerValueTests {
    static func facts(_ number: String, profit: Int64 = 0, revenue: Int64 = 0) -> CustomerFacts {
        var f = CustomerFacts(id: RecordKey(high: 1, low: UInt64(number.hashValue.magnitude)), number: number, homeBranch: "SH01")
        f.profitFen = profit
        f.revenueFen = revenue
        return f
    }

    @Test("ABC cut-offs on a known profit list: A until 80%, the customer at exactly 80% is B, B until 95%")
    func abcCutOffs() throws {
        // Profits 50, 20, 10, 8, 5, 4, 2, 1 (total 100). Running totals before each customer:
        // 0, 50, 70 (< 80: A); 80, 88, 93 (< 95: B); 97, 99 (C).
        let profits: [Int64] = [50, 20, 10, 8, 5, 4, 2, 1]
        let all = profits.enumerated().map { Self.facts("C\($0.offset)", profit: $0.element * 100) }
        let classes = Dictionary(uniqueKeysWithValues: ValueModel.evaluate(all, rules: ValueRules()).map { ($0.facts.number, $0.valueClass) })
        #expect(classes == ["C0": .a, "C1": .a, "C2": .a, "C3": .b, "C4": .b, "C5": .b, "C6": .c, "C7": .c])

        // A at 70%, B at 90%: before-totals 0, 50 (< 70: A); 70, 80 (< 90: B); 88 (< 90: B); 93… C.
        var rules = ValueRules()
        rules.aCumulativePct = 70
        rules.bCumulativePct = 90
        let tight = Dictionary(uniqueKeysWithValues: ValueModel.evaluate(all, rules: rules).map { ($0.facts.number, $0.valueClass) })
        #expect(tight == ["C0": .a, "C1": .a, "C2": .b, "C3": .b, "C4": .b, "C5": .c, "C6": .c, "C7": .c])

        // Shares and running totals are printed as percentages of the total.
        let c3 = try #require(ValueModel.evaluate(all, rules: ValueRules()).first { $0.facts.number == "C3" })
        #expect(c3.sharePct == 8)
        #expect(c3.cumulativePct == 88)
    }

    @Test("class D overrides the Pareto class, and the others keep theirs: credit, overdue payments, demanding and disloyal")
    func classD() throws {
        var all = [50, 20, 10, 8, 5, 4, 2, 1].enumerated().map { Self.facts("C\($0.offset)", profit: Int64($0.element)) }
        all[1].creditRating = "C"  // the second-largest: Pareto says A
        all[3].overduePayments = 3  // Pareto says B; 3 overdue payments is the default D bound
        all[4].overduePayments = 2  // one short: stays B
        // Loyalty = mean(share 10, continuity 0, satisfaction 50) = 20 < 40, and 3 complaints: D.
        all[6].complaints = 3
        all[6].walletSharePct = 10
        // The same with 2 complaints: stays C.
        all[7].complaints = 2
        all[7].walletSharePct = 10
        let out = Dictionary(uniqueKeysWithValues: ValueModel.evaluate(all, rules: ValueRules()).map { ($0.facts.number, $0) })
        #expect(out.mapValues(\.valueClass) == ["C0": .a, "C1": .d, "C2": .a, "C3": .d, "C4": .b, "C5": .b, "C6": .d, "C7": .c])
        #expect(out["C1"]?.dReason == "credit rating C")
        #expect(out["C6"]?.dReason == "3 complaints with loyalty 20")
    }

    @Test("quadrant boundaries: history high from the median, potential high strictly above 50")
    func quadrants() throws {
        // Profits 100, 200, 300, 400 yuan: the median is 250.00 (mean of the middle two).
        func customer(_ n: String, _ profit: Int64, share: Int, earlier: Int64, later: Int64) -> CustomerFacts {
            var f = Self.facts(n, profit: profit)
            f.walletSharePct = share
            f.earlierShipments = earlier
            f.laterShipments = later
            return f
        }
        let all = [
            // growth 50 (flat), headroom 100: potential 75, history low.
            customer("K1", 10_000, share: 0, earlier: 10, later: 10),
            // growth 100 (doubled), headroom 0: potential exactly 50, not high; history low.
            customer("K2", 20_000, share: 100, earlier: 10, later: 20),
            // growth 60 (+20%), headroom 50: potential 55; history high.
            customer("K3", 30_000, share: 50, earlier: 10, later: 12),
            // growth 25 (-50%), headroom 20: potential 22.5; history high.
            customer("K4", 40_000, share: 80, earlier: 10, later: 5),
        ]
        let out = Dictionary(uniqueKeysWithValues: ValueModel.evaluate(all, rules: ValueRules()).map { ($0.facts.number, $0) })
        #expect(out.mapValues(\.quadrant) == ["K1": .cultivate, "K2": .convert, "K3": .retain, "K4": .maintain])
        #expect(out.mapValues(\.potential) == ["K1": 75, "K2": 50, "K3": 55, "K4": 22.5])
        #expect(ValueModel.median(all.map(\.profitFen)) == 25_000)

        // A fixed cut-off of exactly K3's history keeps K3 high and makes K2 … still low.
        var rules = ValueRules()
        rules.quadrantHistoryFen = 30_000
        rules.quadrantPotentialScore = 49  // now K2's 50 is above it
        let fixed = Dictionary(uniqueKeysWithValues: ValueModel.evaluate(all, rules: rules).map { ($0.facts.number, $0.quadrant) })
        #expect(fixed == ["K1": .cultivate, "K2": .cultivate, "K3": .retain, "K4": .maintain])
    }

    @Test("the value index: each dimension from its indicators, weighted as configured")
    func indexWeights() throws {
        var f = Self.facts("X", profit: 15_000, revenue: 100_000)
        f.relationshipYears = 2.5
        f.praises = 2
        f.complaints = 1
        f.creditRating = "AA"
        f.overduePayments = 1
        f.walletSharePct = 40
        f.activeMonths = 9
        f.periodMonths = 12
        f.satisfaction = 4
        f.earlierShipments = 100
        f.laterShipments = 150
        // By hand (the only customer, so it is the largest in scope):
        // attractiveness (0 + 100) / 2 = 50; profitability: margin 15% of 30% = 50, contribution
        // 100 → 75; relationship: 2.5 years → 50, feedback 50 + 10 × (2 − 1) = 60 → 55; credit:
        // AA 90, one overdue 75 → 82.5; loyalty (40 + 75 + 75) / 3 = 63.33; growth +50% → 75.
        let expected: [ValueDimension: Double] = [
            .attractiveness: 50, .profitability: 75, .relationship: 55, .credit: 82.5, .loyalty: 190.0 / 3, .growth: 75,
        ]
        let v = try #require(ValueModel.evaluate([f], rules: ValueRules()).first)
        for d in ValueDimension.allCases { #expect(abs(v.dimensions[d]! - expected[d]!) < 1e-9, "\(d)") }
        // Default weights 10/25/15/15/20/15: 5 + 18.75 + 8.25 + 12.375 + 12.667 + 11.25 = 68.29.
        #expect(abs(v.index - 68.291_666_666) < 1e-6)

        var equal = ValueRules()
        for d in ValueDimension.allCases { equal.weights[d] = 1 }
        #expect(abs(ValueModel.evaluate([f], rules: equal)[0].index - (50 + 75 + 55 + 82.5 + 190.0 / 3 + 75) / 6) < 1e-9)

        var loyaltyOnly = ValueRules()
        for d in ValueDimension.allCases { loyaltyOnly.weights[d] = d == .loyalty ? 7 : 0 }
        #expect(abs(ValueModel.evaluate([f], rules: loyaltyOnly)[0].index - 190.0 / 3) < 1e-9)
    }

    @Test("the archive gathers the facts: monthly figures in the period, complaints, praise, return visits, merged customers")
    func factsFromTheArchive() throws {
        let sites = try Sites()
        let env = sites.environment
        let hq = try sites.make("HQ", role: .hq)
        // 2025-06-15 12:00 in Shanghai: inside the period 2025-01 … 2025-12.
        env.now = UInt64(CompanyTime.start(of: CivilDate(year: 2025, month: 6, day: 15))) + 12 * 3_600_000
        let a = try hq.addCustomer([
            "name": .text("上海物流有限公司"), "home_branch": .text("SH01"), "customer_since": .text("2023-07-01"), "wallet_share_pct": .integer(40),
        ])
        let b = try hq.addCustomer(["name": .text("上海物流"), "home_branch": .text("SH01")])
        for (month, shipments, profit) in [("2025-01", 10, 1_000), ("2025-05", 0, 0), ("2025-07", 30, 3_000), ("2024-12", 99, 99_999)] {
            try hq.recordFigures(
                customer: a.id.description, month: Month(month)!, shipments: Int64(shipments), revenueFen: Int64(profit) * 10, profitFen: Int64(profit))
        }
        // Entering a month again replaces it.
        try hq.recordFigures(customer: a.id.description, month: Month("2025-07")!, shipments: 20, revenueFen: 20_000, profitFen: 2_000)
        try hq.recordFigures(customer: b.id.description, month: Month("2025-08")!, shipments: 5, revenueFen: 5_000, profitFen: 500)
        let complaint = try hq.openComplaint(customer: a.id.description, category: .late, waybill: "SF1")
        _ = try hq.advanceComplaint(complaint.record.id.description, to: .resolved)
        try hq.returnVisit(complaint: complaint.record.id.description, satisfaction: 5)
        try hq.addContact(customer: b.id.description, kind: .returnVisit, satisfaction: 2)
        try hq.addContact(customer: a.id.description, kind: .praise)
        try hq.mergeCustomers(keep: a.id.description, duplicate: b.id.description)
        env.now = 1_767_225_600_000  // 2026-01-01 08:00 Shanghai

        let report = try hq.valueReport()
        #expect((report.from, report.to) == (Month("2025-01")!, Month("2025-12")!))
        #expect(report.valuations.count == 1, "the merged customer counts under the kept one")
        let f = try #require(report.valuations.first).facts
        // Profit 1,000 + 2,000 (July replaced) + 500 (the merged customer); 2024-12 is outside.
        #expect(f.profitFen == 3_500)
        #expect(f.revenueFen == 35_000)
        // Halves: January–June 10, July–December 20 + 5.
        #expect((f.earlierShipments, f.laterShipments) == (10, 25))
        #expect(f.activeMonths == 3)
        #expect((f.complaints, f.praises) == (1, 1))
        #expect(f.satisfaction == 3.5)  // return visits 5 and 2
        #expect(abs(f.relationshipYears - 914 / 365.25) < 1e-9)  // 2023-07-01 to 2025-12-31
        #expect(f.walletSharePct == 40)
    }

    @Test("value rules are written at HQ and replicated; a branch classifies by them and cannot change them")
    func rulesReplicate() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let sh = try sites.make("SH01")
        var rules = ValueRules()
        rules.aCumulativePct = 60
        rules.weights[.loyalty] = 40
        try hq.setValueRules(rules)
        try exchange(hq, sh)
        #expect(try sh.rules().value == rules)
        #expect { try sh.setValueRules(ValueRules()) } throws: { ($0 as? ArchiveError)?.code == .refused }
        #expect {
            try hq.setValueRules(
                {
                    var r = ValueRules(); r.bCumulativePct = 50; return r
                }())
        } throws: {
            ($0 as? ArchiveError)?.code == .invalidInput
        }
    }
}

@Suite("Complaint SLAs")
struct ComplaintSLATests {
    @Test("a step exactly at its deadline is on time; one millisecond later is a breach and escalates")
    func exactBoundary() throws {
        let rule = SLARule(category: .late, severity: .normal, acknowledgeMinutes: 240, resolveMinutes: 3 * 1440)
        let t0: Int64 = 1_000_000
        let ackBy = t0 + 240 * 60_000
        func steps(ack: Int64?, resolve: Int64? = nil) -> [ComplaintSLA.Step] {
            [ComplaintSLA.Step(epoch: 0, stage: .received, at: t0)] + (ack.map { [ComplaintSLA.Step(epoch: 0, stage: .acknowledged, at: $0)] } ?? [])
                + (resolve.map { [ComplaintSLA.Step(epoch: 0, stage: .resolved, at: $0)] } ?? [])
        }
        let onTime = ComplaintSLA.evaluate(openedAt: t0, timeline: steps(ack: ackBy), rule: rule, now: ackBy + 10)
        #expect(!onTime.breached && onTime.escalation == .none && !onTime.overdue)
        let late = ComplaintSLA.evaluate(openedAt: t0, timeline: steps(ack: ackBy + 1), rule: rule, now: ackBy + 10)
        #expect(late.breached && late.escalation == .branch && !late.overdue)
        // Not acknowledged: on time at the deadline itself, overdue one millisecond after.
        #expect(!ComplaintSLA.evaluate(openedAt: t0, timeline: steps(ack: nil), rule: rule, now: ackBy).overdue)
        let open = ComplaintSLA.evaluate(openedAt: t0, timeline: steps(ack: nil), rule: rule, now: ackBy + 1)
        #expect(open.overdue && open.escalation == .branch)
        // Resolution missed: headquarters.
        let resolveBy = t0 + 3 * 1440 * 60_000
        let stale = ComplaintSLA.evaluate(openedAt: t0, timeline: steps(ack: t0 + 1), rule: rule, now: resolveBy + 1)
        #expect(stale.overdue && stale.escalation == .headquarters)
        let resolved = ComplaintSLA.evaluate(openedAt: t0, timeline: steps(ack: t0 + 1, resolve: resolveBy), rule: rule, now: resolveBy + 99)
        #expect(!resolved.breached && !resolved.overdue)
        // Reopened: a new round with fresh deadlines from the reopening.
        let reopenAt = resolveBy + 5_000
        let reopened = ComplaintSLA.evaluate(
            openedAt: t0, timeline: steps(ack: t0 + 1, resolve: resolveBy) + [ComplaintSLA.Step(epoch: 1, stage: .received, at: reopenAt)],
            rule: rule, now: reopenAt + 240 * 60_000)
        #expect(reopened.rounds.count == 2 && reopened.current.acknowledgeBy == reopenAt + 240 * 60_000 && !reopened.overdue)
    }

    @Test("the archive applies the SLA: defaults, a rule set at HQ reaching a branch, list --overdue, the complaints report")
    func archiveSLA() throws {
        let sites = try Sites()
        let env = sites.environment
        let hq = try sites.make("HQ", role: .hq)
        let sh = try sites.make("SH01")
        let customer = try sh.addCustomer(["name": .text("上海物流有限公司")])
        let t0 = env.now
        // Default late/normal: acknowledge within 4 hours.
        let first = try sh.openComplaint(customer: customer.id.description, category: .late, waybill: "SF1")
        #expect(first.sla.current.acknowledgeBy == Int64(t0) + 4 * 3_600_000)
        env.advance(milliseconds: 4 * 3_600_000)
        _ = try sh.advanceComplaint(first.record.id.description)  // exactly on the deadline
        #expect(try !sh.complaint(first.record.id.description).sla.breached)

        // HQ makes late/normal 60 minutes; the branch judges by it once synced.
        try hq.setSLA(SLARule(category: .late, severity: .normal, acknowledgeMinutes: 60, resolveMinutes: 600))
        #expect { try sh.setSLA(SLARule(category: .late, severity: .normal, acknowledgeMinutes: 1, resolveMinutes: 2)) } throws: {
            ($0 as? ArchiveError)?.code == .refused
        }
        try exchange(hq, sh)
        let t1 = env.now
        let second = try sh.openComplaint(customer: customer.id.description, category: .late, waybill: "SF2")
        #expect(second.sla.current.acknowledgeBy == Int64(t1) + 60 * 60_000)
        let third = try sh.openComplaint(customer: customer.id.description, category: .lost, waybill: "SF3", severity: "critical")
        env.advance(milliseconds: 60 * 60_000 + 1)
        // The second missed its hour; the third (lost/critical: 30 minutes) missed too, earlier.
        let overdue = try sh.complaints(overdue: true)
        #expect(overdue.map(\.record.id) == [third.record.id, second.record.id])
        #expect(overdue.allSatisfy { $0.sla.escalation == .branch })
        _ = try sh.advanceComplaint(second.record.id.description, to: .resolved)
        try sh.returnVisit(complaint: second.record.id.description, satisfaction: 4)
        #expect { try sh.returnVisit(complaint: third.record.id.description, satisfaction: 4) } throws: { ($0 as? ArchiveError)?.code == .invalidState }

        // By hand: 3 complaints; acknowledged after 240 min (first), 60.0000167 (second), third
        // not; medians 150.0000083 min; breached: second and third (2 of 3 = 66.7%); one visit, 4.
        let rows = try sh.complaintReport()
        let total = try #require(rows.first { $0.category == nil })
        #expect(total.branch == "SH01")
        #expect(total.statistics.complaints == 3)
        #expect(total.statistics.acknowledged == 2)
        #expect(abs(total.statistics.medianAcknowledgeMinutes! - (240 + 60 + 1.0 / 60_000) / 2) < 1e-9)
        #expect(total.statistics.breached == 2)
        #expect(abs(total.statistics.breachRatePct - 200.0 / 3) < 1e-9)
        #expect(total.statistics.returnVisits == 1 && total.statistics.satisfaction == 4)
        let late = try #require(rows.first { $0.category == .late })
        #expect(late.statistics.complaints == 2 && late.statistics.breached == 1 && late.statistics.resolved == 1)
        #expect(rows.first { $0.category == .lost }?.statistics.complaints == 1)
        // A branch reports on itself only.
        #expect { try sh.complaintReport(branch: "BJ01") } throws: { ($0 as? ArchiveError)?.code == .refused }
    }
}

@Suite("Claims report")
struct ClaimReportTests {
    @Test("claimed, approved and paid add up by branch and category, overpayment by two offline sites included")
    func totals() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let sh = try sites.make("SH01")
        let bj = try sites.make("BJ01")
        let c = try sh.addCustomer(["name": .text("上海物流有限公司")])
        let late = try sh.openComplaint(customer: c.id.description, category: .late, waybill: "SF1")
        // SH01: 1,000.00 claimed for the late delivery, 800.00 approved, paid, closed.
        let one = try sh.fileClaim(customer: c.id.description, complaint: late.record.id.description, waybill: "SF1", claimedFen: 100_000)
        _ = try sh.approveClaim(one.record.id.description, amountFen: 80_000)
        _ = try sh.payClaim(one.record.id.description, amountFen: 80_000)
        _ = try sh.closeClaim(one.record.id.description)
        // SH01: 300.00 claimed without a complaint, approved 300.00; then both SH01 and BJ01 pay
        // 200.00 while apart: 400.00 paid, 100.00 over.
        let two = try sh.fileClaim(customer: c.id.description, waybill: "SF2", claimedFen: 30_000)
        _ = try sh.approveClaim(two.record.id.description, amountFen: 30_000)
        try exchange(sh, bj)
        _ = try sh.payClaim(two.record.id.description, amountFen: 20_000)
        _ = try bj.payClaim(two.record.id.description, amountFen: 20_000)
        // The ledger refuses what this site can see would overpay.
        #expect { try sh.payClaim(two.record.id.description, amountFen: 10_001) } throws: { ($0 as? ArchiveError)?.code == .refused }
        #expect { try sh.payClaim(two.record.id.description, amountFen: -20_001) } throws: { ($0 as? ArchiveError)?.code == .refused }
        // BJ01: 500.00 claimed, rejected.
        let three = try bj.fileClaim(customer: c.id.description, waybill: "SF3", claimedFen: 50_000)
        _ = try bj.rejectClaim(three.record.id.description)
        for (from, to) in [(sh, hq), (bj, hq)] { try exchange(from, to) }

        let rows = try hq.claimReport()
        func row(_ branch: String?, _ category: String?) -> ClaimStatistics? {
            rows.first { $0.branch == branch && $0.category == category }?.statistics
        }
        let all = try #require(row(nil, nil))
        #expect((all.claims, all.open) == (3, 1))
        #expect((all.claimedFen, all.approvedFen, all.paidFen) == (180_000, 110_000, 120_000))
        #expect((all.overpaid, all.overpaidFen) == (1, 10_000))
        let shanghai = try #require(row("SH01", nil))
        #expect((shanghai.claims, shanghai.claimedFen, shanghai.approvedFen, shanghai.paidFen) == (2, 130_000, 110_000, 120_000))
        #expect(row("SH01", "late")?.claimedFen == 100_000)
        #expect(row("SH01", "none")?.claimedFen == 30_000)
        let beijing = try #require(row("BJ01", nil))
        #expect((beijing.claims, beijing.open, beijing.approvedFen, beijing.paidFen) == (1, 0, 0, 0))
    }
}
