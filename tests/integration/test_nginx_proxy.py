"""nginx/templates/default.conf.template rendered as the nginx image does, served by real nginx."""

from __future__ import annotations

import http.client
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.nginx import TEMPLATE, NginxProxy, nginx_proxy, proxy_env, render_template
from tests.support.s3 import S3Server, s3_client
from tools.processes import free_port

BIG_BODY = 20 * 1024 * 1024


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with the headers it received, as JSON."""

    def do_GET(self) -> None:
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echo_upstream() -> Iterator[int]:
    """An HTTP server standing in for MinIO that shows what nginx forwarded; yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _forwarded_headers(url: str, headers: dict[str, str]) -> dict[str, str]:
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    try:
        connection.request("GET", "/bucket/key", headers=headers)
        response = connection.getresponse()
        assert response.status == 200
        forwarded: dict[str, str] = json.loads(response.read())
        return forwarded
    finally:
        connection.close()


def test_renderer_substitutes_only_defined_variables() -> None:
    text = "listen ${PORT}; proxy_set_header Host $http_host; server ${UNSET}:$PORT;"
    rendered = render_template(text, {"PORT": "9000"})
    assert rendered == "listen 9000; proxy_set_header Host $http_host; server ${UNSET}:9000;"


def test_template_uses_only_documented_variables() -> None:
    rendered = render_template(TEMPLATE.read_text(), proxy_env(9000, 9001))
    assert "${" not in rendered


def test_health_endpoint_checks_minio_through_the_proxy(s3_proxy: NginxProxy) -> None:
    connection = http.client.HTTPConnection(s3_proxy.health_url.split("/")[2], timeout=10)
    try:
        connection.request("GET", "/nginx-health")
        response = connection.getresponse()
        response.read()
        assert response.status == 200  # and 502 once MinIO is gone: test_nginx_follows_minio
        connection.request("GET", "/")
        assert connection.getresponse().status == 404
    finally:
        connection.close()


def test_s3_api_keeps_the_signed_host_header(tmp_path: Path, echo_upstream: int) -> None:
    with nginx_proxy(tmp_path, proxy_env(echo_upstream, echo_upstream)) as proxy:
        host = proxy.s3_url.removeprefix("http://")
        forwarded = _forwarded_headers(proxy.s3_url, {"Host": host})
    assert forwarded["host"] == host
    assert forwarded["x-forwarded-for"] == "127.0.0.1"


def test_console_passes_websocket_upgrades(tmp_path: Path, echo_upstream: int) -> None:
    with nginx_proxy(tmp_path, proxy_env(echo_upstream, echo_upstream)) as proxy:
        forwarded = _forwarded_headers(
            proxy.console_url, {"Upgrade": "websocket", "Connection": "Upgrade"}
        )
    assert forwarded["upgrade"] == "websocket"
    assert forwarded["connection"].lower() == "upgrade"


def test_large_single_put_passes_the_default_proxy(
    s3_server: S3Server, s3_proxy: NginxProxy
) -> None:
    client = s3_client(s3_proxy.s3_url)
    client.create_bucket(Bucket="nginx-big-put")
    body = os.urandom(BIG_BODY)
    client.put_object(Bucket="nginx-big-put", Key="blob", Body=body)
    assert client.get_object(Bucket="nginx-big-put", Key="blob")["Body"].read() == body
    assert s3_server.client().head_object(Bucket="nginx-big-put", Key="blob")["ContentLength"] == (
        BIG_BODY
    )


def test_body_limit_is_configurable(s3_server: S3Server, tmp_path: Path) -> None:
    env = proxy_env(s3_server.port, s3_server.port, NGINX_CLIENT_MAX_BODY_SIZE="1m")
    with nginx_proxy(tmp_path, env) as proxy:
        client = s3_client(proxy.s3_url)
        client.create_bucket(Bucket="nginx-limited")
        with pytest.raises(ClientError, match="413"):
            client.put_object(Bucket="nginx-limited", Key="blob", Body=os.urandom(2 * 1024 * 1024))
