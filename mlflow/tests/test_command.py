"""The ``mlflow server`` command line and auth configuration built from the settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.server.auth.config import read_auth_config

from tracking_server.command import auth_config_text, server_command
from tracking_server.entrypoint import main
from tracking_server.settings import TrackingServerSettings, load_settings

ALL_NAMES = [str(f.validation_alias) for f in TrackingServerSettings.model_fields.values()]
DB_PASSWORD = "db-p@ss%word"
ADMIN_PASSWORD = "admin-password-123"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_DB_PASSWORD", DB_PASSWORD)


def with_auth(monkeypatch: pytest.MonkeyPatch) -> TrackingServerSettings:
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", "csrf-secret")
    return load_settings()


def test_default_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ARTIFACTS_BUCKET", "artifacts")
    command = server_command(load_settings(), "/opt/venv/bin/python")
    assert command.argv == [
        "/opt/venv/bin/python", "-m", "mlflow", "server",
        "--serve-artifacts", "--artifacts-destination", "s3://artifacts",
        "--host", "0.0.0.0", "--port", "5000", "--workers", "2",
        "--allowed-hosts", "mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*",
    ]  # fmt: skip
    assert command.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "MLFLOW_AUTH_CONFIG_PATH" not in command.env


def test_settings_reach_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HOST", "127.0.0.1")
    monkeypatch.setenv("MLFLOW_PORT", "5050")
    monkeypatch.setenv("MLFLOW_WORKERS", "4")
    monkeypatch.setenv("MLFLOW_ALLOWED_HOSTS", "mlflow.example.com")
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "true")
    command = server_command(load_settings(), "python")
    argv = " ".join(command.argv)
    assert "--host 127.0.0.1 --port 5050 --workers 4 --allowed-hosts mlflow.example.com" in argv
    assert command.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"


def test_database_password_travels_in_the_environment_only() -> None:
    settings = load_settings()
    command = server_command(settings, "python")
    assert not any("p%40ss" in arg or DB_PASSWORD in arg for arg in command.argv)
    uri = command.env["MLFLOW_BACKEND_STORE_URI"]
    assert uri == settings.backend_url().render_as_string(hide_password=False)
    environment = command.environment({"MLFLOW_DB_PASSWORD": DB_PASSWORD, "PATH": "/bin"})
    assert "MLFLOW_DB_PASSWORD" not in environment
    assert environment["PATH"] == "/bin"
    assert environment["MLFLOW_BACKEND_STORE_URI"] == uri


def test_auth_adds_the_basic_auth_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = with_auth(monkeypatch)
    command = server_command(settings, "python", tmp_path / "auth.ini")
    assert command.argv[-2:] == ["--app-name", "basic-auth"]
    assert command.env["MLFLOW_AUTH_CONFIG_PATH"] == str(tmp_path / "auth.ini")
    with pytest.raises(ValueError, match="auth_config_path"):
        server_command(settings, "python")
    with pytest.raises(ValueError, match="auth_config_path"):
        server_command(load_settings_without_auth(monkeypatch), "python", tmp_path / "auth.ini")


def load_settings_without_auth(monkeypatch: pytest.MonkeyPatch) -> TrackingServerSettings:
    for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        monkeypatch.delenv(name)
    return load_settings()


def test_mlflow_reads_the_generated_auth_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = with_auth(monkeypatch)
    text = auth_config_text(settings)
    assert ADMIN_PASSWORD not in text
    path = tmp_path / "basic_auth.ini"
    path.write_text(text)
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(path))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD")
    config = read_auth_config()
    assert config.database_uri == settings.auth_url().render_as_string(hide_password=False)
    assert config.admin_username == "admin"
    assert config.admin_password is None  # the password only ever comes from the environment
    assert config.default_permission == "READ"


def test_help_lists_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in ALL_NAMES)
