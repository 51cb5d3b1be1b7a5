import ArgumentParser
import Foundation
import IMServer

extension Warbler {
    /// `warbler compliance-verify ARCHIVE --public-key KEY`: checks a compliance export's signature and every member.
    struct ComplianceVerify: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "compliance-verify",
            abstract: "Check a compliance export's signature and contents against the server's public key.")
        @Argument(help: "The export archive (warbler-export-….tar.gz).") var archive: String
        @Option(help: "The server's public key: base64, as GET /v1/admin/compliance/key or the admin console shows it.")
        var publicKey: String

        func run() throws {
            do {
                let v = try ComplianceArchive.verify(path: archive, publicKey: publicKey)
                let scope = v.info.conversation.map { "conversation \($0)" } ?? "messages sent by user \(v.info.user ?? 0)"
                print("\(archive): signature and all \(v.members.count) members verified")
                print("  \(scope), \(v.info.from) ≤ ts < \(v.info.to) (ms since 1970)")
                print("  \(v.info.messages) messages, \(v.info.attachments) attachments, made by \(v.info.requestedByName) at \(v.info.createdAt)")
                if !v.info.missingAttachments.isEmpty {
                    print("  attachments whose bytes were already gone: \(v.info.missingAttachments.joined(separator: ", "))")
                }
            } catch {
                throw fail(error)
            }
        }
    }
}
