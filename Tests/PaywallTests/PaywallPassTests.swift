import GatewayCore
import Paywall
import Testing

@Suite("Paywall page of a route with passes")
struct PaywallPassTests {
    @Test("the page says what one payment opens, and for how long", arguments: [
        (RoutePass(seconds: 86_400), "One payment opens this page to you for 1 day."),
        (RoutePass(seconds: 2 * 3600, scope: .route), "One payment opens this page and the others like it to you for 2 hours."),
        (RoutePass(seconds: 90 * 60), "One payment opens this page to you for 90 minutes."),
        (RoutePass(seconds: 61), "One payment opens this page to you for 61 seconds."),
        (RoutePass(seconds: 7 * 86_400, scope: .route, group: "news"), "One payment opens this page and the others like it to you for 7 days."),
    ])
    func note(pass: RoutePass, text: String) {
        let html = PageFixture(pass: pass).render().html
        #expect(html.contains("<p class=\"note\" id=\"pass-note\">\(text)</p>"))
    }

    @Test("a route without passes says nothing about them; routes sharing offers keep their own notes")
    func noNote() {
        #expect(!PageFixture().render().html.contains("pass-note"))
        var compiler = PaywallCompiler(config: PaywallConfig())
        let with = PageFixture(pass: RoutePass(seconds: 60))
        let without = PageFixture()
        let a = compiler.page(route: with.route, challenge: with.challenge)!
        let b = compiler.page(route: without.route, challenge: without.challenge)!
        let json = with.challenge.paymentRequired(resourceURL: "http://x/weather", error: Challenge.defaultError)
        let render = { (page: PaywallPage) in String(decoding: page.render(paymentRequiredJSON: json, resourceURL: "http://x/weather", method: "GET").body, as: UTF8.self) }
        #expect(render(a).contains("id=\"pass-note\"") && !render(b).contains("id=\"pass-note\""))
    }
}
