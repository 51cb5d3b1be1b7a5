import Crypto
import Foundation

public enum Digest {
    public static func sha256(_ data: Data) -> Data { Data(SHA256.hash(data: data)) }

    public static func hex(_ data: Data, separator: String = "") -> String {
        data.map { String(format: "%02x", $0) }.joined(separator: separator)
    }
}
