import Replication
import Testing

@Suite("Hybrid logical clock")
struct ClockTests {
    @Test("readings increase even when the wall clock stands still or goes back")
    func monotonic() {
        var c = HybridLogicalClock()
        var last = Timestamp.zero
        for wall: UInt64 in [1000, 1000, 999, 500, 1001, 1001] {
            let t = c.tick(wallMilliseconds: wall)
            #expect(t > last)
            last = t
        }
    }

    @Test("a remote reading moves the clock past it")
    func observe() {
        var c = HybridLogicalClock()
        c.observe(Timestamp(milliseconds: 5000, counter: 7))
        #expect(c.tick(wallMilliseconds: 1000) > Timestamp(milliseconds: 5000, counter: 7))
    }

    @Test("a reading too far ahead is refused with the site and the skew named")
    func drift() throws {
        let c = HybridLogicalClock(maximumDrift: 60_000)
        let site = try SiteID("SH01")
        #expect(throws: Never.self) { try c.check(Timestamp(milliseconds: 1_059_000, counter: 0), from: site, wallMilliseconds: 1_000_000) }
        do {
            try c.check(Timestamp(milliseconds: 1_000_000 + 3_600_000, counter: 0), from: site, wallMilliseconds: 1_000_000)
            Issue.record("accepted a reading an hour ahead")
        } catch {
            #expect(error.code == .clockDrift)
            #expect(error.message.contains("SH01"))
            #expect(error.message.contains("1h 0m"))
        }
    }

    @Test("stamps order by time, then by site code")
    func stampOrder() {
        let t = Timestamp(milliseconds: 1, counter: 0)
        #expect(Stamp(time: t, site: SiteID(unchecked: "BJ01")) < Stamp(time: t, site: SiteID(unchecked: "SH01")))
        #expect(Stamp(time: t, site: SiteID(unchecked: "ZZ")) < Stamp(time: Timestamp(milliseconds: 1, counter: 1), site: SiteID(unchecked: "AA")))
    }

    @Test("site codes are checked", arguments: ["", "a", "sh01", "1ABC", "SH 01", "ABCDEFGHIJKLMNOPQ", "上海"])
    func badSiteCodes(code: String) {
        #expect(throws: ReplicationError.self) { try SiteID(code) }
    }
}
