"""pgAdmin 4 container contract, without pgAdmin: validate the start-up settings, then serve
/misc/ping (200, "PING") and a login placeholder on PGADMIN_LISTEN_ADDRESS:PGADMIN_LISTEN_PORT.

As in the real image's entrypoint the address defaults to ``[::]`` (gunicorn's
``--bind "${PGADMIN_LISTEN_ADDRESS:-[::]}:${PGADMIN_LISTEN_PORT:-80}"``) and nothing falls back
to IPv4: on a host without IPv6 the bind fails and the container exits, as pgAdmin does.

Like the real image, the first launch (no /var/lib/pgadmin/pgadmin4.db yet) requires
PGADMIN_DEFAULT_EMAIL and PGADMIN_DEFAULT_PASSWORD (or PGADMIN_DEFAULT_PASSWORD_FILE) and
loads PGADMIN_SERVER_JSON_FILE when it exists; a malformed file stops the container.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

DATA_DIR = Path("/var/lib/pgadmin")
CONFIG_DB = DATA_DIR / "pgadmin4.db"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z0-9-]{2,}$")
SPECIAL_DOMAINS = ("arpa", "invalid", "local", "localhost", "onion", "test")
REQUIRED_SERVER_KEYS = ("Name", "Group", "Port", "Username", "MaintenanceDB")


def fail(message: str) -> NoReturn:
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


def check_account() -> str:
    email = os.environ.get("PGADMIN_DEFAULT_EMAIL", "")
    password = os.environ.get("PGADMIN_DEFAULT_PASSWORD", "")
    password_file = os.environ.get("PGADMIN_DEFAULT_PASSWORD_FILE", "")
    if password_file and Path(password_file).is_file():
        password = Path(password_file).read_text().strip()
    if not email or not password:
        fail(
            "You need to define the PGADMIN_DEFAULT_EMAIL and PGADMIN_DEFAULT_PASSWORD or "
            "PGADMIN_DEFAULT_PASSWORD_FILE environment variables."
        )
    if not EMAIL.match(email) or email.rsplit(".", 1)[-1].lower() in SPECIAL_DOMAINS:
        fail(
            f"'{email}' does not appear to be a valid email address. Please reset the "
            "PGADMIN_DEFAULT_EMAIL environment variable and try again."
        )
    return email


def load_servers(path: Path) -> dict[str, Any]:
    """Parse and validate servers.json the way `setup.py load-servers` does."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        fail(f"Error parsing input file {path}: {error}")
    servers = data.get("Servers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        fail(f"Error parsing input file {path}: 'Servers' attribute not found.")
    for key, server in servers.items():
        missing = [k for k in REQUIRED_SERVER_KEYS if k not in server]
        if not any(k in server for k in ("Host", "HostAddr", "Service")):
            missing.append("Host, HostAddr or Service")
        if missing:
            fail(f"Error parsing input file {path}: server {key} lacks {', '.join(missing)}.")
        if not str(server["Port"]).isdigit():
            fail(f"Error parsing input file {path}: server {key} has an invalid Port.")
    return servers


def first_launch() -> None:
    email = check_account()
    servers: dict[str, Any] = {}
    server_json = Path(os.environ.get("PGADMIN_SERVER_JSON_FILE", "/pgadmin4/servers.json"))
    if server_json.is_file():
        servers = load_servers(server_json)
        print(f"Added {len(servers)} Server Group(s) and server(s) from {server_json}", flush=True)
    CONFIG_DB.write_text(json.dumps({"email": email, "servers": servers}))


class Handler(BaseHTTPRequestHandler):
    server_version = "pgAdmin4"

    def reply(self, status: int, body: bytes, content_type: str = "text/html") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 302:
            self.send_header("Location", "/login?next=/")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/misc/ping":
            self.reply(200, b"PING", "text/plain")
        elif path == "/login":
            self.reply(200, b"<!doctype html><title>pgAdmin 4</title><p>pgAdmin 4 login</p>\n")
        else:
            self.reply(302, b"")

    def do_HEAD(self) -> None:
        self.do_GET()


class DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def serve(address: str, port: int) -> None:
    host = address.strip("[]")
    server_class = DualStackServer if ":" in host else ThreadingHTTPServer
    try:
        httpd = server_class((host, port), Handler)
    except OSError as error:
        fail(f"[ERROR] Can't connect to ('{host}', {port}): {error}")

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"Listening at: http://{address}:{port}", flush=True)
    httpd.serve_forever()


def main() -> None:
    if not CONFIG_DB.exists():
        first_launch()
    default_port = "443" if os.environ.get("PGADMIN_ENABLE_TLS") else "80"
    address = os.environ.get("PGADMIN_LISTEN_ADDRESS", "[::]")
    serve(address, int(os.environ.get("PGADMIN_LISTEN_PORT", default_port)))


if __name__ == "__main__":
    main()
