"""The tracking server started natively through the image's entrypoint (``tracking-server``).

It logs in to the PostgreSQL fixture as the init scripts' ``mlflow`` role and reaches S3 only
through the nginx proxy: the topology of the compose stack, MinIO replaced by its stand-in.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import service_logs
from tests.support.nginx import NginxProxy, nginx_proxy, proxy_env
from tests.support.postgres import (
    MLFLOW_DB,
    MLFLOW_ROLE,
    PostgresCluster,
    create_cluster,
    destroy_cluster,
)
from tests.support.s3 import S3Server
from tools.processes import ServerProcess, environ_without, free_port, http_ok, running

ENTRYPOINT = str(Path(sys.executable).with_name("tracking-server"))
BUCKET = "mlflow-artifacts"
START_TIMEOUT = 180.0


@dataclass(frozen=True)
class TrackingStack:
    """A running tracking server and the services behind it."""

    url: str
    env: dict[str, str] = field(repr=False)
    process: ServerProcess = field(repr=False)
    postgres: PostgresCluster
    s3: S3Server
    proxy: NginxProxy
    bucket: str = BUCKET


def tracking_env(
    postgres: PostgresCluster, s3: S3Server, proxy: NginxProxy, port: int, **overrides: str
) -> dict[str, str]:
    """Entrypoint environment: no inherited MLflow/AWS settings, one worker, no job runner."""
    env = environ_without("MLFLOW_", "AWS_")
    env.update(
        {
            "MLFLOW_DB_HOST": postgres.host,
            "MLFLOW_DB_PORT": str(postgres.port),
            "MLFLOW_DB_NAME": MLFLOW_DB,
            "MLFLOW_DB_USER": MLFLOW_ROLE,
            "MLFLOW_DB_PASSWORD": postgres.mlflow_password,
            "MLFLOW_DB_WAIT_TIMEOUT": "30",
            "MLFLOW_ARTIFACTS_BUCKET": BUCKET,
            "MLFLOW_S3_ENDPOINT_URL": proxy.s3_url,
            "MLFLOW_S3_WAIT_TIMEOUT": "30",
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "MLFLOW_HOST": "127.0.0.1",
            "MLFLOW_PORT": str(port),
            "MLFLOW_WORKERS": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
    )
    env.update(overrides)
    return env


def server_url(env: Mapping[str, str]) -> str:
    return f"http://127.0.0.1:{env['MLFLOW_PORT']}"


@contextmanager
def tracking_server(
    env: Mapping[str, str], log_path: Path, timeout: float = START_TIMEOUT
) -> Iterator[ServerProcess]:
    """Run ``tracking-server`` with ``env`` until the block ends, awaited on ``/health``.

    Its temp files (the basic-auth ini among them) go next to its log, not into /tmp.
    """
    url = server_url(env)
    env = {**env, "TMPDIR": str(log_path.parent)}
    service_logs.register(f"tracking server {url}", log_path)
    try:
        with running(
            "tracking-server",
            [ENTRYPOINT],
            log_path,
            lambda: http_ok(f"{url}/health"),
            env=env,
            cwd=log_path.parent,
            timeout=timeout,
        ) as process:
            yield process
    finally:
        service_logs.unregister(f"tracking server {url}")


@pytest.fixture(scope="session")
def tracking_stack(
    postgres_cluster: PostgresCluster,
    s3_server: S3Server,
    s3_proxy: NginxProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TrackingStack]:
    """The tracking server on the session's (initially empty) ``mlflow`` database."""
    env = tracking_env(postgres_cluster, s3_server, s3_proxy, free_port())
    log_path = tmp_path_factory.mktemp("tracking") / "tracking-server.log"
    with tracking_server(env, log_path) as process:
        yield TrackingStack(
            url=server_url(env),
            env=env,
            process=process,
            postgres=postgres_cluster,
            s3=s3_server,
            proxy=s3_proxy,
        )


@contextmanager
def private_stack(root: Path) -> Iterator[TrackingStack]:
    """A whole stack of its own (PostgreSQL, S3, nginx, tracking server), for tests that stop
    or restart its services without disturbing the session's shared one."""
    cluster = create_cluster(root / "postgres")
    s3 = S3Server(port=free_port(), log_path=root / "s3" / "s3.log")
    try:
        s3.log_path.parent.mkdir(parents=True)
        s3.start()
        with nginx_proxy(root / "nginx", proxy_env(s3.port, s3.port)) as proxy:
            env = tracking_env(cluster, s3, proxy, free_port())
            with tracking_server(env, root / "tracking" / "tracking-server.log") as process:
                yield TrackingStack(server_url(env), env, process, cluster, s3, proxy)
    finally:
        s3.stop()
        destroy_cluster(cluster)
