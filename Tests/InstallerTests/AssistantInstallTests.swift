import Foundation
import Installer
import Testing

/// `install --ai-endpoint URL --ai-model NAME --ai-key-file FILE`: the AI assistant's settings in warbler.yaml and
/// its key copied into the install's secrets (0600, the service user's), kept across runs, never in the config.
@Suite struct AssistantInstallTests {
    static let key = "sk-install-test-5c1d"

    func hostWithKey() throws -> Host {
        let host = try Host()
        host.system.setNode("/root", .directory(mode: 0o700, owner: .root))
        host.system.setNode("/root/ai.key", .file(Data("  \(Self.key)\n\n".utf8), mode: 0o600, owner: .root))
        return host
    }

    @Test func theFlagsTurnTheAssistantOnWithTheKeyInTheSecrets() throws {
        let host = try hostWithKey()
        try host.install(.with { $0.aiEndpoint = "https://api.deepseek.com/v1"; $0.aiModel = "deepseek-chat"; $0.aiKeyFile = "/root/ai.key" })
        #expect(host.text(Paths.aiKey) == Self.key + "\n")
        #expect(host.system.node(Paths.aiKey).map(PlanTests.attributes) == "0600 warbler:warbler")
        let config = try #require(host.text(Paths.config))
        #expect(config.contains("""
            assistant:
              enabled: true
              endpoint: "https://api.deepseek.com/v1"
              model: "deepseek-chat"
              key_file: "/etc/warbler/secrets/ai.key"
            """))
        #expect(!config.contains(Self.key))

        // A later run without the key file keeps the installed copy and the assistant's settings.
        let again = try host.install(.with { $0.port = 9000 })
        #expect(host.text(Paths.aiKey) == Self.key + "\n")
        #expect(try #require(host.text(Paths.config)).contains(#"model: "deepseek-chat""#))
        #expect(!again.plan.isEmpty)

        // Empty values turn it off.
        try host.install(.with { $0.aiEndpoint = ""; $0.aiModel = "" })
        #expect(try #require(host.text(Paths.config)).contains("assistant:") == false)
    }

    @Test func anEndpointWithoutAKeyIsALocalModel() throws {
        let host = try Host()
        try host.install(.with { $0.aiEndpoint = "http://127.0.0.1:11434/v1"; $0.aiModel = "qwen2.5:7b" })
        let config = try #require(host.text(Paths.config))
        #expect(config.contains(#"endpoint: "http://127.0.0.1:11434/v1""#) && config.contains(#"key_file: """#))
        #expect(host.text(Paths.aiKey) == nil)
    }

    @Test func badAssistantAnswersAreRefusedByName() throws {
        for (answers, words) in [
            (InstallAnswers.with { $0.aiEndpoint = "https://api.openai.com/v1" }, "--ai-model"),
            (InstallAnswers.with { $0.aiEndpoint = "api.openai.com"; $0.aiModel = "m" }, "http(s) API base"),
            (InstallAnswers.with { $0.aiKeyFile = "/root/ai.key" }, "--ai-key-file needs"),
        ] {
            let e = try #require(throws: OptionsError.self) { try InstallSettings(answers) }
            #expect(e.description.contains(words), "\(e)")
        }
        let host = try Host()
        #expect(throws: OptionsError.self) {
            try host.install(.with { $0.aiEndpoint = "https://api.openai.com/v1"; $0.aiModel = "m"; $0.aiKeyFile = "/root/missing.key" })
        }
        let parsed = try InstallAnswers.parse(yaml: "ai_endpoint: https://api.openai.com/v1\nai_model: gpt-4o-mini\nai_key_file: /root/ai.key\n",
                                              source: "answers.yaml")
        #expect(parsed.aiEndpoint == "https://api.openai.com/v1" && parsed.aiModel == "gpt-4o-mini" && parsed.aiKeyFile == "/root/ai.key")
        #expect(parsed.persistent.aiKeyFile == nil && parsed.persistent.aiModel == "gpt-4o-mini")
    }
}
