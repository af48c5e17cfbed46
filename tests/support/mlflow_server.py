"""A real ``mlflow server`` on a throwaway SQLite store, for tests that need tracking + registry."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.processes import ServerProcess, free_port, http_ok, running


@dataclass(frozen=True)
class MlflowServer:
    url: str
    process: ServerProcess


def mlflow_server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a lean test server: no job runner, no inherited tracking settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.update(extra or {})
    return env


@contextmanager
def start_mlflow_server(
    root: Path, artifacts_destination: str | None = None, env: Mapping[str, str] | None = None
) -> Iterator[MlflowServer]:
    """``mlflow server`` (one worker) on a SQLite store in ``root``, proxying artifacts to
    ``artifacts_destination`` (default: a folder in ``root``)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        artifacts_destination or str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    url = f"http://127.0.0.1:{port}"
    with running(
        "mlflow server",
        argv,
        root / "server.log",
        lambda: http_ok(f"{url}/health"),
        env=mlflow_server_env(env),
        cwd=root,
        timeout=120,
    ) as process:
        yield MlflowServer(url=url, process=process)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One server for the session, artifacts proxied to a local folder."""
    with start_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server
