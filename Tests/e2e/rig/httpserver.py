"""The threading HTTP server every rig process uses."""

from http.server import ThreadingHTTPServer


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # a restarted facilitator takes its old port back at once
    request_queue_size = 128  # 20 concurrent paid requests must not overflow the accept backlog
