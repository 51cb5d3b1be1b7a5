/// The facts about the host that preflight checks and the certificate need. `LiveHostProbe` reads them from the
/// machine; tests hand in a fake.
public protocol HostProbe: Sendable {
    func effectiveUserID() -> UInt32
    /// `uname`: the kernel (`Linux`) and the machine (`x86_64`).
    func kernelName() -> String
    func machine() -> String
    /// Whether systemd is PID 1 and booted the host (sd_booted: /run/systemd/system exists).
    func systemdIsRunning() -> Bool
    /// The name of PID 1 (for messages).
    func initProcessName() -> String?
    /// Bytes available to unprivileged writers on the filesystem holding `path` (or its closest existing parent).
    func freeBytes(at path: String) -> UInt64?
    /// MemTotal and MemAvailable, in bytes.
    func memory() -> (total: UInt64, available: UInt64)?
    /// Whether a TCP listener could bind `host:port` now.
    func canBind(host: String, port: Int) -> Bool
    /// The kernel's view of clock synchronisation (what `timedatectl` reports as NTPSynchronized);
    /// nil when it cannot be read.
    func clockSynchronized() -> Bool?
    func hostname() -> String
    /// Whether `name` resolves to an address on this host.
    func resolves(_ name: String) -> Bool
    /// The host's own non-loopback, non-link-local addresses.
    func addresses() -> [IPAddress]
}
