import Foundation
import OutpostTesting
import Testing

/// Running under systemd and being watched: the notify protocol (against a socket this test
/// owns), SIGHUP and SIGTERM, the metrics and health endpoints, and `config check`.
@Suite(.serialized)
struct OperationsTests {
    /// READY=1 once serving, WATCHDOG=1 at half of WatchdogSec, RELOADING=1 then READY=1 on
    /// SIGHUP, STOPPING=1 on SIGTERM, then a clean exit.
    @Test func notifiesTheServiceManager() throws {
        let network = try Network(branches: ["SH01"])
        let socket = try NotifySocket(path: network.sandbox.path("notify.sock"))
        let daemon = try ServeProcess(
            site: network.site("SH01"), arguments: ["--hq", network.hqAddress], logPath: network.sandbox.path("SH01.log"),
            environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "400000"])
        defer { daemon.stop() }
        let pid = daemon.process.processIdentifier

        let ready = try #require(socket.receive(until: { $0.contains("READY=1") }), "no READY=1: \(daemon.log.suffix(2000))")
        #expect(ready.contains("MAINPID=\(pid)"), "\(ready)")
        #expect(ready.contains("STATUS=branch SH01"), "\(ready)")
        // Two pings in a row: the watchdog keeps going, not a single message at start.
        for _ in 0..<2 {
            #expect(socket.receive(until: { $0 == "WATCHDOG=1" }, timeout: 2) != nil, "no WATCHDOG=1 within 2 s (WatchdogSec 0.4 s)")
        }

        daemon.signal(SIGHUP)
        #expect(socket.receive(until: { $0.contains("RELOADING=1") }) != nil, "no RELOADING=1 after SIGHUP")
        #expect(socket.receive(until: { $0.contains("READY=1") }) != nil, "no READY=1 after the reload: \(daemon.log.suffix(2000))")
        #expect(daemon.process.isRunning)

        daemon.signal(SIGTERM)
        #expect(socket.receive(until: { $0.contains("STOPPING=1") }) != nil, "no STOPPING=1 after SIGTERM")
        #expect(daemon.waitExit(timeout: .seconds(15)) == 0, "\(daemon.log.suffix(2000))")
    }

    /// A reload with a broken configuration keeps the running one and says why.
    @Test func aBadReloadKeepsTheRunningConfiguration() throws {
        let network = try Network(branches: ["SH01"], config: "[sync]\npoll_interval_ms = 200\n")
        try network.start("HQ")
        let branch = try network.start("SH01")
        try "[sync]\npoll_interval_ms = \"fast\"\n".write(toFile: network.configPath, atomically: true, encoding: .utf8)
        branch.signal(SIGHUP)
        let deadline = ContinuousClock.now + .seconds(10)
        while !branch.log.contains("reload refused"), ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(branch.log.contains("reload refused"), "\(branch.log.suffix(2000))")
        #expect(branch.log.contains("sync.poll_interval_ms"), "the error names the key")
        #expect(branch.process.isRunning)
        // Still syncing on the old configuration.
        try network.site("SH01").ok("customer", "add", "--name", "重载后", "--phone", "13900000077")
        #expect(try network.waitConverged(timeout: .seconds(30)) == nil, "\(network.logs())")
    }

    /// `/metrics` shows what the daemon did and what is pending; `/healthz` and `/readyz` answer.
    @Test func metricsAndHealth() throws {
        let network = try Network(branches: ["SH01"])
        let hq = try network.start("HQ")
        let branch = try network.start("SH01")
        let hqPort = try #require(Self.metricsPort(hq), "\(hq.log.suffix(1000))")
        let branchPort = try #require(Self.metricsPort(branch), "\(branch.log.suffix(1000))")

        for i in 0..<3 { try network.site("SH01").ok("customer", "add", "--name", "指标\(i)", "--phone", "1360000000\(i)") }
        #expect(try network.waitConverged(timeout: .seconds(30)) == nil, "\(network.logs())")

        #expect(try HTTP.get(port: hqPort, path: "/healthz").status == 200)
        #expect(try HTTP.get(port: branchPort, path: "/readyz").status == 200)
        #expect(try HTTP.get(port: branchPort, path: "/nothing").status == 404)

        // Each customer add is at least one change; HQ received them all from SH01.
        let atHQ = try Self.waitMetrics(port: hqPort) { ($0["outpost_changes_applied_total{direction=\"received\"}"] ?? 0) >= 3 }
        #expect(atHQ["outpost_connected_branches"] == 1, "\(atHQ)")
        #expect(atHQ["outpost_info{role=\"hq\",site=\"HQ\"}"] == 1)
        #expect((atHQ["outpost_database_bytes"] ?? 0) > 0)
        let synced = try Self.waitMetrics(port: branchPort) { $0["outpost_pending_local_changes"] == 0 }
        #expect(synced["outpost_connected"] == 1, "\(synced)")
        #expect((synced["outpost_seconds_since_last_sync"] ?? .infinity) < 60, "\(synced)")
        #expect((synced["outpost_changes_sent_total"] ?? 0) >= 3)

        // A peer without a client certificate (openssl as an independent peer) is refused at
        // the TLS handshake and counted by reason.
        _ = try runProcess(
            "/usr/bin/openssl", ["s_client", "-connect", network.hqAddress, "-tls1_3", "-servername", "localhost", "-alpn", "h2"], input: "")
        let refused = try Self.waitMetrics(port: hqPort) { ($0["outpost_refusals_total{reason=\"TLS_HANDSHAKE\"}"] ?? 0) >= 1 }
        #expect(refused["outpost_refusals_total{reason=\"TLS_HANDSHAKE\"}"] == 1, "\(refused)")

        // Headquarters gone: the branch counts what waits to be pushed and says it is offline.
        hq.stop()
        for i in 0..<2 { try network.site("SH01").ok("customer", "add", "--name", "离线\(i)", "--phone", "1350000000\(i)") }
        let offline = try Self.waitMetrics(port: branchPort) { ($0["outpost_pending_local_changes"] ?? 0) >= 2 && $0["outpost_connected"] == 0 }
        #expect((offline["outpost_sync_failures_total"] ?? 0) >= 1, "\(offline)")
    }

    static func metricsPort(_ daemon: ServeProcess) -> Int? {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            for line in daemon.log.split(separator: "\n") where line.contains("operations endpoint listening") {
                if let port = line.split(separator: ":").last.flatMap({ Int($0) }) { return port }
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }

    /// Scrapes until `condition` holds (10 s at most); returns the last scrape.
    static func waitMetrics(port: Int, timeout: Duration = .seconds(10), _ condition: ([String: Double]) -> Bool) throws -> [String: Double] {
        let deadline = ContinuousClock.now + timeout
        var values: [String: Double] = [:]
        while ContinuousClock.now < deadline {
            let response = try HTTP.get(port: port, path: "/metrics")
            #expect(response.status == 200)
            values = [:]
            for line in response.body.split(separator: "\n") where !line.hasPrefix("#") {
                guard let space = line.lastIndex(of: " ") else { continue }
                let value = line[line.index(after: space)...]
                values[String(line[..<space])] = value == "+Inf" ? .infinity : Double(value)
            }
            if condition(values) { return values }
            Thread.sleep(forTimeInterval: 0.1)
        }
        Issue.record("metrics never met the condition: \(values)")
        return values
    }

    /// Every problem in a broken file is listed with its file, line and key; the environment
    /// overrides the file and `config check` says where each value came from.
    @Test func configCheckListsEveryProblem() throws {
        let network = try Network(branches: ["SH01"])
        let site = network.site("SH01")
        let path = network.sandbox.path("broken.toml")
        try """
        [sync]
        hq_adress = "127.0.0.1:7443"
        retry_max_ms = "30s"

        [metrics]
        listen_address = "127.0.0.1"
        """.write(toFile: path, atomically: true, encoding: .utf8)
        let broken = try site.run("config", "check", "--config", path)
        #expect(broken.status == 1, "\(broken)")
        let lines = broken.stderr.split(separator: "\n").map(String.init)
        #expect(lines.contains("error: \(path):2: sync.hq_adress: unknown key; see deploy/outpost.toml for every key"), "\(lines)")
        #expect(lines.contains { $0.hasPrefix("error: \(path):3: sync.retry_max_ms: must be a whole number") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("error: \(path):6: metrics.listen_address:") && $0.contains("port is missing") }, "\(lines)")
        // A branch without headquarters' address is a problem too.
        #expect(lines.contains { $0.contains("sync.hq_address: a branch needs headquarters' address") }, "\(lines)")

        try "[sync]\nhq_address = \"127.0.0.1:7443\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        let good = try Outpost.run(
            ["config", "check", "--config", path, "--data-dir", site.dataDir], environment: ["OUTPOST_SYNC_POLL_INTERVAL_MS": "50"])
        #expect(good.status == 0, "\(good)")
        #expect(good.stdout.contains("configuration OK"))
        #expect(good.stdout.contains("sync.hq_address:") && good.stdout.contains("127.0.0.1:7443  [\(path):2]"), "\(good.stdout)")
        #expect(good.stdout.contains("50  [$OUTPOST_SYNC_POLL_INTERVAL_MS]"), "\(good.stdout)")
        #expect(good.stdout.contains("certificate:") && good.stdout.contains("more day(s)"), "\(good.stdout)")

        // A bad value in the environment names the variable.
        let badEnv = try Outpost.run(
            ["config", "check", "--config", path, "--data-dir", site.dataDir], environment: ["OUTPOST_LOG_LEVEL": "\"loud\""])
        #expect(badEnv.status == 1)
        #expect(badEnv.stderr.contains("$OUTPOST_LOG_LEVEL: log.level: must be one of"), "\(badEnv)")

        // A key that does not match its certificate is caught before the daemon starts.
        let tls = site.dataDir + "/tls"
        try FileManager.default.removeItem(atPath: tls + "/SH01-key.pem")
        try FileManager.default.copyItem(atPath: network.hq.dataDir + "/pki/hq-key.pem", toPath: tls + "/SH01-key.pem")
        let mismatched = try site.run("config", "check", "--config", path)
        #expect(mismatched.status == 1)
        #expect(mismatched.stderr.contains("does not belong to the certificate"), "\(mismatched)")
    }
}

/// A Unix datagram socket standing in for systemd's notify socket.
final class NotifySocket {
    let path: String
    private let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        try #require(bytes.count < MemoryLayout.size(ofValue: address.sun_path), "socket path too long: \(path)")
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(bound == 0, "bind \(path): errno \(errno)")
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Reads messages until one satisfies `match`; nil after `timeout` seconds.
    func receive(until match: (String) -> Bool, timeout: Double = 20) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let remaining = Int32(max(1, deadline.timeIntervalSinceNow * 1000))
            guard poll(&poller, 1, remaining) > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { continue }
            let message = String(decoding: buffer[0..<n], as: UTF8.self)
            if match(message) { return message }
        }
        return nil
    }
}

/// A plain HTTP/1.1 GET over a socket (no client library: the test sees the bytes the daemon sends).
enum HTTP {
    static func get(port: Int, path: String) throws -> (status: Int, body: String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0, "connect 127.0.0.1:\(port): errno \(errno)")
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            response += buffer[0..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        let status = text.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) } ?? 0
        let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
        return (status, body)
    }
}
