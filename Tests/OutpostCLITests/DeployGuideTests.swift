import Foundation
import Testing

/// Follows `deploy/README.md`'s numbered steps literally, command by command, for two machines
/// (headquarters and a branch) on this one: each machine is a directory standing for its root.
///
/// What changes between the guide and this run, and nothing else:
/// - paths under `/etc/outpost`, `/var/lib/outpost` and `/tmp` live under the machine's
///   directory, and `OUTPOST_CONFIG` / `OUTPOST_DATA_DIR` point the program's defaults there;
/// - `sudo`, `sudo -u outpost` and `install -o outpost -g outpost` run as the test's user;
/// - `dpkg -i` lays out what the package installs (the configuration and the directories;
///   CI installs the real package with dpkg separately);
/// - `systemctl enable --now UNIT` runs the unit's own `ExecStart` line from
///   `deploy/systemd`; `scp HOST:SRC DEST` copies between the two machine directories;
/// - `hq.example.net:7443` is `localhost` on a free port, and each daemon's metrics endpoint
///   takes a free port (both machines share one loopback).
@Suite(.serialized)
struct DeployGuideTests {
    static let deploy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../deploy").standardized.path

    struct Step {
        var number: Int
        var machine: String
        var commands: [String]
    }

    /// The numbered steps with their shell blocks, in order.
    static func steps(_ text: String) -> [Step] {
        var steps: [Step] = []
        var number: Int?
        var inBlock = false
        var block: [String] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if !inBlock, let dot = line.firstIndex(of: "."), let n = Int(line[..<dot]), line[line.index(after: dot)...].hasPrefix(" ") {
                number = n
                continue
            }
            if line.hasPrefix("```") {
                if inBlock, let number, let first = block.first, first.hasPrefix("# at ") {
                    // Continuation lines (a trailing backslash) join the next.
                    var commands: [String] = []
                    var pending = ""
                    for l in block.dropFirst() {
                        if l.hasSuffix("\\") {
                            pending += l.dropLast() + " "
                        } else {
                            commands.append(pending + l)
                            pending = ""
                        }
                    }
                    steps.append(Step(number: number, machine: String(first.dropFirst(5)), commands: commands.filter { !$0.isEmpty }))
                }
                inBlock.toggle()
                block = []
                continue
            }
            if inBlock { block.append(line) }
        }
        return steps
    }

    @Test func provisioningHeadquartersAndABranchFromZero() throws {
        let guide = try String(contentsOfFile: Self.deploy + "/README.md", encoding: .utf8)
        let steps = Self.steps(guide)
        #expect(steps.map(\.number) == Array(1...10), "the guide's numbered steps: \(steps.map(\.number))")

        let sandbox = try Sandbox()
        let executable = try #require(Outpost.executable)
        let bin = sandbox.path("bin")
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: bin + "/outpost", withDestinationPath: executable.path)
        let port = try Network.freePort()
        let roots = ["headquarters": sandbox.path("hq-machine"), "the branch": sandbox.path("branch-machine")]
        var daemons: [ServeProcess] = []
        defer { for d in daemons { d.stop() } }

        func map(_ text: String, root: String) -> String {
            // In one pass (placeholders first): the machine's directory itself lies under /tmp.
            text.replacingOccurrences(of: "/var/lib/outpost", with: "\u{1}var").replacingOccurrences(of: "/etc/outpost", with: "\u{1}etc")
                .replacingOccurrences(of: "/tmp/", with: "\u{1}tmp").replacingOccurrences(of: "\u{1}var", with: root + "/var/lib/outpost")
                .replacingOccurrences(of: "\u{1}etc", with: root + "/etc/outpost").replacingOccurrences(of: "\u{1}tmp", with: root + "/tmp/")
                .replacingOccurrences(of: "hq.example.net:7443", with: "localhost:\(port)")
                .replacingOccurrences(of: "0.0.0.0:7443", with: "127.0.0.1:\(port)")
                .replacingOccurrences(of: "hq.example.net", with: "localhost")
        }
        func environment(_ root: String) -> [String: String] {
            [
                "PATH": bin + ":/usr/bin:/bin", "OUTPOST_CONFIG": root + "/etc/outpost/outpost.toml",
                "OUTPOST_DATA_DIR": root + "/var/lib/outpost", "OUTPOST_METRICS_LISTEN_ADDRESS": "127.0.0.1:0",
            ]
        }

        for step in steps {
            let root = try #require(roots[step.machine], "step \(step.number): unknown machine '\(step.machine)'")
            try FileManager.default.createDirectory(atPath: root + "/tmp", withIntermediateDirectories: true)
            for command in step.commands {
                var line = command.replacingOccurrences(of: "sudo -u outpost ", with: "").replacingOccurrences(of: "sudo ", with: "")
                    .replacingOccurrences(of: "-o outpost -g outpost ", with: "")
                let words = line.split(separator: " ").map(String.init)
                switch words.first {
                case "dpkg":
                    // What the package lays out: the configuration and the data directory.
                    try FileManager.default.createDirectory(atPath: root + "/etc/outpost", withIntermediateDirectories: true)
                    try FileManager.default.createDirectory(atPath: root + "/var/lib/outpost", withIntermediateDirectories: true)
                    let config = try String(contentsOfFile: Self.deploy + "/outpost.toml", encoding: .utf8)
                    try map(config, root: root).write(toFile: root + "/etc/outpost/outpost.toml", atomically: true, encoding: .utf8)
                    continue
                case "systemctl":
                    let unit = try #require(words.last, "step \(step.number): \(command)")
                    let text = try String(contentsOfFile: Self.deploy + "/systemd/\(unit).service", encoding: .utf8)
                    let exec = try #require(text.split(separator: "\n").first { $0.hasPrefix("ExecStart=") }, "\(unit) has no ExecStart")
                    let arguments = map(String(exec.dropFirst("ExecStart=".count)), root: root).split(separator: " ").map(String.init)
                    #expect(arguments.first == "/usr/bin/outpost" && arguments.dropFirst().first == "serve", "\(exec)")
                    let daemon = try ServeProcess(
                        command: Array(arguments.dropFirst()), logPath: sandbox.path("\(unit).log"), environment: environment(root))
                    daemons.append(daemon)
                    try daemon.waitReady()
                    continue
                case "scp":
                    // scp -r HOST:SRC DEST: from headquarters' machine to this one.
                    let source = try #require(words.first { $0.contains(":/") }, "\(command)")
                    let path = String(source[source.index(after: source.firstIndex(of: ":")!)...])
                    line = "cp -r \(map(path, root: roots["headquarters"]!)) \(map(words.last!, root: root))"
                default:
                    line = map(line, root: root)
                }
                let result = try runShell(line, environment: environment(root))
                #expect(result.status == 0, "step \(step.number) at \(step.machine): \(command)\n\(result)")
                if step.number == 10 {
                    #expect(!result.stdout.contains("FAIL") && !result.stdout.contains("WARN"), "doctor: \(result.stdout)")
                }
            }
        }

        // The result: the branch's writes reach headquarters.
        let branchEnv = environment(roots["the branch"]!)
        let added = try runShell("outpost customer add --name 部署验证 --phone 13800009999", environment: branchEnv)
        #expect(added.status == 0, "\(added)")
        let hqEnv = environment(roots["headquarters"]!)
        let deadline = ContinuousClock.now + .seconds(20)
        var found = ""
        while ContinuousClock.now < deadline {
            found = try runShell("outpost customer search 部署验证", environment: hqEnv).stdout
            if found.contains("SH01-C-000001") { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(found.contains("SH01-C-000001"), "headquarters: \(found)\n\(daemons.map { $0.log.suffix(1500) })")
    }

    func runShell(_ line: String, environment: [String: String]) throws -> RunResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", line]
        p.environment = environment
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return RunResult(status: p.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }
}
