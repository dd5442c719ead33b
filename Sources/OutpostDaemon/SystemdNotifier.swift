import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Tells the service manager how the daemon is doing (the `sd_notify` protocol): one datagram
/// per message to the Unix socket named by `NOTIFY_SOCKET`.
///
/// Without `NOTIFY_SOCKET` (run by hand, or by a unit that is not `Type=notify`) every call
/// does nothing, so the daemon runs the same way everywhere.
public struct SystemdNotifier: Sendable {
    /// The socket's address: a path, or an abstract name (written `@name` in the variable).
    public let socketPath: String?
    /// Half of `WatchdogSec` when the manager watches this process, else nil.
    public let watchdogInterval: Duration?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        socketPath = path
        // WATCHDOG_PID, when set, names the process the watchdog is for (a wrapper's child
        // must not ping for its parent).
        let forUs = environment["WATCHDOG_PID"].map { Int32($0) == getpid() } ?? true
        if path != nil, forUs, let usec = environment["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0 {
            watchdogInterval = .microseconds(Int64(usec / 2))
        } else {
            watchdogInterval = nil
        }
    }

    public var isEnabled: Bool { socketPath != nil }

    /// `READY=1`: the site serves (headquarters listens; a branch runs its link).
    public func ready(status: String) { send("READY=1\nSTATUS=\(status)\nMAINPID=\(getpid())") }
    /// `STATUS=…`: one line `systemctl status` shows.
    public func status(_ text: String) { send("STATUS=\(text)") }
    /// `RELOADING=1`: SIGHUP taken; `READY=1` follows once the new configuration serves.
    public func reloading() { send("RELOADING=1\nSTATUS=reloading configuration and certificates") }
    /// `STOPPING=1`: shutting down on request.
    public func stopping() { send("STOPPING=1\nSTATUS=stopping: finishing the batch in flight") }
    /// `WATCHDOG=1`: the process is alive and its threads answer.
    public func watchdog() { send("WATCHDOG=1") }

    /// Sends one message. Failures are ignored: the manager going away must not stop the
    /// daemon (it will notice the missing pings on its own).
    @discardableResult
    public func send(_ message: String) -> Bool {
        guard let socketPath else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(socketPath.utf8)
        if pathBytes.first == UInt8(ascii: "@") { pathBytes[0] = 0 }  // abstract namespace
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + pathBytes.count)
        let bytes = Array(message.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
        return sent == bytes.count
    }
}
