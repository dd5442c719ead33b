import CustomerArchive
import Foundation
import Replication
import SyncService
import Testing

/// Change-set files carry their origin's signature once sites have certificates: a site with
/// a CA applies only files signed by a site of its authority whose certificate names the
/// file's producer, unchanged since signing, not revoked.
struct SignedFileTests {
    @Test func exportedFilesAreSignedAndCheckedOnApply() throws {
        let sandbox = try Sandbox()
        let hq = try sandbox.initializedSite("HQ", role: "hq")
        try hq.ok("pki", "init")
        let sh = try sandbox.initializedSite("SH01")
        let bj = try sandbox.initializedSite("BJ01")
        for (code, site) in [("SH01", sh), ("BJ01", bj)] {
            try hq.ok("pki", "issue", "--site", code, "--install-to", site.dataDir + "/tls")
        }
        try sh.ok("customer", "add", "--name", "签名客户", "--phone", "13800009999")
        let good = sandbox.path("sh01.opcs")
        let export = try sh.ok("changes", "export", "--for", "HQ", "--out", good)
        #expect(export.stdout.contains("signed by: SH01"), "\(export)")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
        #expect(SignedChangeSet.isSigned(bytes))

        // A change after signing: one byte of the change set flipped.
        var tampered = bytes
        tampered[tampered.count - 5] ^= 0x01
        let tamperedPath = sandbox.path("tampered.opcs")
        try Data(tampered).write(to: URL(fileURLWithPath: tamperedPath))
        #expect(try hq.refused("changes", "apply", tamperedPath).contains("changed after signing"))

        // SH01's changes signed with BJ01's key: a forged origin.
        let ca = try String(contentsOfFile: hq.dataDir + "/pki/ca.pem", encoding: .utf8)
        let payload = try SignedChangeSet.open(bytes, trusting: ca).payload
        let forged = try SignedChangeSet.sign(
            payload, certificatePEM: try String(contentsOfFile: bj.dataDir + "/tls/BJ01.pem", encoding: .utf8),
            keyPEM: try String(contentsOfFile: bj.dataDir + "/tls/BJ01-key.pem", encoding: .utf8))
        let forgedPath = sandbox.path("forged.opcs")
        try Data(forged).write(to: URL(fileURLWithPath: forgedPath))
        #expect(try hq.refused("changes", "apply", forgedPath).contains("signed by BJ01 but claims to come from SH01"))

        // Signed with a certificate for SH01 from another authority.
        let other = sandbox.path("other-pki")
        try hq.ok("pki", "init", "--pki-dir", other)
        try hq.ok("pki", "issue", "--pki-dir", other, "--site", "SH01")
        let foreign = try SignedChangeSet.sign(
            payload, certificatePEM: try String(contentsOfFile: other + "/sites/SH01/SH01.pem", encoding: .utf8),
            keyPEM: try String(contentsOfFile: other + "/sites/SH01/SH01-key.pem", encoding: .utf8))
        let foreignPath = sandbox.path("foreign.opcs")
        try Data(foreign).write(to: URL(fileURLWithPath: foreignPath))
        #expect(try hq.refused("changes", "apply", foreignPath).contains("did not issue"))

        // An unsigned file (its payload alone) is never applied at a site with a certificate:
        // it could claim any producer.
        let unsignedPath = sandbox.path("unsigned.opcs")
        try Data(payload).write(to: URL(fileURLWithPath: unsignedPath))
        #expect(try hq.refused("changes", "apply", unsignedPath).contains("not signed"))

        // SH01's own signature on a set holding a settings change that claims HQ's origin: the
        // file that once raised HQ's approval threshold. HQ's door refuses it like the line.
        let sh01Key = try String(contentsOfFile: sh.dataDir + "/tls/SH01-key.pem", encoding: .utf8)
        let sh01Certificate = try String(contentsOfFile: sh.dataDir + "/tls/SH01.pem", encoding: .utf8)
        let threshold = Change(
            table: Schema.settings.id, key: Schema.settingsKey,
            stamp: Stamp(time: Timestamp(milliseconds: UInt64(Date().timeIntervalSince1970 * 1000), counter: 0), site: .headquarters),
            body: .fields([FieldWrite(column: Schema.settings.column("approval_threshold_fen"), value: .integer(99_999_999))]))
        var set = try ChangeSetCodec.decode(payload)
        set.changes.append(threshold)
        let settingsPath = sandbox.path("settings.opcs")
        try Data(try SignedChangeSet.sign(try ChangeSetCodec.encode(set), certificatePEM: sh01Certificate, keyPEM: sh01Key))
            .write(to: URL(fileURLWithPath: settingsPath))
        #expect(try hq.refused("changes", "apply", settingsPath).contains("claims origin HQ"))
        // Branches take headquarters' files only, never each other's.
        #expect(try bj.refused("changes", "apply", good).contains("headquarters"))

        // The genuine file applies, and BJ01 checks HQ's signature in turn.
        try hq.ok("changes", "apply", good)
        let fromHQ = sandbox.path("hq.opcs")
        #expect(try hq.ok("changes", "export", "--for", "BJ01", "--out", fromHQ).stdout.contains("signed by: HQ"))
        try bj.ok("changes", "apply", fromHQ)
        // HQ's file for BJ01 carries BJ01's scope, which holds none of SH01's customers.
        #expect(try bj.dump() == hq.scopeDump("BJ01"))
        #expect(try bj.array("customer", "list").isEmpty)
        // BJ01's file for HQ carries its own changes only, so HQ's door takes it. A file for
        // another branch is refused at once.
        try bj.ok("customer", "add", "--name", "北京客户", "--phone", "13900007777")
        let fromBJ = sandbox.path("bj01.opcs")
        let exported = try bj.ok("changes", "export", "--for", "HQ", "--out", fromBJ).stdout
        #expect(exported.split(separator: "\n").contains { $0.hasPrefix("changes:") && $0.hasSuffix(" 1") }, "\(exported)")
        try hq.ok("changes", "apply", fromBJ)
        // A stick carrying both ways: BJ01's own file among HQ's is skipped with a note, the rest
        // applies; its own file alone is an error.
        let both = try bj.ok("changes", "apply", fromBJ, fromHQ)
        #expect(both.stderr.contains("bj01.opcs: exported by this site (BJ01); skipped"), "\(both)")
        #expect(try bj.refused("changes", "apply", fromBJ).contains("exported by this site (BJ01); nothing to apply"))
        #expect(try bj.refused("changes", "export", "--for", "SH01", "--out", sandbox.path("x.opcs")).contains("headquarters"))

        // Once SH01 is revoked, HQ refuses its files too.
        try sh.ok("customer", "add", "--name", "吊销后", "--phone", "13800008888")
        let late = sandbox.path("late.opcs")
        try sh.ok("changes", "export", "--for", "HQ", "--out", late)
        try hq.ok("pki", "revoke", "--site", "SH01")
        #expect(try hq.refused("changes", "apply", late).contains("revoked"))
    }
}
