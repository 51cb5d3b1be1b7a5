import ArgumentParser
import Foundation
import Installer

extension Warbler {
    struct Doctor: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the install's preflight checks alone and say what to fix (exit 1 when one fails).")

        @OptionGroup var flags: InstallFlags

        func run() throws {
            do {
                let installer = Installer(system: LocalSystem(), probe: LiveHostProbe())
                let size = (try? FileManager.default.attributesOfItem(atPath: "/proc/self/exe")[.size] as? UInt64) ?? 0
                let report = try installer.doctor(try flags.answers(), layout: flags.layout, releaseBytes: size)
                print(report.render(), terminator: "")
                guard report.passed else {
                    print("\(report.failures.count) check(s) failed: \(report.failures.map(\.name).joined(separator: ", ")).")
                    throw ExitCode(1)
                }
                print(report.warnings.isEmpty ? "Ready to install." : "Ready to install, with \(report.warnings.count) warning(s).")
            } catch let e as ExitCode {
                throw e
            } catch {
                throw fail(error)
            }
        }
    }
}
