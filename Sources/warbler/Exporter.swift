import ArgumentParser
import Foundation
import IMServer
import Logging
import Monitoring

extension Warbler {
    struct Exporter: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the monitoring exporter: host, component, database, TLS and backup metrics for Prometheus (normally started by systemd or the supervisor).")
        @OptionGroup var options: ConfigOptions

        func run() async throws {
            let config: ServerConfig
            do { config = try options.load() } catch { throw fail(error) }
            bootstrapLogging(level: config.logLevel)
            let logger = Logger(label: "warbler.exporter")
            let runtime = ExporterRuntime(config: config, collectors: ExporterRuntime.liveCollectors(config: config, logger: logger), logger: logger)
            do { try await runtime.run() } catch {
                logger.critical("exporter stopped: \(error)")
                throw fail(error)
            }
        }
    }
}
