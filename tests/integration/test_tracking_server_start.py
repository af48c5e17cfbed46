"""The entrypoint's start-up contract: settings, database wait, migration lock, hosts, auth."""

from __future__ import annotations

import base64
import http.client
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.postgres import (
    MLFLOW_AUTH_DB,
    MLFLOW_DB,
    MLFLOW_ROLE,
    create_cluster,
    destroy_cluster,
)
from tests.support.tracking import (
    ENTRYPOINT,
    TrackingStack,
    server_url,
    tracking_env,
    tracking_server,
)
from tools.processes import ServerProcess, environ_without, free_port, http_ok
from tracking_server.database import MIGRATION_LOCK_KEY

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"
ADMIN_PASSWORD = "admin-password-for-tests"


def _status(url: str, path: str, headers: dict[str, str] | None = None) -> int:
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        return connection.getresponse().status
    finally:
        connection.close()


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _entrypoint(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENTRYPOINT], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _entrypoint_with_args(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENTRYPOINT, *args], env=_offline_env(), capture_output=True, text=True, check=False
    )


def _offline_env(**settings: str) -> dict[str, str]:
    """Settings that pass validation; nothing listens at the addresses they name."""
    env = environ_without("MLFLOW_", "AWS_")
    return {**env, "MLFLOW_DB_PASSWORD": "unused-password", **settings}


def _wait_for_line(process: ServerProcess, text: str, timeout: float = 60.0) -> None:
    process.wait_until(lambda: text in process.log_path.read_text(), timeout=timeout)


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example.com", 403),
        ("localhost", 200),
        ("127.0.0.1:{port}", 200),
        ("mlflow:5000", 200),
    ],
)
def test_only_allowed_host_headers_are_served(
    tracking_stack: TrackingStack, host: str, status: int
) -> None:
    host = host.format(port=tracking_stack.env["MLFLOW_PORT"])
    assert _status(tracking_stack.url, SEARCH, {"Host": host}) == status


def test_health_answers_any_host_header(tracking_stack: TrackingStack) -> None:
    assert _status(tracking_stack.url, "/health", {"Host": "evil.example.com"}) == 200


def test_second_start_waits_for_the_migration_lock_then_reuses_schema_and_bucket(
    tracking_stack: TrackingStack, tmp_path: Path
) -> None:
    stack = tracking_stack
    env = tracking_env(stack.postgres, stack.s3, stack.proxy, free_port())
    holder = stack.postgres.connect(MLFLOW_DB, MLFLOW_ROLE, stack.postgres.mlflow_password)
    with holder.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
    process = ServerProcess("tracking-server", [ENTRYPOINT], tmp_path / "second.log", env, tmp_path)
    try:
        _wait_for_line(process, "waiting for its lock")
        time.sleep(1.0)
        assert "schema is current" not in process.log_path.read_text()
        holder.close()  # ends the session, which releases the lock
        process.wait_until(lambda: http_ok(f"{server_url(env)}/health"), timeout=180)
    finally:
        holder.close()
        process.stop()
    log = process.log_path.read_text()
    assert "schema is current" in log
    assert f"bucket '{stack.bucket}' exists" in log


def test_start_waits_for_a_database_that_comes_up_late(
    tracking_stack: TrackingStack, tmp_path: Path
) -> None:
    cluster = create_cluster(tmp_path / "postgres")
    try:
        cluster.stop()
        env = tracking_env(cluster, tracking_stack.s3, tracking_stack.proxy, free_port())
        process = ServerProcess(
            "tracking-server", [ENTRYPOINT], tmp_path / "late.log", env, tmp_path
        )
        try:
            _wait_for_line(process, "database not ready (attempt 2)")
            cluster.start()
            _wait_for_line(process, "empty database: creating MLflow tables", timeout=120)
        finally:
            process.stop()
    finally:
        destroy_cluster(cluster)


def test_unreachable_database_fails_with_one_clear_line(tracking_stack: TrackingStack) -> None:
    env = tracking_env(
        tracking_stack.postgres,
        tracking_stack.s3,
        tracking_stack.proxy,
        free_port(),
        MLFLOW_DB_PORT=str(free_port()),
        MLFLOW_DB_WAIT_TIMEOUT="1",
    )
    result = _entrypoint(env)
    assert result.returncode == 1
    assert result.stderr.startswith("tracking-server: error: database 127.0.0.1:")
    assert "not reachable after 1s" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_wrong_database_password_fails_at_once(tracking_stack: TrackingStack) -> None:
    stack = tracking_stack
    env = tracking_env(
        stack.postgres, stack.s3, stack.proxy, free_port(), MLFLOW_DB_PASSWORD="not-the-password"
    )
    started = time.monotonic()
    result = _entrypoint(env)
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert "refused" in result.stderr and "password authentication failed" in result.stderr
    assert "not-the-password" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MLFLOW_PORT", "five-thousand"),
        ("MLFLOW_WORKERS", "two"),
        ("MLFLOW_WORKERS", "0"),
        ("MLFLOW_DB_PORT", "70000"),
        ("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "maybe"),
        ("MLFLOW_ARTIFACTS_BUCKET", "Not_A_Bucket"),
        ("MLFLOW_S3_ENDPOINT_URL", "nginx:9000"),
    ],
)
def test_bad_setting_is_named_in_a_one_line_error(name: str, value: str) -> None:
    result = _entrypoint(_offline_env(**{name: value}))
    assert result.returncode == 2
    assert result.stderr.startswith(f"tracking-server: error: invalid settings: {name}: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


@pytest.mark.parametrize(
    "auth",
    [
        {"MLFLOW_AUTH_ADMIN_USERNAME": "admin"},
        {"MLFLOW_AUTH_ADMIN_USERNAME": "admin", "MLFLOW_AUTH_ADMIN_PASSWORD": ""},
        {"MLFLOW_AUTH_ADMIN_USERNAME": "admin", "MLFLOW_AUTH_ADMIN_PASSWORD": "short"},
        {"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD},
    ],
)
def test_auth_without_complete_admin_credentials_refuses_to_start(auth: dict[str, str]) -> None:
    result = _entrypoint(_offline_env(MLFLOW_FLASK_SERVER_SECRET_KEY="k" * 32, **auth))
    assert result.returncode == 2
    assert "MLFLOW_AUTH_ADMIN_" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_auth_without_a_csrf_secret_refuses_to_start() -> None:
    auth = {"MLFLOW_AUTH_ADMIN_USERNAME": "admin", "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD}
    result = _entrypoint(_offline_env(**auth))
    assert result.returncode == 2
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY is not set" in result.stderr


def test_missing_database_password_is_named() -> None:
    env = _offline_env()
    del env["MLFLOW_DB_PASSWORD"]
    result = _entrypoint(env)
    assert result.returncode == 2
    assert "MLFLOW_DB_PASSWORD must be set" in result.stderr


def test_arguments_are_refused() -> None:
    result = _entrypoint_with_args(["--port", "5001"])
    assert result.returncode == 2
    assert "configured by environment variables" in result.stderr


def test_auth_rejects_anonymous_calls_and_accepts_the_admin(
    tracking_stack: TrackingStack, tmp_path: Path
) -> None:
    stack = tracking_stack
    env = tracking_env(
        stack.postgres,
        stack.s3,
        stack.proxy,
        free_port(),
        MLFLOW_AUTH_ADMIN_USERNAME="admin",
        MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD,
        MLFLOW_FLASK_SERVER_SECRET_KEY="a-static-csrf-secret-for-tests",
    )
    with tracking_server(env, tmp_path / "auth.log"):
        url = server_url(env)
        assert _status(url, SEARCH) == 401
        assert _status(url, SEARCH, _basic("admin", "not-the-password")) == 401
        assert _status(url, SEARCH, _basic("admin", ADMIN_PASSWORD)) == 200
        assert _status(url, "/health") == 200
    (ini,) = tmp_path.glob("mlflow-auth-*/basic_auth.ini")
    assert ini.stat().st_mode & 0o777 == 0o600
    assert ADMIN_PASSWORD not in ini.read_text()
    users = stack.postgres.query("SELECT username, is_admin FROM users", [], MLFLOW_AUTH_DB)
    assert users == [("admin", True)]
    assert (
        "basic-auth database current, admin account present" in (tmp_path / "auth.log").read_text()
    )
