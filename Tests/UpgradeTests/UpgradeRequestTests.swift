import Crypto
import Foundation
import Testing
@testable import Upgrade

/// The receiver's check of a signed order, as a pure function.
@Suite struct UpgradeRequestTests {
    static let ca = P256.Signing.PrivateKey()
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
    static let digest = String(repeating: "ab", count: 32)

    static func order(_ action: UpgradeRequest.Action = .receive, node: String = "warbler-2", time: Date = now,
                      nonce: String = "00112233445566778899aabbccddeeff") -> UpgradeRequest {
        action == .return
            ? UpgradeRequest(node: node, action: .return, version: "1.0.0", nonce: nonce, time: time)
            : UpgradeRequest(node: node, action: action, version: "1.1.0", build: "b1", sha256: digest, length: 1000, nonce: nonce, time: time)
    }

    static func check(_ signed: SignedUpgradeRequest, _ action: UpgradeRequest.Action = .receive, now: Date = now,
                      nonces: inout NonceWindow) -> Result<UpgradeRequest, UpgradeRequestRefusal> {
        UpgradeRequestCheck.check(header: signed.header, signature: signed.signature, caKey: ca.publicKey, node: "warbler-2",
                                  action: action, now: now, nonces: &nonces)
    }

    static func code(_ r: Result<UpgradeRequest, UpgradeRequestRefusal>) -> UpgradeRequestRefusal.Code? {
        if case .failure(let f) = r { return f.code }
        return nil
    }

    @Test func aGoodOrderIsAcceptedOnceAndItsNonceRemembered() throws {
        var nonces = NonceWindow()
        let signed = try Self.order().signed(with: Self.ca)
        #expect(try Self.check(signed, nonces: &nonces).get() == Self.order())
        #expect(nonces.until["00112233445566778899aabbccddeeff"] == 1_800_000_300)
        #expect(Self.code(Self.check(signed, nonces: &nonces)) == .replayed)
        // A new nonce is a new order.
        #expect((try? Self.check(try Self.order(nonce: "ffeeddccbbaa99887766554433221100").signed(with: Self.ca), nonces: &nonces).get()) != nil)
    }

    @Test func anOrderSignedWithAnotherKeyIsRefusedBeforeItsHeaderIsRead() throws {
        var nonces = NonceWindow()
        let other = try Self.order().signed(with: P256.Signing.PrivateKey())
        #expect(Self.code(Self.check(other, nonces: &nonces)) == .badSignature)
        // A valid signature moved onto another header.
        var swapped = try Self.order().signed(with: Self.ca)
        swapped.header = try Self.order(.switch).signed(with: Self.ca).header
        swapped.signature = try Self.order().signed(with: Self.ca).signature
        #expect(Self.code(Self.check(swapped, nonces: &nonces)) == .badSignature)
        #expect(nonces.until.isEmpty)
    }

    @Test func anOrderForAnotherNodeOrAnotherActionIsRefused() throws {
        var nonces = NonceWindow()
        #expect(Self.code(Self.check(try Self.order(node: "warbler-3").signed(with: Self.ca), nonces: &nonces)) == .otherNode)
        #expect(Self.code(Self.check(try Self.order(.receive).signed(with: Self.ca), .switch, nonces: &nonces)) == .wrongAction)
        #expect(Self.code(Self.check(try Self.order(.return).signed(with: Self.ca), .receive, nonces: &nonces)) == .wrongAction)
        #expect(nonces.until.isEmpty)
    }

    @Test func anOrderOutsideFiveMinutesIsRefused() throws {
        var nonces = NonceWindow()
        #expect(Self.code(Self.check(try Self.order(time: Self.now.addingTimeInterval(-301)).signed(with: Self.ca), nonces: &nonces)) == .stale)
        #expect(Self.code(Self.check(try Self.order(time: Self.now.addingTimeInterval(301)).signed(with: Self.ca), nonces: &nonces)) == .stale)
        #expect((try? Self.check(try Self.order(time: Self.now.addingTimeInterval(-299)).signed(with: Self.ca), nonces: &nonces).get()) != nil)
    }

    @Test func aNonceIsForgottenOnlyAfterTheWindow() throws {
        var nonces = NonceWindow()
        let signed = try Self.order().signed(with: Self.ca)
        _ = try Self.check(signed, nonces: &nonces).get()
        // Within the window it is a replay; after it, the order is stale anyway.
        #expect(Self.code(Self.check(signed, now: Self.now.addingTimeInterval(300), nonces: &nonces)) == .replayed)
        #expect(Self.code(Self.check(signed, now: Self.now.addingTimeInterval(301), nonces: &nonces)) == .stale)
    }

    @Test func malformedOrdersAreRefused() throws {
        var nonces = NonceWindow()
        func signedRaw(_ json: String) throws -> SignedUpgradeRequest {
            let header = Data(json.utf8).base64EncodedString()
            return SignedUpgradeRequest(header: header, signature: try Self.ca.signature(for: Data(header.utf8)).derRepresentation.base64EncodedString())
        }
        #expect(Self.code(UpgradeRequestCheck.check(header: nil, signature: "x", caKey: Self.ca.publicKey, node: "warbler-2", action: .receive,
                                                    now: Self.now, nonces: &nonces)) == .missing)
        #expect(Self.code(Self.check(SignedUpgradeRequest(header: "abc", signature: "not base64!"), nonces: &nonces)) == .malformed)
        #expect(Self.code(Self.check(try signedRaw("{not json"), nonces: &nonces)) == .malformed)
        #expect(Self.code(Self.check(try signedRaw(#"{"node":"warbler-2","action":"erase"}"#), nonces: &nonces)) == .malformed)
        // Well-formed JSON whose fields could name a path, or no file.
        var o = Self.order(); o.version = "../../etc"
        #expect(Self.code(Self.check(try o.signed(with: Self.ca), nonces: &nonces)) == .invalid)
        o = Self.order(); o.sha256 = "../" + String(repeating: "a", count: 61)
        #expect(Self.code(Self.check(try o.signed(with: Self.ca), nonces: &nonces)) == .invalid)
        o = Self.order(); o.sha256 = Self.digest.uppercased()
        #expect(Self.code(Self.check(try o.signed(with: Self.ca), nonces: &nonces)) == .invalid)
        o = Self.order(); o.length = 0
        #expect(Self.code(Self.check(try o.signed(with: Self.ca), nonces: &nonces)) == .invalid)
        o = Self.order(); o.nonce = "short"
        #expect(Self.code(Self.check(try o.signed(with: Self.ca), nonces: &nonces)) == .invalid)
        #expect(nonces.until.isEmpty)
    }
}
