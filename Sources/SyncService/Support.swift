import CustomerArchive
import Dispatch
import Foundation
import GRPCCore
import Replication
import SyncProtocol
import Synchronization

/// Runs blocking archive work (SQLite through GRDB) on threads outside Swift's cooperative
/// pool, so a long transaction never starves the tasks that move bytes on the network.
package enum Blocking {
    private static let queue = DispatchQueue(label: "outpost.archive", qos: .utility, attributes: .concurrent)

    package static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }
}

/// Watches an archive's change log for growth, whoever writes it (this process or the CLI).
///
/// One poller reads the log's end every poll interval; writers in this process call
/// ``advance(to:)`` so their waiters wake at once. Readers sleep in short steps.
public final class LogWatch: Sendable {
    private let last: Atomic<UInt64>
    private let archive: Archive
    private let interval: Duration

    public init(archive: Archive, pollInterval: Duration) throws {
        self.archive = archive
        self.interval = pollInterval
        last = Atomic(try archive.lastSequence())
    }

    public var lastSequence: UInt64 { last.load(ordering: .acquiring) }

    public func advance(to sequence: UInt64) {
        var current = last.load(ordering: .relaxed)
        while sequence > current {
            let (exchanged, original) = last.compareExchange(expected: current, desired: sequence, ordering: .acquiringAndReleasing)
            if exchanged { return }
            current = original
        }
    }

    /// Polls the archive until the task is cancelled.
    public func run() async {
        while !Task.isCancelled {
            if let seq = try? await Blocking.run({ [archive] in try archive.lastSequence() }) { advance(to: seq) }
            try? await Task.sleep(for: interval)
        }
    }

    /// Returns when the log reaches past `sequence`, or after `timeout`; `true` when it grew.
    public func wait(after sequence: UInt64, timeout: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        let step = min(interval / 4, .milliseconds(50))
        while lastSequence <= sequence {
            if Task.isCancelled || clock.now >= deadline { return false }
            try? await Task.sleep(for: step)
        }
        return true
    }
}

extension Reason {
    /// The name carried in the `outpost-reason` metadata entry of a refused call.
    var metadataName: String {
        switch self {
        case .unspecified: "UNSPECIFIED"
        case .unauthenticated: "UNAUTHENTICATED"
        case .revoked: "REVOKED"
        case .forgedOrigin: "FORGED_ORIGIN"
        case .hqOnly: "HQ_ONLY"
        case .clockAhead: "CLOCK_AHEAD"
        case .tooLarge: "TOO_LARGE"
        case .malformed: "MALFORMED"
        case .version: "VERSION"
        case .protocol: "PROTOCOL"
        case .invalidValue: "INVALID_VALUE"
        case .notHome: "NOT_HOME"
        case .rateLimited: "RATE_LIMITED"
        case .UNRECOGNIZED(let n): "UNRECOGNIZED_\(n)"
        }
    }

    init(metadataName: String) {
        self = Reason.allCases.first { $0.metadataName == metadataName } ?? .unspecified
    }
}

typealias Reason = WireReason

enum Wire {
    /// Version 2 added scope: pulls carry only the branch's scope, with its moves
    /// (`PullBatch.moved_in`, `evicted`). Version 3 added write authority and durable
    /// refusals: `Refusal.hlc`, `REASON_NOT_HOME` and `PullBatch.refused`.
    static let protocolVersion: UInt32 = 4
    /// The oldest branch protocol headquarters serves: a version 1 branch gets its scope too
    /// and ignores the moves (it keeps customers that left its scope until it is upgraded).
    static let minimumProtocolVersion: UInt32 = 1
    static let reasonKey = "outpost-reason"
    /// zlib level for sets on the wire: the fastest, so compressing keeps pace with applying.
    static let compressionLevel: Int32 = 1

    static func refusal(_ code: RPCError.Code, _ reason: Reason, _ message: String) -> RPCError {
        var metadata = Metadata()
        metadata.addString(reason.metadataName, forKey: reasonKey)
        return RPCError(code: code, message: message, metadata: metadata)
    }

    /// The status and reason for a change set the archive's door refused as a whole; nil for
    /// an error that is not a refusal (a full disk: the branch retries).
    static func refusal(for code: ArchiveError.Code) -> (RPCError.Code, Reason)? {
        switch code {
        case .forgedOrigin: (.permissionDenied, .forgedOrigin)
        case .tooLarge: (.resourceExhausted, .tooLarge)
        case .schemaTooNew: (.failedPrecondition, .version)
        case .malformedChangeSet: (.invalidArgument, .malformed)
        case .outOfOrder: (.failedPrecondition, .protocol)
        default: nil
        }
    }

    static func reason(of error: RPCError) -> Reason? {
        for value in error.metadata[stringValues: reasonKey] { return Reason(metadataName: value) }
        return nil
    }
}

extension WireRefusedWrite {
    /// A refusal as HQ's stream answers it (a pull batch, a snapshot's first part).
    init(_ r: RefusedWrite) {
        self.init()
        table = UInt32(r.table)
        record = Data(r.record.bytes)
        hlc = r.time.rawValue
        customer = Data(r.customer.bytes)
        reason = Reason(metadataName: r.reason)
        message = r.message
    }
}

extension RefusedWrite {
    /// A refusal from HQ's stream; its keys must be 16 bytes.
    init(wire r: WireRefusedWrite) throws {
        self.init(
            table: UInt8(clamping: r.table), record: try RecordKey(bytes: r.record), time: Timestamp(rawValue: r.hlc),
            customer: try RecordKey(bytes: r.customer), reason: r.reason.metadataName, message: String(r.message.prefix(1_000)))
    }
}
