"""Settings of the tracking server: names, defaults, derived URLs, and refusals."""

from __future__ import annotations

import inspect

import pytest
from mlflow.server.security_utils import is_allowed_host_header

from tracking_server.errors import SettingsError
from tracking_server.settings import TrackingServerSettings, load_settings

ALL_NAMES = [str(f.validation_alias) for f in TrackingServerSettings.model_fields.values()]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test from an environment without any of the settings' variables."""
    for name in ALL_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_DB_PASSWORD", "db-secret")


def test_defaults_suit_the_compose_stack_and_a_small_machine() -> None:
    settings = load_settings()
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 5000, 2)
    assert settings.enable_job_execution is False
    assert settings.artifacts_bucket == "mlflow"
    assert settings.auth_enabled is False
    url = settings.backend_url()
    assert url.render_as_string(hide_password=False) == (
        "postgresql+psycopg2://mlflow:db-secret@postgres:5432/mlflow"
    )
    assert settings.auth_url().database == "mlflow_auth"


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("mlflow", True),
        ("mlflow:5000", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("evil.example.com", False),
        ("mlflow.evil.example.com", False),
    ],
)
def test_default_allowed_hosts_accept_the_service_name(host: str, allowed: bool) -> None:
    patterns = load_settings().allowed_hosts.split(",")
    assert is_allowed_host_header(patterns, host) is allowed


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_PORT", "")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "")
    settings = load_settings()
    assert settings.port == 5000
    assert settings.auth_enabled is False


@pytest.mark.parametrize(
    ("uri", "driver"),
    [
        ("postgresql://u:p@db:5433/store", "postgresql+psycopg2"),
        ("postgresql+psycopg2://u:p@db/store", "postgresql+psycopg2"),
        ("postgresql+psycopg://u:p@db/store", "postgresql+psycopg"),
    ],
)
def test_full_uri_wins_over_parts(monkeypatch: pytest.MonkeyPatch, uri: str, driver: str) -> None:
    monkeypatch.delenv("MLFLOW_DB_PASSWORD")
    monkeypatch.setenv("MLFLOW_DB_HOST", "ignored")
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", uri)
    url = load_settings().backend_url()
    assert (url.drivername, url.host, url.database) == (driver, "db", "store")
    assert load_settings().auth_url().database == "mlflow_auth"


def test_special_characters_in_the_password_survive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DB_PASSWORD", "p@ss:w/rd%?")
    url = load_settings().backend_url()
    assert url.password == "p@ss:w/rd%?"
    assert "p%40ss%3Aw%2Frd%25%3F" in url.render_as_string(hide_password=False)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("MLFLOW_PORT", "http", "MLFLOW_PORT: Input should be a valid integer"),
        ("MLFLOW_WORKERS", "0", "MLFLOW_WORKERS: Input should be greater than or equal to 1"),
        ("MLFLOW_DB_WAIT_TIMEOUT", "-1", "MLFLOW_DB_WAIT_TIMEOUT: Input should be greater"),
        ("MLFLOW_ARTIFACTS_BUCKET", "ab", "MLFLOW_ARTIFACTS_BUCKET: not a valid S3 bucket name"),
        ("MLFLOW_ARTIFACTS_BUCKET", "a..b", "MLFLOW_ARTIFACTS_BUCKET: not a valid S3 bucket name"),
        ("MLFLOW_S3_ENDPOINT_URL", "minio:9000", "MLFLOW_S3_ENDPOINT_URL: must be an http://"),
        ("MLFLOW_AUTH_DEFAULT_PERMISSION", "ALL", "MLFLOW_AUTH_DEFAULT_PERMISSION: Input should"),
    ],
)
def test_invalid_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert problem in str(error.value)
    assert "\n" not in str(error.value)


def test_database_password_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_DB_PASSWORD")
    with pytest.raises(SettingsError, match="MLFLOW_DB_PASSWORD must be set"):
        load_settings()


@pytest.mark.parametrize(
    "uri", ["sqlite:///mlflow.db", "mysql://u:supersecret@db/store", "not a uri supersecret"]
)
def test_backend_uri_must_be_postgresql_and_is_never_echoed(
    monkeypatch: pytest.MonkeyPatch, uri: str
) -> None:
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", uri)
    with pytest.raises(SettingsError, match="MLFLOW_BACKEND_STORE_URI") as error:
        load_settings()
    assert "supersecret" not in str(error.value)


def test_auth_turns_on_with_complete_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "twelve-chars")
    monkeypatch.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", "csrf")
    assert load_settings().auth_enabled is True


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({"MLFLOW_AUTH_ADMIN_USERNAME": "admin"}, "MLFLOW_AUTH_ADMIN_PASSWORD is missing"),
        (
            {"MLFLOW_AUTH_ADMIN_USERNAME": "admin", "MLFLOW_AUTH_ADMIN_PASSWORD": "eleven-char"},
            "shorter than 12 characters",
        ),
        ({"MLFLOW_AUTH_ADMIN_PASSWORD": "twelve-chars"}, "needs MLFLOW_AUTH_ADMIN_USERNAME"),
        (
            {"MLFLOW_AUTH_ADMIN_USERNAME": "admin", "MLFLOW_AUTH_ADMIN_PASSWORD": "twelve-chars"},
            "MLFLOW_FLASK_SERVER_SECRET_KEY is not set",
        ),
    ],
)
def test_incomplete_auth_is_refused(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], problem: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=problem) as error:
        load_settings()
    assert "eleven-char" not in str(error.value)


def test_error_formatter_matches_the_trainers_copy() -> None:
    """The image installs only this member, so the formatter is a copy of ml_model's (whose
    tests cover its behaviour); the two must not drift apart."""
    from ml_model import config
    from tracking_server import settings

    assert inspect.getsource(settings.describe_validation_error) == inspect.getsource(
        config.describe_validation_error
    )
