// Placeholder until the CLI lands; delete this file when OutpostCommand is written.
public enum OutpostCommand { public static func main() {} }
