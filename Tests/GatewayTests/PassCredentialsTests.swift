import Gateway
import NIOHTTP1
import Testing

@Suite("Route passes: where a request carries them, and what is forwarded")
struct PassCredentialsTests {
    static let ours = "x402-pass-aaaaaaaaaaaa"
    static let theirs = "x402-pass-bbbbbbbbbbbb"

    func tokens(_ fields: [(String, String)], cookie: String? = ours) -> [String] {
        PassCredentials.tokens(in: HTTPHeaders(fields), cookieName: cookie).map(String.init)
    }

    @Test("the route's own cookie, in any Cookie field, spaced or quoted; other routes' pass cookies are not presented")
    func cookies() {
        #expect(tokens([("Cookie", "a=1; \(Self.ours)=x402pass1.k.c.m; b=2")]) == ["x402pass1.k.c.m"])
        #expect(tokens([("cookie", "\(Self.ours)=\"x402pass1.q.c.m\"")]) == ["x402pass1.q.c.m"])
        #expect(tokens([("Cookie", "a=1"), ("Cookie", "  \(Self.ours)=one ;\(Self.ours)=two")]) == ["one", "two"])
        #expect(tokens([("Cookie", "\(Self.theirs)=x402pass1.k.c.m")]).isEmpty)
        #expect(tokens([("Cookie", "\(Self.ours)x=1; x\(Self.ours)=2; \(Self.ours)")]).isEmpty)
        #expect(tokens([("Cookie", "\(Self.ours)=x402pass1.k.c.m")], cookie: nil).isEmpty)
    }

    @Test("a bearer pass (scheme in any case) and PAYMENT-PASS; any other Authorization is not a pass")
    func headers() {
        #expect(tokens([("Authorization", "Bearer x402pass1.k.c.m")]) == ["x402pass1.k.c.m"])
        #expect(tokens([("authorization", "  bEaReR   x402pass1.k.c.m ")]) == ["x402pass1.k.c.m"])
        #expect(tokens([("Authorization", "Bearer eyJhbGciOi.jwt.token")]).isEmpty)
        #expect(tokens([("Authorization", "Basic eDQwMnBhc3Mx")]).isEmpty)
        #expect(tokens([("PAYMENT-PASS", " x402pass1.k.c.m")]) == ["x402pass1.k.c.m"])
        #expect(tokens([("Cookie", "\(Self.ours)=c"), ("Authorization", "Bearer x402pass1.a"), ("Payment-Pass", "p")])
            == ["c", "x402pass1.a", "p"])
    }

    @Test("at most eight passes are read from one request (each costs an HMAC)")
    func bounded() {
        let many = (0..<20).map { "\(Self.ours)=t\($0)" }.joined(separator: "; ")
        #expect(tokens([("Cookie", many), ("PAYMENT-PASS", "late")]).count == PassCredentials.maxTokens)
    }

    @Test("forwarded upstream: pass cookies cut out (every route's), a pass Authorization dropped, everything else as it was")
    func forwarded() {
        #expect(PassCredentials.forwarded(name: "Cookie", value: "a=1; \(Self.ours)=t; \(Self.theirs)=u;b=2") == "a=1; b=2")
        #expect(PassCredentials.forwarded(name: "cookie", value: "\(Self.ours)=t") == nil)
        #expect(PassCredentials.forwarded(name: "Cookie", value: "session=abc;  theme=dark") == "session=abc;  theme=dark")
        #expect(PassCredentials.forwarded(name: "Authorization", value: "Bearer x402pass1.k.c.m") == nil)
        #expect(PassCredentials.forwarded(name: "Authorization", value: "Bearer upstream-token") == "Bearer upstream-token")
        #expect(PassCredentials.forwarded(name: "X-Other", value: "x402-pass-aaaaaaaaaaaa=t") == "x402-pass-aaaaaaaaaaaa=t")
    }
}
