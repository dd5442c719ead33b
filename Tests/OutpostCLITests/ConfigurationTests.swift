import Foundation
import OutpostDaemon
import SyncService
import Testing

/// The configuration file: the documented example parses to the defaults, and every mistake
/// is an error naming the file, the line and the key.
struct ConfigurationTests {
    static let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../deploy/outpost.toml").standardized.path

    @Test func theDocumentedExampleIsValidAndStatesTheDefaults() throws {
        let config = try DaemonConfiguration.load(path: Self.example, required: true)
        #expect(config.limits == SyncLimits(), "deploy/outpost.toml must show the defaults")
        #expect(config.listenAddress == DaemonConfiguration().listenAddress)
        #expect(config.logLevel == .info)
        #expect(config.dataDirectory == "/var/lib/outpost")
        // Every key the loader knows appears in the example, commented out or not.
        let text = try String(contentsOfFile: Self.example, encoding: .utf8)
        for key in DaemonConfiguration.keys.map({ String($0.split(separator: ".").last!) }) {
            #expect(text.contains("\(key) = "), "deploy/outpost.toml does not document \(key)")
        }
    }

    @Test(
        arguments: [
            ("[sync]\nbatch_max_byts = 5\n", 2, "sync.batch_max_byts", "unknown key"),
            ("[sink]\n", 1, "sink", "unknown table"),
            ("[sync]\nretry_max_ms = \"30s\"\n", 2, "sync.retry_max_ms", "whole number"),
            ("[sync]\nbatch_max_bytes = 10\n", 2, "sync.batch_max_bytes", "between 4096"),
            ("[sync]\nhq_address = \"hq.example.net\"\n", 2, "sync.hq_address", "port is missing"),
            ("[log]\nlevel = \"loud\"\n", 2, "log.level", "must be one of"),
            ("data_dir = \"/srv\"\ndata_dir = \"/srv\"\n", 2, nil, "already set on line 1"),
            ("[sync]\nlisten_address = 0.0.0.0:7443\n", 2, nil, "strings need quotes"),
            ("[sync]\nretry_initial_ms = 5000\nretry_max_ms = 1000\n", 3, "sync.retry_max_ms", "must not be below"),
            ("[sync]\nmax_connections = 0\n", 2, "sync.max_connections", "between 1 and 1000000"),
            ("[sync]\nhandshake_timeout_ms = 10\n", 2, "sync.handshake_timeout_ms", "between 100"),
        ] as [(String, Int, String?, String)])
    func mistakesNameTheLineAndKey(text: String, line: Int, key: String?, words: String) throws {
        let directory = try TemporaryDirectoryForTests()
        let path = directory.path + "/outpost.toml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        do {
            _ = try DaemonConfiguration.load(path: path, required: true)
            Issue.record("accepted: \(text)")
        } catch let error as ConfigurationError {
            #expect(error.line == line, "\(error)")
            if let key { #expect(error.key == key, "\(error)") }
            #expect(error.description.contains(words), "\(error)")
            #expect(error.description.hasPrefix("\(path):\(line)"), "\(error)")
        }
    }

    @Test func aMissingFileIsAnErrorOnlyWhenNamed() throws {
        #expect(throws: ConfigurationError.self) { try DaemonConfiguration.load(path: "/nonexistent/outpost.toml", required: true) }
        let defaults = try DaemonConfiguration.load(path: "/nonexistent/outpost.toml", required: false)
        #expect(defaults.limits == SyncLimits())
    }

    /// The CLI prints the same error as one line.
    @Test func serveReportsAConfigurationErrorInOneLine() throws {
        let sandbox = try Sandbox()
        let site = try sandbox.initializedSite("SH01")
        let path = sandbox.path("bad.toml")
        try "[sync]\nhq_adress = \"127.0.0.1:7443\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        let result = try site.run("serve", "--config", path)
        #expect(result.status == 78, "EX_CONFIG: the units do not restart on it")
        #expect(result.stderr == "error: \(path):2: sync.hq_adress: unknown key; see deploy/outpost.toml for every key\n", "\(result)")
    }
}

/// A temporary directory removed at the end of a test.
final class TemporaryDirectoryForTests {
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("outpost-config-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}
