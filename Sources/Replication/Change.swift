/// One replicated change to one row: the unit that change sets carry and change logs keep.
///
/// A change has a single origin and a single clock reading (its ``stamp``); the fields written
/// together by one local operation travel together.
public struct Change: Hashable, Sendable {
    public var table: UInt8
    public var key: RecordKey
    public var stamp: Stamp
    public var body: Body

    public init(table: UInt8, key: RecordKey, stamp: Stamp, body: Body) {
        self.table = table
        self.key = key
        self.stamp = stamp
        self.body = body
    }

    public enum Body: Hashable, Sendable {
        /// Last-writer-wins writes to register columns.
        case fields([FieldWrite])
        /// A causal length for delete / re-create: odd means alive, even means deleted.
        case existence(causalLength: UInt64)
        /// A permanent erasure tombstone that beats every write to personal columns.
        case erase
        /// An immutable row of a grow-only collection.
        case append([ColumnValue])

        public var kind: Kind {
            switch self {
            case .fields: .fields
            case .existence: .existence
            case .erase: .erase
            case .append: .append
            }
        }
    }

    public enum Kind: UInt8, Sendable, CaseIterable {
        case fields = 0
        case existence = 1
        case erase = 2
        case append = 3
    }

    /// The origin site: where the change was made.
    public var origin: SiteID { stamp.site }
}

/// A write to one register column.
public struct FieldWrite: Hashable, Sendable {
    public var column: Int
    public var value: Value
    /// The stamp of the value the writer saw in this field when it wrote, or `nil` when the
    /// field was empty. A write whose base is the value it replaces overwrote it knowingly,
    /// so that value is not a lost concurrent write.
    public var base: Stamp?

    public init(column: Int, value: Value, base: Stamp? = nil) {
        self.column = column
        self.value = value
        self.base = base
    }
}

/// A column and its value in an append-only row.
public struct ColumnValue: Hashable, Sendable {
    public var column: Int
    public var value: Value

    public init(column: Int, value: Value) {
        self.column = column
        self.value = value
    }
}

/// A set of changes from one producer, as exchanged between sites.
public struct ChangeSet: Hashable, Sendable {
    /// The site whose change log the set was read from.
    public var producer: SiteID
    /// The archive schema version the producer wrote it with.
    public var schemaVersion: Int
    /// The producer's change-log range the set covers: sequences in `(after, through]`.
    public var after: UInt64
    public var through: UInt64
    public var changes: [Change]
    /// Set when headquarters exported the set for one branch as a file: the branch it is for
    /// and what that branch must do about its scope. On the line the pull's batch carries
    /// the same facts beside the set, so a set on the line never has one.
    public var scope: Scope?

    public init(producer: SiteID, schemaVersion: Int, after: UInt64, through: UInt64, changes: [Change], scope: Scope? = nil) {
        self.producer = producer
        self.schemaVersion = schemaVersion
        self.after = after
        self.through = through
        self.changes = changes
        self.scope = scope
    }

    /// What a set headquarters exported for one branch tells that branch besides its changes
    /// (CHANGESET.md §5.3): the customers that entered or left its scope in the set's range,
    /// the branch's own changes headquarters refused there, and how much of the branch's log
    /// headquarters holds, which lets the branch evict what waited for that.
    public struct Scope: Hashable, Sendable {
        /// The branch the set was exported for; any other site refuses it.
        public var recipient: SiteID
        /// Headquarters holds the recipient's log up to here (its receive cursor).
        public var receivedThrough: UInt64
        /// Customers that entered the scope: their current state is among the changes.
        public var movedIn: [RecordKey]
        /// Customers that left the scope: the branch evicts them.
        public var evicted: [RecordKey]
        /// The branch's own changes headquarters refused at its door.
        public var refused: [Refusal]

        public init(recipient: SiteID, receivedThrough: UInt64, movedIn: [RecordKey] = [], evicted: [RecordKey] = [], refused: [Refusal] = []) {
            self.recipient = recipient
            self.receivedThrough = receivedThrough
            self.movedIn = movedIn
            self.evicted = evicted
            self.refused = refused
        }

        /// A change of the recipient's that headquarters refused.
        public struct Refusal: Hashable, Sendable {
            /// The refused change's table, record and clock reading (its origin is the recipient).
            public var table: UInt8
            public var record: RecordKey
            public var time: Timestamp
            /// The customer the record belongs to, whose copy the branch resets.
            public var customer: RecordKey
            /// The refusal's name (`NOT_HOME`, `INVALID_VALUE`, `HQ_ONLY`), at most 64 bytes.
            public var reason: String
            /// Headquarters' words for the clerk, at most 1,000 bytes; never customer data.
            public var message: String

            public init(table: UInt8, record: RecordKey, time: Timestamp, customer: RecordKey, reason: String, message: String) {
                self.table = table
                self.record = record
                self.time = time
                self.customer = customer
                self.reason = reason
                self.message = message
            }
        }
    }
}
