import ArgumentParser
import CustomerArchive
import Foundation
import Replication

/// `outpost contact …`: calls, visits and other contacts with a customer.
struct ContactCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "contact",
        abstract: "Record and list contacts with a customer (calls, visits, return visits…).",
        discussion: """
            Contacts are never changed once recorded.

            Example:
              outpost contact add --customer SH01-C-000001 --kind return_visit --satisfaction 4
            """,
        subcommands: [Add.self, List.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record a contact with a customer.",
            discussion: """
                Kinds: call, visit, return_visit, praise, suggestion. A return visit records the \
                customer's satisfaction, 1 (very unhappy) to 5 (very happy).

                Examples:
                  outpost contact add --customer SH01-C-000001 --kind call --summary "asked for rates" --staff 李明
                  outpost contact add --customer SH01-C-000001 --kind return_visit --satisfaction 5
                """)

        @Option(help: ArgumentHelp("The customer's number or id.", valueName: "ref"))
        var customer: String

        @Option(help: ArgumentHelp("call, visit, return_visit, praise or suggestion.", valueName: "kind"))
        var kind: String

        @Option(help: ArgumentHelp("The customer's satisfaction, 1-5 (required for a return visit).", valueName: "1-5"))
        var satisfaction: Int?

        @Option(help: ArgumentHelp("What was said.", valueName: "text"))
        var summary: String?

        @Option(help: ArgumentHelp("Who made the contact.", valueName: "name"))
        var staff: String?

        @OptionGroup var storage: DataDirOptions

        func run() throws {
            let kind = try Parse.contactKind(kind)
            let archive = try storage.openArchive()
            let key = try archive.addContact(customer: customer, kind: kind, satisfaction: satisfaction, summary: summary, staff: staff)
            let owner = try archive.customer(customer)
            Output.write("recorded \(kind.rawValue) \(key) for customer \(CustomerOutput.label(owner))\n")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the contacts with a customer, oldest first.",
            discussion: """
                Example:
                  outpost contact list --customer SH01-C-000001
                """)

        @Option(help: ArgumentHelp("The customer's number or id.", valueName: "ref"))
        var customer: String

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            let contacts = try archive.contacts(customer: customer)
            if output.json { return Output.json(.array(contacts.map(\.json))) }
            if contacts.isEmpty { return Output.write("no contacts\n") }
            Output.table(
                ["WHEN", "KIND", "SATISFACTION", "STAFF", "SUMMARY"],
                contacts.map { c in
                    [
                        Output.time(c["at"]) ?? "-", Output.text(c["kind"]) ?? "-", Output.text(c["satisfaction"]) ?? "-",
                        Output.text(c["staff"]) ?? "-", Output.truncated(Output.text(c["summary"]) ?? "", 60),
                    ]
                })
        }
    }
}
