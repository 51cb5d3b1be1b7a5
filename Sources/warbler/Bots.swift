import ArgumentParser
import Foundation
import IMCore
import IMServer
import Logging

extension Warbler {
    /// `warbler bots …`: bot accounts, made on the server's database the way `user-add` makes the first admin.
    struct Bots: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create, list, rotate and revoke bot accounts (docs/bots.md).",
            subcommands: [Create.self, List.self, Rotate.self, Revoke.self])

        /// Opens the server's storage, runs `body`, and closes it; failures become one line and exit code 1.
        static func withRuntime(_ options: ConfigOptions, _ body: (ServerRuntime) async throws -> Void) async throws {
            do {
                let config = try options.load()
                let runtime = try await ServerRuntime.open(config: config, logger: Logger(label: "warbler.bots"))
                do { try await body(runtime) } catch {
                    try? await runtime.storage.close()
                    throw error
                }
                try await runtime.storage.close()
            } catch { throw fail(error) }
        }

        static func parseScopes(_ text: String?) throws -> [BotScope]? {
            guard let text else { return nil }
            switch BotScope.parse(text) {
            case .success(let s): return s
            case .failure(let e): throw ValidationError(e.message)
            }
        }

        static func describe(_ b: API.AdminBot) -> String {
            let token = b.tokenId.map { "token \($0) (\(b.scopes.map(\.rawValue).joined(separator: ",")))" } ?? "no live token"
            return "\(b.user.id)\t\(b.user.username)\t\(b.disabled ? "disabled" : "enabled")\t\(token)\t\(b.description)"
        }

        static func printCredentials(_ c: API.BotCredentials) {
            print("bot \(c.bot.user.username) (id \(c.bot.user.id)), scopes \(c.bot.scopes.map(\.rawValue).joined(separator: ","))")
            print("token (shown once; store it now): \(c.token)")
        }

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Create a bot and print its token (shown only this once).")
            @OptionGroup var options: ConfigOptions
            @Argument(help: "The bot's username (3-32 of a-z 0-9 . _ -).") var name: String
            @Option(help: "What the bot does (shown to admins).") var description: String?
            @Option(help: "The name shown in conversations (default: the username).") var displayName: String?
            @Option(help: "Comma-separated scopes: read, send, profile (default: all).") var scopes: String?

            func run() async throws {
                let scopes = try Bots.parseScopes(self.scopes)
                try await Bots.withRuntime(options) { runtime in
                    Bots.printCredentials(try await runtime.createBot(username: name, displayName: displayName, description: description,
                                                                      scopes: scopes))
                }
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List bots: id, username, state, token id and scopes, description.")
            @OptionGroup var options: ConfigOptions
            @Flag(help: "Print JSON.") var json = false

            func run() async throws {
                try await Bots.withRuntime(options) { runtime in
                    let bots = try await runtime.listBots()
                    if json {
                        let e = JSONEncoder()
                        e.outputFormatting = [.sortedKeys, .prettyPrinted]
                        print(String(decoding: try e.encode(bots), as: UTF8.self))
                    } else if bots.isEmpty {
                        print("no bots; create one with: warbler bots create NAME")
                    } else {
                        for b in bots { print(Bots.describe(b)) }
                    }
                }
            }
        }

        struct Rotate: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Issue a new token for a bot and revoke its old one.")
            @OptionGroup var options: ConfigOptions
            @Argument(help: "The bot's id or username.") var bot: String
            @Option(help: "Comma-separated scopes for the new token (default: the old token's).") var scopes: String?

            func run() async throws {
                let scopes = try Bots.parseScopes(self.scopes)
                try await Bots.withRuntime(options) { runtime in
                    Bots.printCredentials(try await runtime.rotateBotToken(id: try await Bots.resolve(bot, runtime), scopes: scopes))
                }
            }
        }

        struct Revoke: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Revoke a bot's token (its connections end; rotate to give it a new one).")
            @OptionGroup var options: ConfigOptions
            @Argument(help: "The bot's id or username.") var bot: String

            func run() async throws {
                try await Bots.withRuntime(options) { runtime in
                    let b = try await runtime.revokeBotTokens(id: try await Bots.resolve(bot, runtime))
                    print("revoked the tokens of bot \(b.user.username); its open connections close within bots.revocation_check_seconds")
                }
            }
        }

        static func resolve(_ text: String, _ runtime: ServerRuntime) async throws -> UserID {
            if let id = Int64(text) { return id }
            guard let u = try await runtime.storage.user(username: text.lowercased()), u.profile.kind == .bot else {
                throw IMError.notFound("no bot named '\(text)'; see warbler bots list")
            }
            return u.profile.id
        }
    }
}
