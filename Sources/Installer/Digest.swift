import Crypto
import Foundation

enum Digest {
    static func sha256(_ data: Data) -> Data { Data(SHA256.hash(data: data)) }

    static func hex(_ data: Data, separator: String = "") -> String {
        data.map { String(format: "%02x", $0) }.joined(separator: separator)
    }
}
