import Foundation
import OutpostTesting
import Testing

/// The proof that every site converges: many seeded runs of 1 HQ + 5 branches (one joining late) with concurrent
/// edits, deletes, erasures, workflow steps, payments, monthly figures, merges, rule changes at
/// HQ and faulty exchanges; derived reports and search must agree too.
///
/// `OUTPOST_SIM_SEEDS=N` runs N seeds (default 1,000), `OUTPOST_SIM_FIRST_SEED=S` starts at S,
/// and `OUTPOST_SIM_SEED=S` replays one seed.
@Suite("Simulation")
struct SimulationTests {
    @Test("HQ and four branches converge under a seeded schedule of edits and faulty exchanges")
    func converge() throws {
        let env = ProcessInfo.processInfo.environment
        let seeds: ClosedRange<UInt64>
        if let one = env["OUTPOST_SIM_SEED"].flatMap(UInt64.init) {
            seeds = one...one
        } else {
            let first = env["OUTPOST_SIM_FIRST_SEED"].flatMap(UInt64.init) ?? 1
            let count = env["OUTPOST_SIM_SEEDS"].flatMap(UInt64.init) ?? 1_000
            seeds = first...(first + count - 1)
        }
        let steps = env["OUTPOST_SIM_STEPS"].flatMap(Int.init) ?? 60
        var totals = Simulation.Summary()
        let started = Date()
        var failures: [String] = []
        for seed in seeds {
            do {
                let s = try Simulation(seed: seed, steps: steps).run()
                totals += s
            } catch {
                failures.append(error.description)
                if failures.count >= 3 { break }
            }
        }
        print(
            "simulation: \(seeds.count) seeds in \(String(format: "%.1f", Date().timeIntervalSince(started))) s — \(totals.operations) operations, \(totals.writes) field writes, \(totals.exchanges) exchanges, \(totals.droppedBatches) dropped batches, \(totals.crashes) crashes, \(totals.conflicts) conflicts journaled, \(totals.erasures) erasures, \(totals.merges) merges, \(totals.restores) restores from backups, \(totals.hostileWrites) hostile writes (\(totals.refusedAtDoor) refused at HQ's door, \(totals.setAside) set aside), \(totals.compactedChanges) changes compacted away at branches, \(totals.hqCompactedWrites) superseded writes and \(totals.hqCompactedMoves) moves compacted away at HQ (\(totals.hqPackedRows) rows packing a record's surviving writes), \(totals.snapshotParts) snapshot parts applied at first contact (\(totals.snapshotPartsLost) lost on the line, \(totals.pushesDuringBootstrap) pushes acknowledged between a part's read and its apply); \(totals.filesApplied) sets from HQ carried as scoped files (\(totals.filesOverlapping) overlapping the cursor, \(totals.filesSkipped) behind it and skipped); scope: \(totals.rehomings) re-homings, \(totals.assignments) assignments given or withdrawn, \(totals.fetches) fetches, \(totals.lapsedReasons) lapsed reasons, \(totals.evictions) evictions (\(totals.evictionsWaited) more waited for HQ to acknowledge the branch's own changes), \(totals.refusedNotHome) writes refused for write authority and reset at their branch"
        )
        // The door's paths must have run, or the simulation proves nothing about them.
        if seeds.count >= 200 && failures.isEmpty {
            #expect(totals.refusedAtDoor > 0 && totals.setAside > 0, "no hostile write reached HQ's door")
            #expect(totals.rehomings > 0 && totals.evictions > 0, "no customer moved out of a branch's scope")
            #expect(totals.snapshotParts > 0 && totals.snapshotPartsLost > 0, "no branch bootstrapped from a snapshot across a broken line")
            #expect(totals.hqCompactedWrites > 0 && totals.hqCompactedMoves > 0, "HQ never compacted anything away, so no branch resumed across it")
            #expect(totals.hqPackedRows > 0, "HQ's compaction never packed a record's surviving writes, so no branch resumed across a packed row")
            #expect(totals.pushesDuringBootstrap > 0, "no push was acknowledged while a branch bootstrapped")
            #expect(totals.filesApplied > 0 && totals.filesOverlapping > 0 && totals.filesSkipped > 0, "no branch was fed by files from older cursors")
            #expect(totals.refusedNotHome > 0, "no branch wrote a customer HQ had re-homed away, so no refusal was answered in a stream")
        }
        for f in failures {
            print(f)
            Issue.record(Comment(rawValue: f))
        }
    }
}
