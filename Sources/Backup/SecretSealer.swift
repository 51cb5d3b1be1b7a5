import Crypto
import CryptoExtras
import Foundation

/// Seals secrets with AES-256-GCM under a key derived from the operator's passphrase with scrypt (memory-hard:
/// N=2^15, r=8, p=1 is 32 MiB and about 0.1 s here). Each secret gets a fresh nonce and its archive path as
/// authenticated data, so a sealed file cannot be swapped for another one unnoticed.
struct SecretSealer: Sendable {
    static let checkText = Data("warbler backup passphrase check".utf8)

    let key: SymmetricKey
    let encryption: BackupManifest.Encryption

    /// A new key (fresh salt) for a backup being written.
    init(passphrase: String) throws {
        let salt = Data((0..<16).map { _ in UInt8.random(in: 0...255) })
        let rounds = 1 << 15, blockSize = 8, parallelism = 1
        let key = try Self.derive(passphrase: passphrase, salt: salt, rounds: rounds, blockSize: blockSize, parallelism: parallelism)
        let check = try AES.GCM.seal(Self.checkText, using: key).combined!
        self.key = key
        self.encryption = BackupManifest.Encryption(
            cipher: "AES-256-GCM", kdf: "scrypt", salt: salt.base64EncodedString(), rounds: rounds, blockSize: blockSize,
            parallelism: parallelism, check: check.base64EncodedString())
    }

    /// The key of an existing backup; throws a `passphrase` error when the passphrase is not the one it was made with.
    init(passphrase: String, encryption: BackupManifest.Encryption, file: String) throws {
        guard encryption.cipher == "AES-256-GCM", encryption.kdf == "scrypt",
              let salt = Data(base64Encoded: encryption.salt), let check = Data(base64Encoded: encryption.check),
              encryption.rounds > 1, encryption.rounds <= 1 << 20, encryption.blockSize > 0, encryption.blockSize <= 64,
              encryption.parallelism > 0, encryption.parallelism <= 16 else {
            throw BackupError(.invalidArchive, "\(file) describes its encryption in a way this build does not know (\(encryption.cipher), \(encryption.kdf))")
        }
        let key = try Self.derive(passphrase: passphrase, salt: salt, rounds: encryption.rounds, blockSize: encryption.blockSize,
                                  parallelism: encryption.parallelism)
        let opened: Data
        do { opened = try AES.GCM.open(AES.GCM.SealedBox(combined: check), using: key) } catch {
            throw BackupError(.passphrase, "the passphrase does not open the secrets in \(file): it is not the one the backup was made with; check --passphrase-file")
        }
        guard opened == Self.checkText else {
            throw BackupError(.passphrase, "the passphrase does not open the secrets in \(file); check --passphrase-file")
        }
        self.key = key
        self.encryption = encryption
    }

    static func derive(passphrase: String, salt: Data, rounds: Int, blockSize: Int, parallelism: Int) throws -> SymmetricKey {
        do {
            return try KDF.Scrypt.deriveKey(from: Data(passphrase.utf8), salt: salt, outputByteCount: 32, rounds: rounds,
                                            blockSize: blockSize, parallelism: parallelism)
        } catch {
            throw BackupError(.io, "cannot derive the backup key from the passphrase (scrypt: \(error))")
        }
    }

    func seal(_ plaintext: Data, path: String) throws -> Data {
        do {
            return try AES.GCM.seal(plaintext, using: key, authenticating: Data(path.utf8)).combined!
        } catch {
            throw BackupError(.io, "cannot encrypt \(path): \(error)")
        }
    }

    func open(_ sealed: Data, path: String) throws -> Data {
        do {
            return try AES.GCM.open(try AES.GCM.SealedBox(combined: sealed), using: key, authenticating: Data(path.utf8))
        } catch {
            throw BackupError(.checksumMismatch, "the encrypted secret \(path) does not decrypt: the archive was altered; use another backup")
        }
    }

    /// Reads a passphrase file: its first line, which must not be empty.
    static func readPassphrase(file: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
            throw BackupError(.usage, "cannot read the passphrase file \(file); check the path and that this user may read it")
        }
        let line = text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let passphrase = line.hasSuffix("\r") ? String(line.dropLast()) : line
        guard !passphrase.isEmpty else {
            throw BackupError(.usage, "the passphrase file \(file) is empty; put the passphrase on its first line")
        }
        return passphrase
    }
}

extension BackupEngine {
    /// Reads a passphrase file (its first line, which must not be empty), for `--passphrase-file`.
    public static func readPassphrase(file: String) throws -> String {
        try SecretSealer.readPassphrase(file: file)
    }
}
