import IMCore

/// Where an ``IMConnection`` stands.
public enum IMConnectionState: Sendable, Hashable {
    /// Opening the socket, authenticating and syncing.
    case connecting
    /// Authenticated and caught up: every missed message has been delivered as `.message` events.
    case connected
    /// Not connected; `reason` says why. The connection may be about to retry (a `.connecting` follows).
    case disconnected(reason: String)
}

/// Something an ``IMConnection`` reports on its `events` stream.
public enum IMEvent: Sendable, Hashable {
    /// A message, exactly once and in seq order per conversation (including the user's own, from any device).
    case message(Message)
    /// The server stored one of this connection's sends/recalls/edits (also returned to the awaiting caller).
    case ack(ServerFrame.Ack)
    /// A member's delivered/read position changed.
    case receipt(ServerFrame.Receipt)
    /// A member started or stopped typing.
    case typing(ServerFrame.Typing)
    /// A user came online or went offline.
    case presence(ServerFrame.Presence)
    /// The user saved a draft on one of their devices (this one included); an empty `text` means it was deleted.
    case draft(Draft)
    /// An error frame from the server (errors answering a send are also thrown to that send's caller).
    case error(ServerFrame.ErrorFrame)
    /// The connection state changed.
    case connectionState(IMConnectionState)
}
