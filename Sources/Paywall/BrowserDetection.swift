/// Who gets the HTML page: a request that accepts `text/html` from a browser-like user agent
/// (the same test the x402 SDKs use, with `Mozilla/` as the browser mark). Everything else, and
/// every programmatic client, gets the JSON 402.
public enum BrowserDetection {
    public static func wantsPaywall(accept: String?, userAgent: String?) -> Bool {
        guard let accept, let userAgent else { return false }
        return accept.contains("text/html") && userAgent.contains("Mozilla/")
    }
}
