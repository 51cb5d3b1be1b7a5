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

        func run() async throws {
            do {
                let report = try await LoadGenerator(baseURL: url, pairs: pairs, messagesPerSender: messages, window: window,
                                                     password: password, prefix: prefix, trustedCA: ca).run()
                print(report.description)
            } catch { throw fail(error) }
        }
    }
}
