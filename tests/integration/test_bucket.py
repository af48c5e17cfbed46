"""Bucket preparation through the nginx proxy: waiting for S3, creating, finding it again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.nginx import nginx_proxy, proxy_env
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Server
from tools.processes import free_port
from tracking_server.errors import StartupError
from tracking_server.settings import TrackingServerSettings
from tracking_server.storage import ensure_bucket


def _settings(endpoint: str, **extra: object) -> TrackingServerSettings:
    return TrackingServerSettings(
        MLFLOW_DB_PASSWORD="unused",
        MLFLOW_ARTIFACTS_BUCKET="bucket-test",
        MLFLOW_S3_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        **extra,
    )


def test_bucket_waits_for_s3_behind_the_proxy_then_is_created_once(tmp_path: Path) -> None:
    s3 = S3Server(port=free_port(), log_path=tmp_path / "s3.log")
    with nginx_proxy(tmp_path / "nginx", proxy_env(s3.port, s3.port)) as proxy:
        reports: list[str] = []
        with pytest.raises(StartupError, match=r"not ready after 3s: HTTP 502"):
            ensure_bucket(_settings(proxy.s3_url, MLFLOW_S3_WAIT_TIMEOUT=3), reports.append)
        assert reports[0].startswith("S3 endpoint not ready (attempt 1): HTTP 502")

        s3.start()
        try:
            reports.clear()
            ensure_bucket(_settings(proxy.s3_url), reports.append)
            ensure_bucket(_settings(proxy.s3_url), reports.append)
            assert reports == [
                f"bucket 'bucket-test' created at {proxy.s3_url}",
                f"bucket 'bucket-test' exists at {proxy.s3_url}",
            ]
            s3.client().head_bucket(Bucket="bucket-test")
        finally:
            s3.stop()


def test_unreachable_endpoint_is_named_in_the_error() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StartupError, match=rf"S3 endpoint {endpoint} not ready after 1s"):
        ensure_bucket(_settings(endpoint, MLFLOW_S3_WAIT_TIMEOUT=1), lambda _: None)
