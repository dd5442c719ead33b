import CustomerArchive
import Foundation
import OutpostTesting
import Replication
import Testing

@Suite("CSV import")
struct ImportTests {
    func rows(_ text: String) throws -> [CSVReader.Row] {
        var reader = CSVReader(utf8: Array(text.utf8))
        var out: [CSVReader.Row] = []
        while let row = try reader.next() { out.append(row) }
        return out
    }

    @Test("RFC 4180: quotes, doubled quotes, line breaks inside quotes, CRLF; each row knows the line it starts on")
    func reader() throws {
        let text = "name,notes\r\n\"上海物流有限公司\",\"说 \"\"急\"\"\"\r\n北京快运,\"第一行\n第二行\"\r\n\r\n广州,\nlast,row"
        let out = try rows(text)
        #expect(out.map(\.line) == [1, 2, 3, 6, 7])
        #expect(out[1].fields == ["上海物流有限公司", "说 \"急\""])
        #expect(out[2].fields == ["北京快运", "第一行\n第二行"])
        #expect(out[3].fields == ["广州", ""])
        #expect(out[4].fields == ["last", "row"])
        #expect(throws: CSVReader.Problem.unterminatedQuote(line: 2)) { try rows("a\n\"open,b\nc") }
        #expect(throws: CSVReader.Problem.textAfterQuote(line: 1)) { try rows("\"a\"b,c") }
    }

    @Test("UTF-8 with or without a byte order mark, and GB18030 from a spreadsheet saved in China")
    func encodings() throws {
        let text = "客户名称,电话\n上海物流有限公司,13800138000\n"
        let utf8 = Array(text.utf8)
        #expect(try TextDecoding.utf8(utf8) == (utf8, .utf8))
        #expect(try TextDecoding.utf8([0xEF, 0xBB, 0xBF] + utf8) == (utf8, .utf8))
        // 上海 in GB18030 is C9 CF BA A3 (worked out with `iconv -t GB18030`).
        let gb: [UInt8] = [0xC9, 0xCF, 0xBA, 0xA3, 0x2C, 0x31]
        #expect(try TextDecoding.utf8(gb) == (Array("上海,1".utf8), .gb18030))
        #expect(throws: ArchiveError.self) { try TextDecoding.utf8(gb, encoding: .utf8) }
        // Not GB18030 either: 0xFF never starts a GB18030 character.
        #expect(throws: ArchiveError.self) { try TextDecoding.utf8([0x41, 0xFF, 0xFF]) }
    }

    @Test("headers in English or Chinese map to fields; an unknown or repeated column is refused, never dropped")
    func headers() throws {
        let m = try CustomerImport.mapping(header: ["客户名称", "Contact Person", "手机", "revenue", "number", "城市"])
        #expect(m.fields == [0: "name", 1: "contact_person", 2: "phone", 3: "revenue_fen", 5: "city"])
        #expect(m.skipped == ["number"])
        #expect(throws: ArchiveError.self) { try CustomerImport.mapping(header: ["name", "shoe size"]) }
        #expect(throws: ArchiveError.self) { try CustomerImport.mapping(header: ["name", "电话", "phone"]) }
        #expect(throws: ArchiveError.self) { try CustomerImport.mapping(header: ["电话"]) }
    }

    @Test("every bad row is reported by its line and the field at fault, never with the cell's content")
    func badRows() throws {
        // Lines: 1 header; 2 good; 3 phone too short; 4 amount with three decimals; 5 wrong
        // field count; 6 good (full-width digits, +86, thousands separators); 7–8 a quoted
        // note across two lines, then a bad e-mail; 9 no name; 10 bad kind; 11 bad branch.
        let csv = """
            name,phone,revenue,email,kind,home_branch,notes
            上海物流有限公司,021 6000 1234,"1,250,000.00",ops@example.cn,公司,SH01,
            北京快运,1234,,,,,
            广州速递,13800138000,12.345,,,,
            深圳仓储,13800138001
            杭州,+86 １３８-0013-8002,"1,000",,个人,bj01,
            宁波,13800138003,,not-an-email,,,"第一行
            第二行"
            ,13800138004,,,,,
            苏州,13800138005,,,工厂,,
            无锡,13800138006,,,,上海一,
            """
        let all = try rows(csv)
        let mapping = try CustomerImport.mapping(header: all[0].fields)
        var good: [[String: Value]] = []
        var bad: [CustomerImport.BadRow] = []
        for row in all.dropFirst() {
            do {
                good.append(try CustomerImport.fields(row, mapping, sites: { try? SiteID($0.uppercased()).code }))
            } catch {
                bad.append(error.row)
            }
        }
        #expect(bad.map(\.line) == [3, 4, 5, 7, 9, 10, 11])
        #expect(bad.map(\.message)[2] == "2 fields where the header has 7")
        #expect(bad.map(\.message)[4] == "name is empty")
        for b in bad {
            for secret in ["1234", "12.345", "not-an-email", "工厂", "上海一", "深圳仓储", "宁波"] {
                #expect(!b.message.contains(secret), "line \(b.line) repeats a cell")
            }
        }
        #expect(good.count == 2)
        #expect(good[0]["phone"] == .text("02160001234"))
        #expect(good[0]["revenue_fen"] == .integer(125_000_000))
        #expect(good[0]["kind"] == .text("company"))
        #expect(good[1]["phone"] == .text("13800138002"))
        #expect(good[1]["revenue_fen"] == .integer(100_000))
        #expect(good[1]["kind"] == .text("person"))
        #expect(good[1]["home_branch"] == .text("BJ01"))

        let sites = try Sites()
        let archive = try sites.make("SH01")
        let keys = try archive.importCustomers(good, batchSize: 1)
        #expect(try keys.map { try archive.customer($0.description)["number"].textValue } == ["SH01-C-000001", "SH01-C-000002"])
    }
}
