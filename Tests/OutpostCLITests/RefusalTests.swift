import CustomerArchive
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import OutpostTesting
import Replication
import SyncProtocol
import SyncService
import Testing

/// Everything headquarters must refuse, each over a real mutual-TLS connection to a real
/// `outpost serve`: the caller gets a clear error, HQ logs a line naming the site, and HQ's
/// archive is unchanged.
@Suite(.serialized)
struct RefusalTests {
    /// HQ running with one record from SH01, so "unchanged" has something to protect.
    final class Setup {
        let network: Network
        let hqDaemon: ServeProcess
        init() throws {
            // The raw clients here run in the test process, whose concurrency pool the other
            // suites (the simulation above all) can keep busy for many seconds between the TLS
            // handshake and the first call: HQ's first-call deadline must not cut them off.
            network = try Network(branches: ["BJ01", "SH01"], config: "[sync]\nfirst_call_timeout_ms = 600000\n")
            hqDaemon = try network.start("HQ")
            try network.site("SH01").ok("customer", "add", "--name", "既有客户", "--phone", "13900001111")
            let sync = try network.site("SH01").run("sync", "--once", "--hq", network.hqAddress)
            try #require(sync.status == 0, "\(sync)")
        }

        var hqDump: String { get throws { try network.hq.dump() } }

        func tls(_ site: String) -> TLSFiles {
            let dir = network.site(site).dataDir + "/tls"
            return TLSFiles(ca: dir + "/ca.pem", certificate: dir + "/\(site).pem", key: dir + "/\(site)-key.pem")
        }

        /// Runs `body` with a raw protocol client presenting `files` (or no certificate).
        func withClient<T: Sendable>(
            _ files: TLSFiles?, trust: String? = nil, _ body: @Sendable (WireSync.Client<HTTP2ClientTransport.Posix>) async throws -> T
        ) async throws -> T {
            let ca = try [UInt8](Data(contentsOf: URL(fileURLWithPath: trust ?? network.hq.dataDir + "/pki/ca.pem")))
            let security: HTTP2ClientTransport.Posix.TransportSecurity
            if let files {
                let cert = try [UInt8](Data(contentsOf: URL(fileURLWithPath: files.certificate)))
                let key = try [UInt8](Data(contentsOf: URL(fileURLWithPath: files.key)))
                security = .mTLS(certificateChain: [.bytes(cert, format: .pem)], privateKey: .bytes(key, format: .pem)) {
                    $0.trustRoots = .certificates([.bytes(ca, format: .pem)])
                }
            } else {
                security = .tls { $0.trustRoots = .certificates([.bytes(ca, format: .pem)]) }
            }
            let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: network.port), transportSecurity: security)
            return try await withGRPCClient(transport: transport) { client in try await body(WireSync.Client(wrapping: client)) }
        }

        /// Sends one push message and returns HQ's acknowledgement (or throws its refusal).
        func push(_ bytes: Data, as site: String) async throws -> WirePushAck {
            try await withClient(tls(site)) { client in
                try await client.push(
                    requestProducer: { writer in
                        var message = WirePushRequest()
                        message.changeSet = bytes
                        try await writer.write(message)
                    },
                    onResponse: { response in
                        var acks: [WirePushAck] = []
                        for try await ack in response.messages { acks.append(ack) }
                        guard let first = acks.first else { throw RPCError(code: .internalError, message: "no ack") }
                        return first
                    })
            }
        }

        /// Asserts that one HQ log line holds all of `parts` (waiting briefly: it is written on
        /// HQ's event loop as the handshake fails).
        func expectLogged(_ parts: String..., sourceLocation: SourceLocation = #_sourceLocation) throws {
            let deadline = ContinuousClock.now + .seconds(3)
            while ContinuousClock.now < deadline {
                if hqDaemon.log.split(separator: "\n").contains(where: { line in parts.allSatisfy { line.contains($0) } }) { return }
                Thread.sleep(forTimeInterval: 0.05)
            }
            Issue.record("no HQ log line with \(parts):\n\(hqDaemon.log.suffix(2000))", sourceLocation: sourceLocation)
        }

        /// Asserts that a call failed with `code` and `reason`, HQ logged it naming `site`, and
        /// HQ's archive is as it was.
        func expectRefused(
            _ error: (any Error)?, code: RPCError.Code, reason: String, site: String?, before: String,
            sourceLocation: SourceLocation = #_sourceLocation
        ) throws {
            let rpc = error as? RPCError
            #expect(rpc?.code == code, "expected \(code), got \(String(describing: error))", sourceLocation: sourceLocation)
            #expect(rpc?.metadata[stringValues: "outpost-reason"].map { $0 }.first == reason, "\(String(describing: rpc))", sourceLocation: sourceLocation)
            if let site {
                let logged = hqDaemon.log.split(separator: "\n").contains { $0.contains("reason=\(reason)") && $0.contains("site=\(site)") }
                #expect(logged, "no HQ log line naming \(site) and \(reason):\n\(hqDaemon.log.suffix(1500))", sourceLocation: sourceLocation)
            }
            #expect(try hqDump == before, "HQ's archive changed", sourceLocation: sourceLocation)
        }
    }

    static func now() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

    /// A new customer written at `origin`, with its clock `ahead` milliseconds in the future.
    static func newCustomer(origin: String, ahead: UInt64 = 0) throws -> Change {
        var random = SystemRandomNumberGenerator()
        let time = Timestamp(milliseconds: now() + ahead, counter: 0)
        return Change(
            table: Schema.customers.id, key: RecordKey.version7(milliseconds: time.milliseconds, using: &random),
            stamp: Stamp(time: time, site: try SiteID(origin)),
            body: .fields([FieldWrite(column: Schema.customers.column("name"), value: .text("伪造"))]))
    }

    static func encode(_ changes: [Change], producer: String) throws -> Data {
        Data(try ChangeSetCodec.encode(ChangeSet(producer: try SiteID(producer), schemaVersion: Schema.version, after: 0, through: 1, changes: changes)))
    }

    @Test func aChangeSetProducedByAnotherSiteIsRefused() async throws {
        let setup = try Setup()
        let before = try setup.hqDump
        var caught: (any Error)?
        do { _ = try await setup.push(try Self.encode([try Self.newCustomer(origin: "BJ01")], producer: "BJ01"), as: "SH01") } catch { caught = error }
        try setup.expectRefused(caught, code: .permissionDenied, reason: "FORGED_ORIGIN", site: "SH01", before: before)
    }

    @Test func aChangeWhoseOriginIsAnotherSiteIsRefused() async throws {
        let setup = try Setup()
        let before = try setup.hqDump
        var caught: (any Error)?
        let changes = [try Self.newCustomer(origin: "SH01"), try Self.newCustomer(origin: "BJ01")]
        do { _ = try await setup.push(try Self.encode(changes, producer: "SH01"), as: "SH01") } catch { caught = error }
        // The whole set is refused: the honest change in it is not stored either.
        try setup.expectRefused(caught, code: .permissionDenied, reason: "FORGED_ORIGIN", site: "SH01", before: before)
    }

    @Test func malformedAndOversizedSetsAreRefused() async throws {
        let setup = try Setup()
        let before = try setup.hqDump
        var caught: (any Error)?
        do { _ = try await setup.push(Data("not a change set".utf8), as: "SH01") } catch { caught = error }
        try setup.expectRefused(caught, code: .invalidArgument, reason: "MALFORMED", site: "SH01", before: before)

        // A valid header whose body was damaged in transit (one flipped byte).
        var damaged = [UInt8](try Self.encode([try Self.newCustomer(origin: "SH01")], producer: "SH01"))
        damaged[damaged.count - 3] ^= 0x40
        caught = nil
        do { _ = try await setup.push(Data(damaged), as: "SH01") } catch { caught = error }
        try setup.expectRefused(caught, code: .invalidArgument, reason: "MALFORMED", site: "SH01", before: before)

        // Over the 1 MiB batch limit (plus headroom): refused before decoding.
        var noise = SplitMix64(seed: 7)
        let big = Data((0..<(2 << 20)).map { _ in UInt8(truncatingIfNeeded: noise.next()) })
        caught = nil
        do { _ = try await setup.push(big, as: "SH01") } catch { caught = error }
        try setup.expectRefused(caught, code: .resourceExhausted, reason: "TOO_LARGE", site: "SH01", before: before)
    }

    @Test func writesOnlyHeadquartersMayMakeAreRefused() async throws {
        let setup = try Setup()
        let before = try setup.hqDump
        let time = Timestamp(milliseconds: Self.now(), counter: 0)
        let site = try SiteID("SH01")
        var random = SystemRandomNumberGenerator()
        // A branch changing the replicated settings (the approval threshold).
        let settings = Change(
            table: Schema.settings.id, key: Schema.settingsKey, stamp: Stamp(time: time, site: site),
            body: .fields([FieldWrite(column: Schema.settings.column("approval_threshold_fen"), value: .integer(1))]))
        // A branch approving a claim above the threshold (default 5,000.00 yuan).
        let t = Schema.claimTransitions
        let approval = Change(
            table: t.id, key: RecordKey.version7(milliseconds: time.milliseconds, using: &random), stamp: Stamp(time: time, site: site),
            body: .append([
                ColumnValue(column: t.column("stage"), value: .integer(Int64(ClaimStage.approved.rawValue))),
                ColumnValue(column: t.column("amount_fen"), value: .integer(9_000_000)),
            ]))
        let ack = try await setup.push(try Self.encode([settings, approval], producer: "SH01"), as: "SH01")
        #expect(ack.refusals.count == 2, "\(ack)")
        #expect(ack.refusals.allSatisfy { $0.reason == .hqOnly }, "\(ack)")
        #expect(ack.refusals.contains { $0.message.contains("headquarters approves above") }, "\(ack)")
        let logged = setup.hqDaemon.log.split(separator: "\n").filter { $0.contains("reason=HQ_ONLY") && $0.contains("origin=SH01") }
        #expect(logged.count == 2, "\(setup.hqDaemon.log.suffix(1500))")
        #expect(try setup.hqDump == before, "HQ's archive changed")
    }

    /// The poison value that once crashed every site: a complaint whose deadline is ~1.5e14
    /// minutes. HQ drops it at the door, naming table, column and record; the rest is taken.
    @Test func aValueOutsideItsDomainIsRefused() async throws {
        let setup = try Setup()
        let before = try setup.hqDump
        let now = Self.now()
        var random = SystemRandomNumberGenerator()
        let complaint = RecordKey.version7(milliseconds: now, using: &random)
        let c = Schema.complaints
        let poison = Change(
            table: c.id, key: complaint, stamp: Stamp(time: Timestamp(milliseconds: now, counter: 0), site: try SiteID("SH01")),
            body: .fields([
                FieldWrite(column: c.column("number"), value: .text("SH01-2026-999999")),
                FieldWrite(column: c.column("resolve_minutes"), value: .integer(150_000_000_000_000)),
            ]))
        let fine = try Self.newCustomer(origin: "SH01")
        let ack = try await setup.push(try Self.encode([poison, fine], producer: "SH01"), as: "SH01")
        #expect(ack.refusals.map(\.reason) == [.invalidValue], "\(ack)")
        #expect(ack.refusals.first?.message.contains("complaints.resolve_minutes of record \(complaint)") == true, "\(ack)")
        #expect(ack.applied == 1, "\(ack)")
        try setup.expectLogged("reason=INVALID_VALUE", "record=\(complaint)")
        #expect(try setup.hqDump != before, "the valid change was not taken")
        #expect(try setup.network.hq.run("complaint", "list").status == 0)
    }

    /// protocols/README.md §2: a message over HQ's transport limit (2 × max_change_set_bytes) is
    /// stopped by the gRPC library, which resets the stream without a status; the connection
    /// stays usable. Between the two limits HQ answers TOO_LARGE itself.
    @Test func aMessageOverTheTransportLimitResetsTheStream() async throws {
        let setup = try Setup()
        let before = try setup.hqDump
        let limits = SyncLimits()
        var huge: (any Error)?
        do { _ = try await setup.push(Data(repeating: 0x4F, count: limits.maximumMessageBytes * 2 + 1), as: "SH01") } catch { huge = error }
        let rpc = try #require(huge as? RPCError, "\(String(describing: huge))")
        #expect(rpc.metadata[stringValues: "outpost-reason"].map { $0 }.isEmpty, "\(rpc)")
        // What protocols/README.md §2 promises a Swift client sees.
        #expect(rpc.code == .unavailable && rpc.message.contains("RST_STREAM") && rpc.message.contains("cancel"), "\(rpc)")
        var large: (any Error)?
        do { _ = try await setup.push(Data(repeating: 0x4F, count: limits.maximumMessageBytes + 1), as: "SH01") } catch { large = error }
        try setup.expectRefused(large, code: .resourceExhausted, reason: "TOO_LARGE", site: "SH01", before: before)
    }

    /// protocols/README.md §5.3: a follow-mode pull the branch half-closes ends with OK.
    @Test func aHalfClosedFollowPullEndsOK() async throws {
        let setup = try Setup()
        let batches = try await setup.withClient(setup.tls("BJ01")) { client in
            try await client.pull(
                requestProducer: { writer in
                    var start = WirePullStart()
                    start.follow = true
                    var message = WirePullRequest()
                    message.start = start
                    try await writer.write(message)
                    // Half-close once the first batch is surely out.
                    try await Task.sleep(for: .milliseconds(500))
                },
                onResponse: { response in
                    var count = 0
                    for try await _ in response.messages { count += 1 }
                    return count
                })
        }
        #expect(batches >= 1)
    }

    @Test func aClockTooFarAheadIsQuarantined() async throws {
        let setup = try Setup()
        let before = try setup.hqDump
        let ahead = try Self.newCustomer(origin: "SH01", ahead: 3_600_000)
        let ack = try await setup.push(try Self.encode([ahead], producer: "SH01"), as: "SH01")
        #expect(ack.refusals.map(\.reason) == [.clockAhead], "\(ack)")
        #expect(ack.refusals.first?.message.contains("SH01") == true, "\(ack)")
        #expect(setup.hqDaemon.log.contains("reason=CLOCK_AHEAD"), "\(setup.hqDaemon.log.suffix(1500))")
        #expect(try setup.hqDump == before, "HQ's archive changed")
        let quarantined = try setup.network.hq.array("changes", "quarantine")
        #expect(quarantined.count == 1 && quarantined.first?["record"] as? String == ahead.key.description, "\(quarantined)")
    }

    @Test func connectionsWithoutAValidCertificateAreRefused() async throws {
        let setup = try Setup()
        let before = try setup.hqDump
        let hello = WireHelloRequest.with {
            $0.protocolVersion = 1
            $0.schemaVersion = 1
        }

        // No client certificate: the TLS handshake fails.
        var caught: (any Error)?
        do { _ = try await setup.withClient(nil) { try await $0.hello(hello) } } catch { caught = error }
        #expect(caught != nil, "a call without a client certificate succeeded")
        #expect(try setup.hqDump == before)
        try setup.expectLogged("PEER_DID_NOT_RETURN_A_CERTIFICATE")

        // A certificate from another authority naming a real branch.
        let other = setup.network.sandbox.path("other-pki")
        try setup.network.hq.ok("pki", "init", "--pki-dir", other)
        try setup.network.hq.ok("pki", "issue", "--pki-dir", other, "--site", "SH01")
        let forged = TLSFiles(ca: other + "/ca.pem", certificate: other + "/sites/SH01/SH01.pem", key: other + "/sites/SH01/SH01-key.pem")
        caught = nil
        do { _ = try await setup.withClient(forged) { try await $0.hello(hello) } } catch { caught = error }
        #expect(caught != nil, "a certificate from another authority was accepted")
        #expect(try setup.hqDump == before)
        try setup.expectLogged("refused a TLS connection", "site=SH01")

        // An expired certificate from the right authority.
        let authority = try CertificateAuthority.load(directory: setup.network.hq.dataDir + "/pki")
        let expired = try authority.issue(
            site: try SiteID("BJ01"), validityDays: 1, now: Date().addingTimeInterval(-10 * 86_400), notBefore: Date().addingTimeInterval(-11 * 86_400))
        caught = nil
        do {
            _ = try await setup.withClient(TLSFiles(ca: expired.caCertificate, certificate: expired.certificate, key: expired.key)) {
                try await $0.hello(hello)
            }
        } catch { caught = error }
        #expect(caught != nil, "an expired certificate was accepted")
        #expect(try setup.hqDump == before)
        try setup.expectLogged("refused a TLS connection", "site=BJ01")

        // A revoked branch: refused by name on its next call, without restarting HQ.
        try setup.network.site("SH01").ok("customer", "add", "--name", "吊销后", "--phone", "13900002222")
        try setup.network.hq.ok("pki", "revoke", "--site", "SH01")
        let sync = try setup.network.site("SH01").run("sync", "--once", "--hq", setup.network.hqAddress)
        #expect(sync.status == 1, "\(sync)")
        #expect(sync.stderr.contains("REVOKED") && sync.stderr.contains("revoked"), "\(sync)")
        #expect(setup.hqDaemon.log.contains("site=SH01") && setup.hqDaemon.log.contains("reason=REVOKED"))
        #expect(try setup.hqDump == before, "HQ's archive changed")
        print("refusal messages:\n  expired certificate: \(caught.map { "\($0)" } ?? "")\n  revoked: \(sync.stderr)")
    }

    /// openssl as an independent TLS peer: a branch certificate gets TLS 1.3; TLS 1.2 is
    /// refused even with a valid certificate; no certificate is refused and logged.
    @Test func opensslSeesMutualTLS13Only() throws {
        let setup = try Setup()
        let tls = setup.tls("SH01")
        func probe(_ extra: [String]) throws -> String {
            let result = try runProcess(
                "/usr/bin/openssl",
                ["s_client", "-connect", setup.network.hqAddress, "-CAfile", tls.ca, "-servername", "localhost", "-alpn", "h2"] + extra, input: "")
            return result.stdout + result.stderr
        }
        let good = try probe(["-tls1_3", "-cert", tls.certificate, "-key", tls.key])
        #expect(good.contains("TLSv1.3") && good.contains("Verify return code: 0 (ok)"), "\(good)")
        #expect(good.contains("ALPN protocol: h2"), "\(good)")

        let old = try probe(["-tls1_2", "-cert", tls.certificate, "-key", tls.key])
        _ = old
        try setup.expectLogged("below TLS 1.3", "site=SH01", "version=tlsv12")

        let anonymous = try probe(["-tls1_3"])
        _ = anonymous
        try setup.expectLogged("refused a TLS connection", "PEER_DID_NOT_RETURN_A_CERTIFICATE")
    }

    /// Revoking a connected branch ends its open streams within seconds, not at its next
    /// connection; its status says why.
    @Test func revocationEndsOpenStreams() throws {
        let setup = try Setup()
        try setup.network.start("SH01")
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let sync = try #require(try setup.network.site("SH01").object("status")["sync"] as? [String: Any])
            if sync["connected"] as? Bool == true { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        try setup.network.hq.ok("pki", "revoke", "--site", "SH01")
        let revokedAt = ContinuousClock.now
        var lastError = ""
        while ContinuousClock.now - revokedAt < .seconds(10) {
            let sync = try #require(try setup.network.site("SH01").object("status")["sync"] as? [String: Any])
            lastError = sync["last_error"] as? String ?? ""
            if lastError.contains("REVOKED") && sync["connected"] as? Bool == false { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        let took = ContinuousClock.now - revokedAt
        print("revocation reached the connected branch after \(took)")
        #expect(lastError.contains("REVOKED"), "SH01's last error: \(lastError)")
        #expect(took < .seconds(5))
        try setup.expectLogged("closed a stream of a revoked certificate", "site=SH01")
    }
}
