import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import SyncProtocol
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Peers that never authenticate, against a real `outpost serve` at headquarters: idle TCP
/// sockets and stalled TLS handshakes are closed by the deadlines and excess connections at
/// accept, so HQ stays below its descriptor limit and cheap while branches keep syncing; and
/// `outpost_refusals_total` counts only what HQ refused, not sessions that merely ended.
@Suite(.serialized)
struct ConnectionLimitTests {
    /// Short deadlines keep the tests fast (the defaults are 10 s).
    static func config(firstCallMilliseconds: Int = 2000) -> String {
        """
        [sync]
        handshake_timeout_ms = 2000
        first_call_timeout_ms = \(firstCallMilliseconds)
        max_connections_per_site = 3
        """
    }

    /// 400 sockets at once, more than HQ's 256 descriptors, half idle and half stalled in a
    /// ClientHello, and 30 more kept open for 30 s (each reopened as soon as HQ closes it),
    /// while a branch syncs every two seconds or so.
    @Test func stalledPeersAreClosedWhileBranchesKeepSyncing() throws {
        let network = try Network(branches: ["SH01"], config: Self.config())
        defer { network.stopAll() }
        let hq = try network.start("HQ", wrapper: ["/usr/bin/prlimit", "--nofile=256:256", "--"])
        let metricsPort = try #require(OperationsTests.metricsPort(hq), "\(hq.log.suffix(1000))")
        // Half of 256 descriptors: the other half stays free for the archive, the log, the metrics.
        let initial = try OperationsTests.waitMetrics(port: metricsPort) { $0["outpost_connection_limit"] != nil }
        #expect(initial["outpost_connection_limit"] == 128, "\(initial)")
        let branch = network.site("SH01")

        let peers = StallingPeers(port: network.port, watching: hq.pid)
        let cpuBefore = try Self.cpuSeconds(hq.pid)
        let start = ContinuousClock.now
        let end = start + .seconds(30)
        let watching = DispatchGroup()
        DispatchQueue.global().async(group: watching) { peers.watch(until: end) }
        peers.open(15, .idle, reopen: true)
        peers.open(15, .partialClientHello, reopen: true)
        peers.open(200, .idle)
        peers.open(200, .partialClientHello)

        // While HQ is full, a branch is closed at accept like everyone else; it gets in once
        // the handshake deadline has cleared the stalled peers.
        var firstSync: Duration?
        while firstSync == nil, ContinuousClock.now - start < .seconds(10) {
            if try branch.run("sync", "--once", "--hq", network.hqAddress).status == 0 { firstSync = ContinuousClock.now - start }
            Thread.sleep(forTimeInterval: 0.2)
        }
        let firstSyncAfter = try #require(firstSync, "no sync succeeded within 10 s of the flood\n\(hq.log.suffix(2000))")
        var syncs: [Duration] = []
        var round = 0
        while ContinuousClock.now < end - .seconds(2) {
            round += 1
            try branch.ok("customer", "add", "--name", "洪水\(round)", "--phone", "139\(String(format: "%08d", round))")
            let began = ContinuousClock.now
            let sync = try branch.run("sync", "--once", "--hq", network.hqAddress)
            syncs.append(ContinuousClock.now - began)
            #expect(sync.status == 0 && sync.stdout.contains("pushed: 1 changes"), "round \(round): \(sync)")
            Thread.sleep(forTimeInterval: 1.5)
        }
        watching.wait()
        let cpu = try Self.cpuSeconds(hq.pid) - cpuBefore
        let report = peers.finish()

        let burst = report.peers.filter { !$0.reopen }
        let kept = report.peers.filter { $0.reopen }
        // Seen from the peer, a connection over the limit may wait in the kernel's accept queue
        // first (a second or more), so the split between the two is HQ's counters'.
        let closedEarly = burst.filter { ($0.lifetime ?? .seconds(99)) < .milliseconds(1900) }
        let metrics = try OperationsTests.waitMetrics(port: metricsPort) { $0["outpost_open_connections"] == 0 }
        let atAccept = metrics["outpost_refusals_total{reason=\"CONNECTION_LIMIT\"}"] ?? 0
        let atDeadline = metrics["outpost_refusals_total{reason=\"HANDSHAKE_TIMEOUT\"}"] ?? 0
        print(
            """
            flood: \(burst.count) sockets at once (\(report.connectFailures) connects failed), then 30 kept open \
            (\(kept.count) connections in 30 s)
              HQ CPU over the 30 s: \(String(format: "%.2f", cpu)) s (\(String(format: "%.1f", cpu / 30 * 100))% of one core)
              the 400 as seen by the peers: closed within 1.9 s \(closedEarly.count), later \(burst.count - closedEarly.count), \
            still open \(burst.filter { $0.closed == nil }.count), slowest \(burst.compactMap(\.lifetime).max() ?? .zero); \
            bytes HQ sent to any of them: \(report.peers.map(\.bytesReceived).reduce(0, +))
              HQ's counters: closed at accept \(Int(atAccept)), closed by the handshake deadline \(Int(atDeadline))
              HQ's open descriptors at most: \(report.maximumDescriptors) of 256 (sampled every 100 ms)
              first sync \(firstSyncAfter) after the flood began; then \(syncs.count) syncs, slowest \(syncs.max() ?? .zero)
            """)
        // (a) Branches keep syncing within seconds.
        #expect(firstSyncAfter < .seconds(6))
        #expect(syncs.count >= 8 && syncs.allSatisfy { $0 < .seconds(3) }, "\(syncs)")
        // (b) HQ does not spin: under 10% of one core (it measures 3-5% here; the spinning
        // accept loop this guards against took 9.26 s in 10 s). CI runs other real-process
        // tests beside this one, which makes the same work cost HQ more CPU time.
        #expect(cpu < 3.0, "HQ used \(cpu) s of CPU in 30 s")
        // (c) Every stalled socket was closed, over the limit at accept, else at the deadline,
        // and sent nothing. HQ stayed below its descriptor limit.
        #expect(burst.count >= 380 && report.connectFailures < 20, "\(report.connectFailures) connects failed")
        #expect(burst.allSatisfy { $0.closed != nil }, "\(burst.filter { $0.closed == nil }.count) of the first 400 still open after 30 s")
        #expect(burst.allSatisfy { ($0.lifetime ?? .seconds(99)) < .seconds(5) }, "\(burst.compactMap(\.lifetime).sorted().suffix(20))")
        #expect(atAccept >= 1 && atDeadline >= 128 && atAccept + atDeadline >= Double(report.peers.filter { $0.closed != nil }.count), "\(metrics)")
        // Once the first wave is gone, each kept peer lives exactly one handshake deadline.
        let keptLater = kept.filter { $0.opened > start + .seconds(5) }
        #expect(keptLater.count > 150 && keptLater.allSatisfy { $0.lifetime.map(Self.isDeadline) ?? true }, "\(keptLater.compactMap(\.lifetime).sorted())")
        #expect(report.peers.allSatisfy { $0.bytesReceived == 0 })
        #expect(report.maximumDescriptors > 128 && report.maximumDescriptors < 256, "\(report.maximumDescriptors)")
        #expect(!hq.log.contains("accepting a connection failed"), "\(hq.log.suffix(2000))")
        // Peers that left in the handshake (closed by the test just now) are not TLS refusals.
        #expect(metrics["outpost_refusals_total{reason=\"TLS_HANDSHAKE\"}"] == nil, "\(metrics)")
        #expect(hq.log.contains("closed a connection whose TLS handshake did not complete in time") && hq.log.contains("reason=HANDSHAKE_TIMEOUT"))
        #expect(hq.log.contains("closed a connection over the connection limit") && hq.log.contains("reason=CONNECTION_LIMIT"))
    }

    /// Sessions that end, cleanly or not, and peers that give up during the handshake are not
    /// refusals; a foreign certificate, a site over its share and a connection without a call
    /// are.
    @Test func onlyWhatHeadquartersRefusedIsCounted() async throws {
        // A first-call deadline of 8 s leaves the real SH01 time to try while its share is taken
        // (starting a process can take seconds while CI runs other process tests beside this).
        let network = try Network(branches: ["GZ01", "SH01"], config: Self.config(firstCallMilliseconds: 8000))
        defer { network.stopAll() }
        let hq = try network.start("HQ")
        let metricsPort = try #require(OperationsTests.metricsPort(hq), "\(hq.log.suffix(1000))")
        let branch = network.site("SH01")
        func refusals(_ reason: String, _ metrics: [String: Double]) -> Double { metrics["outpost_refusals_total{reason=\"\(reason)\"}"] ?? 0 }

        // Ordinary ends: sessions of `sync --once`, a daemon killed while connected (no TLS
        // close_notify) and a peer that closes in the middle of its ClientHello.
        for round in 0..<3 {
            try branch.ok("customer", "add", "--name", "正常\(round)", "--phone", "1370000000\(round)")
            let sync = try branch.run("sync", "--once", "--hq", network.hqAddress)
            #expect(sync.status == 0, "\(sync)")
        }
        let daemon = try network.start("GZ01")
        let connected = ContinuousClock.now + .seconds(10)
        while !hq.log.split(separator: "\n").contains(where: { $0.contains("branch connected") && $0.contains("site=GZ01") }),
            ContinuousClock.now < connected
        {
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Task.sleep(for: .milliseconds(500))
        daemon.signal(SIGKILL)
        daemon.waitExit()
        let quitter = StallingPeers(port: network.port, watching: hq.pid)
        quitter.open(5, .partialClientHello)
        try await Task.sleep(for: .milliseconds(200))
        _ = quitter.finish()
        let ended = try OperationsTests.waitMetrics(port: metricsPort) { $0["outpost_open_connections"] == 0 }
        #expect(refusals("TLS_HANDSHAKE", ended) == 0, "ordinary ends counted as TLS refusals: \(ended)\n\(hq.log.suffix(2000))")

        // A certificate from another authority naming a real branch: refused and counted.
        let other = network.sandbox.path("other-pki")
        try network.hq.ok("pki", "init", "--pki-dir", other)
        try network.hq.ok("pki", "issue", "--pki-dir", other, "--site", "SH01")
        let forged = try branch.run(
            "sync", "--once", "--hq", network.hqAddress, "--cert", other + "/sites/SH01/SH01.pem", "--key", other + "/sites/SH01/SH01-key.pem")
        #expect(forged.status == 1, "\(forged)")
        let afterForged = try OperationsTests.waitMetrics(port: metricsPort) { refusals("TLS_HANDSHAKE", $0) >= 1 }
        #expect(refusals("TLS_HANDSHAKE", afterForged) == 1, "\(afterForged)")
        #expect(hq.log.split(separator: "\n").contains { $0.contains("refused a TLS connection") && $0.contains("site=SH01") }, "\(hq.log.suffix(2000))")

        // Five connections with SH01's certificate that never make a call, over its share of
        // three: two are closed right after the handshake, three at the first-call deadline (8 s).
        // While the three hold SH01's share, the real SH01 cannot connect either.
        let tls = branch.dataDir + "/tls"
        let silent = try (0..<5).map { _ in
            try SilentTLSClient(port: network.port, ca: tls + "/ca.pem", certificate: tls + "/SH01.pem", key: tls + "/SH01-key.pem")
        }
        let heldUntil = ContinuousClock.now + .seconds(14)
        while silent.filter({ $0.exited != nil }).count < 2, ContinuousClock.now < heldUntil { try await Task.sleep(for: .milliseconds(10)) }
        let locked = try branch.run("sync", "--once", "--hq", network.hqAddress)
        while silent.contains(where: { $0.exited == nil }), ContinuousClock.now < heldUntil { try await Task.sleep(for: .milliseconds(10)) }
        let lifetimes = silent.compactMap(\.lifetime).sorted()
        print("five silent TLS connections of SH01 (share of 3) closed after \(lifetimes); SH01 meanwhile: \(locked.stderr)")
        #expect(lifetimes.count == 5, "\(lifetimes)")
        #expect(lifetimes.prefix(2).allSatisfy { $0 < .seconds(1) } && lifetimes.suffix(3).allSatisfy { $0 >= .milliseconds(7900) }, "\(lifetimes)")
        #expect(locked.status == 1, "SH01 got in while its share was taken: \(locked)")
        let afterSilent = try OperationsTests.waitMetrics(port: metricsPort) { refusals("FIRST_CALL_TIMEOUT", $0) >= 3 }
        // Two silent clients and the real SH01's attempt.
        #expect(refusals("SITE_CONNECTION_LIMIT", afterSilent) >= 3 && refusals("FIRST_CALL_TIMEOUT", afterSilent) == 3, "\(afterSilent)")
        let logged = hq.log.split(separator: "\n")
        #expect(logged.contains { $0.contains("over the site's connection limit") && $0.contains("site=SH01") && $0.contains("peer=") })
        #expect(logged.contains { $0.contains("made no call in time") && $0.contains("site=SH01") && $0.contains("reason=FIRST_CALL_TIMEOUT") })
        let again = try branch.run("sync", "--once", "--hq", network.hqAddress)
        #expect(again.status == 0, "\(again)")
    }

    /// A connection whose calls are over gets a GOAWAY after the idle timeout, and that is no
    /// refusal. (The first-call deadline is long here: the client runs in the test process,
    /// whose concurrency pool other suites may keep busy.)
    @Test func anIdleConnectionIsAskedToLeave() async throws {
        let network = try Network(branches: ["SH01"], config: "[sync]\nidle_timeout_ms = 2500\nfirst_call_timeout_ms = 600000\n")
        defer { network.stopAll() }
        let hq = try network.start("HQ")
        let metricsPort = try #require(OperationsTests.metricsPort(hq), "\(hq.log.suffix(1000))")
        let tls = network.site("SH01").dataDir + "/tls"
        // After the Hello the client stays; this one connects again at once after a GOAWAY
        // (and is asked to leave again), another would stay away until its next call.
        let ca = try [UInt8](Data(contentsOf: URL(fileURLWithPath: tls + "/ca.pem")))
        let cert = try [UInt8](Data(contentsOf: URL(fileURLWithPath: tls + "/SH01.pem")))
        let key = try [UInt8](Data(contentsOf: URL(fileURLWithPath: tls + "/SH01-key.pem")))
        let transport = try HTTP2ClientTransport.Posix(
            target: .ipv4(address: "127.0.0.1", port: network.port),
            transportSecurity: .mTLS(certificateChain: [.bytes(cert, format: .pem)], privateKey: .bytes(key, format: .pem)) {
                $0.trustRoots = .certificates([.bytes(ca, format: .pem)])
            })
        let (said, idle) = try await withGRPCClient(transport: transport) { client in
            // Wait for the connection: failing fast, the call can lose the race with a
            // handshake that a loaded machine makes slow ("subchannel isn't ready").
            // A loaded machine can make the handshake outlast the idle timeout itself: that
            // connection is asked to leave before its first call, which then fails
            // ("no subchannel available"); the next attempt gets a new connection.
            var options = CallOptions.defaults
            options.waitForReady = true
            options.timeout = .seconds(20)
            for attempt in 1...3 {
                do {
                    _ = try await WireSync.Client(wrapping: client).hello(
                        WireHelloRequest.with {
                            $0.protocolVersion = 1
                            $0.schemaVersion = 1
                        }, options: options)
                    break
                } catch let error as RPCError where error.code == .unavailable && attempt < 3 {
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
            let said = try await Self.scrape(port: metricsPort) { _ in true }
            let accepted = said["outpost_connections_total"] ?? 0
            let idle = try await Self.scrape(port: metricsPort, timeout: .seconds(10)) {
                ($0["outpost_connections_total"] ?? 0) > accepted || $0["outpost_open_connections"] == 0
            }
            return (said, idle)
        }
        print("an idle client: connections accepted \(said["outpost_connections_total"] ?? 0) -> \(idle["outpost_connections_total"] ?? 0)")
        #expect((idle["outpost_connections_total"] ?? 0) > (said["outpost_connections_total"] ?? 0) || idle["outpost_open_connections"] == 0, "\(idle)")
        #expect(!idle.keys.contains { $0.hasPrefix("outpost_refusals_total") }, "\(idle)")
    }

    /// Scrapes HQ's metrics until `condition` holds or 5 s have passed (without blocking a
    /// thread of the concurrency pool for long: the gRPC client runs there).
    static func scrape(port: Int, timeout: Duration = .seconds(5), _ condition: ([String: Double]) -> Bool) async throws -> [String: Double] {
        let deadline = ContinuousClock.now + timeout
        var values: [String: Double] = [:]
        while ContinuousClock.now < deadline {
            values = [:]
            for line in try HTTP.get(port: port, path: "/metrics").body.split(separator: "\n") where !line.hasPrefix("#") {
                guard let space = line.lastIndex(of: " ") else { continue }
                values[String(line[..<space])] = Double(line[line.index(after: space)...])
            }
            if condition(values) { return values }
            try await Task.sleep(for: .milliseconds(100))
        }
        return values
    }

    /// Closed by the 2 s handshake deadline (give or take the event loop and the watcher).
    static func isDeadline(_ lifetime: Duration) -> Bool { lifetime >= .milliseconds(1900) && lifetime < .seconds(5) }

    /// utime + stime of a process, in seconds (its own CPU time, whatever else the machine runs).
    static func cpuSeconds(_ pid: Int32) throws -> Double {
        let text = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        let close = try #require(text.lastIndex(of: ")"))
        // After "(comm)": state is field 3, utime 14, stime 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        let ticks = try #require(Double(fields[11])) + #require(Double(fields[12]))
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// Raw TCP peers of headquarters that never complete a TLS handshake: idle sockets, and
/// sockets that sent the first bytes of a ClientHello and stall. Each records when HQ closed
/// it and what HQ sent; ``watch(until:)`` also samples HQ's open descriptors.
final class StallingPeers: Sendable {
    enum Kind: Sendable {
        case idle
        case partialClientHello
    }

    struct Peer: Sendable {
        var kind: Kind
        var reopen: Bool
        var opened: ContinuousClock.Instant
        var closed: ContinuousClock.Instant?
        var bytesReceived = 0
        /// From connect to HQ's close; nil while open.
        var lifetime: Duration? { closed.map { $0 - opened } }
    }

    struct Report {
        var peers: [Peer]
        var connectFailures: Int
        var maximumDescriptors: Int
    }

    private struct State {
        var open: [Int32: Peer] = [:]
        var done: [Peer] = []
        var connectFailures = 0
        var maximumDescriptors = 0
    }

    private let state = Mutex(State())
    private let port: Int
    private let pid: Int32

    /// A TLS record header announcing 512 bytes of handshake, and the first 5 of them.
    static let partialClientHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03]

    /// - Parameter pid: headquarters' process, whose descriptors are counted.
    init(port: Int, watching pid: Int32) {
        self.port = port
        self.pid = pid
    }

    /// Opens `count` peers; with `reopen`, ``watch(until:)`` replaces each one HQ closes.
    func open(_ count: Int, _ kind: Kind, reopen: Bool = false) {
        for _ in 0..<count { dial(kind, reopen: reopen) }
    }

    private func dial(_ kind: Kind, reopen: Bool) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else {
            state.withLock { $0.connectFailures += 1 }
            return
        }
        // A full accept queue drops the SYN: give up after a second rather than retry for minutes.
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else {
            close(fd)
            state.withLock { $0.connectFailures += 1 }
            return
        }
        if kind == .partialClientHello {
            _ = Self.partialClientHello.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        state.withLock { $0.open[fd] = Peer(kind: kind, reopen: reopen, opened: .now) }
    }

    /// Until `end`: notes every peer HQ closes (EOF or reset), reopening the ones so marked,
    /// and samples HQ's descriptor count every 100 ms.
    func watch(until end: ContinuousClock.Instant) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var sampled = ContinuousClock.now - .seconds(1)
        while ContinuousClock.now < end {
            var fds = state.withLock { $0.open.keys.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) } }
            _ = poll(&fds, nfds_t(fds.count), 50)
            var replace: [Kind] = []
            for entry in fds where entry.revents != 0 {
                let n = recv(entry.fd, &buffer, buffer.count, 0)
                if n > 0 {
                    state.withLock { $0.open[entry.fd]?.bytesReceived += n }
                    continue
                }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { continue }
                close(entry.fd)
                let peer = state.withLock { s -> Peer? in
                    guard var peer = s.open.removeValue(forKey: entry.fd) else { return nil }
                    peer.closed = .now
                    s.done.append(peer)
                    return peer
                }
                if let peer, peer.reopen { replace.append(peer.kind) }
            }
            for kind in replace { dial(kind, reopen: true) }
            if ContinuousClock.now - sampled >= .milliseconds(100) {
                sampled = .now
                let count = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count ?? 0
                state.withLock { $0.maximumDescriptors = max($0.maximumDescriptors, count) }
            }
        }
    }

    /// Closes the peers still open (they stay in the report with no close time).
    func finish() -> Report {
        state.withLock { s in
            for fd in s.open.keys { close(fd) }
            let report = Report(peers: s.done + s.open.values, connectFailures: s.connectFailures, maximumDescriptors: s.maximumDescriptors)
            s.open = [:]
            return report
        }
    }
}

/// `openssl s_client` with a branch certificate: completes the TLS 1.3 handshake, then sends
/// nothing (its input stays open) until headquarters closes the connection.
final class SilentTLSClient {
    private let process = Process()
    private let input = Pipe()
    private let started = ContinuousClock.now
    /// Set by the termination handler, on another thread.
    private final class Exit: Sendable {
        let time = Mutex<ContinuousClock.Instant?>(nil)
    }

    private let exit = Exit()

    init(port: Int, ca: String, certificate: String, key: String) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = [
            "s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", ca, "-cert", certificate, "-key", key, "-tls1_3", "-quiet",
        ]
        process.standardInput = input
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.terminationHandler = { [exit] _ in exit.time.withLock { $0 = .now } }
        try process.run()
    }

    var exited: ContinuousClock.Instant? { exit.time.withLock { $0 } }
    /// From start to exit (HQ's close); nil while it runs.
    var lifetime: Duration? { exited.map { $0 - started } }

    deinit {
        if process.isRunning { process.terminate() }
        try? input.fileHandleForWriting.close()
    }
}
