import Foundation
import Testing

/// A running `outpost serve`: a real process, its log in a file.
final class ServeProcess {
    let site: Site
    let arguments: [String]
    let logPath: String
    let config: String
    let environment: [String: String]
    /// A command the daemon runs under (`prlimit --fsize=N --`), or empty.
    let wrapper: [String]
    /// The whole command line after the executable, when given as it is (a unit's ExecStart).
    let command: [String]?
    private(set) var process: Process

    /// Runs `outpost COMMAND…` exactly as given (no data directory or configuration added).
    init(command: [String], logPath: String, environment: [String: String]) throws {
        self.command = command
        self.environment = environment
        wrapper = []
        site = Site(dataDir: environment["OUTPOST_DATA_DIR"] ?? "")
        arguments = []
        self.logPath = logPath
        config = environment["OUTPOST_CONFIG"] ?? ""
        process = Process()
        try start()
    }

    init(
        site: Site, arguments: [String], logPath: String, config: String = "/dev/null", environment: [String: String] = [:],
        wrapper: [String] = []
    ) throws {
        self.environment = environment
        self.wrapper = wrapper
        command = nil
        self.site = site
        self.arguments = arguments
        self.logPath = logPath
        self.config = config
        process = Process()
        try start()
    }

    private func start() throws {
        let executable = try #require(Outpost.executable, "the outpost executable was not found")
        if !FileManager.default.fileExists(atPath: logPath) { FileManager.default.createFile(atPath: logPath, contents: nil) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        let p = Process()
        let command = self.command ?? ["serve", "--data-dir", site.dataDir, "--config", config] + arguments
        if let program = wrapper.first {
            p.executableURL = URL(fileURLWithPath: program)
            p.arguments = Array(wrapper.dropFirst()) + [executable.path] + command
        } else {
            p.executableURL = executable
            p.arguments = command
        }
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "OUTPOST_DATA_DIR")
        environment["OUTPOST_LOG_LEVEL"] = "info"
        // Many daemons run at once: each takes a free port for its operations endpoint.
        environment["OUTPOST_METRICS_LISTEN_ADDRESS"] = "127.0.0.1:0"
        environment.merge(self.environment) { $1 }
        p.environment = environment
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = log
        p.standardError = log
        try p.run()
        try log.close()
        process = p
    }

    var isRunning: Bool { process.isRunning }

    /// The daemon's process id (a wrapper such as `prlimit` execs the daemon: same id).
    var pid: Int32 { process.processIdentifier }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until the daemon logged that it serves (HQ listens; a branch started).
    func waitReady(timeout: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if log.contains("[OutpostCLI] ready") && isReadySinceStart() { return }
            if !process.isRunning {
                Issue.record("outpost serve exited with \(process.terminationStatus): \(log.suffix(2000))", sourceLocation: sourceLocation)
                return
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        Issue.record("outpost serve was not ready within \(timeout): \(log.suffix(2000))", sourceLocation: sourceLocation)
    }

    private var readyLinesAtStart = 0
    private func isReadySinceStart() -> Bool { log.components(separatedBy: "[OutpostCLI] ready").count - 1 > readyLinesAtStart }

    /// Sends a signal; with SIGKILL the process is gone at once.
    func signal(_ signal: Int32) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, signal)
    }

    /// Waits for the process to exit; returns its status, or nil on timeout.
    @discardableResult
    func waitExit(timeout: Duration = .seconds(20)) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { return nil }
        return process.terminationStatus
    }

    /// Starts the same daemon again after it exited.
    func restart() throws {
        precondition(!process.isRunning)
        readyLinesAtStart = log.components(separatedBy: "[OutpostCLI] ready").count - 1
        try start()
    }

    func stop() {
        signal(SIGKILL)
        waitExit(timeout: .seconds(5))
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// Headquarters and branches as separate `outpost serve` processes on 127.0.0.1, with
/// certificates made by `outpost pki`.
final class Network {
    let sandbox: Sandbox
    let hq: Site
    let branches: [String: Site]
    let port: Int
    private(set) var daemons: [String: ServeProcess] = [:]

    let configPath: String

    /// - Parameter config: the daemons' configuration file text (TOML).
    init(branches codes: [String], config: String = "") throws {
        sandbox = try Sandbox()
        configPath = sandbox.path("outpost.toml")
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        port = try Network.freePort()
        hq = try sandbox.initializedSite("HQ", role: "hq")
        try hq.ok("pki", "init")
        var sites: [String: Site] = [:]
        for code in codes {
            let site = try sandbox.initializedSite(code)
            try hq.ok("pki", "issue", "--site", code, "--install-to", site.dataDir + "/tls")
            sites[code] = site
        }
        branches = sites
    }

    var hqAddress: String { "127.0.0.1:\(port)" }

    func site(_ code: String) -> Site { code == "HQ" ? hq : branches[code]! }

    var codes: [String] { ["HQ"] + branches.keys.sorted() }

    /// Starts a site's daemon (or restarts it after it exited) and waits until it serves.
    /// - Parameter wrapper: a command the daemon runs under, e.g. `prlimit --nofile=N:N --`
    ///   (at the first start only).
    @discardableResult
    func start(_ code: String, wrapper: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) throws -> ServeProcess {
        if let existing = daemons[code] {
            if !existing.isRunning {
                try existing.restart()
                try existing.waitReady(sourceLocation: sourceLocation)
            }
            return existing
        }
        let arguments =
            code == "HQ"
            ? ["--listen", hqAddress] : ["--hq", hqAddress]
        let daemon = try ServeProcess(site: site(code), arguments: arguments, logPath: sandbox.path("\(code).log"), config: configPath, wrapper: wrapper)
        try daemon.waitReady(sourceLocation: sourceLocation)
        daemons[code] = daemon
        return daemon
    }

    func daemon(_ code: String) -> ServeProcess? { daemons[code] }

    /// Waits until every branch holds exactly HQ's records in its scope (its dump equals HQ's
    /// `dump --canonical --scope CODE`); returns the dumps that differ if they never do.
    func waitConverged(timeout: Duration = .seconds(60)) throws -> [String: String]? {
        let deadline = ContinuousClock.now + timeout
        var dumps: [String: String] = [:]
        while ContinuousClock.now < deadline {
            dumps = [:]
            for code in codes where code != "HQ" {
                let expected = try hq.scopeDump(code)
                let held = try site(code).dump()
                if held != expected {
                    dumps[code] = held
                    dumps["HQ for \(code)"] = expected
                }
            }
            if dumps.isEmpty { return nil }
            Thread.sleep(forTimeInterval: 0.25)
        }
        return dumps
    }

    func logs() -> String {
        daemons.keys.sorted().map { "--- \($0)\n" + String(daemons[$0]!.log.suffix(3000)) }.joined(separator: "\n")
    }

    func stopAll() {
        for d in daemons.values { d.stop() }
    }

    deinit { stopAll() }

    /// A TCP port nothing listens on now (bound and released).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        try #require(bound, "cannot bind a port on 127.0.0.1")
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
