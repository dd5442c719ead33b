import ArgumentParser
import CustomerArchive
import Foundation
import Replication
import SyncService

/// `outpost customer …`: customer files.
struct CustomerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "customer",
        abstract: "Add, change, find, archive and erase customer files.",
        discussion: """
            A customer is referred to (REF) by its number, e.g. SH01-C-000001, or its id (a UUID).

            Examples:
              outpost customer add --name "上海物流有限公司" --phone "+86 138 0013 8000"
              outpost customer search 物流
              outpost customer show SH01-C-000001
            """,
        subcommands: [
            Add.self, Update.self, Show.self, List.self, Search.self, Fetch.self, Figures.self, Merge.self, ArchiveFile.self, Erase.self, Delete.self,
            Restore.self,
        ])

    // MARK: merge

    struct Merge: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Merge a duplicate customer into the one to keep (at headquarters).",
            discussion: """
                The duplicate points to the kept customer from then on, on every site once \
                synced: its contacts, complaints, claims and figures count under the kept \
                customer, and so does anything a branch records for the duplicate while offline. \
                Nothing of the duplicate is deleted; fields the kept customer lacks are filled \
                from it. 'outpost duplicates' finds candidates.

                Example:
                  outpost customer merge SH01-C-000017 BJ01-C-000342
                """)

        @Argument(help: ArgumentHelp("The customer to keep (number or id).", valueName: "keep"))
        var keep: String

        @Argument(help: ArgumentHelp("The duplicate to merge into it.", valueName: "duplicate"))
        var duplicate: String

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            let kept = try archive.mergeCustomers(keep: keep, duplicate: duplicate)
            if output.json { return Output.json(kept.json) }
            Output.write("merged \(duplicate) into \(CustomerOutput.label(kept)); branches follow with their next sync\n")
        }
    }

    // MARK: figures

    struct Figures: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show or record a customer's business per month (shipments, revenue, profit).",
            discussion: """
                The value reports ('outpost report abc|quadrants|value') rank and score customers \
                by these monthly figures. Recording a month again replaces it (on every site: one \
                record per customer and month). Profit may be negative.

                Examples:
                  outpost customer figures SH01-C-000001
                  outpost customer figures SH01-C-000001 --month 2026-10 --shipments 42 \\
                    --revenue 12600.00 --profit 1890.00
                """)

        @Argument(help: ArgumentHelp("The customer's number or id.", valueName: "ref"))
        var ref: String

        @Option(help: ArgumentHelp("The month, YYYY-MM.", valueName: "month"))
        var month: String?

        @Option(help: ArgumentHelp("Shipments in the month.", valueName: "n"))
        var shipments: Int64?

        @Option(help: ArgumentHelp("Revenue in yuan.", valueName: "yuan"))
        var revenue: String?

        @Option(help: ArgumentHelp("Profit contribution in yuan (may be negative).", valueName: "yuan"))
        var profit: String?

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            if month != nil || shipments != nil || revenue != nil || profit != nil {
                guard let monthText = month, let shipments, let revenue, let profit else {
                    throw CLIError("to record a month give --month, --shipments, --revenue and --profit")
                }
                guard let month = Month(monthText) else { throw CLIError("--month: '\(monthText.prefix(24))' is not a month YYYY-MM") }
                guard shipments >= 0 else { throw CLIError("--shipments must not be negative") }
                try archive.recordFigures(
                    customer: ref, month: month, shipments: shipments, revenueFen: try Parse.amount(revenue, option: "--revenue"),
                    profitFen: try Parse.amount(profit, option: "--profit", allowNegative: true))
            }
            let rows = try archive.figures(customer: ref)
            if output.json { return Output.json(.array(rows.map(\.json))) }
            if rows.isEmpty { return Output.write("no figures recorded\n") }
            Output.table(
                ["MONTH", "SHIPMENTS", "REVENUE", "PROFIT"],
                rows.map {
                    [
                        Output.text($0["month"]) ?? "-", Output.text($0["shipments"]) ?? "0", Output.money($0["revenue_fen"]) ?? "-",
                        Output.money($0["profit_fen"]) ?? "-",
                    ]
                })
        }
    }

    // MARK: add

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a customer file.",
            discussion: """
                Only --name is required. The new file is numbered SITE-C-NNNNNN and homed at this \
                site unless --home-branch says otherwise. Phone numbers may be typed as at the \
                counter (full-width digits, spaces, dashes, +86); they are stored as national \
                digits. Amounts are yuan with up to two decimals.

                Example:
                  outpost customer add --name "上海物流有限公司" --kind company \\
                    --contact-person 王芳 --phone "+86 １３８-0013-8000" --region 华东 \\
                    --revenue 1250000.00 --customer-since 2019-04-01
                """)

        @Option(help: ArgumentHelp("The customer's name (a company or a person).", valueName: "name"))
        var name: String

        @OptionGroup var fields: CustomerFieldOptions

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            var values = try fields.values()
            values["name"] = .text(name)
            let archive = try storage.openArchive()
            let record = try archive.addCustomer(values)
            CustomerOutput.show(record, json: output.json)
        }
    }

    // MARK: update

    struct Update: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change fields of a customer file.",
            discussion: """
                Give only the fields to change; the others keep their values. --no-key-account \
                clears the key-account mark.

                Example:
                  outpost customer update SH01-C-000001 --phone 021-6000-1234 --credit-rating AA
                """)

        @Argument(help: ArgumentHelp("The customer's number or id.", valueName: "ref"))
        var ref: String

        @Option(help: ArgumentHelp("The customer's name.", valueName: "name"))
        var name: String?

        @OptionGroup var fields: CustomerFieldOptions

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            var values = try fields.values()
            if let name { values["name"] = .text(name) }
            guard !values.isEmpty else { throw CLIError("nothing to change: give at least one field option (see 'outpost customer update --help')") }
            let archive = try storage.openArchive()
            let record = try archive.updateCustomer(ref, values)
            CustomerOutput.show(record, json: output.json)
        }
    }

    // MARK: show

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a customer file.",
            discussion: """
                Prints every field that has a value, and whether the file is archived, deleted or erased.

                Examples:
                  outpost customer show SH01-C-000001
                  outpost customer show SH01-C-000001 --json
                """)

        @Argument(help: ArgumentHelp("The customer's number or id.", valueName: "ref"))
        var ref: String

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            CustomerOutput.show(try archive.customer(ref), json: output.json)
        }
    }

    // MARK: list

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List customers, newest first.",
            discussion: """
                Archived customers are left out unless --all; deleted ones are never listed.

                Examples:
                  outpost customer list
                  outpost customer list --all --branch SH02 --limit 20
                """)

        @Flag(help: "Include archived and erased (de-identified) customers.")
        var all = false

        @Option(help: ArgumentHelp("Only customers homed at this branch.", valueName: "code"))
        var branch: String?

        @Option(help: ArgumentHelp("The most customers to list.", valueName: "n"))
        var limit: Int = 100

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let branch = try branch.map { try Parse.site($0, option: "--branch").code }
            guard limit > 0 else { throw CLIError("--limit must be at least 1") }
            let archive = try storage.openArchive()
            CustomerOutput.list(try archive.customers(includeArchived: all, branch: branch, limit: limit), json: output.json)
        }
    }

    // MARK: search

    struct Search: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Find customers by name, contact person, phone, number or waybill.",
            discussion: """
                Matches any fragment of the name or contact person — two characters or more, \
                Chinese included (物流 finds 上海物流有限公司), or a single character — at least \
                three digits of the phone number (typed any way), the start of the customer's \
                number, or the exact waybill of one of the customer's complaints or claims. \
                Spaces, punctuation and letter case do not matter. Waybill and number matches \
                come first, then the customers this site recorded most recently.

                At a branch, --remote asks headquarters instead (online only): it searches every \
                customer and answers with numbers, home branches, and names and phones partly \
                hidden, storing nothing here; 'outpost customer fetch NUMBER' then brings one.

                Examples:
                  outpost customer search 物流
                  outpost customer search "138 0013"
                  outpost customer search SF1234567890
                  outpost customer search --remote 物流
                """)

        @Argument(help: ArgumentHelp("The text to look for.", valueName: "text"))
        var text: String

        @Option(help: ArgumentHelp("The most customers to list.", valueName: "n"))
        var limit: Int = 50

        @Flag(help: "Search at headquarters (a branch, online): masked results, nothing stored.")
        var remote = false

        @OptionGroup var connection: RemoteOptions
        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() async throws {
            guard limit > 0 else { throw CLIError("--limit must be at least 1") }
            guard remote else {
                let archive = try storage.openArchive()
                return CustomerOutput.list(try archive.searchCustomers(text, limit: limit), json: output.json)
            }
            let (client, _, hq) = try connection.client(storage: storage, purpose: "'customer search --remote'")
            let found: [MaskedCustomer]
            do {
                found = try await client.remoteSearch(text, limit: min(limit, 50))
            } catch {
                throw CLIError("cannot search at headquarters (\(hq)): \(BranchClient.describe(error))")
            }
            if output.json {
                return Output.json(
                    .array(
                        found.map {
                            .object([
                                "number": .string($0.number), "name": .string($0.name), "phone": .string($0.phone),
                                "home_branch": .string($0.homeBranch),
                            ])
                        }))
            }
            if found.isEmpty { return Output.write("headquarters has no customer matching that\n") }
            Output.table(
                ["NUMBER", "NAME", "PHONE", "HOME"],
                found.map { [Output.oneLine($0.number), Output.oneLine($0.name), Output.oneLine($0.phone), Output.oneLine($0.homeBranch)] })
        }
    }

    // MARK: archive

    struct ArchiveFile: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "archive",
            abstract: "Archive a customer who no longer ships (or bring one back with --undo).",
            discussion: """
                An archived customer keeps all its records but is left out of 'customer list' \
                unless --all.

                Examples:
                  outpost customer archive SH01-C-000001
                  outpost customer archive SH01-C-000001 --undo
                """)

        @Argument(help: ArgumentHelp("The customer's number or id.", valueName: "ref"))
        var ref: String

        @Flag(help: "Take the customer out of the archive again.")
        var undo = false

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            CustomerOutput.show(try archive.archiveCustomer(ref, archived: !undo), json: output.json)
        }
    }

    // MARK: erase

    struct Erase: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Erase a customer's personal data everywhere, permanently.",
            discussion: """
                For a personal-data erasure request. Removes the name, contact person, phone, \
                e-mail, address and notes of the customer, and the personal text of its contacts, \
                complaints and claims, on this site now and on every other site when they apply \
                this site's change sets. It cannot be undone, and erased data can never be written \
                again; --yes confirms that.

                Example:
                  outpost customer erase SH01-C-000001 --yes
                """)

        @Argument(help: ArgumentHelp("The customer's number or id.", valueName: "ref"))
        var ref: String

        @Flag(help: "Confirm the permanent erasure.")
        var yes = false

        @OptionGroup var storage: DataDirOptions

        func run() throws {
            guard yes else {
                throw CLIError("erasing a customer is permanent and reaches every site; it cannot be undone: run again with --yes to confirm")
            }
            let archive = try storage.openArchive()
            let key = try archive.eraseCustomer(ref)
            Output.write("erased customer \(key): its personal data is gone here and will be erased at every site that applies this site's changes\n")
        }
    }

    // MARK: delete / restore

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a customer file entered by mistake.",
            discussion: """
                For a file that should never have existed (a duplicate, a typing error). A real \
                customer who stopped shipping is archived instead ('customer archive'), and a \
                personal-data request is 'customer erase'. 'customer restore' undoes a deletion.

                Example:
                  outpost customer delete SH01-C-000042
                """)

        @Argument(help: ArgumentHelp("The customer's number or id.", valueName: "ref"))
        var ref: String

        @OptionGroup var storage: DataDirOptions

        func run() throws {
            let archive = try storage.openArchive()
            try archive.deleteCustomer(ref)
            let record = try archive.customer(ref)
            Output.write("deleted customer \(CustomerOutput.label(record)); 'outpost customer restore \(CustomerOutput.label(record))' brings it back\n")
        }
    }

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bring back a deleted customer file.",
            discussion: """
                Example:
                  outpost customer restore SH01-C-000042
                """)

        @Argument(help: ArgumentHelp("The customer's number or id.", valueName: "ref"))
        var ref: String

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            try archive.restoreCustomer(ref)
            CustomerOutput.show(try archive.customer(ref), json: output.json)
        }
    }
}

/// The customer fields `add` and `update` share (all but the name).
struct CustomerFieldOptions: ParsableArguments {
    @Option(help: ArgumentHelp("person or company (default for a new file: company).", valueName: "person|company"))
    var kind: String?

    @Option(name: .customLong("contact-person"), help: ArgumentHelp("The person to talk to at a company.", valueName: "name"))
    var contactPerson: String?

    @Option(help: ArgumentHelp("Phone number; full-width digits, spaces, dashes and +86 are fine.", valueName: "number"))
    var phone: String?

    @Option(help: ArgumentHelp("E-mail address.", valueName: "address"))
    var email: String?

    @Option(help: ArgumentHelp("Postal address.", valueName: "text"))
    var address: String?

    @Option(help: ArgumentHelp("Sales region, e.g. 华东.", valueName: "region"))
    var region: String?

    @Option(help: ArgumentHelp("City, e.g. 上海 (with the company name, how duplicates are found).", valueName: "city"))
    var city: String?

    @Option(help: ArgumentHelp("Industry, e.g. e-commerce.", valueName: "industry"))
    var industry: String?

    @Option(name: .customLong("home-branch"), help: ArgumentHelp("The branch that looks after the customer (default: this site).", valueName: "code"))
    var homeBranch: String?

    @Option(name: .customLong("account-manager"), help: ArgumentHelp("The account manager's name.", valueName: "name"))
    var accountManager: String?

    @Flag(name: .customLong("key-account"), inversion: .prefixedNo, help: "Mark (or with --no-key-account unmark) a key account.")
    var keyAccount: Bool?

    @Option(help: ArgumentHelp("Shipments so far.", valueName: "n"))
    var shipments: Int64?

    @Option(parsing: .unconditional, help: ArgumentHelp("Revenue in yuan, e.g. 125000.00.", valueName: "yuan"))
    var revenue: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Profit in yuan; may be negative.", valueName: "yuan"))
    var profit: String?

    @Option(name: .customLong("wallet-share"), help: ArgumentHelp("Our share of the customer's logistics spend, 0-100.", valueName: "pct"))
    var walletShare: Int64?

    @Option(name: .customLong("credit-rating"), help: ArgumentHelp("AAA, AA, A, B, C or D.", valueName: "rating"))
    var creditRating: String?

    @Option(name: .customLong("overdue-payments"), help: ArgumentHelp("Payments overdue so far.", valueName: "n"))
    var overduePayments: Int64?

    @Option(name: .customLong("customer-since"), help: ArgumentHelp("First shipment date.", valueName: "yyyy-mm-dd"))
    var customerSince: String?

    @Option(name: .customLong("referral-source"), help: ArgumentHelp("How the customer found us.", valueName: "text"))
    var referralSource: String?

    @Option(help: ArgumentHelp("Free notes.", valueName: "text"))
    var notes: String?

    /// The options given, as archive fields (`Schema.customers` column names).
    func values() throws -> [String: Value] {
        var v: [String: Value] = [:]
        func text(_ name: String, _ value: String?) { if let value { v[name] = .text(value) } }
        func int(_ name: String, _ value: Int64?) { if let value { v[name] = .integer(value) } }
        text("kind", kind?.lowercased())
        text("contact_person", contactPerson)
        text("phone", phone)
        text("email", email)
        text("address", address)
        text("region", region)
        text("city", city)
        text("industry", industry)
        if let homeBranch { v["home_branch"] = .text(try Parse.site(homeBranch, option: "--home-branch").code) }
        text("account_manager", accountManager)
        if let keyAccount { v["key_account"] = .integer(keyAccount ? 1 : 0) }
        int("shipments", shipments)
        if let revenue { v["revenue_fen"] = .integer(try Parse.amount(revenue, option: "--revenue")) }
        if let profit { v["profit_fen"] = .integer(try Parse.amount(profit, option: "--profit", allowNegative: true)) }
        int("wallet_share_pct", walletShare)
        text("credit_rating", creditRating)
        int("overdue_payments", overduePayments)
        text("customer_since", customerSince)
        text("referral_source", referralSource)
        text("notes", notes)
        return v
    }
}

/// How customers print.
enum CustomerOutput {
    /// The number, or the id when an erased or odd record has none.
    static func label(_ record: Record) -> String {
        record["number"].textValue ?? record.id.description
    }

    static func show(_ record: Record, json: Bool) {
        if json { return Output.json(record.json) }
        let r = record
        Output.fields([
            ("number", Output.text(r["number"])),
            ("id", r.id.description),
            ("state", Output.state(r)),
            ("name", Output.text(r["name"])),
            ("kind", Output.text(r["kind"])),
            ("contact person", Output.text(r["contact_person"])),
            ("phone", Output.text(r["phone"])),
            ("email", Output.text(r["email"])),
            ("address", Output.text(r["address"])),
            ("region", Output.text(r["region"])),
            ("city", Output.text(r["city"])),
            ("industry", Output.text(r["industry"])),
            ("home branch", Output.text(r["home_branch"])),
            ("account manager", Output.text(r["account_manager"])),
            ("key account", Output.yesNo(r["key_account"])),
            ("shipments", Output.text(r["shipments"])),
            ("revenue", Output.money(r["revenue_fen"])),
            ("profit", Output.money(r["profit_fen"])),
            ("share of wallet", r["wallet_share_pct"].integerValue.map { "\($0)%" }),
            ("credit rating", Output.text(r["credit_rating"])),
            ("overdue payments", Output.text(r["overdue_payments"])),
            ("customer since", Output.text(r["customer_since"])),
            ("referral source", Output.text(r["referral_source"])),
            ("currency", Output.text(r["currency"])),
            ("notes", Output.text(r["notes"])),
            ("merged into", Output.text(r["merged_into"])),
        ])
    }

    static func list(_ records: [Record], json: Bool) {
        if json { return Output.json(.array(records.map(\.json))) }
        if records.isEmpty { return Output.write("no customers\n") }
        Output.table(
            ["NUMBER", "NAME", "KIND", "BRANCH", "PHONE", "STATE"],
            records.map { r in
                [
                    label(r), Output.truncated(Output.text(r["name"]) ?? "-", 40), Output.text(r["kind"]) ?? "-",
                    Output.text(r["home_branch"]) ?? "-", Output.text(r["phone"]) ?? "-", Output.state(r),
                ]
            })
    }
}
