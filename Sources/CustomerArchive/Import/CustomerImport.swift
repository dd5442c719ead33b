import Replication

/// Reading customer files from a spreadsheet's CSV: columns mapped by their header (English
/// or Chinese), every cell checked, every bad row reported by its line.
public enum CustomerImport {
    /// A row that cannot be imported, and why (field names only, never the cell's value).
    public struct BadRow: Sendable, Hashable {
        public var line: Int
        public var message: String
    }

    /// Which customer field each column of the file holds.
    public struct Mapping: Sendable {
        /// Column index → field (a `customers` column name).
        public var fields: [Int: String]
        /// Headers recognised but not imported (an export's `number`, `id`, `state`).
        public var skipped: [String]
        public var columnCount: Int
    }

    /// Header words, lower-cased with spaces, `_` and `-` removed, to fields. `""`: known, not
    /// imported (a new customer gets its number and id here).
    static let aliases: [String: String] = {
        var map: [String: String] = [:]
        let table: [(String, [String])] = [
            ("name", ["name", "customername", "company", "名称", "客户名称", "客户名", "公司名称", "单位名称", "姓名"]),
            ("kind", ["kind", "type", "customertype", "类型", "客户类型"]),
            ("contact_person", ["contactperson", "contact", "联系人"]),
            ("phone", ["phone", "mobile", "tel", "telephone", "电话", "手机", "手机号", "联系电话", "电话号码"]),
            ("email", ["email", "mail", "邮箱", "电子邮件", "电子邮箱"]),
            ("address", ["address", "地址", "详细地址"]),
            ("region", ["region", "区域", "地区", "大区"]),
            ("city", ["city", "城市", "所在城市"]),
            ("industry", ["industry", "行业"]),
            ("home_branch", ["homebranch", "branch", "网点", "所属网点", "服务中心"]),
            ("account_manager", ["accountmanager", "manager", "客户经理"]),
            ("key_account", ["keyaccount", "大客户", "重点客户"]),
            ("shipments", ["shipments", "发货量", "票数", "发货票数"]),
            ("revenue_fen", ["revenue", "revenueyuan", "营业额", "收入", "营业收入"]),
            ("profit_fen", ["profit", "profityuan", "利润", "利润贡献"]),
            ("wallet_share_pct", ["walletshare", "walletsharepct", "shareofwallet", "份额", "业务份额"]),
            ("credit_rating", ["creditrating", "credit", "信用等级", "信用"]),
            ("overdue_payments", ["overduepayments", "overdue", "逾期次数", "逾期"]),
            ("customer_since", ["customersince", "since", "建档日期", "合作开始日期", "开始合作日期"]),
            ("referral_source", ["referralsource", "referral", "source", "来源", "客户来源"]),
            ("notes", ["notes", "note", "remarks", "备注"]),
            ("", ["number", "id", "state", "mergedinto", "currency", "archived", "客户编号"]),
        ]
        for (field, words) in table { for w in words { map[w] = field } }
        return map
    }()

    static func normalizeHeader(_ h: String) -> String {
        String(h.trimmingWhitespace().lowercased().filter { $0 != " " && $0 != "_" && $0 != "-" && $0 != "\u{3000}" })
    }

    /// Maps a header row.
    /// - Throws: `.invalidInput` for an unknown or repeated column, or no name column (so a
    ///   column is never dropped silently).
    public static func mapping(header: [String]) throws -> Mapping {
        var fields: [Int: String] = [:]
        var skipped: [String] = []
        var seen: [String: Int] = [:]
        var unknown: [String] = []
        for (i, raw) in header.enumerated() {
            let h = normalizeHeader(raw)
            if h.isEmpty { continue }
            guard let field = aliases[h] else {
                unknown.append("\(i + 1) (\(raw.prefix(24)))")
                continue
            }
            if field.isEmpty {
                skipped.append(raw)
                continue
            }
            if let j = seen[field] {
                throw ArchiveError(.invalidInput, "columns \(j + 1) and \(i + 1) both hold \(field)")
            }
            seen[field] = i
            fields[i] = field
        }
        if !unknown.isEmpty {
            throw ArchiveError(
                .invalidInput,
                "unknown column\(unknown.count == 1 ? "" : "s") \(unknown.joined(separator: ", ")); known: name, kind, contact_person, phone, email, address, region, city, industry, home_branch, account_manager, key_account, shipments, revenue, profit, wallet_share, credit_rating, overdue_payments, customer_since, referral_source, notes (or their Chinese names, e.g. 客户名称, 联系人, 电话)"
            )
        }
        guard seen["name"] != nil else { throw ArchiveError(.invalidInput, "the file has no name column (name or 客户名称)") }
        return Mapping(fields: fields, skipped: skipped, columnCount: header.count)
    }

    /// The checked fields of one row.
    /// - Throws: ``BadRow`` naming the line, the field and what is wrong.
    public static func fields(_ row: CSVReader.Row, _ mapping: Mapping, sites: (String) -> String?) throws(BadRowError) -> [String: Value] {
        func bad(_ message: String) -> BadRowError { BadRowError(row: BadRow(line: row.line, message: message)) }
        guard row.fields.count == mapping.columnCount else {
            throw bad("\(row.fields.count) fields where the header has \(mapping.columnCount)")
        }
        var values: [String: Value] = [:]
        for (i, field) in mapping.fields {
            let cell = row.fields[i].trimmingWhitespace()
            if cell.isEmpty { continue }
            switch field {
            case "kind":
                switch cell.lowercased() {
                case "company", "公司", "企业", "单位": values[field] = .text("company")
                case "person", "个人": values[field] = .text("person")
                default: throw bad("kind: use company or person (公司/个人)")
                }
            case "key_account":
                switch cell.lowercased() {
                case "1", "yes", "y", "true", "是", "√": values[field] = .integer(1)
                case "0", "no", "n", "false", "否": values[field] = .integer(0)
                default: throw bad("key_account: use yes or no (是/否)")
                }
            case "shipments", "overdue_payments", "wallet_share_pct":
                let digits = cell.hasSuffix("%") && field == "wallet_share_pct" ? String(cell.dropLast()) : cell
                guard let n = Int64(digits.filter { $0 != "," }) else { throw bad("\(field): not a whole number") }
                values[field] = .integer(n)
            case "revenue_fen", "profit_fen":
                let plain = String(cell.filter { $0 != "," && $0 != "，" && $0 != "¥" && $0 != "￥" })
                do {
                    values[field] = .integer(try Money.parse(plain, allowNegative: field == "profit_fen"))
                } catch {
                    throw bad("\(field == "revenue_fen" ? "revenue" : "profit"): \(error.message)")
                }
            case "home_branch":
                guard let code = sites(cell) else { throw bad("home_branch: not a site code (2-16 letters and digits, e.g. SH01)") }
                values[field] = .text(code)
            default:
                values[field] = .text(cell)
            }
        }
        guard values["name"] != nil else { throw bad("name is empty") }
        do {
            return try Archive.checkedCustomerFields(values)
        } catch {
            throw bad(error.message)
        }
    }

    public struct BadRowError: Error {
        public var row: BadRow
    }
}

extension Error {
    /// The operator message of an archive error, else a generic description.
    var message: String { (self as? ArchiveError)?.message ?? "\(self)" }
}

extension Archive {
    /// Adds checked customer files in transactions of `batchSize`, numbering each at this site.
    /// A crash leaves whole batches imported; `progress` hears the count after each.
    /// - Returns: the new customers' keys, in input order.
    @discardableResult
    public func importCustomers(_ rows: [[String: Value]], batchSize: Int = 2000, progress: ((Int) -> Void)? = nil) throws -> [RecordKey] {
        var keys: [RecordKey] = []
        keys.reserveCapacity(rows.count)
        var start = 0
        while start < rows.count {
            let end = min(rows.count, start + max(1, batchSize))
            keys += try transaction { s in
                try rows[start..<end].map { try insertCustomer(&s, $0) }
            }
            progress?(end)
            start = end
        }
        return keys
    }
}
