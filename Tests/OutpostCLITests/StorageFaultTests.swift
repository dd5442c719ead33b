import Foundation
import OutpostTesting
import Testing

/// The disk fills up or the archive file is damaged: the daemon stops syncing with a clear
/// error, sends nothing damaged, says why in its metrics, readiness and `doctor`, and (for a
/// full disk) resumes by itself once there is room, losing nothing.
@Suite(.serialized)
struct StorageFaultTests {
    /// A branch on a small file system (tmpfs, when this machine lets the test mount one;
    /// otherwise a file-size limit, RLIMIT_FSIZE) pulls more than fits.
    @Test func aFullDiskPausesSyncingAndResumesWhenSpaceIsFreed() throws {
        let network = try Network(branches: ["SH01"])
        try network.start("HQ")
        let branch = network.site("SH01")
        // The branch has bootstrapped (from an empty headquarters), so it accepts local writes
        // and what fills its disk is the log it follows, not a snapshot.
        try branch.ok("sync", "--once", "--hq", network.hqAddress)
        // Headquarters holds more of the branch's customers than the branch's disk can take.
        let rows = 12_000
        let csv = network.sandbox.path("many.csv")
        var text = "name,phone,city,home_branch\n"
        for i in 0..<rows { text += "满盘客户\(i),1370\(String(format: "%07d", i)),上海,SH01\n" }
        try text.write(toFile: csv, atomically: true, encoding: .utf8)
        try network.hq.ok("import", "customers", csv)

        let disk = try SmallDisk(directory: branch.dataDir, megabytes: 4)
        defer { disk.release() }
        let daemon = try ServeProcess(
            site: branch, arguments: ["--hq", network.hqAddress], logPath: network.sandbox.path("SH01.log"), wrapper: disk.wrapper)
        defer { daemon.stop() }
        try daemon.waitReady()
        let port = try #require(OperationsTests.metricsPort(daemon))

        let clock = ContinuousClock.now
        let full = try OperationsTests.waitMetrics(port: port, timeout: .seconds(60)) {
            ($0["outpost_storage_fault{reason=\"disk_full\"}"] ?? 0) == 1 || ($0["outpost_storage_fault{reason=\"io\"}"] ?? 0) == 1
        }
        print("full disk: detected after \(ContinuousClock.now - clock)")
        #expect(full["outpost_storage_fault{reason=\"corrupt\"}"] == 0, "\(full)")
        #expect(daemon.log.contains("stopped syncing"), "\(daemon.log.suffix(2000))")
        #expect(try HTTP.get(port: port, path: "/readyz").status == 503)
        let doctor = try branch.run("doctor", "--quick", "--hq", network.hqAddress)
        #expect(doctor.status == 1, "\(doctor)")
        // The daemon's own word when it could write it; the full file system in any case.
        #expect(
            (doctor.stdout.contains("FAIL  daemon") && doctor.stdout.contains("syncing stopped")) || doctor.stdout.contains("FAIL  disk"),
            "\(doctor.stdout)")
        // A local write on the full disk fails with a plain message and harms nothing.
        // A filler takes what room is left, and the write is larger than the space the WAL
        // already holds from the daemon's rolled-back pull, so it must meet the full disk.
        if disk.isFileSystem {
            let filler = branch.dataDir + "/filler"
            _ = try runProcess("/bin/dd", ["if=/dev/zero", "of=" + filler, "bs=64k"])
            let local = network.sandbox.path("local.csv")
            var text = "name,phone\n"
            for i in 0..<5_000 { text += "本地客户\(i),1390\(String(format: "%07d", i))\n" }
            try text.write(toFile: local, atomically: true, encoding: .utf8)
            let write = try branch.run("import", "customers", local)
            #expect(write.status != 0 && write.stderr.contains("the disk is full"), "\(write)")
            try FileManager.default.removeItem(atPath: filler)
        }

        // Space comes back: syncing resumes without a restart and nothing is lost.
        try disk.grow(megabytes: 400)
        if !disk.isFileSystem {
            daemon.signal(SIGTERM)
            #expect(daemon.waitExit() == 0, "\(daemon.log.suffix(2000))")
            try network.start("SH01")
        }
        let grown = ContinuousClock.now
        #expect(try network.waitConverged(timeout: .seconds(120)) == nil, "\(network.logs())")
        print("full disk: converged \(ContinuousClock.now - grown) after space came back")
        for line in daemon.log.split(separator: "\n") where line.contains("stopped syncing") || line.contains("room again") {
            print("full disk: \(line)")
        }
        let healthy = try branch.run("doctor", "--quick", "--hq", network.hqAddress)
        #expect(healthy.stdout.contains("OK    archive"), "\(healthy.stdout)")
    }

    /// A damaged page in the branch's archive: the daemon refuses to sync at start, headquarters
    /// receives nothing from it, and the metrics and `doctor` say what to do.
    @Test func aDamagedArchiveIsNeverSent() throws {
        let network = try Network(branches: ["SH01"])
        try network.start("HQ")
        let branch = network.site("SH01")
        let csv = network.sandbox.path("some.csv")
        var text = "name,phone\n"
        for i in 0..<2_000 { text += "损坏客户\(i),1360\(String(format: "%07d", i))\n" }
        try text.write(toFile: csv, atomically: true, encoding: .utf8)
        try branch.ok("import", "customers", csv)
        #expect(try branch.run("status").status == 0)  // opens and closes: the WAL is checkpointed
        let before = try network.hq.dump()

        // Damage pages in the middle of the file (the header and schema pages stay intact).
        let path = branch.dataDir + "/archive.sqlite"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let pages = bytes.count / 4096
        try #require(pages > 40, "\(pages) pages")
        for page in stride(from: pages / 3, to: pages / 3 + 6, by: 1) {
            for offset in stride(from: 100, to: 4000, by: 3) { bytes[page * 4096 + offset] ^= 0xA5 }
        }
        try bytes.write(to: URL(fileURLWithPath: path))

        let daemon = try ServeProcess(site: branch, arguments: ["--hq", network.hqAddress], logPath: network.sandbox.path("SH01.log"))
        defer { daemon.stop() }
        try daemon.waitReady()
        let port = try #require(OperationsTests.metricsPort(daemon))
        let metrics = try OperationsTests.waitMetrics(port: port) { $0["outpost_storage_fault{reason=\"corrupt\"}"] == 1 }
        #expect(metrics["outpost_connected"] == 0, "\(metrics)")
        #expect(daemon.log.contains("failed its integrity check"), "\(daemon.log.suffix(2000))")
        #expect(try HTTP.get(port: port, path: "/readyz").status == 503)
        Thread.sleep(forTimeInterval: 2)
        #expect(try network.hq.dump() == before, "headquarters received nothing from the damaged archive")

        let doctor = try branch.run("doctor", "--hq", network.hqAddress)
        #expect(doctor.status == 1)
        #expect(doctor.stdout.contains("FAIL  archive") && doctor.stdout.contains("outpost restore"), "\(doctor.stdout)")
    }
}

/// A data directory on a small file system: a tmpfs mounted over it when the test may mount
/// (root with CAP_SYS_ADMIN), else a file-size limit on the daemon (`prlimit --fsize`).
final class SmallDisk {
    let directory: String
    let isFileSystem: Bool
    private var limitBytes: Int
    private var mounted: Bool

    init(directory: String, megabytes: Int) throws {
        self.directory = directory
        limitBytes = megabytes << 20
        // The site's files move onto the new file system.
        let saved = directory + ".saved"
        try FileManager.default.moveItem(atPath: directory, toPath: saved)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        let mount = try runProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m,mode=0700", "tmpfs", directory])
        mounted = mount.status == 0
        isFileSystem = mounted
        let copy = try runProcess("/bin/cp", ["-a", saved + "/.", directory])
        try #require(copy.status == 0, "cp: \(copy.stderr)")
        try FileManager.default.removeItem(atPath: saved)
        if !mounted {
            // The archive may grow by the limit's headroom only.
            let size = ((try? FileManager.default.attributesOfItem(atPath: directory + "/archive.sqlite")[.size]) as? NSNumber)?.intValue ?? 0
            limitBytes = size + (256 << 10)
            print("SmallDisk: tmpfs not mountable here (\(mount.stderr.prefix(80))); using RLIMIT_FSIZE=\(limitBytes)")
        }
    }

    /// The command prefix for the daemon: a file-size limit when there is no small file system.
    var wrapper: [String] { isFileSystem ? [] : ["/usr/bin/prlimit", "--fsize=\(limitBytes)", "--"] }

    func grow(megabytes: Int) throws {
        if isFileSystem {
            let remount = try runProcess("/bin/mount", ["-o", "remount,size=\(megabytes)m", directory])
            try #require(remount.status == 0, "remount: \(remount.stderr)")
        }
    }

    func release() {
        guard mounted else { return }
        // Keep the files for the rest of the test's teardown: copy out, then unmount.
        let saved = directory + ".saved"
        _ = try? runProcess("/bin/cp", ["-a", directory, saved])
        _ = try? runProcess("/bin/umount", ["-l", directory])
        mounted = false
    }
}
