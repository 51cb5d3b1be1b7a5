import ArgumentParser
import Logging
import Upgrade

extension Warbler.ClusterCommand {
    struct UpgradeReceiverCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "upgrade-receiver",
            abstract: "Take a cluster upgrade's signed orders: receive the file, switch or return this member's release (warbler-upgrade-receiver.service).",
            shouldDisplay: false)
        @Option(help: "debug, info, warning, error.") var logLevel = "info"
        func run() async throws {
            try requireRoot("warbler cluster upgrade-receiver")
            bootstrapLogging(level: logLevel)
            let logger = Logger(label: "warbler.upgrade-receiver")
            do {
                try await UpgradeReceiver.live(logger: logger).run()
            } catch {
                logger.critical("the upgrade receiver stopped: \(error)")
                throw fail(error)
            }
        }
    }
}
