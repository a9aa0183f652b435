"""A shared HTTP cache in front of the gateway: Debian's nginx with `proxy_cache`, the way a CDN
or a caching reverse proxy sits in front of an origin.

    cache = SharedCache.start(run_dir / "nginx", gateway_url, user=GATEWAY_USER)
    requests.get(cache.url + "/path")   # X-Cache-Status: MISS, HIT, BYPASS, ...
    cache.stop()

nginx honours the origin's `Cache-Control`/`Expires` (and refuses `private`/`no-store`), and keeps
200 answers that say nothing for 10 minutes (`proxy_cache_valid`), like a CDN caching `.pdf` or
`.mp4` by extension. Everything lives under one folder (configuration, pid file, temp paths, the
cache); nginx runs in the foreground in its own process group, as `user` when the rig runs as root
(so no `user` directive is needed), and listens on a free 127.0.0.1 port.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
from pathlib import Path

from .procs import Process

CONFIG = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 64; }}
http {{
  log_format cache '$request_method $request_uri $status $upstream_cache_status';
  access_log {dir}/access.log cache;
  client_body_temp_path {dir}/tmp/client_body;
  proxy_temp_path {dir}/tmp/proxy;
  fastcgi_temp_path {dir}/tmp/fastcgi;
  uwsgi_temp_path {dir}/tmp/uwsgi;
  scgi_temp_path {dir}/tmp/scgi;
  proxy_cache_path {dir}/cache levels=1:2 keys_zone=shared:1m max_size=16m inactive=10m use_temp_path=off;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass {origin};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache shared;
      proxy_cache_valid 200 10m;
      add_header X-Cache-Status $upstream_cache_status always;
    }}
  }}
}}
"""


def nginx_binary() -> str | None:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SharedCache:
    def __init__(self, proc: Process, port: int, folder: Path):
        self.proc, self.port, self.folder = proc, port, folder
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    def start(cls, folder: Path, origin: str, user: str | None = None, binary: str | None = None) -> "SharedCache":
        binary = binary or nginx_binary()
        if binary is None:
            raise RuntimeError("no nginx found (scripts/e2e.sh installs Debian's nginx)")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tmp").mkdir(exist_ok=True)
        port = free_port()
        config = folder / "nginx.conf"
        config.write_text(CONFIG.format(dir=folder, port=port, origin=origin))
        if user is not None:
            account = pwd.getpwnam(user)
            for path in [folder, *folder.rglob("*")]:
                os.chown(path, account.pw_uid, account.pw_gid)
        proc = Process("nginx", [binary, "-p", f"{folder}/", "-c", str(config), "-e", "stderr"], folder / "nginx.log",
                       ready=r"start worker process \d+", user=user)
        proc.start(timeout=30)
        return cls(proc, port, folder)

    def access_log(self) -> list[str]:
        path = self.folder / "access.log"
        return path.read_text().splitlines() if path.exists() else []

    def stop(self) -> None:
        self.proc.stop()
