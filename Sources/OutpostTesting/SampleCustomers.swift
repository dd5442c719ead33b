import Replication

/// Realistic customer fields for the benchmarks: Chinese company names, phones, addresses,
/// figures, drawn from a seeded generator so runs are comparable.
public enum SampleCustomers {
    /// The twelve customer columns the benchmarks write.
    public static let fields = [
        "name", "contact_person", "phone", "email", "address", "region", "industry", "home_branch", "account_manager", "shipments", "revenue_fen",
        "credit_rating",
    ]

    /// A value for `field` of customer number `i`.
    public static func value(_ field: String, _ i: Int, _ rng: inout SplitMix64) -> Value {
        let cities = ["上海", "北京", "广州", "深圳", "成都", "杭州", "武汉", "南京"]
        let trades = ["物流", "快运", "货代", "仓储", "电子", "服装", "食品", "机械"]
        let surnames = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄"]
        let city = cities[Int(rng.next() % 8)]
        switch field {
        case "name": return .text("\(city)\(trades[Int(rng.next() % 8)])\(["有限公司", "股份有限公司", "贸易公司"][Int(rng.next() % 3)])\(i % 1000)")
        case "contact_person": return .text(surnames[Int(rng.next() % 8)] + ["伟", "芳", "娜", "强", "磊", "静"][Int(rng.next() % 6)])
        case "phone": return .text("1\(30 + rng.next() % 60)\(10_000_000 + rng.next() % 89_999_999)")
        case "email": return .text("c\(i)@\(["163.com", "qq.com", "example.cn"][Int(rng.next() % 3)])")
        case "address": return .text("\(city)市\(["浦东新区", "朝阳区", "天河区", "南山区"][Int(rng.next() % 4)])\(rng.next() % 999)号")
        case "region": return .text(city)
        case "industry": return .text(trades[Int(rng.next() % 8)])
        case "home_branch": return .text(["SH01", "BJ01", "GZ01", "CD01"][Int(rng.next() % 4)])
        case "account_manager": return .text("AM\(rng.next() % 300)")
        case "shipments": return .integer(Int64(rng.next() % 5_000))
        case "revenue_fen": return .integer(Int64(rng.next() % 100_000_000))
        default: return .text(["AAA", "AA", "A", "B", "C"][Int(rng.next() % 5)])
        }
    }
}
