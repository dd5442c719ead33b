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

    public init(producer: SiteID, schemaVersion: Int, after: UInt64, through: UInt64, changes: [Change]) {
        self.producer = producer
        self.schemaVersion = schemaVersion
        self.after = after
        self.through = through
        self.changes = changes
    }
}
