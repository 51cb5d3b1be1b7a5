import ArgumentParser
import Crypto
import Foundation
import Installer
import Payload

extension Warbler {
    /// Hidden: inspect or unpack the payload this file carries, and the two steps packaging/build.sh uses to make it.
    struct PayloadCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "payload",
            abstract: "Verify, extract or build the payload appended to this executable.",
            shouldDisplay: false,
            subcommands: [Verify.self, Extract.self, Pack.self, Append.self, Keygen.self, Sign.self])
    }
}

extension Warbler.PayloadCommand {
    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make an Ed25519 release-signing key; print its public half (base64).")
        @Option(help: "Where the private key goes (base64, mode 0600; must not exist).") var privateKey: String

        func run() throws {
            do {
                guard !FileManager.default.fileExists(atPath: privateKey) else {
                    throw ValidationError("\(privateKey) exists; keep it (it signs your releases) or move it away first")
                }
                let key = Curve25519.Signing.PrivateKey()
                try LocalSystem().write(privateKey, Data((key.rawRepresentation.base64EncodedString() + "\n").utf8), mode: 0o600, owner: nil)
                print(key.publicKey.rawRepresentation.base64EncodedString())
            } catch { throw fail(error) }
        }
    }

    struct Sign: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write FILE.sig: an Ed25519 signature of the installer file.")
        @Option(help: "The installer file.") var file: String
        @Option(help: "The private key from `payload keygen`.") var privateKey: String

        func run() throws {
            do {
                guard let text = try? String(contentsOfFile: privateKey, encoding: .utf8),
                      let raw = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)),
                      let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw) else {
                    throw ValidationError("\(privateKey) is not a key made by `warbler payload keygen`")
                }
                print(try SelfContainedFile.sign(fileAt: file, privateKey: key))
            } catch { throw fail(error) }
        }
    }
}

extension Warbler.PayloadCommand {
    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check the payload's SHA-256 and every file in it against its manifest.")
        @Option(help: "The installer file to check.") var file = SelfContainedFile.selfPath

        func run() throws {
            do {
                let (location, manifest) = try SelfContainedFile.inspect(path: file)
                print("payload ok: sha256 \(location.expectedSHA256Hex), \(manifest.fileCount) files (\(manifest.totalFileBytes) bytes)")
            } catch { throw fail(error) }
        }
    }

    struct Extract: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Verify the payload, then unpack it into DIR (which must not exist).")
        @Option(help: "The installer file to extract from.") var file = SelfContainedFile.selfPath
        @Argument(help: "The directory to create.") var directory: String

        func run() throws {
            do {
                let manifest = try SelfContainedFile.extractPayload(from: file, into: directory)
                print("extracted \(manifest.fileCount) files into \(directory)")
            } catch { throw fail(error) }
        }
    }

    struct Pack: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pack DIR into a deterministic tar.gz with a manifest.")
        @Argument(help: "The directory to pack.") var directory: String
        @Argument(help: "The tar.gz to write.") var archive: String
        @Option(help: "The release version the installer file carrying this payload installs.") var release: String?

        func run() throws {
            do {
                let manifest = try PayloadArchive.pack(directory: directory, to: archive, release: release)
                print("packed \(manifest.fileCount) files from \(directory) into \(archive)")
            } catch { throw fail(error) }
        }
    }

    struct Append: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write OUTPUT = EXECUTABLE + PAYLOAD + trailer.")
        @Option(help: "A plain warbler executable.") var executable: String
        @Option(help: "The payload tar.gz.") var payload: String
        @Option(help: "The installer file to write.") var output: String
        @Flag(help: "EXECUTABLE is an installer file: replace its payload.") var replace = false

        func run() throws {
            do {
                let location = try SelfContainedFile.append(payload: payload, to: executable, output: output, replacing: replace)
                print("wrote \(output): payload of \(location.payloadRange.count) bytes at offset \(location.payloadRange.lowerBound), sha256 \(location.expectedSHA256Hex)")
            } catch { throw fail(error) }
        }
    }
}
