import Testing

extension String {
    /// Every occurrence of `target` replaced by `replacement`, for tests that edit a fixture (a YAML
    /// configuration, a JSON payload) by text. A `target` that does not occur is a test failure at
    /// the caller: an edit that silently does nothing would test the unedited fixture.
    ///
    /// Non-generic, so it is chosen over Foundation's generic method of the same name wherever a
    /// test module imports this one.
    public func replacingOccurrences(
        of target: String, with replacement: String, sourceLocation: SourceLocation = #_sourceLocation
    ) -> String {
        guard !target.isEmpty, contains(target) else {
            Issue.record("the text to replace does not occur: \(target.debugDescription)", sourceLocation: sourceLocation)
            return self
        }
        return split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
