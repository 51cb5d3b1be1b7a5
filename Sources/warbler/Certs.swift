import ArgumentParser
import Foundation
import Installer

extension Warbler {
    struct Certs: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The server's TLS certificate from the internal CA.",
            subcommands: [Renew.self])

        struct Renew: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Renew the server certificate when it is within 30 days of its end (run daily by the warbler-cert-renew timer).",
                discussion: "The new certificate covers the same names; the server picks it up without a restart. Exits 0 when nothing was due.")

            @Flag(help: "Renew now, whatever the expiry.")
            var force = false
            @Option(help: "Act on an install staged under DIR.")
            var root: String?

            func validate() throws {
                if let r = root, !r.hasPrefix("/") { throw ValidationError("--root needs an absolute path") }
            }

            func run() throws {
                do {
                    let outcome = try CertificateRenewal(system: LocalSystem(), layout: Layout(root: root)).run(force: force)
                    print(outcome.render(), terminator: "")
                } catch {
                    throw fail(error)
                }
            }
        }
    }
}
