import CustomerArchive
import Synchronization

/// A wall clock and key source under the test's control, for exact replays.
public final class ManualEnvironment: Sendable {
    private let state: Mutex<(now: UInt64, random: SplitMix64)>

    public init(now: UInt64 = 1_767_225_600_000, seed: UInt64 = 1) {
        state = Mutex((now, SplitMix64(seed: seed)))
    }

    public var now: UInt64 {
        get { state.withLock { $0.now } }
        set { state.withLock { $0.now = newValue } }
    }

    public func advance(milliseconds: UInt64) {
        state.withLock { $0.now += milliseconds }
    }

    public var environment: ArchiveEnvironment {
        ArchiveEnvironment(
            now: { [self] in state.withLock { $0.now } },
            randomBits: { [self] in state.withLock { s in (s.random.next(), s.random.next()) } })
    }
}
