"""An S3 server for native tests: the MinIO stand-in (moto's S3 API behind MinIO's command line
and health endpoints, ``tools/e2e/images/minio/minio.py``), the one the e2e ring runs in a
container.

moto keeps its buckets in memory: stopping the server loses them, which tests use to simulate a
storage service that comes back empty.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support import service_logs
from tools.processes import ServerProcess, environ_without, free_port, http_ok

MINIO_STAND_IN = (
    Path(__file__).resolve().parents[2] / "tools" / "e2e" / "images" / "minio" / "minio.py"
)
# moto accepts any credentials; fixed fake ones keep the environment of the test honest.
ACCESS_KEY = "native-test-access-key"
SECRET_KEY = "native-test-secret-key"


def s3_client(endpoint_url: str) -> Any:
    """A boto3 S3 client for ``endpoint_url`` (the server itself or a proxy in front of it)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )


@dataclass
class S3Server:
    """The stand-in listening on ``host:port`` (any loopback address); ``client()`` talks to it
    directly, not via nginx."""

    port: int
    log_path: Path
    host: str = "127.0.0.1"
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    process: ServerProcess | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if self.process is not None and self.process.popen.poll() is None:
            raise RuntimeError("the S3 server is already running")
        env = environ_without("AWS_", "MOTO_", "MINIO_")
        data = self.log_path.parent / f"minio-data-{self.host}-{self.port}"
        argv = [
            sys.executable, str(MINIO_STAND_IN), "server", str(data),
            "--address", f"{self.host}:{self.port}",
            "--console-address", f"{self.host}:{free_port()}",
        ]  # fmt: skip
        self.process = ServerProcess("S3 server (MinIO stand-in)", argv, self.log_path, env)
        self.process.wait_until(lambda: http_ok(f"{self.url}/minio/health/live"), timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def restart(self) -> None:
        """Stop and start on the same port; all buckets are gone afterwards."""
        self.stop()
        self.start()

    def client(self) -> Any:
        """A boto3 S3 client connected straight to this server."""
        return s3_client(self.url)

    def object_keys(self, bucket: str) -> list[str]:
        """Every key in ``bucket``."""
        paginator = self.client().get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=bucket)
            for item in page.get("Contents", [])
        ]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The S3 server for the session; restartable mid-test (its buckets do not survive a
    restart)."""
    server = S3Server(port=free_port(), log_path=tmp_path_factory.mktemp("s3") / "s3.log")
    server.start()
    service_logs.register("S3 server", server.log_path)
    try:
        yield server
    finally:
        service_logs.unregister("S3 server")
        server.stop()
