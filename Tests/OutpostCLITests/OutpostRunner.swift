import Foundation
import Testing

/// What one run of the `outpost` executable did.
struct RunResult: CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String
    /// The process was killed by a signal (a trap in Swift is SIGILL or SIGTRAP), not exited.
    var crashed = false

    var stderrLines: [String] { stderr.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }

    /// stdout parsed as JSON.
    func json() throws -> Any {
        try JSONSerialization.jsonObject(with: Data(stdout.utf8), options: [.fragmentsAllowed])
    }

    func object() throws -> [String: Any] {
        try #require(try json() as? [String: Any], "stdout is not a JSON object: \(stdout.prefix(200))")
    }

    func array() throws -> [[String: Any]] {
        try #require(try json() as? [[String: Any]], "stdout is not a JSON array: \(stdout.prefix(200))")
    }

    var description: String { "\(crashed ? "killed by signal" : "exit") \(status)\nstdout: \(stdout.prefix(2000))\nstderr: \(stderr.prefix(2000))" }
}

/// Finds and runs the built `outpost` executable.
enum Outpost {
    /// `$OUTPOST_BIN`, else a `debug/outpost` (or sibling `outpost`) found searching upward from
    /// the test bundle: the build directory the tests were built in.
    static let executable: URL? = locate()

    static func locate() -> URL? {
        let env = ProcessInfo.processInfo.environment
        if let path = env["OUTPOST_BIN"], !path.isEmpty { return URL(fileURLWithPath: path) }
        var starts = [Bundle.main.bundleURL, URL(fileURLWithPath: CommandLine.arguments[0])]
        starts += Bundle.allBundles.map(\.bundleURL)
        for start in starts {
            var dir = start.standardizedFileURL
            for _ in 0..<8 {
                for candidate in ["outpost", "debug/outpost"] {
                    let url = dir.appendingPathComponent(candidate)
                    if isExecutableFile(url.path) { return url }
                }
                let parent = dir.deletingLastPathComponent()
                if parent.path == dir.path { break }
                dir = parent
            }
        }
        return nil
    }

    static func isExecutableFile(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
            && FileManager.default.isExecutableFile(atPath: path)
    }

    /// Runs `outpost` with the arguments; stdout and stderr go to files (no pipe deadlock).
    static func run(_ arguments: [String], environment extra: [String: String] = [:]) throws -> RunResult {
        let executable = try #require(executable, "the outpost executable was not found: build it (swift build --product outpost) or set OUTPOST_BIN")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("outpost-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let outURL = scratch.appendingPathComponent("stdout")
        let errURL = scratch.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL)
        let err = try FileHandle(forWritingTo: errURL)

        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "OUTPOST_DATA_DIR")
        environment.removeValue(forKey: "OUTPOST_LOG_LEVEL")
        for (k, v) in extra { environment[k] = v }
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        try process.run()
        process.waitUntilExit()
        try out.close()
        try err.close()
        return RunResult(
            status: process.terminationStatus,
            stdout: String(decoding: try Data(contentsOf: outURL), as: UTF8.self),
            stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self),
            crashed: process.terminationReason == .uncaughtSignal)
    }
}

/// A temporary directory for one test, removed when the test is done with it.
final class Sandbox {
    let root: URL

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("outpost-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: root) }

    func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    /// A site whose data directory lives in this sandbox (not initialized yet).
    func site(_ name: String) -> Site { Site(dataDir: path(name)) }

    /// A site, initialized.
    func initializedSite(_ code: String, role: String = "branch", sourceLocation: SourceLocation = #_sourceLocation) throws -> Site {
        let site = self.site(code.lowercased())
        let result = try site.run("init", "--site", code, "--role", role)
        #expect(result.status == 0, "init \(code): \(result)", sourceLocation: sourceLocation)
        return site
    }
}

/// One site's data directory: runs `outpost … --data-dir DIR`.
struct Site {
    var dataDir: String

    func run(_ arguments: String...) throws -> RunResult {
        try Outpost.run(arguments + ["--data-dir", dataDir])
    }

    func run(_ arguments: [String]) throws -> RunResult {
        try Outpost.run(arguments + ["--data-dir", dataDir])
    }

    /// Runs a command that must succeed.
    @discardableResult
    func ok(_ arguments: String..., sourceLocation: SourceLocation = #_sourceLocation) throws -> RunResult {
        let result = try run(arguments)
        #expect(result.status == 0, "outpost \(arguments.joined(separator: " ")): \(result)", sourceLocation: sourceLocation)
        return result
    }

    /// Runs a command with `--json` that must succeed, and parses its output as an object.
    func object(_ arguments: String..., sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        let result = try run(arguments + ["--json"])
        try #require(result.status == 0, "outpost \(arguments.joined(separator: " ")) --json: \(result)", sourceLocation: sourceLocation)
        return try result.object()
    }

    func array(_ arguments: String..., sourceLocation: SourceLocation = #_sourceLocation) throws -> [[String: Any]] {
        let result = try run(arguments + ["--json"])
        try #require(result.status == 0, "outpost \(arguments.joined(separator: " ")) --json: \(result)", sourceLocation: sourceLocation)
        return try result.array()
    }

    /// `dump --canonical`, which must succeed.
    func dump(sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let result = try run("dump", "--canonical")
        try #require(result.status == 0, "dump: \(result)", sourceLocation: sourceLocation)
        return result.stdout
    }

    /// `dump --canonical --scope CODE` at headquarters: what that branch must hold.
    func scopeDump(_ code: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let result = try run("dump", "--canonical", "--scope", code)
        try #require(result.status == 0, "dump --scope \(code): \(result)", sourceLocation: sourceLocation)
        return result.stdout
    }

    /// Runs a command that must fail with exactly one `error:` line on stderr, print nothing on
    /// stdout, and leave the archive's canonical dump as it was.
    @discardableResult
    func refused(_ arguments: String..., sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let before = try dump(sourceLocation: sourceLocation)
        let result = try run(arguments)
        #expect(result.status == 1, "outpost \(arguments.joined(separator: " ")) should fail: \(result)", sourceLocation: sourceLocation)
        #expect(result.stderrLines.count == 1, "one stderr line expected: \(result)", sourceLocation: sourceLocation)
        #expect(result.stderr.hasPrefix("error: "), "\(result)", sourceLocation: sourceLocation)
        #expect(result.stdout.isEmpty, "nothing on stdout expected: \(result)", sourceLocation: sourceLocation)
        #expect(try dump(sourceLocation: sourceLocation) == before, "the archive changed", sourceLocation: sourceLocation)
        return result.stderr
    }
}
