import Crypto
import Foundation
import Glibc

/// Optional Ed25519 detached signatures of an installer file, kept beside it as FILE.sig.
///
/// What is signed is "warbler-installer-signature-v1", a NUL byte, then the SHA-256 of the whole file. The whole file
/// rather than the payload alone: the trailer already pins the payload's hash, and a signature that left the
/// executable part out would let a modified executable carry a genuine payload. The context string keeps a
/// signature made here from being valid for anything else the same key signs.
///
/// FILE.sig is one line: `warbler-signature-v1 ed25519 BASE64-SIGNATURE`.
extension SelfContainedFile {
    static let signatureContext = Array("warbler-installer-signature-v1".utf8) + [0]
    static let signatureTag = "warbler-signature-v1 ed25519 "

    /// Where the detached signature of `path` lives.
    public static func signaturePath(for path: String) -> String { path + ".sig" }

    /// Checks the file's payload, then writes FILE.sig; returns its path.
    @discardableResult
    public static func sign(fileAt path: String, privateKey: Curve25519.Signing.PrivateKey) throws -> String {
        try verify(path: path)
        let signature = try privateKey.signature(for: signedMessage(path))
        let sigPath = signaturePath(for: path)
        let (fd, temporary) = try FileIO.temporaryFile(besides: sigPath)
        do {
            defer { close(fd) }
            let line = signatureTag + signature.base64EncodedString() + "\n"
            try Array(line.utf8).withUnsafeBytes { try FileIO.writeAll(fd: fd, path: temporary, $0) }
            guard fchmod(fd, 0o644) == 0, fsync(fd) == 0 else { throw PayloadError.io("cannot write", path: temporary) }
            try FileIO.rename(temporary, to: sigPath)
        } catch {
            unlink(temporary)
            throw error
        }
        return sigPath
    }

    /// Throws `badSignature` unless FILE.sig is a valid signature of the file by `publicKey`.
    public static func verifySignature(fileAt path: String, publicKey: Curve25519.Signing.PublicKey) throws {
        let sigPath = signaturePath(for: path)
        guard let data = FileManager.default.contents(atPath: sigPath) else {
            throw PayloadError(.badSignature, "there is no signature for \(path) (expected \(sigPath))")
        }
        guard let line = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
              line.hasPrefix(signatureTag),
              let signature = Data(base64Encoded: String(line.dropFirst(signatureTag.count))), signature.count == 64
        else {
            throw PayloadError(.badSignature, "\(sigPath) is not a warbler signature file")
        }
        guard publicKey.isValidSignature(signature, for: try signedMessage(path)) else {
            throw PayloadError(.badSignature, "the signature in \(sigPath) does not match \(path): the file was modified or signed with another key; download both again")
        }
    }

    private static func signedMessage(_ path: String) throws -> [UInt8] {
        signatureContext + (try FileIO.sha256(ofFile: path))
    }
}
