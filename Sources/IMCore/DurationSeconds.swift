extension Duration {
    /// The duration in seconds, fractions included (for rates, jitter and APIs that take a Double).
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
