import CustomerArchive
import Foundation
import Synchronization

/// Whether the archive's disk and file can be trusted, shared by the daemon's services.
///
/// A full disk, an I/O error or a damaged file stops syncing: nothing is sent from a damaged
/// file and nothing is taken in that cannot be stored. A full disk or an I/O error is retried
/// once space is back (``clearIfRecovered(directory:)``); a damaged file never clears by
/// itself: it needs a restore (`outpost restore`).
public final class StorageHealth: Sendable {
    public struct Fault: Sendable, Codable, Equatable {
        /// `disk_full`, `corrupt` or `io` (``StorageFault``).
        public var reason: String
        /// What happened and what to do, ids only.
        public var detail: String
        public var sinceMilliseconds: UInt64

        public var isPermanent: Bool { reason == StorageFault.corrupt.rawValue }
    }

    private let state = Mutex<Fault?>(nil)

    public init() {}

    public var fault: Fault? { state.withLock { $0 } }

    /// Records `error` when it is a storage failure; returns the fault it recorded.
    @discardableResult
    public func record(_ error: any Error) -> Fault? {
        guard let kind = StorageFault(error) else { return nil }
        return set(kind, detail: Self.advice(kind))
    }

    @discardableResult
    public func set(_ kind: StorageFault, detail: String) -> Fault {
        state.withLock { current in
            // A damaged file outranks a full disk; the first time is kept.
            if let existing = current, existing.isPermanent || existing.reason == kind.rawValue { return existing }
            let fault = Fault(reason: kind.rawValue, detail: detail, sinceMilliseconds: nowMilliseconds())
            current = fault
            return fault
        }
    }

    /// Clears a full-disk or I/O fault once the data directory's file system has room again
    /// (``hasRoom(directory:)``); returns whether it cleared.
    @discardableResult
    public func clearIfRecovered(directory: String) -> Bool {
        guard let fault, !fault.isPermanent, Self.hasRoom(directory: directory) else { return false }
        state.withLock { $0 = nil }
        return true
    }

    /// Bytes available to this user, and the size, of the file system holding `directory`.
    public static func space(directory: String) -> (free: UInt64, total: UInt64)? {
        var info = statvfs()
        guard statvfs(directory, &info) == 0 else { return nil }
        return (UInt64(info.f_bavail) * UInt64(info.f_frsize), UInt64(info.f_blocks) * UInt64(info.f_frsize))
    }

    public static func freeBytes(directory: String) -> UInt64? { space(directory: directory)?.free }

    /// Nearly full: less than 16 MiB free (2% on a file system under 800 MiB). Syncing
    /// pauses here, before SQLite's writes start failing.
    public static func isNearlyFull(directory: String) -> Bool {
        guard let (free, total) = space(directory: directory) else { return false }
        return free < min(16 << 20, total / 50)
    }

    /// Room again: 64 MiB free (10% on a file system under 640 MiB), well above the point
    /// where syncing pauses, so it does not flap.
    public static func hasRoom(directory: String) -> Bool {
        guard let (free, total) = space(directory: directory) else { return false }
        return free >= min(64 << 20, total / 10)
    }

    public static func advice(_ kind: StorageFault) -> String {
        switch kind {
        case .diskFull:
            "the disk is full: syncing is paused and resumes by itself once space is freed (local writes fail until then)"
        case .io:
            "the disk reported an input/output error: syncing is paused and retried; check the disk (dmesg, smartctl)"
        case .corrupt:
            "the archive file is damaged: syncing is stopped so nothing damaged is sent; run 'outpost doctor', then restore a backup with 'outpost restore'"
        }
    }
}
