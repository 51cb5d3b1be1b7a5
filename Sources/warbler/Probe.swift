import ArgumentParser
import Foundation
import LoadGen

extension Warbler {
    struct Probe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a running install end to end: group messages, an attachment and a resume, across its addresses.",
            discussion: """
                A group of --members users, spread over the --url addresses (one server, or several cluster members), \
                all send at once; an attachment goes up through the first address and is read back through every \
                member's own; one member drops and comes back through another address. Exits 1 unless every message \
                reached every other member exactly once and in order, and the attachment came back identical.
                """)
        @Option(help: "An address to probe (repeat for each cluster member to spread the users over).") var url: [String] = []
        @Option(help: "Users in the probe's group.") var members = 4
        @Option(help: "Messages each member sends.") var messages = 25
        @Option(help: "Size of the probe's attachment in bytes.") var attachmentBytes = 600_000
        @Option(help: "Password of the probe's accounts.") var password = "probe-password-1"
        @Option(help: "Prefix of the probe's accounts (created if missing).") var prefix = "probe"
        @Option(help: "A CA certificate to trust for https (an install's /etc/warbler/tls/ca.crt).") var ca: String?
        @Option(help: "An admin account that creates the probe's accounts (for a server whose registration is closed).") var admin: String?
        @Option(help: "A file holding --admin's password (an install's first admin: /etc/warbler/secrets/admin-password).")
        var adminPasswordFile: String?

        func validate() throws {
            if url.isEmpty { throw ValidationError("give --url (repeat it for each cluster member)") }
            if (admin == nil) != (adminPasswordFile == nil) { throw ValidationError("give --admin and --admin-password-file together") }
        }

        func run() async throws {
            let report: ProbeReport
            do {
                report = try await DeliveryProbe(urls: url, members: members, messagesPerMember: messages, attachmentBytes: attachmentBytes,
                                                 password: password, prefix: prefix, trustedCA: ca,
                                                 admin: try AdminAccounts.from(username: admin, passwordFile: adminPasswordFile)).run { print($0) }
            } catch { throw fail(error) }
            print(report.description)
            if !report.ok { throw ExitCode(1) }
        }
    }
}
