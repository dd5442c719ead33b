/// How a table's rows replicate.
public struct TableRules: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        /// Rows of last-writer-wins registers with a causal length and an erasure flag.
        case registers
        /// A grow-only set of immutable rows.
        case appendOnly
    }

    public var id: UInt8
    public var kind: Kind
    public var columnCount: Int
    /// Columns that hold personal data: scrubbed by erasure and refused after it.
    public var personalColumns: Set<Int>

    public init(id: UInt8, kind: Kind, columnCount: Int, personalColumns: Set<Int> = []) {
        self.id = id
        self.kind = kind
        self.columnCount = columnCount
        self.personalColumns = personalColumns
    }
}

/// A last-writer-wins register: a value and the stamp of the write that put it there.
public struct Register: Hashable, Sendable {
    public var value: Value
    public var stamp: Stamp

    public init(value: Value, stamp: Stamp) {
        self.value = value
        self.stamp = stamp
    }
}

/// A concurrent write that lost a merge, kept so that people can review and restore it.
public struct Conflict: Hashable, Sendable {
    public var column: Int
    public var winner: Register
    public var loser: Register

    public init(column: Int, winner: Register, loser: Register) {
        self.column = column
        self.winner = winner
        self.loser = loser
    }
}

/// What merging one change into a row did.
public struct MergeOutcome: Hashable, Sendable {
    /// The part of the change that took effect (to append to the change log and relay),
    /// or `nil` when it changed nothing.
    public var applied: Change.Body?
    /// Writes that lost, on either side.
    public var conflicts: [Conflict]

    public init(applied: Change.Body? = nil, conflicts: [Conflict] = []) {
        self.applied = applied
        self.conflicts = conflicts
    }
}

/// The replicated state of one register row, and the merge rules every site applies to it.
///
/// The merge is a join: applying any set of changes in any order, any number of times, gives
/// the same state. The archive stores this state in SQLite and calls ``merge(_:rules:)`` for
/// local writes and remote changes alike, so both take the same path.
public struct RecordState: Hashable, Sendable {
    /// One register per column; `nil` for a column never written (or scrubbed by erasure).
    public var registers: [Register?]
    /// Odd: alive; even: deleted; 0: never created here. A field write implies at least 1.
    public var causalLength: UInt64
    /// Erased rows keep no value in personal columns, now or later.
    public var erased: Bool

    public init(columnCount: Int) {
        registers = Array(repeating: nil, count: columnCount)
        causalLength = 0
        erased = false
    }

    public init(registers: [Register?], causalLength: UInt64, erased: Bool) {
        self.registers = registers
        self.causalLength = causalLength
        self.erased = erased
    }

    public var isAlive: Bool { causalLength % 2 == 1 }

    /// Merges one change into the row.
    ///
    /// Register columns keep the write with the larger stamp. The replaced or refused value is
    /// reported as a conflict unless it was overwritten knowingly (the winner's base is its
    /// stamp), written by the same site (a site's own writes are sequential), or equal in value.
    public mutating func merge(_ change: Change, rules: TableRules) -> MergeOutcome {
        switch change.body {
        case .fields(let writes):
            var applied: [FieldWrite] = []
            var conflicts: [Conflict] = []
            // A record with written fields exists: its causal length is at least 1. This makes a
            // creation one change (no separate existence change), and it is a join (max with 1).
            let born = causalLength == 0
            if born { causalLength = 1 }
            for write in writes where write.column >= 0 && write.column < registers.count {
                if erased && rules.personalColumns.contains(write.column) { continue }
                let incoming = Register(value: write.value, stamp: change.stamp)
                guard let current = registers[write.column] else {
                    registers[write.column] = incoming
                    applied.append(write)
                    continue
                }
                if incoming.stamp == current.stamp { continue }
                let concurrent = current.stamp.site != incoming.stamp.site && current.value != incoming.value
                if incoming.stamp > current.stamp {
                    registers[write.column] = incoming
                    applied.append(write)
                    if concurrent && write.base != current.stamp {
                        conflicts.append(Conflict(column: write.column, winner: incoming, loser: current))
                    }
                } else if concurrent {
                    conflicts.append(Conflict(column: write.column, winner: current, loser: incoming))
                }
            }
            // A change that only brought the record into existence still took effect: relay it.
            return MergeOutcome(applied: applied.isEmpty && !born ? nil : .fields(applied), conflicts: conflicts)
        case .existence(let length):
            guard length > causalLength else { return MergeOutcome() }
            causalLength = length
            return MergeOutcome(applied: change.body)
        case .erase:
            guard !erased else { return MergeOutcome() }
            erased = true
            for column in rules.personalColumns where column < registers.count {
                registers[column] = nil
            }
            return MergeOutcome(applied: .erase)
        case .append:
            // Append-only rows are not registers; the archive routes them to their own tables.
            return MergeOutcome()
        }
    }

    /// The join of two states: what a site holds after seeing everything either one saw.
    public func joined(with other: RecordState, rules: TableRules) -> RecordState {
        var out = RecordState(columnCount: max(registers.count, other.registers.count))
        out.erased = erased || other.erased
        out.causalLength = max(causalLength, other.causalLength)
        for i in 0..<out.registers.count {
            let a = i < registers.count ? registers[i] : nil
            let b = i < other.registers.count ? other.registers[i] : nil
            switch (a, b) {
            case (nil, nil): out.registers[i] = nil
            case (let x?, nil), (nil, let x?): out.registers[i] = x
            case (let x?, let y?): out.registers[i] = x.stamp >= y.stamp ? x : y
            }
            if out.erased && rules.personalColumns.contains(i) { out.registers[i] = nil }
        }
        return out
    }
}

/// A position in a workflow: (reopen epoch, stage), ordered lexicographically.
///
/// Status is the maximum over a record's timeline of transitions, so merging timelines never
/// moves a record backwards, and a reopening (a new epoch) outranks any stage of the epoch
/// before it.
public struct WorkflowPosition: Hashable, Comparable, Sendable {
    public var epoch: Int
    public var stage: Int

    public init(epoch: Int, stage: Int) {
        self.epoch = epoch
        self.stage = stage
    }

    public static func < (lhs: WorkflowPosition, rhs: WorkflowPosition) -> Bool {
        (lhs.epoch, lhs.stage) < (rhs.epoch, rhs.stage)
    }

    /// The current position of a timeline: its maximum, or `nil` for an empty timeline.
    public static func current(of timeline: some Sequence<WorkflowPosition>) -> WorkflowPosition? {
        timeline.max()
    }
}
