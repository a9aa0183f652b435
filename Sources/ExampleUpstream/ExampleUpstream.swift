import ArgumentParser
import Hummingbird
import NIOCore

/// A small API to put the gateway in front of: the quick start and the demo use it.
@main
struct ExampleUpstream: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "example-upstream", abstract: "A small example API for trying the gateway.")

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on.")
    var port = 8080

    func run() async throws {
        let router = Router()
        router.get("/weather") { _, _ -> Response in
            json(#"{"city":"Paris","temperatureC":18,"conditions":"partly cloudy"}"#)
        }
        router.get("/premium/report") { _, _ -> Response in
            json(#"{"report":"premium market report","items":[1,2,3]}"#)
        }
        router.get("/items/:id") { _, context -> Response in
            let id = context.parameters.get("id") ?? ""
            return json(#"{"item":"\#(id.filter { $0.isLetter || $0.isNumber })"}"#)
        }
        router.post("/v1/complete") { request, _ -> Response in
            // A metered answer for an `upto` route: the usage, and what to charge for it in the
            // header the official x402 SDK's servers use (the gateway strips it before the client).
            let prompt = try await request.body.collect(upTo: 64 * 1024)
            let tokens = 20 + prompt.readableBytes / 4
            var response = json(#"{"completion":"hello from the example model","usage":{"total_tokens":\#(tokens)}}"#)
            response.headers[.init("Settlement-Overrides")!] = #"{"amount":"\#(tokens * 10)"}"#
            return response
        }
        router.get("/public/hello") { _, _ -> Response in
            json(#"{"hello":"world"}"#)
        }
        router.get("/public/bytes/:count") { _, context -> Response in
            // Streams `count` bytes in 64 KiB chunks without holding them in memory.
            let total = context.parameters.get("count", as: Int.self) ?? 0
            return Response(
                status: .ok, headers: [.contentType: "application/octet-stream"],
                body: ResponseBody(contentLength: total) { writer in
                    let chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 64 * 1024)
                    var sent = 0
                    while sent < total {
                        let n = min(chunk.readableBytes, total - sent)
                        try await writer.write(chunk.getSlice(at: 0, length: n)!)
                        sent += n
                    }
                    try await writer.finish(nil)
                })
        }
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "example-upstream"))
        try await app.runService()
    }
}

func json(_ text: String) -> Response {
    Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
}
