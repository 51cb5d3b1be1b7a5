import Foundation
import Installer
import Testing

@Suite struct OptionsTests {
    @Test func anAnswersFileSetsEveryAnswer() throws {
        let a = try InstallAnswers.parse(yaml: """
            host: 10.0.0.5
            port: 443
            metrics_port: 9100
            domains: [chat.example.com, im.example.com]
            registration: admin
            admin_user: boss
            log_level: debug
            init: builtin
            skip_checks: [clock]
            min_free_disk_mb: 2048
            """, source: "answers.yaml")
        let s = try InstallSettings(a)
        #expect(s.host == "10.0.0.5" && s.port == 443 && s.metricsPort == 9100)
        #expect(s.domains == ["chat.example.com", "im.example.com"])
        #expect(s.registration == "admin" && s.adminUser == "boss" && s.logLevel == "debug")
        #expect(s.initSystem == .builtin && s.skipChecks == ["clock"] && s.minFreeDiskMB == 2048)
        #expect(s.tls == .internalCA)
    }

    @Test func unknownAnswersAndWrongTypesAreRefusedByName() throws {
        let unknown = try #require(throws: OptionsError.self) { try InstallAnswers.parse(yaml: "prot: 80\n", source: "a.yaml") }
        #expect(unknown.description.contains("unknown answer 'prot'"))
        let wrong = try #require(throws: OptionsError.self) { try InstallAnswers.parse(yaml: "port: lots\n", source: "a.yaml") }
        #expect(wrong.description.contains("port"))
    }

    @Test func flagsOverrideTheFileWhichOverridesThePreviousRun() throws {
        let previous = InstallAnswers.with { $0.port = 1111; $0.domains = ["old.example"]; $0.registration = "admin" }
        let file = InstallAnswers.with { $0.port = 2222; $0.domains = ["file.example"] }
        let flags = InstallAnswers.with { $0.port = 3333 }
        let s = try InstallSettings(flags.over(file.over(previous)))
        #expect(s.port == 3333 && s.domains == ["file.example"] && s.registration == "admin")
    }

    @Test func everyBadValueIsReportedTogether() throws {
        let e = try #require(throws: OptionsError.self) {
            try InstallSettings(.with { $0.port = 70000; $0.registration = "sometimes"; $0.tlsCert = "/x.crt"; $0.domains = ["bad_name"] })
        }
        for needle in ["port 70000", "registration", "--tls-key", "bad_name"] { #expect(e.description.contains(needle), "\(needle)") }
    }

    @Test func oneRunChoicesAreNotInherited() {
        let a = InstallAnswers.with { $0.port = 9000; $0.skipChecks = ["ports"]; $0.adminPasswordFile = "/root/pw" }
        #expect(a.persistent.port == 9000)
        #expect(a.persistent.skipChecks == nil && a.persistent.adminPasswordFile == nil)
    }
}
