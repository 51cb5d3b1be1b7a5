/// The hash a join token's proof is stored under: the SHA-256 hex every stored secret gets here (a test checks it
/// equals `Installer.JoinToken.proofHash`).
public enum JoinProof {
    public static func hash(_ proof: String) -> String { TokenService.hashRefreshToken(proof) }
}
