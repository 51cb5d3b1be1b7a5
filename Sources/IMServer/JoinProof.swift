import Crypto
import Foundation

/// The hash a join token's proof is stored under. Must equal `Installer.JoinToken.proofHash` (a test checks it).
public enum JoinProof {
    public static func hash(_ proof: String) -> String {
        SHA256.hash(data: Data(proof.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
