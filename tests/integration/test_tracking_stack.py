"""The tracking server as the image runs it: PostgreSQL backend, artifacts through nginx into S3.

Every client here knows only the tracking URL: no S3 endpoint and no keys in its environment.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from mlflow.store.db.utils import _get_latest_schema_revision
from mlflow.tracking import MlflowClient

from tests.support.postgres import MLFLOW_DB, MLFLOW_ROLE
from tests.support.tracking import TrackingStack

LARGE_ARTIFACT_BYTES = 50 * 1024 * 1024


def _client(stack: TrackingStack, monkeypatch: pytest.MonkeyPatch, proxied: bool) -> MlflowClient:
    for name in list(os.environ):
        if name.startswith(("AWS_", "MLFLOW_ENABLE_PROXY_MULTIPART", "MLFLOW_MULTIPART")):
            monkeypatch.delenv(name)
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    if proxied:
        monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")
        monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "false")
    return MlflowClient(tracking_uri=stack.url)


@pytest.fixture
def proxied_client(tracking_stack: TrackingStack, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """A client that moves every artifact byte through the tracking server."""
    return _client(tracking_stack, monkeypatch, proxied=True)


@pytest.fixture
def default_client(tracking_stack: TrackingStack, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """A client with MLflow 3.17's defaults, which follows the server's presigned S3 URLs."""
    return _client(tracking_stack, monkeypatch, proxied=False)


def _new_run(client: MlflowClient, prefix: str) -> tuple[str, str]:
    """(run id, artifact root key prefix in the bucket) of a fresh run in a fresh experiment."""
    experiment = client.create_experiment(f"{prefix}-{time.time_ns()}")
    run = client.create_run(experiment)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    return run.info.run_id, f"{experiment}/{run.info.run_id}/artifacts"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _requests(stack: TrackingStack, method: str, path: str) -> list[str]:
    """nginx access-log lines of ``method`` requests for ``path`` (with or without a query)."""
    return [line for line in stack.proxy.access_lines() if f'"{method} {path}' in line]


def test_first_start_creates_schema_and_bucket(tracking_stack: TrackingStack) -> None:
    log = tracking_stack.process.log_path.read_text()
    assert "empty database: creating MLflow tables" in log
    assert f"bucket '{tracking_stack.bucket}' created" in log
    revision = tracking_stack.postgres.query(
        "SELECT version_num FROM alembic_version", [], MLFLOW_DB
    )
    assert revision == [(_get_latest_schema_revision(),)]
    owners = tracking_stack.postgres.query(
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'", [], MLFLOW_DB
    )
    assert owners == [(MLFLOW_ROLE,)]
    tracking_stack.s3.client().head_bucket(Bucket=tracking_stack.bucket)


def test_artifact_goes_through_server_and_nginx_into_the_bucket(
    tracking_stack: TrackingStack, proxied_client: MlflowClient, tmp_path: Path
) -> None:
    run_id, root = _new_run(proxied_client, "proxy")
    source = tmp_path / "hello.txt"
    source.write_text("hello through nginx\n")
    proxied_client.log_artifact(run_id, str(source), artifact_path="notes")

    key = f"{root}/notes/hello.txt"
    assert [k for k in tracking_stack.s3.object_keys(tracking_stack.bucket) if run_id in k] == [key]
    assert _requests(tracking_stack, "PUT", f"/{tracking_stack.bucket}/{key} ")

    downloaded = proxied_client.download_artifacts(run_id, "notes/hello.txt", str(tmp_path / "d"))
    assert Path(downloaded).read_text() == "hello through nginx\n"
    server_log = tracking_stack.process.log_path.read_text()
    assert f"GET /api/2.0/mlflow-artifacts/artifacts/{key} " in server_log
    assert _requests(tracking_stack, "GET", f"/{tracking_stack.bucket}/{key}")


def test_large_artifact_round_trips_intact_through_the_server(
    tracking_stack: TrackingStack, proxied_client: MlflowClient, tmp_path: Path
) -> None:
    run_id, root = _new_run(proxied_client, "large")
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(LARGE_ARTIFACT_BYTES))
    proxied_client.log_artifact(run_id, str(source))

    key = f"{root}/model.bin"
    stored = tracking_stack.s3.client().head_object(Bucket=tracking_stack.bucket, Key=key)
    assert stored["ContentLength"] == LARGE_ARTIFACT_BYTES
    # boto3 in the server splits it into 8 MiB parts: bodies far above nginx's 1 MiB default.
    parts = _requests(tracking_stack, "PUT", f"/{tracking_stack.bucket}/{key}?")
    assert len(parts) == 7 and all("partNumber=" in line for line in parts)
    downloaded = Path(proxied_client.download_artifacts(run_id, "model.bin", str(tmp_path / "d")))
    assert _sha256(downloaded) == _sha256(source)


def test_default_client_uses_presigned_urls_on_the_servers_s3_endpoint(
    tracking_stack: TrackingStack,
    default_client: MlflowClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MLflow 3.17 advertises multipart transfer for S3 destinations: the client then downloads
    every file, and uploads files above MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE, straight to
    presigned URLs on MLFLOW_S3_ENDPOINT_URL. Clients need no keys, but must reach that URL."""
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(10 * 1024 * 1024))
    run_id, root = _new_run(default_client, "presigned")
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(25 * 1024 * 1024))
    default_client.log_artifact(run_id, str(source))

    key = f"{root}/weights.bin"
    parts = _requests(tracking_stack, "PUT", f"/{tracking_stack.bucket}/{key}?")
    assert len(parts) == 3 and all("X-Amz-Signature=" in line for line in parts)
    downloaded = Path(default_client.download_artifacts(run_id, "weights.bin", str(tmp_path / "d")))
    assert _sha256(downloaded) == _sha256(source)
    server_log = tracking_stack.process.log_path.read_text()
    assert f"GET /api/2.0/mlflow-artifacts/presigned/{key} " in server_log
    assert any(
        "X-Amz-Signature=" in line
        for line in _requests(tracking_stack, "GET", f"/{tracking_stack.bucket}/{key}?")
    )
