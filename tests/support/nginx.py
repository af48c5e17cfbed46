"""The project's nginx template, rendered for loopback ports and served by the real nginx binary.

The official nginx image renders ``/etc/nginx/templates/*.template`` with envsubst, replacing only
variables defined in its environment, and includes the result from its ``nginx.conf`` inside
``http {}``. :func:`render_template` applies the same substitution; :func:`top_level_config`
plays the role of the image's ``nginx.conf`` with every path in a temp directory, so no root is
needed (when the tests do run as root, workers stay root to reach the pytest temp directory).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from tests.support import service_logs
from tests.support.s3 import S3Server
from tools.processes import ServerProcess, free_ports, port_open, running

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "nginx" / "templates" / "default.conf.template"

# envsubst's shell format: $NAME or ${NAME}, NAME a shell identifier.
_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def render_template(text: str, env: Mapping[str, str]) -> str:
    """Replace ``$NAME`` / ``${NAME}`` for every NAME defined in ``env``; leave the rest as is."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return env[name] if name in env else match.group(0)

    return _REFERENCE.sub(substitute, text)


def top_level_config(root: Path) -> str:
    """An ``nginx.conf`` running in the foreground with its pid, logs and temp files in ``root``
    and including the rendered ``conf.d/*.conf`` inside ``http {}``."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = root / "temp"
    return f"""{user}daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 256; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {root}/conf.d/*.conf;
}}
"""


@dataclass(frozen=True)
class NginxProxy:
    """Proxy ports on 127.0.0.1 and the access log that records every proxied request."""

    s3_url: str
    console_url: str
    health_url: str
    access_log: Path
    process: ServerProcess

    def access_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []


def proxy_env(upstream_port: int, console_port: int, **overrides: str) -> dict[str, str]:
    """Template variables for a proxy on free loopback ports in front of 127.0.0.1 upstreams."""
    proxy_s3, proxy_console, proxy_health = free_ports(3)
    env = {
        "MINIO_HOST": "127.0.0.1",
        # Unused while MINIO_HOST is an address; a test that moves a name sets its DNS server.
        "NGINX_LOCAL_RESOLVERS": "127.0.0.1",
        "MINIO_S3_PORT": str(upstream_port),
        "MINIO_CONSOLE_PORT": str(console_port),
        "NGINX_S3_PORT": str(proxy_s3),
        "NGINX_CONSOLE_PORT": str(proxy_console),
        "NGINX_HEALTH_PORT": str(proxy_health),
        "NGINX_CLIENT_MAX_BODY_SIZE": "0",
        "NGINX_PROXY_TIMEOUT": "3600s",
    }
    env.update(overrides)
    return env


@contextmanager
def nginx_proxy(root: Path, env: Mapping[str, str]) -> Iterator[NginxProxy]:
    """Render the template with ``env`` into ``root`` and run nginx until the block ends."""
    (root / "conf.d").mkdir(parents=True, exist_ok=True)
    (root / "temp").mkdir(exist_ok=True)
    rendered = render_template(TEMPLATE.read_text(), env)
    (root / "conf.d" / "default.conf").write_text(rendered)
    config = root / "nginx.conf"
    config.write_text(top_level_config(root))
    argv = ["nginx", "-p", str(root), "-c", str(config), "-e", "stderr"]
    health = f"http://127.0.0.1:{env['NGINX_HEALTH_PORT']}/nginx-health"
    # nginx is up once it listens; its health endpoint is green only while MinIO answers too.
    listening = partial(port_open, int(env["NGINX_HEALTH_PORT"]))
    with running("nginx", argv, root / "nginx.log", listening, timeout=30) as process:
        yield NginxProxy(
            s3_url=f"http://127.0.0.1:{env['NGINX_S3_PORT']}",
            console_url=f"http://127.0.0.1:{env['NGINX_CONSOLE_PORT']}",
            health_url=health,
            access_log=root / "access.log",
            process=process,
        )


@pytest.fixture(scope="session")
def s3_proxy(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProxy]:
    """nginx with the project's template in front of the S3 server (console upstream: the same
    server's S3 port)."""
    root = tmp_path_factory.mktemp("nginx")
    with nginx_proxy(root, proxy_env(s3_server.port, s3_server.port)) as proxy:
        service_logs.register("nginx", root / "nginx.log")
        try:
            yield proxy
        finally:
            service_logs.unregister("nginx")
