import ArgumentParser
import CustomerArchive
import Foundation
import Replication

/// `outpost import customers FILE.csv`.
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Bring customer files in from a spreadsheet (CSV).",
        discussion: """
            Example:
              outpost import customers customers.csv --dry-run
            """,
        subcommands: [Customers.self])

    struct Customers: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import customers from a CSV file, checking every row first.",
            discussion: """
                The first row names the columns, in English or Chinese, in any order: name \
                (客户名称, required), kind (类型), contact_person (联系人), phone (电话/手机), \
                email (邮箱), address (地址), region (区域), city (城市), industry (行业), \
                home_branch (网点), account_manager (客户经理), key_account (大客户), shipments, \
                revenue (营业额), profit (利润), wallet_share, credit_rating (信用等级), \
                overdue_payments, customer_since (YYYY-MM-DD), referral_source (来源), notes \
                (备注). A file from 'outpost export customers' imports as it is (its number, id \
                and state columns are skipped: each customer gets a new number here).

                The file may be UTF-8 or GB18030/GBK (as spreadsheets in China save it); the \
                encoding is detected unless --encoding says. Phones may be typed any way (+86, \
                spaces, dashes, full-width digits) and are stored as national digits. Amounts \
                are yuan (1,250,000.00 and ¥ are fine).

                Every row is checked before anything is written. Bad rows are listed by line \
                number with what is wrong (never the cell's content); then nothing is imported \
                unless --skip-bad (re-running after a partial import would add the good rows \
                twice, so the default is all or nothing). --dry-run checks and imports nothing.

                Examples:
                  outpost import customers customers.csv --dry-run
                  outpost import customers 客户.csv
                """)

        @Argument(help: ArgumentHelp("The CSV file.", valueName: "file"))
        var file: String

        @Flag(name: .customLong("dry-run"), help: "Check every row and report; import nothing.")
        var dryRun = false

        @Flag(name: .customLong("skip-bad"), help: "Import the good rows even when some are bad (the bad ones are listed).")
        var skipBad = false

        @Option(help: ArgumentHelp("utf8 or gb18030 (default: detect).", valueName: "encoding"))
        var encoding: String?

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let forced = try encoding.map {
                try Parse.choice($0, option: "--encoding", [("utf8", TextDecoding.Encoding.utf8), ("utf-8", .utf8), ("gb18030", .gb18030), ("gbk", .gb18030)])
            }
            let archive = try storage.openArchive()
            guard let data = FileManager.default.contents(atPath: file) else {
                throw CLIError("cannot read \(file): check the path and permissions")
            }
            let (bytes, detected) = try TextDecoding.utf8([UInt8](data), encoding: forced)
            var reader = CSVReader(utf8: bytes)
            guard let header = try Self.next(&reader) else { throw CLIError("\(file) is empty: the first row must name the columns") }
            let mapping = try CustomerImport.mapping(header: header.fields)
            let sites: (String) -> String? = { try? SiteID($0.uppercased()).code }

            // Pass 1: check every row.
            let checking = ProgressMeter(label: "checking")
            var bad: [CustomerImport.BadRow] = []
            var good = 0
            while let row = try Self.next(&reader) {
                do {
                    _ = try CustomerImport.fields(row, mapping, sites: sites)
                    good += 1
                } catch {
                    bad.append(error.row)
                }
                if (good + bad.count) % 1000 == 0 {
                    checking.show(.init(fraction: Double(reader.offset) / Double(max(1, bytes.count)), counts: "\(good + bad.count) rows checked"))
                }
            }
            checking.finish()
            let willImport = !dryRun && (bad.isEmpty || skipBad)

            // Pass 2: import in batches.
            var imported = 0
            if willImport && good > 0 {
                let meter = ProgressMeter(label: "importing")
                var reader = CSVReader(utf8: bytes)
                _ = try Self.next(&reader)
                var batch: [[String: Value]] = []
                func flush() throws {
                    try archive.importCustomers(batch)
                    imported += batch.count
                    batch.removeAll(keepingCapacity: true)
                    let rate = Int(Double(imported) / meter.elapsed)
                    meter.show(.init(fraction: Double(imported) / Double(good), counts: "\(imported) of \(good) customers  \(rate)/s"))
                }
                while let row = try Self.next(&reader) {
                    guard let fields = try? CustomerImport.fields(row, mapping, sites: sites) else { continue }
                    batch.append(fields)
                    if batch.count == 10_000 { try flush() }
                }
                if !batch.isEmpty { try flush() }
                meter.finish()
                // Index them for search now, not at the first search.
                let indexing = ProgressMeter(label: "indexing")
                try archive.catchUpSearchIndex { n in
                    indexing.show(.init(fraction: Double(n) / Double(max(1, imported)), counts: "\(n) customers indexed for search"))
                }
                indexing.finish()
            }
            report(rows: good + bad.count, good: good, bad: bad, imported: imported, encoding: detected, skipped: mapping.skipped)
            if !bad.isEmpty && !skipBad { throw ExitCode.failure }
        }

        static func next(_ reader: inout CSVReader) throws -> CSVReader.Row? {
            do {
                return try reader.next()
            } catch .unterminatedQuote(let line) {
                throw CLIError("line \(line): a quoted field is never closed; nothing imported")
            } catch .textAfterQuote(let line) {
                throw CLIError("line \(line): text follows a closing quote (write \"\" for a quote inside a quoted field); nothing imported")
            }
        }

        func report(rows: Int, good: Int, bad: [CustomerImport.BadRow], imported: Int, encoding: TextDecoding.Encoding, skipped: [String]) {
            if output.json {
                return Output.json(
                    .object([
                        "rows": .int(Int64(rows)), "valid": .int(Int64(good)), "imported": .int(Int64(imported)),
                        "encoding": .string(encoding.rawValue), "dry_run": .bool(dryRun),
                        "bad": .array(bad.map { .object(["line": .int(Int64($0.line)), "error": .string($0.message)]) }),
                    ]))
            }
            let shown = 100
            for b in bad.prefix(shown) { Output.error("line \(b.line): \(b.message)") }
            if bad.count > shown { Output.error("… and \(bad.count - shown) more bad rows (--json lists them all)") }
            var lines: [(String, String?)] = [
                ("file", "\(rows) rows, \(encoding.rawValue)"),
                ("valid", String(good)),
                ("bad", String(bad.count)),
                ("imported", String(imported)),
            ]
            if !skipped.isEmpty { lines.append(("not imported", "columns \(skipped.joined(separator: ", ")) (new numbers are given here)")) }
            Output.fields(lines)
            if dryRun {
                Output.write("dry run: nothing imported\n")
            } else if !bad.isEmpty && !skipBad {
                Output.write("nothing imported: fix the rows listed above, or give --skip-bad to import the \(good) valid rows\n")
            }
        }
    }
}

/// `outpost export customers`.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write customer files out as CSV or JSON lines.",
        discussion: """
            Example:
              outpost export customers --csv --out customers.csv
            """,
        subcommands: [Customers.self])

    struct Customers: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Export customers as CSV (default) or JSON lines.",
            discussion: """
                CSV has the columns 'outpost import customers' reads (plus number, id and state), \
                UTF-8 with CRLF line ends; JSON lines hold one customer object per line. At a \
                branch only its own customers unless --all-branches; archived customers only \
                with --include-archived. Deleted and merged customers are left out.

                Examples:
                  outpost export customers --csv --out customers.csv
                  outpost export customers --jsonl | gzip > customers.jsonl.gz
                """)

        @Flag(help: "CSV (the default).")
        var csv = false

        @Flag(help: "JSON lines: one object per customer.")
        var jsonl = false

        @Option(help: ArgumentHelp("Write to this file (default: standard output).", valueName: "file"))
        var out: String?

        @Option(help: ArgumentHelp("Only customers homed at this branch.", valueName: "code"))
        var branch: String?

        @Flag(name: .customLong("all-branches"), help: "At a branch, every branch's customers (the archive holds the whole base).")
        var allBranches = false

        @Flag(name: .customLong("include-archived"), help: "Archived customers too.")
        var includeArchived = false

        @OptionGroup var storage: DataDirOptions

        func validate() throws {
            if csv && jsonl { throw ValidationError("choose one of --csv and --jsonl") }
        }

        static let columns: [(header: String, field: String)] = [
            ("number", "number"), ("id", ""), ("state", ""), ("name", "name"), ("kind", "kind"), ("contact_person", "contact_person"),
            ("phone", "phone"), ("email", "email"), ("address", "address"), ("region", "region"), ("city", "city"), ("industry", "industry"),
            ("home_branch", "home_branch"), ("account_manager", "account_manager"), ("key_account", "key_account"), ("shipments", "shipments"),
            ("revenue", "revenue_fen"), ("profit", "profit_fen"), ("wallet_share", "wallet_share_pct"), ("credit_rating", "credit_rating"),
            ("overdue_payments", "overdue_payments"), ("customer_since", "customer_since"), ("referral_source", "referral_source"),
            ("notes", "notes"),
        ]

        func run() throws {
            let archive = try storage.openArchive()
            let scope: String? =
                try branch.map { try Parse.site($0, option: "--branch").code } ?? (archive.role == .branch && !allBranches ? archive.site.code : nil)
            let sink = try OutputSink(path: out)
            if !jsonl { sink.write(CSV.line(Self.columns.map(\.header))) }
            var count = 0
            try archive.forEachCustomer(branch: scope, includeArchived: includeArchived) { r in
                count += 1
                if jsonl {
                    sink.write(r.json.rendered() + "\n")
                    return
                }
                sink.write(
                    CSV.line(
                        Self.columns.map { column in
                            switch column.header {
                            case "id": return r.id.description
                            case "state": return Output.state(r)
                            case "revenue", "profit": return Output.money(r[column.field]) ?? ""
                            case "key_account": return Output.yesNo(r[column.field]) ?? ""
                            default: return Output.text(r[column.field]) ?? ""
                            }
                        }))
            }
            try sink.close()
            if out != nil { Output.error("exported \(Output.pluralize(count, "customer")) to \(out!)") }
        }
    }
}

/// Buffered output to stdout or to a file that appears only when complete (written to a
/// temporary name, then renamed).
final class OutputSink {
    private let handle: FileHandle
    private let path: String?
    private let temporary: String?
    private var buffer = Data()

    init(path: String?) throws {
        self.path = path
        guard let path else {
            handle = FileHandle.standardOutput
            temporary = nil
            return
        }
        let temp = path + ".partial"
        guard FileManager.default.createFile(atPath: temp, contents: nil), let h = FileHandle(forWritingAtPath: temp) else {
            throw CLIError("cannot write \(path): check that the directory exists and is writable")
        }
        handle = h
        temporary = temp
    }

    func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 20 { flush() }
    }

    private func flush() {
        handle.write(buffer)
        buffer.removeAll(keepingCapacity: true)
    }

    func close() throws {
        flush()
        guard let path, let temporary else { return }
        try handle.synchronize()
        try handle.close()
        if rename(temporary, path) != 0 { throw CLIError("cannot move the export into place at \(path)") }
    }
}
