#!/opt/minio/bin/python
"""`minio server DIR [--address :9000] [--console-address :9001]`, answered by moto.

The S3 API comes from moto's server application; MinIO's health endpoints are added in
front of it and the console port answers with a placeholder page. Like MinIO, the server
exits at once when it cannot write to one of its data directories.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

HEALTH_PATHS = {"/minio/health/live", "/minio/health/ready", "/minio/health/cluster"}


def split_address(address: str) -> tuple[str, int]:
    """':9000' -> ('0.0.0.0', 9000); 'host:9000' -> ('host', 9000)."""
    host, _, port = address.rpartition(":")
    return host or "0.0.0.0", int(port)


def check_credentials() -> None:
    """Refuse too-short root credentials with MinIO's rule (user >= 3, password >= 8 chars)."""
    user = os.environ.get("MINIO_ROOT_USER", "minioadmin")
    password = os.environ.get("MINIO_ROOT_PASSWORD", "minioadmin")
    if len(user) < 3 or len(password) < 8:
        sys.exit(
            "FATAL Unable to validate credentials inherited from the shell environment: "
            "MINIO_ROOT_USER length should be at least 3, "
            "and MINIO_ROOT_PASSWORD length at least 8 characters"
        )


def check_drives(dirs: list[str]) -> None:
    """Fail like MinIO when a data directory cannot be written (e.g. a root-owned volume)."""
    for directory in dirs:
        probe = Path(directory) / ".minio.sys" / "tmp" / f"probe-{os.getpid()}"
        try:
            probe.parent.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as error:
            sys.exit(
                f"FATAL Unable to use the drive {directory}: drive access denied "
                f"(uid {os.getuid()}): {error}"
            )


def with_health(app: Any) -> Any:
    """Answer MinIO's health checks before moto sees the request."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") in HEALTH_PATHS:
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        return app(environ, start_response)

    return wrapped


class ConsoleHandler(BaseHTTPRequestHandler):
    """A placeholder for the MinIO console: 200 with a short page for every GET."""

    def do_GET(self) -> None:
        body = b"<!doctype html><title>MinIO Console</title><p>MinIO Console</p>\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="minio")
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server")
    server.add_argument("dirs", nargs="+")
    server.add_argument("--address", default=":9000")
    server.add_argument("--console-address", default=":9001")
    args = parser.parse_args(argv)
    check_credentials()
    check_drives(args.dirs)

    host, port = split_address(args.address)
    s3 = make_server(
        host,
        port,
        with_health(DomainDispatcherApplication(create_backend_app)),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    console = ThreadingHTTPServer(split_address(args.console_address), ConsoleHandler)
    threading.Thread(target=console.serve_forever, daemon=True).start()

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"S3-API: http://{host}:{port}  Console: {args.console_address}", flush=True)
    s3.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
