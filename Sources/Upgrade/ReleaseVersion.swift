/// A release version as packaging stamps it (`1.2.0`, `1.2.0-rc.1`, `1.2.0+build.5`), ordered the way semantic
/// versioning orders them: numeric parts by number, a pre-release below its release, build metadata ignored.
public struct ReleaseVersion: Comparable, Sendable, CustomStringConvertible {
    public let text: String
    let core: [Int]
    let prerelease: [String]

    public init?(_ text: String) {
        self.text = text
        let noBuild = text.split(separator: "+", maxSplits: 1).first.map(String.init) ?? text
        let parts = noBuild.split(separator: "-", maxSplits: 1)
        guard let first = parts.first else { return nil }
        let numbers = first.split(separator: ".", omittingEmptySubsequences: false).map { Int($0) }
        guard !numbers.isEmpty, numbers.allSatisfy({ $0 != nil && $0! >= 0 }) else { return nil }
        core = numbers.map { $0! }
        prerelease = parts.count > 1 ? parts[1].split(separator: ".").map(String.init) : []
    }

    public var description: String { text }

    public static func == (a: Self, b: Self) -> Bool { !(a < b) && !(b < a) }

    public static func < (a: Self, b: Self) -> Bool {
        let n = max(a.core.count, b.core.count)
        for i in 0..<n {
            let x = i < a.core.count ? a.core[i] : 0, y = i < b.core.count ? b.core[i] : 0
            if x != y { return x < y }
        }
        // 1.0.0-rc.1 < 1.0.0
        switch (a.prerelease.isEmpty, b.prerelease.isEmpty) {
        case (true, true): return false
        case (false, true): return true
        case (true, false): return false
        case (false, false):
            for (x, y) in zip(a.prerelease, b.prerelease) where x != y {
                switch (Int(x), Int(y)) {
                case let (i?, j?): return i < j
                case (_?, nil): return true
                case (nil, _?): return false
                default: return x < y
                }
            }
            return a.prerelease.count < b.prerelease.count
        }
    }
}
