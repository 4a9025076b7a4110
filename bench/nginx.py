"""nginx in front of a service: the reference hop the gateway target is set against.

The issue's gateway target ("≥ 0.75 × direct, p50 ≤ 1.3 ×") is "what one nginx hop achieves
here". Measuring nginx in the same run, in front of the same service, shows what one hop
costs on the machine as it is that day, next to what the gateway costs.

nginx runs from a temp prefix with its own configuration (never the system's), in the
foreground (``daemon off``) in its own process group, bound to a free loopback port, and is
stopped like every other bench process. It keeps a pool of connections to the service, and
sends it the same headers the gateway does, so the service does the same work behind both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import HOST, BenchError, free_port, running, wait_http


@dataclass(frozen=True)
class Hop:
    url: str
    pid: int


CONFIG = """
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  upstream service {{ server {upstream}; keepalive 64; }}
  server {{
    listen {host}:{port};
    location /api/{name}/ {{
      proxy_pass http://service/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Prefix /api/{name};
      proxy_set_header X-Request-ID $request_id;
    }}
  }}
}}
"""


def ensure_nginx() -> str:
    """Return the nginx binary; install nginx-light with apt-get only if absent and root."""
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                     else None)
    if path:
        return path
    if os.geteuid() != 0:
        raise BenchError("nginx is not installed and we are not root (apt-get install nginx)")
    proc = subprocess.run(["apt-get", "install", "-y", "nginx-light"], capture_output=True,
                          text=True, timeout=300, check=False)
    path = shutil.which("nginx") or "/usr/sbin/nginx"
    if proc.returncode != 0 or not os.path.exists(path):
        raise BenchError(f"apt-get install -y nginx-light failed: {proc.stderr.strip()[-300:]}")
    return path


@contextlib.contextmanager
def in_front(upstream: str, name: str, route: str, prefix: Path, log: Path,
             workers: int = 2) -> Iterator[Hop]:
    """nginx proxying ``/api/<name>/…`` to ``upstream`` (host:port); yields the URL of
    ``route`` through it and the master's pid (its workers are its children)."""
    binary = ensure_nginx()
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(CONFIG.format(workers=workers, prefix=prefix, upstream=upstream,
                                  host=HOST, port=port, name=name))
    with running([binary, "-p", str(prefix), "-c", str(conf)], log) as proc:
        url = f"http://{HOST}:{port}/api/{name}{route}"
        try:
            wait_http(url, timeout=30, proc=proc.popen)
        except BenchError as exc:
            raise BenchError(f"{exc}; log tail: {proc.tail(600)}") from exc
        yield Hop(url, proc.pid)
