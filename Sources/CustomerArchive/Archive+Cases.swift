import Foundation
import GRDB
import Replication

/// A complaint with its derived status, timeline and notes.
public struct ComplaintView: Sendable {
    public var record: Record
    public var position: WorkflowPosition
    public var stage: ComplaintStage { ComplaintStage(rawValue: position.stage) ?? .received }
    public var transitions: [Record]
    public var notes: [Record]
    /// Deadlines and breaches, as of when the view was read.
    public var sla: ComplaintSLA

    public var json: JSON {
        guard case .object(var o) = record.json else { return record.json }
        o["status"] = .string(stage.name)
        o["epoch"] = .int(Int64(position.epoch))
        let round = sla.current
        o["sla"] = .object([
            "acknowledge_by": .int(round.acknowledgeBy), "resolve_by": .int(round.resolveBy),
            "acknowledged_at": round.acknowledgedAt.map(JSON.int) ?? .null, "resolved_at": round.resolvedAt.map(JSON.int) ?? .null,
            "breached": .bool(sla.breached), "overdue": .bool(sla.overdue), "escalation": .string(sla.escalation.rawValue),
        ])
        o["timeline"] = .array(transitions.map(\.json))
        o["notes"] = .array(notes.map(\.json))
        return .object(o)
    }
}

/// A claim with its derived status and money figures.
public struct ClaimView: Sendable {
    public var record: Record
    public var stage: ClaimStage
    /// The approved amount, from the approval that ranks highest; `nil` before approval.
    public var approvedFen: Int64?
    public var paidFen: Int64
    public var transitions: [Record]
    public var payments: [Record]

    /// How much more was paid than approved (two offline sites together can overpay); 0 if not.
    public var overpaidFen: Int64 { max(0, paidFen - (approvedFen ?? 0)) }

    public var json: JSON {
        guard case .object(var o) = record.json else { return record.json }
        o["status"] = .string(stage.name)
        o["approved_fen"] = approvedFen.map { .int($0) } ?? .null
        o["paid_fen"] = .int(paidFen)
        if overpaidFen > 0 { o["overpaid_fen"] = .int(overpaidFen) }
        o["timeline"] = .array(transitions.map(\.json))
        o["payments"] = .array(payments.map(\.json))
        return .object(o)
    }
}

extension Archive {
    // MARK: Complaints

    /// Opens a complaint, numbered `SITE-YYYY-000123`, in stage `received`.
    public func openComplaint(
        customer reference: String, category: ComplaintCategory, waybill: String?, severity: String = "normal",
        description: String? = nil, assignee: String? = nil
    ) throws -> ComplaintView {
        guard ["low", "normal", "high", "critical"].contains(severity) else {
            throw ArchiveError(.invalidInput, "severity must be low, normal, high or critical")
        }
        let key = try transaction { s in
            let customer = try resolveCustomerForWrite(reference, s.db)
            let rule = try Self.rules(s.db).sla(category, ComplaintSeverity(rawValue: severity) ?? .normal)
            let year = CompanyTime.year(ofMilliseconds: s.wall)
            let n = try s.nextNumber("complaint-\(year)")
            let key = try s.create(
                Schema.complaints,
                [
                    "number": .text(String(format: "%@-%04d-%06lld", site.code, year, n)),
                    "customer_id": customer.id.value, "waybill": waybill.map(Value.text) ?? .null,
                    "category": .text(category.rawValue), "severity": .text(severity),
                    "assignee": assignee.map(Value.text) ?? .null, "description": description.map(Value.text) ?? .null,
                    "opened_at": .integer(Int64(s.wall)), "branch": .text(site.code),
                    "acknowledge_minutes": .integer(Int64(rule.acknowledgeMinutes)), "resolve_minutes": .integer(Int64(rule.resolveMinutes)),
                ])
            try s.append(
                Schema.complaintTransitions,
                [
                    "complaint_id": key.value, "epoch": .integer(0), "stage": .integer(0), "at": .integer(Int64(s.wall)), "site": .text(site.code),
                ])
            return key
        }
        return try complaint(key.description)
    }

    public func complaint(_ reference: String) throws -> ComplaintView {
        try read { db in try complaintView(try resolve(Schema.complaints, reference, db), db) }
    }

    func complaintView(_ record: Record, _ db: Database, rules: CompanyRules? = nil) throws -> ComplaintView {
        let transitions = try fetchRecords(
            Schema.complaintTransitions, db, where: "complaint_id = ?", arguments: [record.id.data], suffix: "ORDER BY hlc, origin, id")
        let notes = try fetchRecords(Schema.complaintNotes, db, where: "complaint_id = ?", arguments: [record.id.data], suffix: "ORDER BY hlc, origin, id")
        let positions = transitions.map { WorkflowPosition(epoch: Int($0["epoch"].integerValue ?? 0), stage: Int($0["stage"].integerValue ?? 0)) }
        let rules = try rules ?? Self.rules(db)
        let steps = transitions.map {
            ComplaintSLA.Step(
                epoch: Int($0["epoch"].integerValue ?? 0), stage: ComplaintStage(rawValue: Int($0["stage"].integerValue ?? 0)) ?? .received,
                at: $0["at"].integerValue ?? 0)
        }
        let sla = ComplaintSLA.evaluate(
            openedAt: record["opened_at"].integerValue ?? 0, timeline: steps, rule: Self.slaRule(record, rules), now: Int64(core.environment.now()))
        return ComplaintView(
            record: record, position: WorkflowPosition.current(of: positions) ?? WorkflowPosition(epoch: 0, stage: 0), transitions: transitions, notes: notes,
            sla: sla)
    }

    /// The deadlines pinned in the complaint when it was opened; the rules in force for one
    /// opened before deadlines were pinned.
    static func slaRule(_ complaint: Record, _ rules: CompanyRules) -> SLARule {
        rules.sla(
            category(complaint), severity(complaint), pinnedAcknowledge: complaint["acknowledge_minutes"].integerValue,
            pinnedResolve: complaint["resolve_minutes"].integerValue)
    }

    static func category(_ complaint: Record) -> ComplaintCategory {
        complaint["category"].textValue.flatMap(ComplaintCategory.init(rawValue:)) ?? .other
    }

    static func severity(_ complaint: Record) -> ComplaintSeverity {
        complaint["severity"].textValue.flatMap(ComplaintSeverity.init(rawValue:)) ?? .normal
    }

    /// Complaints, newest first. `overdue` keeps those with a step open past its deadline,
    /// most overdue first; `branch` those opened at one branch.
    public func complaints(stage: ComplaintStage? = nil, overdue: Bool = false, branch: String? = nil, limit: Int = 100) throws -> [ComplaintView] {
        try read { db in
            let rules = try Self.rules(db)
            var clause = "cl % 2 = 1"
            var args: StatementArguments = []
            if let branch {
                clause += " AND branch = ?"
                args += [branch]
            }
            let views = try fetchRecords(Schema.complaints, db, where: clause, arguments: args, suffix: "ORDER BY id DESC").lazy
                .map { try self.complaintView($0, db, rules: rules) }
                .filter { (stage == nil || $0.stage == stage) && (!overdue || $0.sla.overdue) }
            guard overdue else { return Array(views.prefix(limit)) }
            // Most overdue first: the earliest missed deadline that is still open.
            func missed(_ v: ComplaintView) -> Int64 {
                let r = v.sla.current
                return r.acknowledgedAt == nil ? r.acknowledgeBy : r.resolveBy
            }
            return Array(views.sorted { missed($0) < missed($1) }.prefix(limit))
        }
    }

    /// Adds a note to a complaint's timeline (append-only).
    public func noteComplaint(_ reference: String, text: String, author: String? = nil) throws {
        guard !text.trimmingWhitespace().isEmpty else { throw ArchiveError(.invalidInput, "the note is empty") }
        try transaction { s in
            let c = try resolve(Schema.complaints, reference, s.db)
            try s.append(
                Schema.complaintNotes,
                [
                    "complaint_id": c.id.value, "at": .integer(Int64(s.wall)), "author": author.map(Value.text) ?? .null, "text": .text(text),
                ])
        }
    }

    /// Moves a complaint forward: to the next stage, or to `stage` if given (never backwards).
    public func advanceComplaint(_ reference: String, to stage: ComplaintStage? = nil) throws -> ComplaintView {
        let key = try transaction { s in
            let view = try complaintView(try resolve(Schema.complaints, reference, s.db), s.db)
            let target = stage ?? ComplaintStage(rawValue: view.position.stage + 1)
            guard let target, target.rawValue > view.position.stage else {
                throw ArchiveError(
                    .invalidState,
                    "complaint \(view.record["number"].textValue ?? "") is \(view.stage.name); it can only move forward\(view.stage == .closed ? " ('outpost complaint reopen' starts it again)" : "")"
                )
            }
            try s.append(
                Schema.complaintTransitions,
                [
                    "complaint_id": view.record.id.value, "epoch": .integer(Int64(view.position.epoch)), "stage": .integer(Int64(target.rawValue)),
                    "at": .integer(Int64(s.wall)), "site": .text(site.code),
                ])
            return view.record.id
        }
        return try complaint(key.description)
    }

    /// Reopens a resolved or closed complaint: a new epoch starting at `received`.
    public func reopenComplaint(_ reference: String) throws -> ComplaintView {
        let key = try transaction { s in
            let view = try complaintView(try resolve(Schema.complaints, reference, s.db), s.db)
            guard view.stage == .resolved || view.stage == .closed else {
                throw ArchiveError(
                    .invalidState, "complaint \(view.record["number"].textValue ?? "") is \(view.stage.name); only resolved or closed complaints reopen")
            }
            try s.append(
                Schema.complaintTransitions,
                [
                    "complaint_id": view.record.id.value, "epoch": .integer(Int64(view.position.epoch + 1)), "stage": .integer(0),
                    "at": .integer(Int64(s.wall)), "site": .text(site.code),
                ])
            return view.record.id
        }
        return try complaint(key.description)
    }

    // MARK: Claims

    /// Files a claim, numbered `SITE-YYYY-CL000045`.
    public func fileClaim(customer reference: String, complaint: String? = nil, waybill: String?, claimedFen: Int64, evidence: String? = nil) throws
        -> ClaimView
    {
        guard claimedFen > 0 else { throw ArchiveError(.invalidInput, "the claimed amount must be above 0") }
        let key = try transaction { s in
            let customer = try resolveCustomerForWrite(reference, s.db)
            let complaintKey = try complaint.map { try resolve(Schema.complaints, $0, s.db).id }
            let year = CompanyTime.year(ofMilliseconds: s.wall)
            let n = try s.nextNumber("claim-\(year)")
            let key = try s.create(
                Schema.claims,
                [
                    "number": .text(String(format: "%@-%04d-CL%06lld", site.code, year, n)),
                    "customer_id": customer.id.value, "complaint_id": complaintKey?.value ?? .null,
                    "waybill": waybill.map(Value.text) ?? .null, "currency": .text("CNY"), "claimed_fen": .integer(claimedFen),
                    "evidence": evidence.map(Value.text) ?? .null, "filed_at": .integer(Int64(s.wall)), "branch": .text(site.code),
                ])
            try addClaimTransition(&s, key, .filed)
            return key
        }
        return try claim(key.description)
    }

    private func addClaimTransition(_ s: inout Session, _ claim: RecordKey, _ stage: ClaimStage, amount: Int64? = nil) throws {
        try s.append(
            Schema.claimTransitions,
            [
                "claim_id": claim.value, "stage": .integer(Int64(stage.rawValue)), "amount_fen": amount.map(Value.integer) ?? .null,
                "at": .integer(Int64(s.wall)), "site": .text(site.code),
            ])
    }

    public func claim(_ reference: String) throws -> ClaimView {
        try read { db in try claimView(try resolve(Schema.claims, reference, db), db) }
    }

    func claimView(_ record: Record, _ db: Database) throws -> ClaimView {
        let transitions = try fetchRecords(Schema.claimTransitions, db, where: "claim_id = ?", arguments: [record.id.data], suffix: "ORDER BY hlc, origin, id")
        let payments = try fetchRecords(Schema.claimPayments, db, where: "claim_id = ?", arguments: [record.id.data], suffix: "ORDER BY hlc, origin, id")
        let stage = transitions.compactMap { ClaimStage(rawValue: Int($0["stage"].integerValue ?? 0)) }.max { $0.rawValue < $1.rawValue } ?? .filed
        // The approval that counts is the highest-stamped one: the same choice on every site.
        let approval = try Row.fetchOne(
            db, sql: "SELECT amount_fen FROM claim_transitions WHERE claim_id = ? AND stage = ? ORDER BY hlc DESC, origin DESC LIMIT 1",
            arguments: [record.id.data, ClaimStage.approved.rawValue]
        ).flatMap { $0[0] as Int64? }
        let paid = payments.reduce(Int64(0)) { $0 + ($1["amount_fen"].integerValue ?? 0) }
        return ClaimView(record: record, stage: stage, approvedFen: approval, paidFen: paid, transitions: transitions, payments: payments)
    }

    public func claims(limit: Int = 100) throws -> [ClaimView] {
        try read { db in
            try fetchRecords(Schema.claims, db, where: "cl % 2 = 1", suffix: "ORDER BY id DESC LIMIT \(max(0, limit))").map { try claimView($0, db) }
        }
    }

    public func assessClaim(_ reference: String, assessedFen: Int64) throws -> ClaimView {
        guard assessedFen >= 0 else { throw ArchiveError(.invalidInput, "the assessed amount must not be negative") }
        return try claimStep(reference, allowedFrom: [.filed, .assessing]) { s, view in
            try s.update(Schema.claims, view.record.id, ["assessed_fen": .integer(assessedFen)])
            try self.addClaimTransition(&s, view.record.id, .assessing)
        }
    }

    /// Approves a claim for an amount. Above the approval threshold only headquarters may.
    public func approveClaim(_ reference: String, amountFen: Int64) throws -> ClaimView {
        guard amountFen > 0 else { throw ArchiveError(.invalidInput, "the approved amount must be above 0") }
        return try claimStep(reference, allowedFrom: [.filed, .assessing, .approved]) { s, view in
            let claimed = view.record["claimed_fen"].integerValue ?? 0
            guard amountFen <= claimed else {
                throw ArchiveError(
                    .invalidInput, "cannot approve \(Money.format(amountFen)): claim \(view.record["number"].textValue ?? "") asks for \(Money.format(claimed))"
                )
            }
            try self.addClaimTransition(&s, view.record.id, .approved, amount: amountFen)
        }
    }

    public func rejectClaim(_ reference: String) throws -> ClaimView {
        try claimStep(reference, allowedFrom: [.filed, .assessing, .approved]) { s, view in
            guard view.paidFen == 0 else {
                throw ArchiveError(.invalidState, "claim \(view.record["number"].textValue ?? "") has payments; it cannot be rejected")
            }
            try self.addClaimTransition(&s, view.record.id, .rejected)
        }
    }

    /// Records a payment (negative: a reversal). Refused when the total would exceed the approved
    /// amount as this site knows it, or fall below zero.
    public func payClaim(_ reference: String, amountFen: Int64, reference paymentReference: String? = nil) throws -> ClaimView {
        guard amountFen != 0 else { throw ArchiveError(.invalidInput, "the payment amount must not be 0") }
        return try claimStep(reference, allowedFrom: [.approved, .paid]) { s, view in
            let approved = view.approvedFen ?? 0
            let total = view.paidFen + amountFen
            let number = view.record["number"].textValue ?? ""
            guard total <= approved else {
                throw ArchiveError(
                    .refused,
                    "paying \(Money.format(amountFen)) would bring claim \(number) to \(Money.format(total)), above its approved \(Money.format(approved))")
            }
            guard total >= 0 else {
                throw ArchiveError(.refused, "a reversal of \(Money.format(-amountFen)) exceeds the \(Money.format(view.paidFen)) paid on claim \(number)")
            }
            try s.append(
                Schema.claimPayments,
                [
                    "claim_id": view.record.id.value, "amount_fen": .integer(amountFen), "currency": .text("CNY"),
                    "at": .integer(Int64(s.wall)), "reference": paymentReference.map(Value.text) ?? .null, "site": .text(site.code),
                ])
            if total == approved && view.stage == .approved {
                try self.addClaimTransition(&s, view.record.id, .paid)
            }
        }
    }

    public func closeClaim(_ reference: String) throws -> ClaimView {
        try claimStep(reference, allowedFrom: [.paid, .rejected, .approved]) { s, view in
            try self.addClaimTransition(&s, view.record.id, .closed)
        }
    }

    private func claimStep(_ reference: String, allowedFrom: Set<ClaimStage>, _ body: (inout Session, ClaimView) throws -> Void) throws -> ClaimView {
        let key = try transaction { s in
            let view = try claimView(try resolve(Schema.claims, reference, s.db), s.db)
            guard allowedFrom.contains(view.stage) else {
                throw ArchiveError(.invalidState, "claim \(view.record["number"].textValue ?? "") is \(view.stage.name); that step is not possible now")
            }
            try body(&s, view)
            return view.record.id
        }
        return try claim(key.description)
    }

    // MARK: Settings

    /// Sets the claim approval threshold (headquarters only; replicated to every site).
    public func setApprovalThreshold(fen: Int64) throws {
        guard fen >= 0 else { throw ArchiveError(.invalidInput, "the threshold must not be negative") }
        try transaction { s in try s.writeSetting("approval_threshold_fen", .integer(fen)) }
    }

    public func approvalThreshold() throws -> Int64 {
        try read { db in try approvalThreshold(db) }
    }
}
