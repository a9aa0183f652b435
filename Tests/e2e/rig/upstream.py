"""The API behind the gateway, recording every request it receives.

    python -m rig.upstream [--port 0]     prints "READY http://127.0.0.1:PORT"

Routes (any method, any query string):
  /boom...      500 with a JSON error body
  /article...   200 text/html: a small page naming the payer (the browser paywall test shows it)
  /unique...    200 JSON {"path", "serial", "produced"}: a body no two requests share (replay tests)
  /events...    text/event-stream: ?n= events (default 5), one every ?interval= seconds (0.4),
                each written and flushed as it is produced, carrying its production time; with
                ?usage=N a last event {"usage": {"total_tokens": N}}
  ?size=N       (any other path) 200 text/plain of N bytes (metered upto routes)
  ?tokens=N     (any other path) 200 JSON {"path", "usage": {"total_tokens": N}} (metered upto routes)
  /__requests   the recorded requests as JSON (not itself recorded); DELETE clears them
  anything else 200 JSON {"path", "message", "payer"}
The JSON, HTML, sized and event answers carry one extra response field per `h=Name: value` in the
query string (e.g. `?h=Cache-Control:+public,+max-age%3D3600`), so a test can choose the upstream's
caching and CORS fields, or an `upto` usage report (`Settlement-Overrides`).
"""

from __future__ import annotations

import html
import json
import threading
import time
from urllib.parse import parse_qs, urlsplit

from .httpserver import Handler as BaseHandler, Server, arguments, serve


def make_server(host: str, port: int) -> Server:
    recorded: list[dict] = []
    lock = threading.Lock()
    serial = [0]

    class Handler(BaseHandler):
        def handle_any(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if url.path == "/__requests":
                if self.command == "DELETE":
                    with lock:
                        recorded.clear()
                with lock:
                    self.send_json(200, list(recorded))
                return
            with lock:
                recorded.append({
                    "method": self.command,
                    "path": url.path,
                    "query": url.query,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode("utf-8", "replace"),
                    "time": time.time(),
                })
            extra = [tuple(part.strip() for part in h.split(":", 1)) for h in parse_qs(url.query).get("h", []) if ":" in h]
            if url.path.startswith("/boom"):
                self.send_json(500, {"error": "upstream exploded"})
            elif url.path.startswith("/unique"):
                with lock:
                    serial[0] += 1
                    number = serial[0]
                self.send_json(200, {"path": url.path, "serial": number, "produced": time.time()}, extra)
            elif url.path.startswith("/events"):
                self.stream_events(parse_qs(url.query), extra)
            elif "size" in parse_qs(url.query):
                self.send_bytes(200, "text/plain", b"x" * int(parse_qs(url.query)["size"][0]), extra)
            elif "tokens" in parse_qs(url.query):
                tokens = int(parse_qs(url.query)["tokens"][0])
                self.send_json(200, {"path": url.path, "usage": {"total_tokens": tokens}}, extra)
            elif url.path.startswith("/article"):
                payer = html.escape(self.headers.get("X-Payment-Payer") or "nobody")
                self.send_bytes(200, "text/html; charset=utf-8", (
                    "<!doctype html><html lang=en><head><meta charset=utf-8><title>Premium article</title></head>"
                    "<body><h1 id=article-title>Premium article</h1>"
                    f"<p id=article-body>Paid content from the upstream, bought by <code>{payer}</code>.</p>"
                    "</body></html>").encode(), extra)
            else:
                self.send_json(200, {
                    "path": url.path,
                    "message": "hello from upstream",
                    "payer": self.headers.get("X-Payment-Payer"),
                }, extra)

        def stream_events(self, query: dict, extra: list[tuple[str, str]] = ()) -> None:
            count = int(query.get("n", ["5"])[0])
            interval = float(query.get("interval", ["0.4"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()
            usage = int(query["usage"][0]) if "usage" in query else None
            for i in range(count + (usage is not None)):
                if i:
                    time.sleep(interval)
                if i < count:
                    event = f"id: {i}\nevent: tick\ndata: {json.dumps({'i': i, 'produced': time.time()})}\n\n".encode()
                else:
                    event = f"event: usage\ndata: {json.dumps({'usage': {'total_tokens': usage}})}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any

    return Server((host, port), Handler)


def main() -> None:
    args = arguments(__doc__)
    serve(make_server(args.host, args.port), args.host)


if __name__ == "__main__":
    main()
