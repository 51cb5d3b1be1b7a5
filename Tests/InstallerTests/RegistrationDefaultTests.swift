import Foundation
import Installer
import Testing

/// An open server lets anyone who reaches it make accounts: the install opens it only when asked.
@Suite struct RegistrationDefaultTests {
    @Test func registrationIsAdminUnlessTheOperatorOptsIn() throws {
        #expect(try InstallSettings(InstallAnswers()).registration == "admin")
        let host = try Host()
        try host.install()
        #expect(host.text(Paths.config)?.contains("registration: \"admin\"") == true)
        try host.install(.with { $0.registration = "open" })
        #expect(host.text(Paths.config)?.contains("registration: \"open\"") == true)
        #expect(try host.install().settings.registration == "open", "an operator's choice is kept by later runs")
    }

    @Test func anInstallThatNeverChoseIsToldWhenItCloses() throws {
        // An earlier release's install that took the old default: its config says open, its answers say nothing.
        let host = try Host()
        try host.install()
        let text = try #require(host.text(Paths.config)).replacingOccurrences(of: "registration: \"admin\"", with: "registration: \"open\"")
        host.system.setNode(Paths.config, .file(Data(text.utf8), mode: 0o640, owner: Owner("root", "warbler")))
        let outcome = try host.install()
        #expect(outcome.notes.contains { $0.contains("registration is now admin") })
        #expect(try host.install().notes.allSatisfy { !$0.contains("registration") }, "said once")
        #expect(try host.install(.with { $0.port = 9443 }).notes.allSatisfy { !$0.contains("registration") },
                "a later change of something else says nothing about it")
    }
}
