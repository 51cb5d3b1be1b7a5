import IMCore
import IMStorage

/// Forwarding (docs/protocol.md, "Forwarding"): copies of messages the caller can read, sent to another
/// conversation as the caller's own messages, each checked exactly like a send.
extension IMService {
    static let maxForwardedMessages = 50

    func forward(_ user: UserID, to conv: ConversationID, _ body: API.Forward) async throws -> [ServerFrame.Ack] {
        guard (1...Self.maxForwardedMessages).contains(body.seqs.count) else {
            throw IMError.invalid("forward 1 to \(Self.maxForwardedMessages) messages at a time")
        }
        guard Set(body.seqs).count == body.seqs.count else { throw IMError.invalid("'seqs' names a message twice") }
        let several = body.seqs.count > 1
        guard !body.cid.isEmpty, body.cid.utf8.count <= Validation.maxClientIDLength - (several ? 3 : 0) else {
            throw IMError.invalid("cid must be 1 to \(Validation.maxClientIDLength - (several ? 3 : 0)) bytes (the copies are numbered cid/1, cid/2, …)")
        }
        // The target first (it may refuse everything: not a member, muted, blocked), then the source.
        try await checkNotMuted(user, conv, role: try await requireMember(user, conv))
        try await checkDirectBlock(conv: conv, sender: user)
        do { _ = try await requireMember(user, body.from) } catch let e as IMError where e.code == .notFound {
            throw IMError.notFound("no such conversation to forward from")
        }
        var originals: [Message] = []
        for seq in body.seqs {
            guard let m = try await storage.message(conversation: body.from, seq: seq), MessageKind.content.contains(m.kind), m.recalled != true else {
                throw IMError.notFound("message \(seq) cannot be forwarded: it does not exist, was recalled, or is not a text, custom or attachment message")
            }
            originals.append(m)
        }
        var prepared: [NewMessage] = []
        for (i, m) in originals.enumerated() {
            var attachment: String?
            if let ref = m.attachment {
                guard let rec = try await storage.attachment(id: ref.id) else {
                    throw IMError.notFound("the attachment of message \(m.seq) is gone; it cannot be forwarded")
                }
                attachment = try await attachments.forwardCopy(of: rec, into: conv, uploader: user).id
            }
            let send = ClientFrame.Send(cid: several ? "\(body.cid)/\(i + 1)" : body.cid, conv: conv, kind: m.kind, text: m.text,
                                        data: m.data, attachment: attachment)
            var message = try await prepare(send, from: user)
            message.forwardedFrom = m.forwardedFrom ?? ForwardedFrom(sender: m.sender, ts: m.ts)
            prepared.append(message)
        }
        var tickets: [AppendTicket] = []
        for m in prepared { tickets.append(await storage.submit(m)) }
        var acks: [ServerFrame.Ack] = []
        for (m, ticket) in zip(prepared, tickets) {
            let r = try await ticket.result().get()
            acks.append(ServerFrame.Ack(cid: m.cid, conv: conv, seq: r.message.seq, ts: r.message.ts, duplicate: r.duplicate))
        }
        return acks
    }
}
