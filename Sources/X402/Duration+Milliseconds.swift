extension Duration {
    /// Whole milliseconds (configured timeouts are converted once, for NIO's `TimeAmount`).
    public var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
