import ArgumentParser
import Foundation
import LoadGen

extension Warbler {
    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Load-test a running Warbler server and print throughput and latency.")
        @Option(help: "Server base URL.") var url = "http://127.0.0.1:8080"
        @Option(help: "Pairs of connected users exchanging messages.") var pairs = 50
        @Option(help: "Messages each sender sends.") var messages = 200
        @Option(help: "Sends in flight per sender.") var window = 32
        @Option(help: "Password used for the benchmark accounts.") var password = "bench-password-1"
        @Option(help: "Prefix for the benchmark accounts (created if missing).") var prefix = "bench"
        @Option(help: "A CA certificate to trust for https (an install's /etc/warbler/tls/ca.crt).") var ca: String?
        @Option(help: "Soak instead: send at --rate per sender for this many seconds through whatever happens to the server (an upgrade, a restart), then count every message on both sides and in the history, and report the longest gap. Exits 1 if anything was lost, failed or shown twice.")
        var soak: Double?
        @Option(help: "With --soak: messages per second per sender.") var rate = 10.0
        @Option(help: "An admin account that creates the benchmark accounts (for a server whose registration is closed, the installer's default).")
        var admin: String?
        @Option(help: "A file holding --admin's password (an install's first admin: /etc/warbler/secrets/admin-password).")
        var adminPasswordFile: String?
        @Option(help: "Connect the receiving user of each pair here instead (another cluster member, to measure cross-node delivery).")
        var peerUrl: String?

        func validate() throws {
            if (admin == nil) != (adminPasswordFile == nil) {
                throw ValidationError("give --admin and --admin-password-file together")
            }
        }

        func adminAccounts() throws -> AdminAccounts? { try AdminAccounts.from(username: admin, passwordFile: adminPasswordFile) }

        func run() async throws {
            if let soak {
                let report: SoakReport
                do {
                    report = try await SoakRun(baseURL: url, pairs: pairs, seconds: soak, ratePerSender: rate, password: password,
                                               prefix: prefix, trustedCA: ca, admin: try adminAccounts(), peerURL: peerUrl).run { print($0); fflush(nil) }
                } catch { throw fail(error) }
                print(report.description)
                if !report.ok { throw ExitCode(1) }
                return
            }
            let report: LoadReport
            do {
                report = try await LoadGenerator(baseURL: url, pairs: pairs, messagesPerSender: messages, window: window,
                                                 password: password, prefix: prefix, trustedCA: ca, admin: try adminAccounts(),
                                                 peerURL: peerUrl).run()
            } catch { throw fail(error) }
            print(report.description)
            if !report.ok { throw ExitCode(1) }
        }
    }
}
