"""An S3 server for native tests: moto in server mode, the stand-in for MinIO.

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
from tests.support.processes import ServerProcess, environ_without, free_port, http_ok

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
    """moto listening on 127.0.0.1:``port``; ``client()`` talks to it directly, not via nginx."""

    port: int
    log_path: Path
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    process: ServerProcess | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.process is not None and self.process.popen.poll() is None:
            raise RuntimeError("the S3 server is already running")
        env = environ_without("AWS_", "MOTO_")
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = ServerProcess("moto S3 server", argv, self.log_path, env)
        self.process.wait_until(lambda: http_ok(f"{self.url}/moto-api/"), timeout=30)

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
    """moto S3 for the session; restartable mid-test (its buckets do not survive a restart)."""
    server = S3Server(port=free_port(), log_path=tmp_path_factory.mktemp("s3") / "moto.log")
    server.start()
    service_logs.register("S3 server", server.log_path)
    try:
        yield server
    finally:
        service_logs.unregister("S3 server")
        server.stop()
