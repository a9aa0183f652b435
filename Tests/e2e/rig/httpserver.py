"""The threading HTTP server, request handler base and command-line entry every rig process uses."""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # a restarted facilitator takes its old port back at once
    request_queue_size = 128  # 20 concurrent paid requests must not overflow the accept backlog


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1, quiet, with JSON and raw-bytes answers (no body for HEAD)."""

    protocol_version = "HTTP/1.1"

    def send_json(self, status: int, body, headers: list[tuple[str, str]] = ()) -> None:
        self.send_bytes(status, "application/json", json.dumps(body).encode(), headers)

    def send_bytes(self, status: int, content_type: str, data: bytes, headers: list[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, *args):
        pass


def arguments(doc: str, extra=None) -> argparse.Namespace:
    """`--host` and `--port` (default 0), plus whatever `extra(parser)` adds."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    if extra:
        extra(parser)
    return parser.parse_args()


def serve(server: Server, host: str) -> None:
    """Announces the bound address on stdout ("READY http://HOST:PORT") and serves forever."""
    print(f"READY http://{host}:{server.server_address[1]}", flush=True)
    server.serve_forever()
